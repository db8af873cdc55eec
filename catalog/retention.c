/*
 * catalog/retention.c: the retention policy evaluator (restic "forget"
 * semantics with UTC buckets), documented in catalog/retention.h. Pure
 * computation: it sorts an index of the input newest first, walks it once
 * with one bucket tracker per rule, and reports per-snapshot reasons.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/retention.h"
#include "common/util.h"

#define NS_PER_S 1000000000

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/*
 * Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
 * civil_from_days). Valid for any day count that int64 arithmetic allows.
 */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, yy;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int64_t
cat_ret_iso_week(int64_t unix_s)
{
	int64_t days = floor_div(unix_s, 86400);
	/* 1970-01-01 was a Thursday: Monday = 0 ... Sunday = 6. */
	int64_t wd = (days % 7 + 7 + 3) % 7;
	/* The ISO year of a week is the year its Thursday falls in. */
	int64_t thu = days - wd + 3;
	int64_t y;
	unsigned m, d;

	civil_from_days(thu, &y, &m, &d);
	return y * 100 + (thu - days_from_civil(y, 1, 1)) / 7 + 1;
}

int64_t
cat_ret_month(int64_t unix_s)
{
	int64_t y;
	unsigned m, d;

	civil_from_days(floor_div(unix_s, 86400), &y, &m, &d);
	return y * 12 + (int64_t)m - 1;
}

int64_t
cat_ret_year(int64_t unix_s)
{
	int64_t y;
	unsigned m, d;

	civil_from_days(floor_div(unix_s, 86400), &y, &m, &d);
	return y;
}

bool
cat_ret_policy_empty(const struct cat_ret_policy *p)
{
	return p->keep_last == 0 && p->keep_hourly == 0 &&
	       p->keep_daily == 0 && p->keep_weekly == 0 &&
	       p->keep_monthly == 0 && p->keep_yearly == 0 &&
	       p->keep_within_ns == 0;
}

/* Sort key: an index into the input, compared through this context. */
struct ret_sort {
	int64_t created;
	int64_t id;
	size_t pos;
};

static int
cmp_newest_first(const void *a, const void *b)
{
	const struct ret_sort *x = a, *y = b;

	if (x->created != y->created)
		return x->created > y->created ? -1 : 1;
	if (x->id != y->id)
		return x->id > y->id ? -1 : 1;
	if (x->pos != y->pos)
		return x->pos > y->pos ? -1 : 1;
	return 0;
}

enum bucket_kind { B_LAST, B_HOURLY, B_DAILY, B_WEEKLY, B_MONTHLY,
		   B_YEARLY, B_NKINDS };

struct bucket {
	unsigned left;              /* CAT_RET_UNLIMITED never decreases */
	bool have_last;
	int64_t last;
	unsigned reason;
};

static int64_t
bucket_key(enum bucket_kind k, int64_t created_ns, size_t rank)
{
	int64_t s = floor_div(created_ns, NS_PER_S);

	switch (k) {
	case B_LAST:
		return (int64_t)rank;
	case B_HOURLY:
		return floor_div(s, 3600);
	case B_DAILY:
		return floor_div(s, 86400);
	case B_WEEKLY:
		return cat_ret_iso_week(s);
	case B_MONTHLY:
		return cat_ret_month(s);
	case B_YEARLY:
		return cat_ret_year(s);
	case B_NKINDS:
		break;
	}
	return 0;
}

int
cat_ret_evaluate(const struct cat_ret_policy *policy,
		 const struct cat_ret_item *items, size_t n,
		 struct cat_ret_result *out, struct snap_err *err)
{
	struct bucket b[B_NKINDS] = {
		[B_LAST]    = { policy->keep_last,    false, 0, CAT_RET_LAST },
		[B_HOURLY]  = { policy->keep_hourly,  false, 0, CAT_RET_HOURLY },
		[B_DAILY]   = { policy->keep_daily,   false, 0, CAT_RET_DAILY },
		[B_WEEKLY]  = { policy->keep_weekly,  false, 0, CAT_RET_WEEKLY },
		[B_MONTHLY] = { policy->keep_monthly, false, 0, CAT_RET_MONTHLY },
		[B_YEARLY]  = { policy->keep_yearly,  false, 0, CAT_RET_YEARLY },
	};
	struct ret_sort *order = NULL;
	unsigned *reasons = NULL;
	bool empty = cat_ret_policy_empty(policy);
	int64_t latest;
	size_t kept = 0;
	int rc;

	if (policy->keep_within_ns < 0) {
		rc = snap_err_set(err, -EINVAL, 0,
				  "negative keep-within duration %lld",
				  (long long)policy->keep_within_ns);
		goto out;
	}
	if (n > 0 && (items == NULL || out == NULL)) {
		rc = snap_err_set(err, -EINVAL, 0, "no snapshot list given");
		goto out;
	}
	if (n > INT_MAX) {
		rc = snap_err_set(err, -EOVERFLOW, 0,
				  "too many snapshots for retention: %zu", n);
		goto out;
	}
	if (n == 0) {
		rc = 0;
		goto out;
	}
	order = calloc(n, sizeof(*order));
	reasons = calloc(n, sizeof(*reasons));
	if (order == NULL || reasons == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0,
				  "cannot allocate retention state");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		order[i].created = items[i].created_ns;
		order[i].id = items[i].id;
		order[i].pos = i;
	}
	qsort(order, n, sizeof(*order), cmp_newest_first);
	latest = order[0].created;

	for (size_t r = 0; r < n; r++) {
		const struct cat_ret_item *it = &items[order[r].pos];
		unsigned why = 0;

		if (it->pinned)
			why |= CAT_RET_PINNED;
		if (empty) {
			why |= CAT_RET_EMPTY_POLICY;
		} else {
			/* latest >= created, so the difference fits uint64. */
			uint64_t age = (uint64_t)latest - (uint64_t)it->created_ns;

			if (policy->keep_within_ns > 0 &&
			    age < (uint64_t)policy->keep_within_ns)
				why |= CAT_RET_WITHIN;
			for (int k = 0; k < B_NKINDS; k++) {
				int64_t key;

				if (b[k].left == 0)
					continue;
				key = bucket_key((enum bucket_kind)k,
						 it->created_ns, r);
				if (b[k].have_last && b[k].last == key)
					continue;
				b[k].have_last = true;
				b[k].last = key;
				if (b[k].left != CAT_RET_UNLIMITED)
					b[k].left--;
				why |= b[k].reason;
			}
		}
		reasons[order[r].pos] = why;
		if (why != 0)
			kept++;
	}
	for (size_t i = 0; i < n; i++) {
		out[i].id = items[i].id;
		out[i].reasons = reasons[i];
		out[i].keep = reasons[i] != 0;
	}
	rc = (int)kept;
out:
	free(order);
	free(reasons);
	return rc;
}

int
cat_ret_reasons_str(unsigned reasons, char *buf, size_t size)
{
	static const struct {
		unsigned bit;
		const char *word;
	} words[] = {
		{ CAT_RET_LAST, "last" },
		{ CAT_RET_HOURLY, "hourly" },
		{ CAT_RET_DAILY, "daily" },
		{ CAT_RET_WEEKLY, "weekly" },
		{ CAT_RET_MONTHLY, "monthly" },
		{ CAT_RET_YEARLY, "yearly" },
		{ CAT_RET_WITHIN, "within" },
		{ CAT_RET_PINNED, "pinned" },
		{ CAT_RET_EMPTY_POLICY, "empty policy" },
	};
	size_t len = 0;

	if (size == 0)
		return -ENAMETOOLONG;
	buf[0] = '\0';
	if (reasons == 0)
		return snap_strlcpy(buf, "none", size) < size ? 0 : -ENAMETOOLONG;
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(words); i++) {
		if (!(reasons & words[i].bit))
			continue;
		if (snap_fmt(buf + len, size - len, "%s%s",
			     len > 0 ? ", " : "", words[i].word) < 0)
			return -ENAMETOOLONG;
		len += strlen(buf + len);
	}
	return 0;
}
