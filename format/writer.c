/*
 * format/writer.c: builds a snapshot file under a temporary name and
 * publishes it atomically.
 *
 * Pages are coalesced into page-aligned runs in aligned buffers and written
 * with O_DIRECT through libaio, several runs in flight; where O_DIRECT is
 * refused the same runs go through buffered pwrite. The bitmap and the
 * per-page checksums stay in memory (one bit and 8 bytes per page) until
 * commit writes them with the device state's tail, the metadata, the
 * section directory and the footer. Any I/O failure makes the writer dead
 * and removes the temporary file at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "common/util.h"
#include "format/fmt_int.h"

#define DEF_QD        16
#define MAX_QD        64
#define DEF_RUN       ((size_t)1 << 20)
#define DEF_GAP       4
#define DS_OUT_SIZE   ((size_t)128 << 10)

enum wstate {
	W_OPEN,        /* opened, blocks not yet declared */
	W_READY,       /* blocks declared: pages, device state, metadata */
	W_DEAD,        /* failed or aborted: temporary file removed */
	W_DONE,        /* committed */
};

struct wblock {
	char idstr[FMT_MAX_IDSTR + 1];
	uint64_t length;
	uint64_t off;
	uint64_t npages;
	uint64_t present;
	uint32_t ps;
	bool main;
	uint64_t *bitmap;
	uint64_t *sums;
};

struct wbuf {
	uint8_t *data;
	uint64_t off;
	size_t len;
	bool inflight;              /* an asynchronous write is running */
	struct iocb cb;
};

struct wentry {
	char name[FMT_MAX_ENTRY_NAME + 1];
	uint8_t *data;
	size_t len;
};

struct fmt_writer {
	enum wstate state;
	int sticky;                 /* the error that killed the writer */
	char final[PATH_MAX];
	char tmp[PATH_MAX];
	char dir[PATH_MAX];
	int fd;                     /* buffered */
	int dfd;                    /* O_DIRECT, or -1 */
	enum fmt_io_mode mode;
	io_context_t aio;
	bool aio_ok;
	struct fmt_io_hooks hooks;
	unsigned flags;
	int zlevel;
	unsigned qd;
	size_t run_size;
	unsigned gap;
	uint64_t align;

	struct wblock *blocks;
	unsigned nblocks;
	uint64_t blocks_end;

	struct wbuf *bufs;
	unsigned inflight;
	int cur;                    /* buffer holding the open run, or -1 */
	unsigned run_block;
	uint64_t run_first;
	uint64_t run_n;
	uint64_t run_cap;

	ZSTD_CCtx *zc;
	uint8_t *zout;
	uint64_t ds_off;
	uint64_t ds_len;
	uint64_t ds_raw;
	XXH3_state_t *ds_hash;

	char *meta_text[9];
	struct fmt_meta meta;
	bool have_meta;
	struct wentry entries[FMT_MAX_ENTRIES];
	unsigned nentries;

	uint64_t data_bytes;
	_Atomic uint64_t bytes_written;
	_Atomic uint64_t pages_put;
	_Atomic uint64_t devstate_in;
};

/* ---- failure handling ---------------------------------------------- */

static void
remove_tmp(struct fmt_writer *w)
{
	if (w->dfd >= 0) {
		close(w->dfd);
		w->dfd = -1;
	}
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	if (w->tmp[0] != '\0') {
		unlink(w->tmp);
		w->tmp[0] = '\0';
	}
}

static void
drain_quiet(struct fmt_writer *w)
{
	struct io_event ev[MAX_QD];

	while (w->aio_ok && w->inflight > 0) {
		int n = io_getevents(w->aio, 1, (long)w->inflight, ev, NULL);
		if (n < 0 && n != -EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct wbuf *b = ev[i].data;
			b->inflight = false;
			w->inflight--;
		}
	}
}

/* Kill the writer: remove the temporary file, remember @rc. */
static int
fail(struct fmt_writer *w, int rc)
{
	if (w->state == W_DEAD || w->state == W_DONE)
		return rc;
	drain_quiet(w);
	remove_tmp(w);
	w->state = W_DEAD;
	w->sticky = rc;
	return rc;
}

static int
check_live(const struct fmt_writer *w, enum wstate need, struct snap_err *err)
{
	if (w->state == W_DEAD)
		return snap_err_set(err, w->sticky < 0 ? w->sticky : SNAP_EMISUSE,
				    0, "snapshot writer for '%s' has failed",
				    w->final);
	if (w->state != need)
		return snap_err_set(err, SNAP_EMISUSE, 0,
				    "snapshot writer for '%s' is in the wrong "
				    "state for this call", w->final);
	return 0;
}

/* ---- low-level writes ----------------------------------------------- */

/* Write @len bytes at @off on the buffered fd, through the fault hook. */
static int
w_pwrite(struct fmt_writer *w, const void *buf, size_t len, uint64_t off,
	 struct snap_err *err)
{
	const uint8_t *p = buf;

	while (len > 0) {
		size_t n = len;
		ssize_t got;

		if (w->hooks.write != NULL) {
			int h = w->hooks.write(w->hooks.ctx, off, len);
			if (h < 0)
				return snap_err_set(err, h, off,
						    "cannot write %zu bytes at "
						    "offset %llu of '%s': %s",
						    len, (unsigned long long)off,
						    w->tmp, snap_strerror(h));
			if (h > 0 && (size_t)h < len)
				n = (size_t)h;
		}
		got = pwrite(w->fd, p, n, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			int rc = got < 0 ? -errno : -EIO;
			return snap_err_set(err, rc, off,
					    "cannot write %zu bytes at offset "
					    "%llu of '%s': %s", len,
					    (unsigned long long)off, w->tmp,
					    snap_strerror(rc));
		}
		atomic_fetch_add(&w->bytes_written, (uint64_t)got);
		p += got;
		off += (uint64_t)got;
		len -= (size_t)got;
	}
	return 0;
}

/* Handle finished asynchronous writes; block for at least @min of them. */
static int
reap(struct fmt_writer *w, unsigned min, struct snap_err *err)
{
	struct io_event ev[MAX_QD];
	int rc = 0;

	while (w->inflight > 0) {
		int n = io_getevents(w->aio, (long)min, (long)w->inflight, ev,
				     NULL);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return snap_err_set(err, n, 0, "cannot wait for writes "
					    "to '%s': %s", w->tmp,
					    snap_strerror(n));
		for (int i = 0; i < n; i++) {
			struct wbuf *b = ev[i].data;
			long res = (long)ev[i].res;

			b->inflight = false;
			w->inflight--;
			if (rc < 0)
				continue;
			if (res < 0) {
				rc = snap_err_set(err, (int)res, b->off,
						  "cannot write %zu bytes at "
						  "offset %llu of '%s': %s",
						  b->len,
						  (unsigned long long)b->off,
						  w->tmp,
						  snap_strerror((int)res));
				continue;
			}
			atomic_fetch_add(&w->bytes_written, (uint64_t)res);
			if ((size_t)res < b->len) {
				/* A short direct write: finish it buffered. */
				rc = w_pwrite(w, b->data + res, b->len - (size_t)res,
					      b->off + (uint64_t)res, err);
			}
		}
		if (rc < 0 || (unsigned)n >= min)
			break;
		min -= (unsigned)n;
	}
	return rc;
}

/* Wait until no write in flight overlaps [@off, @off + @len). */
static int
wait_overlap(struct fmt_writer *w, uint64_t off, uint64_t len,
	     struct snap_err *err)
{
	for (;;) {
		bool hit = false;
		for (unsigned i = 0; i < w->qd; i++) {
			struct wbuf *b = &w->bufs[i];
			if (b->inflight && b->off < off + len &&
			    off < b->off + b->len) {
				hit = true;
				break;
			}
		}
		if (!hit)
			return 0;
		int rc = reap(w, 1, err);
		if (rc < 0)
			return rc;
	}
}

/* Write buffer @b (its off/len set): asynchronously when possible. */
static int
submit(struct fmt_writer *w, struct wbuf *b, struct snap_err *err)
{
	struct iocb *cbs[1];
	int rc;

	rc = wait_overlap(w, b->off, b->len, err);
	if (rc < 0)
		return rc;
	w->data_bytes += b->len;
	/* Fault hooks need byte-exact short writes: those go synchronously. */
	if (w->mode != FMT_IO_DIRECT || w->hooks.write != NULL)
		return w_pwrite(w, b->data, b->len, b->off, err);
	io_prep_pwrite(&b->cb, w->dfd, b->data, b->len, (long long)b->off);
	b->cb.data = b;
	cbs[0] = &b->cb;
	for (;;) {
		rc = io_submit(w->aio, 1, cbs);
		if (rc == 1)
			break;
		if (rc == -EAGAIN && w->inflight > 0) {
			rc = reap(w, 1, err);
			if (rc < 0)
				return rc;
			continue;
		}
		if (rc >= 0)
			rc = -EIO;
		return snap_err_set(err, rc, b->off, "cannot submit a write at "
				    "offset %llu of '%s': %s",
				    (unsigned long long)b->off, w->tmp,
				    snap_strerror(rc));
	}
	b->inflight = true;
	w->inflight++;
	return 0;
}

/* Send the open run, if any. */
static int
flush_run(struct fmt_writer *w, struct snap_err *err)
{
	struct wbuf *b;
	struct wblock *bl;
	int rc;

	if (w->cur < 0)
		return 0;
	b = &w->bufs[w->cur];
	bl = &w->blocks[w->run_block];
	b->off = bl->off + w->run_first * bl->ps;
	b->len = (size_t)(w->run_n * bl->ps);
	w->cur = -1;
	rc = submit(w, b, err);
	return rc;
}

/* Open a new run at @page of @block in a free buffer. */
static int
start_run(struct fmt_writer *w, unsigned block, uint64_t page,
	  struct snap_err *err)
{
	int rc;

	for (;;) {
		for (unsigned i = 0; i < w->qd; i++) {
			if (!w->bufs[i].inflight) {
				w->cur = (int)i;
				w->run_block = block;
				w->run_first = page;
				w->run_n = 0;
				w->run_cap = w->run_size / w->blocks[block].ps;
				if (w->run_cap == 0)
					w->run_cap = 1;
				return 0;
			}
		}
		rc = reap(w, 1, err);
		if (rc < 0)
			return rc;
	}
}

static bool
bit_get(const uint64_t *bm, uint64_t i)
{
	return (bm[i / 64] >> (i % 64)) & 1;
}

static void
bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= (uint64_t)1 << (i % 64);
}

static void
bit_clear(uint64_t *bm, uint64_t i)
{
	bm[i / 64] &= ~((uint64_t)1 << (i % 64));
}

/* ---- open / declare ----------------------------------------------- */

int
fmt_writer_open(struct fmt_writer **out, const char *dir, const char *name,
		const struct fmt_writer_opts *opts, struct snap_err *err)
{
	struct fmt_writer *w = NULL;
	struct fmt_writer_opts def = { 0 };
	int rc;

	if (opts == NULL)
		opts = &def;
	if (name == NULL || name[0] == '\0' || name[0] == '.' ||
	    strchr(name, '/') != NULL)
		return snap_err_set(err, -EINVAL, 0, "invalid snapshot file "
				    "name '%s'", name != NULL ? name : "");
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	w->fd = w->dfd = -1;
	w->cur = -1;
	w->flags = opts->flags;
	w->zlevel = opts->zstd_level != 0 ? opts->zstd_level : 3;
	w->qd = opts->queue_depth != 0 ? opts->queue_depth : DEF_QD;
	if (w->qd > MAX_QD)
		w->qd = MAX_QD;
	w->run_size = opts->run_size != 0 ? opts->run_size : DEF_RUN;
	if (w->run_size < FMT_MIN_PAGE_SIZE || !SNAP_IS_ALIGNED(w->run_size,
							       (size_t)4096)) {
		rc = snap_err_set(err, -EINVAL, 0, "run size %zu is not a "
				  "multiple of 4096", w->run_size);
		goto out;
	}
	w->gap = opts->gap_fill_pages == 0 ? DEF_GAP :
		 opts->gap_fill_pages == UINT32_MAX ? 0 : opts->gap_fill_pages;
	w->align = opts->align != 0 ? opts->align : FMT_ALIGN;
	if (w->align < 4096 || (w->align & (w->align - 1)) != 0) {
		rc = snap_err_set(err, -EINVAL, 0, "alignment %llu is not a "
				  "power of two >= 4096",
				  (unsigned long long)w->align);
		goto out;
	}
	if (opts->hooks != NULL)
		w->hooks = *opts->hooks;
	if (snap_fmt(w->final, sizeof(w->final), "%s/%s", dir, name) < 0 ||
	    snap_fmt(w->dir, sizeof(w->dir), "%s", dir) < 0 ||
	    snap_fmt(w->tmp, sizeof(w->tmp), "%s/.%s.tmp-XXXXXX", dir,
		     name) < 0) {
		w->tmp[0] = '\0';
		rc = snap_err_set(err, -ENAMETOOLONG, 0, "snapshot path too "
				  "long: '%s/%s'", dir, name);
		goto out;
	}
	w->fd = mkostemp(w->tmp, O_CLOEXEC);
	if (w->fd < 0) {
		rc = -errno;
		w->tmp[0] = '\0';
		snap_err_set(err, rc, 0, "cannot create a temporary file in "
			     "'%s': %s", dir, snap_strerror(rc));
		goto out;
	}
	w->mode = FMT_IO_BUFFERED;
	if (!(w->flags & FMT_W_BUFFERED)) {
		w->dfd = open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC);
		if (w->dfd >= 0 && io_setup((int)w->qd, &w->aio) == 0) {
			w->aio_ok = true;
			w->mode = FMT_IO_DIRECT;
		} else {
			if (w->dfd >= 0)
				close(w->dfd);
			w->dfd = -1;
			w->mode = FMT_IO_FALLBACK;
		}
	}
	w->bufs = calloc(w->qd, sizeof(*w->bufs));
	if (w->bufs == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < w->qd; i++) {
		size_t sz = SNAP_MAX(w->run_size, (size_t)FMT_MAX_PAGE_SIZE);
		if (posix_memalign((void **)&w->bufs[i].data, 4096, sz) != 0) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
	}
	w->state = W_OPEN;
	*out = w;
	w = NULL;
	rc = 0;
out:
	fmt_writer_free(w);
	return rc;
}

int
fmt_writer_declare(struct fmt_writer *w, const struct fmt_block_decl *bd,
		   size_t n, struct snap_err *err)
{
	uint64_t total = 0, off;
	unsigned nmain = 0;
	int rc;

	rc = check_live(w, W_OPEN, err);
	if (rc < 0)
		return rc;
	if (n == 0 || n > FMT_MAX_BLOCKS)
		return snap_err_set(err, SNAP_ELIMIT, 0, "%zu RAM blocks "
				    "declared (1 to %d allowed)", n,
				    FMT_MAX_BLOCKS);
	for (size_t i = 0; i < n; i++) {
		size_t len = bd[i].idstr != NULL ? strlen(bd[i].idstr) : 0;
		uint32_t ps = bd[i].page_size;

		if (len == 0 || len > FMT_MAX_IDSTR)
			return snap_err_set(err, SNAP_ELIMIT, 0, "RAM block %zu "
					    "name length %zu is not in 1..%d",
					    i, len, FMT_MAX_IDSTR);
		if (ps < FMT_MIN_PAGE_SIZE || ps > FMT_MAX_PAGE_SIZE ||
		    (ps & (ps - 1)) != 0)
			return snap_err_set(err, -EINVAL, 0, "bad page size %u "
					    "of RAM block '%s'", ps,
					    bd[i].idstr);
		if (bd[i].length == 0 || bd[i].length > FMT_MAX_BLOCK_LEN ||
		    bd[i].length % ps != 0)
			return snap_err_set(err, -EINVAL, 0, "bad length %llu "
					    "of RAM block '%s'",
					    (unsigned long long)bd[i].length,
					    bd[i].idstr);
		for (size_t j = 0; j < i; j++)
			if (strcmp(bd[i].idstr, bd[j].idstr) == 0)
				return snap_err_set(err, -EINVAL, 0,
						    "RAM block '%s' declared "
						    "twice", bd[i].idstr);
		nmain += bd[i].main;
		total += bd[i].length / ps;
	}
	if (nmain > 1)
		return snap_err_set(err, -EINVAL, 0, "%u main RAM blocks "
				    "declared (at most 1)", nmain);
	if (total > FMT_MAX_TOTAL_PAGES)
		return snap_err_set(err, SNAP_ELIMIT, 0, "%llu pages in all "
				    "RAM blocks (at most %llu)",
				    (unsigned long long)total,
				    (unsigned long long)FMT_MAX_TOTAL_PAGES);
	w->blocks = calloc(n, sizeof(*w->blocks));
	if (w->blocks == NULL)
		return fail(w, snap_err_set(err, -ENOMEM, 0, "out of memory"));
	w->nblocks = (unsigned)n;
	/* The main block first, at offset 0; the rest in the given order. */
	off = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			struct wblock *b = &w->blocks[i];

			if (bd[i].main != (pass == 0))
				continue;
			snap_strlcpy(b->idstr, bd[i].idstr, sizeof(b->idstr));
			b->length = bd[i].length;
			b->ps = bd[i].page_size;
			b->main = bd[i].main;
			b->npages = b->length / b->ps;
			b->off = SNAP_ALIGN_UP(off, SNAP_MAX(w->align,
							     (uint64_t)b->ps));
			off = b->off + b->length;
			b->bitmap = calloc(fmt_bitmap_bytes(b->npages), 1);
			b->sums = calloc(b->npages, sizeof(uint64_t));
			if (b->bitmap == NULL || b->sums == NULL)
				return fail(w, snap_err_set(err, -ENOMEM, 0,
							    "out of memory"));
		}
	}
	w->blocks_end = SNAP_ALIGN_UP(off, w->align);
	w->ds_off = w->blocks_end;
	/*
	 * Size the (sparse) file to hold every block now: a direct write past
	 * the end of file extends it, and Linux performs such writes
	 * synchronously, which would leave one write in flight.
	 */
	if (ftruncate(w->fd, (off_t)w->blocks_end) < 0) {
		rc = -errno;
		return fail(w, snap_err_set(err, rc, 0, "cannot size '%s': %s",
					    w->tmp, snap_strerror(rc)));
	}
	w->state = W_READY;
	return 0;
}

int
fmt_writer_block_index(const struct fmt_writer *w, const char *idstr)
{
	for (unsigned i = 0; i < w->nblocks; i++)
		if (strcmp(w->blocks[i].idstr, idstr) == 0)
			return (int)i;
	return -ENOENT;
}

/* ---- pages ---------------------------------------------------------- */

static int
check_page(struct fmt_writer *w, unsigned block, uint64_t page,
	   struct snap_err *err)
{
	int rc = check_live(w, W_READY, err);

	if (rc < 0)
		return rc;
	if (block >= w->nblocks)
		return snap_err_set(err, -ERANGE, 0, "no RAM block %u", block);
	if (page >= w->blocks[block].npages)
		return snap_err_set(err, -ERANGE, 0, "page %llu is past the "
				    "end of RAM block '%s'",
				    (unsigned long long)page,
				    w->blocks[block].idstr);
	return 0;
}

static bool
in_run(const struct fmt_writer *w, unsigned block, uint64_t page)
{
	return w->cur >= 0 && w->run_block == block && page >= w->run_first &&
	       page < w->run_first + w->run_n;
}

/* True when pages [a, b) of @bl are all zero pages. */
static bool
all_clear(const struct wblock *bl, uint64_t a, uint64_t b)
{
	for (uint64_t i = a; i < b; i++)
		if (bit_get(bl->bitmap, i))
			return false;
	return true;
}

int
fmt_writer_put_page(struct fmt_writer *w, unsigned block, uint64_t page,
		    const void *data, struct snap_err *err)
{
	struct wblock *bl;
	uint8_t *slot;
	int rc;

	rc = check_page(w, block, page, err);
	if (rc < 0)
		return rc;
	bl = &w->blocks[block];
	if (snap_is_zero(data, bl->ps))
		return fmt_writer_put_zero(w, block, page, err);
	atomic_fetch_add(&w->pages_put, 1);
	if (!bit_get(bl->bitmap, page)) {
		bit_set(bl->bitmap, page);
		bl->present++;
	}
	bl->sums[page] = XXH3_64bits(data, bl->ps);

	if (in_run(w, block, page)) {
		slot = w->bufs[w->cur].data + (page - w->run_first) * bl->ps;
		memcpy(slot, data, bl->ps);
		return 0;
	}
	if (w->cur >= 0 && w->run_block == block &&
	    page >= w->run_first + w->run_n &&
	    page - w->run_first < w->run_cap &&
	    page - (w->run_first + w->run_n) <= w->gap &&
	    all_clear(bl, w->run_first + w->run_n, page)) {
		/* Append, filling a short gap of zero pages with zeros. */
		uint8_t *base = w->bufs[w->cur].data;
		uint64_t end = w->run_first + w->run_n;

		memset(base + (end - w->run_first) * bl->ps, 0,
		       (size_t)((page - end) * bl->ps));
		memcpy(base + (page - w->run_first) * bl->ps, data, bl->ps);
		w->run_n = page - w->run_first + 1;
		return 0;
	}
	rc = flush_run(w, err);
	if (rc == 0)
		rc = start_run(w, block, page, err);
	if (rc < 0)
		return fail(w, rc);
	memcpy(w->bufs[w->cur].data, data, bl->ps);
	w->run_n = 1;
	return 0;
}

int
fmt_writer_put_zero(struct fmt_writer *w, unsigned block, uint64_t page,
		    struct snap_err *err)
{
	struct wblock *bl;
	uint64_t off;
	int rc;

	rc = check_page(w, block, page, err);
	if (rc < 0)
		return rc;
	bl = &w->blocks[block];
	atomic_fetch_add(&w->pages_put, 1);
	if (in_run(w, block, page)) {
		/* Still in memory: the run will write zeros there. */
		/*
		 * The run keeps its length even when this is its last page:
		 * an earlier run may have written data there.
		 */
		memset(w->bufs[w->cur].data + (page - w->run_first) * bl->ps, 0,
		       bl->ps);
		if (bit_get(bl->bitmap, page)) {
			bit_clear(bl->bitmap, page);
			bl->present--;
			bl->sums[page] = 0;
		}
		return 0;
	}
	if (!bit_get(bl->bitmap, page))
		return 0;
	/* Data on disk (or on its way there) must become zero. */
	bit_clear(bl->bitmap, page);
	bl->present--;
	bl->sums[page] = 0;
	off = bl->off + page * bl->ps;
	rc = wait_overlap(w, off, bl->ps, err);
	if (rc < 0)
		return fail(w, rc);
	if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)bl->ps) == 0)
		return 0;
	/* No hole punching here: write zeros instead. */
	{
		uint8_t *z = calloc(1, bl->ps);
		if (z == NULL)
			return fail(w, snap_err_set(err, -ENOMEM, 0,
						    "out of memory"));
		rc = w_pwrite(w, z, bl->ps, off, err);
		free(z);
	}
	if (rc < 0)
		return fail(w, rc);
	return 0;
}

/* ---- device state, metadata --------------------------------------- */

static int
ds_emit(struct fmt_writer *w, ZSTD_inBuffer *in, ZSTD_EndDirective mode,
	struct snap_err *err)
{
	for (;;) {
		ZSTD_outBuffer o = { w->zout, DS_OUT_SIZE, 0 };
		size_t left = ZSTD_compressStream2(w->zc, &o, in, mode);
		int rc;

		if (ZSTD_isError(left))
			return snap_err_set(err, -EIO, w->ds_off + w->ds_len,
					    "cannot compress the device state: "
					    "%s", ZSTD_getErrorName(left));
		if (o.pos > 0) {
			rc = w_pwrite(w, w->zout, o.pos, w->ds_off + w->ds_len,
				      err);
			if (rc < 0)
				return rc;
			XXH3_64bits_update(w->ds_hash, w->zout, o.pos);
			w->ds_len += o.pos;
		}
		if (mode == ZSTD_e_end ? left == 0 : in->pos == in->size)
			return 0;
	}
}

static int
ds_init(struct fmt_writer *w, struct snap_err *err)
{
	if (w->zc != NULL)
		return 0;
	w->zc = ZSTD_createCCtx();
	w->zout = malloc(DS_OUT_SIZE);
	w->ds_hash = XXH3_createState();
	if (w->zc == NULL || w->zout == NULL || w->ds_hash == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	XXH3_64bits_reset(w->ds_hash);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel,
						w->zlevel)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1)))
		return snap_err_set(err, -EINVAL, 0, "bad zstd level %d",
				    w->zlevel);
	return 0;
}

int
fmt_writer_devstate(struct fmt_writer *w, const void *buf, size_t len,
		    struct snap_err *err)
{
	ZSTD_inBuffer in = { buf, len, 0 };
	int rc;

	rc = check_live(w, W_READY, err);
	if (rc < 0)
		return rc;
	if (len > FMT_MAX_DEVSTATE - w->ds_raw)
		return snap_err_set(err, SNAP_ELIMIT, 0, "device state larger "
				    "than %llu bytes",
				    (unsigned long long)FMT_MAX_DEVSTATE);
	rc = ds_init(w, err);
	if (rc == 0 && len > 0)
		rc = ds_emit(w, &in, ZSTD_e_continue, err);
	if (rc < 0)
		return fail(w, rc);
	w->ds_raw += len;
	atomic_fetch_add(&w->devstate_in, len);
	return 0;
}

static int
check_text(const char *s, const char *what, struct snap_err *err)
{
	if (s != NULL && strlen(s) > FMT_MAX_TEXT)
		return snap_err_set(err, SNAP_ELIMIT, 0, "metadata field '%s' "
				    "longer than %zu bytes", what,
				    FMT_MAX_TEXT);
	return 0;
}

int
fmt_writer_set_meta(struct fmt_writer *w, const struct fmt_meta *m,
		    struct snap_err *err)
{
	const char *src[9] = { m->guest_name, m->snapshot_name, m->guest_spec,
			       m->qemu_version, m->machine_type, m->qemu_argv,
			       m->capabilities, m->parent, m->disks_policy };
	static const char *const names[9] = {
		"guest_name", "snapshot_name", "guest_spec", "qemu_version",
		"machine_type", "qemu_argv", "capabilities", "parent",
		"disks_policy" };
	char *copy[9] = { NULL };
	int rc;

	if (w->state == W_DEAD || w->state == W_DONE)
		return check_live(w, W_READY, err);
	if ((unsigned)m->save_mode > FMT_SAVE_STOPPED)
		return snap_err_set(err, -EINVAL, 0, "bad save mode %d",
				    (int)m->save_mode);
	for (int i = 0; i < 9; i++) {
		rc = check_text(src[i], names[i], err);
		if (rc < 0)
			goto out;
		if (src[i] != NULL && (copy[i] = strdup(src[i])) == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < 9; i++) {
		free(w->meta_text[i]);
		w->meta_text[i] = copy[i];
		copy[i] = NULL;
	}
	w->meta = *m;
	w->meta.guest_name = w->meta_text[0];
	w->meta.snapshot_name = w->meta_text[1];
	w->meta.guest_spec = w->meta_text[2];
	w->meta.qemu_version = w->meta_text[3];
	w->meta.machine_type = w->meta_text[4];
	w->meta.qemu_argv = w->meta_text[5];
	w->meta.capabilities = w->meta_text[6];
	w->meta.parent = w->meta_text[7];
	w->meta.disks_policy = w->meta_text[8];
	w->have_meta = true;
	rc = 0;
out:
	for (int i = 0; i < 9; i++)
		free(copy[i]);
	return rc;
}

int
fmt_writer_set_entry(struct fmt_writer *w, const char *name, const void *data,
		     size_t len, struct snap_err *err)
{
	struct wentry *e = NULL;
	uint8_t *copy;
	size_t nlen = name != NULL ? strlen(name) : 0;

	if (w->state == W_DEAD || w->state == W_DONE)
		return check_live(w, W_READY, err);
	if (!fmt_entry_name_ok(name, nlen))
		return snap_err_set(err, -EINVAL, 0, "invalid entry name '%s'",
				    name != NULL ? name : "");
	if (len > FMT_MAX_ENTRY_SIZE)
		return snap_err_set(err, SNAP_ELIMIT, 0, "entry '%s' is %zu "
				    "bytes (at most %zu)", name, len,
				    FMT_MAX_ENTRY_SIZE);
	for (unsigned i = 0; i < w->nentries; i++)
		if (strcmp(w->entries[i].name, name) == 0)
			e = &w->entries[i];
	if (e == NULL) {
		if (w->nentries == FMT_MAX_ENTRIES)
			return snap_err_set(err, SNAP_ELIMIT, 0, "more than %d "
					    "entries", FMT_MAX_ENTRIES);
		/* The total must stay within the section limit. */
	}
	{
		size_t total = len + 8 + nlen + 8;
		for (unsigned i = 0; i < w->nentries; i++)
			if (&w->entries[i] != e)
				total += w->entries[i].len + 16 +
					 strlen(w->entries[i].name);
		if (total > FMT_MAX_ENTRIES_SIZE)
			return snap_err_set(err, SNAP_ELIMIT, 0, "entries "
					    "exceed %zu bytes in all",
					    FMT_MAX_ENTRIES_SIZE);
	}
	copy = malloc(len > 0 ? len : 1);
	if (copy == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	if (len > 0)
		memcpy(copy, data, len);
	if (e == NULL) {
		e = &w->entries[w->nentries++];
		snap_strlcpy(e->name, name, sizeof(e->name));
	} else {
		free(e->data);
	}
	e->data = copy;
	e->len = len;
	return 0;
}

/* ---- commit --------------------------------------------------------- */

struct sect {
	uint32_t type;
	uint64_t off;
	uint64_t len;
	uint64_t aux;
	uint64_t sum;
};

/* A growable byte buffer for building a section. */
struct bbuf {
	uint8_t *p;
	size_t len;
	size_t cap;
	bool oom;
};

static uint8_t *
bb_grow(struct bbuf *b, size_t n)
{
	if (b->oom)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 4096;
		uint8_t *np;
		while (cap < b->len + n)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = true;
			return NULL;
		}
		b->p = np;
		b->cap = cap;
	}
	memset(b->p + b->len, 0, n);
	b->len += n;
	return b->p + b->len - n;
}

static void
bb_put(struct bbuf *b, const void *data, size_t n)
{
	uint8_t *d = bb_grow(b, n);
	if (d != NULL && n > 0)
		memcpy(d, data, n);
}

static void
bb_pad8(struct bbuf *b)
{
	size_t pad = SNAP_ALIGN_UP(b->len, (size_t)8) - b->len;
	if (pad > 0)
		bb_grow(b, pad);
}

static void
meta_rec(struct bbuf *b, uint16_t tag, const void *v, size_t len)
{
	uint8_t *h = bb_grow(b, 8);

	if (h == NULL)
		return;
	snap_put_le16(h, tag);
	snap_put_le32(h + 4, (uint32_t)len);
	bb_put(b, v, len);
	bb_pad8(b);
}

static void
meta_u64(struct bbuf *b, uint16_t tag, uint64_t v)
{
	uint8_t x[8];

	snap_put_le64(x, v);
	meta_rec(b, tag, x, 8);
}

static void
build_meta(const struct fmt_writer *w, struct bbuf *b)
{
	static const uint16_t tags[9] = {
		FMT_T_GUEST_NAME, FMT_T_SNAPSHOT_NAME, FMT_T_GUEST_SPEC,
		FMT_T_QEMU_VERSION, FMT_T_MACHINE_TYPE, FMT_T_QEMU_ARGV,
		FMT_T_CAPABILITIES, FMT_T_PARENT, FMT_T_DISKS_POLICY };
	uint8_t mode[4];

	for (int i = 0; i < 9; i++)
		if (w->meta_text[i] != NULL)
			meta_rec(b, tags[i], w->meta_text[i],
				 strlen(w->meta_text[i]));
	if (!w->have_meta)
		return;
	meta_u64(b, FMT_T_CREATED_NS, w->meta.created_ns);
	meta_u64(b, FMT_T_SAVE_DURATION, w->meta.save_duration_ns);
	meta_u64(b, FMT_T_DOWNTIME, w->meta.downtime_ns);
	snap_put_le32(mode, (uint32_t)w->meta.save_mode);
	meta_rec(b, FMT_T_SAVE_MODE, mode, 4);
}

static void
build_entries(const struct fmt_writer *w, struct bbuf *b)
{
	uint8_t *h = bb_grow(b, FMT_ENTRIES_HDR);

	if (h != NULL)
		snap_put_le32(h, w->nentries);
	for (unsigned i = 0; i < w->nentries; i++) {
		const struct wentry *e = &w->entries[i];
		size_t nlen = strlen(e->name);

		h = bb_grow(b, 8);
		if (h == NULL)
			return;
		snap_put_le16(h, (uint16_t)nlen);
		snap_put_le32(h + 4, (uint32_t)e->len);
		bb_put(b, e->name, nlen);
		bb_put(b, e->data, e->len);
		bb_pad8(b);
	}
}

static void
build_blocks(const struct fmt_writer *w, struct bbuf *b)
{
	uint8_t *h = bb_grow(b, FMT_BLOCKS_HDR);

	if (h != NULL)
		snap_put_le32(h, w->nblocks);
	for (unsigned i = 0; i < w->nblocks; i++) {
		const struct wblock *bl = &w->blocks[i];
		uint8_t *r = bb_grow(b, FMT_BLOCKREC_SIZE);

		if (r == NULL)
			return;
		snap_put_le64(r, bl->off);
		snap_put_le64(r + 8, bl->length);
		snap_put_le64(r + 16, bl->present);
		snap_put_le32(r + 24, bl->ps);
		snap_put_le32(r + 28, bl->main ? FMT_BLOCK_F_MAIN : 0);
		memcpy(r + 32, bl->idstr, strlen(bl->idstr));
	}
}

/* Write a section built in memory at *@pos; record it in @s. */
static int
put_sect(struct fmt_writer *w, uint32_t type, const void *p, size_t len,
	 uint64_t *pos, struct sect *s, struct snap_err *err)
{
	int rc = w_pwrite(w, p, len, *pos, err);

	if (rc < 0)
		return rc;
	s->type = type;
	s->off = *pos;
	s->len = len;
	s->aux = 0;
	s->sum = XXH3_64bits(p, len);
	*pos = SNAP_ALIGN_UP(*pos + len, (uint64_t)8);
	return 0;
}

/* Bitmaps or checksums of all blocks, streamed in pieces. */
static int
put_array_sect(struct fmt_writer *w, uint32_t type, uint64_t *pos,
	       struct sect *s, struct snap_err *err)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t *tmp = malloc((size_t)1 << 20);
	uint64_t off = *pos;
	int rc = 0;

	if (st == NULL || tmp == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	XXH3_64bits_reset(st);
	for (unsigned i = 0; i < w->nblocks; i++) {
		const struct wblock *bl = &w->blocks[i];
		uint64_t nwords = type == FMT_S_BITMAP ?
				  fmt_bitmap_bytes(bl->npages) / 8 : bl->npages;
		const uint64_t *src = type == FMT_S_BITMAP ? bl->bitmap :
				      bl->sums;

		for (uint64_t j = 0; j < nwords;) {
			size_t k = (size_t)SNAP_MIN(nwords - j, (uint64_t)(1 << 17));
			for (size_t x = 0; x < k; x++)
				snap_put_le64(tmp + 8 * x, src[j + x]);
			rc = w_pwrite(w, tmp, k * 8, off, err);
			if (rc < 0)
				goto out;
			XXH3_64bits_update(st, tmp, k * 8);
			off += k * 8;
			j += k;
		}
	}
	s->type = type;
	s->off = *pos;
	s->len = off - *pos;
	s->aux = 0;
	s->sum = XXH3_64bits_digest(st);
	*pos = SNAP_ALIGN_UP(off, (uint64_t)8);
out:
	XXH3_freeState(st);
	free(tmp);
	return rc;
}

static int
do_fsync(struct fmt_writer *w, int fd, bool dir, const char *what,
	 struct snap_err *err)
{
	int rc = 0;

	if (w->hooks.fsync != NULL)
		rc = w->hooks.fsync(w->hooks.ctx, dir);
	if (rc == 0 && !(w->flags & FMT_W_NO_FSYNC) && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0)
		return snap_err_set(err, rc, 0, "cannot fsync '%s': %s", what,
				    snap_strerror(rc));
	return 0;
}

static int
publish(struct fmt_writer *w, struct snap_err *err)
{
	int rc, dfd;

	if (renameat2(AT_FDCWD, w->tmp, AT_FDCWD, w->final,
		      RENAME_NOREPLACE) < 0) {
		rc = -errno;
		if (rc == -EINVAL || rc == -ENOSYS) {
			/* No RENAME_NOREPLACE here: link() refuses to replace. */
			rc = link(w->tmp, w->final) < 0 ? -errno : 0;
			if (rc == 0)
				unlink(w->tmp);
		}
		if (rc < 0)
			return snap_err_set(err, rc, 0, "cannot rename '%s' to "
					    "'%s': %s", w->tmp, w->final,
					    snap_strerror(rc));
	}
	w->tmp[0] = '\0';
	dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = -errno;
		snap_err_set(err, rc, 0, "cannot open directory '%s': %s",
			     w->dir, snap_strerror(rc));
	} else {
		rc = do_fsync(w, dfd, true, w->dir, err);
		close(dfd);
	}
	if (rc < 0)
		unlink(w->final);
	return rc;
}

int
fmt_writer_commit(struct fmt_writer *w, struct fmt_summary *out,
		  struct snap_err *err)
{
	struct sect s[6];
	struct bbuf b = { 0 };
	uint8_t *dir = NULL, ft[FMT_FOOTER_SIZE];
	uint64_t pos, present = 0, total = 0;
	XXH128_hash_t root;
	XXH128_canonical_t canon;
	struct stat st;
	int rc;

	rc = check_live(w, W_READY, err);
	if (rc < 0)
		return rc;
	rc = flush_run(w, err);
	if (rc == 0 && w->aio_ok)
		rc = reap(w, w->inflight, err);
	if (rc < 0)
		goto out;

	/* Device state: close the zstd frame (an empty one if none came). */
	rc = ds_init(w, err);
	if (rc == 0) {
		ZSTD_inBuffer in = { NULL, 0, 0 };
		rc = ds_emit(w, &in, ZSTD_e_end, err);
	}
	if (rc < 0)
		goto out;
	s[3].type = FMT_S_DEVSTATE;
	s[3].off = w->ds_off;
	s[3].len = w->ds_len;
	s[3].aux = w->ds_raw;
	s[3].sum = XXH3_64bits_digest(w->ds_hash);

	pos = SNAP_ALIGN_UP(w->ds_off + w->ds_len, (uint64_t)FMT_META_ALIGN);
	build_blocks(w, &b);
	if (b.oom) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	rc = put_sect(w, FMT_S_BLOCKS, b.p, b.len, &pos, &s[0], err);
	if (rc == 0)
		rc = put_array_sect(w, FMT_S_BITMAP, &pos, &s[1], err);
	if (rc == 0)
		rc = put_array_sect(w, FMT_S_PAGESUM, &pos, &s[2], err);
	if (rc < 0)
		goto out;
	b.len = 0;
	build_meta(w, &b);
	if (b.oom) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	rc = put_sect(w, FMT_S_META, b.p, b.len, &pos, &s[4], err);
	if (rc < 0)
		goto out;
	b.len = 0;
	build_entries(w, &b);
	if (b.oom) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	rc = put_sect(w, FMT_S_ENTRIES, b.p, b.len, &pos, &s[5], err);
	if (rc < 0)
		goto out;

	/* Directory, then the footer. */
	dir = calloc(6, FMT_DIRENT_SIZE);
	if (dir == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	for (int i = 0; i < 6; i++) {
		uint8_t *d = dir + i * FMT_DIRENT_SIZE;
		snap_put_le32(d, s[i].type);
		snap_put_le64(d + 8, s[i].off);
		snap_put_le64(d + 16, s[i].len);
		snap_put_le64(d + 24, s[i].aux);
		snap_put_le64(d + 32, s[i].sum);
	}
	root = XXH3_128bits(dir, 6 * FMT_DIRENT_SIZE);
	XXH128_canonicalFromHash(&canon, root);
	memset(ft, 0, sizeof(ft));
	memcpy(ft + FMT_FT_MAGIC, FMT_MAGIC, FMT_MAGIC_LEN);
	snap_put_le16(ft + FMT_FT_MAJOR, FMT_VERSION_MAJOR);
	snap_put_le16(ft + FMT_FT_MINOR, FMT_VERSION_MINOR);
	snap_put_le32(ft + FMT_FT_SIZE, FMT_FOOTER_SIZE);
	snap_put_le64(ft + FMT_FT_DIROFF, pos);
	snap_put_le32(ft + FMT_FT_DIRCOUNT, 6);
	snap_put_le64(ft + FMT_FT_DIRSUM, XXH3_64bits(dir, 6 * FMT_DIRENT_SIZE));
	memcpy(ft + FMT_FT_ROOT, canon.digest, 16);
	snap_put_le64(ft + FMT_FT_SUM, XXH3_64bits(ft, FMT_FT_SUM));
	rc = w_pwrite(w, dir, 6 * FMT_DIRENT_SIZE, pos, err);
	if (rc == 0)
		rc = w_pwrite(w, ft, FMT_FOOTER_SIZE, pos + 6 * FMT_DIRENT_SIZE,
			      err);
	if (rc == 0 && ftruncate(w->fd, (off_t)(pos + 6 * FMT_DIRENT_SIZE +
					       FMT_FOOTER_SIZE)) < 0)
		rc = snap_err_set(err, -errno, 0, "cannot truncate '%s': %s",
				  w->tmp, strerror(errno));
	if (rc == 0)
		rc = do_fsync(w, w->fd, false, w->tmp, err);
	if (rc == 0 && fstat(w->fd, &st) < 0)
		rc = snap_err_set(err, -errno, 0, "cannot stat '%s': %s",
				  w->tmp, strerror(errno));
	if (rc < 0)
		goto out;
	rc = publish(w, err);
	if (rc < 0)
		goto out;

	for (unsigned i = 0; i < w->nblocks; i++) {
		present += w->blocks[i].present;
		total += w->blocks[i].npages;
	}
	w->state = W_DONE;
	remove_tmp(w);
	if (out != NULL) {
		memset(out, 0, sizeof(*out));
		memcpy(out->root.bytes, canon.digest, 16);
		out->apparent_size = (uint64_t)st.st_size;
		out->allocated_size = (uint64_t)st.st_blocks * 512;
		out->present_pages = present;
		out->total_pages = total;
		out->data_bytes_written = w->data_bytes;
		out->devstate_raw = w->ds_raw;
		out->devstate_stored = w->ds_len;
		snap_strlcpy(out->path, w->final, sizeof(out->path));
	}
	rc = 0;
out:
	free(b.p);
	free(dir);
	if (rc < 0)
		fail(w, rc);
	return rc;
}

/* ---- abort, free, accessors ---------------------------------------- */

void
fmt_writer_abort(struct fmt_writer *w)
{
	if (w == NULL || w->state == W_DONE)
		return;
	fail(w, SNAP_EMISUSE);
}

void
fmt_writer_free(struct fmt_writer *w)
{
	if (w == NULL)
		return;
	drain_quiet(w);
	remove_tmp(w);
	if (w->aio_ok)
		io_destroy(w->aio);
	if (w->bufs != NULL)
		for (unsigned i = 0; i < w->qd; i++)
			free(w->bufs[i].data);
	free(w->bufs);
	for (unsigned i = 0; i < w->nblocks; i++) {
		free(w->blocks[i].bitmap);
		free(w->blocks[i].sums);
	}
	free(w->blocks);
	ZSTD_freeCCtx(w->zc);
	free(w->zout);
	XXH3_freeState(w->ds_hash);
	for (int i = 0; i < 9; i++)
		free(w->meta_text[i]);
	for (unsigned i = 0; i < w->nentries; i++)
		free(w->entries[i].data);
	free(w);
}

void
fmt_writer_progress(const struct fmt_writer *w, struct fmt_progress *out)
{
	out->bytes_written = atomic_load(&w->bytes_written);
	out->pages_put = atomic_load(&w->pages_put);
	out->devstate_in = atomic_load(&w->devstate_in);
}

enum fmt_io_mode
fmt_writer_io_mode(const struct fmt_writer *w)
{
	return w->mode;
}

const char *
fmt_writer_tmp_path(const struct fmt_writer *w)
{
	return w->tmp;
}
