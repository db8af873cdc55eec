/*
 * format/verify.c: checks every present page of a snapshot against its
 * checksum, and the device state against its own.
 *
 * Runs of present pages (joined across short gaps so that reads stay
 * large) are read in chunks of up to CHUNK bytes with O_DIRECT and libaio,
 * QD chunks in flight, and hashed as they complete. Where O_DIRECT is
 * refused the same chunks are read with buffered pread and sequential
 * readahead.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/util.h"
#include "format/fmt_int.h"

#define CHUNK     ((size_t)2 << 20)
#define QD        8
#define GAP_PAGES 16
#define PROGRESS_STEP ((uint64_t)64 << 20)

struct vchunk {
	uint8_t *buf;
	unsigned block;
	uint64_t page;      /* first page */
	uint64_t npages;
	uint64_t off;
	size_t len;
	struct iocb cb;
};

struct vstate {
	struct fmt_reader *r;
	const struct fmt_verify_opts *o;
	struct fmt_verify_result res;
	struct snap_err *err;
	int first_bad;
	bool cancelled;
	uint64_t total;
	uint64_t next_progress;
	/* chunk cursor */
	unsigned cblock;
	uint64_t cpage;
};

/* Next chunk of present pages from the cursor; false when done. */
static bool
next_chunk(struct vstate *v, struct vchunk *c)
{
	struct fmt_reader *r = v->r;

	if (v->o->cancel != NULL && *v->o->cancel) {
		v->cancelled = true;
		return false;
	}
	while (v->cblock < r->nblocks) {
		const struct rblock *b = &r->blocks[v->cblock];
		uint64_t ps = b->info.page_size, p, end, maxn;

		if (fmt_reader_next_present(r, v->cblock, v->cpage, &p) < 0) {
			v->cblock++;
			v->cpage = 0;
			continue;
		}
		/* Stop at the next CHUNK-aligned file offset: aligned reads. */
		{
			uint64_t off = b->info.file_offset + p * ps;
			uint64_t lim = SNAP_ALIGN_UP(off + 1, (uint64_t)CHUNK);
			maxn = SNAP_MAX((uint64_t)1, (lim - off) / ps);
		}
		end = p + 1;
		/* Extend over present pages and short gaps, up to maxn. */
		while (end - p < maxn && end < b->info.npages) {
			uint64_t q;
			if (fmt_reader_next_present(r, v->cblock, end, &q) < 0 ||
			    q - end > GAP_PAGES || q + 1 - p > maxn)
				break;
			end = q + 1;
		}
		c->block = v->cblock;
		c->page = p;
		c->npages = end - p;
		c->off = b->info.file_offset + p * ps;
		c->len = (size_t)(c->npages * ps);
		v->cpage = end;
		return true;
	}
	return false;
}

/* Total bytes of present pages, for progress. */
static uint64_t
present_bytes(const struct fmt_reader *r)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < r->nblocks; i++)
		t += r->blocks[i].info.present * r->blocks[i].info.page_size;
	return t;
}

static void
bad_page(struct vstate *v, const struct rblock *b, uint64_t page)
{
	uint64_t off = b->info.file_offset + page * b->info.page_size;

	v->res.bad_pages++;
	if (v->o->bad_page != NULL)
		v->o->bad_page(v->o->ctx, b->info.idstr, page, off);
	if (!v->first_bad) {
		v->first_bad = 1;
		snap_err_set(v->err, SNAP_ECHECKSUM, off, "checksum mismatch "
			     "in page %llu of RAM block '%s' (file offset %llu)",
			     (unsigned long long)page, b->info.idstr,
			     (unsigned long long)off);
	}
}

/* Hash the pages of a chunk whose first @got bytes were read. */
static void
check_chunk(struct vstate *v, const struct vchunk *c, size_t got)
{
	const struct rblock *b = &v->r->blocks[c->block];
	uint64_t ps = b->info.page_size;

	v->res.bytes_read += got;
	for (uint64_t i = 0; i < c->npages; i++) {
		uint64_t p = c->page + i;

		if (!((b->bitmap[p / 64] >> (p % 64)) & 1))
			continue;
		v->res.pages_checked++;
		if ((i + 1) * ps > got ||
		    XXH3_64bits(c->buf + i * ps, (size_t)ps) != b->sums[p])
			bad_page(v, b, p);
	}
	if (v->o->progress != NULL && v->res.bytes_read >= v->next_progress) {
		/* Reads may span short gaps: never report past the total. */
		v->o->progress(v->o->ctx, SNAP_MIN(v->res.bytes_read, v->total),
			       v->total);
		v->next_progress = v->res.bytes_read + PROGRESS_STEP;
	}
}

/* Read a chunk synchronously (buffered fd), returning bytes got. */
static size_t
read_sync(struct vstate *v, struct vchunk *c)
{
	size_t got = 0;

	while (got < c->len) {
		ssize_t n = pread(v->r->fd, c->buf + got, c->len - got,
				  (off_t)(c->off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static int
verify_buffered(struct vstate *v, struct vchunk *c)
{
	posix_fadvise(v->r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (next_chunk(v, c)) {
		if (c->off + c->len > v->r->size)
			c->len = 0;
		check_chunk(v, c, read_sync(v, c));
	}
	return 0;
}

static int
verify_direct(struct vstate *v, int dfd, io_context_t ctx, struct vchunk *cs)
{
	struct io_event ev[QD];
	struct vchunk *freel[QD];
	unsigned nfree = QD, inflight = 0;
	bool more = true;

	for (unsigned i = 0; i < QD; i++)
		freel[i] = &cs[i];
	while (more || inflight > 0) {
		while (more && nfree > 0) {
			struct vchunk *c = freel[nfree - 1];
			struct iocb *cb = &c->cb;
			int rc;

			if (!next_chunk(v, c)) {
				more = false;
				break;
			}
			io_prep_pread(cb, dfd, c->buf, c->len, (long long)c->off);
			cb->data = c;
			rc = io_submit(ctx, 1, &cb);
			if (rc != 1) {
				/* Cannot queue it: read it here and now. */
				check_chunk(v, c, read_sync(v, c));
				continue;
			}
			nfree--;
			inflight++;
		}
		if (inflight == 0)
			break;
		int n = io_getevents(ctx, 1, (long)inflight, ev, NULL);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return snap_err_set(v->err, n, 0, "cannot wait for "
					    "reads: %s", snap_strerror(n));
		for (int i = 0; i < n; i++) {
			struct vchunk *c = ev[i].data;
			long res = (long)ev[i].res;

			inflight--;
			freel[nfree++] = c;
			if (res < 0 || (size_t)res < c->len)
				check_chunk(v, c, read_sync(v, c));
			else
				check_chunk(v, c, (size_t)res);
		}
	}
	return 0;
}

int
fmt_reader_verify(struct fmt_reader *r, const struct fmt_verify_opts *opts,
		  struct fmt_verify_result *res, struct snap_err *err)
{
	struct fmt_verify_opts def = { 0 };
	struct vstate v = { 0 };
	struct vchunk cs[QD];
	io_context_t ctx = 0;
	bool ctx_ok = false;
	int dfd = -1, rc;
	struct snap_err dserr;

	memset(cs, 0, sizeof(cs));
	rc = fmt_reader_hold_sums(r, err);
	if (rc < 0)
		return rc;
	v.r = r;
	v.o = opts != NULL ? opts : &def;
	v.err = err;
	v.total = present_bytes(r);
	v.next_progress = PROGRESS_STEP;
	if (!v.o->buffered) {
		dfd = open(r->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (dfd >= 0 && io_setup(QD, &ctx) == 0)
			ctx_ok = true;
	}
	/* Buffered reads need one buffer, direct ones one per read in flight. */
	for (unsigned i = 0; i < (ctx_ok ? QD : 1); i++) {
		if (posix_memalign((void **)&cs[i].buf, 4096,
				   SNAP_MAX(CHUNK, (size_t)FMT_MAX_PAGE_SIZE)) != 0) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
	}
	if (ctx_ok) {
		v.res.direct = true;
		rc = verify_direct(&v, dfd, ctx, cs);
	} else {
		rc = verify_buffered(&v, &cs[0]);
	}
	if (rc == 0 && v.cancelled) {
		/* A bad page already found is still the verdict. */
		*res = v.res;
		rc = v.first_bad ? SNAP_ECHECKSUM :
		     snap_err_set(err, -ECANCELED, 0, "verification cancelled");
		goto out;
	}
	if (rc < 0)
		goto out;
	if (v.o->progress != NULL)
		v.o->progress(v.o->ctx, v.total, v.total);
	rc = fmt_check_devstate(r, &dserr);
	if (rc == SNAP_ECHECKSUM) {
		v.res.bad_sections++;
		if (!v.first_bad && err != NULL)
			*err = dserr;
		v.first_bad = 1;
	} else if (rc < 0) {
		if (err != NULL)
			*err = dserr;
		goto out;
	}
	v.res.bytes_read += r->sect[FMT_S_DEVSTATE].len;
	*res = v.res;
	rc = v.first_bad ? SNAP_ECHECKSUM : 0;
out:
	if (ctx_ok)
		io_destroy(ctx);
	if (dfd >= 0)
		close(dfd);
	for (unsigned i = 0; i < QD; i++)
		free(cs[i].buf);
	return rc;
}
