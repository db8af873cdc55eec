/*
 * tests/unit/test_snapctl.c: the offline snapctl commands (inspect, verify)
 * as a user runs them: the program $SNAP_BUILD/bin/snapctl on the golden
 * files and on damaged copies, checking exit statuses and output.
 * Skipped (77) when the program has not been built. One test puts a
 * scripted QMP peer in snapd's place.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/util.h"

#define GOLDEN "tests/data/format/v1-basic.snap"

static char snapctl[4096];
static char scratch[4096];

/* Run snapctl with @args (a shell-quoted string); capture stdout. */
static int
run(const char *args, char *out, size_t outlen)
{
	char cmd[8192];
	FILE *f;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", snapctl, args);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	st = pclose(f);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void
copy_with_flip(const char *dst, uint64_t off)
{
	char cmd[8192];

	snprintf(cmd, sizeof(cmd), "cp %s %s", GOLDEN, dst);
	assert_int_equal(system(cmd), 0);
	if (off != UINT64_MAX) {
		int fd = open(dst, O_RDWR);
		uint8_t b;
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
		close(fd);
	}
}

static void
test_help_version_usage(void **state)
{
	static char out[65536];

	(void)state;
	assert_int_equal(run("--help", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "inspect"));
	assert_non_null(strstr(out, "verify"));
	assert_int_equal(run("--version", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "snapshot format 1.0"));
	assert_int_equal(run("", out, sizeof(out)), 2);
	assert_int_equal(run("no-such-command", out, sizeof(out)), 2);
	assert_int_equal(run("inspect", out, sizeof(out)), 2);
	assert_int_equal(run("verify a b", out, sizeof(out)), 2);
	assert_int_equal(run("verify --bogus " GOLDEN, out, sizeof(out)), 2);
}

static void
test_inspect(void **state)
{
	static char out[65536];
	json_t *j, *blocks;
	json_error_t je;

	(void)state;
	assert_int_equal(run("inspect " GOLDEN, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "root digest:   "
			       "db53b5f2a2cc6b22a4a5135580245969"));
	assert_non_null(strstr(out, "machine pc-i440fx-7.2"));
	assert_non_null(strstr(out, "pc.ram"));
	assert_int_equal(run("inspect --json " GOLDEN, out, sizeof(out)), 0);
	j = json_loads(out, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "machine_type")),
			    "pc-i440fx-7.2");
	assert_string_equal(json_string_value(json_object_get(j, "save_mode")),
			    "live");
	assert_int_equal(json_integer_value(json_object_get(j, "present_pages")),
			 34);
	/* JSON text fields come back as JSON values. */
	assert_true(json_is_object(json_object_get(j, "guest_spec")));
	assert_true(json_is_array(json_object_get(j, "qemu_argv")));
	blocks = json_object_get(j, "blocks");
	assert_int_equal(json_array_size(blocks), 3);
	assert_true(json_is_true(json_object_get(json_array_get(blocks, 0),
						 "main")));
	json_decref(j);
}

static void
test_verify_good_and_bad(void **state)
{
	static char out[65536];
	char path[4200], args[8192];
	json_t *j, *bad;

	(void)state;
	assert_int_equal(run("verify " GOLDEN, out, sizeof(out)), 0);
	assert_non_null(strstr(out, ": good: 34 pages checked, 0 bad pages"));

	/* A flipped bit in page 11 of pc.ram: corrupt, the page named. */
	snprintf(path, sizeof(path), "%s/bad.snap", scratch);
	copy_with_flip(path, 11 * 4096 + 7);
	snprintf(args, sizeof(args), "verify %s", path);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "bad page: block 'pc.ram' page 11 "
			       "(file offset 45056)"));
	assert_non_null(strstr(out, ": CORRUPT: 34 pages checked, 1 bad pages"));
	snprintf(args, sizeof(args), "verify --json %s", path);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "verdict")),
			    "corrupt");
	bad = json_object_get(j, "bad_pages");
	assert_int_equal(json_array_size(bad), 1);
	assert_int_equal(json_integer_value(json_object_get(
		json_array_get(bad, 0), "page")), 11);
	json_decref(j);

	/* A flipped bit in the footer: corrupt already at open. */
	copy_with_flip(path, 178000 - 20);
	snprintf(args, sizeof(args), "inspect %s", path);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	snprintf(args, sizeof(args), "verify --json %s", path);
	assert_int_equal(run(args, out, sizeof(out)), 1);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(j, "error"), "kind")), "checksum");
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(j, "error"), "message")),
		"footer checksum mismatch");
	json_decref(j);

	/* No such file: an error, not a verdict. */
	snprintf(args, sizeof(args), "verify %s/none.snap", scratch);
	assert_int_equal(run(args, out, sizeof(out)), 3);
	unlink(path);
}

/* Read one line (a request) from @fd; false at EOF. */
static bool
read_line(int fd)
{
	char c;

	while (read(fd, &c, 1) == 1)
		if (c == '\n')
			return true;
	return false;
}

static void
say(int fd, const char *line)
{
	size_t n = strlen(line);

	if (write(fd, line, n) != (ssize_t)n)
		_exit(1);
}

/*
 * snapd answers bytes it cannot frame (a request over its size limit, say)
 * with an error that has no id, as QEMU does. snapctl takes it as the
 * answer instead of waiting for a reply that will never come.
 */
static void
test_error_without_id(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char cmd[8400], out[4096];
	pid_t pid;
	FILE *f;
	size_t n;
	int lfd, st;

	(void)state;
	assert_true(snap_fmt(sa.sun_path, sizeof(sa.sun_path), "%s/qmp.sock",
			     scratch) >= 0);
	unlink(sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			_exit(1);
		say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n");
		if (!read_line(fd))
			_exit(1);
		say(fd, "{\"return\": {}, \"id\": 1}\n");
		if (!read_line(fd))
			_exit(1);
		say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
		    "\"QMP input exceeds 1048576 bytes\"}}\n");
		/* Then silence, until the client goes. */
		while (read_line(fd))
			;
		_exit(0);
	}
	close(lfd);
	snprintf(cmd, sizeof(cmd), "timeout 20 %s --socket %s list 2>&1",
		 snapctl, sa.sun_path);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	st = pclose(f);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sa.sun_path);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	assert_non_null(strstr(out, "QMP input exceeds 1048576 bytes"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_version_usage),
		cmocka_unit_test(test_inspect),
		cmocka_unit_test(test_verify_good_and_bad),
		cmocka_unit_test(test_error_without_id),
	};
	const char *b = getenv("SNAP_BUILD");
	int rc;

	snprintf(snapctl, sizeof(snapctl), "%s/bin/snapctl",
		 b != NULL ? b : "build");
	if (access(snapctl, X_OK) != 0) {
		printf("skipped: %s not built\n", snapctl);
		return 77;
	}
	snprintf(scratch, sizeof(scratch), "%s/tmp-ctl-XXXXXX",
		 b != NULL ? b : "build");
	if (mkdtemp(scratch) == NULL)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* A failed test may have left its copy behind. */
	{
		char left[8192];
		snprintf(left, sizeof(left), "%s/bad.snap", scratch);
		unlink(left);
	}
	rmdir(scratch);
	return rc;
}
