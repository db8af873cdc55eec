/*
 * tests/fuzz/fuzz_rfb.c: libFuzzer target for the display proxy's RFB
 * framing (snapd/rfb.c), in both directions.
 *
 * The first byte picks the direction and the pixel size. The rest is
 * framed as a stream of messages, the way the proxy consumes a buffer: a
 * length must never pass the bytes given, every proper prefix of a
 * complete message must ask for more (a read boundary never changes where
 * a message ends), and an error must stay an error when more bytes come.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "snapd/rfb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ssize_t
frame(bool server, const uint8_t *p, size_t n, unsigned bpp)
{
	return server ? rfb_server_msg_len(p, n, bpp) : rfb_client_msg_len(p, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned bpps[] = { 8, 16, 32, 32 };
	bool server;
	unsigned bpp;
	size_t off;

	if (size < 1)
		return 0;
	server = data[0] & 1;
	bpp = bpps[(data[0] >> 1) & 3];
	data++;
	size--;
	for (off = 0; off < size;) {
		ssize_t n = frame(server, data + off, size - off, bpp);

		if (n < 0) {
			/* An error seen in a prefix is the same error. */
			for (size_t k = 0; k < size - off; k += 1 + k / 8) {
				ssize_t e = frame(server, data + off, k, bpp);
				if (e < 0 && e != n)
					abort();
			}
			break;
		}
		if (n == 0)
			break;
		if ((size_t)n > size - off)
			abort();
		/* Every shorter prefix asks for more (sampled for speed). */
		for (size_t k = 0; k < (size_t)n; k += 1 + (size_t)n / 64)
			if (frame(server, data + off, k, bpp) != 0)
				abort();
		off += (size_t)n;
	}
	if (server) {
		int32_t in[64], out[65];
		size_t n = size / 4 > 64 ? 64 : size / 4;

		for (size_t i = 0; i < n; i++)
			memcpy(&in[i], data + 4 * i, 4);
		n = rfb_filter_encodings(in, n, out);
		for (size_t i = 0; i < n; i++)
			if (!rfb_enc_allowed(out[i]))
				abort();
	}
	return 0;
}
