/*
 * restore/restore.h: the daemon-independent parts of a snapshot restore.
 *
 *   capabilities  what one migrate-incoming request's capabilities mean
 *                 (rst_caps_*), decided before any process starts;
 *   pagemap       which pages of a new QEMU's file-mapped RAM are already
 *                 private copies that shadow the snapshot (rst_private_*);
 *   feed          the stream a new QEMU loads: the small RAM blocks, the
 *                 fix-ups of shadowed main-RAM pages (or, eagerly, all of
 *                 main RAM), then the saved device state (rst_feed).
 *
 * The library never logs and never exits; errors follow common/err.h.
 *
 * Capabilities. A restore is one migrate-incoming request that carries its
 * capabilities. This module decides what they mean:
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
#ifndef SNAP_RESTORE_RESTORE_H
#define SNAP_RESTORE_RESTORE_H

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

/* ---- pagemap ---------------------------------------------------------- */

#include <stdint.h>
#include <sys/types.h>

/*
 * Find where process @pid maps the file @path from offset 0 over at least
 * @len bytes (as QEMU's memory-backend-file does). Matches by device and
 * inode, so a renamed or removed file is still found. Returns 0 and
 * *@addr, -ENOENT when there is no such mapping, -errno.
 */
int rst_find_mapping(pid_t pid, const char *path, uint64_t len,
		     uint64_t *addr, struct snap_err *err);

/*
 * How many bytes of the mapping that starts at @addr in @pid are private
 * copies (anonymous or swapped), from /proc/@pid/smaps. 0 means no page
 * shadows the file, so the page-by-page walk below can be skipped: it costs
 * time in proportion to the mapping's size, this does not. Returns 0 and
 * *@bytes, -ENOENT when there is no mapping at @addr, -errno.
 */
int rst_mapping_private(pid_t pid, uint64_t addr, uint64_t *bytes,
			struct snap_err *err);

/*
 * For the @npages pages (4 KiB) mapped at @addr in @pid, set bit i of
 * @bitmap (npages bits, zeroed first) when page i is a private copy (an
 * anonymous page that shadows the file: present and not file-backed, or
 * swapped). Returns the number of such pages, or -errno. Needs the right
 * to read /proc/@pid/pagemap (same user, or root).
 */
int64_t rst_private_pages(pid_t pid, uint64_t addr, uint64_t npages,
			  uint64_t *bitmap, struct snap_err *err);

/* ---- feed ------------------------------------------------------------- */

struct fmt_reader;

struct rst_feed_opts {
	/*
	 * Eager: every page of the main block goes into the stream (present
	 * pages as data, zero pages as ZERO records). Lazy: only the pages
	 * set in @fixups (a bitmap over the main block's pages; NULL: none)
	 * go into the stream, with the snapshot's content.
	 */
	bool eager;
	const uint64_t *fixups;
	/* Set by another thread to stop early (the feed returns -ECANCELED). */
	volatile int *cancel;
	/* Called now and then with stream bytes written. */
	void (*progress)(void *ctx, uint64_t bytes);
	void *ctx;
};

struct rst_feed_stats {
	uint64_t bytes;         /* stream bytes written */
	uint64_t pages;         /* PAGE records */
	uint64_t zero_pages;    /* ZERO records */
	uint64_t fixups;        /* main-block pages sent in lazy mode */
	unsigned blocks;        /* RAM blocks of the stream (all in the file) */
};

/*
 * Write to @fd the migration stream that makes a QEMU started from the
 * snapshot's spec load it: the saved preamble, the RAM section (every page
 * of every block other than the main one, then the main block's pages as
 * @opts says), the saved device state. Pages and the device state are
 * checked against their checksums as they are read (SNAP_ECHECKSUM names
 * the page). The caller closes @fd afterwards (QEMU needs the end of the
 * stream to finish loading). @st may be NULL.
 */
int rst_feed(struct fmt_reader *r, int fd, const struct rst_feed_opts *opts,
	     struct rst_feed_stats *st, struct snap_err *err);

#endif
