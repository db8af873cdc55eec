/*
 * snapd/qmpd.c: the QMP-compatible control server behind snapd/qmpd.h.
 *
 * It owns the listening UNIX socket and every client connection: accepting
 * (peer credentials, client limit), reading and framing requests
 * (qmpwire.c), the checks and negotiation rules of QEMU's monitor, the
 * built-in commands, dispatch to the command table, and buffered output
 * with a cap.
 *
 * Each client serves its requests strictly one after another, as QEMU's
 * monitor does: while a handler keeps a request (a long job), the bytes
 * after it stay unread and replies keep the order of the requests. A
 * client's states:
 *
 *   greeted --qmp_capabilities--> negotiated        (events only here)
 *   greeted|negotiated --EOF--> draining --all answered and sent--> gone
 *   any --error, HUP, output over the cap, qmpd_free--> gone
 *
 * A client that goes away while a handler keeps one of its requests leaves
 * that request orphaned: it stays valid, its reply is dropped. Client
 * memory is released only when no callback of this file is running for it
 * (the busy count), so a reply that overflows the output buffer from inside
 * a handler cannot free the client under the dispatch loop's feet.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/qmpd.h"
#include "snapd/qmpwire_int.h"

#define QMPD_READ_CHUNK 16384

struct qmpd_client {
	struct qmpd *s;
	struct qmpd_client *prev, *next;
	int fd;
	struct loop_watch *w;
	uint32_t want;          /* events currently asked of the loop */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool negotiated;
	bool eof;               /* peer will send no more */
	bool dead;              /* closed; memory freed when !busy */
	unsigned busy;
	struct qmpd_req *pending; /* request being served, at most one */
	struct loop_timer *kick;  /* resume reading after an async reply */
	struct qmp_framer fr;
	char in[QMPD_READ_CHUNK];
	size_t in_off, in_len;
	char *out;
	size_t out_off, out_len, out_cap;
};

struct qmpd_req {
	struct qmpd *s;
	struct qmpd_client *c;  /* NULL once orphaned */
	struct qmpd_req *prev, *next;
	json_t *id;
	uid_t uid;
};

struct qmpd {
	struct loop *loop;
	int lfd;
	struct loop_watch *lw;
	char *path;
	dev_t dev;              /* of the socket we bound, to unlink only it */
	ino_t ino;
	json_t *version;
	const struct qmpd_command *commands;
	void *ctx;
	bool (*allow_peer)(pid_t, uid_t, gid_t, void *);
	struct qmpd_client *clients;
	unsigned nclients;
	struct qmpd_req *reqs;  /* every request not yet answered */
};

static void client_pump(struct qmpd_client *c);

/* --- client lifetime ----------------------------------------------------- */

static void
client_destroy(struct qmpd_client *c)
{
	struct qmpd *s = c->s;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nclients--;
	qmp_framer_release(&c->fr);
	free(c->out);
	free(c);
}

/* Close the connection now; free the memory now or when no longer busy. */
static void
client_kill(struct qmpd_client *c)
{
	if (!c->dead) {
		snap_trace("control fd %d: closed", c->fd);
		c->dead = true;
		loop_unwatch(c->s->loop, c->w);
		c->w = NULL;
		loop_timer_cancel(c->s->loop, c->kick);
		c->kick = NULL;
		close(c->fd);
		c->fd = -1;
		if (c->pending) {
			c->pending->c = NULL;
			c->pending = NULL;
		}
	}
	if (!c->busy)
		client_destroy(c);
}

static void
client_update_events(struct qmpd_client *c)
{
	uint32_t want = 0;

	if (c->dead)
		return;
	if (!c->eof && c->in_off == c->in_len)
		want |= LOOP_IN;
	if (c->out_off < c->out_len)
		want |= LOOP_OUT;
	if (want != c->want && loop_watch_modify(c->s->loop, c->w, want) == 0)
		c->want = want;
}

/* Write what we can. Returns false if the client was killed. */
static bool
client_flush(struct qmpd_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off,
				 c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_kill(c);
			return false;
		}
		c->out_off += (size_t)n;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return true;
}

/* snapd -vv: one message in or out on the control socket. */
static void
trace_msg(int fd, const char *dir, const char *p, size_t n)
{
	char who[48];

	if (!snap_log_enabled(SNAP_LOG_TRACE))
		return;
	snprintf(who, sizeof(who), "control fd %d %s", fd, dir);
	snap_trace_msg(who, p, n);
}

/* Queue raw bytes; over the cap the client is disconnected. */
static bool
client_queue(struct qmpd_client *c, const char *p, size_t n)
{
	size_t queued;

	if (c->dead)
		return false;
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	queued = c->out_len - c->out_off;
	if (queued + n > QMPD_MAX_OUTBUF) {
		client_kill(c);
		return false;
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap;
		char *b;

		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, queued);
			c->out_off = 0;
			c->out_len = queued;
		}
		cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + n)
			cap *= 2;
		if (cap != c->out_cap) {
			b = realloc(c->out, cap);
			if (!b) {
				client_kill(c);
				return false;
			}
			c->out = b;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	trace_msg(c->fd, "->", p, n);
	if (!client_flush(c))
		return false;
	client_update_events(c);
	return true;
}

/* Send one message (borrowed). False if the client was killed. */
static bool
client_send(struct qmpd_client *c, const json_t *msg)
{
	size_t n;
	char *text;
	bool ok;

	if (c->dead)
		return false;
	text = qmp_dump(msg, &n);
	if (!text) {
		client_kill(c);
		return false;
	}
	ok = client_queue(c, text, n);
	free(text);
	return ok;
}

static bool
client_send_error(struct qmpd_client *c, json_t *id, enum qmpd_class cls,
		  const char *desc);

/* --- requests ------------------------------------------------------------ */

static const char *const class_names[] = {
	[QMPD_GENERIC] = "GenericError",
	[QMPD_COMMAND_NOT_FOUND] = "CommandNotFound",
	[QMPD_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
	[QMPD_DEVICE_NOT_FOUND] = "DeviceNotFound",
};

static const char *
class_name(enum qmpd_class cls)
{
	if ((unsigned)cls < SNAP_ARRAY_SIZE(class_names) && class_names[cls])
		return class_names[cls];
	return "GenericError";
}

static void
on_kick(struct loop *l, void *arg)
{
	struct qmpd_client *c = arg;
	(void)l;

	c->kick = NULL;
	client_pump(c);
}

/* Send @msg (stolen) as the reply to @req and free @req. */
static void
req_finish(struct qmpd_req *req, json_t *msg)
{
	struct qmpd_client *c = req->c;
	struct qmpd *s = req->s;

	if (req->prev)
		req->prev->next = req->next;
	else
		s->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
	if (c && msg && req->id && json_object_set(msg, "id", req->id) < 0) {
		json_decref(msg);
		msg = NULL;
	}
	if (c) {
		c->pending = NULL;
		/* Replied from outside the dispatch loop (a long job): let the
		 * client's next request run later, not inside our caller. */
		if (!c->busy && !c->kick &&
		    loop_timer_add(s->loop, 0, on_kick, c, &c->kick) < 0)
			client_kill(c);
		else if (msg)
			client_send(c, msg);
		else
			client_kill(c);
	}
	json_decref(msg);
	json_decref(req->id);
	free(req);
}

void
qmpd_reply_ok(struct qmpd_req *req, json_t *ret)
{
	json_t *msg = json_object();

	if (!ret)
		ret = json_object();
	if (msg && ret && json_object_set_new(msg, "return", ret) < 0) {
		json_decref(msg);
		msg = NULL;
	} else if (!msg || !ret) {
		json_decref(ret);
		json_decref(msg);
		msg = NULL;
	}
	req_finish(req, msg);
}

static void __attribute__((format(printf, 3, 0)))
reply_err_va(struct qmpd_req *req, enum qmpd_class cls, const char *fmt,
	     va_list ap)
{
	json_t *desc = json_vsprintf(fmt, ap);
	json_t *msg;

	/* json_vsprintf refuses text that is not UTF-8. */
	msg = qmp_error_msg(NULL, class_name(cls),
			    desc ? json_string_value(desc) :
			    "error description is not valid UTF-8");
	json_decref(desc);
	req_finish(req, msg);
}

void
qmpd_reply_err(struct qmpd_req *req, enum qmpd_class cls, const char *fmt,
	       ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_err_va(req, cls, fmt, ap);
	va_end(ap);
}

bool
qmpd_req_orphaned(const struct qmpd_req *req)
{
	return req->c == NULL;
}

uid_t
qmpd_req_uid(const struct qmpd_req *req)
{
	return req->c ? req->uid : (uid_t)-1;
}

/* --- argument helpers ---------------------------------------------------- */

static bool
arg_get(struct qmpd_req *req, json_t *args, const char *name, bool required,
	json_type type, const char *tname, json_t **out)
{
	json_t *v = json_object_get(args, name);

	if (!v) {
		if (required) {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "Parameter '%s' is missing", name);
			return false;
		}
		return true;
	}
	if (json_typeof(v) != type &&
	    !(type == JSON_TRUE && json_is_boolean(v))) {
		qmpd_reply_err(req, QMPD_GENERIC,
			       "Invalid parameter type for '%s', expected: %s",
			       name, tname);
		return false;
	}
	*out = v;
	return true;
}

bool
qmpd_arg_str(struct qmpd_req *req, json_t *args, const char *name,
	     bool required, const char **out)
{
	json_t *v = NULL;

	if (!arg_get(req, args, name, required, JSON_STRING, "string", &v))
		return false;
	if (v)
		*out = json_string_value(v);
	return true;
}

bool
qmpd_arg_bool(struct qmpd_req *req, json_t *args, const char *name,
	      bool required, bool *out)
{
	json_t *v = NULL;

	if (!arg_get(req, args, name, required, JSON_TRUE, "boolean", &v))
		return false;
	if (v)
		*out = json_is_true(v);
	return true;
}

bool
qmpd_arg_int(struct qmpd_req *req, json_t *args, const char *name,
	     bool required, long long *out)
{
	json_t *v = NULL;

	if (!arg_get(req, args, name, required, JSON_INTEGER, "integer", &v))
		return false;
	if (v)
		*out = (long long)json_integer_value(v);
	return true;
}

bool
qmpd_arg_obj(struct qmpd_req *req, json_t *args, const char *name,
	     bool required, json_t **out)
{
	json_t *v = NULL;

	if (!arg_get(req, args, name, required, JSON_OBJECT, "object", &v))
		return false;
	if (v)
		*out = v;
	return true;
}

bool
qmpd_arg_array(struct qmpd_req *req, json_t *args, const char *name,
	       bool required, json_t **out)
{
	json_t *v = NULL;

	if (!arg_get(req, args, name, required, JSON_ARRAY, "array", &v))
		return false;
	if (v)
		*out = v;
	return true;
}

bool
qmpd_args_only(struct qmpd_req *req, json_t *args,
	       const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(args, key, v) {
		const char *const *a;

		for (a = allowed; a && *a; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (!a || !*a) {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "Parameter '%s' is unexpected", key);
			return false;
		}
	}
	return true;
}

/* --- built-in commands --------------------------------------------------- */

static void
cmd_capabilities(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "enable", NULL };
	json_t *enable = NULL, *v;
	size_t i;
	struct qmpd_client *c = req->c;
	(void)ctx;

	if (c && c->negotiated) {
		qmpd_reply_err(req, QMPD_COMMAND_NOT_FOUND, "Capabilities "
			       "negotiation is already complete, command "
			       "ignored");
		return;
	}
	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_array(req, args, "enable", false, &enable))
		return;
	json_array_foreach(enable, i, v) {
		if (!json_is_string(v)) {
			qmpd_reply_err(req, QMPD_GENERIC, "Invalid parameter "
				       "type for 'enable[%zu]', expected: "
				       "string", i);
			return;
		}
		if (strcmp(json_string_value(v), "oob") != 0) {
			qmpd_reply_err(req, QMPD_GENERIC, "Parameter "
				       "'enable[%zu]' does not accept value "
				       "'%s'", i, json_string_value(v));
			return;
		}
		/* We offer no capability, OOB included. */
		qmpd_reply_err(req, QMPD_GENERIC,
			       "Capability oob not available");
		return;
	}
	if (c)
		c->negotiated = true;
	qmpd_reply_ok(req, NULL);
}

static void
cmd_query_version(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const none[] = { NULL };
	(void)ctx;

	if (!qmpd_args_only(req, args, none))
		return;
	qmpd_reply_ok(req, json_deep_copy(req->s->version));
}

/* Defined below; query-commands lists it. */
static const struct qmpd_command builtins[4];

static void
cmd_query_commands(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const none[] = { NULL };
	const struct qmpd_command *t;
	json_t *list;
	(void)ctx;

	if (!qmpd_args_only(req, args, none))
		return;
	list = json_array();
	for (t = builtins; t->name; t++)
		json_array_append_new(list, json_pack("{s:s}", "name", t->name));
	for (t = req->s->commands; t && t->name; t++)
		json_array_append_new(list, json_pack("{s:s}", "name", t->name));
	qmpd_reply_ok(req, list);
}

static const struct qmpd_command builtins[4] = {
	{ "qmp_capabilities", cmd_capabilities },
	{ "query-commands", cmd_query_commands },
	{ "query-version", cmd_query_version },
	{ NULL, NULL },
};

static const struct qmpd_command *
find_command(const struct qmpd *s, const char *name)
{
	const struct qmpd_command *t;

	for (t = builtins; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	for (t = s->commands; t && t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* --- dispatch ------------------------------------------------------------ */

static bool
client_send_error(struct qmpd_client *c, json_t *id, enum qmpd_class cls,
		  const char *desc)
{
	json_t *msg = qmp_error_msg(id, class_name(cls), desc);
	bool ok;

	if (!msg) {
		client_kill(c);
		return false;
	}
	ok = client_send(c, msg);
	json_decref(msg);
	return ok;
}

/* Handle the message the framer just delivered. */
static void
client_handle(struct qmpd_client *c)
{
	struct qmpd *s = c->s;
	struct qmp_request r;
	const struct qmpd_command *cmd;
	struct qmpd_req *req;
	char desc[512];
	json_t *args;
	bool builtin_caps;

	trace_msg(c->fd, "<-", c->fr.buf, c->fr.len);
	if (qmp_request_parse(c->fr.buf, c->fr.len, &r, desc,
			      sizeof(desc)) < 0) {
		client_send_error(c, r.id, QMPD_GENERIC, desc);
		goto out;
	}
	cmd = find_command(s, r.execute);
	builtin_caps = cmd && cmd->fn == cmd_capabilities;
	if (!c->negotiated && !builtin_caps) {
		client_send_error(c, r.id, QMPD_COMMAND_NOT_FOUND,
				  "Expecting capabilities negotiation with "
				  "'qmp_capabilities'");
		goto out;
	}
	if (!cmd) {
		json_t *d = json_sprintf("The command %s has not been found",
					 r.execute);
		client_send_error(c, r.id, QMPD_COMMAND_NOT_FOUND,
				  d ? json_string_value(d) : "command not found");
		json_decref(d);
		goto out;
	}
	req = calloc(1, sizeof(*req));
	args = r.args ? json_incref(r.args) : json_object();
	if (!req || !args) {
		free(req);
		json_decref(args);
		client_kill(c);
		goto out;
	}
	req->s = s;
	req->c = c;
	req->id = json_incref(r.id);
	req->uid = c->uid;
	req->next = s->reqs;
	if (s->reqs)
		s->reqs->prev = req;
	s->reqs = req;
	c->pending = req;
	cmd->fn(req, args, s->ctx);
	json_decref(args);
out:
	qmp_request_clear(&r);
}

/*
 * Frame and serve buffered input until it runs out, a request stays
 * pending, or the client dies. Then decide what to watch, or close a
 * client that has said all it will and got every answer.
 */
static void
client_pump(struct qmpd_client *c)
{
	c->busy++;
	while (!c->dead && !c->pending && c->in_off < c->in_len) {
		enum qmp_frame ev;

		c->in_off += qmp_framer_scan(&c->fr, c->in + c->in_off,
					     c->in_len - c->in_off, &ev);
		switch (ev) {
		case QMP_FRAME_NONE:
			break;
		case QMP_FRAME_MSG:
			client_handle(c);
			break;
		case QMP_FRAME_TOO_BIG:
		case QMP_FRAME_TOO_DEEP:
		case QMP_FRAME_BAD_CHAR:
			client_send_error(c, NULL, QMPD_GENERIC,
					  qmp_frame_desc(ev, QMPD_MAX_MSG));
			break;
		}
	}
	c->busy--;
	if (c->dead) {
		client_kill(c);
		return;
	}
	if (c->eof && !c->pending && c->in_off == c->in_len &&
	    c->out_off == c->out_len) {
		/* A partial message at EOF is dropped, as QEMU does. */
		client_kill(c);
		return;
	}
	client_update_events(c);
}

static void
on_client(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct qmpd_client *c = arg;
	(void)l;

	c->busy++;
	if ((ev & LOOP_OUT) && client_flush(c))
		client_update_events(c);
	if (!c->dead && (ev & LOOP_IN) && c->in_off == c->in_len) {
		ssize_t n = read(fd, c->in, sizeof(c->in));

		if (n > 0) {
			c->in_off = 0;
			c->in_len = (size_t)n;
		} else if (n == 0) {
			c->eof = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			client_kill(c);
		}
	} else if (!c->dead && (ev & (LOOP_HUP | LOOP_ERR))) {
		/* Gone while we were not reading (a request pending). */
		client_kill(c);
	}
	c->busy--;
	if (c->dead) {
		client_kill(c);
		return;
	}
	client_pump(c);
}

/* --- accepting ----------------------------------------------------------- */

static bool
peer_allowed(const struct qmpd *s, const struct ucred *cr)
{
	if (s->allow_peer)
		return s->allow_peer(cr->pid, cr->uid, cr->gid, s->ctx);
	return cr->uid == 0 || cr->uid == geteuid();
}

/* Best effort: the socket is fresh, the message small. */
static void
refuse(int fd, const char *desc)
{
	json_t *msg = qmp_error_msg(NULL, "GenericError", desc);
	size_t n;
	char *text = msg ? qmp_dump(msg, &n) : NULL;

	if (text)
		(void)send(fd, text, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(text);
	json_decref(msg);
	close(fd);
}

static void
on_accept(struct loop *l, int lfd, uint32_t ev, void *arg)
{
	struct qmpd *s = arg;
	struct qmpd_client *c;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	json_t *greeting;
	int fd;
	(void)l;
	(void)ev;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or a transient error (EMFILE...) */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
		    !peer_allowed(s, &cr)) {
			close(fd);
			continue;
		}
		if (s->nclients >= QMPD_MAX_CLIENTS) {
			refuse(fd, "too many clients");
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->s = s;
		c->fd = fd;
		c->pid = cr.pid;
		c->uid = cr.uid;
		c->gid = cr.gid;
		c->want = LOOP_IN;
		snap_trace("control fd %d: client pid %d uid %u", fd, (int)cr.pid,
			   (unsigned)cr.uid);
		qmp_framer_init(&c->fr, QMPD_MAX_MSG);
		if (loop_watch_fd(s->loop, fd, LOOP_IN, on_client, c, &c->w) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = s->clients;
		if (s->clients)
			s->clients->prev = c;
		s->clients = c;
		s->nclients++;
		greeting = json_pack("{s:{s:O,s:[]}}", "QMP", "version",
				     s->version, "capabilities");
		if (!greeting) {
			client_kill(c);
			continue;
		}
		client_send(c, greeting);
		json_decref(greeting);
	}
}

/* --- the server ---------------------------------------------------------- */

/*
 * Remove a socket left by a daemon that died; refuse to touch a live one
 * or anything that is not a socket.
 */
static int
clear_stale(const char *path, const struct sockaddr_un *sa,
	    struct snap_err *err)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		return snap_err_set(err, rc, 0, "cannot inspect socket '%s': %s",
				    path, snap_strerror(rc));
	}
	if (!S_ISSOCK(st.st_mode))
		return snap_err_set(err, -EEXIST, 0, "cannot create socket "
				    "'%s': a file that is not a socket is in "
				    "the way", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		return snap_err_set(err, rc, 0, "cannot create socket: %s",
				    snap_strerror(rc));
	}
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		return snap_err_set(err, -EADDRINUSE, 0, "socket '%s' is in "
				    "use: another daemon is listening on it",
				    path);
	}
	close(fd);
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		return snap_err_set(err, rc, 0, "cannot remove stale socket "
				    "'%s': %s", path, snap_strerror(rc));
	}
	return 0;
}

int
qmpd_new(struct loop *l, const struct qmpd_config *cfg, struct qmpd **out,
	 struct snap_err *err)
{
	struct sockaddr_un sa;
	struct stat st;
	struct qmpd *s;
	int rc;

	if (!cfg || !cfg->socket_path || !cfg->version)
		return snap_err_set(err, -EINVAL, 0, "invalid qmpd config");
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (snap_strlcpy(sa.sun_path, cfg->socket_path, sizeof(sa.sun_path)) >=
	    sizeof(sa.sun_path))
		return snap_err_set(err, -ENAMETOOLONG, 0, "socket path '%s' "
				    "is too long", cfg->socket_path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->lfd = -1;
	s->commands = cfg->commands;
	s->ctx = cfg->ctx;
	s->allow_peer = cfg->allow_peer;
	s->version = json_incref(cfg->version);
	s->path = strdup(cfg->socket_path);
	if (!s->path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = clear_stale(s->path, &sa, err);
	if (rc < 0)
		goto out;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		rc = -errno;
		snap_err_set(err, rc, 0, "cannot create socket: %s",
			     snap_strerror(rc));
		goto out;
	}
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snap_err_set(err, rc, 0, "cannot bind socket '%s': %s", s->path,
			     snap_strerror(rc));
		goto out;
	}
	/*
	 * bind() honours the umask; the mode is tightened right after. The
	 * peer credential check closes the short window in between.
	 */
	if (chmod(s->path, 0600) < 0 || stat(s->path, &st) < 0) {
		rc = -errno;
		snap_err_set(err, rc, 0, "cannot set mode of socket '%s': %s",
			     s->path, snap_strerror(rc));
		unlink(s->path);
		goto out;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (listen(s->lfd, 16) < 0) {
		rc = -errno;
		snap_err_set(err, rc, 0, "cannot listen on socket '%s': %s",
			     s->path, snap_strerror(rc));
		unlink(s->path);
		goto out;
	}
	rc = loop_watch_fd(l, s->lfd, LOOP_IN, on_accept, s, &s->lw);
	if (rc < 0) {
		snap_err_set(err, rc, 0, "cannot watch socket '%s': %s",
			     s->path, snap_strerror(rc));
		unlink(s->path);
		goto out;
	}
	*out = s;
	return 0;
out:
	if (s->lfd >= 0)
		close(s->lfd);
	json_decref(s->version);
	free(s->path);
	free(s);
	return rc;
}

void
qmpd_free(struct qmpd *s)
{
	struct stat st;

	if (!s)
		return;
	while (s->clients) {
		/* Not called from our own callbacks: nothing is busy. */
		s->clients->busy = 0;
		client_kill(s->clients);
	}
	while (s->reqs) {
		struct qmpd_req *req = s->reqs;
		s->reqs = req->next;
		json_decref(req->id);
		free(req);
	}
	loop_unwatch(s->loop, s->lw);
	close(s->lfd);
	/* Only our own socket: another daemon may have replaced it. */
	if (stat(s->path, &st) == 0 && st.st_dev == s->dev &&
	    st.st_ino == s->ino)
		unlink(s->path);
	json_decref(s->version);
	free(s->path);
	free(s);
}

void
qmpd_event(struct qmpd *s, const char *name, json_t *data)
{
	struct qmpd_client *c, *next;
	struct timespec ts;
	json_t *msg;
	size_t n;
	char *text;

	clock_gettime(CLOCK_REALTIME, &ts);
	msg = json_pack("{s:{s:I,s:I},s:s}", "timestamp",
			"seconds", (json_int_t)ts.tv_sec,
			"microseconds", (json_int_t)(ts.tv_nsec / 1000),
			"event", name);
	if (msg && data && json_object_set(msg, "data", data) < 0) {
		json_decref(msg);
		msg = NULL;
	}
	json_decref(data);
	text = msg ? qmp_dump(msg, &n) : NULL;
	json_decref(msg);
	if (!text)
		return;
	for (c = s->clients; c; c = next) {
		next = c->next;
		if (c->negotiated && !c->dead)
			client_queue(c, text, n);
	}
	free(text);
}

unsigned
qmpd_client_count(const struct qmpd *s)
{
	return s->nclients;
}
