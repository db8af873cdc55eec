/*
 * tests/harness/model.c: the host's model of the test guest's memory,
 * built on tests/guest/pattern.h, so a test can name the exact bytes any
 * guest page must hold and check the guest's READY line independently.
 */
#include <string.h>

#include "common/util.h"
#include "tests/guest/pattern.h"
#include "tests/harness/harness.h"

static void
layout_of(const struct hn_guest *g, struct sg_layout *l)
{
	sg_layout_init(l, g->seed, (unsigned)g->zero_pct,
		       (unsigned)g->single_pct);
}

bool
hn_expected_page(const struct hn_guest *g, uint64_t pfn, uint64_t gen,
		 uint8_t out[4096])
{
	struct sg_layout l;
	uint64_t key;

	layout_of(g, &l);
	if (sg_page_is_zero(&l, pfn)) {
		memset(out, 0, SG_PAGE_SIZE);
		return true;
	}
	key = sg_page_key(g->seed, pfn, gen);
	for (unsigned j = 0; j < SG_PAGE_WORDS; j++)
		snap_put_le64(out + 8 * j, sg_page_word(key, j));
	return false;
}

bool
hn_page_filled(const struct hn_guest *g, uint64_t pfn)
{
	for (unsigned r = 0; r < g->nranges; r++)
		if (pfn >= g->ranges[r].pfn &&
		    pfn - g->ranges[r].pfn < g->ranges[r].pages)
			return true;
	return false;
}

void
hn_model_digest(const struct hn_guest *g, uint64_t *digest,
		uint64_t *zero_pages)
{
	struct sg_layout l;
	uint64_t d = SG_DIGEST_INIT, z = 0;

	layout_of(g, &l);
	for (unsigned r = 0; r < g->nranges; r++) {
		for (uint64_t i = 0; i < g->ranges[r].pages; i++) {
			uint64_t pfn = g->ranges[r].pfn + i;
			int is_zero = sg_page_is_zero(&l, pfn);

			z += (uint64_t)is_zero;
			d = sg_digest_step(d, g->seed, pfn, is_zero, 0);
		}
	}
	*digest = d;
	*zero_pages = z;
}
