/*
 * tests/fuzz/fuzz_qmp.c: libFuzzer target for the QMP input path of the
 * control server: framing (snapd/qmpwire.c) and the request checks, then
 * the reply a client would get.
 *
 * The first byte picks the framer's size limit (so the oversized-message
 * path is reached with small inputs) and the chunk size the rest is fed
 * in. The same bytes are framed twice, in those chunks and one byte at a
 * time; both runs must see the same events and messages, since a read
 * boundary must never change what a client's bytes mean. Every framed
 * message goes through qmp_request_parse(), and the error or the request's
 * parts are serialised as a reply would be.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapd/qmpwire_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	uint64_t hash;   /* FNV-1a over every event and message */
	size_t events;
};

static void
mix(struct trace *t, const void *d, size_t n)
{
	const uint8_t *b = d;

	for (size_t i = 0; i < n; i++) {
		t->hash ^= b[i];
		t->hash *= 0x100000001b3ull;
	}
}

static void
handle(const char *buf, size_t len)
{
	struct qmp_request r;
	char desc[512];
	json_t *msg;
	size_t n;
	char *text;

	if (qmp_request_parse(buf, len, &r, desc, sizeof(desc)) < 0) {
		msg = qmp_error_msg(r.id, "GenericError", desc);
	} else {
		if (!r.execute || strlen(r.execute) > len)
			abort();
		msg = json_pack("{s:s,s:O*}", "return", r.execute,
				"args", r.args);
		if (msg && r.id)
			json_object_set(msg, "id", r.id);
	}
	text = msg ? qmp_dump(msg, &n) : NULL;
	if (text && (n < 2 || text[n - 2] != '\r' || text[n - 1] != '\n'))
		abort();
	free(text);
	json_decref(msg);
	qmp_request_clear(&r);
}

static void
run(const char *p, size_t len, size_t step, size_t max, struct trace *t,
    int parse)
{
	struct qmp_framer f;

	qmp_framer_init(&f, max);
	t->hash = 0xcbf29ce484222325ull;
	t->events = 0;
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step, used = 0;

		while (used < n) {
			enum qmp_frame ev;
			size_t u = qmp_framer_scan(&f, p + off + used, n - used,
						   &ev);

			if (u > n - used)
				abort();
			used += u;
			if (ev == QMP_FRAME_NONE)
				continue;
			t->events++;
			mix(t, &ev, sizeof(ev));
			if (ev == QMP_FRAME_MSG) {
				if (f.len == 0 || f.len > max)
					abort();
				mix(t, f.buf, f.len);
				if (parse)
					handle(f.buf, f.len);
			} else if (!qmp_frame_desc(ev, max)) {
				abort();
			}
		}
	}
	qmp_framer_release(&f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[] = { 16, 64, 256, 1u << 20 };
	struct trace a, b;
	size_t max, step;

	if (size < 1)
		return 0;
	max = limits[data[0] & 3];
	step = (size_t)(data[0] >> 2) + 1;
	run((const char *)data + 1, size - 1, step, max, &a, 1);
	run((const char *)data + 1, size - 1, 1, max, &b, 0);
	if (a.hash != b.hash || a.events != b.events)
		abort();
	return 0;
}
