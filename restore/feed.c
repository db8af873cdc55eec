/*
 * restore/feed.c: the migration stream a restored QEMU loads.
 *
 * Rebuilt from the snapshot file: the preamble and the RAM section identity
 * saved with it (named entries "qemu.preamble" and "qemu.ram"), page records
 * for the small RAM blocks and for whatever of the main block the mode
 * asks, then the device state exactly as QEMU sent it. A page absent from
 * the file is sent as a ZERO record wherever a page is sent, so memory that
 * QEMU touched at reset ends up zero as in the snapshot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "common/util.h"
#include "format/format.h"
#include "format/migstream.h"
#include "restore/restore.h"

struct feed {
	int fd;
	struct mig_synth *synth;
	const struct rst_feed_opts *o;
	struct rst_feed_stats st;
	uint64_t last_progress;
};

static int
write_fd(void *opaque, const void *buf, size_t len)
{
	struct feed *f = opaque;
	int rc = snap_write_full(f->fd, buf, len);

	if (rc < 0)
		return rc;
	f->st.bytes += len;
	if (f->o->progress != NULL && f->st.bytes - f->last_progress >= (8u << 20)) {
		f->last_progress = f->st.bytes;
		f->o->progress(f->o->ctx, f->st.bytes);
	}
	return 0;
}

static int
devstate_sink(void *ctx, const void *buf, size_t len)
{
	struct feed *f = ctx;

	if (f->o->cancel != NULL && *f->o->cancel)
		return -ECANCELED;
	return mig_synth_device(f->synth, buf, len);
}

/* The saved RAM section: identity and MEM_SIZE list, from "qemu.ram". */
static int
load_ram_info(const struct fmt_reader *r, struct mig_synth_params *p,
	      struct mig_block **blocks_out, struct snap_err *err)
{
	const void *data;
	size_t len, n;
	json_error_t je;
	json_t *j = NULL, *blocks, *b;
	struct mig_block *blocks_v = NULL;
	int rc;

	if (fmt_reader_entry(r, "qemu.ram", &data, &len) < 0)
		return snap_err_set(err, SNAP_ECORRUPT, 0,
				    "snapshot has no 'qemu.ram' entry");
	j = json_loadb(data, len, 0, &je);
	blocks = json_object_get(j, "blocks");
	if (j == NULL || !json_is_array(blocks) ||
	    (n = json_array_size(blocks)) == 0 || n > MIG_MAX_BLOCKS ||
	    !json_is_integer(json_object_get(j, "section-id")) ||
	    !json_is_integer(json_object_get(j, "instance-id")) ||
	    !json_is_integer(json_object_get(j, "version-id"))) {
		rc = snap_err_set(err, SNAP_ECORRUPT, 0,
				  "snapshot entry 'qemu.ram' is malformed");
		goto out;
	}
	blocks_v = calloc(n, sizeof(*blocks_v));
	if (blocks_v == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *id;
		json_int_t l;

		b = json_array_get(blocks, i);
		id = json_string_value(json_object_get(b, "idstr"));
		l = json_integer_value(json_object_get(b, "used-length"));
		if (id == NULL || l <= 0 ||
		    snap_strlcpy(blocks_v[i].idstr, id,
				 sizeof(blocks_v[i].idstr)) >=
		    sizeof(blocks_v[i].idstr)) {
			rc = snap_err_set(err, SNAP_ECORRUPT, 0,
					  "snapshot entry 'qemu.ram': bad block %zu",
					  i);
			goto out;
		}
		blocks_v[i].used_length = (uint64_t)l;
	}
	p->section_id = (uint32_t)json_integer_value(json_object_get(j, "section-id"));
	p->instance_id = (uint32_t)json_integer_value(json_object_get(j, "instance-id"));
	p->version_id = (uint32_t)json_integer_value(json_object_get(j, "version-id"));
	p->blocks = blocks_v;
	p->nblocks = n;
	*blocks_out = blocks_v;
	blocks_v = NULL;
	rc = 0;
out:
	free(blocks_v);
	json_decref(j);
	return rc;
}

/*
 * Send pages [@page, @page + @n) of @fblock as block @mblock of the stream:
 * read with one call, a record per page (ZERO for a page absent from the
 * file).
 */
static int
send_pages(struct feed *f, struct fmt_reader *r, unsigned fblock,
	   uint32_t mblock, uint64_t page, uint64_t n, uint32_t page_size,
	   uint8_t *buf, struct snap_err *err)
{
	int rc = fmt_reader_read_pages(r, fblock, page, n, buf, err);

	if (rc < 0)
		return rc;
	for (uint64_t i = 0; i < n; i++) {
		int present = fmt_reader_page_present(r, fblock, page + i);

		if (present < 0)
			return present;
		if (present)
			f->st.pages++;
		else
			f->st.zero_pages++;
		rc = mig_synth_page(f->synth, mblock, (page + i) * page_size,
				    present ? buf + i * page_size : NULL);
		if (rc < 0)
			return snap_err_set(err, rc, 0, "cannot write the "
					    "stream: %s", snap_strerror(rc));
	}
	return 0;
}

int
rst_feed(struct fmt_reader *r, int fd, const struct rst_feed_opts *opts,
	 struct rst_feed_stats *st, struct snap_err *err)
{
	static const struct rst_feed_opts none = { .eager = false };
	struct mig_synth_params p = { .pages_in = MIG_PAGES_IN_END };
	struct feed f = { .fd = fd, .o = opts ? opts : &none };
	struct mig_block *blocks = NULL;
	uint8_t *buf = NULL;
	const void *pre;
	size_t prelen;
	int rc;

	if (fmt_reader_entry(r, "qemu.preamble", &pre, &prelen) < 0)
		return snap_err_set(err, SNAP_ECORRUPT, 0,
				    "snapshot has no 'qemu.preamble' entry");
	p.preamble = pre;
	p.preamble_len = prelen;
	if ((rc = load_ram_info(r, &p, &blocks, err)) < 0)
		return rc;
	rc = mig_synth_open(&f.synth, &p, write_fd, &f, err);
	if (rc < 0)
		goto out;
	buf = aligned_alloc(4096, SNAP_MAX(FMT_READ_MAX,
					   (size_t)FMT_MAX_PAGE_SIZE));
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t mb = 0; mb < p.nblocks; mb++) {
		struct fmt_block_info bi;
		int fb = fmt_reader_block_index(r, blocks[mb].idstr);

		if (fb < 0 || (rc = fmt_reader_block(r, (unsigned)fb, &bi)) < 0) {
			rc = snap_err_set(err, SNAP_ECORRUPT, 0,
					  "RAM block '%s' of the stream is not "
					  "in the file", blocks[mb].idstr);
			goto out;
		}
		if (bi.length != blocks[mb].used_length ||
		    bi.page_size != MIG_PAGE_SIZE) {
			rc = snap_err_set(err, SNAP_ECORRUPT, 0,
					  "RAM block '%s': file and stream "
					  "disagree on its size", bi.idstr);
			goto out;
		}
		f.st.blocks++;
		/* Pages a run at a time; in lazy mode only the main block's
		 * shadowed pages, one by one. */
		bool some = bi.main && !f.o->eager;
		uint64_t run = some ? 1 : SNAP_MAX((uint64_t)1,
						   FMT_READ_MAX / bi.page_size);

		for (uint64_t pg = 0; pg < bi.npages; pg += run) {
			if (some) {
				/* Skip to the next shadowed page, a word of
				 * the bitmap at a time. */
				uint64_t w = pg / 64, bits;

				if (f.o->fixups == NULL)
					break;
				bits = f.o->fixups[w] & (~0ull << (pg % 64));
				while (bits == 0 && ++w < (bi.npages + 63) / 64)
					bits = f.o->fixups[w];
				if (bits == 0)
					break;
				pg = w * 64 + (uint64_t)__builtin_ctzll(bits);
				if (pg >= bi.npages)
					break;
			}
			if (f.o->cancel != NULL && *f.o->cancel) {
				rc = -ECANCELED;
				goto out;
			}
			rc = send_pages(&f, r, (unsigned)fb, mb, pg,
					SNAP_MIN(run, bi.npages - pg),
					bi.page_size, buf, err);
			if (rc < 0)
				goto out;
			if (some)
				f.st.fixups++;
		}
	}
	if ((rc = mig_synth_ram_end(f.synth)) < 0) {
		snap_err_set(err, rc, 0, "cannot write the stream: %s",
			     snap_strerror(rc));
		goto out;
	}
	rc = fmt_reader_devstate(r, devstate_sink, &f, err);
	if (rc < 0)
		goto out;
	rc = mig_synth_finish(f.synth);
	if (rc < 0) {
		snap_err_set(err, rc, 0, "cannot write the stream: %s",
			     snap_strerror(rc));
		goto out;
	}
	if (st != NULL)
		*st = f.st;
	rc = 0;
out:
	free(buf);
	free(blocks);
	mig_synth_free(f.synth);
	return rc;
}
