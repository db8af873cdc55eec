/*
 * snapd/vncproxy.c: the per-guest VNC endpoint and its clients: the RFB
 * server handshake toward each client, one RFB client session per client
 * toward its current upstream (QEMU's private socket or another snapd),
 * the state replayed on each new upstream, the bounded wait while there is
 * none, and the hand-over recorded by client_migrate_info. The rules are
 * in vncproxy.h; framing and encodings in rfb.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/daemon.h"
#include "snapd/rfb.h"
#include "snapd/vncproxy.h"

#define MAX_HELD_KEYS   32
#define MAX_CLIENT_IN   (2u << 20)
#define READ_CHUNK      65536
#define ATTACH_RETRIES  5
#define ATTACH_RETRY_MS 50

struct buf {
	uint8_t *p;
	size_t len, cap;
};

enum cstate {
	C_VERSION,       /* waiting for the client's ProtocolVersion */
	C_SECTYPE,       /* 3.7/3.8: waiting for its security type */
	C_AUTH,          /* waiting for the VNC auth response */
	C_INIT,          /* waiting for ClientInit */
	C_NOSIZE,        /* ClientInit read, no framebuffer size known yet */
	C_NORMAL,        /* ServerInit sent */
	C_CLOSING,       /* flushing a failure reason, then closed */
};

enum ustate {
	U_NONE,
	U_CONNECTING,
	U_VERSION,
	U_SECTYPES,
	U_AUTH,
	U_SECRESULT,
	U_INIT,
	U_READY,
};

struct held_key {
	uint32_t keysym;
	uint32_t keycode;    /* QEMU extended key event; 0 when plain */
};

struct client {
	struct client *next;
	struct vncproxy *p;
	int fd;
	char peer[64];                /* "ADDR:PORT" for reports */
	struct loop_watch *w;
	struct buf in, out;
	enum cstate st;
	int minor;
	uint8_t challenge[16];
	uint16_t w_fb, h_fb;          /* size the client believes in */
	uint8_t pf_raw[16];           /* its pixel format */
	unsigned bpp;
	int32_t enc[RFB_MAX_ENCODINGS];
	size_t nenc;
	bool ext_resize, resize;      /* (Extended)DesktopSize asked for */
	struct held_key keys[MAX_HELD_KEYS];
	unsigned nkeys;
	uint8_t buttons;
	uint16_t px, py;
	struct loop_timer *hold;      /* bounded wait without upstream */

	int ufd;
	struct loop_watch *uw;
	struct buf uin, uout;
	enum ustate ust;
	bool remote;                  /* upstream is another snapd */
	unsigned ubpp;                /* pixel size upstream sends */
	bool upaused;                 /* not reading upstream: client slow */
	unsigned retries;             /* failed local attaches this round */
	struct loop_timer *retry;
	unsigned round;               /* re-pointing round it belongs to */
};

struct vncproxy {
	struct guest *g;
	struct loop *loop;
	int lfd;
	struct loop_watch *lw;
	char host[48];
	unsigned port;
	char password[SPEC_VNC_PASSWORD_MAX + 1];
	unsigned hold_s;
	char vnc_path[4200];
	struct client *clients;
	unsigned nclients;
	bool qemu_up;
	bool closing;                 /* being freed: no more events */
	uint16_t w_fb, h_fb;          /* last size an upstream reported */
	/* client_migrate_info */
	bool has_target;
	char t_host[48];
	unsigned t_port;
	char t_password[SPEC_VNC_PASSWORD_MAX + 1];
	/* the current re-pointing round */
	unsigned round;
	unsigned r_pending, r_moved, r_failed;
	char r_target[80];
	json_t *r_failures;           /* [{client, reason}] of this round */
};

static void client_close(struct client *c, const char *why);
static void upstream_drop(struct client *c);
static void client_flush(struct client *c);
static void on_upstream(struct loop *l, int fd, uint32_t ev, void *arg);

/* --- buffers ------------------------------------------------------------- */

static int
buf_add(struct buf *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *np;

		while (cap < b->len + n)
			cap *= 2;
		np = realloc(b->p, cap);
		if (np == NULL)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static void
buf_eat(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Read what is there into @b. 1: got data, 0: nothing now, <0: EOF/error. */
static int
buf_read(int fd, struct buf *b)
{
	uint8_t tmp[READ_CHUNK];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n > 0)
		return buf_add(b, tmp, (size_t)n) < 0 ? -ENOMEM : 1;
	if (n == 0)
		return -EPIPE;
	if (errno == EAGAIN || errno == EINTR)
		return 0;
	return -errno;
}

/* Write what can be written. 0 or -errno. */
static int
buf_write(int fd, struct buf *b)
{
	while (b->len > 0) {
		ssize_t n = send(fd, b->p, b->len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return 0;
			return -errno;
		}
		buf_eat(b, (size_t)n);
	}
	return 0;
}

/* --- re-pointing rounds --------------------------------------------------- */

static void
round_start(struct vncproxy *p, const char *target)
{
	p->round++;
	p->r_pending = p->r_moved = p->r_failed = 0;
	snap_strlcpy(p->r_target, target, sizeof(p->r_target));
	json_decref(p->r_failures);
	p->r_failures = NULL;
}

static void
round_end_check(struct vncproxy *p)
{
	if (p->r_pending > 0 || p->r_moved + p->r_failed == 0 || p->closing)
		return;
	qmpd_event(p->g->d->qmpd, "CLIENTS_REPOINTED",
		   json_pack("{s:s, s:s, s:i, s:i, s:o}", "vm", p->g->spec->name,
			     "target", p->r_target, "moved", (int)p->r_moved,
			     "failed", (int)p->r_failed, "failures",
			     p->r_failures ? p->r_failures : json_array()));
	snap_info("guest '%s': %u display client(s) re-pointed to %s, %u "
		  "failed", p->g->spec->name, p->r_moved, p->r_target,
		  p->r_failed);
	p->r_failures = NULL;
	p->r_moved = p->r_failed = 0;
}

/* A client of the current round got its upstream, or failed (@why). */
static void
round_settle(struct client *c, bool ok, const char *why)
{
	struct vncproxy *p = c->p;

	if (c->round != p->round || c->round == 0)
		return;
	c->round = 0;
	if (p->r_pending > 0)
		p->r_pending--;
	if (ok) {
		p->r_moved++;
		return;
	}
	p->r_failed++;
	if (p->r_failures == NULL)
		p->r_failures = json_array();
	json_array_append_new(p->r_failures, json_pack("{s:s, s:s}",
			      "client", c->peer, "reason",
			      why ? why : "the client went away"));
}

/* --- the client side ------------------------------------------------------ */

static void
client_want_out(struct client *c)
{
	loop_watch_modify(c->p->loop, c->w,
			  LOOP_IN | (c->out.len > 0 ? LOOP_OUT : 0));
}

static int
client_send(struct client *c, const void *data, size_t n)
{
	if (buf_add(&c->out, data, n) < 0)
		return -ENOMEM;
	return 0;
}

static void
on_hold_expired(struct loop *l, void *arg)
{
	struct client *c = arg;

	(void)l;
	c->hold = NULL;
	client_close(c, "no display upstream within the hold time");
}

/* Start the bounded wait unless it runs already. */
static void
hold_start(struct client *c)
{
	if (c->hold == NULL)
		loop_timer_add(c->p->loop, (uint64_t)c->p->hold_s * 1000u,
			       on_hold_expired, c, &c->hold);
}

static void
hold_stop(struct client *c)
{
	loop_timer_cancel(c->p->loop, c->hold);
	c->hold = NULL;
}

static void
client_close(struct client *c, const char *why)
{
	struct vncproxy *p = c->p;
	struct client **pp;

	for (pp = &p->clients; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	p->nclients--;
	if (why != NULL)
		snap_info("guest '%s': display client closed: %s",
			  p->g->spec->name, why);
	round_settle(c, false, why);
	upstream_drop(c);
	hold_stop(c);
	loop_timer_cancel(p->loop, c->retry);
	loop_unwatch(p->loop, c->w);
	/* Best effort: what is queued (a failure reason) goes out. */
	if (c->out.len > 0)
		(void)send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL |
			   MSG_DONTWAIT);
	shutdown(c->fd, SHUT_RDWR);
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
	round_end_check(p);
}

/* Fail the handshake with a reason (3.8) or just a status (3.3, 3.7). */
static void
client_refuse(struct client *c, const char *reason)
{
	uint8_t b[4];

	snap_put_be32(b, 1);
	client_send(c, b, 4);
	if (c->minor == 8) {
		snap_put_be32(b, (uint32_t)strlen(reason));
		client_send(c, b, 4);
		client_send(c, reason, strlen(reason));
	}
	client_close(c, reason);
}

static void upstream_start(struct client *c, bool remote);

static void
send_server_init(struct client *c)
{
	const char *name = c->p->g->spec->name;
	uint8_t b[24];

	c->w_fb = c->p->w_fb;
	c->h_fb = c->p->h_fb;
	snap_put_be16(b, c->w_fb);
	snap_put_be16(b + 2, c->h_fb);
	rfb_pixfmt_put(&rfb_pixfmt_default, b + 4);
	snap_put_be32(b + 20, (uint32_t)strlen(name));
	client_send(c, b, sizeof(b));
	client_send(c, name, strlen(name));
	memcpy(c->pf_raw, b + 4, 16);
	c->bpp = rfb_pixfmt_default.bpp;
	c->st = C_NORMAL;
}

/*
 * After ClientInit. With a QEMU, ServerInit waits for the client's own
 * upstream, so it carries the current size; without one, the last size
 * seen (if any) lets the client in to wait.
 */
static void
client_ready(struct client *c)
{
	if (c->p->qemu_up) {
		c->st = C_NOSIZE;
		upstream_start(c, false);
		return;
	}
	if (c->p->w_fb == 0)
		c->st = C_NOSIZE;
	else
		send_server_init(c);
	hold_start(c);
}

static void
record_key(struct client *c, bool down, uint32_t keysym, uint32_t keycode)
{
	unsigned i;

	for (i = 0; i < c->nkeys; i++)
		if (c->keys[i].keysym == keysym && c->keys[i].keycode == keycode)
			break;
	if (down && i == c->nkeys && c->nkeys < MAX_HELD_KEYS)
		c->keys[c->nkeys++] = (struct held_key){ keysym, keycode };
	else if (!down && i < c->nkeys)
		c->keys[i] = c->keys[--c->nkeys];
}

/* SetEncodings toward an upstream, filtered. */
static int
send_encodings(struct client *c)
{
	int32_t f[RFB_MAX_ENCODINGS + 1];
	size_t n = rfb_filter_encodings(c->enc, c->nenc, f);
	uint8_t b[4 + 4 * (RFB_MAX_ENCODINGS + 1)];

	b[0] = RFB_C_SET_ENCODINGS;
	b[1] = 0;
	snap_put_be16(b + 2, (uint16_t)n);
	for (size_t i = 0; i < n; i++)
		snap_put_be32(b + 4 + 4 * i, (uint32_t)f[i]);
	return buf_add(&c->uout, b, 4 + 4 * n);
}

/* Queue @n bytes toward the upstream, if there is one ready. Returns
 * false when @c was closed. */
static bool
upstream_forward(struct client *c, const uint8_t *m, size_t n)
{
	if (c->ust != U_READY)
		return true;
	if (c->uout.len + n > MAX_CLIENT_IN) {
		client_close(c, "the display upstream does not read");
		return false;
	}
	if (n > 0 && buf_add(&c->uout, m, n) < 0) {
		client_close(c, "out of memory");
		return false;
	}
	loop_watch_modify(c->p->loop, c->uw, LOOP_OUT |
			  (c->upaused ? 0 : LOOP_IN));
	return true;
}

/* One complete client message after ServerInit. Returns false if @c was
 * closed. */
static bool
client_msg(struct client *c, const uint8_t *m, size_t n)
{
	struct rfb_pixfmt pf;

	switch (m[0]) {
	case RFB_C_SET_PIXEL_FORMAT:
		rfb_pixfmt_get(m + 4, &pf);
		if (!rfb_pixfmt_valid(&pf)) {
			client_close(c, "unsupported pixel format");
			return false;
		}
		memcpy(c->pf_raw, m + 4, 16);
		c->bpp = pf.bpp;
		/*
		 * RFB forbids changing the format with a request outstanding,
		 * so what the upstream sends next uses the new one.
		 */
		if (c->ust == U_READY)
			c->ubpp = pf.bpp;
		break;
	case RFB_C_SET_ENCODINGS:
		c->nenc = snap_get_be16(m + 2);
		c->ext_resize = c->resize = false;
		for (size_t i = 0; i < c->nenc; i++) {
			c->enc[i] = (int32_t)snap_get_be32(m + 4 + 4 * i);
			c->ext_resize |= c->enc[i] == RFB_ENC_EXT_DESKTOP_SIZE;
			c->resize |= c->enc[i] == RFB_ENC_DESKTOP_SIZE;
		}
		if (c->ust == U_READY) {
			if (send_encodings(c) < 0) {
				client_close(c, "out of memory");
				return false;
			}
			return upstream_forward(c, m, 0);
		}
		return true;
	case RFB_C_KEY:
		record_key(c, m[1] != 0, snap_get_be32(m + 4), 0);
		break;
	case RFB_C_POINTER:
		c->buttons = m[1];
		c->px = snap_get_be16(m + 2);
		c->py = snap_get_be16(m + 4);
		break;
	case RFB_C_CUT_TEXT:
		if ((int32_t)snap_get_be32(m + 4) < 0)
			return true;    /* extended clipboard: not negotiated */
		break;
	case RFB_C_QEMU:
		if (m[1] != 0)
			return true;    /* audio: never negotiated upstream */
		record_key(c, snap_get_be16(m + 2) != 0, snap_get_be32(m + 4),
			   snap_get_be32(m + 8));
		break;
	case RFB_C_CONT_UPDATES:
	case RFB_C_FENCE:
	case RFB_C_XVP:
		/* Never offered; QEMU would drop the connection. */
		return true;
	default:
		break;
	}
	return upstream_forward(c, m, n);
}

/* Handshake and messages from the client. Returns false if closed. */
static bool
client_process(struct client *c)
{
	struct vncproxy *p = c->p;
	uint8_t b[20];

	for (;;) {
		switch (c->st) {
		case C_VERSION:
			if (c->in.len < RFB_VERSION_LEN)
				return true;
			c->minor = rfb_parse_version(c->in.p);
			buf_eat(&c->in, RFB_VERSION_LEN);
			if (c->minor < 0) {
				client_close(c, "not an RFB 3.x client");
				return false;
			}
			if (c->minor == 3) {
				snap_put_be32(b, p->password[0] ? RFB_SEC_VNC :
					      RFB_SEC_NONE);
				client_send(c, b, 4);
				if (p->password[0]) {
					client_send(c, c->challenge, 16);
					c->st = C_AUTH;
				} else {
					c->st = C_INIT;
				}
			} else {
				b[0] = 1;
				b[1] = p->password[0] ? RFB_SEC_VNC : RFB_SEC_NONE;
				client_send(c, b, 2);
				c->st = C_SECTYPE;
			}
			break;
		case C_SECTYPE:
			if (c->in.len < 1)
				return true;
			b[0] = c->in.p[0];
			buf_eat(&c->in, 1);
			if (b[0] != (p->password[0] ? RFB_SEC_VNC : RFB_SEC_NONE)) {
				client_refuse(c, "security type not offered");
				return false;
			}
			if (b[0] == RFB_SEC_VNC) {
				client_send(c, c->challenge, 16);
				c->st = C_AUTH;
			} else {
				if (c->minor == 8) {
					snap_put_be32(b, 0);
					client_send(c, b, 4);
				}
				c->st = C_INIT;
			}
			break;
		case C_AUTH: {
			uint8_t want[16];
			unsigned diff = 0;

			if (c->in.len < 16)
				return true;
			rfb_vnc_auth(p->password, c->challenge, want);
			for (int i = 0; i < 16; i++)
				diff |= (unsigned)(want[i] ^ c->in.p[i]);
			buf_eat(&c->in, 16);
			if (diff != 0) {
				client_refuse(c, "authentication failed");
				return false;
			}
			snap_put_be32(b, 0);
			client_send(c, b, 4);
			c->st = C_INIT;
			break;
		}
		case C_INIT:
			if (c->in.len < 1)
				return true;
			buf_eat(&c->in, 1);   /* shared flag: always shared */
			client_ready(c);
			break;
		case C_NOSIZE:
		case C_NORMAL: {
			ssize_t n;

			if (c->in.len == 0)
				return true;
			n = rfb_client_msg_len(c->in.p, c->in.len);
			if (n < 0) {
				client_close(c, n == -EMSGSIZE ?
					     "client message too large" :
					     "unknown client message");
				return false;
			}
			if (n == 0) {
				if (c->in.len > MAX_CLIENT_IN) {
					client_close(c, "client message too large");
					return false;
				}
				return true;
			}
			/* Before ServerInit, a client has nothing to say. */
			if (c->st == C_NOSIZE) {
				client_close(c, "client message before ServerInit");
				return false;
			}
			if (!client_msg(c, c->in.p, (size_t)n))
				return false;
			buf_eat(&c->in, (size_t)n);
			break;
		}
		case C_CLOSING:
			return true;
		}
	}
}

static void
on_client(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct client *c = arg;
	int rc;

	(void)l;
	(void)fd;
	if (ev & LOOP_IN) {
		while ((rc = buf_read(c->fd, &c->in)) > 0)
			if (c->in.len > MAX_CLIENT_IN)
				break;
		if (!client_process(c))
			return;
		if (rc < 0) {
			client_close(c, NULL);
			return;
		}
	} else if (ev & (LOOP_ERR | LOOP_HUP)) {
		client_close(c, NULL);
		return;
	}
	client_flush(c);
}

static void
client_flush(struct client *c)
{
	if (buf_write(c->fd, &c->out) < 0) {
		client_close(c, NULL);
		return;
	}
	client_want_out(c);
	/* The client caught up: read the upstream again. */
	if (c->upaused && c->out.len < VNCPROXY_MAX_OUTBUF / 2 &&
	    c->ust != U_NONE) {
		c->upaused = false;
		loop_watch_modify(c->p->loop, c->uw, LOOP_IN |
				  (c->uout.len ? LOOP_OUT : 0));
	}
}

static void
on_accept(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct vncproxy *p = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct client *c;
	char host[INET6_ADDRSTRLEN] = "?";
	int one = 1;
	int cfd;

	(void)l;
	(void)ev;
	sl = sizeof(ss);
	cfd = accept4(fd, (struct sockaddr *)&ss, &sl,
		      SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0)
		return;
	if (p->nclients >= VNCPROXY_MAX_CLIENTS) {
		snap_warn("guest '%s': refusing a display client: %d clients "
			  "already", p->g->spec->name, VNCPROXY_MAX_CLIENTS);
		close(cfd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(cfd);
		return;
	}
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->p = p;
	c->fd = cfd;
	c->ufd = -1;
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host,
			 ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host,
			 ntohs(a->sin_port));
	}
	c->st = C_VERSION;
	if (getrandom(c->challenge, sizeof(c->challenge), 0) !=
	    (ssize_t)sizeof(c->challenge) ||
	    loop_watch_fd(p->loop, cfd, LOOP_IN, on_client, c, &c->w) < 0) {
		close(cfd);
		free(c);
		return;
	}
	c->next = p->clients;
	p->clients = c;
	p->nclients++;
	/* The handshake too must end within the hold time. */
	hold_start(c);
	client_send(c, RFB_VERSION_38, RFB_VERSION_LEN);
	client_flush(c);
}

/* --- the upstream side ---------------------------------------------------- */

static void
upstream_drop(struct client *c)
{
	if (c->ufd < 0)
		return;
	loop_unwatch(c->p->loop, c->uw);
	c->uw = NULL;
	close(c->ufd);
	c->ufd = -1;
	buf_free(&c->uin);
	buf_free(&c->uout);
	c->ust = U_NONE;
	c->upaused = false;
}

static void
on_retry(struct loop *l, void *arg)
{
	struct client *c = arg;

	(void)l;
	c->retry = NULL;
	upstream_start(c, false);
}

/*
 * The upstream failed or ended. A client being re-pointed fails with it
 * (closed: returns true); any other waits for the next upstream.
 */
static bool
upstream_lost(struct client *c, const char *why)
{
	bool was_round = c->round == c->p->round && c->round != 0;

	bool handshake = c->ust != U_READY;

	upstream_drop(c);
	/*
	 * QEMU sometimes drops a connection made while it settles after a
	 * load: a local attach is tried again a few times.
	 */
	if (was_round && handshake && !c->remote && c->p->qemu_up &&
	    c->retries < ATTACH_RETRIES) {
		c->retries++;
		snap_debug("guest '%s': display attach failed (%s); retrying",
			   c->p->g->spec->name, why);
		loop_timer_cancel(c->p->loop, c->retry);
		loop_timer_add(c->p->loop, ATTACH_RETRY_MS, on_retry, c,
			       &c->retry);
		return false;
	}
	if (was_round) {
		client_close(c, why);
		return true;
	}
	if (c->st == C_NORMAL || c->st == C_NOSIZE)
		hold_start(c);
	return false;
}

static int
connect_local(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (snap_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
	    errno != EAGAIN && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* A numeric IPv4 or IPv6 @host and @port as a socket address. */
static int
make_addr(const char *host, unsigned port, struct sockaddr_storage *ss,
	  socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -EINVAL;
		*sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
		*sl = sizeof(*s4);
	}
	return 0;
}

static int
connect_tcp(const char *host, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	if (make_addr(host, port, &ss, &sl) < 0)
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 &&
	    errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void
upstream_start(struct client *c, bool remote)
{
	struct vncproxy *p = c->p;
	int fd;

	upstream_drop(c);
	fd = remote ? connect_tcp(p->t_host, p->t_port) :
		      connect_local(p->vnc_path);
	if (fd < 0) {
		upstream_lost(c, "cannot connect to the display upstream");
		return;
	}
	if (loop_watch_fd(p->loop, fd, LOOP_IN | LOOP_OUT, on_upstream, c,
			  &c->uw) < 0) {
		close(fd);
		upstream_lost(c, "out of memory");
		return;
	}
	c->ufd = fd;
	c->remote = remote;
	c->ust = U_CONNECTING;
}

/* Send a resize to the client as its own update. */
static bool
announce_size(struct client *c, uint16_t w, uint16_t h)
{
	uint8_t b[4 + 12 + 4 + 16];
	size_t n = 4 + 12;

	if (w == c->w_fb && h == c->h_fb)
		return true;
	if (!c->ext_resize && !c->resize) {
		client_close(c, "the framebuffer size changed and the client "
			     "cannot resize");
		return false;
	}
	memset(b, 0, sizeof(b));
	b[0] = RFB_S_UPDATE;
	snap_put_be16(b + 2, 1);
	snap_put_be16(b + 8, w);
	snap_put_be16(b + 10, h);
	if (c->ext_resize) {
		snap_put_be32(b + 12, (uint32_t)RFB_ENC_EXT_DESKTOP_SIZE);
		b[16] = 1;              /* one screen, id 0, at 0,0 */
		snap_put_be16(b + 16 + 4 + 8, w);
		snap_put_be16(b + 16 + 4 + 10, h);
		n += 4 + 16;
	} else {
		snap_put_be32(b + 12, (uint32_t)RFB_ENC_DESKTOP_SIZE);
	}
	client_send(c, b, n);
	c->w_fb = w;
	c->h_fb = h;
	return true;
}

/* ServerInit read: replay the client's state and ask for a full frame. */
static bool
upstream_ready(struct client *c, uint16_t w, uint16_t h)
{
	struct vncproxy *p = c->p;
	uint8_t b[20];

	c->ust = U_READY;
	hold_stop(c);
	if (!c->remote) {
		p->w_fb = w;
		p->h_fb = h;
	} else if (p->w_fb == 0) {
		p->w_fb = w;
		p->h_fb = h;
	}
	if (c->st == C_NOSIZE) {
		c->p->w_fb = w;
		c->p->h_fb = h;
		send_server_init(c);
	} else if (!announce_size(c, w, h)) {
		return false;
	}
	b[0] = RFB_C_SET_PIXEL_FORMAT;
	b[1] = b[2] = b[3] = 0;
	memcpy(b + 4, c->pf_raw, 16);
	buf_add(&c->uout, b, 20);
	c->ubpp = c->bpp;
	send_encodings(c);
	for (unsigned i = 0; i < c->nkeys; i++) {
		memset(b, 0, 12);
		if (c->keys[i].keycode != 0) {
			b[0] = RFB_C_QEMU;
			snap_put_be32(b + 4, c->keys[i].keysym);
			snap_put_be32(b + 8, c->keys[i].keycode);
			buf_add(&c->uout, b, 12);
		} else {
			b[0] = RFB_C_KEY;
			snap_put_be32(b + 4, c->keys[i].keysym);
			buf_add(&c->uout, b, 8);
		}
	}
	c->nkeys = 0;
	if (c->buttons != 0) {
		b[0] = RFB_C_POINTER;
		b[1] = 0;
		snap_put_be16(b + 2, c->px);
		snap_put_be16(b + 4, c->py);
		buf_add(&c->uout, b, 6);
		c->buttons = 0;
	}
	b[0] = RFB_C_UPDATE_REQUEST;
	b[1] = 0;                       /* not incremental: a full frame */
	snap_put_be16(b + 2, 0);
	snap_put_be16(b + 4, 0);
	snap_put_be16(b + 6, w);
	snap_put_be16(b + 8, h);
	buf_add(&c->uout, b, 10);
	round_settle(c, true, NULL);
	round_end_check(p);
	return true;
}

/*
 * A forwarded update that resizes the framebuffer (QEMU sends a resize as
 * an update of its own, so the first rectangle tells).
 */
static void
note_resize(struct client *c, const uint8_t *m, size_t n)
{
	int32_t enc;

	if (n < 16 || snap_get_be16(m + 2) < 1)
		return;
	enc = (int32_t)snap_get_be32(m + 4 + 8);
	if (enc != RFB_ENC_DESKTOP_SIZE && enc != RFB_ENC_EXT_DESKTOP_SIZE)
		return;
	c->w_fb = snap_get_be16(m + 4 + 4);
	c->h_fb = snap_get_be16(m + 4 + 6);
	if (!c->remote) {
		c->p->w_fb = c->w_fb;
		c->p->h_fb = c->h_fb;
	}
}

#define UP_LOST(c, why) return upstream_lost((c), (why)) ? -1 : 0

/*
 * Handshake and messages from the upstream. Returns 1 when both sides
 * live on, 0 when the upstream was dropped, -1 when @c was closed.
 */
static int
upstream_process(struct client *c)
{
	uint8_t b[16];

	for (;;) {
		switch (c->ust) {
		case U_NONE:
		case U_CONNECTING:
			return 1;
		case U_VERSION:
			if (c->uin.len < RFB_VERSION_LEN)
				return 1;
			if (rfb_parse_version(c->uin.p) != 8) {
				UP_LOST(c, "upstream does not speak RFB 3.8");
			}
			buf_eat(&c->uin, RFB_VERSION_LEN);
			buf_add(&c->uout, RFB_VERSION_38, RFB_VERSION_LEN);
			c->ust = U_SECTYPES;
			break;
		case U_SECTYPES: {
			unsigned n;
			bool none = false, vnc = false;

			if (c->uin.len < 1 || c->uin.len < 1u + c->uin.p[0])
				return 1;
			n = c->uin.p[0];
			for (unsigned i = 0; i < n; i++) {
				none |= c->uin.p[1 + i] == RFB_SEC_NONE;
				vnc |= c->uin.p[1 + i] == RFB_SEC_VNC;
			}
			buf_eat(&c->uin, 1 + n);
			if (c->remote && vnc && c->p->t_password[0]) {
				b[0] = RFB_SEC_VNC;
				c->ust = U_AUTH;
			} else if (none) {
				b[0] = RFB_SEC_NONE;
				c->ust = U_SECRESULT;
			} else {
				UP_LOST(c, "upstream offers no usable "
					      "security type");
			}
			buf_add(&c->uout, b, 1);
			break;
		}
		case U_AUTH:
			if (c->uin.len < 16)
				return 1;
			rfb_vnc_auth(c->p->t_password, c->uin.p, b);
			buf_eat(&c->uin, 16);
			buf_add(&c->uout, b, 16);
			c->ust = U_SECRESULT;
			break;
		case U_SECRESULT:
			if (c->uin.len < 4)
				return 1;
			if (snap_get_be32(c->uin.p) != 0) {
				UP_LOST(c, "upstream refused the "
					      "authentication");
			}
			buf_eat(&c->uin, 4);
			b[0] = 1;               /* shared */
			buf_add(&c->uout, b, 1);
			c->ust = U_INIT;
			break;
		case U_INIT: {
			uint32_t nl;
			uint16_t w, h;

			if (c->uin.len < 24)
				return 1;
			nl = snap_get_be32(c->uin.p + 20);
			if (nl > RFB_MAX_NAME) {
				UP_LOST(c, "upstream desktop name too long");
			}
			if (c->uin.len < 24 + nl)
				return 1;
			w = snap_get_be16(c->uin.p);
			h = snap_get_be16(c->uin.p + 2);
			buf_eat(&c->uin, 24 + nl);
			if (w == 0 || h == 0 || w > RFB_MAX_DIM || h > RFB_MAX_DIM) {
				UP_LOST(c, "upstream framebuffer size is "
					      "invalid");
			}
			if (!upstream_ready(c, w, h))
				return -1;
			break;
		}
		case U_READY: {
			ssize_t n;

			if (c->uin.len == 0)
				return 1;
			n = rfb_server_msg_len(c->uin.p, c->uin.len, c->ubpp);
			if (n < 0) {
				UP_LOST(c, "bad message from the display "
					      "upstream");
			}
			if (n == 0)
				return 1;
			if (c->uin.p[0] == RFB_S_UPDATE)
				note_resize(c, c->uin.p, (size_t)n);
			if (client_send(c, c->uin.p, (size_t)n) < 0) {
				client_close(c, "out of memory");
				return -1;
			}
			buf_eat(&c->uin, (size_t)n);
			break;
		}
		}
	}
}

static void
on_upstream(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct client *c = arg;
	int rc = 0, r;

	(void)l;
	(void)fd;
	if (c->ust == U_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);

		if (!(ev & (LOOP_OUT | LOOP_ERR | LOOP_HUP)))
			return;
		if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 ||
		    err != 0) {
			if (!upstream_lost(c, "cannot connect to the display "
					   "upstream"))
				client_flush(c);
			return;
		}
		c->ust = U_VERSION;
	}
	if (ev & LOOP_IN) {
		while ((rc = buf_read(c->ufd, &c->uin)) > 0)
			if (c->uin.len > RFB_MAX_MSG + 65536)
				break;
	}
	r = upstream_process(c);
	if (r < 0)
		return;
	if (r > 0 && rc >= 0 && !(ev & LOOP_ERR) &&
	    !((ev & LOOP_HUP) && !(ev & LOOP_IN))) {
		if (buf_write(c->ufd, &c->uout) < 0) {
			if (upstream_lost(c, "display upstream write failed"))
				return;
		} else {
			if (c->out.len > VNCPROXY_MAX_OUTBUF)
				c->upaused = true;
			loop_watch_modify(c->p->loop, c->uw,
					  (c->upaused ? 0 : LOOP_IN) |
					  (c->uout.len ? LOOP_OUT : 0));
		}
	} else if (r > 0) {
		if (upstream_lost(c, "display upstream closed"))
			return;
	}
	client_flush(c);
}

/* --- the endpoint ------------------------------------------------------- */

static int
listen_tcp(const char *host, unsigned port, unsigned *bound)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	if (make_addr(host, port, &ss, &sl) < 0)
		return -EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	*bound = ss.ss_family == AF_INET6 ?
		 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
		 ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int
vncproxy_open(struct guest *g, bool any_port, struct vncproxy **out,
	      struct snap_err *err)
{
	const struct spec_vnc *ep = &g->spec->vnc_ep;
	struct vncproxy *p;
	int rc;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	p->g = g;
	p->loop = g->d->loop;
	p->lfd = -1;
	snap_strlcpy(p->host, ep->host, sizeof(p->host));
	snap_strlcpy(p->password, ep->password, sizeof(p->password));
	p->hold_s = ep->hold_s;
	rc = snap_fmt(p->vnc_path, sizeof(p->vnc_path), "%s/vnc.sock", g->dir);
	if (rc < 0)
		goto out;
	rc = listen_tcp(p->host, ep->port, &p->port);
	if (rc == -EADDRINUSE && any_port && ep->port != 0) {
		snap_warn("guest '%s': VNC port %u is taken; using an "
			  "automatic port", g->spec->name, ep->port);
		rc = listen_tcp(p->host, 0, &p->port);
	}
	if (rc < 0) {
		snap_err_set(err, rc, 0, "cannot listen for VNC clients of "
			     "guest '%s' on '%s' port %u: %s", g->spec->name,
			     p->host, ep->port, snap_strerror(rc));
		goto out;
	}
	p->lfd = rc;
	rc = loop_watch_fd(p->loop, p->lfd, LOOP_IN, on_accept, p, &p->lw);
	if (rc < 0) {
		snap_err_set(err, rc, 0, "cannot watch the VNC endpoint");
		goto out;
	}
	*out = p;
	p = NULL;
	rc = 0;
out:
	vncproxy_free(p);
	return rc;
}

void
vncproxy_free(struct vncproxy *p)
{
	if (p == NULL)
		return;
	p->closing = true;
	while (p->clients != NULL)
		client_close(p->clients, NULL);
	loop_unwatch(p->loop, p->lw);
	if (p->lfd >= 0)
		close(p->lfd);
	json_decref(p->r_failures);
	free(p);
}

/* Point every served client at a new upstream, in one round. */
static void
repoint_all(struct vncproxy *p, bool remote)
{
	char target[80];
	struct client *c, *next;
	unsigned n = 0;

	if (remote)
		snprintf(target, sizeof(target), strchr(p->t_host, ':') ?
			 "[%s]:%u" : "%s:%u", p->t_host, p->t_port);
	else
		snap_strlcpy(target, "local", sizeof(target));
	round_start(p, target);
	for (c = p->clients; c != NULL; c = c->next) {
		if (c->st != C_NORMAL && c->st != C_NOSIZE)
			continue;
		if (!remote && c->ust != U_NONE)
			continue;
		c->round = p->round;
		c->retries = 0;
		n++;
	}
	p->r_pending = n;
	for (c = p->clients; c != NULL; c = next) {
		next = c->next;
		if (c->round == p->round)
			upstream_start(c, remote);
	}
	/* Failures above may have settled the whole round already. */
	round_end_check(p);
}

void
vncproxy_qemu_ready(struct vncproxy *p)
{
	if (p == NULL)
		return;
	p->qemu_up = true;
	repoint_all(p, false);
}

void
vncproxy_qemu_gone(struct vncproxy *p, bool local_restore)
{
	struct client *c;

	if (p == NULL)
		return;
	p->qemu_up = false;
	for (c = p->clients; c != NULL; c = c->next) {
		/* An attach to the QEMU that went away is moot. */
		if (!c->remote && c->round == p->round && c->round != 0) {
			c->round = 0;
			if (p->r_pending > 0)
				p->r_pending--;
		}
		loop_timer_cancel(p->loop, c->retry);
		c->retry = NULL;
		if (c->ust == U_NONE || c->remote) {
			if (c->ust == U_NONE &&
			    (c->st == C_NORMAL || c->st == C_NOSIZE))
				hold_start(c);
			continue;
		}
		upstream_drop(c);
		if (c->st == C_NORMAL || c->st == C_NOSIZE)
			hold_start(c);
	}
	round_end_check(p);
	if (!local_restore && p->has_target) {
		p->has_target = false;
		repoint_all(p, true);
	}
}

void
vncproxy_set_target(struct vncproxy *p, const char *host, unsigned port,
		    const char *password, bool qemu_running)
{
	snap_strlcpy(p->t_host, host, sizeof(p->t_host));
	p->t_port = port;
	snap_strlcpy(p->t_password, password ? password : "",
		     sizeof(p->t_password));
	p->has_target = true;
	if (!qemu_running) {
		p->has_target = false;
		repoint_all(p, true);
	}
}

unsigned
vncproxy_port(const struct vncproxy *p)
{
	return p->port;
}

json_t *
vncproxy_to_json(const struct vncproxy *p)
{
	json_t *j = json_pack("{s:s, s:i, s:i, s:b}", "host", p->host,
			      "port", (int)p->port, "clients",
			      (int)p->nclients, "password", p->password[0] != 0);

	if (j != NULL && p->has_target)
		json_object_set_new(j, "target", json_pack("{s:s, s:i}",
				    "host", p->t_host, "port", (int)p->t_port));
	return j;
}
