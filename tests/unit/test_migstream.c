/*
 * tests/unit/test_migstream.c: the QEMU 7.2 migration stream parser and
 * synthesizer in format/migstream.c, on hand-built streams (every record
 * kind and every refusal), on a real stream captured from QEMU 7.2, and in
 * synthesize -> parse round trips.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"

#define REAL_STREAM "tests/fuzz/corpus/migstream/qemu72-i440fx-2m.bin"
#define REAL_STREAM_IGNORE_SHARED \
	"tests/fuzz/corpus/migstream/qemu72-i440fx-ignore-shared-2m.bin"

/* ---- a growable byte buffer and stream builders -------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void
put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void
put8(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void
put16(struct buf *b, uint16_t v)
{
	uint8_t x[2];

	snap_put_be16(x, v);
	put(b, x, 2);
}

static void
put32(struct buf *b, uint32_t v)
{
	uint8_t x[4];

	snap_put_be32(x, v);
	put(b, x, 4);
}

static void
put64(struct buf *b, uint64_t v)
{
	uint8_t x[8];

	snap_put_be64(x, v);
	put(b, x, 8);
}

static void
put_counted(struct buf *b, const char *s)
{
	put8(b, (uint8_t)strlen(s));
	put(b, s, strlen(s));
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

#define RAM_ID 2

/* File header and configuration with machine type @machine. */
static void
b_header(struct buf *b, const char *machine)
{
	put32(b, 0x5145564D);
	put32(b, 3);
	put8(b, 0x07);
	put32(b, (uint32_t)strlen(machine));
	put(b, machine, strlen(machine));
}

static void
b_section_full_header(struct buf *b, uint8_t type, uint32_t id,
		      const char *idstr, uint32_t instance, uint32_t version)
{
	put8(b, type);
	put32(b, id);
	put_counted(b, idstr);
	put32(b, instance);
	put32(b, version);
}

static void
b_ram_start(struct buf *b)
{
	b_section_full_header(b, 0x01, RAM_ID, "ram", 0, 4);
}

static void
b_block(struct buf *b, const char *name, uint64_t len)
{
	put_counted(b, name);
	put64(b, len);
}

static void
b_eos_footer(struct buf *b, uint32_t id)
{
	put64(b, 0x10);
	put8(b, 0x7E);
	put32(b, id);
}

/* A page record; @name NULL means CONTINUE. */
static void
b_page(struct buf *b, uint64_t off, const char *name, uint8_t seed)
{
	uint8_t page[MIG_PAGE_SIZE];

	put64(b, off | 0x08 | (name ? 0 : 0x20));
	if (name)
		put_counted(b, name);
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(seed + i * 7);
	put(b, page, sizeof(page));
}

static void
b_zero(struct buf *b, uint64_t off, const char *name, uint8_t fill)
{
	put64(b, off | 0x02 | (name ? 0 : 0x20));
	if (name)
		put_counted(b, name);
	put8(b, fill);
}

/* Preamble and a RAM START section with blocks A (16 KiB) and B (8 KiB). */
static void
b_prologue(struct buf *b)
{
	b_header(b, "pc-i440fx-7.2");
	b_ram_start(b);
	put64(b, (24 * 1024) | 0x04);
	b_block(b, "A", 16 * 1024);
	b_block(b, "B", 8 * 1024);
	b_eos_footer(b, RAM_ID);
}

/* A FULL section, EOF, and a VMDESC of 31 bytes of JSON. */
static const uint8_t device_tail[] = {
	0x04, 0, 0, 0, 0, 5, 't', 'i', 'm', 'e', 'r', 0, 0, 0, 0, 0, 0, 0, 2,
	1, 0, 6, 0x7E, 0, 0, 0, 0, 0x00,
	0x06, 0, 0, 0, 31,
	'{', '"', 'p', 'a', 'g', 'e', '_', 's', 'i', 'z', 'e', '"', ':', '4',
	'0', '9', '6', ',', '"', 'd', 'e', 'v', 'i', 'c', 'e', 's', '"', ':',
	'[', ']', '}',
};
#define DEVICE_TAIL_EOF 27      /* offset of the EOF byte in device_tail */

/* ---- a collector of parser events ---------------------------------------- */

struct coll {
	struct buf log;         /* every event, serialized */
	struct buf pre;
	struct buf dev;
	char machine[256];
	bool ignore_shared, return_path;
	struct mig_ram ram;
	struct mig_block blocks[8];
	int npre, nram;
	uint64_t pages, zeros;
	int fail_page;          /* fail at this page (1-based), 0: never */
	struct snap_err *fail_err; /* detail the failing callback fills */
	/* a restored image of every block, for round trips */
	uint8_t *image[8];
};

static int
c_preamble(void *opaque, const struct mig_preamble *pre)
{
	struct coll *c = opaque;

	c->npre++;
	put(&c->pre, pre->bytes, pre->len);
	snap_strlcpy(c->machine, pre->machine, sizeof(c->machine));
	c->ignore_shared = pre->ignore_shared;
	c->return_path = pre->return_path;
	put8(&c->log, 'P');
	put(&c->log, pre->bytes, pre->len);
	return 0;
}

static int
c_ram(void *opaque, const struct mig_ram *ram)
{
	struct coll *c = opaque;

	c->nram++;
	c->ram = *ram;
	if (ram->nblocks <= SNAP_ARRAY_SIZE(c->blocks))
		memcpy(c->blocks, ram->blocks, ram->nblocks * sizeof(*ram->blocks));
	put8(&c->log, 'R');
	put(&c->log, ram->blocks, ram->nblocks * sizeof(*ram->blocks));
	return 0;
}

static int
c_page(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	struct coll *c = opaque;

	if (data)
		c->pages++;
	else
		c->zeros++;
	if (c->fail_page && (uint64_t)c->fail_page == c->pages + c->zeros)
		return c->fail_err ? snap_err_set(c->fail_err, -EIO, 0,
						  "disk is on fire") : -EIO;
	put8(&c->log, data ? 'D' : 'Z');
	put32(&c->log, block);
	put64(&c->log, offset);
	if (data)
		put(&c->log, data, MIG_PAGE_SIZE);
	if (block < SNAP_ARRAY_SIZE(c->image) && c->image[block]) {
		if (data)
			memcpy(c->image[block] + offset, data, MIG_PAGE_SIZE);
		else
			memset(c->image[block] + offset, 0, MIG_PAGE_SIZE);
	}
	return 0;
}

static int
c_device(void *opaque, const uint8_t *buf, size_t len)
{
	struct coll *c = opaque;

	put(&c->dev, buf, len);
	return 0;
}

static const struct mig_parser_ops coll_ops = {
	.preamble = c_preamble,
	.ram = c_ram,
	.page = c_page,
	.device = c_device,
};

static void
coll_free(struct coll *c)
{
	buf_free(&c->log);
	buf_free(&c->pre);
	buf_free(&c->dev);
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(c->image); i++)
		free(c->image[i]);
	memset(c, 0, sizeof(*c));
}

static struct mig_stats last_stats;

/*
 * Parse @len bytes in chunks of @chunk (0: all at once) and finish. Returns
 * the first error; *@e gets its detail, last_stats the parser's counters.
 */
static int
parse_chunked(const uint8_t *s, size_t len, size_t chunk, struct coll *c,
	      struct snap_err *e)
{
	struct mig_parser *p = NULL;
	int rc;

	assert_int_equal(mig_parser_open(&p, &coll_ops, c), 0);
	if (chunk == 0)
		chunk = len ? len : 1;
	rc = 0;
	for (size_t o = 0; o < len && rc == 0; o += chunk)
		rc = mig_parser_feed(p, s + o, SNAP_MIN(chunk, len - o), e);
	if (rc == 0)
		rc = mig_parser_finish(p, e);
	mig_parser_stats(p, &last_stats);
	mig_parser_free(p);
	return rc;
}

/* Parse @b whole; expect @code with @what in the message. */
static void
expect_error(const struct buf *b, int code, const char *what)
{
	struct coll c = { 0 };
	struct snap_err e;
	int rc;

	snap_err_clear(&e);
	rc = parse_chunked(b->p, b->len, 0, &c, &e);
	if (rc != code || !strstr(e.msg, what))
		fail_msg("expected %d '%s', got %d '%s'", code, what, rc, e.msg);
	assert_int_equal(e.code, code);
	coll_free(&c);
	/* the same error byte by byte */
	snap_err_clear(&e);
	assert_int_equal(parse_chunked(b->p, b->len, 1, &c, &e), code);
	assert_non_null(strstr(e.msg, what));
	coll_free(&c);
}

/* ---- well-formed streams ------------------------------------------------- */

/* Every page record kind, across START, PART and END sections. */
static void
build_full(struct buf *b)
{
	b_prologue(b);
	put8(b, 0x02);                  /* PART */
	put32(b, RAM_ID);
	b_page(b, 0x1000, "A", 1);
	b_page(b, 0x3000, NULL, 2);     /* CONTINUE: still A */
	b_zero(b, 0x0000, "B", 0);
	b_zero(b, 0x1000, NULL, 0xAB);  /* nonzero fill: a page of 0xAB */
	b_eos_footer(b, RAM_ID);
	put8(b, 0x03);                  /* END */
	put32(b, RAM_ID);
	b_page(b, 0x0000, NULL, 3);     /* CONTINUE across sections: B */
	b_page(b, 0x3000, "A", 4);      /* a re-sent page */
	b_eos_footer(b, RAM_ID);
	put(b, device_tail, sizeof(device_tail));
}

static void
test_parse_every_record(void **state)
{
	struct buf b = { 0 };
	struct coll c = { 0 };
	struct snap_err e;
	const uint8_t *l;
	(void)state;

	build_full(&b);
	assert_int_equal(parse_chunked(b.p, b.len, 0, &c, &e), 0);
	assert_int_equal(c.npre, 1);
	assert_int_equal(c.nram, 1);
	assert_string_equal(c.machine, "pc-i440fx-7.2");
	assert_false(c.ignore_shared);
	/* preamble: header (8) + configuration (1 + 4 + 13) */
	assert_int_equal(c.pre.len, 26);
	assert_memory_equal(c.pre.p, b.p, 26);
	assert_int_equal(c.ram.section_id, RAM_ID);
	assert_int_equal(c.ram.version_id, 4);
	assert_int_equal(c.ram.total, 24 * 1024);
	assert_int_equal(c.ram.nblocks, 2);
	assert_string_equal(c.blocks[0].idstr, "A");
	assert_int_equal(c.blocks[1].used_length, 8 * 1024);
	assert_int_equal(c.pages, 5);   /* 4 PAGE + the 0xAB fill */
	assert_int_equal(c.zeros, 1);
	assert_int_equal(c.dev.len, sizeof(device_tail));
	assert_memory_equal(c.dev.p, device_tail, sizeof(device_tail));
	assert_true(last_stats.vmdesc);
	assert_int_equal(last_stats.eof_offset,
			 b.len - sizeof(device_tail) + DEVICE_TAIL_EOF);
	assert_int_equal(last_stats.device_bytes, sizeof(device_tail));
	assert_int_equal(last_stats.bytes, b.len);
	assert_int_equal(last_stats.sections, 3);

	/* walk the event log: P, R, then pages in order */
	l = c.log.p;
	assert_int_equal(l[0], 'P');
	l += 1 + 26;
	assert_int_equal(l[0], 'R');
	l += 1 + 2 * sizeof(struct mig_block);
	static const struct {
		char kind;
		uint32_t block;
		uint64_t off;
		int first;      /* first data byte, -1 for none */
	} want[] = {
		{ 'D', 0, 0x1000, 1 }, { 'D', 0, 0x3000, 2 },
		{ 'Z', 1, 0x0000, -1 }, { 'D', 1, 0x1000, 0xAB },
		{ 'D', 1, 0x0000, 3 }, { 'D', 0, 0x3000, 4 },
	};
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(want); i++) {
		assert_int_equal(l[0], want[i].kind);
		assert_int_equal(snap_get_be32(l + 1), want[i].block);
		assert_int_equal(snap_get_be64(l + 5), want[i].off);
		l += 13;
		if (want[i].first >= 0) {
			assert_int_equal(l[0], want[i].first);
			if (want[i].first == 0xAB)
				assert_int_equal(l[MIG_PAGE_SIZE - 1], 0xAB);
			else
				assert_int_equal(l[MIG_PAGE_SIZE - 1],
						 (uint8_t)(want[i].first +
							   (MIG_PAGE_SIZE - 1) * 7));
			l += MIG_PAGE_SIZE;
		}
	}
	assert_ptr_equal(l, c.log.p + c.log.len);
	coll_free(&c);
	buf_free(&b);
}

/* Any chunking gives exactly the same events as one feed. */
static void
test_chunking_invariance(void **state)
{
	static const size_t chunks[] = { 1, 2, 3, 7, 8, 9, 13, 4095, 4096, 4097 };
	struct buf b = { 0 };
	struct coll whole = { 0 };
	struct snap_err e;
	(void)state;

	build_full(&b);
	assert_int_equal(parse_chunked(b.p, b.len, 0, &whole, &e), 0);
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(chunks); i++) {
		struct coll c = { 0 };

		assert_int_equal(parse_chunked(b.p, b.len, chunks[i], &c, &e), 0);
		assert_int_equal(c.log.len, whole.log.len);
		assert_memory_equal(c.log.p, whole.log.p, whole.log.len);
		assert_int_equal(c.dev.len, whole.dev.len);
		assert_memory_equal(c.dev.p, whole.dev.p, whole.dev.len);
		coll_free(&c);
	}
	/* pseudo-random chunk sizes */
	uint32_t x = 12345;
	for (int round = 0; round < 20; round++) {
		struct coll c = { 0 };
		struct mig_parser *p;
		size_t o = 0;

		assert_int_equal(mig_parser_open(&p, &coll_ops, &c), 0);
		while (o < b.len) {
			size_t n;

			x = x * 1103515245 + 12345;
			n = SNAP_MIN((size_t)(x >> 16) % 6000 + 1, b.len - o);
			assert_int_equal(mig_parser_feed(p, b.p + o, n, &e), 0);
			o += n;
		}
		assert_int_equal(mig_parser_finish(p, &e), 0);
		assert_int_equal(c.log.len, whole.log.len);
		assert_memory_equal(c.log.p, whole.log.p, whole.log.len);
		mig_parser_free(p);
		coll_free(&c);
	}
	coll_free(&whole);
	buf_free(&b);
}

/* A page contiguous in the fed buffer is passed in place, not copied. */
static const uint8_t *zero_copy_base;
static size_t zero_copy_len;
static int zero_copy_hits;

static int
zc_page(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	(void)opaque;
	(void)block;
	(void)offset;
	if (data && data >= zero_copy_base &&
	    data + MIG_PAGE_SIZE <= zero_copy_base + zero_copy_len)
		zero_copy_hits++;
	return 0;
}

static void
test_pages_in_place(void **state)
{
	struct mig_parser_ops ops = { .page = zc_page };
	struct mig_parser *p;
	struct buf b = { 0 };
	(void)state;

	build_full(&b);
	zero_copy_base = b.p;
	zero_copy_len = b.len;
	zero_copy_hits = 0;
	assert_int_equal(mig_parser_open(&p, &ops, NULL), 0);
	assert_int_equal(mig_parser_feed(p, b.p, b.len, NULL), 0);
	assert_int_equal(mig_parser_finish(p, NULL), 0);
	assert_int_equal(zero_copy_hits, 4);    /* the 0xAB fill is not */
	mig_parser_free(p);
	buf_free(&b);
}

/* x-ignore-shared, uuid and page-bits subsections; return path commands. */
static void
test_configuration_extras(void **state)
{
	struct buf b = { 0 };
	struct coll c = { 0 };
	struct snap_err e;
	size_t pre_len;
	(void)state;

	b_header(&b, "pc-q35-7.2");
	put8(&b, 0x05);
	put_counted(&b, "configuration/target-page-bits");
	put32(&b, 1);
	put32(&b, 12);
	put8(&b, 0x05);
	put_counted(&b, "configuration/capabilities");
	put32(&b, 1);
	put32(&b, 1);
	put_counted(&b, "x-ignore-shared");
	put8(&b, 0x05);
	put_counted(&b, "configuration/uuid");
	put32(&b, 1);
	put(&b, "0123456789abcdef", 16);
	put8(&b, 0x08);                 /* OPEN_RETURN_PATH */
	put16(&b, 1);
	put16(&b, 0);
	put8(&b, 0x08);                 /* PING 1 */
	put16(&b, 2);
	put16(&b, 4);
	put32(&b, 1);
	pre_len = b.len;
	b_ram_start(&b);
	put64(&b, (8 * 1024) | 0x04);
	put_counted(&b, "mem0");
	put64(&b, 4096);
	put64(&b, 0x100000);            /* mr->addr */
	put_counted(&b, "pc.bios");
	put64(&b, 4096);
	put64(&b, 0xfffff000);
	b_eos_footer(&b, RAM_ID);
	put8(&b, 0x03);
	put32(&b, RAM_ID);
	b_page(&b, 0, "pc.bios", 9);
	b_eos_footer(&b, RAM_ID);
	put(&b, device_tail, sizeof(device_tail));

	assert_int_equal(parse_chunked(b.p, b.len, 0, &c, &e), 0);
	assert_string_equal(c.machine, "pc-q35-7.2");
	assert_true(c.ignore_shared);
	assert_true(c.return_path);
	assert_int_equal(c.pre.len, pre_len);
	assert_memory_equal(c.pre.p, b.p, pre_len);
	assert_int_equal(c.ram.nblocks, 2);
	assert_int_equal(c.blocks[0].addr, 0x100000);
	assert_int_equal(c.blocks[1].addr, 0xfffff000);
	assert_int_equal(c.pages, 1);
	coll_free(&c);
	buf_free(&b);
}

/* A stream QEMU 7.2 wrote (pc-i440fx-7.2, -m 2M, paused). */
static int
read_file(const char *path, struct buf *b)
{
	FILE *f = fopen(path, "rb");
	uint8_t tmp[65536];
	size_t n;

	if (!f)
		return -errno;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		put(b, tmp, n);
	fclose(f);
	return 0;
}

static void
test_real_stream(void **state)
{
	static const char *const names[] = {
		"pc.ram", "/rom@etc/acpi/tables", "pc.bios", "pc.rom",
		"/rom@etc/table-loader", "/rom@etc/acpi/rsdp",
	};
	struct buf b = { 0 };
	struct coll c = { 0 };
	struct snap_err e;
	(void)state;

	assert_int_equal(read_file(REAL_STREAM, &b), 0);
	assert_int_equal(parse_chunked(b.p, b.len, 0, &c, &e), 0);
	assert_string_equal(c.machine, "pc-i440fx-7.2");
	assert_int_equal(c.ram.section_id, 2);
	assert_int_equal(c.ram.nblocks, SNAP_ARRAY_SIZE(names));
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(names); i++)
		assert_string_equal(c.blocks[i].idstr, names[i]);
	assert_int_equal(c.blocks[0].used_length, 2 * 1024 * 1024);
	assert_int_equal(c.ram.total, 2629632);
	/* query-migrate said: normal 49, duplicate 593 */
	assert_int_equal(c.pages, 49);
	assert_int_equal(c.zeros, 593);
	assert_int_equal(c.dev.p[0], 0x04);
	/* the stream ends with EOF then the VMDESC JSON */
	assert_true(last_stats.vmdesc);
	assert_int_equal(b.p[last_stats.eof_offset], 0x00);
	assert_int_equal(b.p[last_stats.eof_offset + 1], 0x06);
	assert_int_equal(snap_get_be32(b.p + last_stats.eof_offset + 2),
			 b.len - last_stats.eof_offset - 6);
	coll_free(&c);
	buf_free(&b);
}

/* ---- refusals ------------------------------------------------------------ */

static void
test_err_header(void **state)
{
	struct buf b = { 0 };
	(void)state;

	put32(&b, 0x12345678);
	put32(&b, 3);
	expect_error(&b, SNAP_EMAGIC, "not a migration stream");
	buf_free(&b);

	put32(&b, 0x5145564D);
	put32(&b, 2);
	expect_error(&b, SNAP_ESTREAM, "unsupported migration stream version 2");
	buf_free(&b);

	put32(&b, 0x5145564D);
	put32(&b, 3);
	b_ram_start(&b);
	expect_error(&b, SNAP_ESTREAM, "configuration section missing");
	buf_free(&b);

	put32(&b, 0x5145564D);
	put32(&b, 3);
	put8(&b, 0x07);
	put32(&b, 0x7fffffff);
	expect_error(&b, SNAP_ELIMIT, "machine type length");
	buf_free(&b);
}

static void
test_err_configuration(void **state)
{
	struct buf b = { 0 };
	(void)state;

	b_header(&b, "pc");
	put8(&b, 0x05);
	put_counted(&b, "configuration/whatever");
	expect_error(&b, SNAP_ESTREAM,
		     "unknown configuration subsection 'configuration/whatever'");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x05);
	put_counted(&b, "configuration/capabilities");
	put32(&b, 1);
	put32(&b, 1);
	put_counted(&b, "mapped-ram");
	expect_error(&b, SNAP_ESTREAM, "unsupported capability 'mapped-ram'");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x05);
	put_counted(&b, "configuration/capabilities");
	put32(&b, 1);
	put32(&b, 100000);
	expect_error(&b, SNAP_ELIMIT, "capabilities in the configuration");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x05);
	put_counted(&b, "configuration/target-page-bits");
	put32(&b, 1);
	put32(&b, 16);
	expect_error(&b, SNAP_ESTREAM, "unsupported target page bits 16");
	buf_free(&b);

	/* a subsection after a command is not part of the configuration */
	b_header(&b, "pc");
	put8(&b, 0x08);
	put16(&b, 1);
	put16(&b, 0);
	put8(&b, 0x05);
	expect_error(&b, SNAP_ECORRUPT, "unexpected record type 0x05");
	buf_free(&b);
}

static void
test_err_commands(void **state)
{
	struct buf b = { 0 };
	(void)state;

	b_header(&b, "pc");
	put8(&b, 0x08);
	put16(&b, 3);           /* POSTCOPY_ADVISE */
	put16(&b, 16);
	expect_error(&b, SNAP_ESTREAM, "unsupported postcopy command 3");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x08);
	put16(&b, 8);
	put16(&b, 0);
	expect_error(&b, SNAP_ESTREAM, "unsupported COLO command");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x08);
	put16(&b, 2);           /* PING with a wrong length */
	put16(&b, 9);
	expect_error(&b, SNAP_ECORRUPT, "command 2 has length 9");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x08);
	put16(&b, 77);
	put16(&b, 0);
	expect_error(&b, SNAP_ESTREAM, "unknown command 77");
	buf_free(&b);

	/* endless PINGs: the preamble is bounded */
	b_header(&b, "pc");
	for (int i = 0; i < MIG_PREAMBLE_MAX / 9 + 1; i++) {
		put8(&b, 0x08);
		put16(&b, 2);
		put16(&b, 4);
		put32(&b, 1);
	}
	expect_error(&b, SNAP_ELIMIT, "stream preamble exceeds");
	buf_free(&b);
}

static void
test_err_sections(void **state)
{
	struct buf b = { 0 };
	(void)state;

	b_header(&b, "pc");
	b_section_full_header(&b, 0x01, 3, "block", 0, 1);
	expect_error(&b, SNAP_ESTREAM, "unsupported iterative section 'block'");
	buf_free(&b);

	b_header(&b, "pc");
	b_section_full_header(&b, 0x04, 9, "virtio-mem", 0, 1);
	expect_error(&b, SNAP_ESTREAM, "device section 'virtio-mem' before");
	buf_free(&b);

	b_header(&b, "pc");
	b_section_full_header(&b, 0x01, RAM_ID, "ram", 0, 5);
	expect_error(&b, SNAP_ESTREAM, "unsupported 'ram' section version 5");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x00);
	expect_error(&b, SNAP_ESTREAM, "stream has no 'ram' section");
	buf_free(&b);

	b_header(&b, "pc");
	put8(&b, 0x02);
	expect_error(&b, SNAP_ECORRUPT, "unexpected record type 0x02");
	buf_free(&b);

	b_prologue(&b);
	b_ram_start(&b);
	expect_error(&b, SNAP_ECORRUPT, "second 'ram' START section");
	buf_free(&b);

	b_prologue(&b);
	b_section_full_header(&b, 0x01, 7, "dirty-bitmap", 0, 1);
	expect_error(&b, SNAP_ESTREAM,
		     "unsupported iterative section 'dirty-bitmap'");
	buf_free(&b);

	b_prologue(&b);
	b_section_full_header(&b, 0x04, 0, "timer", 0, 2);
	expect_error(&b, SNAP_ESTREAM, "device section 'timer' before the end");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, 99);
	expect_error(&b, SNAP_ESTREAM, "section id 99 is not the 'ram' section 2");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x08);
	expect_error(&b, SNAP_ESTREAM, "unsupported command inside the ram");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x00);
	expect_error(&b, SNAP_ECORRUPT, "EOF record before the 'ram' END");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x42);
	expect_error(&b, SNAP_ECORRUPT, "unexpected record type 0x42");
	buf_free(&b);

	/* footers */
	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, RAM_ID);
	put64(&b, 0x10);
	put8(&b, 0x7E);
	put32(&b, 3);
	expect_error(&b, SNAP_ECORRUPT,
		     "section footer id 3 does not match 'ram' section 2");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, RAM_ID);
	put64(&b, 0x10);
	put8(&b, 0x04);
	put32(&b, RAM_ID);
	expect_error(&b, SNAP_ECORRUPT, "missing section footer for 'ram'");
	buf_free(&b);

	/* device state that does not start with a section or EOF */
	b_prologue(&b);
	put8(&b, 0x03);
	put32(&b, RAM_ID);
	b_eos_footer(&b, RAM_ID);
	put8(&b, 0x7E);
	expect_error(&b, SNAP_ECORRUPT, "device state begins with record type 0x7e");
	buf_free(&b);
}

static void
test_err_block_list(void **state)
{
	struct buf b = { 0 };
	(void)state;

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x10);
	expect_error(&b, SNAP_ECORRUPT, "does not begin with a block list");
	buf_free(&b);

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x04);
	expect_error(&b, SNAP_ECORRUPT, "announces no memory");
	buf_free(&b);

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x2000 | 0x04);
	b_block(&b, "A", 0x1000);
	b_block(&b, "B", 0x2000);
	expect_error(&b, SNAP_ECORRUPT, "exceed the announced total 0x2000 at block 'B'");
	buf_free(&b);

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x2000 | 0x04);
	b_block(&b, "A", 0x1800);
	expect_error(&b, SNAP_ECORRUPT, "ram block 'A' has invalid length 0x1800");
	buf_free(&b);

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x2000 | 0x04);
	b_block(&b, "A", 0x1000);
	b_block(&b, "A", 0x1000);
	expect_error(&b, SNAP_ECORRUPT, "ram block 'A' listed twice");
	buf_free(&b);

	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x2000 | 0x04);
	put8(&b, 0);
	expect_error(&b, SNAP_ECORRUPT, "empty ram block name");
	buf_free(&b);

	/* more blocks than the limit, each small, with a huge total */
	b_header(&b, "pc");
	b_ram_start(&b);
	put64(&b, 0x100000000000ull | 0x04);
	for (int i = 0; i <= MIG_MAX_BLOCKS; i++) {
		char name[16];

		snprintf(name, sizeof(name), "b%d", i);
		b_block(&b, name, 0x1000);
	}
	expect_error(&b, SNAP_ELIMIT, "more than 1024 ram blocks");
	buf_free(&b);
}

static void
test_err_records(void **state)
{
	static const struct {
		uint64_t hdr;
		int code;
		const char *what;
	} bad[] = {
		{ 0x0040, SNAP_ESTREAM, "unsupported XBZRLE page record" },
		{ 0x0100, SNAP_ESTREAM, "unsupported compressed page record" },
		{ 0x0080, SNAP_ESTREAM, "unsupported RDMA hook record" },
		{ 0x0200, SNAP_ESTREAM, "unsupported multifd flush record" },
		{ 0x0001, SNAP_ECORRUPT, "unknown ram record flags 0x1" },
		{ 0x0800, SNAP_ECORRUPT, "unknown ram record flags 0x800" },
		{ 0x000a, SNAP_ECORRUPT, "unknown ram record flags 0xa" },
		{ 0x0000, SNAP_ECORRUPT, "unknown ram record flags 0x0" },
		{ 0x1010, SNAP_ECORRUPT, "unknown ram record flags 0x10" },
		{ 0x0004, SNAP_ECORRUPT, "second ram block list" },
		{ 0x0028, SNAP_ECORRUPT, "page record continues no previous block" },
	};
	struct buf b = { 0 };
	(void)state;

	for (size_t i = 0; i < SNAP_ARRAY_SIZE(bad); i++) {
		b_prologue(&b);
		put8(&b, 0x02);
		put32(&b, RAM_ID);
		put64(&b, bad[i].hdr);
		expect_error(&b, bad[i].code, bad[i].what);
		buf_free(&b);
	}

	/* page offsets: A is 16 KiB, B 8 KiB */
	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, RAM_ID);
	b_page(&b, 0x4000, "A", 0);
	expect_error(&b, SNAP_ECORRUPT,
		     "page offset 0x4000 beyond ram block 'A' (0x4000 bytes)");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, RAM_ID);
	b_page(&b, 0x3000, "A", 0);
	b_zero(&b, 0xfffffffffffff000ull, NULL, 0);
	expect_error(&b, SNAP_ECORRUPT, "beyond ram block 'A'");
	buf_free(&b);

	b_prologue(&b);
	put8(&b, 0x02);
	put32(&b, RAM_ID);
	b_page(&b, 0, "C\x01", 0);
	expect_error(&b, SNAP_ECORRUPT, "page record for unknown ram block 'C?'");
	buf_free(&b);

	/* the error offset points at the record */
	{
		struct coll c = { 0 };
		struct snap_err e;
		size_t at;

		b_prologue(&b);
		put8(&b, 0x02);
		put32(&b, RAM_ID);
		at = b.len;
		put64(&b, 0x40);
		assert_int_equal(parse_chunked(b.p, b.len, 0, &c, &e),
				 SNAP_ESTREAM);
		assert_int_equal(e.offset, at);
		coll_free(&c);
		buf_free(&b);
	}
}

/*
 * Every proper prefix of a valid stream is a truncated stream, except one
 * that ends with a 0x00 byte inside the device state (a stream without a
 * VM description ends with EOF).
 */
static void
test_err_truncated(void **state)
{
	struct buf b = { 0 };
	struct snap_err e;
	size_t dev_start;
	(void)state;

	build_full(&b);
	dev_start = b.len - sizeof(device_tail);
	for (size_t n = 0; n < b.len; n++) {
		struct coll c = { 0 };
		bool eof_end = n > dev_start && b.p[n - 1] == 0x00;
		int rc;

		snap_err_clear(&e);
		rc = parse_chunked(b.p, n, 0, &c, &e);
		coll_free(&c);
		if (eof_end) {
			assert_int_equal(rc, 0);
			assert_false(last_stats.vmdesc);
			assert_int_equal(last_stats.eof_offset, n - 1);
			continue;
		}
		assert_int_equal(rc, SNAP_ETRUNC);
		assert_int_equal(e.offset, n);
		if (n == dev_start)
			assert_non_null(strstr(e.msg, "without device state"));
		else if (n > dev_start)
			assert_non_null(strstr(e.msg, "device state ends without"));
		else
			assert_non_null(strstr(e.msg, "stream ends inside"));
	}
	buf_free(&b);

	/* a VM description whose length does not reach the end */
	b_prologue(&b);
	put8(&b, 0x03);
	put32(&b, RAM_ID);
	b_eos_footer(&b, RAM_ID);
	put(&b, device_tail, sizeof(device_tail));
	b.p[b.len - 32] = 32;
	expect_error(&b, SNAP_ETRUNC, "device state ends without an EOF record");
	b.p[b.len - 32] = 30;
	expect_error(&b, SNAP_ETRUNC, "device state ends without an EOF record");
	b.p[b.len - 32] = 31;
	{
		struct coll c = { 0 };

		assert_int_equal(parse_chunked(b.p, b.len, 1, &c, &e), 0);
		assert_true(last_stats.vmdesc);
		coll_free(&c);
	}
	buf_free(&b);

	/* a length field that itself holds "00 06" (0x600 bytes of JSON) */
	b_prologue(&b);
	put8(&b, 0x03);
	put32(&b, RAM_ID);
	b_eos_footer(&b, RAM_ID);
	put(&b, device_tail, DEVICE_TAIL_EOF + 1);
	put8(&b, 0x06);
	put32(&b, 0x600);
	put8(&b, '{');
	for (int i = 0; i < 0x600 - 2; i++)
		put8(&b, ' ');
	put8(&b, '}');
	{
		struct coll c = { 0 };

		for (size_t chunk = 0; chunk < 4; chunk++) {
			assert_int_equal(parse_chunked(b.p, b.len, chunk, &c, &e), 0);
			assert_true(last_stats.vmdesc);
			assert_int_equal(last_stats.eof_offset, b.len - 0x600 - 6);
			coll_free(&c);
		}
	}
	buf_free(&b);
}

/* Errors stick; a failing callback stops the parse with its code. */
static void
test_err_sticky_and_callback(void **state)
{
	struct buf b = { 0 };
	struct coll c = { 0 };
	struct mig_parser *p;
	struct snap_err e;
	(void)state;

	build_full(&b);
	c.fail_page = 3;
	assert_int_equal(mig_parser_open(&p, &coll_ops, &c), 0);
	assert_int_equal(mig_parser_feed(p, b.p, b.len, &e), -EIO);
	assert_int_equal(e.code, -EIO);
	assert_int_equal(c.pages + c.zeros, 3);
	snap_err_clear(&e);
	assert_int_equal(mig_parser_feed(p, b.p, 1, &e), -EIO);
	assert_int_equal(e.code, -EIO);
	assert_int_equal(mig_parser_finish(p, &e), -EIO);
	assert_int_equal(c.pages + c.zeros, 3);
	assert_non_null(strstr(e.msg, "stream consumer failed at offset"));
	mig_parser_free(p);
	mig_parser_free(NULL);
	coll_free(&c);

	/* a callback's own detail survives, also in later calls */
	c.fail_page = 2;
	c.fail_err = &e;
	snap_err_clear(&e);
	assert_int_equal(mig_parser_open(&p, &coll_ops, &c), 0);
	assert_int_equal(mig_parser_feed(p, b.p, b.len, &e), -EIO);
	assert_string_equal(e.msg, "disk is on fire");
	snap_err_clear(&e);
	assert_int_equal(mig_parser_finish(p, &e), -EIO);
	assert_string_equal(e.msg, "disk is on fire");
	mig_parser_free(p);
	coll_free(&c);
	buf_free(&b);
}

/* ---- synthesizer --------------------------------------------------------- */

static int
buf_write(void *opaque, const void *d, size_t n)
{
	put(opaque, d, n);
	return 0;
}

static int write_calls;

static int
failing_write(void *opaque, const void *d, size_t n)
{
	(void)opaque;
	(void)d;
	(void)n;
	write_calls++;
	return -ENOSPC;
}

/* Synthesize the pages of @c (a parsed stream) into @out. */
static void
synth_from(const struct coll *c, const struct buf *events,
	   enum mig_pages_in where, struct buf *out)
{
	struct mig_synth_params sp = {
		.preamble = c->pre.p,
		.preamble_len = c->pre.len,
		.section_id = c->ram.section_id,
		.instance_id = c->ram.instance_id,
		.version_id = c->ram.version_id,
		.blocks = c->blocks,
		.nblocks = c->ram.nblocks,
		.pages_in = where,
	};
	struct mig_synth *s;
	struct snap_err e;
	const uint8_t *l, *end;

	assert_int_equal(mig_synth_open(&s, &sp, buf_write, out, &e), 0);
	/* replay the page events of the log */
	l = events->p;
	end = l + events->len;
	while (l < end) {
		switch (l[0]) {
		case 'P':
			l += 1 + c->pre.len;
			break;
		case 'R':
			l += 1 + c->ram.nblocks * sizeof(struct mig_block);
			break;
		case 'D':
			assert_int_equal(mig_synth_page(s, snap_get_be32(l + 1),
							snap_get_be64(l + 5),
							l + 13), 0);
			l += 13 + MIG_PAGE_SIZE;
			break;
		case 'Z':
			assert_int_equal(mig_synth_page(s, snap_get_be32(l + 1),
							snap_get_be64(l + 5),
							NULL), 0);
			l += 13;
			break;
		default:
			fail_msg("bad event %c", l[0]);
		}
	}
	assert_int_equal(mig_synth_ram_end(s), 0);
	/* the device state in two pieces */
	assert_int_equal(mig_synth_device(s, c->dev.p, c->dev.len / 2), 0);
	assert_int_equal(mig_synth_device(s, c->dev.p + c->dev.len / 2,
					  c->dev.len - c->dev.len / 2), 0);
	assert_int_equal(mig_synth_finish(s), 0);
	assert_int_equal(mig_synth_bytes(s), out->len);
	mig_synth_free(s);
}

static void
round_trip(const struct buf *orig)
{
	static const enum mig_pages_in where[] = {
		MIG_PAGES_IN_END, MIG_PAGES_IN_START,
	};
	struct coll a = { 0 };
	struct snap_err e;

	assert_int_equal(parse_chunked(orig->p, orig->len, 0, &a, &e), 0);
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(where); i++) {
		struct buf out = { 0 };
		struct coll b = { 0 };

		synth_from(&a, &a.log, where[i], &out);
		assert_int_equal(parse_chunked(out.p, out.len, 0, &b, &e), 0);
		/* same preamble, blocks, page events and device state */
		assert_int_equal(b.log.len, a.log.len);
		assert_memory_equal(b.log.p, a.log.p, a.log.len);
		assert_int_equal(b.dev.len, a.dev.len);
		assert_memory_equal(b.dev.p, a.dev.p, a.dev.len);
		assert_int_equal(b.ram.section_id, a.ram.section_id);
		assert_int_equal(b.ram.instance_id, a.ram.instance_id);
		assert_int_equal(b.ram.version_id, a.ram.version_id);
		assert_memory_equal(out.p, orig->p, a.pre.len);
		/* byte by byte too */
		coll_free(&b);
		assert_int_equal(parse_chunked(out.p, out.len, 1, &b, &e), 0);
		assert_int_equal(b.log.len, a.log.len);
		assert_memory_equal(b.log.p, a.log.p, a.log.len);
		coll_free(&b);
		buf_free(&out);
	}
	coll_free(&a);
}

static void
test_synth_round_trip(void **state)
{
	struct buf b = { 0 };
	(void)state;

	build_full(&b);
	round_trip(&b);
	buf_free(&b);
	assert_int_equal(read_file(REAL_STREAM, &b), 0);
	round_trip(&b);
	buf_free(&b);
	/* x-ignore-shared: the block list carries addresses */
	assert_int_equal(read_file(REAL_STREAM_IGNORE_SHARED, &b), 0);
	round_trip(&b);
	buf_free(&b);
}

/* The exact bytes of a small synthesized stream, pages in END. */
static void
test_synth_layout(void **state)
{
	struct mig_block blocks[2] = {
		{ .idstr = "pc.ram", .used_length = 0x2000 },
		{ .idstr = "pc.bios", .used_length = 0x1000 },
	};
	struct buf pre = { 0 }, out = { 0 }, want = { 0 };
	struct mig_synth_params sp = {
		.section_id = 5, .instance_id = 0, .version_id = 4,
		.blocks = blocks, .nblocks = 2,
	};
	struct mig_synth *s;
	uint8_t page[MIG_PAGE_SIZE];
	(void)state;

	memset(page, 0x5a, sizeof(page));
	b_header(&pre, "pc-i440fx-7.2");
	sp.preamble = pre.p;
	sp.preamble_len = pre.len;
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, NULL), 0);
	assert_int_equal(mig_synth_page(s, 0, 0x1000, page), 0);
	assert_int_equal(mig_synth_page(s, 0, 0x0000, NULL), 0);
	assert_int_equal(mig_synth_page(s, 1, 0x0000, page), 0);
	assert_int_equal(mig_synth_ram_end(s), 0);
	assert_int_equal(mig_synth_device(s, device_tail, sizeof(device_tail)), 0);
	assert_int_equal(mig_synth_finish(s), 0);
	mig_synth_free(s);

	put(&want, pre.p, pre.len);
	b_section_full_header(&want, 0x01, 5, "ram", 0, 4);
	put64(&want, 0x3000 | 0x04);
	b_block(&want, "pc.ram", 0x2000);
	b_block(&want, "pc.bios", 0x1000);
	b_eos_footer(&want, 5);
	put8(&want, 0x03);
	put32(&want, 5);
	put64(&want, 0x1000 | 0x08);
	put_counted(&want, "pc.ram");
	put(&want, page, sizeof(page));
	put64(&want, 0x0000 | 0x02 | 0x20);
	put8(&want, 0);
	put64(&want, 0x0000 | 0x08);
	put_counted(&want, "pc.bios");
	put(&want, page, sizeof(page));
	b_eos_footer(&want, 5);
	put(&want, device_tail, sizeof(device_tail));
	assert_int_equal(out.len, want.len);
	assert_memory_equal(out.p, want.p, want.len);
	buf_free(&pre);
	buf_free(&out);
	buf_free(&want);
}

static void
test_synth_misuse(void **state)
{
	struct mig_block blocks[2] = {
		{ .idstr = "A", .used_length = 0x2000 },
		{ .idstr = "B", .used_length = 0x1000 },
	};
	struct buf pre = { 0 }, out = { 0 };
	struct mig_synth_params sp = {
		.section_id = 2, .version_id = 4,
		.blocks = blocks, .nblocks = 2,
	};
	struct mig_synth *s;
	struct snap_err e;
	uint8_t page[MIG_PAGE_SIZE] = { 0 };
	(void)state;

	b_header(&pre, "pc-i440fx-7.2");
	sp.preamble = pre.p;
	sp.preamble_len = pre.len;

	/* bad preambles: truncated, trailing garbage, wrong magic */
	sp.preamble_len = pre.len - 1;
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e),
			 SNAP_ECORRUPT);
	sp.preamble_len = pre.len;
	put8(&pre, 0x00);
	sp.preamble = pre.p;
	sp.preamble_len = pre.len;
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e),
			 SNAP_ESTREAM);
	pre.len--;
	sp.preamble_len = pre.len;
	pre.p[0] = 'X';
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e),
			 SNAP_EMAGIC);
	pre.p[0] = 'Q';

	/* bad blocks */
	blocks[1].used_length = 0x1001;
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e),
			 SNAP_EMISUSE);
	blocks[1].used_length = 0x1000;
	snap_strlcpy(blocks[1].idstr, "A", sizeof(blocks[1].idstr));
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e),
			 SNAP_EMISUSE);
	snap_strlcpy(blocks[1].idstr, "B", sizeof(blocks[1].idstr));

	/* call order and page arguments */
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(mig_synth_device(s, "x", 1), SNAP_EMISUSE);
	assert_int_equal(mig_synth_finish(s), SNAP_EMISUSE);
	assert_int_equal(mig_synth_page(s, 2, 0, page), SNAP_EMISUSE);
	assert_int_equal(mig_synth_page(s, 1, 0x1000, page), SNAP_EMISUSE);
	assert_int_equal(mig_synth_page(s, 0, 0x800, page), SNAP_EMISUSE);
	assert_int_equal(mig_synth_page(s, 0, 0x1000, page), 0);
	assert_int_equal(mig_synth_ram_end(s), 0);
	assert_int_equal(mig_synth_page(s, 0, 0, page), SNAP_EMISUSE);
	assert_int_equal(mig_synth_ram_end(s), SNAP_EMISUSE);
	assert_int_equal(mig_synth_device(s, device_tail, sizeof(device_tail)), 0);
	assert_int_equal(mig_synth_finish(s), 0);
	assert_int_equal(mig_synth_device(s, "x", 1), SNAP_EMISUSE);
	mig_synth_free(s);
	mig_synth_free(NULL);

	/* a failing write sticks */
	write_calls = 0;
	assert_int_equal(mig_synth_open(&s, &sp, failing_write, NULL, &e), 0);
	assert_int_equal(mig_synth_ram_end(s), 0);
	assert_int_equal(mig_synth_finish(s), -ENOSPC);
	assert_int_equal(mig_synth_finish(s), -ENOSPC);
	assert_int_equal(mig_synth_device(s, "x", 1), -ENOSPC);
	assert_int_equal(write_calls, 1);
	mig_synth_free(s);

	buf_free(&pre);
	buf_free(&out);
}

/* Large page streams flush through the output buffer correctly. */
static void
test_synth_large(void **state)
{
	struct mig_block blocks[1] = {
		{ .idstr = "pc.ram", .used_length = 4u << 20 },
	};
	struct buf pre = { 0 }, out = { 0 }, dev = { 0 };
	struct mig_synth_params sp = {
		.section_id = 2, .version_id = 4,
		.blocks = blocks, .nblocks = 1,
		.pages_in = MIG_PAGES_IN_START,
	};
	struct mig_synth *s;
	struct coll c = { 0 };
	struct snap_err e;
	uint8_t page[MIG_PAGE_SIZE];
	(void)state;

	b_header(&pre, "pc-i440fx-7.2");
	sp.preamble = pre.p;
	sp.preamble_len = pre.len;
	/* device state bigger than the output buffer */
	put(&dev, device_tail, sizeof(device_tail));
	for (int i = 0; i < 1200000; i++)
		put8(&dev, (uint8_t)(i * 31 + (i >> 9)));
	put8(&dev, 0x00);       /* EOF */
	assert_int_equal(mig_synth_open(&s, &sp, buf_write, &out, &e), 0);
	for (uint64_t off = 0; off < blocks[0].used_length; off += MIG_PAGE_SIZE) {
		memset(page, (int)(off >> 12), sizeof(page));
		assert_int_equal(mig_synth_page(s, 0, off, page), 0);
	}
	assert_int_equal(mig_synth_ram_end(s), 0);
	assert_int_equal(mig_synth_device(s, dev.p, 10), 0);
	assert_int_equal(mig_synth_device(s, dev.p + 10, dev.len - 10), 0);
	assert_int_equal(mig_synth_finish(s), 0);
	mig_synth_free(s);

	c.image[0] = calloc(1, blocks[0].used_length);
	assert_non_null(c.image[0]);
	assert_int_equal(parse_chunked(out.p, out.len, 65536, &c, &e), 0);
	assert_int_equal(c.pages, 1024);
	for (uint64_t off = 0; off < blocks[0].used_length; off += MIG_PAGE_SIZE)
		assert_int_equal(c.image[0][off + 17], (uint8_t)(off >> 12));
	assert_int_equal(c.dev.len, dev.len);
	assert_memory_equal(c.dev.p, dev.p, dev.len);
	coll_free(&c);
	buf_free(&pre);
	buf_free(&out);
	buf_free(&dev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_every_record),
		cmocka_unit_test(test_chunking_invariance),
		cmocka_unit_test(test_pages_in_place),
		cmocka_unit_test(test_configuration_extras),
		cmocka_unit_test(test_real_stream),
		cmocka_unit_test(test_err_header),
		cmocka_unit_test(test_err_configuration),
		cmocka_unit_test(test_err_commands),
		cmocka_unit_test(test_err_sections),
		cmocka_unit_test(test_err_block_list),
		cmocka_unit_test(test_err_records),
		cmocka_unit_test(test_err_truncated),
		cmocka_unit_test(test_err_sticky_and_callback),
		cmocka_unit_test(test_synth_round_trip),
		cmocka_unit_test(test_synth_layout),
		cmocka_unit_test(test_synth_misuse),
		cmocka_unit_test(test_synth_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
