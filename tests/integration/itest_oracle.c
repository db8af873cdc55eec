/*
 * tests/integration/itest_oracle.c: proves the test guest is a trustworthy
 * oracle using only QEMU's own migration. A guest saved with "migrate" to
 * a file and loaded into a fresh QEMU must continue its tick count and
 * check out; the same stream with one byte of one page flipped must make
 * the guest name exactly that page. Also checks that the host's model of
 * the guest memory (pattern.h) agrees with the guest, on both machine
 * types, and that the harness's QMP client reports errors and events.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "tests/harness/harness.h"

/* Fail the test with the harness's account of what went wrong. */
#define CHECK(q, expr) do {						\
		int rc_ = (expr);					\
		if (rc_ < 0) {						\
			hn_report((q), #expr, rc_);			\
			fail_msg("%s: %s", #expr, snap_strerror(rc_));	\
		}							\
	} while (0)

#define GUEST_ARGS(extra) "fill=32M seed=4242 zero=25 single=20 verify=1 " \
			  "tick_ms=50 " extra

static struct hn_qemu *
boot(const char *machine, const char *guest_args)
{
	struct hn_qemu_opts o = {
		.machine = machine, .memory = "64M", .guest_args = guest_args,
	};
	struct hn_qemu *q = NULL;

	CHECK(NULL, hn_qemu_start(&o, &q));
	CHECK(q, hn_wait_ready(q, HN_BOOT_TIMEOUT_MS));
	return q;
}

/* Read console lines until none comes for a while (QEMU is stopped). */
static void
drain(struct hn_qemu *q)
{
	char line[512];

	while (hn_console_line(q, line, sizeof(line), 300) >= 0)
		;
}

/* Stop @q, save it with QEMU's migrate to @path and quit. */
static uint64_t
save_and_quit(struct hn_qemu *q, const char *path)
{
	char uri[4096];
	uint64_t last;

	CHECK(q, hn_qemu_execf(q, NULL, "stop", NULL));
	drain(q);
	last = hn_qemu_guest(q)->last_tick;
	/* Stopped halfway through printing a TICK line: that tick counts. */
	if (strncmp(hn_console_pending(q), "T", 1) == 0)
		last++;
	CHECK(q, hn_qemu_execf(q, NULL, "migrate-set-parameters", "{s:I}",
			       "max-bandwidth", (json_int_t)10 << 30));
	CHECK(q, snap_fmt(uri, sizeof(uri), "exec:cat > '%s'", path));
	CHECK(q, hn_qemu_execf(q, NULL, "migrate", "{s:s}", "uri", uri));
	CHECK(q, hn_migrate_wait(q, 60000));
	assert_int_equal(hn_qemu_quit(q, 30000), 0);
	hn_qemu_free(q);
	return last;
}

/* Load @path into a fresh QEMU and resume it. */
static struct hn_qemu *
restore(const char *path)
{
	struct hn_qemu_opts o = {
		.memory = "64M", .guest_args = GUEST_ARGS("dirty=0"),
		.incoming = "defer", .paused = true,
	};
	struct hn_qemu *q = NULL;
	char uri[4096];

	CHECK(NULL, hn_qemu_start(&o, &q));
	CHECK(q, snap_fmt(uri, sizeof(uri), "exec:cat '%s'", path));
	CHECK(q, hn_qemu_execf(q, NULL, "migrate-incoming", "{s:s}", "uri", uri));
	CHECK(q, hn_migrate_wait(q, 60000));
	CHECK(q, hn_qemu_execf(q, NULL, "cont", NULL));
	return q;
}

static char *
state_path(const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", hn_tmpdir(), name) > 0);
	return p;
}

/* The host's model of the guest agrees with the guest's READY line. */
static void
check_model(struct hn_qemu *q)
{
	const struct hn_guest *g = hn_qemu_guest(q);
	uint64_t digest, zero, pages = 0;

	assert_true(g->configured);
	assert_int_equal(g->ready_lines, 1);
	assert_true(g->nranges >= 1);
	for (unsigned r = 0; r < g->nranges; r++)
		pages += g->ranges[r].pages;
	assert_int_equal(g->pages, pages);
	assert_int_equal(g->fill, 32u << 20);
	hn_model_digest(g, &digest, &zero);
	assert_int_equal(g->zero_pages, zero);
	assert_int_equal(g->digest, digest);
	/* Roughly the share asked for (25 %), from runs and singles. */
	assert_true(zero > pages / 10 && zero < pages / 2);
}

static uint8_t *read_file(const char *path, size_t *len);

/* A screendump of @q as a 720x400 PPM; returns the pixels (3 bytes each). */
static uint8_t *
screendump(struct hn_qemu *q, const char *name)
{
	char *path = NULL;
	static const char hdr[] = "P6\n720 400\n255\n";
	uint8_t *buf;
	size_t len;

	assert_true(asprintf(&path, "%s/%s", hn_qemu_dir(q), name) > 0);
	CHECK(q, hn_qemu_execf(q, NULL, "screendump", "{s:s}", "filename",
			       path));
	buf = read_file(path, &len);
	assert_int_equal(len, sizeof(hdr) - 1 + 720 * 400 * 3);
	assert_memory_equal(buf, hdr, sizeof(hdr) - 1);
	memmove(buf, buf + sizeof(hdr) - 1, len - (sizeof(hdr) - 1));
	free(path);
	return buf;
}

static void
test_boot_i440fx(void **state)
{
	struct hn_qemu *q = boot("pc-i440fx-7.2", GUEST_ARGS("dirty=32"));
	const size_t row = 720 * 3, text_line = 16 * row;
	struct hn_verdict v;
	uint64_t t1, t2;
	uint8_t *s1, *s2;

	(void)state;
	check_model(q);
	CHECK(q, hn_wait_tick(q, &t1, HN_TICK_TIMEOUT_MS));
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);
	assert_int_equal(v.tick, t1);
	CHECK(q, hn_wait_tick(q, &t2, HN_TICK_TIMEOUT_MS));
	assert_int_equal(t2, t1 + 1);
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);

	/*
	 * Dump the screen with the guest stopped: it shows tick L or L - 1
	 * (L the last TICK printed). Two ticks later it shows at least L + 1.
	 */
	CHECK(q, hn_qemu_execf(q, NULL, "stop", NULL));
	drain(q);
	t1 = hn_qemu_guest(q)->last_tick;
	s1 = screendump(q, "s1.ppm");
	CHECK(q, hn_qemu_execf(q, NULL, "cont", NULL));
	do
		CHECK(q, hn_wait_tick(q, &t2, HN_TICK_TIMEOUT_MS));
	while (t2 < t1 + 2);
	CHECK(q, hn_qemu_execf(q, NULL, "stop", NULL));
	drain(q);
	s2 = screendump(q, "s2.ppm");
	CHECK(q, hn_qemu_execf(q, NULL, "cont", NULL));
	/* The tick line changed; nothing else on the screen did. */
	assert_memory_not_equal(s1, s2, text_line);
	assert_memory_equal(s1 + text_line, s2 + text_line,
			    400 * row - text_line);
	free(s1);
	free(s2);
	assert_int_equal(hn_qemu_quit(q, 30000), 0);
}

static void
test_boot_q35(void **state)
{
	struct hn_qemu *q = boot("pc-q35-7.2", GUEST_ARGS("dirty=32"));
	struct hn_verdict v;

	(void)state;
	check_model(q);
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);
}

/* The harness's QMP client: results, errors, events, fd passing. */
static void
test_qmp_client(void **state)
{
	struct hn_qemu *q = boot(NULL, GUEST_ARGS("dirty=0"));
	struct hn_qmp *m = hn_qemu_qmp(q);
	json_t *ret = NULL, *ev = NULL;
	int fds[2];

	(void)state;
	CHECK(q, hn_qmp_execf(m, &ret, "query-status", NULL));
	assert_string_equal(json_string_value(json_object_get(ret, "status")),
			    "running");
	json_decref(ret);

	assert_int_equal(hn_qmp_execf(m, NULL, "no-such-command", NULL),
			 SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(m), "CommandNotFound"));

	CHECK(q, hn_qmp_execf(m, NULL, "stop", NULL));
	CHECK(q, hn_qmp_wait_event(m, "STOP", 10000, &ev));
	assert_string_equal(json_string_value(json_object_get(ev, "event")),
			    "STOP");
	json_decref(ev);
	assert_int_equal(hn_qmp_wait_event(m, "STOP", 200, NULL), -ETIMEDOUT);

	/* getfd needs a descriptor: without one QEMU refuses. */
	assert_int_equal(hn_qmp_execf(m, NULL, "getfd", "{s:s}", "fdname",
				      "x"), SNAP_EQEMU);
	assert_int_equal(pipe(fds), 0);
	CHECK(q, hn_qmp_getfd(m, fds[1], "x"));
	CHECK(q, hn_qmp_execf(m, NULL, "closefd", "{s:s}", "fdname", "x"));
	close(fds[0]);
	close(fds[1]);
	CHECK(q, hn_qmp_execf(m, NULL, "cont", NULL));
	CHECK(q, hn_qmp_wait_event(m, "RESUME", 10000, NULL));
}

/* QEMU's own save and restore: the guest continues and checks out. */
static void
test_migrate_roundtrip(void **state)
{
	struct hn_qemu *q = boot(NULL, GUEST_ARGS("dirty=64"));
	char *path = state_path("roundtrip.mig");
	struct hn_verdict v;
	uint64_t tick, last;

	(void)state;
	for (int i = 0; i < 3; i++)
		CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	last = save_and_quit(q, path);
	assert_true(last >= 3);

	q = restore(path);
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	/* The count continues exactly; the guest did not boot again. */
	assert_int_equal(tick, last + 1);
	assert_int_equal(hn_qemu_guest(q)->ready_lines, 0);
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);
	assert_int_equal(v.tick, tick);
	/* And it keeps dirtying and checking. */
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);
	assert_int_equal(v.tick, tick + 1);
	assert_int_equal(hn_qemu_quit(q, 30000), 0);
	unlink(path);
	free(path);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size);
	assert_non_null(buf);
	assert_int_equal(snap_read_full(fd, buf, (size_t)st.st_size), 0);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

/*
 * Find a filled, nonzero page whose expected bytes occur exactly once in
 * the stream; returns its offset there and sets *@pfn.
 */
static size_t
find_page(const struct hn_guest *g, const uint8_t *buf, size_t len,
	  uint64_t *pfn)
{
	uint8_t page[4096];
	uint64_t p = g->ranges[0].pfn + g->ranges[0].pages / 2;

	for (int tries = 0; tries < 1000; tries++, p += 7) {
		const uint8_t *hit, *again;

		if (!hn_page_filled(g, p) || hn_expected_page(g, p, 0, page))
			continue;
		hit = memmem(buf, len, page, sizeof(page));
		if (!hit)
			continue;
		again = memmem(hit + 1, len - (size_t)(hit + 1 - buf), page,
			       sizeof(page));
		if (again)
			continue;
		*pfn = p;
		return (size_t)(hit - buf);
	}
	fail_msg("no page of the guest found in the stream");
	return 0;
}

/* One flipped byte in the saved stream: the guest names that page. */
static void
test_migrate_flipped_byte(void **state)
{
	/* No dirtying, so nothing can rewrite the corrupted page first. */
	struct hn_qemu *q = boot(NULL, GUEST_ARGS("dirty=0"));
	struct hn_guest g = *hn_qemu_guest(q);
	char *path = state_path("flipped.mig");
	struct hn_verdict v;
	uint64_t tick, last, pfn = 0;
	size_t len, off;
	uint8_t *buf;
	int fd;

	(void)state;
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	last = save_and_quit(q, path);

	buf = read_file(path, &len);
	off = find_page(&g, buf, len, &pfn);
	buf[off + 2049] ^= 0x40;
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(snap_pwrite_full(fd, buf + off + 2049, 1,
					  (off_t)(off + 2049)), 0);
	close(fd);
	free(buf);

	q = restore(path);
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	assert_int_equal(tick, last + 1);
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_false(v.ok);
	assert_int_equal(v.page, pfn);
	assert_int_equal(v.addr, pfn << 12);
	assert_int_equal(v.count, 1);
	assert_int_equal(v.tick, tick);
	unlink(path);
	free(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_boot_i440fx, hn_teardown),
		cmocka_unit_test_teardown(test_boot_q35, hn_teardown),
		cmocka_unit_test_teardown(test_qmp_client, hn_teardown),
		cmocka_unit_test_teardown(test_migrate_roundtrip, hn_teardown),
		cmocka_unit_test_teardown(test_migrate_flipped_byte,
					  hn_teardown),
	};

	hn_require_qemu();
	return cmocka_run_group_tests_name("oracle", tests, NULL, NULL);
}
