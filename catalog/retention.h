/*
 * catalog/retention.h: which snapshots a retention policy keeps.
 *
 * A pure function: it reads a policy and a list of (id, creation time,
 * pinned) triples and writes, for each of them, keep or remove and the
 * reasons. It touches no database and no file, keeps no state and is
 * thread-safe. The catalog module (catalog/catalog.h) can produce the list
 * for a guest; deleting what is to be removed is the caller's job.
 *
 * Semantics (those of restic "forget", with buckets in UTC):
 *
 *  1. The snapshots are ordered newest first: by creation time, descending;
 *     equal times are ordered by id, descending (the larger id counts as the
 *     newer); equal times and ids (which callers should avoid) by position
 *     in the input, later first. Every rule below walks this order.
 *
 *  2. An empty policy (every count 0 and keep_within 0) keeps everything;
 *     each snapshot gets the reason CAT_RET_EMPTY_POLICY (and CAT_RET_PINNED
 *     when pinned).
 *
 *  3. Pinned snapshots are always kept (reason CAT_RET_PINNED). They also
 *     take part in the rules below like any other snapshot, so a pinned
 *     snapshot can fill a daily slot (restic's --keep-tag behaves the same).
 *
 *  4. keep_last N: the N newest snapshots.
 *
 *  5. keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly N:
 *     each kind cuts time into buckets: UTC clock hours, UTC calendar days,
 *     ISO 8601 weeks (Monday to Sunday, numbered within the ISO week-based
 *     year, in UTC), UTC calendar months and years. Walking newest first,
 *     a snapshot is kept by the rule when its bucket differs from the bucket
 *     of the previous snapshot the rule kept, until N snapshots have been
 *     kept by the rule. In other words: the newest snapshot of each of the
 *     N most recent buckets that contain a snapshot. Empty buckets (gaps)
 *     are skipped, not counted: keep_daily 7 keeps seven days that have
 *     snapshots, however far back they reach.
 *
 *  6. keep_within D (nanoseconds): every snapshot created strictly after
 *     (newest creation time - D) is kept. The reference point is the newest
 *     snapshot in the list, not the current time, so a guest that stopped
 *     taking snapshots does not lose them all (as in restic).
 *
 *  7. Every rule is evaluated independently on the full list: a snapshot
 *     kept by keep_last still counts for keep_daily, and may be kept for
 *     several reasons at once (all of them are reported). A snapshot kept by
 *     no rule is removed (reasons 0).
 *
 * A count of CAT_RET_UNLIMITED keeps the newest snapshot of every bucket
 * of that kind.
 *
 * Difference from Proxmox prune: there, each rule only considers the
 * snapshots that the previous rules (in the order last, hourly, daily, ...)
 * did not keep, so rules add up; here, as in restic, rules overlap. With
 * keep_last 3 and keep_daily 3 over snapshots whose three newest are from
 * today, today's newest is kept by both rules and keep_daily adds the
 * newest of the two previous days that have snapshots: 5 kept in all.
 */
#ifndef SNAP_CATALOG_RETENTION_H
#define SNAP_CATALOG_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define CAT_RET_UNLIMITED 0xffffffffu

/* A policy. Zero-initialise, then set what you need. */
struct cat_ret_policy {
	unsigned keep_last;
	unsigned keep_hourly;
	unsigned keep_daily;
	unsigned keep_weekly;
	unsigned keep_monthly;
	unsigned keep_yearly;
	int64_t keep_within_ns;     /* >= 0; 0 means no keep-within rule */
};

/* One snapshot as retention sees it. */
struct cat_ret_item {
	int64_t id;
	int64_t created_ns;         /* Unix time in nanoseconds, UTC */
	bool pinned;
};

/* Reason bits; a kept snapshot has at least one, a removed one none. */
enum cat_ret_reason {
	CAT_RET_PINNED       = 1u << 0,
	CAT_RET_LAST         = 1u << 1,
	CAT_RET_HOURLY       = 1u << 2,
	CAT_RET_DAILY        = 1u << 3,
	CAT_RET_WEEKLY       = 1u << 4,
	CAT_RET_MONTHLY      = 1u << 5,
	CAT_RET_YEARLY       = 1u << 6,
	CAT_RET_WITHIN       = 1u << 7,
	CAT_RET_EMPTY_POLICY = 1u << 8,
};

struct cat_ret_result {
	int64_t id;                 /* copied from the item */
	bool keep;                  /* reasons != 0 */
	unsigned reasons;           /* enum cat_ret_reason bits */
};

/* True when @p has no rule at all (so it keeps everything). */
bool cat_ret_policy_empty(const struct cat_ret_policy *p);

/*
 * Apply @policy to the @n snapshots in @items (any order). @out must hold
 * @n results; out[i] answers for items[i]. @items is not modified.
 *
 * Returns the number of snapshots kept (>= 0), -EINVAL for a negative
 * keep_within_ns or NULL arrays with @n > 0, -ENOMEM, or -EOVERFLOW when @n
 * does not fit an int. @out is written only on success.
 */
int cat_ret_evaluate(const struct cat_ret_policy *policy,
		     const struct cat_ret_item *items, size_t n,
		     struct cat_ret_result *out, struct snap_err *err);

/*
 * Write the reasons in @reasons as words separated by ", " (for example
 * "last, daily, pinned"; "none" for 0) into @buf. Returns 0 or
 * -ENAMETOOLONG when @size is too small (@buf is still NUL-terminated).
 */
int cat_ret_reasons_str(unsigned reasons, char *buf, size_t size);

/*
 * The UTC bucket keys used above, exposed for tests and for tools that
 * want to show them. Times are Unix seconds (may be negative).
 * cat_ret_iso_week() returns year * 100 + week, e.g. 202053 for
 * 2021-01-01, which belongs to week 53 of ISO year 2020.
 */
int64_t cat_ret_iso_week(int64_t unix_s);
int64_t cat_ret_month(int64_t unix_s);      /* year * 12 + month - 1 */
int64_t cat_ret_year(int64_t unix_s);

#endif
