/*
 * bench/catalog.c: the catalog under a large history. Inserts N snapshots
 * (default 100,000) spread over a few guests, one every 15 minutes per
 * guest, every 8th labelled "daily", in transactions of 1,000 (as a busy
 * scheduler would, many small commits being the slower case, see -s);
 * then times
 *
 *   list:      one guest's latest 50 ok snapshots, newest first (the
 *              query a scheduler or "snapctl list VM" runs), and the same
 *              with a label filter; the first call after opening (which
 *              prepares the statement) and the median of ROUNDS calls;
 *   retention: a full evaluation: for every guest, load its (id, created,
 *              pinned) list from the catalog and apply a policy with every
 *              rule; and the evaluator alone on all N snapshots at once.
 *
 *   bench/catalog.sh [-s] [N [GUESTS [ROUNDS]]]
 *
 * -s commits every snapshot on its own (synchronous=FULL, so one fsync
 * each: slow on purpose, to see the insert cost a scheduler really pays).
 * The store is a fresh directory under $TMPDIR (default /tmp), removed at
 * the end.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "catalog/retention.h"
#include "common/err.h"
#include "common/util.h"

#define S_NS 1000000000LL
#define T0   (1700000000LL * S_NS)

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static double
ms_since(uint64_t t0)
{
	return (double)(snap_now_mono_ns() - t0) / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
die(const char *what, int rc, const struct snap_err *e)
{
	fprintf(stderr, "bench/catalog: %s: %s\n", what, snap_err_text(e, rc));
	exit(1);
}

/* Time one filtered list; returns ms and checks the result size. */
static double
time_list(struct cat_db *db, const struct cat_filter *f, size_t want)
{
	struct cat_snapshot_list *l = NULL;
	struct snap_err e;
	uint64_t t0 = snap_now_mono_ns();
	double ms;
	int rc;

	rc = cat_snapshot_list(db, f, &l, &e);
	ms = ms_since(t0);
	if (rc < 0)
		die("list", rc, &e);
	if (l->n != want) {
		fprintf(stderr, "bench/catalog: list gave %zu, want %zu\n",
			l->n, want);
		exit(1);
	}
	cat_snapshot_list_free(l);
	return ms;
}

static void
bench_list(struct cat_db *db, const char *label, const char *guest,
	   const char *tag, int rounds)
{
	struct cat_filter f = {
		.guest = guest, .label = tag, .states = 1u << CAT_SNAP_OK,
		.order = CAT_NEWEST_FIRST, .limit = 50,
	};
	double *v = calloc((size_t)rounds, sizeof(*v));
	double first;

	if (v == NULL)
		die("calloc", -ENOMEM, NULL);
	first = time_list(db, &f, 50);
	for (int i = 0; i < rounds; i++)
		v[i] = time_list(db, &f, 50);
	qsort(v, (size_t)rounds, sizeof(*v), cmp_double);
	printf("list %-28s first %7.3f ms  median %7.3f ms  max %7.3f ms\n",
	       label, first, v[rounds / 2], v[rounds - 1]);
	free(v);
}

int
main(int argc, char **argv)
{
	const struct cat_ret_policy policy = {
		.keep_last = 10, .keep_hourly = 24, .keep_daily = 7,
		.keep_weekly = 4, .keep_monthly = 12, .keep_yearly = 3,
		.keep_within_ns = 2 * 86400 * S_NS,
	};
	const char *label[] = { "daily" };
	struct cat_ret_item *all = NULL;
	struct cat_ret_result *res = NULL;
	struct cat_db *db = NULL;
	struct snap_err e;
	char store[256], guest[32], name[32];
	const char *tmp = getenv("TMPDIR");
	bool each = false;
	long n, guests, rounds;
	uint64_t t0;
	size_t nall = 0;
	int argi = 1, rc, kept = 0;
	double ms;

	if (argc > 1 && strcmp(argv[1], "-s") == 0) {
		each = true;
		argi++;
	}
	n = argc > argi ? strtol(argv[argi], NULL, 10) : 100000;
	guests = argc > argi + 1 ? strtol(argv[argi + 1], NULL, 10) : 4;
	rounds = argc > argi + 2 ? strtol(argv[argi + 2], NULL, 10) : 21;
	if (n < 50 * 8 * guests || guests < 1 || guests > 1000 ||
	    rounds < 1 || rounds > 100000) {
		fprintf(stderr, "usage: catalog [-s] [N [GUESTS [ROUNDS]]] "
			"(N >= 400 x GUESTS)\n");
		return 2;
	}
	snprintf(store, sizeof(store), "%s/bench-catalog.XXXXXX",
		 tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(store) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = cat_db_open(store, CAT_OPEN_CREATE, &db, &e);
	if (rc < 0)
		die("open", rc, &e);
	for (long g = 0; g < guests; g++) {
		snprintf(guest, sizeof(guest), "guest%ld", g);
		rc = cat_guest_add(db, guest, "{}", NULL, &e);
		if (rc < 0)
			die("guest", rc, &e);
	}

	t0 = snap_now_mono_ns();
	for (long i = 0; i < n; i++) {
		struct cat_snapshot s = {
			.guest = guest, .name = name,
			.apparent_size = 1ull << 30, .allocated_size = 1ull << 29,
			.ram_size = 1ull << 30, .present_pages = 131072,
			.root_digest = "00112233445566778899aabbccddeeff",
			.qemu_version = "7.2.0", .machine = "pc-i440fx-7.2",
			.created_ns = T0 + (i / guests) * 900 * S_NS,
			.save_duration_ns = 2 * S_NS, .live = true,
			.labels = label, .nlabels = i % 8 == 0,
			.pinned = i % 997 == 0,
		};

		if (!each && i % 1000 == 0 && (rc = cat_db_begin(db, &e)) < 0)
			die("begin", rc, &e);
		snprintf(guest, sizeof(guest), "guest%ld", i % guests);
		snprintf(name, sizeof(name), "s%07ld", i);
		rc = cat_snapshot_add(db, &s, NULL, &e);
		if (rc < 0)
			die("add", rc, &e);
		if (!each && (i % 1000 == 999 || i == n - 1) &&
		    (rc = cat_db_commit(db, &e)) < 0)
			die("commit", rc, &e);
	}
	ms = ms_since(t0);
	printf("insert %ld snapshots over %ld guests (%s): %.0f ms "
	       "(%.1f us each)\n", n, guests,
	       each ? "one commit each" : "1000 per commit", ms,
	       ms * 1000.0 / (double)n);

	/* Measure from a fresh connection: nothing prepared, cold caches. */
	cat_db_close(db);
	db = NULL;
	rc = cat_db_open(store, 0, &db, &e);
	if (rc < 0)
		die("reopen", rc, &e);
	bench_list(db, "guest0 latest 50", "guest0", NULL, (int)rounds);
	bench_list(db, "guest0 latest 50 'daily'", "guest0", "daily",
		   (int)rounds);
	bench_list(db, "any guest latest 50", NULL, NULL, (int)rounds);

	/* Full retention: per guest, load from the catalog and evaluate. */
	t0 = snap_now_mono_ns();
	for (long g = 0; g < guests; g++) {
		struct cat_ret_item *items = NULL;
		struct cat_ret_result *r;
		size_t cnt = 0;

		snprintf(guest, sizeof(guest), "guest%ld", g);
		rc = cat_snapshot_ret_items(db, guest, &items, &cnt, &e);
		if (rc < 0)
			die("ret_items", rc, &e);
		r = calloc(cnt, sizeof(*r));
		if (r == NULL)
			die("calloc", -ENOMEM, NULL);
		rc = cat_ret_evaluate(&policy, items, cnt, r, &e);
		if (rc < 0)
			die("retention", rc, &e);
		kept += rc;
		free(r);
		free(items);
	}
	ms = ms_since(t0);
	printf("retention, load + evaluate every guest (%ld snapshots): "
	       "%.1f ms, %d kept\n", n, ms, kept);

	rc = cat_snapshot_ret_items(db, NULL, &all, &nall, &e);
	if (rc < 0)
		die("ret_items", rc, &e);
	res = calloc(nall, sizeof(*res));
	if (res == NULL)
		die("calloc", -ENOMEM, NULL);
	t0 = snap_now_mono_ns();
	rc = cat_ret_evaluate(&policy, all, nall, res, &e);
	ms = ms_since(t0);
	if (rc < 0)
		die("retention", rc, &e);
	printf("retention, evaluator alone on %zu snapshots as one list: "
	       "%.1f ms, %d kept\n", nall, ms, rc);
	free(res);
	free(all);

	cat_db_close(db);
	nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
