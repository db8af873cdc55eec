/*
 * snapd/qmpd.h: the QMP-compatible control server.
 *
 * Protocol (QEMU's docs/interop/qmp-spec.txt): on connect the server sends
 * the greeting {"QMP": {"version": ..., "capabilities": []}}. Until the
 * client sends "qmp_capabilities" every other command gets CommandNotFound
 * "Expecting capabilities negotiation with 'qmp_capabilities'", and no
 * events are delivered. Then {"execute": NAME, "arguments": {...}, "id": ANY}
 * is answered by {"return": VALUE, "id": ANY} or
 * {"error": {"class": C, "desc": S}, "id": ANY}, the id echoed verbatim
 * (absent when the request had none or could not be parsed). Events are
 * {"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}.
 * Every message the server sends ends with CRLF.
 *
 * Malformed JSON, a request that is not an object, a missing or non-string
 * "execute", "arguments" that is not an object, unknown members, unknown
 * commands and oversized messages all get a QMP error; the connection
 * survives them (an oversized message is skipped up to its end). Limits:
 * QMPD_MAX_CLIENTS connections (more are greeted with an error and closed),
 * QMPD_MAX_MSG bytes per request, QMPD_MAX_OUTBUF bytes queued toward a
 * client that does not read (then it is disconnected).
 *
 * Commands are served by handlers registered in a table. A handler may reply
 * at once or keep the request and reply later (a long job); if the client
 * disconnects meanwhile, the reply is silently dropped and the request
 * freed. Every request gets exactly one reply: qmpd_reply_ok() or
 * qmpd_reply_err() consume the request.
 *
 * Peer credentials: on accept, the server reads SO_PEERCRED and refuses
 * (closes) peers whose uid is neither 0 nor the daemon's own uid, unless an
 * allow callback says otherwise.
 *
 * Everything here runs on the loop thread.
 */
#ifndef SNAPD_QMPD_H
#define SNAPD_QMPD_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "snapd/loop.h"

#define QMPD_MAX_CLIENTS 64
#define QMPD_MAX_MSG     (1u << 20)
#define QMPD_MAX_OUTBUF  (16u << 20)

struct qmpd;        /* the server */
struct qmpd_client; /* one connection */
struct qmpd_req;    /* one request awaiting its reply */

/* QMP error classes (qapi/error.json). */
enum qmpd_class {
	QMPD_GENERIC,          /* "GenericError" */
	QMPD_COMMAND_NOT_FOUND,/* "CommandNotFound" */
	QMPD_DEVICE_NOT_ACTIVE,/* "DeviceNotActive" */
	QMPD_DEVICE_NOT_FOUND, /* "DeviceNotFound" */
};

/*
 * A command handler. @args is the "arguments" object (an empty object when
 * absent), borrowed for the duration of the call: json_incref() it to keep
 * it. The handler must eventually consume @req with one reply.
 */
typedef void (*qmpd_handler_fn)(struct qmpd_req *req, json_t *args, void *ctx);

struct qmpd_command {
	const char *name;
	qmpd_handler_fn fn;
};

struct qmpd_config {
	const char *socket_path;  /* created with mode 0600; an existing stale
				     socket is replaced */
	json_t *version;          /* "version" member of the greeting and of
				     query-version; borrowed, incref'd */
	const struct qmpd_command *commands; /* NULL-name terminated */
	void *ctx;                /* passed to every handler */
	/* Optional: accept a peer with these credentials? NULL = default. */
	bool (*allow_peer)(pid_t pid, uid_t uid, gid_t gid, void *ctx);
};

/*
 * Create the socket, listen, and register with @l. The built-in commands
 * qmp_capabilities, query-version and query-commands are always present
 * (query-commands lists the built-ins and the table). Returns 0 and *out,
 * or -errno (socket creation), with detail in @err if not NULL.
 */
struct snap_err;
int qmpd_new(struct loop *l, const struct qmpd_config *cfg, struct qmpd **out,
	     struct snap_err *err);

/* Close every connection and the socket, unlink it (only if the path still
 * names the socket this server bound). Pending requests are freed without
 * reply: handles a job still holds become invalid. Not from inside a
 * handler or any other callback of this server. NULL ok. */
void qmpd_free(struct qmpd *s);

/* Reply {"return": @ret} (stolen; NULL means {}). Consumes @req. */
void qmpd_reply_ok(struct qmpd_req *req, json_t *ret);

/* Reply with an error of @cls and a printf-style description. Consumes
 * @req. */
void qmpd_reply_err(struct qmpd_req *req, enum qmpd_class cls,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Has the client that sent @req gone away? (The reply would be dropped.) */
bool qmpd_req_orphaned(const struct qmpd_req *req);

/* Credentials of the client that sent @req (uid is (uid_t)-1 if orphaned). */
uid_t qmpd_req_uid(const struct qmpd_req *req);

/*
 * Send an event to every negotiated client. @data is stolen (NULL for no
 * "data" member). The timestamp is taken now (CLOCK_REALTIME).
 */
void qmpd_event(struct qmpd *s, const char *name, json_t *data);

/* Number of connected clients (for tests and limits). */
unsigned qmpd_client_count(const struct qmpd *s);

/*
 * Argument helpers for handlers: fetch a member of @args of the right JSON
 * type. On a missing required member or a wrong type they reply with the
 * QEMU-style GenericError ("Parameter 'X' is missing" / "Invalid parameter
 * type for 'X', expected: string") and return false, consuming @req; the
 * handler must then return at once. Optional members that are absent leave
 * *out untouched and return true.
 */
bool qmpd_arg_str(struct qmpd_req *req, json_t *args, const char *name,
		  bool required, const char **out);
bool qmpd_arg_bool(struct qmpd_req *req, json_t *args, const char *name,
		   bool required, bool *out);
bool qmpd_arg_int(struct qmpd_req *req, json_t *args, const char *name,
		  bool required, long long *out);
bool qmpd_arg_obj(struct qmpd_req *req, json_t *args, const char *name,
		  bool required, json_t **out);
bool qmpd_arg_array(struct qmpd_req *req, json_t *args, const char *name,
		    bool required, json_t **out);

/*
 * Reject members of @args not listed in @allowed (NULL-terminated), as QEMU
 * does ("Parameter 'X' is unexpected"). Returns false and consumes @req on
 * the first unexpected member.
 */
bool qmpd_args_only(struct qmpd_req *req, json_t *args,
		    const char *const *allowed);

#endif
