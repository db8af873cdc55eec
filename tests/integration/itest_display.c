/*
 * tests/integration/itest_display.c: display clients kept across restores
 * by snapd's VNC endpoint, proven with real clients and by pixels:
 *
 *  - a minimal RFB client written here (asking for zlib first) holds one
 *    socket across two restores and a hand-over; after each, its
 *    framebuffer equals, pixel for pixel, the new QEMU's screendump, which
 *    differs from the screen before;
 *  - vncsnapshot (RFB 3.3, asking for zlib) takes one shot, is frozen
 *    across a restore, then takes two more on the same connection; the
 *    last is a JPEG byte-identical to the new QEMU's screendump encoded the same
 *    way (cjpeg -rgb -quality 100);
 *  - gvncviewer under Xvfb keeps one TCP connection (same process, same
 *    client port in ss) across both restores and the hand-over;
 *  - VNC authentication: wrong passwords refused (by the mini client and
 *    by vncsnapshot), the right one accepted; a client waiting while its
 *    guest is stopped is served again when it starts; the bounded wait
 *    closes a client whose guest stays stopped;
 *  - RFB 3.3 and 3.7 handshakes, the client limit, a hand-over to an
 *    endpoint nobody listens on;
 *  - client_migrate_info: a second snapd loads the guest's snapshot and
 *    the first one's clients end up showing that guest.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "snapd/rfb.h"
#include "tests/harness/harness.h"

#define EV_TIMEOUT   120000
#define PIX_TIMEOUT  20000
#define GUEST_ARGS   "tick_ms=100"
#define VNC_MAX_CLIENTS 16          /* VNCPROXY_MAX_CLIENTS */

static struct hn_snapd *sda, *sdb;
static unsigned port_a;
static char dir[1024];
static pid_t xvfb_pid = -1, gv_pid = -1;
static char xdisplay[16];
static unsigned gv_port;            /* gvncviewer's client port */

/* --- processes ------------------------------------------------------------ */

static pid_t
spawn(const char *const *argv, const char *out, const char *display)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out ? out : "/dev/null",
			      O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (display != NULL)
			setenv("DISPLAY", display, 1);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	return pid;
}

/* Exit status of @pid, or -1 if it did not end in @ms. */
static int
wait_exit(pid_t pid, int ms)
{
	int st;

	for (int i = 0; i < ms / 20; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(20000);
	}
	return -1;
}

static bool
alive(pid_t pid)
{
	int st;

	return pid > 0 && waitpid(pid, &st, WNOHANG) == 0;
}

static int
run(const char *const *argv)
{
	return wait_exit(spawn(argv, NULL, NULL), 60000);
}

/* --- snapd helpers ----------------------------------------------------------- */

static void
define_vnc(struct hn_snapd *s, const char *name, json_t *vnc)
{
	char kernel[4096];
	json_t *spec;

	assert_non_null(realpath(hn_guest_path(), kernel));
	spec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "name", name,
			 "memory", "64M", "kernel", kernel, "append", GUEST_ARGS,
			 "display", "vnc", "vnc", vnc);
	if (hn_qmp_exec(hn_snapd_qmp(s), "vm-define",
			json_pack("{s:o}", "spec", spec), NULL) < 0)
		fail_msg("vm-define: %s", hn_qmp_error(hn_snapd_qmp(s)));
}

static void
vm_cmd(struct hn_snapd *s, const char *cmd, const char *vm)
{
	if (hn_qmp_execf(hn_snapd_qmp(s), NULL, cmd, "{s:s}", "vm", vm) < 0)
		fail_msg("%s %s: %s", cmd, vm, hn_qmp_error(hn_snapd_qmp(s)));
}

static unsigned
vnc_port(struct hn_snapd *s, const char *vm)
{
	json_t *ret = NULL, *g;
	unsigned port = 0;
	size_t i;

	assert_int_equal(hn_qmp_exec(hn_snapd_qmp(s), "query-vms", NULL, &ret), 0);
	json_array_foreach(ret, i, g)
		if (strcmp(json_string_value(json_object_get(g, "name")), vm) == 0)
			port = (unsigned)json_integer_value(json_object_get(
				json_object_get(g, "vnc"), "port"));
	json_decref(ret);
	assert_true(port > 0);
	return port;
}

static void
screendump(struct hn_snapd *s, const char *vm, const char *path)
{
	if (hn_qmp_execf(hn_snapd_qmp(s), NULL, "screendump", "{s:s, s:s}",
			 "vm", vm, "filename", path) < 0)
		fail_msg("screendump: %s", hn_qmp_error(hn_snapd_qmp(s)));
}

static void
save(struct hn_snapd *s, const char *vm, const char *name, char *path,
     size_t size)
{
	json_t *ev = NULL;

	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(s), NULL, "snapshot-save",
				      "{s:s, s:s}", "vm", vm, "name", name), 0);
	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(s), "SNAPSHOT_SAVED",
					     vm, EV_TIMEOUT, &ev), 0);
	if (path != NULL)
		snap_strlcpy(path, json_string_value(json_object_get(ev, "path")),
			     size);
	json_decref(ev);
}

/* Restore @uri into @vm; returns the CLIENTS_REPOINTED data (or NULL when
 * @repointed is false). */
static json_t *
restore(struct hn_snapd *s, const char *vm, const char *uri, bool repointed)
{
	json_t *ev = NULL;

	if (hn_qmp_execf(hn_snapd_qmp(s), NULL, "migrate-incoming",
			 "{s:s, s:s}", "vm", vm, "uri", uri) < 0)
		fail_msg("migrate-incoming: %s", hn_qmp_error(hn_snapd_qmp(s)));
	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(s), "RESTORED", vm,
					     EV_TIMEOUT, NULL), 0);
	if (!repointed)
		return NULL;
	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(s),
					     "CLIENTS_REPOINTED", vm,
					     EV_TIMEOUT, &ev), 0);
	return ev;
}

/* Let the guest tick for a while, then pause it: a screen of its own. */
static void
tick_then_stop(struct hn_snapd *s, const char *vm)
{
	vm_cmd(s, "cont", vm);
	usleep(800000);
	vm_cmd(s, "stop", vm);
	usleep(100000);
}

/* --- images --------------------------------------------------------------- */

struct image {
	unsigned w, h;
	uint8_t *rgb;
};

static void
ppm_read(const char *path, struct image *im)
{
	FILE *f = fopen(path, "rb");
	unsigned maxv;

	assert_non_null(f);
	assert_int_equal(fscanf(f, "P6 %u %u %u", &im->w, &im->h, &maxv), 3);
	assert_int_equal(maxv, 255);
	fgetc(f);
	im->rgb = malloc((size_t)im->w * im->h * 3);
	assert_non_null(im->rgb);
	assert_int_equal(fread(im->rgb, 3, (size_t)im->w * im->h, f),
			 (size_t)im->w * im->h);
	fclose(f);
}

static bool
same_file(const char *a, const char *b)
{
	const char *argv[] = { "cmp", "-s", a, b, NULL };

	return run(argv) == 0;
}

/* --- a minimal RFB client ------------------------------------------------------ */

struct rc {
	int fd;
	unsigned w, h;
	uint8_t *fb;                /* 32 bpp, little endian, 0x00RRGGBB */
	uint8_t *buf;
	size_t len, cap;
	unsigned updates;
	bool eof;
	unsigned local_port;
};

static int
tcp_connect(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void
rd(int fd, void *p, size_t n)
{
	assert_int_equal(snap_read_full(fd, p, n), 0);
}

static void
wr(int fd, const void *p, size_t n)
{
	assert_int_equal(snap_write_full(fd, p, n), 0);
}

/*
 * Handshake as RFB 3.8 with @password (NULL: None). Returns the
 * SecurityResult (0 ok); on failure the reason is in @why.
 */
static uint32_t
rc_handshake(struct rc *c, unsigned port, const char *password, char *why,
	     size_t wl)
{
	uint8_t b[64];
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	uint32_t res = 0;

	memset(c, 0, sizeof(*c));
	c->fd = tcp_connect(port);
	getsockname(c->fd, (struct sockaddr *)&sa, &sl);
	c->local_port = ntohs(sa.sin_port);
	rd(c->fd, b, 12);
	assert_memory_equal(b, RFB_VERSION_38, 12);
	wr(c->fd, RFB_VERSION_38, 12);
	rd(c->fd, b, 1);
	assert_int_equal(b[0], 1);
	rd(c->fd, b + 1, 1);
	assert_int_equal(b[1], password ? RFB_SEC_VNC : RFB_SEC_NONE);
	wr(c->fd, b + 1, 1);
	if (password != NULL) {
		uint8_t resp[16];

		rd(c->fd, b, 16);
		rfb_vnc_auth(password, b, resp);
		wr(c->fd, resp, 16);
	}
	rd(c->fd, b, 4);
	res = snap_get_be32(b);
	if (res != 0) {
		uint32_t n;

		rd(c->fd, b, 4);
		n = snap_get_be32(b);
		assert_true(n < wl);
		rd(c->fd, why, n);
		why[n] = '\0';
	}
	return res;
}

/* ClientInit, ServerInit, our pixel format and encodings, a full request. */
static void
rc_init(struct rc *c)
{
	uint8_t b[64];
	uint32_t nl;
	static const int32_t enc[] = {
		RFB_ENC_ZLIB, RFB_ENC_RAW, RFB_ENC_EXT_DESKTOP_SIZE,
	};

	b[0] = 1;
	wr(c->fd, b, 1);
	rd(c->fd, b, 24);
	c->w = snap_get_be16(b);
	c->h = snap_get_be16(b + 2);
	nl = snap_get_be32(b + 20);
	assert_true(nl < sizeof(b));
	rd(c->fd, b, nl);
	c->fb = calloc((size_t)c->w * c->h, 4);
	assert_non_null(c->fb);
	memset(b, 0, 20);
	b[0] = RFB_C_SET_PIXEL_FORMAT;
	rfb_pixfmt_put(&rfb_pixfmt_default, b + 4);
	wr(c->fd, b, 20);
	b[0] = RFB_C_SET_ENCODINGS;
	b[1] = 0;
	snap_put_be16(b + 2, 3);
	for (int i = 0; i < 3; i++)
		snap_put_be32(b + 4 + 4 * i, (uint32_t)enc[i]);
	wr(c->fd, b, 16);
	b[0] = RFB_C_UPDATE_REQUEST;
	b[1] = 0;
	snap_put_be16(b + 2, 0);
	snap_put_be16(b + 4, 0);
	snap_put_be16(b + 6, (uint16_t)c->w);
	snap_put_be16(b + 8, (uint16_t)c->h);
	wr(c->fd, b, 10);
}

static void
rc_free(struct rc *c)
{
	if (c->fd > 0)
		close(c->fd);
	free(c->fb);
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

/* Apply one complete FramebufferUpdate. */
static void
rc_update(struct rc *c, const uint8_t *m)
{
	unsigned n = snap_get_be16(m + 2);
	size_t off = 4;

	for (unsigned i = 0; i < n; i++) {
		const uint8_t *r = m + off;
		unsigned x = snap_get_be16(r), y = snap_get_be16(r + 2);
		unsigned w = snap_get_be16(r + 4), h = snap_get_be16(r + 6);
		int32_t enc = (int32_t)snap_get_be32(r + 8);

		off += 12;
		if (enc == RFB_ENC_EXT_DESKTOP_SIZE) {
			off += 4 + 16u * m[off];
			if (w != c->w || h != c->h) {
				c->w = w;
				c->h = h;
				free(c->fb);
				c->fb = calloc((size_t)w * h, 4);
				assert_non_null(c->fb);
			}
			continue;
		}
		/* zlib was asked for first; the proxy must never let it by. */
		if (enc != RFB_ENC_RAW)
			fail_msg("rectangle with encoding %d", (int)enc);
		assert_true(x + w <= c->w && y + h <= c->h);
		for (unsigned row = 0; row < h; row++)
			memcpy(c->fb + ((size_t)(y + row) * c->w + x) * 4,
			       m + off + (size_t)row * w * 4, (size_t)w * 4);
		off += (size_t)w * h * 4;
	}
	c->updates++;
}

/* Read and apply messages for up to @ms; answer each update with an
 * incremental request. */
static void
rc_pump(struct rc *c, int ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	uint64_t end = snap_now_mono_ns() + (uint64_t)ms * 1000000u;

	while (!c->eof && snap_now_mono_ns() < end) {
		ssize_t n;
		size_t ml;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 1 << 20;
			c->buf = realloc(c->buf, c->cap);
			assert_non_null(c->buf);
		}
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n <= 0) {
			c->eof = true;
			break;
		}
		c->len += (size_t)n;
		for (;;) {
			ssize_t l = rfb_server_msg_len(c->buf, c->len, 32);
			uint8_t req[10] = { RFB_C_UPDATE_REQUEST, 1 };

			assert_true(l >= 0);
			if (l == 0)
				break;
			ml = (size_t)l;
			if (c->buf[0] == RFB_S_UPDATE) {
				rc_update(c, c->buf);
				snap_put_be16(req + 6, (uint16_t)c->w);
				snap_put_be16(req + 8, (uint16_t)c->h);
				wr(c->fd, req, sizeof(req));
			}
			memmove(c->buf, c->buf + ml, c->len - ml);
			c->len -= ml;
		}
	}
}

static size_t
rc_diff(const struct rc *c, const struct image *im)
{
	size_t bad = 0;

	if (c->w != im->w || c->h != im->h)
		return (size_t)-1;
	for (size_t i = 0; i < (size_t)im->w * im->h; i++) {
		const uint8_t *p = c->fb + 4 * i, *q = im->rgb + 3 * i;
		bad += p[2] != q[0] || p[1] != q[1] || p[0] != q[2];
	}
	return bad;
}

/* Pump until the framebuffer equals @ppm pixel for pixel. */
static void
rc_expect(struct rc *c, const char *ppm)
{
	struct image im;
	size_t bad = 0;

	ppm_read(ppm, &im);
	for (int i = 0; i < PIX_TIMEOUT / 100; i++) {
		bad = rc_diff(c, &im);
		if (bad == 0 || c->eof)
			break;
		rc_pump(c, 100);
	}
	free(im.rgb);
	assert_false(c->eof);
	if (bad != 0)
		fail_msg("client framebuffer differs from '%s' in %zu pixels",
			 ppm, bad);
}

/* --- gvncviewer ------------------------------------------------------------ */

/* gvncviewer's client port toward @port, from ss; 0 when none. */
static unsigned
viewer_port(pid_t pid, unsigned port)
{
	char line[512], pat[64], peer[64], local[64];
	unsigned found = 0;
	FILE *f = popen("ss -tnpH state established", "r");

	assert_non_null(f);
	snprintf(pat, sizeof(pat), "pid=%d,", (int)pid);
	snprintf(peer, sizeof(peer), ":%u", port);
	while (fgets(line, sizeof(line), f) != NULL) {
		char a[64], b[64];
		const char *colon;

		if (strstr(line, pat) == NULL ||
		    sscanf(line, "%*s %*s %63s %63s", a, b) != 2)
			continue;
		colon = strrchr(b, ':');
		if (colon == NULL || strcmp(colon, peer) != 0)
			continue;
		snap_strlcpy(local, a, sizeof(local));
		found = (unsigned)atoi(strrchr(local, ':') + 1);
	}
	pclose(f);
	return found;
}

static void
start_viewer(void)
{
	char out[1100], disp[16], num[8] = "";
	int pfd[2];
	ssize_t n;

	/* Xvfb picks a free display and writes its number to the pipe. */
	assert_int_equal(pipe(pfd), 0);
	xvfb_pid = fork();
	assert_true(xvfb_pid >= 0);
	if (xvfb_pid == 0) {
		char fdarg[16];
		int nul = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(pfd[0]);
		dup2(nul, 1);
		dup2(nul, 2);
		snprintf(fdarg, sizeof(fdarg), "%d", pfd[1]);
		execlp("Xvfb", "Xvfb", "-displayfd", fdarg, "-screen", "0",
		       "800x600x24", "-nolisten", "tcp", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* The number ends with a newline; it may come in pieces. */
	for (size_t got = 0; got < sizeof(num) - 1;) {
		n = read(pfd[0], num + got, sizeof(num) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		num[got] = '\0';
		if (strchr(num, '\n') != NULL)
			break;
	}
	close(pfd[0]);
	num[strcspn(num, "\n")] = '\0';
	if (num[0] == '\0')
		fail_msg("Xvfb did not report a display");
	snprintf(xdisplay, sizeof(xdisplay), ":%s", num);
	snprintf(disp, sizeof(disp), "127.0.0.1:%u", port_a - 5900);
	snprintf(out, sizeof(out), "%s/gvncviewer.log", dir);
	{
		const char *argv[] = { "gvncviewer", disp, NULL };
		gv_pid = spawn(argv, out, xdisplay);
	}
	for (int i = 0; i < 200 && gv_port == 0; i++) {
		usleep(50000);
		gv_port = viewer_port(gv_pid, port_a);
	}
	if (gv_port == 0) {
		char cmd[1200];

		snprintf(cmd, sizeof(cmd), "cat '%s' >&2; ss -tnp >&2", out);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot show '%s'\n", out);
		fail_msg("gvncviewer did not connect to port %u", port_a);
	}
}

static void
check_viewer(void)
{
	assert_true(alive(gv_pid));
	assert_int_equal(viewer_port(gv_pid, port_a), gv_port);
}

/* --- tests ----------------------------------------------------------------- */

static struct rc rc1;       /* lives across every test below */

static int
setup(void **state)
{
	(void)state;
	if (hn_snapd_start(&sda) < 0)
		return -1;
	snap_fmt(dir, sizeof(dir), "%s/display", hn_tmpdir());
	mkdir(dir, 0700);
	return 0;
}

static int
teardown(void **state)
{
	int rc = 0;

	rc_free(&rc1);
	if (getenv("ITEST_DISPLAY_LOG") != NULL) {
		char cmd[2200];

		snprintf(cmd, sizeof(cmd), "cat '%s.log' >&2", hn_snapd_home(sda));
		if (system(cmd) != 0)
			rc = -1;
	}
	if (gv_pid > 0) {
		kill(gv_pid, SIGKILL);
		waitpid(gv_pid, NULL, 0);
	}
	if (xvfb_pid > 0) {
		kill(xvfb_pid, SIGKILL);
		waitpid(xvfb_pid, NULL, 0);
	}
	if (sdb != NULL && hn_snapd_stop(sdb) != 0)
		rc = -1;
	if (hn_snapd_stop(sda) != 0)
		rc = -1;
	hn_teardown(state);
	return rc;
}

/*
 * Two restores of guest g1 with three clients connected: the mini client,
 * vncsnapshot (frozen during the first restore) and gvncviewer.
 */
static void
test_restores_keep_clients(void **state)
{
	char p0[1100], r1[1100], r1jpg[1100], shot0[1100], shot1[1100];
	char shots[1100], p1[1100], r2[1100], portarg[64];
	json_t *ev;
	pid_t vs;
	(void)state;

	define_vnc(sda, "g1", json_pack("{s:s, s:i}", "listen",
					"127.0.0.1:auto", "hold-s", 30));
	vm_cmd(sda, "vm-start", "g1");
	port_a = vnc_port(sda, "g1");
	usleep(300000);
	assert_int_equal(rc_handshake(&rc1, port_a, NULL, NULL, 0), 0);
	rc_init(&rc1);
	rc_pump(&rc1, 500);
	assert_int_equal(rc1.w, 720);
	assert_int_equal(rc1.h, 400);
	assert_true(rc1.updates > 0);
	start_viewer();

	/* s1: the guest paused at some tick. */
	vm_cmd(sda, "stop", "g1");
	save(sda, "g1", "s1", NULL, 0);
	tick_then_stop(sda, "g1");
	snap_fmt(p0, sizeof(p0), "%s/p0.ppm", dir);
	screendump(sda, "g1", p0);
	rc_expect(&rc1, p0);

	/* vncsnapshot asks for zlib; its first shot, then it is frozen. */
	snap_fmt(shots, sizeof(shots), "%s/shot.jpg", dir);
	snap_fmt(shot0, sizeof(shot0), "%s/shot00000.jpg", dir);
	/*
	 * Its second shot may still show a frame the old QEMU sent before it
	 * was replaced; the third is asked for after the restore.
	 */
	snap_fmt(shot1, sizeof(shot1), "%s/shot00002.jpg", dir);
	snap_fmt(portarg, sizeof(portarg), "127.0.0.1::%u", port_a);
	{
		const char *argv[] = {
			"vncsnapshot", "-quiet", "-encodings", "zlib", "-quality",
			"100", "-count", "3", "-fps", "1", portarg, shots, NULL,
		};
		char log[1100];

		snap_fmt(log, sizeof(log), "%s/vncsnapshot.log", dir);
		vs = spawn(argv, log, NULL);
	}
	for (int i = 0; i < 400 && access(shot0, F_OK) != 0; i++)
		usleep(25000);
	assert_int_equal(access(shot0, F_OK), 0);
	kill(vs, SIGSTOP);
	rc_pump(&rc1, 100);

	/* Restore 1: every client re-pointed. */
	ev = restore(sda, "g1", "snapshot:s1", true);
	assert_int_equal(json_integer_value(json_object_get(ev, "moved")), 3);
	assert_int_equal(json_integer_value(json_object_get(ev, "failed")), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "target")),
			    "local");
	json_decref(ev);
	snap_fmt(r1, sizeof(r1), "%s/r1.ppm", dir);
	screendump(sda, "g1", r1);
	assert_false(same_file(p0, r1));    /* the restore changed the screen */
	rc_expect(&rc1, r1);

	kill(vs, SIGCONT);
	assert_int_equal(wait_exit(vs, 30000), 0);
	snap_fmt(r1jpg, sizeof(r1jpg), "%s/r1.jpg", dir);
	{
		char cmd[4000];

		snprintf(cmd, sizeof(cmd), "cjpeg -quality 100 -rgb '%s' > '%s'",
			 r1, r1jpg);
		assert_int_equal(system(cmd), 0);
	}
	assert_true(same_file(shot1, r1jpg));
	assert_false(same_file(shot0, r1jpg));
	check_viewer();

	/* Restore 2, after the guest ran on. */
	tick_then_stop(sda, "g1");
	snap_fmt(p1, sizeof(p1), "%s/p1.ppm", dir);
	screendump(sda, "g1", p1);
	rc_expect(&rc1, p1);
	ev = restore(sda, "g1", "snapshot:s1", true);
	assert_int_equal(json_integer_value(json_object_get(ev, "moved")), 2);
	json_decref(ev);
	snap_fmt(r2, sizeof(r2), "%s/r2.ppm", dir);
	screendump(sda, "g1", r2);
	assert_false(same_file(p1, r2));
	rc_expect(&rc1, r2);
	check_viewer();
}

/* RFB 3.3 and 3.7 clients (None), and the client limit. */
static void
test_versions_and_limit(void **state)
{
	int fds[VNC_MAX_CLIENTS + 1];
	unsigned n = 0, open_ok = 0;
	uint8_t b[64];
	(void)state;

	for (int minor = 3; minor <= 7; minor += 4) {
		const char *ver = minor == 3 ? "RFB 003.003\n" : "RFB 003.007\n";
		int fd = tcp_connect(port_a);

		rd(fd, b, 12);
		wr(fd, ver, 12);
		if (minor == 3) {
			rd(fd, b, 4);           /* the server's choice */
			assert_int_equal(snap_get_be32(b), RFB_SEC_NONE);
		} else {
			rd(fd, b, 2);           /* the list to choose from */
			assert_int_equal(b[0], 1);
			assert_int_equal(b[1], RFB_SEC_NONE);
			wr(fd, b + 1, 1);       /* 3.7: no SecurityResult */
		}
		b[0] = 1;
		wr(fd, b, 1);
		rd(fd, b, 24);                  /* ServerInit */
		assert_int_equal(snap_get_be16(b), 720);
		assert_int_equal(snap_get_be16(b + 2), 400);
		close(fd);
	}

	/* rc1 and gvncviewer are connected: the rest up to the limit get
	 * the greeting, the next one is closed at once. */
	for (n = 0; n < VNC_MAX_CLIENTS + 1; n++) {
		fds[n] = tcp_connect(port_a);
		if (snap_read_full(fds[n], b, 12) == 0)
			open_ok++;
		else
			break;
	}
	assert_int_equal(open_ok, VNC_MAX_CLIENTS - 2);
	assert_int_equal(n, VNC_MAX_CLIENTS - 2);
	for (unsigned i = 0; i <= n && i < VNC_MAX_CLIENTS + 1; i++)
		close(fds[i]);
	rc_pump(&rc1, 300);
	assert_false(rc1.eof);
	check_viewer();
}

/* Write a vncpasswd-style file: the password DES-encrypted with VNC's
 * fixed key, which vncsnapshot decrypts with its own DES. */
static void
passwd_file(const char *path, const char *pw)
{
	static const char fixed[] = { 23, 82, 107, 6, 35, 78, 88, 7, 0 };
	uint8_t in[16] = { 0 }, out[16];
	int fd;

	memcpy(in, pw, strlen(pw));
	rfb_vnc_auth(fixed, in, out);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	wr(fd, out, 8);
	close(fd);
}

static void
test_password_and_hold(void **state)
{
	char why[128], good[1100], bad[1100], shot[1100], portarg[64];
	struct rc c;
	unsigned port;
	(void)state;

	define_vnc(sda, "g2", json_pack("{s:s, s:s, s:i}", "listen",
					"127.0.0.1:auto", "password", "s3cret",
					"hold-s", 2));
	vm_cmd(sda, "vm-start", "g2");
	port = vnc_port(sda, "g2");

	assert_int_equal(rc_handshake(&c, port, "wrong", why, sizeof(why)), 1);
	assert_string_equal(why, "authentication failed");
	rc_free(&c);

	snap_fmt(good, sizeof(good), "%s/good.pw", dir);
	snap_fmt(bad, sizeof(bad), "%s/bad.pw", dir);
	snap_fmt(shot, sizeof(shot), "%s/g2.jpg", dir);
	snap_fmt(portarg, sizeof(portarg), "127.0.0.1::%u", port);
	passwd_file(good, "s3cret");
	passwd_file(bad, "s3cre7");
	{
		const char *argv[] = { "vncsnapshot", "-quiet", "-passwd", bad,
				       portarg, shot, NULL };
		assert_int_not_equal(run(argv), 0);
		assert_int_not_equal(access(shot, F_OK), 0);
	}
	{
		const char *argv[] = { "vncsnapshot", "-quiet", "-passwd", good,
				       portarg, shot, NULL };
		assert_int_equal(run(argv), 0);
		assert_int_equal(access(shot, F_OK), 0);
	}

	/* Right password; then the guest stops and stays stopped. */
	assert_int_equal(rc_handshake(&c, port, "s3cret", why, sizeof(why)), 0);
	rc_init(&c);
	rc_pump(&c, 300);
	assert_false(c.eof);
	vm_cmd(sda, "vm-stop", "g2");
	rc_pump(&c, 1000);
	assert_false(c.eof);            /* waiting, still connected */
	/* A new start serves the waiting client. */
	{
		json_t *ev = NULL;
		unsigned before;

		vm_cmd(sda, "vm-start", "g2");
		assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(sda),
						     "CLIENTS_REPOINTED", "g2",
						     EV_TIMEOUT, &ev), 0);
		assert_int_equal(json_integer_value(json_object_get(ev,
								    "moved")), 1);
		json_decref(ev);
		before = c.updates;
		rc_pump(&c, 1500);
		assert_false(c.eof);
		assert_true(c.updates > before);
	}
	vm_cmd(sda, "vm-stop", "g2");
	rc_pump(&c, 15000);
	assert_true(c.eof);             /* closed after hold-s */
	rc_free(&c);
}

static void
test_migrate_info_errors(void **state)
{
	struct hn_qmp *m;
	(void)state;

	m = hn_snapd_qmp(sda);
	assert_int_not_equal(hn_qmp_execf(m, NULL, "client_migrate_info",
					  "{s:s, s:s, s:s, s:i}", "vm", "g1",
					  "protocol", "spice", "hostname",
					  "127.0.0.1", "port", 5930), 0);
	assert_non_null(strstr(hn_qmp_error(m), "'spice' is not supported"));
	assert_int_not_equal(hn_qmp_execf(m, NULL, "client_migrate_info",
					  "{s:s, s:s, s:s, s:i}", "vm", "g1",
					  "protocol", "vnc", "hostname",
					  "example.org", "port", 5901), 0);
	assert_non_null(strstr(hn_qmp_error(m), "numeric"));
	assert_int_not_equal(hn_qmp_execf(m, NULL, "client_migrate_info",
					  "{s:s, s:s, s:s}", "vm", "g1",
					  "protocol", "vnc", "hostname",
					  "127.0.0.1"), 0);
}

/* A hand-over to an endpoint nobody listens on fails, per client. */
static void
test_handover_failure(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char why[128], peer[64];
	json_t *ev = NULL, *f;
	struct rc c;
	int lfd;
	(void)state;

	/* A port that was free a moment ago. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	close(lfd);

	/* g2 is stopped: its client waits, then is handed over at once. */
	assert_int_equal(rc_handshake(&c, vnc_port(sda, "g2"), "s3cret", why,
				      sizeof(why)), 0);
	rc_init(&c);
	rc_pump(&c, 200);
	assert_false(c.eof);
	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sda), NULL,
				      "client_migrate_info",
				      "{s:s, s:s, s:s, s:i}", "vm", "g2",
				      "protocol", "vnc", "hostname", "127.0.0.1",
				      "port", (int)ntohs(sa.sin_port)), 0);
	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(sda),
					     "CLIENTS_REPOINTED", "g2",
					     EV_TIMEOUT, &ev), 0);
	assert_int_equal(json_integer_value(json_object_get(ev, "moved")), 0);
	assert_int_equal(json_integer_value(json_object_get(ev, "failed")), 1);
	f = json_array_get(json_object_get(ev, "failures"), 0);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", c.local_port);
	assert_string_equal(json_string_value(json_object_get(f, "client")),
			    peer);
	assert_non_null(json_string_value(json_object_get(f, "reason")));
	json_decref(ev);
	rc_pump(&c, 5000);
	assert_true(c.eof);             /* the failed client was closed */
	rc_free(&c);
}

/* Save on A, load on B, hand A's clients to B's endpoint. */
static void
test_handover(void **state)
{
	char path[1024], uri[1100], pa[1100], pb[1100];
	json_t *ev = NULL;
	unsigned port_b;
	(void)state;

	assert_int_equal(hn_snapd_start(&sdb), 0);
	save(sda, "g1", "s3", path, sizeof(path));
	tick_then_stop(sda, "g1");
	snap_fmt(pa, sizeof(pa), "%s/a.ppm", dir);
	screendump(sda, "g1", pa);
	rc_expect(&rc1, pa);

	snap_fmt(uri, sizeof(uri), "file:%s", path);
	assert_null(restore(sdb, "g1", uri, false));
	port_b = vnc_port(sdb, "g1");
	assert_int_not_equal(port_b, port_a);
	snap_fmt(pb, sizeof(pb), "%s/b.ppm", dir);
	screendump(sdb, "g1", pb);
	assert_false(same_file(pa, pb));

	/* Recorded now, used when g1's QEMU goes away on A. */
	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sda), NULL,
				      "client_migrate_info",
				      "{s:s, s:s, s:s, s:i}", "vm", "g1",
				      "protocol", "vnc", "hostname", "127.0.0.1",
				      "port", (int)port_b), 0);
	rc_pump(&rc1, 200);
	vm_cmd(sda, "vm-stop", "g1");
	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(sda),
					     "CLIENTS_REPOINTED", "g1",
					     EV_TIMEOUT, &ev), 0);
	assert_int_equal(json_integer_value(json_object_get(ev, "moved")), 2);
	assert_int_equal(json_integer_value(json_object_get(ev, "failed")), 0);
	json_decref(ev);
	rc_expect(&rc1, pb);
	check_viewer();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restores_keep_clients),
		cmocka_unit_test(test_versions_and_limit),
		cmocka_unit_test(test_password_and_hold),
		cmocka_unit_test(test_migrate_info_errors),
		cmocka_unit_test(test_handover_failure),
		cmocka_unit_test(test_handover),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
