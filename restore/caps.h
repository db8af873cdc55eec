/*
 * restore/caps.h: which migration capabilities a snapshot restore uses.
 *
 * A restore is one migrate-incoming request that carries its capabilities.
 * This module decides, before any process starts, what they mean:
 *
 *   - Known names are QEMU 7.2's migration capabilities plus "mapped-ram".
 *     Any other name is refused, naming it.
 *   - Each known capability has a role:
 *       FILE   what the snapshot file itself needs ("mapped-ram" on: every
 *              snapshot snapd writes is a mapped-RAM file). Applied when
 *              nobody says anything; a request that turns it off is refused.
 *       QEMU   set on the new QEMU before its own migrate-incoming ("events",
 *              "validate-uuid", "late-block-activate"). "events" is on
 *              unless turned off: snapd follows the load through QEMU's
 *              MIGRATION events (and polls query-migrate when it is off).
 *       NONE   cannot apply to a file restore (xbzrle, compress, postcopy-*,
 *              multifd, x-ignore-shared, background-snapshot, block, ...).
 *              Turning one on is refused with the reason; turning it off is
 *              accepted and changes nothing.
 *   - Precedence, highest first: the call's own list, then the guest's list
 *     (migrate-set-capabilities {vm}), then the file's needs, then QEMU's
 *     default (off). The call's list applies to that call only.
 *   - A name given twice in one list is refused (its meaning would depend on
 *     the order).
 *   - The QEMU capabilities to set are returned in request order: the call's
 *     entries first, then the guest's entries the call did not override,
 *     then snapd's defaults that neither mentioned ("events" on).
 *
 * Pure functions, no allocation, no I/O.
 */
#ifndef SNAP_RESTORE_CAPS_H
#define SNAP_RESTORE_CAPS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define RST_MAX_CAPS 32

enum rst_cap_role {
	RST_CAP_FILE,
	RST_CAP_QEMU,
	RST_CAP_NONE,
};

struct rst_cap {
	const char *name;
	bool state;
};

struct rst_cap_plan {
	struct rst_cap qemu[RST_MAX_CAPS];  /* to set on QEMU, in order */
	size_t nqemu;
	bool events;        /* effective "events": QEMU reports MIGRATION */
	bool mapped_ram;    /* effective "mapped-ram" (always true on success) */
};

/* Number of known capabilities, and the name of number @i (for listings). */
size_t rst_cap_count(void);
const char *rst_cap_name(size_t i);

/*
 * The role of @name and, for RST_CAP_NONE, why it cannot apply (*@why may
 * be NULL). Returns -ENOENT for an unknown name.
 */
int rst_cap_role(const char *name, enum rst_cap_role *role, const char **why);

/*
 * Check a list given at one level (@what names it in messages: "request",
 * "guest"): known names, no duplicates. Returns 0 or SNAP_ECAPS.
 */
int rst_caps_check(const struct rst_cap *caps, size_t n, const char *what,
		   struct snap_err *err);

/*
 * Resolve the capabilities of one restore. @call and @guest may be empty.
 * Returns 0 and fills *@out, or SNAP_ECAPS with a message naming the
 * capability, the level it came from and what the file needs or why it
 * cannot apply.
 */
int rst_caps_resolve(const struct rst_cap *call, size_t ncall,
		     const struct rst_cap *guest, size_t nguest,
		     struct rst_cap_plan *out, struct snap_err *err);

/*
 * The effective state of @name for a restore of a guest whose per-guest list
 * is @guest (no call list): what query-migrate-capabilities reports.
 */
bool rst_cap_effective(const char *name, const struct rst_cap *guest,
		       size_t nguest);

#endif
