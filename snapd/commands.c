/*
 * snapd/commands.c: the commands of snapd's control socket.
 *
 * Each handler validates its arguments, finds the guest it is about and
 * either answers at once or hands the request to the guest or save code,
 * which answers when QEMU has done its part. QEMU-named commands keep
 * QEMU's names and argument spellings, with a "vm" argument naming the
 * guest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "restore/restore.h"
#include "snapd/daemon.h"

/* The "vm" argument, resolved; replies and returns NULL on failure. */
static struct guest *
arg_guest(struct qmpd_req *req, json_t *args, void *ctx)
{
	struct snapd *d = ctx;
	const char *name = NULL;
	struct guest *g;

	if (!qmpd_arg_str(req, args, "vm", true, &name))
		return NULL;
	g = guest_find(d, name);
	if (g == NULL)
		qmpd_reply_err(req, QMPD_DEVICE_NOT_FOUND,
			       "guest '%s' is not defined", name);
	return g;
}

static void
cmd_vm_define(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "spec", NULL };
	struct snapd *d = ctx;
	struct guest_spec *spec = NULL;
	struct snap_err e;
	struct guest *g;
	json_t *sj = NULL, *canon;
	char why[512];
	char *text;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_obj(req, args, "spec", true, &sj))
		return;
	snap_err_clear(&e);
	rc = spec_from_json(sj, &spec, &e);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "%s", snap_err_text(&e, rc));
		return;
	}
	if (guest_find(d, spec->name) != NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is already defined",
			       spec->name);
		spec_free(spec);
		return;
	}
	canon = spec_to_json(spec);
	text = canon ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(canon);
	rc = text ? cat_guest_add(d->db, spec->name, text, NULL, &e) : -ENOMEM;
	free(text);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot record guest '%s': %s",
			       spec->name, snap_err_text(&e, rc));
		spec_free(spec);
		return;
	}
	rc = guest_add(d, spec, &g);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "%s", snap_strerror(rc));
		return;
	}
	if (guest_open_display(g, false, why, sizeof(why)) < 0) {
		cat_guest_remove(d->db, g->spec->name, NULL);
		guest_remove(d, g);
		qmpd_reply_err(req, QMPD_GENERIC, "%s", why);
		return;
	}
	qmpd_reply_ok(req, guest_to_json(g));
}

static void
cmd_vm_undefine(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct snapd *d = ctx;
	struct snap_err e;
	struct guest *g;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL)
		return;
	if (g->pid > 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is running; stop "
			       "it first", g->spec->name);
		return;
	}
	/* A job that still needs the guest must end first. */
	if (g->save != NULL || load_busy(g)) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is busy with a "
			       "%s", g->spec->name, g->save ? "save" : "restore");
		return;
	}
	snap_err_clear(&e);
	rc = cat_guest_remove(d->db, g->spec->name, &e);
	if (rc == -ENOTEMPTY) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' still has "
			       "snapshots; remove them first", g->spec->name);
		return;
	}
	if (rc < 0 && rc != -ENOENT) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot undefine '%s': %s",
			       g->spec->name, snap_err_text(&e, rc));
		return;
	}
	load_release(g);
	guest_remove(d, g);
	qmpd_reply_ok(req, NULL);
}

/* Nothing new starts once snapd is shutting down: it would not be waited
 * for. False (and the request answered) then. */
static bool
not_stopping(struct qmpd_req *req, void *ctx)
{
	const struct snapd *d = ctx;

	if (!d->stopping)
		return true;
	qmpd_reply_err(req, QMPD_GENERIC, "snapd is shutting down");
	return false;
}

static void
cmd_vm_start(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct guest *g;

	if (!not_stopping(req, ctx) || !qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL)
		return;
	guest_start(g, req);
}

static void
cmd_vm_stop(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct guest *g;

	if (!qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL)
		return;
	guest_stop(g, req);
}

static void
cmd_query_vms(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { NULL };
	struct snapd *d = ctx;
	json_t *arr = json_array();

	if (!qmpd_args_only(req, args, allowed)) {
		json_decref(arr);
		return;
	}
	for (struct guest *g = d->guests; g != NULL; g = g->next)
		json_array_append_new(arr, guest_to_json(g));
	qmpd_reply_ok(req, arr);
}

/* Forward a command to the guest's QEMU and relay its answer. */
static void
on_forwarded(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	     void *arg)
{
	struct qmpd_req *req = arg;

	(void)c;
	if (ret != NULL)
		qmpd_reply_ok(req, json_incref(ret));
	else
		qmpd_reply_err(req, QMPD_GENERIC, "%s%s%s",
			       strcmp(cls, "Disconnected") == 0 ?
			       "QEMU went away: " : "", desc ? desc : "",
			       desc ? "" : cls);
}

/*
 * Forward @cmd to the guest's QEMU with the request's arguments minus "vm"
 * (QEMU validates the rest) and relay its answer.
 */
static void
forward(struct qmpd_req *req, json_t *args, void *ctx, const char *cmd)
{
	struct guest *g;
	json_t *fwd;

	if ((g = arg_guest(req, args, ctx)) == NULL)
		return;
	if (g->proc != GUEST_UP || g->qmp == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is not running",
			       g->spec->name);
		return;
	}
	fwd = json_deep_copy(args);
	json_object_del(fwd, "vm");
	if (json_object_size(fwd) == 0) {
		json_decref(fwd);
		fwd = NULL;
	}
	if (qmpc_exec(g->qmp, cmd, fwd, -1, on_forwarded, req) < 0)
		qmpd_reply_err(req, QMPD_GENERIC, "QEMU is not reachable");
}

#define FORWARDED(fn, name)						\
static void								\
fn(struct qmpd_req *req, json_t *args, void *ctx)			\
{									\
	forward(req, args, ctx, name);					\
}

/* QEMU commands a client may run on a guest, with a "vm" argument. */
FORWARDED(cmd_stop, "stop")
FORWARDED(cmd_cont, "cont")
FORWARDED(cmd_query_status, "query-status")
FORWARDED(cmd_pmemsave, "pmemsave")
FORWARDED(cmd_screendump, "screendump")
FORWARDED(cmd_hmp, "human-monitor-command")

static void
cmd_snapshot_save(struct qmpd_req *req, json_t *args, void *ctx)
{
	struct guest *g = not_stopping(req, ctx) ? arg_guest(req, args, ctx) :
			  NULL;

	if (g != NULL)
		save_start(g, req, args, false);
}

static void
cmd_migrate(struct qmpd_req *req, json_t *args, void *ctx)
{
	struct guest *g = not_stopping(req, ctx) ? arg_guest(req, args, ctx) :
			  NULL;

	if (g != NULL)
		save_start(g, req, args, true);
}

static void
cmd_migrate_cancel(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct guest *g;

	if (!qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL)
		return;
	save_cancel(g, req);
}

static void
cmd_query_migrate(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct guest *g;
	json_t *q;

	if (!qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL)
		return;
	q = save_query(g);
	if (q == NULL)
		q = load_query(g);
	qmpd_reply_ok(req, q != NULL ? q : json_object());
}

static void
cmd_migrate_incoming(struct qmpd_req *req, json_t *args, void *ctx)
{
	if (not_stopping(req, ctx))
		load_start(ctx, req, args);
}

/* The optional "vm": a guest, or NULL for the daemon-wide list. */
static bool
caps_owner(struct qmpd_req *req, json_t *args, void *ctx, struct guest **g)
{
	const char *vm = NULL;

	*g = NULL;
	if (!qmpd_arg_str(req, args, "vm", false, &vm))
		return false;
	if (vm != NULL && (*g = arg_guest(req, args, ctx)) == NULL)
		return false;
	return true;
}

static void
cmd_migrate_set_caps(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", "capabilities", NULL };
	struct snapd *d = ctx;
	struct rst_cap list[RST_MAX_CAPS], *copy;
	struct rst_cap **dst;
	size_t n = 0, *ndst, old_n;
	struct snap_err e;
	struct guest *g;
	json_t *arr, *c;
	size_t i;

	if (!qmpd_args_only(req, args, allowed) ||
	    !caps_owner(req, args, ctx, &g) ||
	    !qmpd_arg_array(req, args, "capabilities", true, &arr))
		return;
	dst = g ? &g->caps : &d->caps;
	ndst = g ? &g->ncaps : &d->ncaps;
	/* Merged into the existing list, as QEMU's command does. */
	old_n = *dst ? *ndst : 0;
	for (i = 0; i < old_n; i++)
		list[n++] = (*dst)[i];
	json_array_foreach(arr, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		json_t *st = json_object_get(c, "state");
		size_t k, m;

		if (name == NULL || !json_is_boolean(st)) {
			qmpd_reply_err(req, QMPD_GENERIC, "capability %zu must be "
				       "{\"capability\": NAME, \"state\": BOOL}", i);
			return;
		}
		for (k = 0; k < rst_cap_count(); k++)
			if (strcmp(rst_cap_name(k), name) == 0)
				break;
		if (k == rst_cap_count()) {
			qmpd_reply_err(req, QMPD_GENERIC, "unknown migration "
				       "capability '%s'", name);
			return;
		}
		for (m = 0; m < n; m++)
			if (list[m].name == rst_cap_name(k))
				break;
		if (m == n && n == RST_MAX_CAPS) {
			qmpd_reply_err(req, QMPD_GENERIC, "too many capabilities");
			return;
		}
		list[m].name = rst_cap_name(k);
		list[m].state = json_is_true(st);
		n += m == n;
	}
	snap_err_clear(&e);
	/* Refuse now what a restore would refuse later. */
	{
		struct rst_cap_plan plan;
		int rc = rst_caps_resolve(NULL, 0, list, n, &plan, &e);
		if (rc < 0) {
			qmpd_reply_err(req, QMPD_GENERIC, "%s", snap_err_text(&e, rc));
			return;
		}
	}
	copy = malloc(n * sizeof(*copy) + 1);
	if (copy == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "out of memory");
		return;
	}
	memcpy(copy, list, n * sizeof(*copy));
	free(*dst);
	*dst = copy;
	*ndst = n;
	qmpd_reply_ok(req, NULL);
}

static void
cmd_query_migrate_caps(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", NULL };
	struct snapd *d = ctx;
	const struct rst_cap *list;
	struct guest *g;
	json_t *arr;
	size_t n;

	if (!qmpd_args_only(req, args, allowed) ||
	    !caps_owner(req, args, ctx, &g))
		return;
	list = g && g->caps ? g->caps : d->caps;
	n = g && g->caps ? g->ncaps : d->ncaps;
	arr = json_array();
	for (size_t i = 0; i < rst_cap_count(); i++)
		json_array_append_new(arr, json_pack("{s:s, s:b}", "capability",
			rst_cap_name(i), "state",
			rst_cap_effective(rst_cap_name(i), list, n)));
	qmpd_reply_ok(req, arr);
}

static json_t *
snapshot_to_json(const struct cat_snapshot *s)
{
	json_t *labels = json_array();
	json_t *j;

	for (size_t i = 0; i < s->nlabels; i++)
		json_array_append_new(labels, json_string(s->labels[i]));
	j = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s,"
		      " s:I, s:I, s:s, s:b, s:s, s:s, s:I, s:o}",
		      "id", (json_int_t)s->id, "vm", s->guest, "name", s->name,
		      "path", s->path,
		      "size", (json_int_t)s->apparent_size,
		      "allocated", (json_int_t)s->allocated_size,
		      "ram-size", (json_int_t)s->ram_size,
		      "present-pages", (json_int_t)s->present_pages,
		      "digest", s->root_digest, "qemu-version", s->qemu_version,
		      "machine", s->machine,
		      "created-ns", (json_int_t)s->created_ns,
		      "save-duration-ns", (json_int_t)s->save_duration_ns,
		      "mode", s->live ? "live" : "stopped",
		      "pinned", s->pinned, "state", cat_snap_state_name(s->state),
		      "verdict", cat_verdict_name(s->verdict),
		      "verified-ns", (json_int_t)s->verified_ns,
		      "labels", labels);
	return j;
}

static void
cmd_query_snapshots(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", "label", "limit", NULL };
	struct snapd *d = ctx;
	struct cat_filter f = { 0 };
	struct cat_snapshot_list *l = NULL;
	struct snap_err e;
	long long limit = 0;
	json_t *arr;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "vm", false, &f.guest) ||
	    !qmpd_arg_str(req, args, "label", false, &f.label) ||
	    !qmpd_arg_int(req, args, "limit", false, &limit))
		return;
	if (limit < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'limit' must not "
			       "be negative");
		return;
	}
	f.limit = (size_t)limit;
	snap_err_clear(&e);
	rc = cat_snapshot_list(d->db, &f, &l, &e);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot list snapshots: %s",
			       snap_err_text(&e, rc));
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(arr, snapshot_to_json(l->v[i]));
	cat_snapshot_list_free(l);
	qmpd_reply_ok(req, arr);
}

static void
cmd_snapshot_delete(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "vm", "name", NULL };
	struct snapd *d = ctx;
	struct cat_snapshot *s = NULL;
	const char *vm = NULL, *name = NULL;
	struct snap_err e;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "vm", true, &vm) ||
	    !qmpd_arg_str(req, args, "name", true, &name))
		return;
	snap_err_clear(&e);
	rc = cat_snapshot_find(d->db, vm, name, &s, &e);
	if (rc == -ENOENT) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' has no snapshot "
			       "'%s'", vm, name);
		return;
	}
	if (rc >= 0)
		rc = cat_snapshot_delete(d->db, s->id, 0, &e);
	cat_snapshot_free(s);
	if (rc == SNAP_EINUSE) {
		qmpd_reply_err(req, QMPD_GENERIC, "snapshot '%s' of guest '%s' "
			       "is mapped by a running guest", name, vm);
		return;
	}
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot delete '%s': %s", name,
			       snap_err_text(&e, rc));
		return;
	}
	qmpd_reply_ok(req, NULL);
}

/*
 * client_migrate_info {vm, protocol, hostname, port, password?}: where the
 * guest's display clients go at its next resume elsewhere (vncproxy.h).
 * Returns at once; CLIENTS_REPOINTED reports the outcome.
 */
static void
cmd_client_migrate_info(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = {
		"vm", "protocol", "hostname", "port", "tls-port",
		"cert-subject", "password", NULL,
	};
	const char *proto = NULL, *host = NULL, *pw = NULL;
	unsigned char addr[16];
	long long port = -1;
	struct guest *g;

	if (!qmpd_args_only(req, args, allowed) ||
	    (g = arg_guest(req, args, ctx)) == NULL ||
	    !qmpd_arg_str(req, args, "protocol", true, &proto) ||
	    !qmpd_arg_str(req, args, "hostname", true, &host) ||
	    !qmpd_arg_int(req, args, "port", false, &port) ||
	    !qmpd_arg_str(req, args, "password", false, &pw))
		return;
	if (strcmp(proto, "spice") == 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "protocol 'spice' is not "
			       "supported: snapd serves guest displays over "
			       "VNC only");
		return;
	}
	if (strcmp(proto, "vnc") != 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'protocol' must "
			       "be 'vnc'");
		return;
	}
	if (port < 1 || port > 65535) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'port' must be "
			       "1 to 65535");
		return;
	}
	if (inet_pton(strchr(host, ':') ? AF_INET6 : AF_INET, host, addr) != 1) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'hostname' '%s' "
			       "is not a numeric IPv4 or IPv6 address", host);
		return;
	}
	if (pw != NULL && (pw[0] == '\0' || strlen(pw) > SPEC_VNC_PASSWORD_MAX)) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'password' must "
			       "be 1 to %d bytes", SPEC_VNC_PASSWORD_MAX);
		return;
	}
	if (g->vnc == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' has no VNC "
			       "endpoint", g->spec->name);
		return;
	}
	qmpd_reply_ok(req, NULL);
	vncproxy_set_target(g->vnc, host, (unsigned)port, pw,
			    g->pid > 0 || g->load != NULL);
}

const struct qmpd_command snapd_commands[] = {
	{ "vm-define", cmd_vm_define },
	{ "vm-undefine", cmd_vm_undefine },
	{ "vm-start", cmd_vm_start },
	{ "vm-stop", cmd_vm_stop },
	{ "query-vms", cmd_query_vms },
	{ "stop", cmd_stop },
	{ "cont", cmd_cont },
	{ "query-status", cmd_query_status },
	{ "pmemsave", cmd_pmemsave },
	{ "screendump", cmd_screendump },
	{ "human-monitor-command", cmd_hmp },
	{ "snapshot-save", cmd_snapshot_save },
	{ "migrate", cmd_migrate },
	{ "migrate_cancel", cmd_migrate_cancel },
	{ "query-migrate", cmd_query_migrate },
	{ "migrate-incoming", cmd_migrate_incoming },
	{ "migrate-set-capabilities", cmd_migrate_set_caps },
	{ "query-migrate-capabilities", cmd_query_migrate_caps },
	{ "query-snapshots", cmd_query_snapshots },
	{ "snapshot-delete", cmd_snapshot_delete },
	{ "snapshot-prune", cmd_snapshot_prune },
	{ "snapshot-pin", cmd_snapshot_pin },
	{ "client_migrate_info", cmd_client_migrate_info },
	{ NULL, NULL },
};
