/*
 * bench/display.c: how long after a restored guest resumes a display
 * client connected to snapd's VNC endpoint has a full frame from the new
 * QEMU. Run by bench/display.sh; not part of "make check".
 *
 * It starts snapd (tests/harness), defines and starts the 720x400 text-mode
 * test guest with a VNC endpoint, connects one RFB client (a thread that
 * timestamps every FramebufferUpdate with CLOCK_REALTIME), saves the
 * running guest once, then restores it RUNS times. For each restore it
 * takes the old QEMU's GUEST_STOPPED and the new one's RESUME event
 * timestamps (snapd stamps events with CLOCK_REALTIME too) and finds the
 * first update after GUEST_STOPPED whose raw rectangles cover the whole
 * screen. It prints, per run, RESUME -> full frame in milliseconds
 * (negative: the frame was there before the guest resumed, since snapd
 * attaches clients between the load and "cont"), then median/min/max.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "snapd/rfb.h"
#include "tests/harness/harness.h"

#define MAX_FRAMES 100000

static int cfd;
static unsigned fb_w, fb_h;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t full_us[MAX_FRAMES];   /* realtime of full-screen updates */
static size_t nfull;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
die(const char *what)
{
	fprintf(stderr, "bench/display: %s\n", what);
	exit(1);
}

static void
rd(void *p, size_t n)
{
	if (snap_read_full(cfd, p, n) < 0)
		die("client read failed");
}

static void
wr(const void *p, size_t n)
{
	if (snap_write_full(cfd, p, n) < 0)
		die("client write failed");
}

static void
client_connect(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	uint8_t b[64];
	uint32_t nl;

	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to the VNC endpoint");
	rd(b, 12);
	wr(RFB_VERSION_38, 12);
	rd(b, 2);
	b[0] = RFB_SEC_NONE;
	wr(b, 1);
	rd(b, 4);
	b[0] = 1;
	wr(b, 1);
	rd(b, 24);
	fb_w = snap_get_be16(b);
	fb_h = snap_get_be16(b + 2);
	nl = snap_get_be32(b + 20);
	if (nl > sizeof(b))
		die("long desktop name");
	rd(b, nl);
	memset(b, 0, 20);
	b[0] = RFB_C_SET_PIXEL_FORMAT;
	rfb_pixfmt_put(&rfb_pixfmt_default, b + 4);
	wr(b, 20);
	b[0] = RFB_C_SET_ENCODINGS;
	b[1] = 0;
	snap_put_be16(b + 2, 2);
	snap_put_be32(b + 4, (uint32_t)RFB_ENC_RAW);
	snap_put_be32(b + 8, (uint32_t)RFB_ENC_EXT_DESKTOP_SIZE);
	wr(b, 12);
}

static void
request(bool incremental)
{
	uint8_t b[10] = { RFB_C_UPDATE_REQUEST, incremental };

	snap_put_be16(b + 6, (uint16_t)fb_w);
	snap_put_be16(b + 8, (uint16_t)fb_h);
	wr(b, sizeof(b));
}

static void *
client_thread(void *arg)
{
	static uint8_t buf[64 << 20];
	size_t len = 0;

	(void)arg;
	request(false);
	for (;;) {
		ssize_t n = read(cfd, buf + len, sizeof(buf) - len);

		if (n <= 0)
			return NULL;
		len += (size_t)n;
		for (;;) {
			ssize_t l = rfb_server_msg_len(buf, len, 32);
			uint64_t area = 0;
			size_t off = 4;

			if (l < 0)
				die("bad message from snapd");
			if (l == 0)
				break;
			if (buf[0] == RFB_S_UPDATE) {
				unsigned nr = snap_get_be16(buf + 2);
				for (unsigned i = 0; i < nr; i++) {
					unsigned w = snap_get_be16(buf + off + 4);
					unsigned h = snap_get_be16(buf + off + 6);
					int32_t e = (int32_t)snap_get_be32(buf + off + 8);

					off += 12;
					if (e == RFB_ENC_RAW) {
						area += (uint64_t)w * h;
						off += (size_t)w * h * 4;
					} else if (e == RFB_ENC_EXT_DESKTOP_SIZE) {
						off += 4 + 16u * buf[off];
					}
				}
				if (area >= (uint64_t)fb_w * fb_h) {
					pthread_mutex_lock(&mu);
					if (nfull < MAX_FRAMES)
						full_us[nfull++] = now_us();
					pthread_mutex_unlock(&mu);
				}
				request(true);
			}
			memmove(buf, buf + l, len - (size_t)l);
			len -= (size_t)l;
		}
	}
}

static int64_t
event_us(struct hn_qmp *m, const char *name)
{
	json_t *ev = NULL, *ts;
	int64_t t;

	if (hn_qmp_wait_event_vm(m, name, "g1", 120000, &ev) < 0)
		die(name);
	ts = json_object_get(ev, "timestamp");
	t = json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
	    json_integer_value(json_object_get(ts, "microseconds"));
	json_decref(ev);
	return t;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 7;
	struct hn_snapd *sd;
	struct hn_qmp *m;
	char kernel[4096];
	double lat[256];
	json_t *ret = NULL, *g;
	unsigned port = 0;
	pthread_t th;
	size_t i;

	if (runs < 1 || runs > 256)
		die("RUNS must be 1 to 256");
	if (hn_snapd_start(&sd) < 0 || realpath(hn_guest_path(), kernel) == NULL)
		die("cannot start snapd");
	m = hn_snapd_qmp(sd);
	if (hn_qmp_exec(m, "vm-define", json_pack("{s:{s:s, s:s, s:s, s:s, s:s}}",
			"spec", "name", "g1", "memory", "64M", "kernel", kernel,
			"append", "tick_ms=100", "display", "vnc"), NULL) < 0 ||
	    hn_qmp_execf(m, NULL, "vm-start", "{s:s}", "vm", "g1") < 0 ||
	    hn_qmp_exec(m, "query-vms", NULL, &ret) < 0)
		die(hn_qmp_error(m));
	json_array_foreach(ret, i, g)
		port = (unsigned)json_integer_value(json_object_get(
			json_object_get(g, "vnc"), "port"));
	json_decref(ret);
	usleep(1500000);            /* the guest boots into text mode */
	client_connect(port);
	pthread_create(&th, NULL, client_thread, NULL);
	if (hn_qmp_execf(m, NULL, "snapshot-save", "{s:s, s:s}", "vm", "g1",
			 "name", "s1") < 0 ||
	    hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g1", 120000, NULL) < 0)
		die(hn_qmp_error(m));
	printf("run  resume->full_frame_ms  stopped->full_frame_ms\n");
	for (int r = 0; r < runs; r++) {
		int64_t t_gone, t_resume, t_frame = 0;

		usleep(500000);
		if (hn_qmp_execf(m, NULL, "migrate-incoming", "{s:s, s:s}",
				 "vm", "g1", "uri", "snapshot:s1") < 0)
			die(hn_qmp_error(m));
		t_gone = event_us(m, "GUEST_STOPPED");
		/* The save's own STOP/RESUME may still be queued. */
		do
			t_resume = event_us(m, "RESUME");
		while (t_resume < t_gone);
		for (int k = 0; k < 200 && t_frame == 0; k++) {
			usleep(10000);
			pthread_mutex_lock(&mu);
			for (i = 0; i < nfull && t_frame == 0; i++)
				if (full_us[i] > t_gone)
					t_frame = full_us[i];
			pthread_mutex_unlock(&mu);
		}
		if (t_frame == 0)
			die("no full frame within 2 s of the resume");
		lat[r] = (double)(t_frame - t_resume) / 1000.0;
		printf("%3d  %22.1f  %22.1f\n", r + 1, lat[r],
		       (double)(t_frame - t_gone) / 1000.0);
		fflush(stdout);
	}
	qsort(lat, (size_t)runs, sizeof(lat[0]), cmp_dbl);
	printf("resume->full_frame_ms: median %.1f  min %.1f  max %.1f  "
	       "(%d runs, 720x400, target < 100)\n", lat[runs / 2], lat[0],
	       lat[runs - 1], runs);
	shutdown(cfd, SHUT_RDWR);
	pthread_join(th, NULL);
	close(cfd);
	return hn_snapd_stop(sd) == 0 ? 0 : 1;
}
