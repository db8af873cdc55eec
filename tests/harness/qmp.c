/*
 * tests/harness/qmp.c: a minimal blocking QMP client for tests. It reads
 * the greeting, negotiates capabilities, runs commands (optionally passing
 * a file descriptor with SCM_RIGHTS), and queues every event it reads so a
 * test can wait for one later. One message per line, as QEMU sends them.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "tests/harness/harness.h"

#define QMP_LINE_MAX	(16u << 20)

struct hn_qmp {
	int fd;
	char *buf;		/* bytes read but not yet parsed */
	size_t len, cap;
	json_t *events;		/* array of queued events */
	int64_t next_id;
	int timeout_ms;
	char err[512];
};

static int
qmp_fail(struct hn_qmp *m, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
qmp_fail(struct hn_qmp *m, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	return rc;
}

static int
remaining_ms(uint64_t deadline)
{
	uint64_t now = snap_now_mono_ns();

	if (now >= deadline)
		return 0;
	return (int)SNAP_MIN((deadline - now) / 1000000 + 1, (uint64_t)INT32_MAX);
}

/* Read one message (a JSON object on one line), waiting until @deadline. */
static int
qmp_read(struct hn_qmp *m, uint64_t deadline, json_t **out)
{
	for (;;) {
		char *nl = m->len ? memchr(m->buf, '\n', m->len) : NULL;

		if (nl) {
			size_t n = (size_t)(nl - m->buf) + 1;
			json_error_t jerr;
			json_t *msg = json_loadb(m->buf, n, 0, &jerr);

			memmove(m->buf, m->buf + n, m->len - n);
			m->len -= n;
			if (!msg || !json_is_object(msg)) {
				json_decref(msg);
				return qmp_fail(m, SNAP_EPROTO,
						"bad qmp message: %s", jerr.text);
			}
			*out = msg;
			return 0;
		}
		if (m->len == m->cap) {
			size_t cap = m->cap ? m->cap * 2 : 65536;
			char *nb;

			if (cap > QMP_LINE_MAX)
				return qmp_fail(m, SNAP_ELIMIT,
						"qmp message too long");
			nb = realloc(m->buf, cap);
			if (!nb)
				return qmp_fail(m, -ENOMEM, "out of memory");
			m->buf = nb;
			m->cap = cap;
		}
		struct pollfd pfd = { .fd = m->fd, .events = POLLIN };
		int t = remaining_ms(deadline);
		int prc = poll(&pfd, 1, t);

		if (prc < 0 && errno == EINTR)
			continue;
		if (prc < 0)
			return qmp_fail(m, -errno, "poll on qmp failed: %s",
					strerror(errno));
		if (prc == 0)
			return qmp_fail(m, -ETIMEDOUT, "no qmp message in time");
		ssize_t r = read(m->fd, m->buf + m->len, m->cap - m->len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return qmp_fail(m, -errno, "cannot read qmp: %s",
					strerror(errno));
		if (r == 0)
			return qmp_fail(m, -ECONNRESET, "qmp connection closed");
		m->len += (size_t)r;
	}
}

static int
qmp_send(struct hn_qmp *m, json_t *msg, int fd)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	size_t n;
	int rc = 0;

	if (!text)
		return qmp_fail(m, -ENOMEM, "cannot encode qmp command");
	n = strlen(text);
	text[n] = '\n';		/* json_dumps leaves the NUL; reuse it */
	if (fd < 0) {
		rc = snap_write_full(m->fd, text, n + 1);
	} else {
		char cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = text, .iov_len = n + 1 };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		struct cmsghdr *c;
		ssize_t w;

		memset(cbuf, 0, sizeof(cbuf));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
		do {
			w = sendmsg(m->fd, &mh, MSG_NOSIGNAL);
		} while (w < 0 && errno == EINTR);
		if (w < 0)
			rc = -errno;
		else if ((size_t)w != n + 1)	/* the rest without the fd */
			rc = snap_write_full(m->fd, text + w, n + 1 - (size_t)w);
	}
	free(text);
	if (rc < 0)
		return qmp_fail(m, rc, "cannot send qmp command: %s",
				snap_strerror(rc));
	return 0;
}

static int
qmp_exec_common(struct hn_qmp *m, const char *cmd, json_t *args, int fd,
		json_t **ret)
{
	uint64_t deadline = snap_now_mono_ns() +
			    (uint64_t)m->timeout_ms * 1000000;
	int64_t id = m->next_id++;
	json_t *msg = json_pack("{s:s, s:I}", "execute", cmd, "id", (json_int_t)id);
	int rc;

	if (!msg) {
		json_decref(args);
		return qmp_fail(m, -ENOMEM, "cannot build qmp command");
	}
	if (args && json_object_set_new(msg, "arguments", args) < 0) {
		json_decref(msg);
		return qmp_fail(m, -ENOMEM, "cannot build qmp command");
	}
	rc = qmp_send(m, msg, fd);
	json_decref(msg);
	if (rc < 0)
		return rc;
	for (;;) {
		json_t *reply = NULL, *rid, *val, *err;

		rc = qmp_read(m, deadline, &reply);
		if (rc < 0)
			return rc == -ETIMEDOUT ?
				qmp_fail(m, rc, "no reply to qmp '%s'", cmd) : rc;
		if (json_object_get(reply, "event")) {
			json_array_append_new(m->events, reply);
			continue;
		}
		rid = json_object_get(reply, "id");
		/* A reply without id is a parse error that concerns us. */
		if (rid && (!json_is_integer(rid) ||
			    json_integer_value(rid) != id)) {
			json_decref(reply);
			continue;
		}
		err = json_object_get(reply, "error");
		if (err) {
			rc = qmp_fail(m, SNAP_EQEMU, "qmp '%s' failed: %s: %s",
				      cmd, json_string_value(
					json_object_get(err, "class")),
				      json_string_value(
					json_object_get(err, "desc")));
			json_decref(reply);
			return rc;
		}
		val = json_object_get(reply, "return");
		if (!val) {
			json_decref(reply);
			return qmp_fail(m, SNAP_EPROTO,
					"qmp reply to '%s' has no return", cmd);
		}
		if (ret)
			*ret = json_incref(val);
		json_decref(reply);
		return 0;
	}
}

int
hn_qmp_connect(const char *path, int timeout_ms, struct hn_qmp **out)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct hn_qmp *m;
	json_t *greeting = NULL;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snap_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fd = -1;
	m->next_id = 1;
	m->timeout_ms = 60000;
	m->events = json_array();
	if (!m->events) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		m->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (m->fd < 0) {
			rc = -errno;
			goto out;
		}
		if (connect(m->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		rc = -errno;
		close(m->fd);
		m->fd = -1;
		if ((rc != -ENOENT && rc != -ECONNREFUSED) ||
		    snap_now_mono_ns() >= deadline)
			goto out;
		usleep(10000);
	}
	/* Once connected, a busy QEMU may take a while to greet us. */
	deadline = snap_now_mono_ns() + (uint64_t)m->timeout_ms * 1000000;
	rc = qmp_read(m, deadline, &greeting);
	if (rc < 0)
		goto out;
	if (!json_object_get(greeting, "QMP")) {
		rc = SNAP_EPROTO;
		goto out;
	}
	rc = hn_qmp_exec(m, "qmp_capabilities", NULL, NULL);
	if (rc < 0)
		goto out;
	*out = m;
	m = NULL;
out:
	json_decref(greeting);
	hn_qmp_free(m);
	return rc;
}

void
hn_qmp_free(struct hn_qmp *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	json_decref(m->events);
	free(m->buf);
	free(m);
}

void
hn_qmp_set_timeout(struct hn_qmp *m, int timeout_ms)
{
	m->timeout_ms = timeout_ms;
}

int
hn_qmp_exec(struct hn_qmp *m, const char *cmd, json_t *args, json_t **ret)
{
	return qmp_exec_common(m, cmd, args, -1, ret);
}

int
hn_qmp_exec_fd(struct hn_qmp *m, const char *cmd, json_t *args, int fd,
	       json_t **ret)
{
	return qmp_exec_common(m, cmd, args, fd, ret);
}

int
hn_qmp_execf(struct hn_qmp *m, json_t **ret, const char *cmd,
	     const char *fmt, ...)
{
	json_t *args = NULL;
	json_error_t jerr;
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		args = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
		if (!args)
			return qmp_fail(m, -EINVAL, "bad arguments for '%s': %s",
					cmd, jerr.text);
	}
	return hn_qmp_exec(m, cmd, args, ret);
}

int
hn_qmp_getfd(struct hn_qmp *m, int fd, const char *name)
{
	json_t *args = json_pack("{s:s}", "fdname", name);

	if (!args)
		return qmp_fail(m, -ENOMEM, "cannot build getfd");
	return hn_qmp_exec_fd(m, "getfd", args, fd, NULL);
}

static bool
event_is(json_t *ev, const char *name)
{
	const char *n = json_string_value(json_object_get(ev, "event"));

	return n && (!name || strcmp(n, name) == 0);
}

/* Does @ev carry data.vm == @vm (any event when @vm is NULL)? */
static bool
event_of(json_t *ev, const char *vm)
{
	const char *v = json_string_value(json_object_get(
		json_object_get(ev, "data"), "vm"));

	return vm == NULL || (v != NULL && strcmp(v, vm) == 0);
}

int
hn_qmp_wait_event(struct hn_qmp *m, const char *name, int timeout_ms,
		  json_t **event)
{
	return hn_qmp_wait_event_vm(m, name, NULL, timeout_ms, event);
}

int
hn_qmp_wait_event_vm(struct hn_qmp *m, const char *name, const char *vm,
		     int timeout_ms, json_t **event)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		size_t i;
		json_t *ev;
		int rc;

		json_array_foreach(m->events, i, ev) {
			if (!event_is(ev, name) || !event_of(ev, vm))
				continue;
			if (event)
				*event = json_incref(ev);
			json_array_remove(m->events, i);
			return 0;
		}
		rc = qmp_read(m, deadline, &ev);
		if (rc < 0)
			return rc == -ETIMEDOUT ?
				qmp_fail(m, rc, "no event '%s' in time", name) :
				rc;
		if (json_object_get(ev, "event"))
			json_array_append_new(m->events, ev);
		else
			json_decref(ev);	/* a stray reply */
	}
}

size_t
hn_qmp_event_count(const struct hn_qmp *m, const char *name)
{
	size_t i, n = 0;
	json_t *ev;

	json_array_foreach(m->events, i, ev)
		n += event_is(ev, name);
	return n;
}

const char *
hn_qmp_error(const struct hn_qmp *m)
{
	return m->err[0] ? m->err : "no error";
}
