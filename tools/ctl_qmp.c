/*
 * tools/ctl_qmp.c: snapctl's blocking QMP client for snapd's control socket.
 *
 * One request at a time: send it, read messages until the reply with our id
 * arrives, queueing the events that come meanwhile for ctl_qmp_event().
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "common/util.h"
#include "tools/ctl_daemon.h"

#define CTL_MAX_MSG (16u << 20)
#define CTL_MAX_QUEUE 4096

struct ctl_qmp {
	int fd;
	char *buf;
	size_t len, cap;
	json_t *events;         /* queued events, oldest first */
	long long next_id;
};

/* Read until a whole JSON object is buffered; return it (or NULL + errno). */
static json_t *
read_msg(struct ctl_qmp *c, int timeout_ms, char *err, size_t errlen)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (nl != NULL) {
			size_t line = (size_t)(nl - c->buf) + 1;
			json_error_t je;
			json_t *j = json_loadb(c->buf, line, 0, &je);

			memmove(c->buf, c->buf + line, c->len - line);
			c->len -= line;
			if (j == NULL) {
				snprintf(err, errlen, "snapd sent malformed JSON: %s",
					 je.text);
				errno = EPROTO;
				return NULL;
			}
			return j;
		}
		if (c->len == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 65536;
			char *nb;

			if (ncap > CTL_MAX_MSG) {
				snprintf(err, errlen, "snapd sent an oversized message");
				errno = EPROTO;
				return NULL;
			}
			nb = realloc(c->buf, ncap);
			if (nb == NULL) {
				snprintf(err, errlen, "out of memory");
				errno = ENOMEM;
				return NULL;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		r = poll(&p, 1, timeout_ms);
		if (r == 0) {
			snprintf(err, errlen, "snapd did not answer in time");
			errno = ETIMEDOUT;
			return NULL;
		}
		if (r < 0 && errno == EINTR)
			continue;
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "snapd closed the connection");
			errno = ECONNRESET;
			return NULL;
		}
		c->len += (size_t)n;
	}
}

int
ctl_qmp_open(const char *path, struct ctl_qmp **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl_qmp *c;
	json_t *greet, *ret = NULL;
	int rc;

	if (snap_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) >=
	    sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->events = json_array();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot connect to snapd at '%s': %s", path,
			 strerror(errno));
		ctl_qmp_close(c);
		return rc;
	}
	greet = read_msg(c, 10000, err, errlen);
	if (greet == NULL || json_object_get(greet, "QMP") == NULL) {
		if (greet != NULL)
			snprintf(err, errlen, "'%s' does not speak QMP", path);
		json_decref(greet);
		ctl_qmp_close(c);
		return -EPROTO;
	}
	json_decref(greet);
	rc = ctl_qmp_exec(c, "qmp_capabilities", NULL, &ret, err, errlen);
	json_decref(ret);
	if (rc < 0) {
		ctl_qmp_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
ctl_qmp_close(struct ctl_qmp *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	json_decref(c->events);
	free(c);
}

int
ctl_qmp_exec(struct ctl_qmp *c, const char *cmd, json_t *args, json_t **ret,
	     char *err, size_t errlen)
{
	long long id = ++c->next_id;
	json_t *req = json_pack("{s:s, s:I}", "execute", cmd, "id",
				(json_int_t)id);
	char *text;
	int rc;

	if (req == NULL) {
		json_decref(args);
		return -ENOMEM;
	}
	if (args != NULL)
		json_object_set_new(req, "arguments", args);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (text == NULL)
		return -ENOMEM;
	rc = snap_write_full(c->fd, text, strlen(text));
	if (rc == 0)
		rc = snap_write_full(c->fd, "\n", 1);
	free(text);
	if (rc < 0) {
		snprintf(err, errlen, "cannot send to snapd: %s", snap_strerror(rc));
		return rc;
	}
	for (;;) {
		json_t *m = read_msg(c, 600000, err, errlen), *e;

		if (m == NULL)
			return -errno;
		if (json_object_get(m, "event") != NULL) {
			if (json_array_size(c->events) < CTL_MAX_QUEUE)
				json_array_append(c->events, m);
			json_decref(m);
			continue;
		}
		/* An error without an id is snapd refusing our bytes as a
		 * whole (framing, size): the answer to this request. */
		if (json_integer_value(json_object_get(m, "id")) != id &&
		    (json_object_get(m, "id") != NULL ||
		     json_object_get(m, "error") == NULL)) {
			json_decref(m);
			continue;
		}
		e = json_object_get(m, "error");
		if (e != NULL) {
			const char *desc = json_string_value(json_object_get(e,
								     "desc"));
			snprintf(err, errlen, "%s", desc != NULL ? desc :
				 "snapd reported an error");
			json_decref(m);
			return SNAP_EQEMU;
		}
		if (ret != NULL)
			*ret = json_incref(json_object_get(m, "return"));
		json_decref(m);
		return 0;
	}
}

int
ctl_qmp_event(struct ctl_qmp *c, int timeout_ms, json_t **ev, char *err,
	      size_t errlen)
{
	json_t *m;

	if (json_array_size(c->events) > 0) {
		*ev = json_incref(json_array_get(c->events, 0));
		json_array_remove(c->events, 0);
		return 0;
	}
	for (;;) {
		m = read_msg(c, timeout_ms, err, errlen);
		if (m == NULL)
			return -errno;
		if (json_object_get(m, "event") != NULL) {
			*ev = m;
			return 0;
		}
		json_decref(m);
	}
}
