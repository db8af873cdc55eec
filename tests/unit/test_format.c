/*
 * tests/unit/test_format.c: the snapshot file format: writer and reader
 * round trips (random pages, rewrites, zero pages, device state,
 * metadata), holes on disk, the committed golden version-1 files, corrupt
 * files with the exact error each must give, and injected I/O faults that
 * must leave nothing behind.
 *
 * Scratch files go to a directory under $SNAP_BUILD (a real disk, where
 * O_DIRECT works) and, for the buffered fallback, under /dev/shm (tmpfs).
 *
 * "test_format --write-golden DIR" regenerates the golden files.
 */
#include <dirent.h>
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
#include <xxhash.h>
#include <zstd.h>

#include "common/err.h"
#include "common/util.h"
#include "format/format.h"

#define PS 4096u

/* What the committed golden files must keep giving. */
#define GOLDEN_BASIC_ROOT   "db53b5f2a2cc6b22a4a5135580245969"
#define GOLDEN_BASIC_SIZE   178000
#define GOLDEN_MINIMAL_ROOT "0b0c99e22606c80065f510785dd1eea2"
#define GOLDEN_MINIMAL_SIZE 21128

static char disk_dir[4096];
static char shm_dir[4096];

/* ---- helpers -------------------------------------------------------- */

static uint64_t
xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* Deterministic page contents for (block, page, version). */
static void
fill_page(uint8_t *p, size_t len, unsigned block, uint64_t page, unsigned ver)
{
	uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)block << 48) ^
		     (page << 8) ^ ver;
	xs(&s);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xs(&s);
		memcpy(p + i, &v, 8);
	}
}

static void
rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[8192];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* Number of entries in @dir besides . and .. */
static int
dir_count(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
clean_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[8192];

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
}

static int
setup_dirs(void **state)
{
	const char *b = getenv("SNAP_BUILD");

	(void)state;
	snprintf(disk_dir, sizeof(disk_dir), "%s/tmp-fmt-XXXXXX",
		 b != NULL ? b : "build");
	if (mkdtemp(disk_dir) == NULL) {
		snprintf(disk_dir, sizeof(disk_dir), "/var/tmp/tmp-fmt-XXXXXX");
		if (mkdtemp(disk_dir) == NULL)
			return -1;
	}
	snprintf(shm_dir, sizeof(shm_dir), "/dev/shm/tmp-fmt-XXXXXX");
	if (mkdtemp(shm_dir) == NULL)
		snprintf(shm_dir, sizeof(shm_dir), "%s", disk_dir);
	return 0;
}

static int
teardown_dirs(void **state)
{
	(void)state;
	if (getenv("FMT_TEST_KEEP") != NULL)
		return 0;
	rm_rf(disk_dir);
	if (strcmp(shm_dir, disk_dir) != 0)
		rm_rf(shm_dir);
	return 0;
}

/* ---- the model: what a file must decode to --------------------------- */

struct mblock {
	const char *idstr;
	uint64_t npages;
	bool main;
	uint8_t *data;      /* npages * PS */
	uint8_t *present;
};

struct model {
	struct mblock b[3];
	unsigned nb;
	uint8_t *ds;
	size_t dslen;
};

static void
model_init(struct model *m, const uint64_t *npages, unsigned nb)
{
	static const char *const names[3] = { "pc.ram", "vga.vram",
					      "/rom@etc/acpi/tables" };

	memset(m, 0, sizeof(*m));
	m->nb = nb;
	for (unsigned i = 0; i < nb; i++) {
		m->b[i].idstr = names[i];
		m->b[i].npages = npages[i];
		m->b[i].main = i == 0;
		m->b[i].data = calloc(npages[i], PS);
		m->b[i].present = calloc(npages[i], 1);
		assert_non_null(m->b[i].data);
		assert_non_null(m->b[i].present);
	}
}

static void
model_free(struct model *m)
{
	for (unsigned i = 0; i < m->nb; i++) {
		free(m->b[i].data);
		free(m->b[i].present);
	}
	free(m->ds);
}

static const char spec_json[] = "{\"name\":\"g1\",\"memory\":\"4M\"}";
static const char argv_json[] = "[\"qemu-system-x86_64\",\"-m\",\"4\"]";

static void
meta_for(struct fmt_meta *me)
{
	memset(me, 0, sizeof(*me));
	me->guest_name = "g1";
	me->snapshot_name = "s1";
	me->guest_spec = spec_json;
	me->qemu_version = "7.2.0";
	me->machine_type = "pc-i440fx-7.2";
	me->qemu_argv = argv_json;
	me->capabilities = "[]";
	me->disks_policy = "none";
	me->created_ns = 1700000000123456789ull;
	me->save_duration_ns = 2500000000ull;
	me->downtime_ns = 30000000ull;
	me->save_mode = FMT_SAVE_LIVE;
}

/*
 * Write a file named @name in @dir from a random scenario with @seed:
 * ascending passes with rewrites and zero pages, the model updated to match.
 */
static struct fmt_writer *
write_random(struct model *m, const char *dir, const char *name,
	     uint64_t seed, const struct fmt_writer_opts *opts)
{
	struct fmt_writer *w = NULL;
	struct fmt_block_decl d[3];
	struct snap_err e;
	struct fmt_meta me;
	uint8_t page[PS];
	uint64_t s = seed;
	int rc;

	rc = fmt_writer_open(&w, dir, name, opts, &e);
	assert_int_equal(rc, 0);
	for (unsigned i = 0; i < m->nb; i++) {
		d[i].idstr = m->b[i].idstr;
		d[i].length = m->b[i].npages * PS;
		d[i].page_size = PS;
		d[i].main = m->b[i].main;
	}
	assert_int_equal(fmt_writer_declare(w, d, m->nb, &e), 0);
	/* Pass 1: ascending, ~30% zero, runs of zeros and single ones. */
	for (unsigned b = 0; b < m->nb; b++) {
		for (uint64_t p = 0; p < m->b[b].npages; p++) {
			uint64_t r = xs(&s) % 100;
			if (r < 25) {
				assert_int_equal(fmt_writer_put_zero(w, b, p, &e), 0);
				continue;
			}
			fill_page(page, PS, b, p, 1);
			assert_int_equal(fmt_writer_put_page(w, b, p, page, &e), 0);
			memcpy(m->b[b].data + p * PS, page, PS);
			m->b[b].present[p] = 1;
		}
	}
	/* Pass 2: random re-sends, some of them zero now, some all-zero data. */
	for (int k = 0; k < 300; k++) {
		unsigned b = (unsigned)(xs(&s) % m->nb);
		uint64_t p = xs(&s) % m->b[b].npages;
		uint64_t r = xs(&s) % 10;

		if (r < 2) {
			assert_int_equal(fmt_writer_put_zero(w, b, p, &e), 0);
			memset(m->b[b].data + p * PS, 0, PS);
			m->b[b].present[p] = 0;
		} else if (r == 2) {
			memset(page, 0, PS);
			assert_int_equal(fmt_writer_put_page(w, b, p, page, &e), 0);
			memset(m->b[b].data + p * PS, 0, PS);
			m->b[b].present[p] = 0;
		} else {
			fill_page(page, PS, b, p, 2 + (unsigned)k);
			assert_int_equal(fmt_writer_put_page(w, b, p, page, &e), 0);
			memcpy(m->b[b].data + p * PS, page, PS);
			m->b[b].present[p] = 1;
		}
	}
	/* Device state in pieces of varied sizes: compressible text. */
	m->dslen = 200000;
	m->ds = malloc(m->dslen);
	assert_non_null(m->ds);
	for (size_t i = 0; i < m->dslen; i++)
		m->ds[i] = (uint8_t)("device-state "[i % 13] ^ (i / 4096));
	for (size_t off = 0; off < m->dslen;) {
		size_t want = (size_t)(xs(&s) % 30000);
		size_t n = SNAP_MIN(m->dslen - off, want);
		assert_int_equal(fmt_writer_devstate(w, m->ds + off, n, &e), 0);
		off += n;
	}
	meta_for(&me);
	assert_int_equal(fmt_writer_set_meta(w, &me, &e), 0);
	assert_int_equal(fmt_writer_set_entry(w, "qemu.preamble", "QEVM\0\0\0\3",
					      8, &e), 0);
	assert_int_equal(fmt_writer_set_entry(w, "ram.section", "ram", 3, &e), 0);
	assert_int_equal(fmt_writer_set_entry(w, "empty", "", 0, &e), 0);
	/* Replacing an entry keeps one of that name. */
	assert_int_equal(fmt_writer_set_entry(w, "ram.section", "ram\0\0\0\0\4",
					      8, &e), 0);
	return w;
}

/* Check that the file at @path decodes to exactly @m. */
static void
check_model(const struct model *m, const char *path)
{
	struct fmt_reader *r = NULL;
	struct snap_err e;
	struct fmt_stat st;
	struct fmt_verify_result vr;
	const struct fmt_meta *me;
	uint8_t page[PS];
	uint64_t present = 0;
	const void *data;
	size_t len;
	int rc;

	rc = fmt_reader_open(&r, path, &e);
	if (rc != 0)
		fail_msg("open %s: %s", path, snap_err_text(&e, rc));
	fmt_reader_stat(r, &st);
	assert_int_equal(st.version_major, 1);
	assert_int_equal(st.nblocks, m->nb);
	for (unsigned b = 0; b < m->nb; b++) {
		struct fmt_block_info bi;
		uint64_t bp = 0;

		assert_int_equal(fmt_reader_block(r, b, &bi), 0);
		assert_string_equal(bi.idstr, m->b[b].idstr);
		assert_int_equal(bi.length, m->b[b].npages * PS);
		assert_int_equal(bi.page_size, PS);
		assert_int_equal(bi.main, m->b[b].main);
		if (bi.main)
			assert_int_equal(bi.file_offset, 0);
		assert_int_equal(fmt_reader_block_index(r, m->b[b].idstr), (int)b);
		for (uint64_t p = 0; p < m->b[b].npages; p++) {
			assert_int_equal(fmt_reader_page_present(r, b, p),
					 m->b[b].present[p]);
			bp += m->b[b].present[p];
			rc = fmt_reader_read_page(r, b, p, page, &e);
			assert_int_equal(rc, 0);
			assert_memory_equal(page, m->b[b].data + p * PS, PS);
		}
		assert_int_equal(bi.present, bp);
		present += bp;
		/* Runs of pages, of sizes that do and do not divide the block,
		 * up to the largest one read allows. */
		for (size_t k = 0; k < 4; k++) {
			static const uint64_t runs[] = { 3, 64, 100,
							 FMT_READ_MAX / PS };
			static uint8_t big[FMT_READ_MAX];
			uint64_t np = m->b[b].npages;

			for (uint64_t p = 0; p < np; p += runs[k]) {
				uint64_t n = SNAP_MIN(runs[k], np - p);

				memset(big, 0xee, sizeof(big));
				assert_int_equal(fmt_reader_read_pages(r, b, p, n,
								       big, &e), 0);
				assert_memory_equal(big, m->b[b].data + p * PS,
						    n * PS);
			}
		}
		assert_int_equal(fmt_reader_read_pages(r, b, m->b[b].npages - 1,
						       2, page, &e), -ERANGE);
		if (m->b[b].npages > FMT_READ_MAX / PS)
			assert_int_equal(fmt_reader_read_pages(r, b, 0,
							       FMT_READ_MAX / PS + 1,
							       page, &e), -EINVAL);
	}
	assert_int_equal(st.present_pages, present);
	/* The same pages through a reader that never holds the table: each
	 * read fetches its entries from the file. */
	{
		static uint8_t big[100 * PS];
		struct fmt_reader *r2 = NULL;

		assert_int_equal(fmt_reader_open_flags(&r2, path,
						       FMT_OPEN_DEFER_SUMS, &e), 0);
		for (unsigned b = 0; b < m->nb; b++) {
			for (uint64_t p = 0; p < m->b[b].npages; p += 100) {
				uint64_t n = SNAP_MIN((uint64_t)100,
						      m->b[b].npages - p);

				rc = fmt_reader_read_pages(r2, b, p, n, big, &e);
				if (rc != 0)
					fail_msg("deferred read of block %u page "
						 "%llu: %s", b,
						 (unsigned long long)p, e.msg);
				assert_memory_equal(big, m->b[b].data + p * PS,
						    n * PS);
			}
		}
		fmt_reader_free(r2);
	}
	assert_int_equal(st.devstate_raw, m->dslen);
	me = fmt_reader_meta(r);
	assert_string_equal(me->guest_name, "g1");
	assert_string_equal(me->snapshot_name, "s1");
	assert_string_equal(me->guest_spec, spec_json);
	assert_string_equal(me->qemu_version, "7.2.0");
	assert_string_equal(me->machine_type, "pc-i440fx-7.2");
	assert_string_equal(me->qemu_argv, argv_json);
	assert_string_equal(me->capabilities, "[]");
	assert_string_equal(me->parent, "");
	assert_string_equal(me->disks_policy, "none");
	assert_true(me->created_ns == 1700000000123456789ull);
	assert_true(me->save_duration_ns == 2500000000ull);
	assert_true(me->downtime_ns == 30000000ull);
	assert_int_equal(me->save_mode, FMT_SAVE_LIVE);
	assert_int_equal(st.nentries, 3);
	assert_int_equal(fmt_reader_entry(r, "qemu.preamble", &data, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(data, "QEVM\0\0\0\3", 8);
	assert_int_equal(fmt_reader_entry(r, "ram.section", &data, &len), 0);
	assert_int_equal(len, 8);
	assert_memory_equal(data, "ram\0\0\0\0\4", 8);
	assert_int_equal(fmt_reader_entry(r, "empty", &data, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(fmt_reader_entry(r, "nope", &data, &len), -ENOENT);
	rc = fmt_reader_verify(r, NULL, &vr, &e);
	if (rc != 0)
		fail_msg("verify %s: %s", path, snap_err_text(&e, rc));
	assert_int_equal(vr.pages_checked, present);
	assert_int_equal(vr.bad_pages, 0);
	fmt_reader_free(r);
}

struct dsbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

static int
ds_sink(void *ctx, const void *buf, size_t len)
{
	struct dsbuf *d = ctx;

	if (d->len + len > d->cap)
		return -EFBIG;
	memcpy(d->p + d->len, buf, len);
	d->len += len;
	return 0;
}

static void
check_devstate(const struct model *m, const char *path)
{
	struct fmt_reader *r = NULL;
	struct snap_err e;
	struct dsbuf d = { malloc(m->dslen + 1), 0, m->dslen + 1 };

	assert_non_null(d.p);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_devstate(r, ds_sink, &d, &e), 0);
	assert_int_equal(d.len, m->dslen);
	assert_memory_equal(d.p, m->ds, m->dslen);
	fmt_reader_free(r);
	free(d.p);
}

/* ---- tests: round trips ---------------------------------------------- */

static void
roundtrip_in(const char *dir, uint64_t seed, const struct fmt_writer_opts *o,
	     enum fmt_io_mode want_mode)
{
	static const uint64_t np[3] = { 1024, 96, 5 };
	struct model m;
	struct fmt_writer *w;
	struct fmt_summary sum;
	struct fmt_reader *r;
	struct fmt_stat st;
	struct snap_err e;
	char path[8192];
	int rc;

	model_init(&m, np, 3);
	w = write_random(&m, dir, "rt.snap", seed, o);
	assert_int_equal(fmt_writer_io_mode(w), want_mode);
	rc = fmt_writer_commit(w, &sum, &e);
	if (rc != 0)
		fail_msg("commit: %s", snap_err_text(&e, rc));
	fmt_writer_free(w);
	snprintf(path, sizeof(path), "%s/rt.snap", dir);
	assert_string_equal(sum.path, path);
	assert_int_equal(dir_count(dir), 1);
	check_model(&m, path);
	check_devstate(&m, path);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	fmt_reader_stat(r, &st);
	assert_memory_equal(st.root.bytes, sum.root.bytes, 16);
	assert_int_equal(st.present_pages, sum.present_pages);
	assert_int_equal(st.apparent_size, sum.apparent_size);
	/* QEMU maps the main block: the file is at least that long. */
	assert_true(st.apparent_size > np[0] * PS);
	fmt_reader_free(r);
	model_free(&m);
	clean_dir(dir);
}

static void
test_roundtrip_direct(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 3; seed++)
		roundtrip_in(disk_dir, seed * 7919, NULL, FMT_IO_DIRECT);
}

static void
test_roundtrip_small_runs(void **state)
{
	/* Tiny runs and queue: many writes in flight over the same pages. */
	struct fmt_writer_opts o = { .queue_depth = 2, .run_size = 8192,
				     .gap_fill_pages = UINT32_MAX,
				     .align = 4096 };
	(void)state;
	roundtrip_in(disk_dir, 4242, &o, FMT_IO_DIRECT);
}

static void
test_roundtrip_buffered(void **state)
{
	struct fmt_writer_opts o = { .flags = FMT_W_BUFFERED };
	(void)state;
	roundtrip_in(disk_dir, 99, &o, FMT_IO_BUFFERED);
}

static void
test_roundtrip_tmpfs_fallback(void **state)
{
	int fd;
	char p[8192];

	(void)state;
	/* Only meaningful where tmpfs refuses O_DIRECT. */
	snprintf(p, sizeof(p), "%s/probe", shm_dir);
	fd = open(p, O_CREAT | O_WRONLY | O_DIRECT, 0600);
	if (fd >= 0) {
		close(fd);
		unlink(p);
		roundtrip_in(shm_dir, 5, NULL, FMT_IO_DIRECT);
		return;
	}
	roundtrip_in(shm_dir, 5, NULL, FMT_IO_FALLBACK);
}

/* ---- tests: holes --------------------------------------------------- */

static uint64_t
data_bytes_in(int fd, uint64_t from, uint64_t to)
{
	uint64_t total = 0;
	off_t pos = (off_t)from;

	for (;;) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;
		if (d < 0 || (uint64_t)d >= to)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if ((uint64_t)h > to)
			h = (off_t)to;
		total += (uint64_t)(h - d);
		pos = h;
	}
	return total;
}

static void
test_zero_pages_are_holes(void **state)
{
	struct fmt_writer *w;
	struct fmt_block_decl d = { "pc.ram", 2048 * (uint64_t)PS, PS, true };
	struct fmt_writer_opts o = { .gap_fill_pages = UINT32_MAX };
	struct fmt_summary sum;
	struct snap_err e;
	uint8_t page[PS], buf[PS];
	char path[8192];
	struct fmt_reader *r;
	int fd;

	(void)state;
	assert_int_equal(fmt_writer_open(&w, disk_dir, "holes.snap", &o, &e), 0);
	assert_int_equal(fmt_writer_declare(w, &d, 1, &e), 0);
	/* Data in pages 0..15 and 1000..1003; 500 becomes zero later. */
	for (uint64_t p = 0; p < 16; p++) {
		fill_page(page, PS, 0, p, 1);
		assert_int_equal(fmt_writer_put_page(w, 0, p, page, &e), 0);
	}
	fill_page(page, PS, 0, 500, 1);
	assert_int_equal(fmt_writer_put_page(w, 0, 500, page, &e), 0);
	for (uint64_t p = 1000; p < 1004; p++) {
		fill_page(page, PS, 0, p, 1);
		assert_int_equal(fmt_writer_put_page(w, 0, p, page, &e), 0);
	}
	/* Page 500 went to disk (another run followed); now it is zero. */
	assert_int_equal(fmt_writer_put_zero(w, 0, 500, &e), 0);
	/* Page 3 was data in the first run; it becomes all-zero data. */
	memset(page, 0, PS);
	assert_int_equal(fmt_writer_put_page(w, 0, 3, page, &e), 0);
	for (uint64_t p = 16; p < 1000; p++)
		if (p != 500)
			assert_int_equal(fmt_writer_put_zero(w, 0, p, &e), 0);
	assert_int_equal(fmt_writer_commit(w, &sum, &e), 0);
	fmt_writer_free(w);
	assert_int_equal(sum.present_pages, 16 - 1 + 4);

	snprintf(path, sizeof(path), "%s/holes.snap", disk_dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	/* The main block holds data only in 0..15 (3 may be zeros) and 1000..1003. */
	assert_true(data_bytes_in(fd, 16 * PS, 1000 * PS) == 0);
	assert_true(data_bytes_in(fd, 1004 * PS, 2048 * PS) == 0);
	assert_true(data_bytes_in(fd, 1000 * PS, 1004 * PS) == 4 * PS);
	close(fd);
	/* Allocated: the pages plus metadata, far below the 8 MiB block. */
	assert_true(sum.allocated_size < 64 * PS + 64 * 1024);
	assert_true(sum.apparent_size > 2048 * (uint64_t)PS);

	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_page_present(r, 0, 500), 0);
	assert_int_equal(fmt_reader_page_present(r, 0, 3), 0);
	assert_int_equal(fmt_reader_read_page(r, 0, 500, buf, &e), 0);
	memset(page, 0, PS);
	assert_memory_equal(buf, page, PS);
	/* Read the bytes QEMU would map, not through the reader. */
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, buf, PS, 500 * PS), PS);
	assert_memory_equal(buf, page, PS);
	assert_int_equal(pread(fd, buf, PS, 3 * PS), PS);
	assert_memory_equal(buf, page, PS);
	close(fd);
	fmt_reader_free(r);
	clean_dir(disk_dir);
}

/*
 * A page written to disk, re-sent into the open run and then zeroed must
 * read as zero: the old data on disk must not show through.
 */
static void
test_zero_after_resend(void **state)
{
	struct fmt_writer *w;
	struct fmt_block_decl d = { "pc.ram", 256 * (uint64_t)PS, PS, true };
	struct fmt_writer_opts o = { .run_size = 64 * PS };
	struct snap_err e;
	uint8_t page[PS], buf[PS], zero[PS] = { 0 };
	char path[8192];
	int fd;

	(void)state;
	assert_int_equal(fmt_writer_open(&w, disk_dir, "rz.snap", &o, &e), 0);
	assert_int_equal(fmt_writer_declare(w, &d, 1, &e), 0);
	for (uint64_t p = 4; p < 8; p++) {
		fill_page(page, PS, 0, p, 1);
		assert_int_equal(fmt_writer_put_page(w, 0, p, page, &e), 0);
	}
	fill_page(page, PS, 0, 100, 1);        /* sends the run 4..7 */
	assert_int_equal(fmt_writer_put_page(w, 0, 100, page, &e), 0);
	for (uint64_t p = 4; p < 8; p++) {     /* re-sent: the open run */
		fill_page(page, PS, 0, p, 2);
		assert_int_equal(fmt_writer_put_page(w, 0, p, page, &e), 0);
	}
	assert_int_equal(fmt_writer_put_zero(w, 0, 7, &e), 0);  /* last */
	assert_int_equal(fmt_writer_put_zero(w, 0, 5, &e), 0);  /* middle */
	assert_int_equal(fmt_writer_commit(w, NULL, &e), 0);
	fmt_writer_free(w);

	snprintf(path, sizeof(path), "%s/rz.snap", disk_dir);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (uint64_t p = 4; p < 8; p++) {
		assert_int_equal(pread(fd, buf, PS, (off_t)(p * PS)), PS);
		if (p == 5 || p == 7) {
			assert_memory_equal(buf, zero, PS);
		} else {
			fill_page(page, PS, 0, p, 2);
			assert_memory_equal(buf, page, PS);
		}
	}
	close(fd);
	clean_dir(disk_dir);
}

/* A block of 2 MiB pages next to a 4 KiB one: alignment and checks. */
static void
test_huge_pages(void **state)
{
	const uint32_t hps = 2u << 20;
	struct fmt_block_decl d[2] = { { "pc.ram", 8 * (uint64_t)PS, PS, true },
				       { "huge", 4 * (uint64_t)hps, hps, false } };
	struct fmt_writer_opts o = { .align = 4096 };
	struct fmt_writer *w;
	struct fmt_reader *r;
	struct fmt_block_info bi;
	struct fmt_verify_result vr;
	struct snap_err e;
	uint8_t *page = malloc(hps), *buf = malloc(hps);
	char path[8192];

	(void)state;
	assert_non_null(page);
	assert_non_null(buf);
	assert_int_equal(fmt_writer_open(&w, disk_dir, "h.snap", &o, &e), 0);
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), 0);
	fill_page(page, PS, 0, 1, 1);
	assert_int_equal(fmt_writer_put_page(w, 0, 1, page, &e), 0);
	fill_page(page, hps, 1, 0, 1);
	assert_int_equal(fmt_writer_put_page(w, 1, 0, page, &e), 0);
	fill_page(page, hps, 1, 2, 1);
	assert_int_equal(fmt_writer_put_page(w, 1, 2, page, &e), 0);
	assert_int_equal(fmt_writer_commit(w, NULL, &e), 0);
	fmt_writer_free(w);

	snprintf(path, sizeof(path), "%s/h.snap", disk_dir);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_block(r, 1, &bi), 0);
	assert_int_equal(bi.page_size, hps);
	assert_int_equal(bi.file_offset % hps, 0);
	assert_int_equal(bi.present, 2);
	assert_int_equal(fmt_reader_read_page(r, 1, 2, buf, &e), 0);
	assert_memory_equal(buf, page, hps);
	assert_int_equal(fmt_reader_read_page(r, 1, 3, buf, &e), 0);
	memset(page, 0, hps);
	assert_memory_equal(buf, page, hps);
	assert_int_equal(fmt_reader_verify(r, NULL, &vr, &e), 0);
	assert_int_equal(vr.pages_checked, 3);
	fmt_reader_free(r);
	free(page);
	free(buf);
}

struct prog {
	int calls;
	uint64_t done;
	uint64_t total;
};

static void
on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct prog *p = ctx;

	p->calls++;
	p->done = done;
	p->total = total;
}

/* The writer's progress counters and the verifier's progress callback. */
static void
test_progress(void **state)
{
	struct fmt_block_decl d = { "pc.ram", 64 * (uint64_t)PS, PS, true };
	struct fmt_writer *w;
	struct fmt_reader *r;
	struct fmt_progress pr;
	struct fmt_verify_opts vo = { 0 };
	struct fmt_verify_result vr;
	struct prog pg = { 0 };
	struct snap_err e;
	uint8_t page[PS];
	char path[8192];

	(void)state;
	assert_int_equal(fmt_writer_open(&w, disk_dir, "p.snap", NULL, &e), 0);
	assert_int_equal(fmt_writer_declare(w, &d, 1, &e), 0);
	fmt_writer_progress(w, &pr);
	assert_int_equal(pr.pages_put, 0);
	assert_int_equal(pr.bytes_written, 0);
	for (uint64_t p = 0; p < 40; p++) {
		fill_page(page, PS, 0, p, 1);
		assert_int_equal(fmt_writer_put_page(w, 0, p, page, &e), 0);
	}
	assert_int_equal(fmt_writer_put_zero(w, 0, 50, &e), 0);
	assert_int_equal(fmt_writer_devstate(w, page, 1000, &e), 0);
	fmt_writer_progress(w, &pr);
	assert_int_equal(pr.pages_put, 41);
	assert_int_equal(pr.devstate_in, 1000);
	assert_int_equal(fmt_writer_commit(w, NULL, &e), 0);
	fmt_writer_progress(w, &pr);
	assert_true(pr.bytes_written >= 40 * PS + 64);
	fmt_writer_free(w);

	snprintf(path, sizeof(path), "%s/p.snap", disk_dir);
	vo.progress = on_progress;
	vo.ctx = &pg;
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_verify(r, &vo, &vr, &e), 0);
	assert_true(pg.calls >= 1);
	assert_int_equal(pg.total, 40 * PS);
	assert_int_equal(pg.done, pg.total);
	fmt_reader_free(r);
}

/* ---- tests: misuse and names ------------------------------------------ */

static void
test_misuse(void **state)
{
	struct fmt_writer *w;
	struct fmt_block_decl d[2] = { { "a", 8 * PS, PS, true },
				       { "a", 8 * PS, PS, false } };
	struct snap_err e;
	uint8_t page[PS];

	(void)state;
	memset(page, 1, PS);
	assert_int_equal(fmt_writer_open(&w, disk_dir, ".hidden", NULL, &e),
			 -EINVAL);
	assert_int_equal(fmt_writer_open(&w, disk_dir, "m.snap", NULL, &e), 0);
	assert_int_equal(fmt_writer_put_page(w, 0, 0, page, &e), SNAP_EMISUSE);
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), -EINVAL);
	assert_string_equal(e.msg, "RAM block 'a' declared twice");
	d[1].idstr = "b";
	d[1].page_size = 1000;
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), -EINVAL);
	assert_string_equal(e.msg, "bad page size 1000 of RAM block 'b'");
	d[1].page_size = PS;
	d[1].main = true;
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), -EINVAL);
	d[1].main = false;
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), 0);
	assert_int_equal(fmt_writer_declare(w, d, 2, &e), SNAP_EMISUSE);
	assert_int_equal(fmt_writer_block_index(w, "b"), 1);
	assert_int_equal(fmt_writer_put_page(w, 1, 8, page, &e), -ERANGE);
	assert_int_equal(fmt_writer_put_page(w, 2, 0, page, &e), -ERANGE);
	assert_int_equal(fmt_writer_set_entry(w, "bad name", "x", 1, &e),
			 -EINVAL);
	assert_int_equal(dir_count(disk_dir), 1);   /* the temporary file */
	fmt_writer_abort(w);
	assert_int_equal(dir_count(disk_dir), 0);
	assert_int_equal(fmt_writer_put_page(w, 0, 0, page, &e), SNAP_EMISUSE);
	fmt_writer_free(w);
	fmt_writer_free(NULL);
	fmt_reader_free(NULL);

	assert_true(fmt_is_temp_name(".a.snap.tmp-Ab12Cd"));
	assert_false(fmt_is_temp_name("a.snap"));
	assert_false(fmt_is_temp_name(".a.snap.tmp-Ab1"));
	assert_false(fmt_is_temp_name("a.snap.tmp-Ab12Cd"));
}

static void
test_commit_refuses_existing(void **state)
{
	struct fmt_writer *w;
	struct fmt_block_decl d = { "pc.ram", 4 * PS, PS, true };
	struct snap_err e;
	char path[8192];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/x.snap", disk_dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(fmt_writer_open(&w, disk_dir, "x.snap", NULL, &e), 0);
	assert_int_equal(fmt_writer_declare(w, &d, 1, &e), 0);
	assert_int_equal(fmt_writer_commit(w, NULL, &e), -EEXIST);
	fmt_writer_free(w);
	assert_int_equal(dir_count(disk_dir), 1);   /* only the old file */
	clean_dir(disk_dir);
}


/* ---- injected I/O faults ---------------------------------------------- */

struct faults {
	int writes;          /* write calls seen */
	int fail_write;      /* fail this write call (1-based), 0: none */
	int code;
	bool short_writes;   /* make every write of more than 1 byte short */
	int fail_fsync;      /* 1: the file's fsync, 2: the directory's */
};

static int
hook_write(void *ctx, uint64_t off, size_t len)
{
	struct faults *f = ctx;

	(void)off;
	f->writes++;
	if (f->fail_write != 0 && f->writes == f->fail_write)
		return f->code;
	if (f->short_writes && len > 1)
		return (int)SNAP_MIN(len / 2, (size_t)INT32_MAX);
	return 0;
}

static int
hook_fsync(void *ctx, bool dir)
{
	struct faults *f = ctx;

	if ((f->fail_fsync == 1 && !dir) || (f->fail_fsync == 2 && dir))
		return -EIO;
	return 0;
}

/* A small scenario that reports the first error instead of asserting. */
static int
write_small(const char *dir, const struct fmt_writer_opts *o,
	    struct snap_err *e)
{
	struct fmt_block_decl d[2] = { { "pc.ram", 64 * PS, PS, true },
				       { "vga.vram", 16 * PS, PS, false } };
	struct fmt_writer *w = NULL;
	uint8_t page[PS];
	int rc;

	rc = fmt_writer_open(&w, dir, "f.snap", o, e);
	if (rc == 0)
		rc = fmt_writer_declare(w, d, 2, e);
	for (uint64_t p = 0; rc == 0 && p < 80; p++) {
		unsigned b = p < 64 ? 0 : 1;
		uint64_t pg = p < 64 ? p : p - 64;
		if (pg % 7 == 3)
			continue;
		fill_page(page, PS, b, pg, 1);
		rc = fmt_writer_put_page(w, b, pg, page, e);
	}
	if (rc == 0)
		rc = fmt_writer_put_zero(w, 0, 1, e);   /* punched after data */
	for (int k = 0; rc == 0 && k < 20; k++)
		rc = fmt_writer_devstate(w, spec_json, sizeof(spec_json), e);
	if (rc == 0)
		rc = fmt_writer_set_entry(w, "x", "y", 1, e);
	if (rc == 0) {
		struct fmt_meta me;
		meta_for(&me);
		rc = fmt_writer_set_meta(w, &me, e);
	}
	if (rc == 0)
		rc = fmt_writer_commit(w, NULL, e);
	fmt_writer_free(w);
	return rc;
}

static void
check_small(const char *dir)
{
	struct fmt_reader *r;
	struct fmt_verify_result vr;
	struct snap_err e;
	uint8_t page[PS], want[PS];
	char path[8192];

	snprintf(path, sizeof(path), "%s/f.snap", dir);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	for (uint64_t p = 0; p < 64; p++) {
		assert_int_equal(fmt_reader_read_page(r, 0, p, page, &e), 0);
		if (p % 7 == 3 || p == 1)
			memset(want, 0, PS);
		else
			fill_page(want, PS, 0, p, 1);
		assert_memory_equal(page, want, PS);
	}
	assert_int_equal(fmt_reader_verify(r, NULL, &vr, &e), 0);
	assert_int_equal(vr.pages_checked, 80 - 11 - 1);
	fmt_reader_free(r);
}

static void
test_fault_enospc_everywhere(void **state)
{
	struct faults f = { 0 };
	struct fmt_io_hooks h = { hook_write, hook_fsync, &f };
	struct fmt_writer_opts o = { .hooks = &h, .align = 4096 };
	struct snap_err e;
	int total;

	(void)state;
	assert_int_equal(write_small(disk_dir, &o, &e), 0);
	check_small(disk_dir);
	clean_dir(disk_dir);
	total = f.writes;
	assert_true(total > 10);
	/* Fail each write in turn: pages, device state, metadata, footer. */
	for (int k = 1; k <= total; k++) {
		int rc;

		memset(&f, 0, sizeof(f));
		f.fail_write = k;
		f.code = -ENOSPC;
		snap_err_clear(&e);
		rc = write_small(disk_dir, &o, &e);
		assert_int_equal(rc, -ENOSPC);
		assert_int_equal(e.code, -ENOSPC);
		assert_non_null(strstr(e.msg, "cannot write "));
		assert_non_null(strstr(e.msg, ": No space left on device"));
		assert_non_null(strstr(e.msg, "/.f.snap.tmp-"));
		assert_int_equal(dir_count(disk_dir), 0);
	}
}

static void
test_fault_short_writes(void **state)
{
	struct faults f = { .short_writes = true };
	struct fmt_io_hooks h = { hook_write, hook_fsync, &f };
	struct fmt_writer_opts o = { .hooks = &h };
	struct snap_err e;

	(void)state;
	assert_int_equal(write_small(disk_dir, &o, &e), 0);
	assert_true(f.writes > 100);
	check_small(disk_dir);
	clean_dir(disk_dir);
}

static void
test_fault_fsync(void **state)
{
	struct faults f = { .fail_fsync = 1 };
	struct fmt_io_hooks h = { hook_write, hook_fsync, &f };
	struct fmt_writer_opts o = { .hooks = &h };
	struct snap_err e;
	char want[8192];

	(void)state;
	assert_int_equal(write_small(disk_dir, &o, &e), -EIO);
	assert_non_null(strstr(e.msg, "cannot fsync '"));
	assert_int_equal(dir_count(disk_dir), 0);

	f.fail_fsync = 2;
	assert_int_equal(write_small(disk_dir, &o, &e), -EIO);
	snprintf(want, sizeof(want), "cannot fsync '%s': Input/output error",
		 disk_dir);
	assert_string_equal(e.msg, want);
	assert_int_equal(dir_count(disk_dir), 0);
}

/* ---- corrupt files --------------------------------------------------- */

struct blob {
	uint8_t *p;
	size_t len;
};

static struct blob
slurp(const char *path)
{
	struct blob b = { 0 };
	struct stat st;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b.len = (size_t)st.st_size;
	b.p = malloc(b.len + 1);
	assert_non_null(b.p);
	assert_int_equal(snap_pread_full(fd, b.p, b.len, 0), 0);
	close(fd);
	return b;
}

static void
spit(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	assert_true(fd >= 0);
	assert_int_equal(snap_pwrite_full(fd, p, len, 0), 0);
	close(fd);
}

/* Where the footer says the directory is, and directory entry @type. */
static uint8_t *
footer(struct blob *b)
{
	return b->p + b->len - 64;
}

static uint8_t *
dirent_of(struct blob *b, uint32_t type)
{
	uint8_t *ft = footer(b);
	uint64_t off = snap_get_le64(ft + 16);
	uint32_t n = snap_get_le32(ft + 24);

	for (uint32_t i = 0; i < n; i++) {
		uint8_t *d = b->p + off + 40 * (uint64_t)i;
		if (snap_get_le32(d) == type)
			return d;
	}
	fail_msg("no section %u", type);
	return NULL;
}

static uint64_t
sect_off(struct blob *b, uint32_t type)
{
	return snap_get_le64(dirent_of(b, type) + 8);
}

/* Recompute the checksum of section @type (0: none), directory, root, footer. */
static void
reseal(struct blob *b, uint32_t type)
{
	uint8_t *ft = footer(b);
	uint64_t off = snap_get_le64(ft + 16);
	uint32_t n = snap_get_le32(ft + 24);
	XXH128_canonical_t c;

	if (type != 0) {
		uint8_t *d = dirent_of(b, type);
		snap_put_le64(d + 32, XXH3_64bits(b->p + snap_get_le64(d + 8),
						  snap_get_le64(d + 16)));
	}
	if (off + 40ull * n + 64 == b->len) {
		snap_put_le64(ft + 32, XXH3_64bits(b->p + off, 40ull * n));
		XXH128_canonicalFromHash(&c, XXH3_128bits(b->p + off, 40ull * n));
		memcpy(ft + 40, c.digest, 16);
	}
	snap_put_le64(ft + 56, XXH3_64bits(ft, 56));
}

struct badpage {
	int calls;
	char idstr[256];
	uint64_t page;
	uint64_t off;
};

static void
on_bad(void *ctx, const char *idstr, uint64_t page, uint64_t off)
{
	struct badpage *bp = ctx;

	bp->calls++;
	snap_strlcpy(bp->idstr, idstr, sizeof(bp->idstr));
	bp->page = page;
	bp->off = off;
}

/* A bad page cancels the verification it was found by. */
static void
stop_at_bad(void *ctx, const char *idstr, uint64_t page, uint64_t off)
{
	(void)idstr;
	(void)page;
	(void)off;
	*(int *)ctx = 1;
}

/*
 * Open @b written to a file: expect @code and exactly @msg. Opened with the
 * checksum table deferred, the same error must come from the open or from
 * fmt_reader_load_sums(): deferring moves a check, never drops one.
 */
static void
expect_open(const struct blob *b, size_t len, int code, const char *msg)
{
	char path[8192];
	struct fmt_reader *r = NULL;
	struct snap_err e;
	int rc;

	snprintf(path, sizeof(path), "%s/bad.snap", disk_dir);
	spit(path, b->p, len);
	snap_err_clear(&e);
	rc = fmt_reader_open(&r, path, &e);
	if (rc != code || (msg != NULL && strcmp(e.msg, msg) != 0))
		fail_msg("expected %d '%s', got %d '%s'", code,
			 msg != NULL ? msg : "", rc, e.msg);
	if (rc == 0)
		fmt_reader_free(r);
	snap_err_clear(&e);
	rc = fmt_reader_open_flags(&r, path, FMT_OPEN_DEFER_SUMS, &e);
	if (rc == 0) {
		rc = fmt_reader_load_sums(r, &e);
		fmt_reader_free(r);
	}
	if (rc != code || (msg != NULL && strcmp(e.msg, msg) != 0))
		fail_msg("deferred: expected %d '%s', got %d '%s'", code,
			 msg != NULL ? msg : "", rc, e.msg);
}

static struct blob
make_base(void)
{
	struct fmt_writer_opts o = { .align = 4096 };
	struct snap_err e;
	char path[8192];
	struct blob b;

	assert_int_equal(write_small(disk_dir, &o, &e), 0);
	snprintf(path, sizeof(path), "%s/f.snap", disk_dir);
	b = slurp(path);
	unlink(path);
	return b;
}

static void
test_corrupt_truncated(void **state)
{
	struct blob b = make_base();
	size_t cuts[] = { b.len - 1, b.len - 63, b.len - 64, b.len - 65,
			  b.len / 2, 4096, 64 };
	const char *nofooter = "no snapshot footer at the end of the file "
			       "(not a snapshot, or truncated)";

	(void)state;
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(cuts); i++)
		expect_open(&b, cuts[i], SNAP_EMAGIC, nofooter);
	expect_open(&b, 63, SNAP_ETRUNC,
		    "file of 63 bytes is too small for a snapshot footer");
	expect_open(&b, 0, SNAP_ETRUNC,
		    "file of 0 bytes is too small for a snapshot footer");
	expect_open(&b, b.len, 0, NULL);
	free(b.p);
}

static void
test_corrupt_trailer(void **state)
{
	struct blob b = make_base();
	uint8_t *ft = footer(&b);
	uint64_t dir = snap_get_le64(ft + 16);
	char msg[256];

	(void)state;
	/* Wrong magic. */
	ft[0] ^= 0x20;
	expect_open(&b, b.len, SNAP_EMAGIC, "no snapshot footer at the end of "
		    "the file (not a snapshot, or truncated)");
	ft[0] ^= 0x20;
	/* A bit in the directory offset: the footer checksum catches it. */
	ft[17] ^= 0x01;
	expect_open(&b, b.len, SNAP_ECHECKSUM, "footer checksum mismatch");
	ft[17] ^= 0x01;
	/* A bit in the footer checksum itself. */
	ft[60] ^= 0x80;
	expect_open(&b, b.len, SNAP_ECHECKSUM, "footer checksum mismatch");
	ft[60] ^= 0x80;
	/* A future major version (checked before the checksum). */
	snap_put_le16(ft + 8, 2);
	expect_open(&b, b.len, SNAP_EVERSION, "unsupported format version 2.0 "
		    "(this reader knows 1.x)");
	snap_put_le16(ft + 8, 1);
	/* A later minor version still opens. */
	snap_put_le16(ft + 10, 7);
	reseal(&b, 0);
	expect_open(&b, b.len, 0, NULL);
	snap_put_le16(ft + 10, 0);
	reseal(&b, 0);
	/* A bit in the directory. */
	b.p[dir + 3] ^= 0x04;
	expect_open(&b, b.len, SNAP_ECHECKSUM,
		    "section directory checksum mismatch");
	b.p[dir + 3] ^= 0x04;
	/* A root digest that does not match the directory. */
	ft[45] ^= 0x10;
	reseal(&b, 0);
	ft[45] ^= 0x10;
	snap_put_le64(ft + 56, XXH3_64bits(ft, 56));
	expect_open(&b, b.len, SNAP_ECHECKSUM,
		    "root digest does not match the section directory");
	reseal(&b, 0);
	/* Too many sections. */
	snap_put_le32(ft + 24, 65);
	snap_put_le64(ft + 56, XXH3_64bits(ft, 56));
	expect_open(&b, b.len, SNAP_ELIMIT, "65 sections (at most 64)");
	snap_put_le32(ft + 24, 6);
	/* A directory that does not end at the footer. */
	snap_put_le64(ft + 16, dir - 8);
	snap_put_le64(ft + 56, XXH3_64bits(ft, 56));
	snprintf(msg, sizeof(msg), "section directory at offset %llu does not "
		 "end at the footer (offset %llu)",
		 (unsigned long long)(dir - 8),
		 (unsigned long long)(b.len - 64));
	expect_open(&b, b.len, SNAP_ECORRUPT, msg);
	snap_put_le64(ft + 16, dir);
	reseal(&b, 0);
	expect_open(&b, b.len, 0, NULL);
	free(b.p);
}

static void
test_corrupt_sections(void **state)
{
	static const struct { uint32_t type; const char *name; } ss[] = {
		{ 1, "blocks" }, { 2, "bitmap" }, { 3, "page checksums" },
		{ 5, "metadata" }, { 6, "entries" } };
	struct blob b = make_base();
	char msg[256];

	(void)state;
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(ss); i++) {
		uint64_t off = sect_off(&b, ss[i].type);
		b.p[off + 2] ^= 0x01;
		snprintf(msg, sizeof(msg), "checksum mismatch in section '%s' "
			 "at offset %llu", ss[i].name, (unsigned long long)off);
		expect_open(&b, b.len, SNAP_ECHECKSUM, msg);
		b.p[off + 2] ^= 0x01;
	}
	expect_open(&b, b.len, 0, NULL);
	free(b.p);
}

static void
test_corrupt_offsets(void **state)
{
	struct blob b = make_base();
	uint8_t *d = dirent_of(&b, 2);
	uint64_t dir = snap_get_le64(footer(&b) + 16), save;
	uint64_t blk = sect_off(&b, 1);
	char msg[256];

	(void)state;
	/* The bitmap section placed past the end of the file. */
	save = snap_get_le64(d + 8);
	snap_put_le64(d + 8, b.len + 4096);
	reseal(&b, 0);
	snprintf(msg, sizeof(msg), "section 'bitmap' (offset %llu, length %llu) "
		 "extends past the section directory at %llu",
		 (unsigned long long)(b.len + 4096),
		 (unsigned long long)snap_get_le64(d + 16),
		 (unsigned long long)dir);
	expect_open(&b, b.len, SNAP_ECORRUPT, msg);
	/* A length that wraps around. */
	snap_put_le64(d + 8, save);
	snap_put_le64(d + 16, UINT64_MAX - 8);
	reseal(&b, 0);
	snprintf(msg, sizeof(msg), "section 'bitmap' (offset %llu, length %llu) "
		 "extends past the section directory at %llu",
		 (unsigned long long)save,
		 (unsigned long long)(UINT64_MAX - 8), (unsigned long long)dir);
	expect_open(&b, b.len, SNAP_ECORRUPT, msg);
	snap_put_le64(d + 16, 8 * 2);
	reseal(&b, 0);
	/* Sections that overlap: the bitmap on top of the block table. */
	snap_put_le64(d + 8, blk);
	reseal(&b, 0);
	expect_open(&b, b.len, SNAP_ECORRUPT,
		    "'blocks' overlaps 'bitmap' in the file");
	snap_put_le64(d + 8, save);
	reseal(&b, 0);
	expect_open(&b, b.len, 0, NULL);

	/* The second RAM block placed past the directory. */
	uint8_t *rec = b.p + blk + 8 + 288;
	uint64_t boff = snap_get_le64(rec);
	snap_put_le64(rec, dir / PS * PS);
	reseal(&b, 1);
	snprintf(msg, sizeof(msg), "RAM block 'vga.vram' (offset %llu, length "
		 "%llu) extends past the section directory at %llu",
		 (unsigned long long)(dir / PS * PS), 16ull * PS,
		 (unsigned long long)dir);
	expect_open(&b, b.len, SNAP_ECORRUPT, msg);
	/* A main block that is not at offset 0. */
	snap_put_le64(rec, boff);
	snap_put_le32(rec + 28, 1);
	reseal(&b, 1);
	expect_open(&b, b.len, SNAP_ECORRUPT, "main RAM block 'vga.vram' is "
		    "not the only one at offset 0");
	snap_put_le32(rec + 28, 0);
	/* A block table that disagrees with the bitmap. */
	snap_put_le64(rec + 16, snap_get_le64(rec + 16) + 1);
	reseal(&b, 1);
	expect_open(&b, b.len, SNAP_ECORRUPT, "bitmap of RAM block 'vga.vram' "
		    "has 14 pages, the block table says 15");
	snap_put_le64(rec + 16, snap_get_le64(rec + 16) - 1);
	/* An absurd block count. */
	snap_put_le32(b.p + blk, 1000);
	reseal(&b, 1);
	expect_open(&b, b.len, SNAP_ELIMIT, "1000 RAM blocks (1 to 64 allowed)");
	snap_put_le32(b.p + blk, 2);
	reseal(&b, 1);
	expect_open(&b, b.len, 0, NULL);
	free(b.p);
}

static void
test_corrupt_page_and_devstate(void **state)
{
	struct blob b = make_base();
	struct fmt_reader *r;
	struct fmt_verify_result vr;
	struct fmt_verify_opts vo = { 0 };
	struct badpage bp = { 0 };
	struct snap_err e;
	char path[8192];
	uint8_t page[PS];
	uint64_t ds = sect_off(&b, 4);
	uint64_t dsmid = ds + snap_get_le64(dirent_of(&b, 4) + 16) / 2;
	const char *msg = "checksum mismatch in page 11 of RAM block 'pc.ram' "
			  "(file offset 45056)";

	(void)state;
	vo.bad_page = on_bad;
	vo.ctx = &bp;
	b.p[11 * PS + 123] ^= 0x40;
	expect_open(&b, b.len, 0, NULL);   /* page data is not read at open */
	snprintf(path, sizeof(path), "%s/bad.snap", disk_dir);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_read_page(r, 0, 11, page, &e),
			 SNAP_ECHECKSUM);
	assert_string_equal(e.msg, msg);
	assert_int_equal(fmt_reader_read_page(r, 0, 12, page, &e), 0);
	{
		/* A run that holds the bad page names it. */
		static uint8_t run[16 * PS];

		snap_err_clear(&e);
		assert_int_equal(fmt_reader_read_pages(r, 0, 8, 16, run, &e),
				 SNAP_ECHECKSUM);
		assert_string_equal(e.msg, msg);
		assert_int_equal(fmt_reader_read_pages(r, 0, 12, 4, run, &e), 0);
	}
	assert_int_equal(fmt_reader_verify(r, &vo, &vr, &e), SNAP_ECHECKSUM);
	assert_string_equal(e.msg, msg);
	assert_int_equal(vr.bad_pages, 1);
	assert_int_equal(vr.bad_sections, 0);
	assert_int_equal(bp.calls, 1);
	assert_string_equal(bp.idstr, "pc.ram");
	assert_int_equal(bp.page, 11);
	assert_int_equal(bp.off, 11 * PS);
	fmt_reader_free(r);
	/* The same with buffered reads. */
	bp.calls = 0;
	vo.buffered = true;
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	assert_int_equal(fmt_reader_verify(r, &vo, &vr, &e), SNAP_ECHECKSUM);
	assert_false(vr.direct);
	assert_int_equal(bp.calls, 1);
	fmt_reader_free(r);
	b.p[11 * PS + 123] ^= 0x40;

	/* Bytes where a zero page's hole should be are not the guest's: a
	 * zero page reads as zeros alone or within a run. */
	{
		static uint8_t run[8 * PS];
		uint64_t z = UINT64_MAX;

		spit(path, b.p, b.len);
		assert_int_equal(fmt_reader_open(&r, path, &e), 0);
		for (uint64_t p = 1; p < 7 && z == UINT64_MAX; p++)
			if (fmt_reader_page_present(r, 0, p) == 0 &&
			    fmt_reader_page_present(r, 0, p - 1) == 1 &&
			    fmt_reader_page_present(r, 0, p + 1) == 1)
				z = p;
		assert_true(z != UINT64_MAX);
		fmt_reader_free(r);
		memset(b.p + z * PS, 0xa5, PS);
		spit(path, b.p, b.len);
		assert_int_equal(fmt_reader_open(&r, path, &e), 0);
		assert_int_equal(fmt_reader_read_pages(r, 0, z - 1, 3, run, &e), 0);
		memset(page, 0, PS);
		assert_memory_equal(run + PS, page, PS);
		assert_int_equal(fmt_reader_read_page(r, 0, z, run, &e), 0);
		assert_memory_equal(run, page, PS);
		fmt_reader_free(r);
		memset(b.p + z * PS, 0, PS);
	}

	/* A bit in the device state. */
	b.p[dsmid] ^= 0x01;
	expect_open(&b, b.len, 0, NULL);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	bp.calls = 0;
	assert_int_equal(fmt_reader_verify(r, &vo, &vr, &e), SNAP_ECHECKSUM);
	assert_int_equal(vr.bad_pages, 0);
	assert_int_equal(vr.bad_sections, 1);
	assert_int_equal(bp.calls, 0);
	snprintf((char *)page, sizeof(page), "checksum mismatch in section "
		 "'device state' at offset %llu", (unsigned long long)ds);
	assert_string_equal(e.msg, (char *)page);
	assert_int_equal(fmt_reader_devstate(r, ds_sink, NULL, &e),
			 SNAP_ECHECKSUM);
	fmt_reader_free(r);
	/* Resealed, the checksum passes but zstd refuses the frame. */
	reseal(&b, 4);
	expect_open(&b, b.len, 0, NULL);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	{
		struct dsbuf d = { malloc(65536), 0, 65536 };
		assert_int_equal(fmt_reader_devstate(r, ds_sink, &d, &e),
				 SNAP_ECORRUPT);
		assert_non_null(strstr(e.msg, "cannot decompress the device "
				       "state: "));
		free(d.p);
	}
	fmt_reader_free(r);
	free(b.p);
	unlink(path);
}

/*
 * Cancelling a verification: before it starts, -ECANCELED; from the first
 * bad page's report, the rest is skipped but that page is the verdict.
 */
static void
test_verify_cancel(void **state)
{
	static const uint64_t np[3] = { 1024, 96, 5 };
	static int stop;
	struct fmt_verify_opts co = { .cancel = &stop, .buffered = true };
	struct fmt_verify_result vr;
	struct fmt_summary sum;
	struct fmt_writer *w;
	struct fmt_reader *r;
	struct snap_err e;
	struct model m;
	char path[8192];
	uint64_t bad = 0;
	uint8_t byte;
	int fd;

	(void)state;
	model_init(&m, np, 3);
	w = write_random(&m, disk_dir, "c.snap", 77, NULL);
	assert_int_equal(fmt_writer_commit(w, &sum, &e), 0);
	fmt_writer_free(w);
	snprintf(path, sizeof(path), "%s/c.snap", disk_dir);
	while (!m.b[0].present[bad])
		bad++;
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, (off_t)(bad * PS + 9)), 1);
	byte ^= 0x02;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)(bad * PS + 9)), 1);
	close(fd);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	stop = 1;
	assert_int_equal(fmt_reader_verify(r, &co, &vr, &e), -ECANCELED);
	stop = 0;
	co.bad_page = stop_at_bad;
	co.ctx = &stop;
	assert_int_equal(fmt_reader_verify(r, &co, &vr, &e), SNAP_ECHECKSUM);
	assert_true(stop);
	assert_int_equal(vr.bad_pages, 1);
	assert_true(vr.pages_checked < sum.present_pages);
	fmt_reader_free(r);
	model_free(&m);
	unlink(path);
}

/* The checksum table read later: the same checks, made when needed. */
static void
test_deferred_sums(void **state)
{
	struct blob b = make_base();
	uint64_t sums = sect_off(&b, 3), zero = UINT64_MAX;
	struct fmt_verify_result vr;
	struct fmt_reader *r;
	struct snap_err e;
	char path[8192], msg[256];
	uint8_t page[PS];

	(void)state;
	snprintf(path, sizeof(path), "%s/bad.snap", disk_dir);
	/* A good file: pages and verification load the table on demand. */
	spit(path, b.p, b.len);
	assert_int_equal(fmt_reader_open_flags(&r, path, FMT_OPEN_DEFER_SUMS,
					       &e), 0);
	for (uint64_t p = 0; p < 64 && zero == UINT64_MAX; p++)
		if (fmt_reader_page_present(r, 0, p) == 0)
			zero = p;
	assert_true(zero != UINT64_MAX);
	assert_int_equal(fmt_reader_read_page(r, 0, 11, page, &e), 0);
	assert_int_equal(fmt_reader_verify(r, NULL, &vr, &e), 0);
	assert_int_equal(fmt_reader_load_sums(r, &e), 0);
	fmt_reader_free(r);

	/* A flipped bit in the table: the open passes, every later use fails. */
	b.p[sums + 8 * 11 + 3] ^= 0x10;
	spit(path, b.p, b.len);
	snprintf(msg, sizeof(msg), "checksum mismatch in section 'page "
		 "checksums' at offset %llu", (unsigned long long)sums);
	assert_int_equal(fmt_reader_open_flags(&r, path, FMT_OPEN_DEFER_SUMS,
					       &e), 0);
	assert_int_equal(fmt_reader_read_page(r, 0, 11, page, &e),
			 SNAP_ECHECKSUM);
	assert_string_equal(e.msg, msg);
	/* The table also vouches that a page is zero: no read without it. */
	assert_int_equal(fmt_reader_read_page(r, 0, zero, page, &e),
			 SNAP_ECHECKSUM);
	snap_err_clear(&e);
	assert_int_equal(fmt_reader_load_sums(r, &e), SNAP_ECHECKSUM);
	assert_string_equal(e.msg, msg);
	assert_int_equal(fmt_reader_verify(r, NULL, &vr, &e), SNAP_ECHECKSUM);
	assert_string_equal(e.msg, msg);
	fmt_reader_free(r);
	expect_open(&b, b.len, SNAP_ECHECKSUM, msg);

	/* Resealed, the table is intact but names a checksum for a zero page. */
	reseal(&b, 3);
	expect_open(&b, b.len, 0, NULL);
	b.p[sums + 8 * zero] = 0x5a;
	reseal(&b, 3);
	snprintf(msg, sizeof(msg), "zero page %llu of RAM block 'pc.ram' has "
		 "a checksum", (unsigned long long)zero);
	expect_open(&b, b.len, SNAP_ECORRUPT, msg);
	free(b.p);
	unlink(path);
}

/* ---- golden version-1 files ---------------------------------------------- */

/*
 * The golden files are written once by "test_format --write-golden DIR" and
 * committed under tests/data/format/. These functions define what they
 * hold; test_golden checks that the committed bytes still decode to exactly
 * that, whatever later versions of the writer do.
 */
#define GOLDEN_DIR "tests/data/format"

static uint8_t
golden_ds(size_t i)
{
	return (uint8_t)("vmstate:cpu,apic,timer;"[i % 23] + (i / 1000));
}

static void
golden_basic_model(struct model *m)
{
	static const uint64_t np[3] = { 32, 8, 2 };

	model_init(m, np, 3);
	for (uint64_t p = 0; p < 32; p++) {
		if ((p % 5 == 2 && p != 7) || p == 9)
			continue;
		fill_page(m->b[0].data + p * PS, PS, 0, p, p == 7 ? 2 : 1);
		m->b[0].present[p] = 1;
	}
	for (uint64_t p = 0; p < 8; p++) {
		if (p == 4)
			continue;
		fill_page(m->b[1].data + p * PS, PS, 1, p, 1);
		m->b[1].present[p] = 1;
	}
	fill_page(m->b[2].data, PS, 2, 0, 1);
	m->b[2].present[0] = 1;
	m->dslen = 5000;
	m->ds = malloc(m->dslen);
	assert_non_null(m->ds);
	for (size_t i = 0; i < m->dslen; i++)
		m->ds[i] = golden_ds(i);
}

static int
write_golden(const char *dir)
{
	struct fmt_writer_opts o = { .align = 4096, .flags = FMT_W_BUFFERED };
	struct fmt_block_decl d[3] = {
		{ "pc.ram", 32 * PS, PS, true },
		{ "vga.vram", 8 * PS, PS, false },
		{ "/rom@etc/acpi/tables", 2 * PS, PS, false } };
	struct fmt_block_decl dmin = { "pc.ram", 4 * PS, PS, true };
	struct fmt_writer *w = NULL;
	struct fmt_summary sum;
	struct snap_err e;
	struct fmt_meta me;
	uint8_t page[PS], ds[5000];
	char hex[33];
	int rc;

	/* v1-basic: pages in order, a re-sent page, data turned zero. */
	rc = fmt_writer_open(&w, dir, "v1-basic.snap", &o, &e);
	if (rc == 0)
		rc = fmt_writer_declare(w, d, 3, &e);
	for (unsigned b = 0; rc == 0 && b < 3; b++) {
		for (uint64_t p = 0; rc == 0 && p < d[b].length / PS; p++) {
			bool zero = (b == 0 && p % 5 == 2) || (b == 1 && p == 4) ||
				    (b == 2 && p == 1);
			fill_page(page, PS, b, p, 1);
			rc = zero ? fmt_writer_put_zero(w, b, p, &e) :
				    fmt_writer_put_page(w, b, p, page, &e);
		}
	}
	fill_page(page, PS, 0, 7, 2);
	if (rc == 0)
		rc = fmt_writer_put_page(w, 0, 7, page, &e);
	if (rc == 0)
		rc = fmt_writer_put_zero(w, 0, 9, &e);
	for (size_t i = 0; i < sizeof(ds); i++)
		ds[i] = golden_ds(i);
	for (size_t off = 0; rc == 0 && off < sizeof(ds); off += 1000)
		rc = fmt_writer_devstate(w, ds + off, 1000, &e);
	meta_for(&me);
	if (rc == 0)
		rc = fmt_writer_set_meta(w, &me, &e);
	if (rc == 0)
		rc = fmt_writer_set_entry(w, "qemu.preamble", "QEVM\0\0\0\3", 8,
					  &e);
	if (rc == 0)
		rc = fmt_writer_set_entry(w, "ram.section", "ram\0\0\0\0\4", 8,
					  &e);
	if (rc == 0)
		rc = fmt_writer_set_entry(w, "empty", "", 0, &e);
	if (rc == 0)
		rc = fmt_writer_commit(w, &sum, &e);
	fmt_writer_free(w);
	if (rc < 0)
		goto out;
	fmt_digest_hex(&sum.root, hex);
	printf("%s root %s size %llu\n", sum.path, hex,
	       (unsigned long long)sum.apparent_size);

	/* v1-minimal: one all-zero block, nothing else. */
	w = NULL;
	rc = fmt_writer_open(&w, dir, "v1-minimal.snap", &o, &e);
	if (rc == 0)
		rc = fmt_writer_declare(w, &dmin, 1, &e);
	if (rc == 0)
		rc = fmt_writer_commit(w, &sum, &e);
	fmt_writer_free(w);
	if (rc < 0)
		goto out;
	fmt_digest_hex(&sum.root, hex);
	printf("%s root %s size %llu\n", sum.path, hex,
	       (unsigned long long)sum.apparent_size);
out:
	if (rc < 0)
		fprintf(stderr, "write-golden: %s\n", snap_err_text(&e, rc));
	return rc < 0 ? 1 : 0;
}

static void
expect_root(const char *path, const char *hex, uint64_t size)
{
	struct fmt_reader *r;
	struct fmt_stat st;
	struct snap_err e;
	char got[33];

	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	fmt_reader_stat(r, &st);
	fmt_digest_hex(&st.root, got);
	assert_string_equal(got, hex);
	assert_int_equal(st.apparent_size, size);
	assert_int_equal(st.version_major, 1);
	assert_int_equal(st.version_minor, 0);
	fmt_reader_free(r);
}

static void
test_golden_basic(void **state)
{
	struct model m;
	const char *path = GOLDEN_DIR "/v1-basic.snap";

	(void)state;
	golden_basic_model(&m);
	check_model(&m, path);
	check_devstate(&m, path);
	expect_root(path, GOLDEN_BASIC_ROOT, GOLDEN_BASIC_SIZE);
	model_free(&m);
}

static void
test_golden_minimal(void **state)
{
	struct fmt_reader *r;
	struct fmt_block_info bi;
	struct fmt_verify_result vr;
	const struct fmt_meta *me;
	struct fmt_stat st;
	struct snap_err e;
	uint8_t page[PS], zero[PS] = { 0 };
	const char *path = GOLDEN_DIR "/v1-minimal.snap";

	(void)state;
	expect_root(path, GOLDEN_MINIMAL_ROOT, GOLDEN_MINIMAL_SIZE);
	assert_int_equal(fmt_reader_open(&r, path, &e), 0);
	fmt_reader_stat(r, &st);
	assert_int_equal(st.nblocks, 1);
	assert_int_equal(st.present_pages, 0);
	assert_int_equal(st.devstate_raw, 0);
	assert_int_equal(st.nentries, 0);
	assert_int_equal(fmt_reader_block(r, 0, &bi), 0);
	assert_string_equal(bi.idstr, "pc.ram");
	assert_int_equal(bi.length, 4 * PS);
	assert_true(bi.main);
	for (uint64_t p = 0; p < 4; p++) {
		assert_int_equal(fmt_reader_read_page(r, 0, p, page, &e), 0);
		assert_memory_equal(page, zero, PS);
	}
	me = fmt_reader_meta(r);
	assert_string_equal(me->guest_name, "");
	assert_string_equal(me->guest_spec, "");
	assert_int_equal(me->created_ns, 0);
	assert_int_equal(me->save_mode, FMT_SAVE_UNKNOWN);
	assert_int_equal(fmt_reader_verify(r, NULL, &vr, &e), 0);
	assert_int_equal(vr.pages_checked, 0);
	assert_int_equal(fmt_reader_devstate(r, ds_sink, NULL, &e), 0);
	fmt_reader_free(r);
}

/* Each test starts with empty scratch directories. */
static int
per_test_clean(void **state)
{
	(void)state;
	clean_dir(disk_dir);
	clean_dir(shm_dir);
	return 0;
}

#define T(f) cmocka_unit_test_setup(f, per_test_clean)

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_roundtrip_direct),
		T(test_roundtrip_small_runs),
		T(test_roundtrip_buffered),
		T(test_roundtrip_tmpfs_fallback),
		T(test_zero_pages_are_holes),
		T(test_zero_after_resend),
		T(test_huge_pages),
		T(test_progress),
		T(test_misuse),
		T(test_commit_refuses_existing),
		T(test_fault_enospc_everywhere),
		T(test_fault_short_writes),
		T(test_fault_fsync),
		T(test_corrupt_truncated),
		T(test_corrupt_trailer),
		T(test_corrupt_sections),
		T(test_corrupt_offsets),
		T(test_corrupt_page_and_devstate),
		T(test_deferred_sums),
		T(test_verify_cancel),
		T(test_golden_basic),
		T(test_golden_minimal),
	};

	if (argc == 3 && strcmp(argv[1], "--write-golden") == 0)
		return write_golden(argv[2]);
	return cmocka_run_group_tests(tests, setup_dirs, teardown_dirs);
}
