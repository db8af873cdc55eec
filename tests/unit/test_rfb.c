/*
 * tests/unit/test_rfb.c: RFB framing in both directions (complete, short
 * and oversized messages), the stateless encoding filter, pixel formats
 * and the VNC authentication response.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "snapd/rfb.h"

/* Every prefix shorter than the message asks for more bytes. */
static void
expect_client(const uint8_t *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rfb_client_msg_len(m, i), 0);
	assert_int_equal(rfb_client_msg_len(m, n), (ssize_t)n);
	assert_int_equal(rfb_client_msg_len(m, n + 0), (ssize_t)n);
}

static void
expect_server(const uint8_t *m, size_t n, unsigned bpp)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(rfb_server_msg_len(m, i, bpp), 0);
	assert_int_equal(rfb_server_msg_len(m, n, bpp), (ssize_t)n);
}

static void
test_version(void **state)
{
	(void)state;
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.003\n"), 3);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.005\n"), 3);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.007\n"), 7);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.008\n"), 8);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.889\n"), 8);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 004.000\n"),
			 -EPROTO);
	assert_int_equal(rfb_parse_version((const uint8_t *)"GET / HTTP/1"),
			 -EPROTO);
	assert_int_equal(rfb_parse_version((const uint8_t *)"RFB 003.00a\n"),
			 -EPROTO);
}

static void
test_client_framing(void **state)
{
	uint8_t m[64 + 8];
	(void)state;

	memset(m, 0, sizeof(m));
	m[0] = RFB_C_SET_PIXEL_FORMAT;
	expect_client(m, 20);
	m[0] = RFB_C_SET_ENCODINGS;
	snap_put_be16(m + 2, 3);
	expect_client(m, 16);
	snap_put_be16(m + 2, RFB_MAX_ENCODINGS + 1);
	assert_int_equal(rfb_client_msg_len(m, 4), -EMSGSIZE);
	m[0] = RFB_C_UPDATE_REQUEST;
	expect_client(m, 10);
	m[0] = RFB_C_KEY;
	expect_client(m, 8);
	m[0] = RFB_C_POINTER;
	expect_client(m, 6);
	m[0] = RFB_C_CUT_TEXT;
	snap_put_be32(m + 4, 5);
	expect_client(m, 13);
	snap_put_be32(m + 4, (uint32_t)-5);     /* extended clipboard */
	expect_client(m, 13);
	snap_put_be32(m + 4, RFB_MAX_CUT_TEXT + 1);
	assert_int_equal(rfb_client_msg_len(m, 8), -EMSGSIZE);
	m[0] = RFB_C_FENCE;
	m[8] = 4;
	expect_client(m, 13);
	m[0] = RFB_C_SET_DESKTOP_SIZE;
	m[6] = 2;
	expect_client(m, 8 + 32);
	m[6] = 0;
	assert_int_equal(rfb_client_msg_len(m, 8), -EMSGSIZE);
	m[0] = RFB_C_QEMU;
	m[1] = 0;
	expect_client(m, 12);
	m[1] = 1;
	snap_put_be16(m + 2, 2);
	expect_client(m, 10);
	m[1] = 7;
	assert_int_equal(rfb_client_msg_len(m, 4), -EPROTO);
	m[0] = 77;
	assert_int_equal(rfb_client_msg_len(m, 20), -EPROTO);
}

/* Append a rectangle header. */
static size_t
rect(uint8_t *p, unsigned w, unsigned h, int32_t enc)
{
	memset(p, 0, 12);
	snap_put_be16(p + 4, (uint16_t)w);
	snap_put_be16(p + 6, (uint16_t)h);
	snap_put_be32(p + 8, (uint32_t)enc);
	return 12;
}

static void
test_server_framing(void **state)
{
	static uint8_t m[4 + 12 + 40 * 30 * 4 + 12 + 64 + 12 + 4 + 12];
	size_t n;
	(void)state;

	memset(m, 0, sizeof(m));
	/* Raw 40x30 at 32 bpp, then ExtendedDesktopSize with one screen. */
	m[0] = RFB_S_UPDATE;
	snap_put_be16(m + 2, 2);
	n = 4;
	n += rect(m + n, 40, 30, RFB_ENC_RAW);
	n += 40 * 30 * 4;
	n += rect(m + n, 720, 400, RFB_ENC_EXT_DESKTOP_SIZE);
	m[n] = 1;
	n += 4 + 16;
	expect_server(m, n, 32);
	/* The same raw rectangle is half as long at 16 bpp. */
	assert_int_equal(rfb_server_msg_len(m, 4 + 12 + 40 * 30 * 2, 16), 0);

	/* LastRect ends an update with an open count. */
	memset(m, 0, sizeof(m));
	snap_put_be16(m + 2, 0xffff);
	n = 4;
	n += rect(m + n, 1, 1, RFB_ENC_RAW);
	n += 4;
	n += rect(m + n, 0, 0, RFB_ENC_LAST_RECT);
	expect_server(m, n, 32);

	/* Hextile: a 20x20 rectangle is 4 tiles. */
	memset(m, 0, sizeof(m));
	snap_put_be16(m + 2, 1);
	n = 4;
	n += rect(m + n, 20, 20, RFB_ENC_HEXTILE);
	m[n++] = 2;                     /* background only */
	n += 4;
	m[n++] = 1;                     /* raw 4x16 tile */
	n += 4 * 16 * 4;
	m[n++] = 8 | 16;                /* two coloured subrects */
	m[n++] = 2;
	n += 2 * (4 + 2);
	m[n++] = 0;                     /* same background */
	expect_server(m, n, 32);

	/* RRE: count, background, subrects. */
	memset(m, 0, sizeof(m));
	snap_put_be16(m + 2, 1);
	n = 4;
	n += rect(m + n, 10, 10, RFB_ENC_RRE);
	snap_put_be32(m + n, 2);
	n += 4 + 4 + 2 * (4 + 8);
	expect_server(m, n, 32);

	/* zlib is never accepted from upstream. */
	memset(m, 0, sizeof(m));
	snap_put_be16(m + 2, 1);
	rect(m + 4, 10, 10, RFB_ENC_ZLIB);
	assert_int_equal(rfb_server_msg_len(m, 16, 32), -EPROTO);
	/* Oversized rectangles are refused before any data arrives. */
	rect(m + 4, RFB_MAX_DIM + 1, 10, RFB_ENC_RAW);
	assert_int_equal(rfb_server_msg_len(m, 16, 32), -EMSGSIZE);

	memset(m, 0, sizeof(m));
	m[0] = RFB_S_COLOUR_MAP;
	snap_put_be16(m + 4, 3);
	expect_server(m, 6 + 18, 8);
	m[0] = RFB_S_BELL;
	expect_server(m, 1, 32);
	m[0] = RFB_S_CUT_TEXT;
	snap_put_be32(m + 4, 3);
	expect_server(m, 11, 32);
	m[0] = 9;
	assert_int_equal(rfb_server_msg_len(m, 4, 32), -EPROTO);
	assert_int_equal(rfb_server_msg_len(m, 4, 24), -EINVAL);
}

static void
test_filter(void **state)
{
	const int32_t asked[] = {
		RFB_ENC_ZLIB, RFB_ENC_TIGHT, RFB_ENC_HEXTILE, RFB_ENC_ZRLE,
		RFB_ENC_QEMU_AUDIO, RFB_ENC_EXT_DESKTOP_SIZE, RFB_ENC_HEXTILE,
		-32, 0x574D5669, RFB_ENC_DESKTOP_SIZE,
	};
	int32_t out[16];
	size_t n;
	(void)state;

	n = rfb_filter_encodings(asked, sizeof(asked) / sizeof(asked[0]), out);
	assert_int_equal(n, 4);
	assert_int_equal(out[0], RFB_ENC_HEXTILE);
	assert_int_equal(out[1], RFB_ENC_EXT_DESKTOP_SIZE);
	assert_int_equal(out[2], RFB_ENC_DESKTOP_SIZE);
	assert_int_equal(out[3], RFB_ENC_RAW);
	/* Nothing asked: Raw. */
	assert_int_equal(rfb_filter_encodings(asked, 0, out), 1);
	assert_int_equal(out[0], RFB_ENC_RAW);
	assert_false(rfb_enc_allowed(RFB_ENC_ZLIB));
	assert_false(rfb_enc_allowed(RFB_ENC_ZRLE));
	assert_false(rfb_enc_allowed(RFB_ENC_TIGHT));
	assert_true(rfb_enc_allowed(RFB_ENC_RAW));
}

static void
test_pixfmt(void **state)
{
	struct rfb_pixfmt f;
	uint8_t p[16];
	(void)state;

	rfb_pixfmt_put(&rfb_pixfmt_default, p);
	/* What QEMU 7.2 sends on a little-endian host. */
	assert_memory_equal(p, "\x20\x18\x00\x01\x00\xff\x00\xff\x00\xff"
			    "\x10\x08\x00", 13);
	memset(&f, 0, sizeof(f));
	rfb_pixfmt_get(p, &f);
	assert_int_equal(f.bpp, 32);
	assert_int_equal(f.depth, 24);
	assert_int_equal(f.big_endian, 0);
	assert_int_equal(f.true_colour, 1);
	assert_int_equal(f.red_max, 255);
	assert_int_equal(f.blue_max, 255);
	assert_int_equal(f.red_shift, 16);
	assert_int_equal(f.green_shift, 8);
	assert_int_equal(f.blue_shift, 0);
	assert_true(rfb_pixfmt_valid(&f));
	f.bpp = 24;
	assert_false(rfb_pixfmt_valid(&f));
	f.bpp = 16;
	assert_false(rfb_pixfmt_valid(&f));  /* depth 24 > 16 bpp */
}

static void
test_vnc_auth(void **state)
{
	uint8_t ch[16], out[16];
	/* openssl enc -des-ecb -K cea6c64ea62e8c4c (bit-reversed "secret12") */
	static const uint8_t want[16] = {
		0xad, 0xcd, 0x99, 0x7f, 0x8e, 0x16, 0xfe, 0xe5,
		0x75, 0xe9, 0x73, 0xf9, 0x3c, 0x2b, 0x62, 0xb4,
	};
	(void)state;

	for (int i = 0; i < 16; i++)
		ch[i] = (uint8_t)i;
	rfb_vnc_auth("secret12", ch, out);
	assert_memory_equal(out, want, 16);
	/* Only 8 bytes count. */
	rfb_vnc_auth("secret12-and-more", ch, out);
	assert_memory_equal(out, want, 16);
	rfb_vnc_auth("secret1", ch, out);
	assert_memory_not_equal(out, want, 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_client_framing),
		cmocka_unit_test(test_server_framing),
		cmocka_unit_test(test_filter),
		cmocka_unit_test(test_pixfmt),
		cmocka_unit_test(test_vnc_auth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
