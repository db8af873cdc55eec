/*
 * common/err.h: the error convention shared by every module.
 *
 * A fallible function returns int: >= 0 on success, a negative value on
 * failure. Negative values in (-SNAP_ERR_BASE, 0) are -errno; values at or
 * below -SNAP_ERR_BASE are the project's own codes listed here. Both kinds
 * are turned into text by snap_strerror(), which never returns NULL.
 *
 * Where a code alone loses information (the offset of a corrupt record, the
 * SQLite message, the name of a bad capability), a function takes an
 * optional struct snap_err * as its last argument and fills it on failure.
 * Passing NULL is always allowed.
 *
 * Libraries never log and never exit; they return these codes.
 */
#ifndef SNAP_COMMON_ERR_H
#define SNAP_COMMON_ERR_H

#include <stddef.h>
#include <stdint.h>

#define SNAP_ERR_BASE 10000

enum snap_errcode {
	SNAP_ECORRUPT   = -(SNAP_ERR_BASE + 1),  /* input violates its format */
	SNAP_EMAGIC     = -(SNAP_ERR_BASE + 2),  /* not a file of this kind */
	SNAP_EVERSION   = -(SNAP_ERR_BASE + 3),  /* unsupported format version */
	SNAP_ECHECKSUM  = -(SNAP_ERR_BASE + 4),  /* checksum mismatch */
	SNAP_ETRUNC     = -(SNAP_ERR_BASE + 5),  /* input ends too early */
	SNAP_ELIMIT     = -(SNAP_ERR_BASE + 6),  /* a count or size exceeds a limit */
	SNAP_ESQLITE    = -(SNAP_ERR_BASE + 7),  /* SQLite failed; see detail */
	SNAP_EMISUSE    = -(SNAP_ERR_BASE + 8),  /* API called in a wrong state */
	SNAP_EPROTO     = -(SNAP_ERR_BASE + 9),  /* peer broke the protocol */
	SNAP_EQEMU      = -(SNAP_ERR_BASE + 10), /* QEMU reported an error */
	SNAP_ESTREAM    = -(SNAP_ERR_BASE + 11), /* unsupported migration stream */
	SNAP_ECAPS      = -(SNAP_ERR_BASE + 12), /* capability conflict or unknown */
	SNAP_ESCHEMA    = -(SNAP_ERR_BASE + 13), /* catalog schema newer than us */
	SNAP_EINUSE     = -(SNAP_ERR_BASE + 14), /* object in use (mapped file) */
	SNAP_ECONFIG    = -(SNAP_ERR_BASE + 15), /* invalid configuration/spec */
	SNAP_ERR_LAST   = -(SNAP_ERR_BASE + 16),
};

/* Optional detail that travels with an error code. */
struct snap_err {
	int code;           /* the code that was returned */
	uint64_t offset;    /* byte offset the error refers to, if any */
	char msg[256];      /* human-readable detail, NUL-terminated */
};

/*
 * Return a static, human-readable string for a code (negative errno or
 * project code). Unknown codes give "unknown error". Never NULL.
 */
const char *snap_strerror(int code);

/*
 * Fill @e (if not NULL) with @code, @offset and a printf-style message, and
 * return @code so that callers can write "return snap_err_set(...)".
 */
int snap_err_set(struct snap_err *e, int code, uint64_t offset,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Clear @e (if not NULL). */
void snap_err_clear(struct snap_err *e);

/*
 * Text for @e if it carries a message, else snap_strerror(@code). For
 * printing only; the pointer is valid as long as @e is.
 */
const char *snap_err_text(const struct snap_err *e, int code);

#endif
