/*
 * restore/caps.c: the capability table and the rules of restore/restore.h.
 */
#include <errno.h>
#include <string.h>

#include "common/err.h"
#include "restore/restore.h"

struct cap_def {
	const char *name;
	enum rst_cap_role role;
	bool file_state;        /* RST_CAP_FILE: what the file needs;
				   RST_CAP_QEMU: snapd's default */
	const char *why;        /* RST_CAP_NONE: why it cannot apply */
};

static const struct cap_def caps[] = {
	{ "mapped-ram", RST_CAP_FILE, true, NULL },
	{ "events", RST_CAP_QEMU, true, NULL },
	{ "validate-uuid", RST_CAP_QEMU, false, NULL },
	{ "late-block-activate", RST_CAP_QEMU, false, NULL },
	{ "xbzrle", RST_CAP_NONE, false,
	  "the file holds whole pages, not XBZRLE deltas" },
	{ "compress", RST_CAP_NONE, false,
	  "the file holds uncompressed pages" },
	{ "rdma-pin-all", RST_CAP_NONE, false,
	  "a file restore does not use RDMA" },
	{ "auto-converge", RST_CAP_NONE, false,
	  "it throttles the sending side of a live migration" },
	{ "zero-blocks", RST_CAP_NONE, false,
	  "it belongs to block migration; the file holds no disk contents" },
	{ "block", RST_CAP_NONE, false,
	  "the file holds no disk contents" },
	{ "postcopy-ram", RST_CAP_NONE, false,
	  "a file restore is not a postcopy migration: every page is in the file" },
	{ "postcopy-blocktime", RST_CAP_NONE, false,
	  "a file restore is not a postcopy migration" },
	{ "postcopy-preempt", RST_CAP_NONE, false,
	  "a file restore is not a postcopy migration" },
	{ "x-colo", RST_CAP_NONE, false,
	  "COLO needs a live primary, not a file" },
	{ "release-ram", RST_CAP_NONE, false,
	  "it releases RAM on the sending side" },
	{ "return-path", RST_CAP_NONE, false,
	  "a file has no way back to its source" },
	{ "pause-before-switchover", RST_CAP_NONE, false,
	  "it pauses the sending side of a live migration" },
	{ "multifd", RST_CAP_NONE, false,
	  "the restore stream is fed through one channel" },
	{ "dirty-bitmaps", RST_CAP_NONE, false,
	  "the file holds no block dirty bitmaps" },
	{ "x-ignore-shared", RST_CAP_NONE, false,
	  "guest RAM comes from the file, not from memory shared with a source" },
	{ "background-snapshot", RST_CAP_NONE, false,
	  "it belongs to the saving side" },
	{ "zero-copy-send", RST_CAP_NONE, false,
	  "it belongs to the sending side" },
};

#define NCAPS (sizeof(caps) / sizeof(caps[0]))

size_t
rst_cap_count(void)
{
	return NCAPS;
}

const char *
rst_cap_name(size_t i)
{
	return i < NCAPS ? caps[i].name : NULL;
}

static const struct cap_def *
find(const char *name)
{
	for (size_t i = 0; i < NCAPS; i++)
		if (strcmp(caps[i].name, name) == 0)
			return &caps[i];
	return NULL;
}

int
rst_cap_role(const char *name, enum rst_cap_role *role, const char **why)
{
	const struct cap_def *c = find(name);

	if (c == NULL)
		return -ENOENT;
	*role = c->role;
	if (why != NULL)
		*why = c->why;
	return 0;
}

int
rst_caps_check(const struct rst_cap *list, size_t n, const char *what,
	       struct snap_err *err)
{
	if (n > RST_MAX_CAPS)
		return snap_err_set(err, SNAP_ECAPS, 0,
				    "%s gives %zu capabilities, more than %d",
				    what, n, RST_MAX_CAPS);
	for (size_t i = 0; i < n; i++) {
		if (find(list[i].name) == NULL)
			return snap_err_set(err, SNAP_ECAPS, 0,
					    "unknown migration capability '%s' "
					    "in the %s", list[i].name, what);
		for (size_t k = 0; k < i; k++)
			if (strcmp(list[k].name, list[i].name) == 0)
				return snap_err_set(err, SNAP_ECAPS, 0,
						    "capability '%s' is given "
						    "twice in the %s",
						    list[i].name, what);
	}
	return 0;
}

static const struct rst_cap *
lookup(const struct rst_cap *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return &list[i];
	return NULL;
}

bool
rst_cap_effective(const char *name, const struct rst_cap *guest, size_t nguest)
{
	const struct cap_def *c = find(name);
	const struct rst_cap *g = lookup(guest, nguest, name);

	if (c == NULL)
		return false;
	if (g != NULL)
		return g->state;
	return c->role == RST_CAP_NONE ? false : c->file_state;
}

int
rst_caps_resolve(const struct rst_cap *call, size_t ncall,
		 const struct rst_cap *guest, size_t nguest,
		 struct rst_cap_plan *out, struct snap_err *err)
{
	struct rst_cap_plan plan = { .nqemu = 0 };
	int rc;

	if ((rc = rst_caps_check(call, ncall, "request", err)) < 0 ||
	    (rc = rst_caps_check(guest, nguest, "guest's capabilities", err)) < 0)
		return rc;

	for (size_t i = 0; i < NCAPS; i++) {
		const struct cap_def *c = &caps[i];
		const struct rst_cap *v = lookup(call, ncall, c->name);
		const char *level = "request";
		bool state;

		if (v == NULL) {
			v = lookup(guest, nguest, c->name);
			level = "guest's capabilities (migrate-set-capabilities)";
		}
		state = v != NULL ? v->state :
			(c->role == RST_CAP_NONE ? false : c->file_state);
		switch (c->role) {
		case RST_CAP_FILE:
			if (state != c->file_state)
				return snap_err_set(err, SNAP_ECAPS, 0,
						    "capability '%s' is %s in the "
						    "%s, but the snapshot file "
						    "needs it %s", c->name,
						    state ? "on" : "off", level,
						    c->file_state ? "on" : "off");
			if (strcmp(c->name, "mapped-ram") == 0)
				plan.mapped_ram = state;
			break;
		case RST_CAP_NONE:
			if (state)
				return snap_err_set(err, SNAP_ECAPS, 0,
						    "capability '%s' (on in the "
						    "%s) cannot apply to a "
						    "snapshot restore: %s",
						    c->name, level, c->why);
			break;
		case RST_CAP_QEMU:
			if (strcmp(c->name, "events") == 0)
				plan.events = state;
			break;
		}
	}
	/* QEMU's own capabilities, in request order, call first. */
	for (size_t i = 0; i < ncall; i++) {
		enum rst_cap_role role = RST_CAP_NONE;
		rst_cap_role(call[i].name, &role, NULL);
		if (role == RST_CAP_QEMU)
			plan.qemu[plan.nqemu++] = call[i];
	}
	for (size_t i = 0; i < nguest; i++) {
		enum rst_cap_role role = RST_CAP_NONE;
		rst_cap_role(guest[i].name, &role, NULL);
		if (role == RST_CAP_QEMU &&
		    lookup(call, ncall, guest[i].name) == NULL)
			plan.qemu[plan.nqemu++] = guest[i];
	}
	/* Then snapd's defaults nobody mentioned ("events" on). */
	for (size_t i = 0; i < NCAPS; i++) {
		if (caps[i].role != RST_CAP_QEMU || !caps[i].file_state ||
		    lookup(call, ncall, caps[i].name) != NULL ||
		    lookup(guest, nguest, caps[i].name) != NULL)
			continue;
		plan.qemu[plan.nqemu].name = caps[i].name;
		plan.qemu[plan.nqemu++].state = true;
	}
	*out = plan;
	return 0;
}
