/*
 * tests/unit/test_retention.c: the retention evaluator of
 * catalog/retention.h on synthetic timelines: UTC and ISO-week buckets,
 * gaps, ties, pinned snapshots, keep-within, the empty policy, each rule
 * alone and combined.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "catalog/retention.h"

#define S  1000000000LL
#define H  (3600 * S)
#define D  (24 * H)

/* 2024-03-04 00:00:00 UTC, a Monday. */
#define T0 (1709510400LL * S)

/* Run @p over @n items and return a bitmap-like string "K.K.." of keeps. */
static int
eval(const struct cat_ret_policy *p, const struct cat_ret_item *it, size_t n,
     struct cat_ret_result *res)
{
	struct snap_err e;

	return cat_ret_evaluate(p, it, n, res, &e);
}

static void
test_buckets_match_libc(void **state)
{
	(void)state;
	/* Every day from 1960 to 2060, at 00:00:00 and 23:59:59 UTC. */
	for (int64_t day = -3653; day < 32872; day++) {
		for (int k = 0; k < 2; k++) {
			time_t t = (time_t)(day * 86400 + k * 86399);
			struct tm tm;
			char buf[16];
			long want;

			assert_non_null(gmtime_r(&t, &tm));
			assert_true(strftime(buf, sizeof(buf), "%G%V", &tm) > 0);
			want = strtol(buf, NULL, 10);
			assert_int_equal(cat_ret_iso_week(t), want);
			assert_int_equal(cat_ret_month(t),
					 (tm.tm_year + 1900) * 12 + tm.tm_mon);
			assert_int_equal(cat_ret_year(t), tm.tm_year + 1900);
		}
	}
	/* Known ISO corner cases. */
	assert_int_equal(cat_ret_iso_week(1609459200), 202053); /* 2021-01-01 */
	assert_int_equal(cat_ret_iso_week(1230768000), 200901); /* 2009-01-01 */
	assert_int_equal(cat_ret_iso_week(1609113600), 202053); /* 2020-12-28 */
	assert_int_equal(cat_ret_iso_week(-1), 197001);         /* 1969-12-31 */
}

static void
test_empty_policy_keeps_all(void **state)
{
	struct cat_ret_policy p = { 0 };
	struct cat_ret_item it[5];
	struct cat_ret_result res[5];
	(void)state;

	for (int i = 0; i < 5; i++)
		it[i] = (struct cat_ret_item){ i + 1, T0 - i * 400 * D, i == 3 };
	assert_true(cat_ret_policy_empty(&p));
	assert_int_equal(eval(&p, it, 5, res), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(res[i].id, i + 1);
		assert_true(res[i].keep);
		assert_int_equal(res[i].reasons,
				 CAT_RET_EMPTY_POLICY |
				 (i == 3 ? CAT_RET_PINNED : 0));
	}
	assert_int_equal(eval(&p, NULL, 0, NULL), 0);
}

static void
test_keep_last_unsorted_input(void **state)
{
	struct cat_ret_policy p = { .keep_last = 3 };
	/* Input deliberately out of order. */
	struct cat_ret_item it[] = {
		{ 10, T0 + 5 * H, false }, { 11, T0 + 1 * H, false },
		{ 12, T0 + 9 * H, false }, { 13, T0 + 7 * H, false },
		{ 14, T0 + 2 * H, false },
	};
	struct cat_ret_result res[5];
	(void)state;

	assert_false(cat_ret_policy_empty(&p));
	assert_int_equal(eval(&p, it, 5, res), 3);
	assert_true(res[0].keep);       /* 5h */
	assert_false(res[1].keep);      /* 1h */
	assert_true(res[2].keep);       /* 9h */
	assert_true(res[3].keep);       /* 7h */
	assert_false(res[4].keep);      /* 2h */
	assert_int_equal(res[2].reasons, CAT_RET_LAST);
	assert_int_equal(res[1].reasons, 0);
	assert_int_equal(res[1].id, 11);
}

static void
test_daily_gaps_and_utc_midnight(void **state)
{
	struct cat_ret_policy p = { .keep_daily = 3 };
	/*
	 * Days 0, 0, 1 (one second after midnight), 5, 5, 9, with a snapshot
	 * at 23:59:59 of day 0 that must stay in day 0.
	 */
	struct cat_ret_item it[] = {
		{ 1, T0 + 1 * H, false },
		{ 2, T0 + D - S, false },     /* day 0, 23:59:59 */
		{ 3, T0 + D + S, false },     /* day 1, 00:00:01 */
		{ 4, T0 + 5 * D + H, false },
		{ 5, T0 + 5 * D + 2 * H, false },
		{ 6, T0 + 9 * D, false },
	};
	struct cat_ret_result res[6];
	(void)state;

	/* Newest of day 9, of day 5 and of day 1; the gap days don't count. */
	assert_int_equal(eval(&p, it, 6, res), 3);
	assert_false(res[0].keep);
	assert_false(res[1].keep);
	assert_true(res[2].keep);
	assert_false(res[3].keep);
	assert_true(res[4].keep);
	assert_true(res[5].keep);
	assert_int_equal(res[5].reasons, CAT_RET_DAILY);

	/* With four days, day 0's newest is the one at 23:59:59. */
	p.keep_daily = 4;
	assert_int_equal(eval(&p, it, 6, res), 4);
	assert_false(res[0].keep);
	assert_true(res[1].keep);
}

static void
test_hourly_alone(void **state)
{
	struct cat_ret_policy p = { .keep_hourly = 2 };
	struct cat_ret_item it[] = {
		{ 1, T0 + 10 * H + 59 * 60 * S, false },
		{ 2, T0 + 11 * H, false },            /* 11:00:00 */
		{ 3, T0 + 11 * H + 30 * 60 * S, false },
		{ 4, T0 + 10 * H, false },
	};
	struct cat_ret_result res[4];
	(void)state;

	assert_int_equal(eval(&p, it, 4, res), 2);
	assert_true(res[0].keep);       /* newest of hour 10 */
	assert_false(res[1].keep);
	assert_true(res[2].keep);       /* newest of hour 11 */
	assert_false(res[3].keep);
	assert_int_equal(res[0].reasons, CAT_RET_HOURLY);
}

static void
test_weekly_iso_year_boundary(void **state)
{
	struct cat_ret_policy p = { .keep_weekly = 2 };
	/*
	 * 2020-12-28 (Mon) and 2021-01-03 (Sun) are both in ISO week
	 * 2020-W53; 2021-01-04 (Mon) starts 2021-W01; 2020-12-27 (Sun) is in
	 * 2020-W52.
	 */
	struct cat_ret_item it[] = {
		{ 1, 1609113600LL * S, false },       /* 2020-12-28 */
		{ 2, 1609632000LL * S, false },       /* 2021-01-03 */
		{ 3, 1609718400LL * S, false },       /* 2021-01-04 */
		{ 4, 1609027200LL * S, false },       /* 2020-12-27 */
	};
	struct cat_ret_result res[4];
	(void)state;

	assert_int_equal(eval(&p, it, 4, res), 2);
	assert_false(res[0].keep);
	assert_true(res[1].keep);
	assert_true(res[2].keep);
	assert_false(res[3].keep);
	p.keep_weekly = 3;
	assert_int_equal(eval(&p, it, 4, res), 3);
	assert_true(res[3].keep);
	assert_int_equal(res[3].reasons, CAT_RET_WEEKLY);
}

static void
test_monthly_and_yearly_alone(void **state)
{
	struct cat_ret_policy p = { .keep_monthly = 2 };
	struct cat_ret_item it[] = {
		{ 1, 1704067200LL * S, false },       /* 2024-01-01 00:00 */
		{ 2, 1704067199LL * S, false },       /* 2023-12-31 23:59:59 */
		{ 3, 1701388800LL * S, false },       /* 2023-12-01 */
		{ 4, 1698796800LL * S, false },       /* 2023-11-01 */
	};
	struct cat_ret_result res[4];
	(void)state;

	assert_int_equal(eval(&p, it, 4, res), 2);
	assert_true(res[0].keep);
	assert_true(res[1].keep);
	assert_false(res[2].keep);
	assert_false(res[3].keep);
	assert_int_equal(res[1].reasons, CAT_RET_MONTHLY);

	p = (struct cat_ret_policy){ .keep_yearly = 5 };
	assert_int_equal(eval(&p, it, 4, res), 2);
	assert_true(res[0].keep);
	assert_true(res[1].keep);
	assert_int_equal(res[0].reasons, CAT_RET_YEARLY);
	assert_false(res[2].keep);
}

static void
test_within_is_relative_to_newest(void **state)
{
	/* Old timeline: "now" is irrelevant, the newest snapshot is the anchor. */
	struct cat_ret_policy p = { .keep_within_ns = 2 * D };
	struct cat_ret_item it[] = {
		{ 1, 1000 * D, false },
		{ 2, 1000 * D - 2 * D + 1, false },   /* just inside */
		{ 3, 1000 * D - 2 * D, false },       /* exactly D ago: out */
		{ 4, 900 * D, false },
	};
	struct cat_ret_result res[4];
	struct snap_err e;
	(void)state;

	assert_int_equal(eval(&p, it, 4, res), 2);
	assert_true(res[0].keep);
	assert_true(res[1].keep);
	assert_false(res[2].keep);
	assert_false(res[3].keep);
	assert_int_equal(res[1].reasons, CAT_RET_WITHIN);

	p.keep_within_ns = -1;
	assert_int_equal(cat_ret_evaluate(&p, it, 4, res, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "keep-within"));
}

static void
test_ties_resolved_by_id(void **state)
{
	struct cat_ret_policy p = { .keep_last = 1 };
	struct cat_ret_item a[] = {
		{ 7, T0, false }, { 9, T0, false }, { 8, T0, false },
	};
	struct cat_ret_item b[] = {
		{ 9, T0, false }, { 8, T0, false }, { 7, T0, false },
	};
	struct cat_ret_result ra[3], rb[3];
	(void)state;

	/* The largest id counts as newest, whatever the input order. */
	assert_int_equal(eval(&p, a, 3, ra), 1);
	assert_int_equal(eval(&p, b, 3, rb), 1);
	assert_true(ra[1].keep && ra[1].id == 9);
	assert_true(rb[0].keep && rb[0].id == 9);
	assert_false(ra[0].keep || ra[2].keep || rb[1].keep || rb[2].keep);

	/* Same for daily buckets, and for keep_last 2. */
	p = (struct cat_ret_policy){ .keep_daily = 1 };
	assert_int_equal(eval(&p, a, 3, ra), 1);
	assert_true(ra[1].keep);
	p = (struct cat_ret_policy){ .keep_last = 2 };
	assert_int_equal(eval(&p, b, 3, rb), 2);
	assert_true(rb[0].keep && rb[1].keep && !rb[2].keep);
}

static void
test_pinned_kept_and_counted(void **state)
{
	struct cat_ret_policy p = { .keep_daily = 1 };
	struct cat_ret_item it[] = {
		{ 1, T0 + 5 * H, true },      /* newest of today, pinned */
		{ 2, T0 + 4 * H, false },
		{ 3, T0 - 10 * D, true },     /* old and pinned */
		{ 4, T0 - 11 * D, false },
	};
	struct cat_ret_result res[4];
	(void)state;

	assert_int_equal(eval(&p, it, 4, res), 2);
	/* The pinned newest fills the one daily slot. */
	assert_int_equal(res[0].reasons, CAT_RET_PINNED | CAT_RET_DAILY);
	assert_false(res[1].keep);
	assert_int_equal(res[2].reasons, CAT_RET_PINNED);
	assert_false(res[3].keep);
}

static void
test_unlimited(void **state)
{
	struct cat_ret_policy p = { .keep_daily = CAT_RET_UNLIMITED };
	struct cat_ret_item it[40];
	struct cat_ret_result res[40];
	(void)state;

	/* Two snapshots a day for 20 days: every day's newest is kept. */
	for (int i = 0; i < 40; i++)
		it[i] = (struct cat_ret_item){ i, T0 + (i / 2) * D + (i % 2) * H,
					       false };
	assert_int_equal(eval(&p, it, 40, res), 20);
	for (int i = 0; i < 40; i++)
		assert_int_equal(res[i].keep, i % 2 == 1);
}

/*
 * A backup scheduler's timeline: one snapshot every 6 hours for 100 days
 * (starting on a Monday at 00:00), some days missing, and a policy with
 * every rule. Each expectation is derived by hand in the comments.
 */
static void
test_combined_timeline(void **state)
{
	struct cat_ret_policy p = {
		.keep_last = 3, .keep_hourly = 2, .keep_daily = 4,
		.keep_weekly = 3, .keep_monthly = 2, .keep_within_ns = 12 * H,
	};
	struct cat_ret_item it[400];
	struct cat_ret_result res[400];
	size_t n = 0;
	unsigned want[400] = { 0 };
	int kept;
	(void)state;

	/* Days 0..99 from T0 (2024-03-04), except days 97 and 98. */
	for (int day = 0; day < 100; day++) {
		if (day == 97 || day == 98)
			continue;
		for (int q = 0; q < 4; q++, n++)
			it[n] = (struct cat_ret_item){ (int64_t)n,
				T0 + day * D + q * 6 * H, false };
	}
	assert_int_equal(n, 392);
	/* Indexes: day d < 97 -> 4d + q; day 99 -> 388 + q. */
	/* last 3: day 99 q3, q2, q1. within 12h of 99 18:00: q3, q2 (q1 at
	 * exactly 12h is out). hourly 2: q3, q2. */
	want[391] |= CAT_RET_LAST | CAT_RET_WITHIN | CAT_RET_HOURLY;
	want[390] |= CAT_RET_LAST | CAT_RET_WITHIN | CAT_RET_HOURLY;
	want[389] |= CAT_RET_LAST;
	/* daily 4: newest of days 99, 96, 95, 94 (97 and 98 are gaps). */
	want[391] |= CAT_RET_DAILY;
	want[4 * 96 + 3] |= CAT_RET_DAILY;
	want[4 * 95 + 3] |= CAT_RET_DAILY;
	want[4 * 94 + 3] |= CAT_RET_DAILY;
	/*
	 * weekly 3: day 0 is a Monday, so week w holds days 7w..7w+6. Day 99
	 * (week 14, Monday) is the newest of week 14; week 13's newest is day
	 * 96 (days 97 and 98 are missing); week 12's newest is day 90.
	 */
	want[391] |= CAT_RET_WEEKLY;
	want[4 * 96 + 3] |= CAT_RET_WEEKLY;
	want[4 * 90 + 3] |= CAT_RET_WEEKLY;
	/*
	 * monthly 2: T0 is 2024-03-04; day 99 is 2024-06-11 (June), May's
	 * last day 2024-05-31 is day 88.
	 */
	want[391] |= CAT_RET_MONTHLY;
	want[4 * 88 + 3] |= CAT_RET_MONTHLY;

	kept = eval(&p, it, n, res);
	for (size_t i = 0; i < n; i++) {
		if (res[i].reasons != want[i])
			fail_msg("snapshot %zu (day %zu q %zu): reasons %#x, "
				 "want %#x", i, i / 4, i % 4, res[i].reasons,
				 want[i]);
		assert_int_equal(res[i].keep, want[i] != 0);
	}
	assert_int_equal(kept, 8);
}

static void
test_reasons_str(void **state)
{
	char buf[64], small[8];
	(void)state;

	assert_int_equal(cat_ret_reasons_str(0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "none");
	assert_int_equal(cat_ret_reasons_str(CAT_RET_PINNED | CAT_RET_LAST |
					     CAT_RET_DAILY, buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "last, daily, pinned");
	assert_int_equal(cat_ret_reasons_str(CAT_RET_WITHIN | CAT_RET_WEEKLY,
					     small, sizeof(small)),
			 -ENAMETOOLONG);
	assert_int_equal(strlen(small) < sizeof(small), 1);
}

static void
test_negative_times(void **state)
{
	/* 1969-12-31 23:00 and 1970-01-01 01:00: different days and years. */
	struct cat_ret_policy p = { .keep_daily = 5, .keep_yearly = 5 };
	struct cat_ret_item it[] = {
		{ 1, -1 * H, false }, { 2, -2 * H, false }, { 3, 1 * H, false },
	};
	struct cat_ret_result res[3];
	(void)state;

	assert_int_equal(eval(&p, it, 3, res), 2);
	assert_int_equal(res[0].reasons, CAT_RET_DAILY | CAT_RET_YEARLY);
	assert_false(res[1].keep);
	assert_int_equal(res[2].reasons, CAT_RET_DAILY | CAT_RET_YEARLY);
}

/*
 * The rules restated independently: for each bucket kind, take the
 * distinct buckets that hold snapshots (computed with gmtime_r/strftime),
 * the N most recent of them, and mark the newest snapshot of each (ties
 * by larger id). Compared with the evaluator on random timelines.
 */
static int64_t
ref_key(int kind, int64_t ns)
{
	time_t t = (time_t)(ns >= 0 ? ns / S : -((-ns + S - 1) / S));
	struct tm tm;
	char buf[32];

	assert_non_null(gmtime_r(&t, &tm));
	switch (kind) {
	case 0: strftime(buf, sizeof(buf), "%Y%m%d%H", &tm); break;
	case 1: strftime(buf, sizeof(buf), "%Y%m%d", &tm); break;
	case 2: strftime(buf, sizeof(buf), "%G%V", &tm); break;
	case 3: strftime(buf, sizeof(buf), "%Y%m", &tm); break;
	default: strftime(buf, sizeof(buf), "%Y", &tm); break;
	}
	return strtoll(buf, NULL, 10);
}

/* Is a newer than b in the evaluator's order? */
static bool
newer(const struct cat_ret_item *a, const struct cat_ret_item *b)
{
	return a->created_ns > b->created_ns ||
	       (a->created_ns == b->created_ns && a->id > b->id);
}

static void
reference(const struct cat_ret_policy *p, const struct cat_ret_item *it,
	  size_t n, unsigned *want)
{
	const unsigned counts[5] = { p->keep_hourly, p->keep_daily,
				     p->keep_weekly, p->keep_monthly,
				     p->keep_yearly };
	const unsigned bits[5] = { CAT_RET_HOURLY, CAT_RET_DAILY,
				   CAT_RET_WEEKLY, CAT_RET_MONTHLY,
				   CAT_RET_YEARLY };
	int64_t latest = INT64_MIN;
	int64_t *keys = calloc(n, sizeof(*keys));

	assert_non_null(keys);
	for (size_t i = 0; i < n; i++) {
		want[i] = it[i].pinned ? CAT_RET_PINNED : 0;
		if (it[i].created_ns > latest)
			latest = it[i].created_ns;
	}
	if (cat_ret_policy_empty(p)) {
		for (size_t i = 0; i < n; i++)
			want[i] |= CAT_RET_EMPTY_POLICY;
		free(keys);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t rank = 0;

		for (size_t j = 0; j < n; j++)
			rank += newer(&it[j], &it[i]);
		if (rank < p->keep_last)
			want[i] |= CAT_RET_LAST;
		if (p->keep_within_ns > 0 &&
		    it[i].created_ns > latest - p->keep_within_ns)
			want[i] |= CAT_RET_WITHIN;
	}
	for (int k = 0; k < 5; k++) {
		for (size_t i = 0; i < n; i++)
			keys[i] = ref_key(k, it[i].created_ns);
		for (size_t i = 0; i < n; i++) {
			size_t newer_buckets = 0;
			bool newest = true;

			/* Newest in its bucket? */
			for (size_t j = 0; j < n; j++)
				if (keys[j] == keys[i] && newer(&it[j], &it[i]))
					newest = false;
			if (!newest)
				continue;
			/* How many distinct buckets are more recent? */
			for (size_t j = 0; j < n; j++) {
				bool first = true;

				if (keys[j] <= keys[i])
					continue;
				for (size_t m = 0; m < j; m++)
					if (keys[m] == keys[j])
						first = false;
				newer_buckets += first;
			}
			if (newer_buckets < counts[k])
				want[i] |= bits[k];
		}
	}
	free(keys);
}

static void
test_random_timelines_match_reference(void **state)
{
	enum { N = 120 };
	struct cat_ret_item it[N];
	struct cat_ret_result res[N];
	unsigned want[N];
	unsigned seed = 12345;
	(void)state;

	for (int round = 0; round < 300; round++) {
		struct cat_ret_policy p = { 0 };
		/* Spread: minutes to months, so every bucket kind matters. */
		int64_t span = (int64_t)(1 + rand_r(&seed) % 4000) * 3600 * S;
		size_t n = 1 + (size_t)(rand_r(&seed) % N);
		int kept;

		for (size_t i = 0; i < n; i++) {
			/* Some exact ties, some ids out of time order. */
			int64_t t = T0 - (int64_t)((double)rand_r(&seed) /
						   RAND_MAX * (double)span);
			if (i > 0 && rand_r(&seed) % 8 == 0)
				t = it[i - 1].created_ns;
			it[i] = (struct cat_ret_item){
				(int64_t)(rand_r(&seed) % 100000) * 1000 +
				(int64_t)i, t, rand_r(&seed) % 13 == 0 };
		}
		if (rand_r(&seed) % 2)
			p.keep_last = rand_r(&seed) % 6;
		if (rand_r(&seed) % 2)
			p.keep_hourly = rand_r(&seed) % 6;
		if (rand_r(&seed) % 2)
			p.keep_daily = rand_r(&seed) % 8;
		if (rand_r(&seed) % 2)
			p.keep_weekly = rand_r(&seed) % 5;
		if (rand_r(&seed) % 2)
			p.keep_monthly = rand_r(&seed) % 4;
		if (rand_r(&seed) % 3 == 0)
			p.keep_yearly = rand_r(&seed) % 3;
		if (rand_r(&seed) % 3 == 0)
			p.keep_within_ns = (int64_t)(rand_r(&seed) % 72) *
					   3600 * S;
		reference(&p, it, n, want);
		kept = eval(&p, it, n, res);
		assert_true(kept >= 0);
		for (size_t i = 0; i < n; i++) {
			if (res[i].reasons != want[i])
				fail_msg("round %d item %zu (id %lld): reasons "
					 "%#x, reference %#x", round, i,
					 (long long)it[i].id, res[i].reasons,
					 want[i]);
			kept -= res[i].keep;
		}
		assert_int_equal(kept, 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_match_libc),
		cmocka_unit_test(test_empty_policy_keeps_all),
		cmocka_unit_test(test_keep_last_unsorted_input),
		cmocka_unit_test(test_daily_gaps_and_utc_midnight),
		cmocka_unit_test(test_hourly_alone),
		cmocka_unit_test(test_weekly_iso_year_boundary),
		cmocka_unit_test(test_monthly_and_yearly_alone),
		cmocka_unit_test(test_within_is_relative_to_newest),
		cmocka_unit_test(test_ties_resolved_by_id),
		cmocka_unit_test(test_pinned_kept_and_counted),
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_combined_timeline),
		cmocka_unit_test(test_reasons_str),
		cmocka_unit_test(test_negative_times),
		cmocka_unit_test(test_random_timelines_match_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
