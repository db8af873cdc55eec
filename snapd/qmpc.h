/*
 * snapd/qmpc.h: asynchronous QMP client for the QEMU processes snapd runs.
 *
 * One struct qmpc per QEMU monitor connection, driven by the daemon's loop.
 * The caller hands over an already-connected stream socket; qmpc reads the
 * greeting, negotiates capabilities and then reports readiness. Commands are
 * queued and sent in order; each gets its reply callback exactly once:
 * with the "return" value, or with an error (QEMU's class and desc, or
 * class "Disconnected" when the connection ended first, in which case every
 * pending callback fires before the state callback reports the end).
 *
 * Events (any message with "event") go to the event callback in arrival
 * order, interleaved with replies as QEMU sends them.
 *
 * Limits: a message from QEMU larger than QMPC_MAX_MSG ends the connection
 * (QEMU never sends such a thing; something is wrong).
 *
 * Everything runs on the loop thread. Callbacks may call qmpc_exec() and
 * may call qmpc_free() on their own connection.
 */
#ifndef SNAPD_QMPC_H
#define SNAPD_QMPC_H

#include <jansson.h>

#include "snapd/loop.h"

#define QMPC_MAX_MSG (8u << 20)

struct qmpc;

/*
 * Reply callback. On success @ret is the "return" value (borrowed) and
 * @cls/@desc are NULL. On failure @ret is NULL and @cls/@desc describe the
 * error ("Disconnected" when the connection ended before the reply).
 */
typedef void (*qmpc_reply_fn)(struct qmpc *c, json_t *ret, const char *cls,
			      const char *desc, void *arg);

/* Event callback: @data may be NULL; both borrowed. @ts_us is the event's
 * timestamp in microseconds since the epoch. */
typedef void (*qmpc_event_fn)(struct qmpc *c, const char *name, json_t *data,
			      unsigned long long ts_us, void *arg);

/*
 * State callback: @status 0 = negotiated and ready (once); negative = the
 * connection ended (once; -ECONNRESET on EOF, -EPROTO on a protocol
 * violation, other -errno on errors). After the end callback the handle
 * still exists and must be freed by its owner.
 */
typedef void (*qmpc_state_fn)(struct qmpc *c, int status, void *arg);

/*
 * Take ownership of the connected socket @fd and start the handshake.
 * Returns 0 and *out, or -errno (@fd is closed on failure too).
 */
int qmpc_new(struct loop *l, int fd, qmpc_event_fn on_event,
	     qmpc_state_fn on_state, void *arg, struct qmpc **out);

/* Close the connection; pending reply callbacks are NOT called. NULL ok. */
void qmpc_free(struct qmpc *c);

/* Name the connection in trace messages (snapd -vv); copied. */
void qmpc_set_name(struct qmpc *c, const char *name);

/*
 * Queue a command. @args is stolen (NULL for none). If @fd >= 0 it is sent
 * with the command's bytes by SCM_RIGHTS (for getfd/add-fd); qmpc dups it,
 * so the caller keeps its own @fd. @fn may be NULL (reply ignored).
 * Returns 0, or -ENOTCONN once the connection has ended, -ENOMEM, or the
 * -errno of duplicating @fd. Commands may be queued before the handshake
 * finished. Nothing is written from inside this call (the loop writes), so
 * callbacks never run re-entrantly from it.
 */
int qmpc_exec(struct qmpc *c, const char *command, json_t *args, int fd,
	      qmpc_reply_fn fn, void *arg);

/* The greeting's "QMP" object (borrowed), or NULL before it arrived. */
json_t *qmpc_greeting(const struct qmpc *c);

#endif
