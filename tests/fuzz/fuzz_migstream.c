/*
 * tests/fuzz/fuzz_migstream.c: libFuzzer target for the migration stream
 * parser (format/migstream.c).
 *
 * The whole input is the stream; its size picks the chunk size it is fed
 * in, so that mutations also vary the chunking. Whatever the bytes, the parser must not crash,
 * leak or grow without bound. When a stream parses, it is also
 * re-synthesized on the fly (every page and zero page, in order) and the
 * result parsed again: both parses must report the same events, which
 * checks the synthesizer against the parser on arbitrary accepted input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
	uint8_t *p;
	size_t len, cap;
};

struct run {
	uint64_t hash;          /* over every event, in order */
	XXH3_state_t *dev;      /* over the device state, chunking aside */
	struct mig_synth *synth;
	struct out out;
	bool ram_ended;
	uint8_t *pre;
	size_t pre_len;
};

static void
mix(struct run *r, const void *d, size_t n)
{
	r->hash = XXH3_64bits_withSeed(d, n, r->hash) ^ (r->hash >> 7);
}

static int
out_write(void *opaque, const void *d, size_t n)
{
	struct out *o = opaque;

	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		uint8_t *np;

		while (cap < o->len + n)
			cap *= 2;
		np = realloc(o->p, cap);
		if (!np)
			return -1;
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, d, n);
	o->len += n;
	return 0;
}

static int
f_preamble(void *opaque, const struct mig_preamble *pre)
{
	struct run *r = opaque;

	mix(r, pre->bytes, pre->len);
	mix(r, pre->machine, strlen(pre->machine));
	r->pre = malloc(pre->len);
	if (!r->pre)
		return -1;
	memcpy(r->pre, pre->bytes, pre->len);
	r->pre_len = pre->len;
	return 0;
}

static int
f_ram(void *opaque, const struct mig_ram *ram)
{
	struct run *r = opaque;
	struct mig_synth_params sp = {
		.preamble = r->pre,
		.preamble_len = r->pre_len,
		.section_id = ram->section_id,
		.instance_id = ram->instance_id,
		.version_id = ram->version_id,
		.blocks = ram->blocks,
		.nblocks = ram->nblocks,
		.pages_in = (ram->nblocks & 1) ? MIG_PAGES_IN_START
					       : MIG_PAGES_IN_END,
	};

	mix(r, &ram->section_id, sizeof(ram->section_id));
	mix(r, ram->blocks, ram->nblocks * sizeof(*ram->blocks));
	if (r->pre && mig_synth_open(&r->synth, &sp, out_write, &r->out,
				     NULL) < 0)
		abort();        /* the parser accepted what synth refuses */
	return 0;
}

static int
f_page(void *opaque, uint32_t block, uint64_t offset, const uint8_t *d)
{
	struct run *r = opaque;

	mix(r, &block, sizeof(block));
	mix(r, &offset, sizeof(offset));
	if (d)
		mix(r, d, MIG_PAGE_SIZE);
	if (r->synth && mig_synth_page(r->synth, block, offset, d) < 0)
		abort();
	return 0;
}

static int
f_device(void *opaque, const uint8_t *buf, size_t len)
{
	struct run *r = opaque;

	XXH3_64bits_update(r->dev, buf, len);
	if (r->synth) {
		if (!r->ram_ended && mig_synth_ram_end(r->synth) < 0)
			abort();
		r->ram_ended = true;
		if (mig_synth_device(r->synth, buf, len) < 0)
			abort();
	}
	return 0;
}

static const struct mig_parser_ops ops = {
	.preamble = f_preamble,
	.ram = f_ram,
	.page = f_page,
	.device = f_device,
};

static int
parse(const uint8_t *s, size_t n, size_t chunk, struct run *r)
{
	struct mig_parser *p;
	struct mig_stats st;
	int rc = 0;

	r->hash = 0x9E3779B97F4A7C15ull;
	if (!r->dev && !(r->dev = XXH3_createState()))
		return -1;
	XXH3_64bits_reset(r->dev);
	if (mig_parser_open(&p, &ops, r) < 0)
		return -1;
	for (size_t o = 0; o < n && rc == 0; o += chunk)
		rc = mig_parser_feed(p, s + o, SNAP_MIN(chunk, n - o), NULL);
	if (rc == 0)
		rc = mig_parser_finish(p, NULL);
	mig_parser_stats(p, &st);
	if (st.bytes > n)
		abort();
	r->hash ^= XXH3_64bits_digest(r->dev);
	mig_parser_free(p);
	return rc;
}

static void
run_free(struct run *r)
{
	mig_synth_free(r->synth);
	XXH3_freeState(r->dev);
	free(r->out.p);
	free(r->pre);
	memset(r, 0, sizeof(*r));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 0, 1, 2, 3, 5, 8, 9, 64, 4095, 4104 };
	struct run a = { 0 }, b = { 0 };
	size_t chunk;

	chunk = chunks[size % SNAP_ARRAY_SIZE(chunks)];
	if (chunk == 0)
		chunk = size ? size : 1;
	if (parse(data, size, chunk, &a) == 0 && a.synth) {
		if (mig_synth_finish(a.synth) < 0)
			abort();
		/* the synthesized stream must parse to the same events */
		if (parse(a.out.p, a.out.len, 4096, &b) != 0 || b.hash != a.hash)
			abort();
	}
	run_free(&a);
	run_free(&b);
	return 0;
}
