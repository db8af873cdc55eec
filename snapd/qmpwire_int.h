/*
 * snapd/qmpwire_int.h: QMP framing and request checks (module-private).
 *
 * Shared by the control server (qmpd.c), the QEMU client (qmpc.c) and the
 * fuzz target. Pure code: no fds, no loop, no globals; everything here may
 * be fed arbitrary bytes.
 *
 * Framing follows QEMU's JSON streamer in spirit: a message is one top-level
 * JSON value, objects and arrays end when their brackets balance (strings
 * and escapes are tracked, so brackets inside strings do not count), a bare
 * scalar ends at the first byte that cannot continue it, and whitespace
 * between messages is skipped. So several messages may arrive in one read
 * and one message may arrive a byte at a time. Recovery: a raw control
 * character inside a string (which JSON forbids, and which an unterminated
 * string followed by a newline produces) ends the broken message there, so
 * one bad request cannot swallow the ones after it. A message longer than
 * the framer's limit, or nested deeper than QMP_MAX_DEPTH, is reported once
 * and then skipped up to its end without being stored.
 *
 * Not supported from QEMU's dialect: single-quoted strings (they are
 * answered with a JSON parse error) and integers beyond 64 bits (QEMU turns
 * them into doubles; here they are a parse error).
 */
#ifndef SNAPD_QMPWIRE_INT_H
#define SNAPD_QMPWIRE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Deepest nesting accepted (QEMU's MAX_NESTING). */
#define QMP_MAX_DEPTH 1024

enum qmp_frame {
	QMP_FRAME_NONE,      /* input used up, no complete message yet */
	QMP_FRAME_MSG,       /* a complete message in buf[0..len) */
	QMP_FRAME_TOO_BIG,   /* message over the limit: skipped to its end */
	QMP_FRAME_TOO_DEEP,  /* nesting over QMP_MAX_DEPTH: skipped to its end */
	QMP_FRAME_BAD_CHAR,  /* control character in a string: message dropped */
};

/* Zero-initialise through qmp_framer_init(); no other invariants exposed. */
struct qmp_framer {
	char *buf;        /* the message being collected */
	size_t len, cap;
	size_t max;       /* longest message kept */
	size_t depth;     /* open brackets of the current message */
	int state;
	bool skip;        /* over a limit: track structure, keep nothing */
	bool done;        /* buf holds a delivered message; reset on next scan */
};

void qmp_framer_init(struct qmp_framer *f, size_t max);
void qmp_framer_release(struct qmp_framer *f);

/*
 * Scan up to @n bytes at @p. Stops after the first event (a message or an
 * error) and returns the number of bytes consumed, setting *@ev; returns
 * @n with QMP_FRAME_NONE when the input ran out first. For
 * QMP_FRAME_MSG the message is in f->buf, f->len (not NUL-terminated)
 * until the next call. When memory for the message cannot be had, it is
 * reported as QMP_FRAME_TOO_BIG and skipped like an oversized one.
 */
size_t qmp_framer_scan(struct qmp_framer *f, const char *p, size_t n,
		       enum qmp_frame *ev);

/* True between messages (nothing partial buffered or being skipped). */
bool qmp_framer_idle(const struct qmp_framer *f);

/* The QEMU-style GenericError description for a framing error event. */
const char *qmp_frame_desc(enum qmp_frame ev, size_t max);

/*
 * A request after the checks of QEMU's qmp_dispatch(): an object whose
 * members are only "execute" (a string), "arguments" (an object) and "id"
 * (anything).
 */
struct qmp_request {
	json_t *root;         /* owned; NULL if the bytes did not parse */
	json_t *id;           /* borrowed from root; NULL if absent */
	const char *execute;  /* borrowed; NULL unless the checks passed */
	json_t *args;         /* borrowed; NULL if absent */
};

/*
 * Parse and check one framed message. Returns 0 with *@req filled, or -1
 * with the GenericError description in @desc (worded as QEMU 7.2 words it:
 * "JSON parse error, ...", "QMP input must be a JSON object", "QMP input
 * lacks member 'execute'", ...); even then req->root and req->id are set
 * when the message was an object, so the error can echo the id. Call
 * qmp_request_clear() in both cases.
 */
int qmp_request_parse(const char *buf, size_t len, struct qmp_request *req,
		      char *desc, size_t desclen);
void qmp_request_clear(struct qmp_request *req);

/*
 * Serialise @msg the way QEMU does (", " and ": " separators) followed by
 * CRLF. Returns a malloc'd buffer and its length, or NULL (out of memory,
 * or a string that is not valid UTF-8).
 */
char *qmp_dump(const json_t *msg, size_t *len);

/* {"error": {"class": @cls, "desc": @desc}} plus "id" when @id != NULL
 * (borrowed). NULL on allocation failure. */
json_t *qmp_error_msg(json_t *id, const char *cls, const char *desc);

#endif
