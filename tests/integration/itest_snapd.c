/*
 * tests/integration/itest_snapd.c: the daemon with real QEMU and the test
 * guest: saves (stopped and live) checked byte for byte against QEMU's own
 * memory dump, every failure that must publish nothing, a control socket
 * that keeps answering during a save, and QMP behaviour on bad input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "tests/harness/harness.h"

#define EV_TIMEOUT 120000

static struct hn_snapd *sd;

static int
setup(void **state)
{
	(void)state;
	return hn_snapd_start(&sd);
}

static int
teardown(void **state)
{
	int rc = hn_snapd_stop(sd);

	hn_teardown(state);
	return rc == 0 ? 0 : -1;
}

/* Boot guest @name and wait until it has ticked once. */
static struct hn_qemu *
boot(const char *name, const char *mem, const char *args, json_t *extra)
{
	struct hn_qemu *q = NULL;
	uint64_t tick;

	assert_int_equal(hn_snapd_guest(sd, name, mem, args, extra, &q), 0);
	if (hn_wait_ready(q, HN_BOOT_TIMEOUT_MS) < 0 ||
	    hn_wait_tick(q, &tick, HN_TICK_TIMEOUT_MS) < 0) {
		hn_report(q, "boot", -1);
		fail();
	}
	return q;
}

static void
shutdown_guest(const char *name, struct hn_qemu *q)
{
	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sd), NULL, "vm-stop",
				      "{s:s}", "vm", name), 0);
	hn_qemu_free(q);
}

static char *
snap_path(const char *guest, const char *name)
{
	static char p[1024];

	snprintf(p, sizeof(p), "%s/snapshots/%s/%s.snap", hn_snapd_home(sd),
		 guest, name);
	return p;
}

/* Files in @dir (0 when it does not exist). */
static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 &&
					     strcmp(e->d_name, "..") != 0);
	closedir(d);
	return n;
}

static size_t
catalog_count(const char *guest)
{
	json_t *ret = NULL;
	size_t n;

	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sd), &ret, "query-snapshots",
				      "{s:s}", "vm", guest), 0);
	n = json_array_size(ret);
	json_decref(ret);
	return n;
}

static const char *
run_state(const char *guest)
{
	static char st[32];
	json_t *ret = NULL;

	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sd), &ret, "query-status",
				      "{s:s}", "vm", guest), 0);
	snap_strlcpy(st, json_string_value(json_object_get(ret, "status")),
		     sizeof(st));
	json_decref(ret);
	return st;
}

static void
test_stopped_save_equals_pmemsave(void **state)
{
	struct hn_qemu *q = boot("g1", "64M", "fill=40M seed=11 dirty=16", NULL);
	struct hn_qmp *m = hn_snapd_qmp(sd);
	const uint64_t ram = 64ull << 20;
	char dump[1024], out[4096];
	const char *path = snap_path("g1", "s1");
	json_t *ev = NULL;
	uint8_t *a, *b;
	struct stat st;
	int fa, fb;
	(void)state;

	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save",
				      "{s:s, s:s, s:b}", "vm", "g1", "name", "s1",
				      "resume", 0), 0);
	assert_int_equal(hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g1",
					     EV_TIMEOUT, &ev), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "path")), path);
	assert_string_equal(json_string_value(json_object_get(ev, "mode")),
			    "stopped");
	json_decref(ev);
	/* resume=false: the guest stays stopped, so a dump now is the same
	 * moment as the snapshot. */
	assert_string_equal(run_state("g1"), "postmigrate");
	snprintf(dump, sizeof(dump), "%s/g1.dump", hn_tmpdir());
	assert_int_equal(hn_qmp_execf(m, NULL, "pmemsave",
				      "{s:s, s:I, s:I, s:s}", "vm", "g1", "val",
				      (json_int_t)0, "size", (json_int_t)ram,
				      "filename", dump), 0);
	fa = open(dump, O_RDONLY);
	fb = open(path, O_RDONLY);
	assert_true(fa >= 0 && fb >= 0);
	a = malloc(ram);
	b = malloc(ram);
	assert_int_equal(snap_pread_full(fa, a, ram, 0), 0);
	assert_int_equal(snap_pread_full(fb, b, ram, 0), 0);
	/* 0xA0000-0xFFFFF shows VGA and ROM in the address space, not RAM. */
	memset(a + 0xA0000, 0, 0x60000);
	memset(b + 0xA0000, 0, 0x60000);
	for (uint64_t off = 0; off < ram; off += 4096)
		if (memcmp(a + off, b + off, 4096) != 0)
			fail_msg("page at 0x%llx differs between pmemsave and "
				 "the snapshot", (unsigned long long)off);
	free(a);
	free(b);
	close(fa);
	/* Zero pages are holes: far less is allocated than the RAM size. */
	assert_int_equal(fstat(fb, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < 40ull << 20);
	close(fb);
	{
		const char *args[] = { "verify", path, NULL };
		assert_int_equal(hn_snapctl(sd, out, sizeof(out), args), 0);
		assert_non_null(strstr(out, "good"));
	}
	assert_int_equal(catalog_count("g1"), 1);
	/* The name is taken now. */
	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save", "{s:s, s:s}",
				      "vm", "g1", "name", "s1"), SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(m), "already has a snapshot 's1'"));
	assert_int_equal(hn_qmp_execf(m, NULL, "cont", "{s:s}", "vm", "g1"), 0);
	shutdown_guest("g1", q);
}

static void
test_live_save(void **state)
{
	struct hn_qemu *q = boot("g2", "64M", "fill=40M seed=12 dirty=512 tick_ms=20",
				 NULL);
	struct hn_qmp *m = hn_snapd_qmp(sd);
	char out[4096];
	const char *args[] = { "verify", snap_path("g2", "live1"), NULL };
	json_t *ev = NULL;
	uint64_t t0, t1;
	(void)state;

	assert_int_equal(hn_wait_tick(q, &t0, HN_TICK_TIMEOUT_MS), 0);
	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save",
				      "{s:s, s:s, s:b}", "vm", "g2", "name",
				      "live1", "live", 1), 0);
	assert_int_equal(hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g2",
					     EV_TIMEOUT, &ev), 0);
	assert_string_equal(json_string_value(json_object_get(ev, "mode")), "live");
	assert_true(json_is_integer(json_object_get(ev, "downtime-ms")));
	assert_true(json_integer_value(json_object_get(ev, "downtime-ms")) >= 0);
	json_decref(ev);
	assert_int_equal(hn_snapctl(sd, out, sizeof(out), args), 0);
	/* The guest keeps running and checking itself. */
	assert_string_equal(run_state("g2"), "running");
	assert_int_equal(hn_wait_tick(q, &t1, HN_TICK_TIMEOUT_MS), 0);
	assert_true(t1 > t0);
	shutdown_guest("g2", q);
}

/* Start a save and return once snapd accepted it. */
static void
start_save(struct hn_qmp *m, const char *vm, const char *name)
{
	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save", "{s:s, s:s}",
				      "vm", vm, "name", name), 0);
}

static void
expect_failed(const char *vm, const char *why_part)
{
	json_t *ev = NULL;
	const char *why;

	assert_int_equal(hn_snapd_wait_event(hn_snapd_qmp(sd), "SNAPSHOT_FAILED",
					     vm, EV_TIMEOUT, &ev), 0);
	why = json_string_value(json_object_get(ev, "error"));
	if (why == NULL || strstr(why, why_part) == NULL)
		fail_msg("save failed with '%s', expected '%s'", why, why_part);
	json_decref(ev);
}

static void
test_qemu_dies_mid_save(void **state)
{
	struct hn_qemu *q = boot("g3", "512M", "fill=400M seed=13 verify=0", NULL);
	char dir[1024];
	(void)state;

	start_save(hn_snapd_qmp(sd), "g3", "x");
	kill(hn_qemu_pid(q), SIGKILL);
	expect_failed("g3", "QEMU exited");
	snprintf(dir, sizeof(dir), "%s/snapshots/g3", hn_snapd_home(sd));
	assert_int_equal(count_files(dir), 0);
	assert_int_equal(catalog_count("g3"), 0);
	hn_qemu_free(q);
}

static void
test_cancel_mid_save(void **state)
{
	struct hn_qemu *q = boot("g4", "512M", "fill=400M seed=14 verify=0", NULL);
	struct hn_qmp *m = hn_snapd_qmp(sd);
	char dir[1024];
	uint64_t t;
	(void)state;

	start_save(m, "g4", "x");
	assert_int_equal(hn_qmp_execf(m, NULL, "migrate_cancel", "{s:s}", "vm",
				      "g4"), 0);
	expect_failed("g4", "cancelled");
	snprintf(dir, sizeof(dir), "%s/snapshots/g4", hn_snapd_home(sd));
	assert_int_equal(count_files(dir), 0);
	assert_int_equal(catalog_count("g4"), 0);
	/* It was running: it runs again and its memory is intact. */
	assert_int_equal(hn_wait_tick(q, &t, HN_TICK_TIMEOUT_MS), 0);
	assert_string_equal(run_state("g4"), "running");
	shutdown_guest("g4", q);
}

static void
test_full_disk(void **state)
{
	struct hn_qemu *q;
	char dir[1024], uri[1100];
	uint64_t t;
	(void)state;

	snprintf(dir, sizeof(dir), "%s/tiny", hn_tmpdir());
	assert_int_equal(mkdir(dir, 0700), 0);
	if (mount("snap-itest", dir, "tmpfs", 0, "size=8m") < 0) {
		print_message("no tmpfs mount here (%s): full-disk case not run\n",
			      strerror(errno));
		skip();
	}
	q = boot("g5", "64M", "fill=40M seed=15", NULL);
	snprintf(uri, sizeof(uri), "file:%s/full.snap", dir);
	assert_int_equal(hn_qmp_execf(hn_snapd_qmp(sd), NULL, "migrate",
				      "{s:s, s:s}", "vm", "g5", "uri", uri), 0);
	expect_failed("g5", "No space left on device");
	assert_int_equal(count_files(dir), 0);
	assert_int_equal(hn_wait_tick(q, &t, HN_TICK_TIMEOUT_MS), 0);
	assert_string_equal(run_state("g5"), "running");
	umount(dir);
	shutdown_guest("g5", q);
}

static void
test_unknown_section_and_disks(void **state)
{
	struct hn_qmp *m = hn_snapd_qmp(sd);
	char disk[1024], drive[1200], dir[1024];
	struct hn_qemu *q;
	json_t *extra;
	int fd;
	(void)state;

	snprintf(disk, sizeof(disk), "%s/disk.img", hn_tmpdir());
	fd = open(disk, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
	close(fd);
	snprintf(drive, sizeof(drive), "file=%s,format=raw,if=virtio", disk);
	extra = json_pack("[s, s]", "-drive", drive);
	q = boot("g6", "64M", "fill=16M seed=16", extra);
	/* A disk snapd does not manage is writable as far as it knows... */
	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save", "{s:s}", "vm",
				      "g6"), 0);
	json_t *ev = NULL;
	assert_int_equal(hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g6",
					     EV_TIMEOUT, &ev), 0);
	json_decref(ev);
	/* ...but block migration adds an iterative section a snapshot
	 * cannot hold: refused, nothing published. */
	snprintf(dir, sizeof(dir), "file:%s/block.snap", hn_tmpdir());
	assert_int_equal(hn_qmp_execf(m, NULL, "migrate", "{s:s, s:s, s:[{s:s, s:b}]}",
				      "vm", "g6", "uri", dir, "capabilities",
				      "capability", "block", "state", 1), 0);
	expect_failed("g6", "'block'");
	snprintf(dir, sizeof(dir), "%s/block.snap", hn_tmpdir());
	assert_int_equal(access(dir, F_OK), -1);
	shutdown_guest("g6", q);

	/* A writable disk in the spec is refused unless declared safe. */
	{
		char kernel[4096];
		json_t *spec;

		assert_non_null(realpath(hn_guest_path(), kernel));
		spec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[{s:s}]}", "name",
				 "g7", "memory", "32M", "kernel", kernel,
				 "append", "fill=8M", "display", "none", "disks",
				 "path", disk);
		assert_int_equal(hn_qmp_exec(m, "vm-define",
					     json_pack("{s:o}", "spec", spec),
					     NULL), 0);
		assert_int_equal(hn_qmp_execf(m, NULL, "vm-start", "{s:s}", "vm",
					      "g7"), 0);
		assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save", "{s:s}",
					      "vm", "g7"), SNAP_EQEMU);
		assert_non_null(strstr(hn_qmp_error(m), "writable disks"));
		assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save",
					      "{s:s, s:s, s:s}", "vm", "g7",
					      "name", "ext", "disks", "external"),
				 0);
		assert_int_equal(hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g7",
						     EV_TIMEOUT, NULL), 0);
		assert_int_equal(hn_qmp_execf(m, NULL, "vm-stop", "{s:s}", "vm",
					      "g7"), 0);
	}
}

static void
test_socket_answers_during_save(void **state)
{
	struct hn_qemu *q = boot("g8", "768M", "fill=600M seed=18 verify=0", NULL);
	struct hn_qmp *a = NULL, *b = NULL;
	json_t *ret = NULL, *ev = NULL;
	const char *st;
	(void)state;

	assert_int_equal(hn_snapd_connect(sd, &a), 0);
	assert_int_equal(hn_snapd_connect(sd, &b), 0);
	start_save(a, "g8", "busy");
	/* Another client is served while the save runs... */
	assert_int_equal(hn_qmp_execf(b, &ret, "query-migrate", "{s:s}", "vm",
				      "g8"), 0);
	st = json_string_value(json_object_get(ret, "status"));
	assert_non_null(st);
	assert_true(strcmp(st, "setup") == 0 || strcmp(st, "active") == 0);
	json_decref(ret);
	assert_int_equal(hn_qmp_exec(b, "query-vms", NULL, &ret), 0);
	assert_true(json_array_size(ret) >= 1);
	json_decref(ret);
	/* ...and the client that asked may leave: the save goes on. */
	hn_qmp_free(a);
	assert_int_equal(hn_snapd_wait_event(b, "SNAPSHOT_SAVED", "g8",
					     EV_TIMEOUT, &ev), 0);
	json_decref(ev);
	hn_qmp_free(b);
	assert_int_equal(catalog_count("g8"), 1);
	shutdown_guest("g8", q);
}

static void
test_prune_and_pin(void **state)
{
	struct hn_qemu *q = boot("g9", "32M", "fill=8M seed=19", NULL);
	struct hn_qmp *m = hn_snapd_qmp(sd);
	const char *names[] = { "p1", "p2", "p3", "p4" };
	char out[4096];
	json_t *ret = NULL;
	(void)state;

	for (int i = 0; i < 4; i++) {
		assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-save",
					      "{s:s, s:s}", "vm", "g9", "name",
					      names[i]), 0);
		assert_int_equal(hn_snapd_wait_event(m, "SNAPSHOT_SAVED", "g9",
						     EV_TIMEOUT, NULL), 0);
	}
	{
		const char *args[] = { "pin", "g9", "p1", NULL };
		assert_int_equal(hn_snapctl(sd, out, sizeof(out), args), 0);
	}
	/* A dry run changes nothing. */
	{
		const char *args[] = { "prune", "g9", "--keep-last", "2",
				       "--dry-run", NULL };
		assert_int_equal(hn_snapctl(sd, out, sizeof(out), args), 0);
		assert_non_null(strstr(out, "would remove p2"));
		assert_int_equal(catalog_count("g9"), 4);
	}
	/* keep-last 2 keeps p4 and p3, the pin keeps p1, p2 goes. */
	assert_int_equal(hn_qmp_execf(m, &ret, "snapshot-prune", "{s:s, s:i}",
				      "vm", "g9", "keep-last", 2), 0);
	assert_int_equal(json_array_size(ret), 4);
	json_decref(ret);
	assert_int_equal(catalog_count("g9"), 3);
	assert_int_equal(access(snap_path("g9", "p2"), F_OK), -1);
	assert_int_equal(access(snap_path("g9", "p1"), F_OK), 0);
	assert_int_equal(access(snap_path("g9", "p4"), F_OK), 0);
	assert_int_equal(hn_qmp_execf(m, NULL, "snapshot-prune", "{s:s, s:s}",
				      "vm", "g9", "keep-within", "3x"), SNAP_EQEMU);
	shutdown_guest("g9", q);
}

/* Raw bytes to the control socket; returns the reply line. */
static void
raw_exchange(int fd, const char *send, char *reply, size_t size)
{
	size_t n = 0;

	assert_int_equal(snap_write_full(fd, send, strlen(send)), 0);
	while (n + 1 < size) {
		ssize_t r = read(fd, reply + n, 1);
		assert_true(r == 1);
		if (reply[n++] == '\n')
			break;
	}
	reply[n] = 0;
}

static void
test_qmp_bad_input(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char reply[4096];
	int fd;
	(void)state;

	snap_strlcpy(sa.sun_path, hn_snapd_socket(sd), sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	raw_exchange(fd, "", reply, sizeof(reply));
	assert_non_null(strstr(reply, "\"QMP\""));
	raw_exchange(fd, "{\"execute\":\"query-vms\"}\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "Expecting capabilities negotiation"));
	raw_exchange(fd, "{\"execute\":\"qmp_capabilities\"}\n", reply,
		     sizeof(reply));
	assert_non_null(strstr(reply, "\"return\""));
	/* A request split over two writes is one request. */
	assert_int_equal(snap_write_full(fd, "{\"execute\": \"query",
					 strlen("{\"execute\": \"query")), 0);
	raw_exchange(fd, "-vms\", \"id\": 3}\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "\"return\""));
	raw_exchange(fd, "{\"execute\": }\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "JSON parse error"));
	raw_exchange(fd, "[1,2]\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "QMP input must be a JSON object"));
	raw_exchange(fd, "{\"execute\":\"no-such\",\"id\":7}\n", reply,
		     sizeof(reply));
	assert_non_null(strstr(reply, "CommandNotFound"));
	assert_non_null(strstr(reply, "\"id\": 7"));
	raw_exchange(fd, "{\"execute\":\"snapshot-save\",\"arguments\":"
		     "{\"vm\":\"nobody\",\"live\":\"yes\"},\"id\":\"x\"}\n",
		     reply, sizeof(reply));
	assert_non_null(strstr(reply, "error"));
	assert_non_null(strstr(reply, "\"id\": \"x\""));
	raw_exchange(fd, "{\"execute\":\"snapshot-save\",\"arguments\":"
		     "{\"name\":\"a\"}}\n", reply, sizeof(reply));
	assert_non_null(strstr(reply, "Parameter 'vm' is missing"));
	raw_exchange(fd, "{\"execute\":\"vm-define\",\"arguments\":"
		     "{\"spec\":{\"name\":\"bad\",\"memory\":\"1M\"}}}\n", reply,
		     sizeof(reply));
	assert_non_null(strstr(reply, "memory"));
	/* Still usable after all that. */
	raw_exchange(fd, "{\"execute\":\"query-vms\",\"id\":1}\n", reply,
		     sizeof(reply));
	assert_non_null(strstr(reply, "\"return\""));
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmp_bad_input),
		cmocka_unit_test(test_stopped_save_equals_pmemsave),
		cmocka_unit_test(test_live_save),
		cmocka_unit_test(test_qemu_dies_mid_save),
		cmocka_unit_test(test_cancel_mid_save),
		cmocka_unit_test(test_full_disk),
		cmocka_unit_test(test_unknown_section_and_disks),
		cmocka_unit_test(test_socket_answers_during_save),
		cmocka_unit_test(test_prune_and_pin),
	};

	hn_require_qemu();
	return cmocka_run_group_tests_name("snapd", tests, setup, teardown);
}
