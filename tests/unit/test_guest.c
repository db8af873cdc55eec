/*
 * tests/unit/test_guest.c: the test guest's pattern (tests/guest/pattern.h)
 * on the host: page contents depend on seed, page and generation; the
 * zero-page layout gives the asked share of zero pages, in whole runs and
 * isolated single pages; and the harness's model functions agree with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/util.h"
#include "tests/guest/pattern.h"
#include "tests/harness/harness.h"

#define NPAGES (1u << 18)	/* 1 GiB worth of pages */

static void
test_page_content(void **state)
{
	uint64_t a[SG_PAGE_WORDS], b[SG_PAGE_WORDS];
	uint64_t key = sg_page_key(42, 1000, 0);

	(void)state;
	sg_fill_page(a, key);
	for (unsigned j = 0; j < SG_PAGE_WORDS; j++)
		assert_true(a[j] == sg_page_word(key, j));
	assert_true(sg_check_page(a, key) == 0);
	assert_true(sg_page_nonzero(a) != 0);
	/* Any single flipped bit is seen. */
	for (unsigned bit = 0; bit < 64 * SG_PAGE_WORDS; bit += 97) {
		a[bit / 64] ^= 1ull << (bit % 64);
		assert_true(sg_check_page(a, key) != 0);
		a[bit / 64] ^= 1ull << (bit % 64);
	}
	/* Another page, generation or seed gives other content. */
	sg_fill_page(b, sg_page_key(42, 1001, 0));
	assert_memory_not_equal(a, b, sizeof(a));
	sg_fill_page(b, sg_page_key(42, 1000, 1));
	assert_memory_not_equal(a, b, sizeof(a));
	sg_fill_page(b, sg_page_key(43, 1000, 0));
	assert_memory_not_equal(a, b, sizeof(a));
	/* No two words of a page are equal (nothing to deduplicate). */
	for (unsigned j = 1; j < SG_PAGE_WORDS; j++)
		assert_true(a[j] != a[j - 1]);
}

struct layout_stats {
	uint64_t zero, single, run_pages;
};

static struct layout_stats
layout_stats(unsigned zero, unsigned single)
{
	struct layout_stats st = { 0, 0, 0 };
	struct sg_layout l;

	sg_layout_init(&l, 7, zero, single);
	for (uint64_t c = 0; c < NPAGES / SG_ZERO_CHUNK; c++) {
		uint64_t base = c * SG_ZERO_CHUNK, nz = 0;
		int z[SG_ZERO_CHUNK];

		for (unsigned i = 0; i < SG_ZERO_CHUNK; i++) {
			z[i] = sg_page_is_zero(&l, base + i);
			nz += (uint64_t)z[i];
		}
		st.zero += nz;
		if (nz == SG_ZERO_CHUNK) {
			st.run_pages += nz;
			continue;
		}
		/* Outside runs, zero pages are single and never touch. */
		for (unsigned i = 0; i < SG_ZERO_CHUNK; i++) {
			if (!z[i])
				continue;
			assert_true(i > 0 && i < SG_ZERO_CHUNK - 1);
			assert_false(z[i - 1]);
			assert_false(z[i + 1]);
			st.single++;
		}
	}
	return st;
}

/* |got - want| within @tol percent of NPAGES. */
static void
assert_near(uint64_t got, uint64_t want_permille, uint64_t tol_permille)
{
	uint64_t want = NPAGES * want_permille / 1000;
	uint64_t tol = NPAGES * tol_permille / 1000;

	assert_true(got + tol >= want && got <= want + tol);
}

static void
test_layout_shares(void **state)
{
	struct layout_stats st;

	(void)state;
	st = layout_stats(0, 20);
	assert_int_equal(st.zero, 0);

	st = layout_stats(25, 20);		/* 20 % runs, 5 % singles */
	assert_near(st.run_pages, 200, 20);
	assert_near(st.single, 50, 5);
	assert_near(st.zero, 250, 20);

	st = layout_stats(30, 0);		/* runs only */
	assert_int_equal(st.single, 0);
	assert_near(st.run_pages, 300, 20);

	st = layout_stats(10, 100);		/* singles only */
	assert_int_equal(st.run_pages, 0);
	assert_near(st.single, 100, 5);

	st = layout_stats(100, 0);		/* everything zero */
	assert_int_equal(st.zero, NPAGES);
}

static void
test_model(void **state)
{
	struct hn_guest g;
	uint8_t page[4096];
	uint64_t d1, d2, z1, z2, words[SG_PAGE_WORDS];
	struct sg_layout l;
	uint64_t pfn, zpfn = 0, dpfn = 0;

	(void)state;
	memset(&g, 0, sizeof(g));
	g.seed = 99;
	g.zero_pct = 25;
	g.single_pct = 20;
	g.nranges = 2;
	g.ranges[0].pfn = 0x200;
	g.ranges[0].pages = 5000;
	g.ranges[1].pfn = 0x100000;
	g.ranges[1].pages = 3000;
	assert_true(hn_page_filled(&g, 0x200));
	assert_true(hn_page_filled(&g, 0x200 + 4999));
	assert_false(hn_page_filled(&g, 0x200 + 5000));
	assert_true(hn_page_filled(&g, 0x100000 + 2999));
	assert_false(hn_page_filled(&g, 0x1ff));

	sg_layout_init(&l, 99, 25, 20);
	for (pfn = 0x200; !zpfn || !dpfn; pfn++) {
		if (sg_page_is_zero(&l, pfn))
			zpfn = zpfn ? zpfn : pfn;
		else
			dpfn = dpfn ? dpfn : pfn;
	}
	assert_true(hn_expected_page(&g, zpfn, 0, page));
	assert_true(snap_is_zero(page, sizeof(page)));
	assert_false(hn_expected_page(&g, dpfn, 3, page));
	sg_fill_page(words, sg_page_key(99, dpfn, 3));
	for (unsigned j = 0; j < SG_PAGE_WORDS; j++)
		assert_true(snap_get_le64(page + 8 * j) == words[j]);

	/* The digest depends on every range and on the seed. */
	hn_model_digest(&g, &d1, &z1);
	assert_true(z1 > 0 && z1 < 8000);
	g.ranges[1].pages--;
	hn_model_digest(&g, &d2, &z2);
	assert_true(d1 != d2);
	g.ranges[1].pages++;
	g.seed++;
	hn_model_digest(&g, &d2, &z2);
	assert_true(d1 != d2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_content),
		cmocka_unit_test(test_layout_shares),
		cmocka_unit_test(test_model),
	};

	return cmocka_run_group_tests_name("guest", tests, NULL, NULL);
}
