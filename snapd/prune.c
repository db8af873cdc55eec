/*
 * snapd/prune.c: retention and pinning commands.
 *
 * snapshot-prune applies a retention policy (catalog/retention.h: restic
 * "forget" semantics in UTC buckets) to one guest's snapshots and deletes
 * what it does not keep, unless asked for a dry run. A snapshot a running
 * guest maps is never deleted: it is reported as kept, "in use".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/daemon.h"

static bool
arg_count(struct qmpd_req *req, json_t *args, const char *name, unsigned *out)
{
	long long v = -1;

	if (!qmpd_arg_int(req, args, name, false, &v))
		return false;
	if (v == -1)
		return true;
	if (v < 0 || v > 1000000) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter '%s' must be 0 to "
			       "1000000", name);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

void
cmd_snapshot_prune(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = {
		"vm", "keep-last", "keep-hourly", "keep-daily", "keep-weekly",
		"keep-monthly", "keep-yearly", "keep-within", "dry-run", NULL,
	};
	struct snapd *d = ctx;
	struct cat_ret_policy pol = { 0 };
	struct cat_snapshot_list *l = NULL;
	struct cat_ret_result *res = NULL;
	struct cat_ret_item *items = NULL;
	struct cat_filter f = { 0 };
	const char *vm = NULL, *within = NULL;
	bool dry = false;
	struct snap_err e;
	json_t *out = NULL;
	size_t n = 0;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "vm", true, &vm) ||
	    !arg_count(req, args, "keep-last", &pol.keep_last) ||
	    !arg_count(req, args, "keep-hourly", &pol.keep_hourly) ||
	    !arg_count(req, args, "keep-daily", &pol.keep_daily) ||
	    !arg_count(req, args, "keep-weekly", &pol.keep_weekly) ||
	    !arg_count(req, args, "keep-monthly", &pol.keep_monthly) ||
	    !arg_count(req, args, "keep-yearly", &pol.keep_yearly) ||
	    !qmpd_arg_str(req, args, "keep-within", false, &within) ||
	    !qmpd_arg_bool(req, args, "dry-run", false, &dry))
		return;
	if (within != NULL) {
		char unit = 0;
		unsigned long long v = 0;
		int used = 0;
		static const struct { char c; int64_t ns; } units[] = {
			{ 'h', 3600ll * 1000000000ll },
			{ 'd', 86400ll * 1000000000ll },
			{ 'w', 7 * 86400ll * 1000000000ll },
		};

		if (sscanf(within, "%llu%c%n", &v, &unit, &used) != 2 ||
		    within[used] != '\0' || v > 100000) {
			qmpd_reply_err(req, QMPD_GENERIC, "parameter 'keep-within' "
				       "must look like 36h, 7d or 4w");
			return;
		}
		for (size_t i = 0; i < SNAP_ARRAY_SIZE(units); i++)
			if (units[i].c == unit)
				pol.keep_within_ns = (int64_t)v * units[i].ns;
		if (pol.keep_within_ns == 0 && v != 0) {
			qmpd_reply_err(req, QMPD_GENERIC, "parameter 'keep-within': "
				       "unit must be h, d or w");
			return;
		}
	}
	snap_err_clear(&e);
	f.guest = vm;
	rc = cat_snapshot_list(d->db, &f, &l, &e);
	if (rc < 0)
		goto fail;
	n = l->n;
	items = calloc(n + 1, sizeof(*items));
	res = calloc(n + 1, sizeof(*res));
	if (items == NULL || res == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		items[i].id = l->v[i]->id;
		items[i].created_ns = l->v[i]->created_ns;
		items[i].pinned = l->v[i]->pinned;
	}
	rc = cat_ret_evaluate(&pol, items, n, res, &e);
	if (rc < 0)
		goto fail;
	out = json_array();
	for (size_t i = 0; i < n; i++) {
		char why[128];
		bool keep = res[i].keep;

		cat_ret_reasons_str(res[i].reasons, why, sizeof(why));
		if (!keep && cat_inuse_count(d->db, items[i].id, NULL) > 0) {
			keep = true;
			snap_strlcpy(why, "in use", sizeof(why));
		}
		if (!keep && !dry) {
			rc = cat_snapshot_delete(d->db, items[i].id, 0, &e);
			if (rc < 0) {
				snprintf(why, sizeof(why), "not removed: %s",
					 snap_err_text(&e, rc));
				keep = true;
			} else {
				snap_info("guest '%s': pruned snapshot '%s'", vm,
					  l->v[i]->name);
			}
		}
		json_array_append_new(out, json_pack("{s:s, s:b, s:s, s:I}",
			"name", l->v[i]->name, "keep", keep, "reasons", why,
			"created-ns", (json_int_t)l->v[i]->created_ns));
	}
	cat_snapshot_list_free(l);
	free(items);
	free(res);
	qmpd_reply_ok(req, out);
	return;
fail:
	qmpd_reply_err(req, QMPD_GENERIC, "cannot prune '%s': %s", vm,
		       snap_err_text(&e, rc));
	cat_snapshot_list_free(l);
	free(items);
	free(res);
}

void
cmd_snapshot_pin(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", "name", "pinned", NULL };
	struct snapd *d = ctx;
	struct cat_snapshot *s = NULL;
	const char *vm = NULL, *name = NULL;
	bool pinned = true;
	struct snap_err e;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "vm", true, &vm) ||
	    !qmpd_arg_str(req, args, "name", true, &name) ||
	    !qmpd_arg_bool(req, args, "pinned", false, &pinned))
		return;
	snap_err_clear(&e);
	rc = cat_snapshot_find(d->db, vm, name, &s, &e);
	if (rc >= 0)
		rc = cat_snapshot_set_pinned(d->db, s->id, pinned, &e);
	cat_snapshot_free(s);
	if (rc == -ENOENT) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' has no snapshot "
			       "'%s'", vm, name);
		return;
	}
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot pin '%s': %s", name,
			       snap_err_text(&e, rc));
		return;
	}
	qmpd_reply_ok(req, NULL);
}
