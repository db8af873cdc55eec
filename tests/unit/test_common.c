/*
 * tests/unit/test_common.c: the error convention and helpers in common/.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"

static void
test_strerror_ranges(void **state)
{
	(void)state;
	assert_string_equal(snap_strerror(0), "success");
	assert_string_equal(snap_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(snap_strerror(SNAP_ECHECKSUM), "checksum mismatch");
	assert_string_equal(snap_strerror(SNAP_EVERSION),
			    "unsupported format version");
	assert_string_equal(snap_strerror(SNAP_ERR_LAST), "unknown error");
	assert_string_equal(snap_strerror(-SNAP_ERR_BASE), "unknown error");
	/* Every defined project code has its own text. */
	for (int c = SNAP_ECORRUPT; c > SNAP_ERR_LAST; c--)
		assert_string_not_equal(snap_strerror(c), "unknown error");
}

static void
test_err_detail(void **state)
{
	struct snap_err e;
	(void)state;

	snap_err_clear(&e);
	assert_string_equal(snap_err_text(&e, SNAP_ETRUNC), "data truncated");
	assert_int_equal(snap_err_set(&e, SNAP_ECORRUPT, 4096,
				      "bad page %d", 7), SNAP_ECORRUPT);
	assert_int_equal(e.code, SNAP_ECORRUPT);
	assert_int_equal(e.offset, 4096);
	assert_string_equal(snap_err_text(&e, e.code), "bad page 7");
	assert_int_equal(snap_err_set(NULL, -EIO, 0, "x"), -EIO);
}

static void
test_endian(void **state)
{
	uint8_t b[8];
	(void)state;

	snap_put_le64(b, 0x0102030405060708ull);
	assert_int_equal(b[0], 0x08);
	assert_int_equal(b[7], 0x01);
	assert_true(snap_get_le64(b) == 0x0102030405060708ull);
	snap_put_be64(b, 0x0102030405060708ull);
	assert_int_equal(b[0], 0x01);
	assert_int_equal(b[7], 0x08);
	assert_true(snap_get_be64(b) == 0x0102030405060708ull);
	snap_put_be32(b, 0x5145564d);
	assert_memory_equal(b, "QEVM", 4);
	assert_int_equal(snap_get_be16(b), 0x5145);
	snap_put_le16(b, 0xbeef);
	assert_int_equal(snap_get_le16(b), 0xbeef);
	assert_int_equal(snap_get_le32((const uint8_t *)"\x01\0\0\x80"),
			 0x80000001u);
}

static void
test_strlcpy_fmt(void **state)
{
	char buf[5];
	(void)state;

	assert_int_equal(snap_strlcpy(buf, "abc", sizeof(buf)), 3);
	assert_string_equal(buf, "abc");
	assert_int_equal(snap_strlcpy(buf, "abcdefgh", sizeof(buf)), 8);
	assert_string_equal(buf, "abcd");
	assert_int_equal(snap_strlcpy(buf, "zz", 0), 2);
	assert_string_equal(buf, "abcd");
	assert_int_equal(snap_fmt(buf, sizeof(buf), "%d", 1234), 0);
	assert_int_equal(snap_fmt(buf, sizeof(buf), "%d", 12345),
			 -ENAMETOOLONG);
	assert_string_equal(buf, "1234");
}

static void
test_parse_size(void **state)
{
	uint64_t v = 0;
	(void)state;

	assert_int_equal(snap_parse_size("4096", &v), 0);
	assert_true(v == 4096);
	assert_int_equal(snap_parse_size("64K", &v), 0);
	assert_true(v == 65536);
	assert_int_equal(snap_parse_size("256M", &v), 0);
	assert_true(v == 256ull << 20);
	assert_int_equal(snap_parse_size("1GiB", &v), 0);
	assert_true(v == 1ull << 30);
	assert_int_equal(snap_parse_size("2T", &v), 0);
	assert_true(v == 2ull << 40);
	assert_int_equal(snap_parse_size("12B", &v), 0);
	assert_true(v == 12);
	assert_int_equal(snap_parse_size("", &v), -EINVAL);
	assert_int_equal(snap_parse_size("-1", &v), -EINVAL);
	assert_int_equal(snap_parse_size("1X", &v), -EINVAL);
	assert_int_equal(snap_parse_size("1Gx", &v), -EINVAL);
	assert_int_equal(snap_parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(snap_parse_size("99999999999T", &v), -ERANGE);
}

static void
test_io_full(void **state)
{
	char path[] = "/tmp/snap-test-XXXXXX";
	uint8_t out[10000], in[10000];
	int fd;
	(void)state;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7);
	assert_int_equal(snap_write_full(fd, out, sizeof(out)), 0);
	assert_int_equal(snap_pread_full(fd, in, sizeof(in), 0), 0);
	assert_memory_equal(in, out, sizeof(in));
	/* Reading past the end is a truncation, not a silent short read. */
	assert_int_equal(snap_pread_full(fd, in, 10, 9995), SNAP_ETRUNC);
	assert_int_equal(snap_pwrite_full(fd, "xy", 2, 20000), 0);
	assert_int_equal(snap_pread_full(fd, in, 2, 20000), 0);
	assert_memory_equal(in, "xy", 2);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(snap_read_full(fd, in, 100), 0);
	assert_memory_equal(in, out, 100);
	close(fd);
	assert_int_equal(snap_write_full(fd, out, 1), -EBADF);
}

static void
test_is_zero(void **state)
{
	static uint8_t page[4096 + 3];
	(void)state;

	memset(page, 0, sizeof(page));
	assert_true(snap_is_zero(page, 4096));
	assert_true(snap_is_zero(page + 1, 4096));
	page[4095] = 1;
	assert_false(snap_is_zero(page, 4096));
	assert_true(snap_is_zero(page, 4095));
	page[4095] = 0;
	page[4097] = 1;
	assert_true(snap_is_zero(page, 4096));
	assert_false(snap_is_zero(page + 1, 4097));
	assert_true(snap_is_zero(page, 0));
}

static void
test_align(void **state)
{
	(void)state;
	assert_int_equal(SNAP_ALIGN_UP(0ull, 4096), 0);
	assert_int_equal(SNAP_ALIGN_UP(1ull, 4096), 4096);
	assert_int_equal(SNAP_ALIGN_UP(4096ull, 4096), 4096);
	assert_true(SNAP_IS_ALIGNED(8192ull, 4096));
	assert_false(SNAP_IS_ALIGNED(8193ull, 4096));
}

static void
test_grow(void **state)
{
	uint32_t *v = NULL, *nv;
	size_t cap = 0;

	(void)state;
	for (size_t len = 0; len < 100; len++) {
		nv = snap_grow(v, &cap, len, sizeof(*v), 4);
		assert_non_null(nv);
		assert_true(cap > len);
		/* Doubling from 4: 4, 8, 16, ... */
		assert_true(cap == 4 || (cap / 2 <= len && (cap & (cap - 1)) == 0));
		v = nv;
		v[len] = (uint32_t)len * 3;
	}
	for (size_t i = 0; i < 100; i++)
		assert_int_equal(v[i], i * 3);
	/* Room left: the same array, the capacity untouched. */
	cap = 128;
	assert_ptr_equal(snap_grow(v, &cap, 100, sizeof(*v), 4), v);
	assert_int_equal(cap, 128);
	/* A size that cannot be allocated leaves everything as it was. */
	assert_null(snap_grow(v, &cap, 128, SIZE_MAX / 64, 4));
	assert_int_equal(cap, 128);
	assert_int_equal(v[99], 297);
	free(v);
}

static void
test_clock(void **state)
{
	uint64_t a, b;
	(void)state;

	a = snap_now_mono_ns();
	b = snap_now_mono_ns();
	assert_true(b >= a);
	/* After 2020-01-01. */
	assert_true(snap_now_real_ns() > 1577836800ull * 1000000000ull);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_ranges),
		cmocka_unit_test(test_err_detail),
		cmocka_unit_test(test_endian),
		cmocka_unit_test(test_strlcpy_fmt),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_io_full),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_align),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_clock),
	};
	return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
