/*
 * format/migsynth.c: the synthesizer of QEMU 7.2 migration streams.
 *
 * It writes what the parser (format/migstream.c) reads: the saved
 * preamble, a RAM START section carrying the saved block list, page
 * records (PAGE, or ZERO for a page that must become zero; CONTINUE when
 * the block is the previous record's), EOS and footers, the END section,
 * then the saved device state verbatim. Output is gathered in a 1 MiB
 * buffer and handed to the caller's write callback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"
#include "format/migstream_int.h"

#define SYNTH_BUF (1024 * 1024)

enum sstate {
	SY_NEW,         /* nothing written */
	SY_PAGES,       /* START written; pages may come */
	SY_DEVICE,      /* RAM done; device state may come */
	SY_DONE,
	SY_FAILED,
};

struct mig_synth {
	mig_write_fn write;
	void *opaque;
	enum sstate state;
	int err;

	uint8_t *pre;
	size_t pre_len;
	bool ignore_shared;
	struct mig_block *blocks;
	size_t nblocks;
	uint64_t total;
	uint32_t section_id, instance_id, version_id;
	enum mig_pages_in pages_in;
	int64_t last_block;

	uint8_t *buf;
	size_t used;
	uint64_t written;
};

int
mig_synth_open(struct mig_synth **out, const struct mig_synth_params *params,
	       mig_write_fn write, void *opaque, struct snap_err *err)
{
	struct mig_synth *s = NULL;
	uint64_t total = 0;
	bool ignore_shared = false;
	int rc;

	if (!write || !params->blocks || params->nblocks == 0 ||
	    params->nblocks > MIG_MAX_BLOCKS || !params->preamble ||
	    (params->pages_in != MIG_PAGES_IN_END &&
	     params->pages_in != MIG_PAGES_IN_START)) {
		rc = snap_err_set(err, SNAP_EMISUSE, 0,
				  "invalid synthesizer parameters");
		goto out;
	}
	for (size_t i = 0; i < params->nblocks; i++) {
		const struct mig_block *b = &params->blocks[i];
		size_t n = strnlen(b->idstr, sizeof(b->idstr));

		if (n == 0 || n > MIG_IDSTR_MAX || b->used_length == 0 ||
		    !SNAP_IS_ALIGNED(b->used_length, MIG_PAGE_SIZE) ||
		    b->used_length > UINT64_MAX - total) {
			rc = snap_err_set(err, SNAP_EMISUSE, 0,
					  "invalid ram block %zu", i);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(params->blocks[j].idstr, b->idstr) == 0) {
				rc = snap_err_set(err, SNAP_EMISUSE, 0,
						  "ram block '%s' listed twice",
						  b->idstr);
				goto out;
			}
		}
		total += b->used_length;
	}
	rc = mig_preamble_check(params->preamble, params->preamble_len,
				&ignore_shared, err);
	if (rc < 0)
		goto out;

	rc = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	s->pre = malloc(params->preamble_len);
	s->blocks = calloc(params->nblocks, sizeof(*s->blocks));
	s->buf = malloc(SYNTH_BUF);
	if (!s->pre || !s->blocks || !s->buf)
		goto out;
	memcpy(s->pre, params->preamble, params->preamble_len);
	s->pre_len = params->preamble_len;
	memcpy(s->blocks, params->blocks, params->nblocks * sizeof(*s->blocks));
	s->nblocks = params->nblocks;
	s->total = total;
	s->ignore_shared = ignore_shared;
	s->section_id = params->section_id;
	s->instance_id = params->instance_id;
	s->version_id = params->version_id;
	s->pages_in = params->pages_in;
	s->write = write;
	s->opaque = opaque;
	s->last_block = -1;
	s->state = SY_NEW;
	*out = s;
	s = NULL;
	rc = 0;
out:
	mig_synth_free(s);
	return rc;
}

void
mig_synth_free(struct mig_synth *s)
{
	if (!s)
		return;
	free(s->pre);
	free(s->blocks);
	free(s->buf);
	free(s);
}

uint64_t
mig_synth_bytes(const struct mig_synth *s)
{
	return s->written;
}

static int
synth_fail(struct mig_synth *s, int rc)
{
	s->state = SY_FAILED;
	s->err = rc;
	return rc;
}

static int
synth_flush(struct mig_synth *s)
{
	int rc;

	if (s->used == 0)
		return 0;
	rc = s->write(s->opaque, s->buf, s->used);
	if (rc < 0)
		return synth_fail(s, rc);
	s->written += s->used;
	s->used = 0;
	return 0;
}

/* Reserve @n (<= SYNTH_BUF) bytes in the output buffer. */
static uint8_t *
synth_reserve(struct mig_synth *s, size_t n)
{
	uint8_t *p;

	if (SYNTH_BUF - s->used < n && synth_flush(s) < 0)
		return NULL;
	p = s->buf + s->used;
	s->used += n;
	return p;
}

static int
synth_put(struct mig_synth *s, const void *b, size_t n)
{
	uint8_t *p = synth_reserve(s, n);

	if (!p)
		return s->err;
	memcpy(p, b, n);
	return 0;
}

static int
synth_put_be64(struct mig_synth *s, uint64_t v)
{
	uint8_t *p = synth_reserve(s, 8);

	if (!p)
		return s->err;
	snap_put_be64(p, v);
	return 0;
}

/* Type byte and section id of a PART/END header, or a footer. */
static int
synth_short(struct mig_synth *s, uint8_t type)
{
	uint8_t *p = synth_reserve(s, 5);

	if (!p)
		return s->err;
	p[0] = type;
	snap_put_be32(p + 1, s->section_id);
	return 0;
}

static int
synth_eos_footer(struct mig_synth *s)
{
	int rc;

	if ((rc = synth_put_be64(s, RAM_FLAG_EOS)) < 0)
		return rc;
	return synth_short(s, REC_FOOTER);
}

static int
synth_start(struct mig_synth *s)
{
	uint8_t hdr[1 + 4 + 1 + 3 + 4 + 4];
	int rc;

	if ((rc = synth_put(s, s->pre, s->pre_len)) < 0)
		return rc;
	hdr[0] = REC_SECTION_START;
	snap_put_be32(hdr + 1, s->section_id);
	hdr[5] = 3;
	memcpy(hdr + 6, RAM_IDSTR, 3);
	snap_put_be32(hdr + 9, s->instance_id);
	snap_put_be32(hdr + 13, s->version_id);
	if ((rc = synth_put(s, hdr, sizeof(hdr))) < 0)
		return rc;
	if ((rc = synth_put_be64(s, s->total | RAM_FLAG_MEM_SIZE)) < 0)
		return rc;
	for (size_t i = 0; i < s->nblocks; i++) {
		const struct mig_block *b = &s->blocks[i];
		uint8_t n = (uint8_t)strlen(b->idstr);

		if ((rc = synth_put(s, &n, 1)) < 0 ||
		    (rc = synth_put(s, b->idstr, n)) < 0 ||
		    (rc = synth_put_be64(s, b->used_length)) < 0)
			return rc;
		if (s->ignore_shared &&
		    (rc = synth_put_be64(s, b->addr)) < 0)
			return rc;
	}
	if (s->pages_in == MIG_PAGES_IN_END) {
		if ((rc = synth_eos_footer(s)) < 0 ||
		    (rc = synth_short(s, REC_SECTION_END)) < 0)
			return rc;
	}
	s->last_block = -1;
	s->state = SY_PAGES;
	return 0;
}

int
mig_synth_page(struct mig_synth *s, uint32_t block, uint64_t offset,
	       const uint8_t *data)
{
	uint64_t hdr;
	uint8_t *p;
	int rc;

	if (s->state == SY_FAILED)
		return s->err;
	if (s->state != SY_NEW && s->state != SY_PAGES)
		return SNAP_EMISUSE;
	if (block >= s->nblocks || !SNAP_IS_ALIGNED(offset, MIG_PAGE_SIZE) ||
	    offset >= s->blocks[block].used_length)
		return SNAP_EMISUSE;
	if (s->state == SY_NEW && (rc = synth_start(s)) < 0)
		return rc;

	hdr = offset | (data ? RAM_FLAG_PAGE : RAM_FLAG_ZERO);
	if ((int64_t)block == s->last_block) {
		p = synth_reserve(s, 8 + (data ? MIG_PAGE_SIZE : 1));
		if (!p)
			return s->err;
		snap_put_be64(p, hdr | RAM_FLAG_CONTINUE);
		p += 8;
	} else {
		size_t n = strlen(s->blocks[block].idstr);

		p = synth_reserve(s, 8 + 1 + n + (data ? MIG_PAGE_SIZE : 1));
		if (!p)
			return s->err;
		snap_put_be64(p, hdr);
		p[8] = (uint8_t)n;
		memcpy(p + 9, s->blocks[block].idstr, n);
		p += 9 + n;
		s->last_block = block;
	}
	if (data)
		memcpy(p, data, MIG_PAGE_SIZE);
	else
		*p = 0;
	return 0;
}

int
mig_synth_ram_end(struct mig_synth *s)
{
	int rc;

	if (s->state == SY_FAILED)
		return s->err;
	if (s->state != SY_NEW && s->state != SY_PAGES)
		return SNAP_EMISUSE;
	if (s->state == SY_NEW && (rc = synth_start(s)) < 0)
		return rc;
	if ((rc = synth_eos_footer(s)) < 0)
		return rc;
	if (s->pages_in == MIG_PAGES_IN_START) {
		if ((rc = synth_short(s, REC_SECTION_END)) < 0 ||
		    (rc = synth_eos_footer(s)) < 0)
			return rc;
	}
	s->state = SY_DEVICE;
	return 0;
}

int
mig_synth_device(struct mig_synth *s, const void *buf, size_t len)
{
	int rc;

	if (s->state == SY_FAILED)
		return s->err;
	if (s->state != SY_DEVICE)
		return SNAP_EMISUSE;
	if (len <= SYNTH_BUF - s->used) {
		memcpy(s->buf + s->used, buf, len);
		s->used += len;
		return 0;
	}
	if ((rc = synth_flush(s)) < 0)
		return rc;
	if (len < SYNTH_BUF) {
		memcpy(s->buf, buf, len);
		s->used = len;
		return 0;
	}
	rc = s->write(s->opaque, buf, len);
	if (rc < 0)
		return synth_fail(s, rc);
	s->written += len;
	return 0;
}

int
mig_synth_finish(struct mig_synth *s)
{
	int rc;

	if (s->state == SY_FAILED)
		return s->err;
	if (s->state != SY_DEVICE)
		return SNAP_EMISUSE;
	if ((rc = synth_flush(s)) < 0)
		return rc;
	s->state = SY_DONE;
	return 0;
}
