/*
 * tests/guest/pattern.h: what every page of the test guest's memory must
 * hold, shared by the guest (freestanding) and the host-side test harness.
 *
 * A page is named by its guest-physical frame number (pfn = address / 4096).
 * Its content is a function of (seed, pfn, generation):
 *
 *   key       = sg_page_key(seed, pfn, gen)
 *   word j    = sg_word(key + j * SG_STEP)     for j in 0..511, little-endian
 *
 * except for the pages the layout chooses to leave zero (sg_page_is_zero),
 * which stay all-zero bytes for ever. Zero pages come in two kinds, like the
 * free memory of a real guest: whole chunks of SG_ZERO_CHUNK pages (runs)
 * and isolated single pages inside non-zero chunks. Both decisions depend
 * only on (seed, pfn, zero percentage, single percentage), so the host can
 * tell any page's expected bytes without asking the guest, given the page's
 * generation (0 until the guest rewrites it).
 *
 * Everything here is pure integer arithmetic on uint64_t; it needs only
 * <stdint.h> so that it compiles both freestanding and hosted.
 */
#ifndef SNAPGUEST_PATTERN_H
#define SNAPGUEST_PATTERN_H

#include <stdint.h>

#define SG_PAGE_SHIFT	12
#define SG_PAGE_SIZE	4096u
#define SG_PAGE_WORDS	(SG_PAGE_SIZE / 8)
/* Zero runs are whole aligned chunks of this many pages (256 KiB). */
#define SG_ZERO_CHUNK	64
/* Single zero pages sit only at odd offsets 1..61 of a chunk: 31 slots. */
#define SG_SINGLE_SLOTS	31
#define SG_STEP		0x9e3779b97f4a7c15ull
#define SG_WORD_MUL	0xd6e8feb86659fd93ull
#define SG_DIGEST_INIT	0x736e617067756573ull	/* "snapgues" */

/* The splitmix64 finaliser: a cheap, good 64-bit mixer. */
static inline uint64_t
sg_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* The per-page key from which all 512 words of a page derive. */
static inline uint64_t
sg_page_key(uint64_t seed, uint64_t pfn, uint64_t gen)
{
	return sg_mix64(seed ^ sg_mix64(pfn * 0x100000001b3ull +
					gen * 0xc2b2ae3d27d4eb4full + 1));
}

/* One word from a running value x = key + j * SG_STEP: two cheap steps. */
static inline uint64_t
sg_word(uint64_t x)
{
	x ^= x >> 32;
	return x * SG_WORD_MUL;
}

/* Expected word @j of the page with key @key. */
static inline uint64_t
sg_page_word(uint64_t key, unsigned j)
{
	return sg_word(key + (uint64_t)j * SG_STEP);
}

/* Write a whole page with key @key (p 8-byte aligned). */
static inline void
sg_fill_page(uint64_t *p, uint64_t key)
{
	uint64_t x = key;

	for (unsigned j = 0; j < SG_PAGE_WORDS; j += 4) {
		p[j] = sg_word(x);
		p[j + 1] = sg_word(x + SG_STEP);
		p[j + 2] = sg_word(x + 2 * SG_STEP);
		p[j + 3] = sg_word(x + 3 * SG_STEP);
		x += 4 * SG_STEP;
	}
}

/* Nonzero when the page at @p does not hold the page with key @key. */
static inline uint64_t
sg_check_page(const uint64_t *p, uint64_t key)
{
	uint64_t x = key, diff = 0;

	for (unsigned j = 0; j < SG_PAGE_WORDS; j += 4) {
		diff |= p[j] ^ sg_word(x);
		diff |= p[j + 1] ^ sg_word(x + SG_STEP);
		diff |= p[j + 2] ^ sg_word(x + 2 * SG_STEP);
		diff |= p[j + 3] ^ sg_word(x + 3 * SG_STEP);
		x += 4 * SG_STEP;
	}
	return diff;
}

/* Nonzero when the page at @p holds any nonzero byte. */
static inline uint64_t
sg_page_nonzero(const uint64_t *p)
{
	uint64_t acc = 0;

	for (unsigned j = 0; j < SG_PAGE_WORDS; j += 4)
		acc |= p[j] | p[j + 1] | p[j + 2] | p[j + 3];
	return acc;
}

/*
 * The zero-page layout. zero_pct is the share of pages left zero, single_pct
 * the share of those that are isolated single pages (the rest are whole
 * chunks). Single pages can fill at most 31 of every 64 pages of the
 * non-run chunks; beyond that the single share is lower than asked.
 */
struct sg_layout {
	uint64_t seed;
	uint64_t run_bp;	/* chunk is a run when hash % 10000 < run_bp */
	uint64_t single_num;	/* slot is zero when hash % single_den < num */
	uint64_t single_den;
};

static inline void
sg_layout_init(struct sg_layout *l, uint64_t seed, unsigned zero_pct,
	       unsigned single_pct)
{
	uint64_t z = zero_pct > 100 ? 100 : zero_pct;
	uint64_t s = single_pct > 100 ? 100 : single_pct;

	l->seed = seed;
	l->run_bp = z * (100 - s);
	/*
	 * Singles make up z * s / 10000 of all pages; they live in the
	 * (10000 - run_bp) / 10000 of chunks that are not runs, on 31 slots
	 * out of 64 pages.
	 */
	l->single_num = z * s * SG_ZERO_CHUNK;
	l->single_den = (10000 - l->run_bp) * SG_SINGLE_SLOTS;
}

/* Nonzero when page @pfn is one the layout leaves zero. */
static inline int
sg_page_is_zero(const struct sg_layout *l, uint64_t pfn)
{
	uint64_t chunk = pfn / SG_ZERO_CHUNK, pos = pfn % SG_ZERO_CHUNK;

	if (sg_mix64(l->seed ^ (chunk * 0x9e3779b97f4a7c15ull) ^
		     0x72756e73ull) % 10000 < l->run_bp)
		return 1;
	if (l->single_num == 0 || !(pos & 1) || pos > 61)
		return 0;
	if (l->single_num >= l->single_den)
		return 1;
	return sg_mix64(l->seed ^ (pfn * 0xff51afd7ed558ccdull) ^
			0x73696e67ull) % l->single_den < l->single_num;
}

/*
 * The READY digest folds every filled page in address order: its pfn and
 * either its key or the fact that it is zero. Start from SG_DIGEST_INIT.
 */
static inline uint64_t
sg_digest_step(uint64_t d, uint64_t seed, uint64_t pfn, int is_zero,
	       uint64_t gen)
{
	uint64_t v = is_zero ? ~pfn : sg_page_key(seed, pfn, gen);

	return sg_mix64(d ^ v) + pfn;
}

#endif
