/*
 * tests/integration/itest_migstream.c: the migration stream parser and
 * synthesizer (format/migstream.h) against real QEMU 7.2.
 *
 * A paused QEMU (no guest kernel) with a known pattern loaded into guest
 * RAM by "-device loader" migrates into a socketpair end passed with
 * getfd; the test parses what arrives and checks the block list, the page
 * counts QEMU reports in query-migrate, the pattern, and every byte of
 * main RAM against QEMU's own pmemsave. Then it synthesizes a stream from
 * what it parsed and loads it into a fresh QEMU (without the loader, so
 * the pattern can only come from the stream) with migrate-incoming fd:,
 * which must complete with memory identical to the source's. The same
 * with main RAM in a named memory backend, whose block is then "mem0".
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
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"
#include "tests/harness/harness.h"

#define CHECK(q, expr) do {						\
		int rc_ = (expr);					\
		if (rc_ < 0) {						\
			hn_report((q), #expr, rc_);			\
			fail_msg("%s: %s", #expr, snap_strerror(rc_));	\
		}							\
	} while (0)

#define RAM_SIZE        (64ull << 20)
#define PATTERN_ADDR    0x1000000ull    /* 16 MiB into main RAM */
#define PATTERN_PAGES   256
#define MAX_BLOCKS      16

/* Everything parsed from one outgoing migration. */
struct capture {
	struct mig_block blocks[MAX_BLOCKS];
	uint8_t *image[MAX_BLOCKS];     /* each block as the stream left it */
	uint8_t *seen[MAX_BLOCKS];      /* per page: 0 none, 1 page, 2 zero */
	size_t nblocks;
	uint32_t section_id, instance_id, version_id;
	uint8_t *pre;
	size_t pre_len;
	char machine[256];
	uint8_t *dev;
	size_t dev_len, dev_cap;
	uint64_t pages, zeros, bytes;
};

static char pattern_path[4096];
static uint8_t pattern[PATTERN_PAGES * MIG_PAGE_SIZE];

/* Seeded bytes, every fourth page zero, page 5 all 0xAB. */
static void
make_pattern(void)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;
	int fd;

	for (size_t pg = 0; pg < PATTERN_PAGES; pg++) {
		uint8_t *p = pattern + pg * MIG_PAGE_SIZE;

		if (pg % 4 == 3) {
			memset(p, 0, MIG_PAGE_SIZE);
			continue;
		}
		if (pg == 5) {
			memset(p, 0xAB, MIG_PAGE_SIZE);
			continue;
		}
		for (size_t i = 0; i < MIG_PAGE_SIZE; i += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(p + i, &x, 8);
		}
	}
	assert_int_equal(snap_fmt(pattern_path, sizeof(pattern_path),
				  "%s/pattern.bin", hn_tmpdir()), 0);
	fd = open(pattern_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(snap_write_full(fd, pattern, sizeof(pattern)), 0);
	close(fd);
}

/* ---- parser callbacks ------------------------------------------------------ */

static int
on_preamble(void *opaque, const struct mig_preamble *pre)
{
	struct capture *c = opaque;

	c->pre = malloc(pre->len);
	if (!c->pre)
		return -ENOMEM;
	memcpy(c->pre, pre->bytes, pre->len);
	c->pre_len = pre->len;
	snap_strlcpy(c->machine, pre->machine, sizeof(c->machine));
	return 0;
}

static int
on_ram(void *opaque, const struct mig_ram *ram)
{
	struct capture *c = opaque;

	if (ram->nblocks > MAX_BLOCKS)
		return SNAP_ELIMIT;
	c->section_id = ram->section_id;
	c->instance_id = ram->instance_id;
	c->version_id = ram->version_id;
	c->nblocks = ram->nblocks;
	for (size_t i = 0; i < ram->nblocks; i++) {
		c->blocks[i] = ram->blocks[i];
		c->image[i] = calloc(1, ram->blocks[i].used_length);
		c->seen[i] = calloc(1, ram->blocks[i].used_length / MIG_PAGE_SIZE);
		if (!c->image[i] || !c->seen[i])
			return -ENOMEM;
	}
	return 0;
}

static int
on_page(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	struct capture *c = opaque;

	if (data) {
		memcpy(c->image[block] + offset, data, MIG_PAGE_SIZE);
		c->pages++;
	} else {
		memset(c->image[block] + offset, 0, MIG_PAGE_SIZE);
		c->zeros++;
	}
	c->seen[block][offset / MIG_PAGE_SIZE] = data ? 1 : 2;
	return 0;
}

static int
on_device(void *opaque, const uint8_t *buf, size_t len)
{
	struct capture *c = opaque;

	if (c->dev_len + len > c->dev_cap) {
		size_t cap = c->dev_cap ? c->dev_cap * 2 : 65536;
		uint8_t *np;

		while (cap < c->dev_len + len)
			cap *= 2;
		np = realloc(c->dev, cap);
		if (!np)
			return -ENOMEM;
		c->dev = np;
		c->dev_cap = cap;
	}
	memcpy(c->dev + c->dev_len, buf, len);
	c->dev_len += len;
	return 0;
}

static void
capture_free(struct capture *c)
{
	for (size_t i = 0; i < MAX_BLOCKS; i++) {
		free(c->image[i]);
		free(c->seen[i]);
	}
	free(c->pre);
	free(c->dev);
	memset(c, 0, sizeof(*c));
}

static int
block_index(const struct capture *c, const char *name)
{
	for (size_t i = 0; i < c->nblocks; i++)
		if (strcmp(c->blocks[i].idstr, name) == 0)
			return (int)i;
	return -1;
}

/* ---- QEMU helpers ------------------------------------------------------------ */

static struct hn_qemu *
start_qemu(const char *machine, const char *const *extra, const char *incoming)
{
	struct hn_qemu_opts o = {
		.machine = machine, .memory = "64M", .no_kernel = true,
		.paused = true, .incoming = incoming, .extra = extra,
	};
	struct hn_qemu *q = NULL;

	CHECK(NULL, hn_qemu_start(&o, &q));
	return q;
}

/* Dump all of guest-physical RAM below RAM_SIZE with pmemsave. */
static uint8_t *
pmemsave(struct hn_qemu *q, const char *name)
{
	char path[4096];
	uint8_t *mem;
	int fd;

	assert_int_equal(snap_fmt(path, sizeof(path), "%s/%s",
				  hn_qemu_dir(q), name), 0);
	CHECK(q, hn_qemu_execf(q, NULL, "pmemsave", "{s:I, s:I, s:s}",
			       "val", (json_int_t)0,
			       "size", (json_int_t)RAM_SIZE,
			       "filename", path));
	mem = malloc(RAM_SIZE);
	assert_non_null(mem);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(snap_read_full(fd, mem, RAM_SIZE), 0);
	close(fd);
	unlink(path);
	return mem;
}

/*
 * Migrate @q into a socketpair end at @bandwidth bytes/s and parse the
 * stream into @c.
 */
static void
save_and_parse(struct hn_qemu *q, struct capture *c, uint64_t bandwidth)
{
	static const struct mig_parser_ops ops = {
		.preamble = on_preamble, .ram = on_ram,
		.page = on_page, .device = on_device,
	};
	struct mig_parser *p;
	struct mig_stats st;
	struct snap_err e;
	json_t *ret = NULL, *ram;
	uint8_t *buf;
	int sv[2];
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK(q, hn_qmp_getfd(hn_qemu_qmp(q), sv[1], "mig"));
	close(sv[1]);
	CHECK(q, hn_qemu_execf(q, NULL, "migrate-set-parameters", "{s:I}",
			       "max-bandwidth", (json_int_t)bandwidth));
	CHECK(q, hn_qemu_execf(q, NULL, "migrate", "{s:s}", "uri", "fd:mig"));

	buf = malloc(1 << 20);
	assert_non_null(buf);
	assert_int_equal(mig_parser_open(&p, &ops, c), 0);
	snap_err_clear(&e);
	for (;;) {
		n = read(sv[0], buf, 1 << 20);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		c->bytes += (uint64_t)n;
		if (mig_parser_feed(p, buf, (size_t)n, &e) < 0)
			fail_msg("parse: %s at %llu", e.msg,
				 (unsigned long long)e.offset);
	}
	if (mig_parser_finish(p, &e) < 0)
		fail_msg("parse end: %s", e.msg);
	mig_parser_stats(p, &st);
	assert_int_equal(st.bytes, c->bytes);
	assert_int_equal(st.device_bytes, c->dev_len);
	/* EOF, then the VM description running to the end */
	assert_true(st.vmdesc);
	assert_true(st.eof_offset > st.bytes - c->dev_len);
	assert_int_equal(c->dev[st.eof_offset - (st.bytes - c->dev_len)], 0x00);
	mig_parser_free(p);
	free(buf);
	close(sv[0]);
	CHECK(q, hn_migrate_wait(q, 60000));

	/* QEMU's own account of what it sent */
	CHECK(q, hn_qemu_execf(q, &ret, "query-migrate", NULL));
	ram = json_object_get(ret, "ram");
	assert_non_null(ram);
	assert_int_equal(json_integer_value(json_object_get(ram, "normal")),
			 c->pages);
	assert_int_equal(json_integer_value(json_object_get(ram, "duplicate")),
			 c->zeros);
	json_decref(ret);
}

static int
fd_write(void *opaque, const void *buf, size_t len)
{
	return snap_write_full(*(int *)opaque, buf, len);
}

/*
 * Load a stream synthesized from @c into a fresh QEMU and return its RAM.
 * With @zeros, zero pages go as ZERO records; otherwise they are left out
 * (fresh RAM is zero).
 */
static void
feed(struct hn_qemu *q, const struct capture *c, enum mig_pages_in where,
     bool zeros)
{
	struct mig_synth_params sp = {
		.preamble = c->pre, .preamble_len = c->pre_len,
		.section_id = c->section_id, .instance_id = c->instance_id,
		.version_id = c->version_id,
		.blocks = c->blocks, .nblocks = c->nblocks,
		.pages_in = where,
	};
	struct mig_synth *s;
	struct snap_err e;
	uint64_t sent = 0;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK(q, hn_qmp_getfd(hn_qemu_qmp(q), sv[1], "in"));
	close(sv[1]);
	CHECK(q, hn_qemu_execf(q, NULL, "migrate-incoming", "{s:s}",
			       "uri", "fd:in"));
	if (mig_synth_open(&s, &sp, fd_write, &sv[0], &e) < 0)
		fail_msg("synth: %s", e.msg);
	for (size_t b = 0; b < c->nblocks; b++) {
		for (uint64_t off = 0; off < c->blocks[b].used_length;
		     off += MIG_PAGE_SIZE) {
			uint8_t kind = c->seen[b][off / MIG_PAGE_SIZE];

			if (kind == 1 ||
			    (kind == 0 && !snap_is_zero(c->image[b] + off,
							MIG_PAGE_SIZE))) {
				CHECK(q, mig_synth_page(s, (uint32_t)b, off,
							c->image[b] + off));
				sent++;
			} else if (zeros) {
				CHECK(q, mig_synth_page(s, (uint32_t)b, off, NULL));
			}
		}
	}
	assert_true(sent > PATTERN_PAGES / 2);
	CHECK(q, mig_synth_ram_end(s));
	CHECK(q, mig_synth_device(s, c->dev, c->dev_len));
	CHECK(q, mig_synth_finish(s));
	mig_synth_free(s);
	close(sv[0]);
	CHECK(q, hn_migrate_wait(q, 60000));
}

static uint8_t *
restore(const char *machine, const char *const *extra,
	const struct capture *c, enum mig_pages_in where, bool zeros)
{
	struct hn_qemu *q = start_qemu(machine, extra, "defer");
	uint8_t *mem;

	feed(q, c, where, zeros);
	mem = pmemsave(q, "dst.mem");
	assert_int_equal(hn_qemu_quit(q, 30000), 0);
	hn_qemu_free(q);
	return mem;
}

/* Main RAM as parsed equals QEMU's pmemsave outside the legacy window. */
static void
check_ram_dump(const struct capture *c, const char *main_block,
	       const uint8_t *mem)
{
	int m = block_index(c, main_block);
	const uint8_t *img;

	assert_true(m >= 0);
	assert_int_equal(c->blocks[m].used_length, RAM_SIZE);
	img = c->image[m];
	/* every page of main RAM came in the stream, once at least */
	for (uint64_t pg = 0; pg < RAM_SIZE / MIG_PAGE_SIZE; pg++)
		assert_int_not_equal(c->seen[m][pg], 0);
	assert_memory_equal(img, mem, 0xA0000);
	assert_memory_equal(img + 0x100000, mem + 0x100000,
			    RAM_SIZE - 0x100000);
}

/* The same, and the loader's pattern is where it belongs. */
static void
check_main_ram(const struct capture *c, const char *main_block,
	       const uint8_t *mem)
{
	int m = block_index(c, main_block);
	const uint8_t *img;

	check_ram_dump(c, main_block, mem);
	img = c->image[m];
	assert_memory_equal(img + PATTERN_ADDR, pattern, sizeof(pattern));
	/* the pattern's zero pages came as ZERO, the others as PAGE */
	for (size_t pg = 0; pg < PATTERN_PAGES; pg++)
		assert_int_equal(c->seen[m][PATTERN_ADDR / MIG_PAGE_SIZE + pg],
				 pg % 4 == 3 ? 2 : 1);
}

/* ---- tests ----------------------------------------------------------------------- */

static void
test_save_parse_restore(void **state)
{
	static const char *const names[] = {
		"pc.ram", "/rom@etc/acpi/tables", "pc.bios", "pc.rom",
		"/rom@etc/table-loader", "/rom@etc/acpi/rsdp",
	};
	char loader[4200];
	const char *src_extra[] = { "-nodefaults", "-device", loader, NULL };
	const char *dst_extra[] = { "-nodefaults", NULL };
	struct capture c = { 0 };
	struct hn_qemu *q;
	uint8_t *src_mem, *dst_mem;
	uint64_t sum = 0;
	(void)state;

	assert_int_equal(snap_fmt(loader, sizeof(loader),
				  "loader,file=%s,addr=0x%llx,force-raw=on",
				  pattern_path,
				  (unsigned long long)PATTERN_ADDR), 0);
	q = start_qemu(NULL, src_extra, NULL);
	src_mem = pmemsave(q, "src.mem");
	assert_memory_equal(src_mem + PATTERN_ADDR, pattern, sizeof(pattern));
	save_and_parse(q, &c, 1ull << 40);
	hn_qemu_free(q);

	assert_string_equal(c.machine, "pc-i440fx-7.2");
	assert_int_equal(c.version_id, 4);
	assert_int_equal(c.nblocks, SNAP_ARRAY_SIZE(names));
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(names); i++)
		assert_true(block_index(&c, names[i]) >= 0);
	for (size_t i = 0; i < c.nblocks; i++)
		sum += c.blocks[i].used_length;
	assert_int_equal(c.blocks[block_index(&c, "pc.bios")].used_length,
			 256 * 1024);
	/* a paused guest: every page goes once, as PAGE or ZERO */
	assert_int_equal(c.pages + c.zeros, sum / MIG_PAGE_SIZE);
	assert_true(c.dev_len > 1000);
	check_main_ram(&c, "pc.ram", src_mem);

	/* pages in END, zero pages left out */
	dst_mem = restore(NULL, dst_extra, &c, MIG_PAGES_IN_END, false);
	assert_memory_equal(dst_mem, src_mem, RAM_SIZE);
	free(dst_mem);
	/* pages in START, zero pages as ZERO records */
	dst_mem = restore(NULL, dst_extra, &c, MIG_PAGES_IN_START, true);
	assert_memory_equal(dst_mem, src_mem, RAM_SIZE);
	free(dst_mem);

	free(src_mem);
	capture_free(&c);
}

static void
test_memory_backend(void **state)
{
	static const char *machine = "pc-i440fx-7.2,memory-backend=mem0";
	char loader[4200];
	const char *src_extra[] = {
		"-nodefaults", "-object", "memory-backend-ram,id=mem0,size=64M",
		"-device", loader, NULL,
	};
	const char *dst_extra[] = {
		"-nodefaults", "-object", "memory-backend-ram,id=mem0,size=64M",
		NULL,
	};
	struct capture c = { 0 };
	struct hn_qemu *q;
	uint8_t *src_mem, *dst_mem;
	(void)state;

	assert_int_equal(snap_fmt(loader, sizeof(loader),
				  "loader,file=%s,addr=0x%llx,force-raw=on",
				  pattern_path,
				  (unsigned long long)PATTERN_ADDR), 0);
	q = start_qemu(machine, src_extra, NULL);
	src_mem = pmemsave(q, "src.mem");
	save_and_parse(q, &c, 1ull << 40);
	hn_qemu_free(q);

	assert_true(block_index(&c, "mem0") >= 0);
	assert_true(block_index(&c, "pc.ram") < 0);
	assert_true(block_index(&c, "pc.bios") >= 0);
	check_main_ram(&c, "mem0", src_mem);

	dst_mem = restore(machine, dst_extra, &c, MIG_PAGES_IN_END, false);
	assert_memory_equal(dst_mem, src_mem, RAM_SIZE);
	free(dst_mem);
	free(src_mem);
	capture_free(&c);
}

/* Read console lines until none comes for a while (QEMU is stopped). */
static void
drain(struct hn_qemu *q)
{
	char line[512];

	while (hn_console_line(q, line, sizeof(line), 300) >= 0)
		;
}

/*
 * A live migration of the running test guest, which rewrites pages every
 * tick: several passes, re-sent pages replacing earlier copies, and the
 * guest's filled pages as parsed equal to the stopped source's memory.
 *
 * Not every page: under TCG, QEMU 7.2's own stream (with "exec:cat" just
 * as here) now and then lacks the last writes to the guest's stack page,
 * which the vCPU keeps writing through a TLB entry that dirty tracking
 * does not see; such pages are only counted.
 */
static void
test_live_guest(void **state)
{
	struct hn_qemu_opts o = {
		.memory = "64M",
		.guest_args = "fill=32M seed=99 zero=25 single=20 dirty=512 "
			      "verify=1 tick_ms=10",
	};
	struct capture c = { 0 };
	struct hn_qemu *q = NULL;
	const struct hn_guest *g;
	uint64_t tick, sum = 0, filled = 0, other_diff = 0;
	uint8_t *src_mem;
	int m;
	(void)state;

	CHECK(NULL, hn_qemu_start(&o, &q));
	CHECK(q, hn_wait_ready(q, HN_BOOT_TIMEOUT_MS));
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	/* slow enough that the guest dirties pages during the bulk pass */
	save_and_parse(q, &c, 64ull << 20);
	drain(q);
	src_mem = pmemsave(q, "src.mem");
	g = hn_qemu_guest(q);

	for (size_t i = 0; i < c.nblocks; i++)
		sum += c.blocks[i].used_length;
	/* pages went more than once: PART sections after the bulk pass */
	assert_true(c.pages + c.zeros > sum / MIG_PAGE_SIZE);
	m = block_index(&c, "pc.ram");
	assert_true(m >= 0);
	for (uint64_t pfn = 0; pfn < RAM_SIZE / MIG_PAGE_SIZE; pfn++) {
		const uint8_t *a = c.image[m] + pfn * MIG_PAGE_SIZE;
		const uint8_t *b = src_mem + pfn * MIG_PAGE_SIZE;

		assert_int_not_equal(c.seen[m][pfn], 0);
		if (hn_page_filled(g, pfn)) {
			assert_memory_equal(a, b, MIG_PAGE_SIZE);
			filled++;
		} else if (pfn * MIG_PAGE_SIZE >= 0x100000 ||
			   pfn * MIG_PAGE_SIZE < 0xA0000) {
			other_diff += memcmp(a, b, MIG_PAGE_SIZE) != 0;
		}
	}
	assert_true(filled >= (32u << 20) / MIG_PAGE_SIZE - 64);
	print_message("live: %llu pages, %llu zero pages for %llu in RAM; "
		      "%llu unfilled pages differ from the stopped source\n",
		      (unsigned long long)c.pages, (unsigned long long)c.zeros,
		      (unsigned long long)(sum / MIG_PAGE_SIZE),
		      (unsigned long long)other_diff);
	hn_qemu_free(q);
	free(src_mem);
	capture_free(&c);
}

/*
 * A stopped save of the test guest parses to exactly its memory, and the
 * guest loaded from the synthesized stream goes on counting from where it
 * stopped and finds all of its memory intact.
 */
static void
test_stopped_guest_restore(void **state)
{
	struct hn_qemu_opts o = {
		.memory = "64M",
		.guest_args = "fill=32M seed=7 zero=25 single=20 dirty=64 "
			      "verify=1 tick_ms=20",
	};
	struct capture c = { 0 };
	struct hn_verdict v;
	struct hn_qemu *q = NULL;
	uint64_t tick, last;
	uint8_t *src_mem;
	(void)state;

	CHECK(NULL, hn_qemu_start(&o, &q));
	CHECK(q, hn_wait_ready(q, HN_BOOT_TIMEOUT_MS));
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	CHECK(q, hn_qemu_execf(q, NULL, "stop", NULL));
	drain(q);
	last = hn_qemu_guest(q)->last_tick;
	src_mem = pmemsave(q, "src.mem");
	save_and_parse(q, &c, 1ull << 40);
	hn_qemu_free(q);
	check_ram_dump(&c, "pc.ram", src_mem);

	o.incoming = "defer";
	q = NULL;
	CHECK(NULL, hn_qemu_start(&o, &q));
	feed(q, &c, MIG_PAGES_IN_END, false);
	/* it was stopped by "stop", so it waits for "cont" */
	CHECK(q, hn_qemu_execf(q, NULL, "cont", NULL));
	CHECK(q, hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS));
	assert_int_equal(tick, last + 1);
	assert_int_equal(hn_qemu_guest(q)->ready_lines, 0);
	CHECK(q, hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS));
	assert_true(v.ok);
	assert_int_equal(v.tick, tick);
	assert_int_equal(hn_qemu_quit(q, 30000), 0);
	hn_qemu_free(q);
	free(src_mem);
	capture_free(&c);
}

static int
setup(void **state)
{
	(void)state;
	make_pattern();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_save_parse_restore, hn_teardown),
		cmocka_unit_test_teardown(test_memory_backend, hn_teardown),
		cmocka_unit_test_teardown(test_live_guest, hn_teardown),
		cmocka_unit_test_teardown(test_stopped_guest_restore, hn_teardown),
	};

	hn_require_qemu();
	return cmocka_run_group_tests(tests, setup, NULL);
}
