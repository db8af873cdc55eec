/*
 * tests/integration/itest_restore.c: restores through one migrate-incoming
 * request, each proven by the test guest itself (its tick counter goes on
 * without a reset and its full memory check says OK), and every way a
 * restore must be refused or fail.
 */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/util.h"
#include "format/format.h"
#include "tests/harness/harness.h"

#define EV_TIMEOUT 120000
#define GUEST_ARGS "fill=40M seed=21 dirty=32 tick_ms=50 verify=1"

static struct hn_snapd *sd;
static struct hn_qemu *g1;
static uint64_t g1_tick_before;     /* last tick seen before saving s1 */
static char s1_path[1024];

static struct hn_qmp *
qmp(void)
{
	return hn_snapd_qmp(sd);
}

static bool
vm_exists(const char *name)
{
	json_t *ret = NULL, *g;
	bool found = false;
	size_t i;

	assert_int_equal(hn_qmp_exec(qmp(), "query-vms", NULL, &ret), 0);
	json_array_foreach(ret, i, g)
		found |= strcmp(json_string_value(json_object_get(g, "name")),
				name) == 0;
	json_decref(ret);
	return found;
}

static void
save(const char *vm, const char *name, bool live, char *path, size_t size)
{
	json_t *ev = NULL;

	assert_int_equal(hn_qmp_execf(qmp(), NULL, "snapshot-save",
				      "{s:s, s:s, s:b}", "vm", vm, "name", name,
				      "live", live), 0);
	assert_int_equal(hn_snapd_wait_event(qmp(), "SNAPSHOT_SAVED", vm,
					     EV_TIMEOUT, &ev), 0);
	if (path != NULL)
		snap_strlcpy(path, json_string_value(json_object_get(ev, "path")),
			     size);
	json_decref(ev);
}

static int
setup(void **state)
{
	uint64_t t;
	(void)state;

	if (hn_snapd_start(&sd) < 0 ||
	    hn_snapd_guest(sd, "g1", "64M", GUEST_ARGS, NULL, &g1) < 0 ||
	    hn_wait_ready(g1, HN_BOOT_TIMEOUT_MS) < 0 ||
	    hn_wait_tick(g1, &t, HN_TICK_TIMEOUT_MS) < 0 ||
	    hn_wait_tick(g1, &g1_tick_before, HN_TICK_TIMEOUT_MS) < 0)
		return -1;
	save("g1", "s1", false, s1_path, sizeof(s1_path));
	return 0;
}

static int
teardown(void **state)
{
	int rc = hn_snapd_stop(sd);

	hn_teardown(state);
	return rc == 0 ? 0 : -1;
}

/*
 * Start a restore; returns 0 when snapd accepted it, else SNAP_EQEMU with
 * its message in hn_qmp_error().
 */
static int
incoming(const char *uri, const char *vm, const char *mode,
	 const char *verify, json_t *caps)
{
	json_t *args = json_pack("{s:s}", "uri", uri);

	if (vm != NULL)
		json_object_set_new(args, "vm", json_string(vm));
	if (mode != NULL)
		json_object_set_new(args, "mode", json_string(mode));
	if (verify != NULL)
		json_object_set_new(args, "verify", json_string(verify));
	if (caps != NULL)
		json_object_set_new(args, "capabilities", caps);
	return hn_qmp_exec(qmp(), "migrate-incoming", args, NULL);
}

/* Wait for RESTORED of @vm and prove the guest's memory from the inside. */
static struct hn_qemu *
expect_restored(const char *vm, uint64_t not_before, json_t **ev_out)
{
	struct hn_qemu *q = NULL;
	struct hn_verdict v;
	json_t *ev = NULL;
	uint64_t t;

	if (hn_snapd_wait_event(qmp(), "RESTORED", vm, EV_TIMEOUT, &ev) < 0)
		fail_msg("no RESTORED event for '%s'", vm);
	assert_true(json_is_true(json_object_get(ev, "running")));
	assert_int_equal(hn_snapd_attach(sd, vm, &q), 0);
	if (hn_wait_tick(q, &t, HN_TICK_TIMEOUT_MS) < 0 ||
	    hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS) < 0) {
		hn_report(q, vm, -1);
		fail();
	}
	/* No reboot: the counter goes on from the saved moment. */
	assert_int_equal(hn_qemu_guest(q)->ready_lines, 0);
	if (t < not_before)
		fail_msg("'%s' ticked %llu, before the save's %llu", vm,
			 (unsigned long long)t, (unsigned long long)not_before);
	if (!v.ok)
		fail_msg("'%s' reports BAD page %llu (%llu bad)", vm,
			 (unsigned long long)v.page, (unsigned long long)v.count);
	if (ev_out != NULL)
		*ev_out = ev;
	else
		json_decref(ev);
	return q;
}

static void
stop_vm(const char *vm, struct hn_qemu *q)
{
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-stop", "{s:s}", "vm", vm),
			 0);
	hn_qemu_free(q);
}

static void
test_lazy_restore(void **state)
{
	json_t *ev = NULL;
	struct hn_qemu *q;
	(void)state;

	assert_int_equal(incoming("snapshot:g1/s1", "c1", NULL, NULL, NULL), 0);
	q = expect_restored("c1", g1_tick_before, &ev);
	assert_string_equal(json_string_value(json_object_get(ev, "mode")), "lazy");
	/* Lazy: only the small blocks and the device state went through. */
	assert_true(json_integer_value(json_object_get(ev, "stream-bytes")) <
		    (json_int_t)(4 << 20));
	json_decref(ev);
	stop_vm("c1", q);
}

static void
test_eager_restore(void **state)
{
	json_t *ev = NULL;
	struct hn_qemu *q;
	char uri[1100];
	(void)state;

	snprintf(uri, sizeof(uri), "file:%s", s1_path);
	assert_int_equal(incoming(uri, "c2", "eager", "none", NULL), SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()), "verify=none needs"));
	assert_int_equal(incoming(uri, "c2", "eager", "background", NULL), 0);
	q = expect_restored("c2", g1_tick_before, &ev);
	assert_string_equal(json_string_value(json_object_get(ev, "mode")),
			    "eager");
	assert_true(json_integer_value(json_object_get(ev, "stream-bytes")) >
		    (json_int_t)(20 << 20));
	json_decref(ev);
	stop_vm("c2", q);
}

static void
test_live_save_restore_and_two_clones(void **state)
{
	struct hn_qemu *a, *b;
	uint64_t t;
	(void)state;

	assert_int_equal(hn_wait_tick(g1, &t, HN_TICK_TIMEOUT_MS), 0);
	save("g1", "live1", true, NULL, 0);
	assert_int_equal(incoming("snapshot:g1/live1", "c3", NULL, NULL, NULL), 0);
	assert_int_equal(incoming("snapshot:g1/live1", "c4", NULL, NULL, NULL), 0);
	a = expect_restored("c3", t, NULL);
	b = expect_restored("c4", t, NULL);
	stop_vm("c3", a);
	stop_vm("c4", b);
}

static void
expect_refused(const char *vm, json_t *caps, const char *part)
{
	assert_int_equal(incoming("snapshot:g1/s1", vm, NULL, NULL, caps),
			 SNAP_EQEMU);
	if (strstr(hn_qmp_error(qmp()), part) == NULL)
		fail_msg("refusal '%s' lacks '%s'", hn_qmp_error(qmp()), part);
	/* Refused before anything started. */
	assert_false(vm_exists(vm));
}

/* What the restored QEMU itself says of a capability. */
static bool
qemu_cap(const char *vm, const char *cap)
{
	json_t *ret = NULL;
	char want[64];
	bool on;

	assert_int_equal(hn_qmp_execf(qmp(), &ret, "human-monitor-command",
				      "{s:s, s:s}", "vm", vm, "command-line",
				      "info migrate_capabilities"), 0);
	snprintf(want, sizeof(want), "%s: on", cap);
	on = strstr(json_string_value(ret), want) != NULL;
	json_decref(ret);
	return on;
}

static void
test_capabilities(void **state)
{
	struct hn_qemu *q;
	(void)state;

	expect_refused("c5", json_pack("[{s:s, s:b}]", "capability",
				       "mapped-ram", "state", 0),
		       "capability 'mapped-ram' is off in the request, but "
		       "the snapshot file needs it on");
	expect_refused("c5", json_pack("[{s:s, s:b}]", "capability", "turbo",
				       "state", 1),
		       "unknown migration capability 'turbo'");
	expect_refused("c5", json_pack("[{s:s, s:b}]", "capability", "xbzrle",
				       "state", 1),
		       "cannot apply to a snapshot restore");
	expect_refused("c5", json_pack("[{s:s, s:b}]", "capability",
				       "postcopy-ram", "state", 1),
		       "'postcopy-ram'");

	/* Given in one call... */
	assert_int_equal(incoming("snapshot:g1/s1", "c5", NULL, NULL,
				  json_pack("[{s:s, s:b}]", "capability",
					    "validate-uuid", "state", 1)), 0);
	q = expect_restored("c5", g1_tick_before, NULL);
	assert_true(qemu_cap("c5", "validate-uuid"));
	assert_true(qemu_cap("c5", "events"));
	stop_vm("c5", q);
	/* ...and absent from the next. */
	assert_int_equal(incoming("snapshot:g1/s1", "c5", NULL, NULL, NULL), 0);
	q = expect_restored("c5", g1_tick_before, NULL);
	assert_false(qemu_cap("c5", "validate-uuid"));
	stop_vm("c5", q);

	/* A guest's list applies when the call says nothing; the call wins. */
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "migrate-set-capabilities",
				      "{s:s, s:[{s:s, s:b}]}", "vm", "c5",
				      "capabilities", "capability",
				      "validate-uuid", "state", 1), 0);
	assert_int_equal(incoming("snapshot:g1/s1", "c5", NULL, NULL, NULL), 0);
	q = expect_restored("c5", g1_tick_before, NULL);
	assert_true(qemu_cap("c5", "validate-uuid"));
	stop_vm("c5", q);
	assert_int_equal(incoming("snapshot:g1/s1", "c5", NULL, NULL,
				  json_pack("[{s:s, s:b}]", "capability",
					    "validate-uuid", "state", 0)), 0);
	q = expect_restored("c5", g1_tick_before, NULL);
	assert_false(qemu_cap("c5", "validate-uuid"));
	stop_vm("c5", q);
	/* And a guest list that contradicts the file is refused at once. */
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "migrate-set-capabilities",
				      "{s:s, s:[{s:s, s:b}]}", "vm", "c5",
				      "capabilities", "capability", "mapped-ram",
				      "state", 0), SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()), "needs it on"));
}

/* Copy s1 to @dst and flip one byte of its first present main-RAM page. */
static uint64_t
corrupt_copy(const char *dst)
{
	struct fmt_reader *r = NULL;
	uint64_t page = 0;
	uint8_t byte;
	char cmd[2400];
	int fd, b;

	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", s1_path, dst);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(fmt_reader_open(&r, s1_path, NULL), 0);
	b = fmt_reader_block_index(r, "ram0");
	assert_true(b >= 0);
	/* Skip the low pages; take one well inside the guest's fill. */
	assert_int_equal(fmt_reader_next_present(r, (unsigned)b, 0x800, &page), 0);
	fmt_reader_free(r);
	fd = open(dst, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &byte, 1, (off_t)(page * 4096 + 100)), 1);
	byte ^= 0x40;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)(page * 4096 + 100)), 1);
	close(fd);
	return page;
}

static void
test_flipped_page(void **state)
{
	char path[1024], uri[1100], want[64];
	json_t *ev = NULL;
	const char *what;
	uint64_t page;
	(void)state;

	snprintf(path, sizeof(path), "%s/flipped.snap", hn_tmpdir());
	page = corrupt_copy(path);
	snprintf(uri, sizeof(uri), "file:%s", path);
	snprintf(want, sizeof(want), "page %llu", (unsigned long long)page);

	/* verify=full: refused before the guest runs, naming the page. */
	assert_int_equal(incoming(uri, "c6", NULL, "full", NULL), 0);
	assert_int_equal(hn_snapd_wait_event(qmp(), "RESTORE_FAILED", "c6",
					     EV_TIMEOUT, &ev), 0);
	what = json_string_value(json_object_get(ev, "error"));
	if (strstr(what, want) == NULL)
		fail_msg("'%s' does not name %s", what, want);
	json_decref(ev);
	assert_false(vm_exists("c6"));

	/* Eager, verify=full: the pages are checked as they are sent; the
	 * guest never runs and the clone goes away with its QEMU. */
	assert_int_equal(incoming(uri, "c6", "eager", "full", NULL), 0);
	assert_int_equal(hn_snapd_wait_event(qmp(), "RESTORE_FAILED", "c6",
					     EV_TIMEOUT, &ev), 0);
	what = json_string_value(json_object_get(ev, "error"));
	if (strstr(what, want) == NULL || strstr(what, "failed verification") ==
	    NULL)
		fail_msg("'%s' does not name %s", what, want);
	json_decref(ev);
	for (int t = 0; vm_exists("c6"); t++) {
		assert_true(t < 200);
		usleep(50000);
	}

	/* verify=background: the guest starts, then is stopped. */
	assert_int_equal(incoming(uri, "c7", NULL, "background", NULL), 0);
	assert_int_equal(hn_snapd_wait_event(qmp(), "SNAPSHOT_CORRUPT", "c7",
					     EV_TIMEOUT, &ev), 0);
	what = json_string_value(json_object_get(ev, "page"));
	if (strstr(what, want) == NULL)
		fail_msg("'%s' does not name %s", what, want);
	json_decref(ev);
	assert_int_equal(hn_snapd_wait_event(qmp(), "STOP", "c7", 30000, NULL), 0);
	{
		json_t *st = NULL;
		assert_int_equal(hn_qmp_execf(qmp(), &st, "query-status", "{s:s}",
					      "vm", "c7"), 0);
		assert_false(json_is_true(json_object_get(st, "running")));
		json_decref(st);
	}
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-stop", "{s:s}", "vm",
				      "c7"), 0);
}

/* Flip a bit in the checksum table of @path (the footer's directory says
 * where it is: section type 3, FORMAT.md). */
static void
flip_checksum_table(const char *path)
{
	uint8_t ft[64], de[40], byte;
	struct stat st;
	int fd = open(path, O_RDWR);
	uint64_t dir;
	uint32_t n, i;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pread(fd, ft, 64, st.st_size - 64), 64);
	dir = snap_get_le64(ft + 16);
	n = snap_get_le32(ft + 24);
	for (i = 0; i < n; i++) {
		assert_int_equal(pread(fd, de, 40, (off_t)(dir + 40ull * i)), 40);
		if (snap_get_le32(de) == 3)
			break;
	}
	assert_true(i < n);
	assert_int_equal(pread(fd, &byte, 1, (off_t)snap_get_le64(de + 8) + 5), 1);
	byte ^= 0x08;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)snap_get_le64(de + 8) + 5), 1);
	close(fd);
}

static void
test_bad_files(void **state)
{
	char path[1024], uri[1100], cmd[2400];
	struct stat st;
	(void)state;

	/* Truncated: refused at once. */
	snprintf(path, sizeof(path), "%s/truncated.snap", hn_tmpdir());
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", s1_path, path);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size / 2), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(incoming(uri, "c8", NULL, NULL, NULL), SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()), "cannot load"));
	assert_false(vm_exists("c8"));
	/*
	 * A bad checksum table. Unless every page is verified first, it is
	 * read while QEMU starts: the restore fails before the guest runs,
	 * and the clone and its QEMU go away.
	 */
	snprintf(path, sizeof(path), "%s/badsums.snap", hn_tmpdir());
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", s1_path, path);
	assert_int_equal(system(cmd), 0);
	flip_checksum_table(path);
	snprintf(uri, sizeof(uri), "file:%s", path);
	for (int k = 0; k < 2; k++) {
		json_t *ev = NULL;
		const char *why;

		assert_int_equal(incoming(uri, "c8", k ? "eager" : NULL,
					  "background", NULL), 0);
		assert_int_equal(hn_snapd_wait_event(qmp(), "RESTORE_FAILED",
						     "c8", EV_TIMEOUT, &ev), 0);
		why = json_string_value(json_object_get(ev, "error"));
		if (why == NULL || strstr(why, "cannot load") == NULL ||
		    strstr(why, "checksum mismatch in section 'page "
			   "checksums'") == NULL)
			fail_msg("unexpected error '%s'", why ? why : "");
		json_decref(ev);
		/* Undefined once its QEMU has been reaped. */
		for (int t = 0; vm_exists("c8"); t++) {
			assert_true(t < 200);
			usleep(50000);
		}
	}
	/* Not there at all. */
	assert_int_equal(incoming("snapshot:g1/nope", "c8", NULL, NULL, NULL),
			 SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()), "no snapshot 'nope'"));
	assert_int_equal(incoming("ftp:x", "c8", NULL, NULL, NULL), SNAP_EQEMU);
	assert_false(vm_exists("c8"));
}

static int
devstate_to_writer(void *ctx, const void *buf, size_t len)
{
	return fmt_writer_devstate(ctx, buf, len, NULL);
}

/* Rewrite s1 as @dst with another machine type in its metadata and spec. */
static void
copy_with_machine(const char *dst, const char *machine)
{
	struct fmt_reader *r = NULL;
	struct fmt_writer *w = NULL;
	struct fmt_block_decl decl[FMT_MAX_BLOCKS];
	struct fmt_block_info bi[FMT_MAX_BLOCKS];
	struct fmt_stat st;
	struct fmt_meta m;
	char dir[1024], *slash, spec[4096], *p;
	uint8_t page[4096];

	assert_int_equal(fmt_reader_open(&r, s1_path, NULL), 0);
	fmt_reader_stat(r, &st);
	snap_strlcpy(dir, dst, sizeof(dir));
	slash = strrchr(dir, '/');
	*slash = 0;
	assert_int_equal(fmt_writer_open(&w, dir, slash + 1, NULL, NULL), 0);
	for (unsigned i = 0; i < st.nblocks; i++) {
		assert_int_equal(fmt_reader_block(r, i, &bi[i]), 0);
		decl[i].idstr = bi[i].idstr;
		decl[i].length = bi[i].length;
		decl[i].page_size = bi[i].page_size;
		decl[i].main = bi[i].main;
	}
	assert_int_equal(fmt_writer_declare(w, decl, st.nblocks, NULL), 0);
	for (unsigned i = 0; i < st.nblocks; i++) {
		uint64_t pg = 0;
		while (fmt_reader_next_present(r, i, pg, &pg) == 0) {
			assert_int_equal(fmt_reader_read_page(r, i, pg, page,
							      NULL), 0);
			assert_int_equal(fmt_writer_put_page(w, i, pg, page,
							     NULL), 0);
			pg++;
		}
	}
	for (unsigned i = 0; i < st.nentries; i++) {
		const char *name;
		const void *data;
		size_t len;
		assert_int_equal(fmt_reader_entry_at(r, i, &name, &data, &len), 0);
		assert_int_equal(fmt_writer_set_entry(w, name, data, len, NULL), 0);
	}
	assert_int_equal(fmt_reader_devstate(r, devstate_to_writer, w, NULL), 0);
	m = *fmt_reader_meta(r);
	m.machine_type = machine;
	snap_strlcpy(spec, m.guest_spec, sizeof(spec));
	p = strstr(spec, "pc-i440fx-7.2");
	assert_non_null(p);
	memcpy(p, machine, strlen("pc-i440fx-7.2"));
	m.guest_spec = spec;
	assert_int_equal(fmt_writer_set_meta(w, &m, NULL), 0);
	assert_int_equal(fmt_writer_commit(w, NULL, NULL), 0);
	fmt_writer_free(w);
	fmt_reader_free(r);
}

static void
test_wrong_machine(void **state)
{
	char path[1024], uri[1100];
	(void)state;

	snprintf(path, sizeof(path), "%s/machine.snap", hn_tmpdir());
	copy_with_machine(path, "pc-i440fx-9.9");
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(incoming(uri, "c9", NULL, NULL, NULL), SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()),
			       "machine type 'pc-i440fx-9.9'"));
	assert_false(vm_exists("c9"));
}

static void
test_qemu_killed_during_load(void **state)
{
	json_t *ret = NULL, *g, *ev = NULL;
	pid_t pid = -1;
	size_t i;
	(void)state;

	assert_int_equal(incoming("snapshot:g1/s1", "c10", "eager", "background",
				  NULL), 0);
	/* Kill the new QEMU as soon as it exists. */
	for (int tries = 0; pid <= 0 && tries < 2000; tries++) {
		assert_int_equal(hn_qmp_exec(qmp(), "query-vms", NULL, &ret), 0);
		json_array_foreach(ret, i, g)
			if (strcmp(json_string_value(json_object_get(g, "name")),
				   "c10") == 0)
				pid = (pid_t)json_integer_value(
					json_object_get(g, "pid"));
		json_decref(ret);
		if (pid <= 0)
			usleep(1000);
	}
	assert_true(pid > 0);
	kill(pid, SIGKILL);
	assert_int_equal(hn_snapd_wait_event(qmp(), "RESTORE_FAILED", "c10",
					     EV_TIMEOUT, &ev), 0);
	json_decref(ev);
	/* The clone the restore created is gone again. */
	for (int tries = 0; vm_exists("c10") && tries < 500; tries++)
		usleep(10000);
	assert_false(vm_exists("c10"));
}

static void
test_file_removed_while_mapped(void **state)
{
	struct hn_qemu *q;
	struct hn_verdict v;
	(void)state;

	save("g1", "gone", false, NULL, 0);
	assert_int_equal(incoming("snapshot:g1/gone", "c11", NULL, NULL, NULL), 0);
	q = expect_restored("c11", g1_tick_before, NULL);
	/* snapd will not remove a file a guest maps... */
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "snapshot-delete",
				      "{s:s, s:s}", "vm", "g1", "name", "gone"),
			 SNAP_EQEMU);
	assert_non_null(strstr(hn_qmp_error(qmp()), "mapped by a running guest"));
	/* ...and when someone else does, the guest keeps its memory. */
	{
		char path[1024];
		snprintf(path, sizeof(path), "%s/snapshots/g1/gone.snap",
			 hn_snapd_home(sd));
		assert_int_equal(unlink(path), 0);
		/* Best effort (root only): make the pages come from disk. */
		if (system("sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null"))
			print_message("page cache not dropped\n");
	}
	assert_int_equal(hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS), 0);
	assert_true(v.ok);
	assert_int_equal(hn_wait_verdict(q, &v, HN_TICK_TIMEOUT_MS), 0);
	assert_true(v.ok);
	stop_vm("c11", q);
	/* Once nothing maps it, the row can go. */
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "snapshot-delete",
				      "{s:s, s:s}", "vm", "g1", "name", "gone"), 0);
}

static void
test_reset_writes_into_ram(void **state)
{
	struct hn_qemu *q = NULL, *c = NULL;
	json_t *extra, *ev = NULL;
	uint64_t t;
	(void)state;

	/* A loader device writes into main RAM at every reset, also at the
	 * reset a restoring QEMU does before loading. */
	extra = json_pack("[s, s, s, s]", "-device",
			  "loader,addr=0x400000,data=0x1122334455667788,data-len=8",
			  "-device",
			  "loader,addr=0x1000000,data=0x55aa55aa,data-len=4");
	assert_int_equal(hn_snapd_guest(sd, "g2", "64M", GUEST_ARGS, extra, &q), 0);
	assert_int_equal(hn_wait_ready(q, HN_BOOT_TIMEOUT_MS), 0);
	assert_int_equal(hn_wait_tick(q, &t, HN_TICK_TIMEOUT_MS), 0);
	save("g2", "s", false, NULL, 0);
	assert_int_equal(incoming("snapshot:g2/s", "c12", NULL, NULL, NULL), 0);
	c = expect_restored("c12", t, &ev);
	/* The pages the reset shadowed were found and sent again. */
	assert_true(json_integer_value(json_object_get(ev, "fixups")) >= 2);
	json_decref(ev);
	stop_vm("c12", c);
	stop_vm("g2", q);
}

/*
 * A clone is stopped and undefined while its restore still reads the file
 * (a background verification), and its name is used again at once: the
 * job must not outlive the guest it points to. A restore before the guest
 * runs (here: the full verification) keeps the guest from going away.
 */
static void
test_undefine_during_verification(void **state)
{
	struct hn_qemu *q;
	(void)state;

	for (int k = 0; k < 4; k++) {
		assert_int_equal(incoming("snapshot:g1/s1", "c13", NULL,
					  "background", NULL), 0);
		assert_int_equal(hn_snapd_wait_event(qmp(), "RESTORED", "c13",
						     EV_TIMEOUT, NULL), 0);
		assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-stop", "{s:s}",
					      "vm", "c13"), 0);
		assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-undefine",
					      "{s:s}", "vm", "c13"), 0);
	}
	assert_int_equal(incoming("snapshot:g1/s1", "c13", NULL, "full", NULL),
			 0);
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-undefine", "{s:s}",
				      "vm", "c13"), SNAP_EQEMU);
	if (strstr(hn_qmp_error(qmp()), "busy with a restore") == NULL &&
	    strstr(hn_qmp_error(qmp()), "is running") == NULL)
		fail_msg("unexpected error '%s'", hn_qmp_error(qmp()));
	q = expect_restored("c13", g1_tick_before, NULL);
	stop_vm("c13", q);
	assert_int_equal(hn_qmp_execf(qmp(), NULL, "vm-undefine", "{s:s}", "vm",
				      "c13"), 0);
}

static void
test_restore_replaces_running_guest(void **state)
{
	struct hn_qemu *q;
	uint64_t t;
	(void)state;

	/* g1 runs; restoring its own snapshot onto it replaces its QEMU. */
	assert_int_equal(hn_wait_tick(g1, &t, HN_TICK_TIMEOUT_MS), 0);
	assert_int_equal(incoming("snapshot:g1/s1", NULL, NULL, NULL, NULL), 0);
	q = expect_restored("g1", g1_tick_before, NULL);
	hn_qemu_free(g1);
	g1 = q;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lazy_restore),
		cmocka_unit_test(test_eager_restore),
		cmocka_unit_test(test_live_save_restore_and_two_clones),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_flipped_page),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_wrong_machine),
		cmocka_unit_test(test_qemu_killed_during_load),
		cmocka_unit_test(test_file_removed_while_mapped),
		cmocka_unit_test(test_reset_writes_into_ram),
		cmocka_unit_test(test_undefine_during_verification),
		cmocka_unit_test(test_restore_replaces_running_guest),
	};

	hn_require_qemu();
	return cmocka_run_group_tests_name("restore", tests, setup, teardown);
}
