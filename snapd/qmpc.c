/*
 * snapd/qmpc.c: the asynchronous QMP client behind snapd/qmpc.h, one per
 * QEMU monitor socket.
 *
 * States, in order; only forward moves:
 *
 *   greeting    waiting for {"QMP": ...}; nothing is sent
 *   negotiating qmp_capabilities sent first; user commands wait queued
 *   ready       user commands flow; the state callback said 0
 *   ended       socket closed; every callback fired ("Disconnected"),
 *               then the state callback with the reason
 *
 * Commands carry "id": N (a counter). QEMU answers in-band commands in
 * order, so replies are matched to the oldest command sent, and a reply
 * whose id differs means the stream cannot be trusted: -EPROTO.
 *
 * An fd to pass goes with the first sendmsg() of its command's bytes
 * (SCM_RIGHTS), which is how QEMU's getfd/add-fd expect it: the fd is
 * attached to the bytes it arrives with.
 *
 * Callbacks may free the handle: memory is released only when no function
 * of this file is on the stack for it (the busy count), and no further
 * callback is made once it was freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/qmpc.h"
#include "snapd/qmpwire_int.h"

#define QMPC_READ_CHUNK 65536

enum qmpc_state {
	QMPC_GREETING,
	QMPC_NEGOTIATING,
	QMPC_READY,
	QMPC_ENDED,
};

struct qmpc_cmd {
	struct qmpc_cmd *next;
	char *buf;
	size_t len, off;
	int fd;              /* our dup, until it went out with the bytes */
	json_int_t id;
	bool internal;       /* the qmp_capabilities we send ourselves */
	qmpc_reply_fn fn;
	void *arg;
};

struct cmdq {
	struct qmpc_cmd *head, *tail;
};

struct qmpc {
	struct loop *l;
	int fd;
	struct loop_watch *w;
	uint32_t want;
	enum qmpc_state state;
	qmpc_event_fn on_event;
	qmpc_state_fn on_state;
	void *arg;
	json_t *greeting;
	struct qmp_framer fr;
	struct cmdq sendq;   /* not completely written yet */
	struct cmdq waitq;   /* written, reply outstanding */
	json_int_t next_id;
	unsigned busy;
	bool freed;
	char name[64];      /* for trace messages */
	char in[QMPC_READ_CHUNK];
};

static void
q_push(struct cmdq *q, struct qmpc_cmd *cmd)
{
	cmd->next = NULL;
	if (q->tail)
		q->tail->next = cmd;
	else
		q->head = cmd;
	q->tail = cmd;
}

static struct qmpc_cmd *
q_pop(struct cmdq *q)
{
	struct qmpc_cmd *cmd = q->head;

	if (cmd) {
		q->head = cmd->next;
		if (!q->head)
			q->tail = NULL;
	}
	return cmd;
}

static void
cmd_free(struct qmpc_cmd *cmd)
{
	if (cmd->fd >= 0)
		close(cmd->fd);
	free(cmd->buf);
	free(cmd);
}

static void
release(struct qmpc *c)
{
	struct qmpc_cmd *cmd;

	while ((cmd = q_pop(&c->sendq)))
		cmd_free(cmd);
	while ((cmd = q_pop(&c->waitq)))
		cmd_free(cmd);
	qmp_framer_release(&c->fr);
	json_decref(c->greeting);
	free(c);
}

static void
close_socket(struct qmpc *c)
{
	loop_unwatch(c->l, c->w);
	c->w = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Leave a busy section; true if the handle is gone (freed meanwhile). */
static bool
leave(struct qmpc *c)
{
	if (--c->busy == 0 && c->freed) {
		release(c);
		return true;
	}
	return c->freed;
}

/*
 * The connection ended: close it, answer every outstanding command with
 * "Disconnected" in the order they were queued, then report @status.
 */
static void
end(struct qmpc *c, int status)
{
	struct qmpc_cmd *cmd;
	const char *desc;

	if (c->state == QMPC_ENDED)
		return;
	c->state = QMPC_ENDED;
	close_socket(c);
	desc = status == -EPROTO ? "QEMU broke the QMP protocol" :
	       "connection to QEMU closed";
	c->busy++;
	for (;;) {
		cmd = q_pop(&c->waitq);
		if (!cmd)
			cmd = q_pop(&c->sendq);
		if (!cmd)
			break;
		if (cmd->fn && !cmd->internal && !c->freed)
			cmd->fn(c, NULL, "Disconnected", desc, cmd->arg);
		cmd_free(cmd);
	}
	if (!c->freed && c->on_state)
		c->on_state(c, status, c->arg);
	leave(c);
}

static void
update_events(struct qmpc *c)
{
	uint32_t want = LOOP_IN;
	struct qmpc_cmd *h = c->sendq.head;

	if (c->state == QMPC_ENDED)
		return;
	if (h && (h->internal || c->state == QMPC_READY))
		want |= LOOP_OUT;
	if (want != c->want && loop_watch_modify(c->l, c->w, want) == 0)
		c->want = want;
}

/* snapd -vv: one message to or from QEMU. */
static void
trace_msg(const struct qmpc *c, const char *dir, const char *p, size_t n)
{
	char who[96];

	if (!snap_log_enabled(SNAP_LOG_TRACE))
		return;
	snprintf(who, sizeof(who), "qemu '%s' %s", c->name, dir);
	snap_trace_msg(who, p, n);
}

/* Write queued commands; user commands only once negotiated. */
static void
flush(struct qmpc *c)
{
	struct qmpc_cmd *cmd;

	while ((cmd = c->sendq.head) &&
	       (cmd->internal || c->state == QMPC_READY)) {
		struct iovec iov = { cmd->buf + cmd->off, cmd->len - cmd->off };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr mh;
		ssize_t n;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (cmd->fd >= 0) {
			struct cmsghdr *cm;

			memset(&u, 0, sizeof(u));
			mh.msg_control = u.buf;
			mh.msg_controllen = sizeof(u.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &cmd->fd, sizeof(int));
		}
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0 && cmd->off == 0)
			trace_msg(c, "->", cmd->buf, cmd->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			end(c, -errno);
			return;
		}
		if (cmd->fd >= 0) {
			/* QEMU holds its own copy now. */
			close(cmd->fd);
			cmd->fd = -1;
		}
		cmd->off += (size_t)n;
		if (cmd->off < cmd->len)
			break;
		q_pop(&c->sendq);
		free(cmd->buf);
		cmd->buf = NULL;
		q_push(&c->waitq, cmd);
	}
	update_events(c);
}

/* Build a command; @args is stolen. Returns 0 and *out, or -errno. */
static int
cmd_new(struct qmpc *c, const char *command, json_t *args, int fd,
	struct qmpc_cmd **out)
{
	struct qmpc_cmd *cmd = calloc(1, sizeof(*cmd));
	json_t *msg;
	int rc = -ENOMEM;

	if (!cmd) {
		json_decref(args);
		return -ENOMEM;
	}
	cmd->fd = -1;
	cmd->id = c->next_id++;
	msg = json_pack("{s:s,s:I}", "execute", command, "id", cmd->id);
	if (msg && args && json_object_set(msg, "arguments", args) < 0) {
		json_decref(msg);
		msg = NULL;
	}
	json_decref(args);
	if (msg)
		cmd->buf = qmp_dump(msg, &cmd->len);
	json_decref(msg);
	if (!cmd->buf)
		goto out;
	if (fd >= 0) {
		cmd->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (cmd->fd < 0) {
			rc = -errno;
			goto out;
		}
	}
	*out = cmd;
	return 0;
out:
	cmd_free(cmd);
	return rc;
}

int
qmpc_exec(struct qmpc *c, const char *command, json_t *args, int fd,
	  qmpc_reply_fn fn, void *arg)
{
	struct qmpc_cmd *cmd;
	int rc;

	if (c->state == QMPC_ENDED || c->freed) {
		json_decref(args);
		return -ENOTCONN;
	}
	rc = cmd_new(c, command, args, fd, &cmd);
	if (rc < 0)
		return rc;
	cmd->fn = fn;
	cmd->arg = arg;
	q_push(&c->sendq, cmd);
	/* Written from the loop, so a write error never calls back into
	 * our caller from inside this function. */
	update_events(c);
	return 0;
}

json_t *
qmpc_greeting(const struct qmpc *c)
{
	return c->greeting;
}

/* --- input --------------------------------------------------------------- */

static void
on_greeting(struct qmpc *c, json_t *msg)
{
	json_t *qmp = json_object_get(msg, "QMP");
	struct qmpc_cmd *cmd;

	if (!json_is_object(qmp)) {
		end(c, -EPROTO);
		return;
	}
	c->greeting = json_incref(qmp);
	if (cmd_new(c, "qmp_capabilities", NULL, -1, &cmd) < 0) {
		end(c, -ENOMEM);
		return;
	}
	cmd->internal = true;
	/* Ahead of anything the owner queued already. */
	cmd->next = c->sendq.head;
	c->sendq.head = cmd;
	if (!c->sendq.tail)
		c->sendq.tail = cmd;
	c->state = QMPC_NEGOTIATING;
	flush(c);
}

static void
on_reply(struct qmpc *c, json_t *msg)
{
	struct qmpc_cmd *cmd = c->waitq.head;
	json_t *ret = json_object_get(msg, "return");
	json_t *err = json_object_get(msg, "error");
	json_t *id = json_object_get(msg, "id");
	const char *cls = NULL, *desc = NULL;

	if (!cmd || !json_is_integer(id) || json_integer_value(id) != cmd->id) {
		end(c, -EPROTO);
		return;
	}
	if (!ret) {
		cls = json_string_value(json_object_get(err, "class"));
		desc = json_string_value(json_object_get(err, "desc"));
		if (!cls || !desc) {
			end(c, -EPROTO);
			return;
		}
	}
	q_pop(&c->waitq);
	if (cmd->internal) {
		cmd_free(cmd);
		if (!ret) {
			end(c, -EPROTO);
			return;
		}
		c->state = QMPC_READY;
		if (c->on_state)
			c->on_state(c, 0, c->arg);
		if (!c->freed)
			flush(c);
		return;
	}
	if (cmd->fn)
		cmd->fn(c, ret, cls, desc, cmd->arg);
	cmd_free(cmd);
}

static void
on_event(struct qmpc *c, json_t *msg)
{
	const char *name = json_string_value(json_object_get(msg, "event"));
	json_t *data = json_object_get(msg, "data");
	json_t *ts = json_object_get(msg, "timestamp");
	json_int_t sec = json_integer_value(json_object_get(ts, "seconds"));
	json_int_t usec = json_integer_value(json_object_get(ts, "microseconds"));
	unsigned long long ts_us = 0;

	if (!name) {
		end(c, -EPROTO);
		return;
	}
	/* QEMU stamps events it could not time with -1: report 0. */
	if (sec > 0 && usec >= 0)
		ts_us = (unsigned long long)sec * 1000000ull +
			(unsigned long long)usec;
	if (c->on_event)
		c->on_event(c, name, data, ts_us, c->arg);
}

static void
on_message(struct qmpc *c, const char *buf, size_t len)
{
	json_t *msg;

	trace_msg(c, "<-", buf, len);
	msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(msg))
		end(c, -EPROTO);
	else if (c->state == QMPC_GREETING)
		on_greeting(c, msg);
	else if (json_object_get(msg, "event"))
		on_event(c, msg);
	else if (json_object_get(msg, "return") || json_object_get(msg, "error"))
		on_reply(c, msg);
	else
		end(c, -EPROTO);
	json_decref(msg);
}

static void
on_io(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct qmpc *c = arg;
	(void)l;

	c->busy++;
	if (ev & LOOP_OUT)
		flush(c);
	if ((ev & (LOOP_IN | LOOP_HUP | LOOP_ERR)) && c->state != QMPC_ENDED) {
		ssize_t n = read(fd, c->in, sizeof(c->in));
		size_t off = 0;

		if (n == 0) {
			end(c, -ECONNRESET);
		} else if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				end(c, -errno);
		}
		while (n > 0 && off < (size_t)n && c->state != QMPC_ENDED &&
		       !c->freed) {
			enum qmp_frame fe;

			off += qmp_framer_scan(&c->fr, c->in + off, (size_t)n - off,
					       &fe);
			if (fe == QMP_FRAME_MSG)
				on_message(c, c->fr.buf, c->fr.len);
			else if (fe != QMP_FRAME_NONE)
				end(c, -EPROTO);
		}
	}
	if (!leave(c))
		update_events(c);
}

int
qmpc_new(struct loop *l, int fd, qmpc_event_fn on_event_fn,
	 qmpc_state_fn on_state_fn, void *arg, struct qmpc **out)
{
	struct qmpc *c;
	int fl, rc;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->l = l;
	c->fd = fd;
	c->on_event = on_event_fn;
	c->on_state = on_state_fn;
	c->arg = arg;
	c->next_id = 1;
	c->want = LOOP_IN;
	qmp_framer_init(&c->fr, QMPC_MAX_MSG);
	rc = loop_watch_fd(l, fd, LOOP_IN, on_io, c, &c->w);
	if (rc < 0) {
		close(fd);
		qmp_framer_release(&c->fr);
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
qmpc_set_name(struct qmpc *c, const char *name)
{
	snap_strlcpy(c->name, name, sizeof(c->name));
}

void
qmpc_free(struct qmpc *c)
{
	if (!c || c->freed)
		return;
	c->freed = true;
	close_socket(c);
	if (c->busy == 0)
		release(c);
}
