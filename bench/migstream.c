/*
 * bench/migstream.c: throughput of the migration stream parser and
 * synthesizer (format/migstream.h) on a large synthetic stream held in
 * memory, so that only the code is measured, not I/O.
 *
 * The stream is made by the synthesizer: one main RAM block of SIZE MiB
 * (default 1024) where a quarter of the pages are ZERO records and the
 * rest full pages, as QEMU sends a guest with 75% of its pages filled.
 * It is then parsed in read()-sized chunks (default 1 MiB), with a page
 * callback that does nothing (the parser's own cost) and one that copies
 * each page into a guest-sized image (a consumer that touches the data).
 *
 *   bench/migstream.sh [SIZE_MIB [CHUNK_KIB [ROUNDS]]]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"

struct out {
	uint8_t *p;
	size_t len, cap;
};

static int
out_write(void *opaque, const void *buf, size_t len)
{
	struct out *o = opaque;

	if (o->len + len > o->cap)
		return -ENOSPC;
	memcpy(o->p + o->len, buf, len);
	o->len += len;
	return 0;
}

static uint8_t *image;
static uint64_t sink;

static int
page_nop(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	(void)opaque;
	(void)block;
	sink += offset + (data != NULL);
	return 0;
}

static int
page_copy(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	(void)opaque;
	(void)block;
	if (data)
		memcpy(image + offset, data, MIG_PAGE_SIZE);
	return 0;
}

static int
device_nop(void *opaque, const uint8_t *buf, size_t len)
{
	(void)opaque;
	sink += buf[0] + len;
	return 0;
}

static double
parse(const struct out *s, size_t chunk, const struct mig_parser_ops *ops)
{
	struct mig_parser *p;
	struct snap_err e;
	uint64_t t0, t1;

	if (mig_parser_open(&p, ops, NULL) < 0)
		exit(1);
	t0 = snap_now_mono_ns();
	for (size_t o = 0; o < s->len; o += chunk) {
		if (mig_parser_feed(p, s->p + o, SNAP_MIN(chunk, s->len - o),
				    &e) < 0) {
			fprintf(stderr, "parse: %s\n", e.msg);
			exit(1);
		}
	}
	if (mig_parser_finish(p, &e) < 0) {
		fprintf(stderr, "parse: %s\n", e.msg);
		exit(1);
	}
	t1 = snap_now_mono_ns();
	mig_parser_free(p);
	return (double)(t1 - t0) / 1e9;
}

int
main(int argc, char **argv)
{
	uint64_t size = (argc > 1 ? strtoull(argv[1], NULL, 0) : 1024) << 20;
	size_t chunk = (argc > 2 ? strtoull(argv[2], NULL, 0) : 1024) << 10;
	int rounds = argc > 3 ? atoi(argv[3]) : 3;
	static const uint8_t pre[] = {
		'Q', 'E', 'V', 'M', 0, 0, 0, 3, 7, 0, 0, 0, 13,
		'p', 'c', '-', 'i', '4', '4', '0', 'f', 'x', '-', '7', '.', '2',
	};
	static const uint8_t dev[] = { 0x04, 0, 0, 0, 0, 1, 'x', 0, 0, 0, 0,
				       0, 0, 0, 1, 0x7E, 0, 0, 0, 0, 0x00 };
	struct mig_block blk = { .idstr = "pc.ram", .used_length = size };
	struct mig_synth_params sp = {
		.preamble = pre, .preamble_len = sizeof(pre),
		.section_id = 2, .version_id = 4,
		.blocks = &blk, .nblocks = 1,
	};
	struct mig_parser_ops nop = { .page = page_nop, .device = device_nop };
	struct mig_parser_ops copy = { .page = page_copy, .device = device_nop };
	struct out s = { 0 };
	struct mig_synth *sy;
	uint8_t page[MIG_PAGE_SIZE];
	double best_nop = 1e9, best_copy = 1e9, t;
	uint64_t t0;

	if (size == 0 || chunk == 0 || rounds < 1) {
		fprintf(stderr, "usage: %s [SIZE_MIB [CHUNK_KIB [ROUNDS]]]\n",
			argv[0]);
		return 2;
	}
	s.cap = size + size / 64 + (1 << 20);
	s.p = malloc(s.cap);
	image = malloc(size);
	if (!s.p || !image)
		return 1;
	/* touch every page now: page faults are not what is measured */
	memset(image, 1, size);
	memset(s.p, 1, s.cap);
	if (mig_synth_open(&sy, &sp, out_write, &s, NULL) < 0)
		return 1;
	t0 = snap_now_mono_ns();
	for (uint64_t off = 0; off < size; off += MIG_PAGE_SIZE) {
		uint64_t pg = off / MIG_PAGE_SIZE;

		memset(page, (int)(pg * 13 + 1), sizeof(page));
		if (mig_synth_page(sy, 0, off, pg % 4 == 3 ? NULL : page) < 0)
			return 1;
	}
	if (mig_synth_ram_end(sy) < 0 || mig_synth_device(sy, dev, sizeof(dev)) < 0 ||
	    mig_synth_finish(sy) < 0)
		return 1;
	t = (double)(snap_now_mono_ns() - t0) / 1e9;
	mig_synth_free(sy);
	printf("stream: %.1f MiB (%llu MiB guest, 75%% pages, 25%% zero), chunk %zu KiB\n",
	       (double)s.len / (1 << 20), (unsigned long long)(size >> 20),
	       chunk >> 10);
	printf("synthesize (incl. page fill): %.2f GB/s\n", (double)s.len / t / 1e9);
	for (int r = 0; r < rounds; r++) {
		t = parse(&s, chunk, &nop);
		best_nop = t < best_nop ? t : best_nop;
		t = parse(&s, chunk, &copy);
		best_copy = t < best_copy ? t : best_copy;
	}
	printf("parse, no-op page callback:   %.2f GB/s (best of %d)\n",
	       (double)s.len / best_nop / 1e9, rounds);
	printf("parse, copying page callback: %.2f GB/s (best of %d)\n",
	       (double)s.len / best_copy / 1e9, rounds);
	free(s.p);
	free(image);
	return sink == 42;
}
