/*
 * tests/integration/itest_qmpc.c: the QMP client against real QEMU 7.2.
 *
 * QEMU is started the way snapd starts it: snapd creates and binds a
 * listening UNIX socket, passes it as "-chardev socket,fd=N,server=on,
 * wait=off", connects to it itself and hands the connection to qmpc. The
 * test then negotiates, queries, follows STOP/RESUME, passes an fd with
 * getfd (and proves QEMU holds it), and quits, checking that every command
 * gets exactly one callback and the end is reported after them.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapd/loop.h"
#include "snapd/qmpc.h"
#include "tests/harness/harness.h"

#define MAX_LOG 64

struct t {
	struct loop *l;
	struct qmpc *c;
	pid_t qemu;
	bool ready;
	int ended;          /* end callbacks seen */
	int end_status;
	bool timed_out;
	/* Everything that happened, in order: "R:<n>", "E:<name>", "D:<n>"
	 * (Disconnected), "X:<n>:<class>" (error), "END". */
	char log[MAX_LOG][96];
	int nlog;
	json_t *ret[MAX_LOG];  /* return values by command number */
	int want;           /* stop the loop when nlog reaches this */
};

static struct t T;

static void __attribute__((format(printf, 1, 2)))
logf_(const char *fmt, ...)
{
	va_list ap;

	assert_true(T.nlog < MAX_LOG);
	va_start(ap, fmt);
	vsnprintf(T.log[T.nlog++], sizeof(T.log[0]), fmt, ap);
	va_end(ap);
	if (T.nlog >= T.want)
		loop_stop(T.l);
}

static void
on_state(struct qmpc *c, int status, void *arg)
{
	assert_ptr_equal(arg, &T);
	assert_ptr_equal(c, T.c);
	if (status == 0) {
		assert_false(T.ready);
		T.ready = true;
		logf_("READY");
	} else {
		T.ended++;
		T.end_status = status;
		logf_("END");
	}
}

static void
on_event(struct qmpc *c, const char *name, json_t *data,
	 unsigned long long ts_us, void *arg)
{
	(void)c;
	(void)data;
	(void)arg;
	/* QEMU stamps events with the wall clock. */
	assert_true(ts_us > 1600000000ull * 1000000ull);
	logf_("E:%s", name);
}

static void
on_reply(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	 void *arg)
{
	int n = (int)(intptr_t)arg;
	(void)c;

	if (ret) {
		assert_null(cls);
		T.ret[n] = json_incref(ret);
		logf_("R:%d", n);
	} else if (strcmp(cls, "Disconnected") == 0) {
		assert_non_null(desc);
		logf_("D:%d", n);
	} else {
		logf_("X:%d:%s:%s", n, cls, desc);
	}
}

static void
on_guard(struct loop *l, void *arg)
{
	(void)arg;
	T.timed_out = true;
	loop_stop(l);
}

/* Run the loop until @n log entries exist (bounded by a guard timer). */
static void
run_until(int n)
{
	struct loop_timer *g;

	T.want = n;
	if (T.nlog >= n)
		return;
	assert_int_equal(loop_timer_add(T.l, 60000, on_guard, NULL, &g), 0);
	assert_int_equal(loop_run(T.l), 0);
	if (T.timed_out)
		fail_msg("timed out after: %s", T.nlog ? T.log[T.nlog - 1] : "-");
	loop_timer_cancel(T.l, g);
	assert_true(T.nlog >= n);
}

static bool
logged(int from, const char *what)
{
	for (int i = from; i < T.nlog; i++)
		if (strcmp(T.log[i], what) == 0)
			return true;
	return false;
}

static void
exec(const char *cmd, json_t *args, int fd, int n)
{
	assert_int_equal(qmpc_exec(T.c, cmd, args, fd, on_reply,
				   (void *)(intptr_t)n), 0);
}

/* Start QEMU on a listening socket we created; return our connection. */
static int
start_qemu(void)
{
	struct sockaddr_un sa;
	char fdarg[96];
	int lfd, cfd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
				     "%s/qmp.sock", hn_tmpdir()) <
		    sizeof(sa.sun_path));
	unlink(sa.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0); /* inherited: no CLOEXEC */
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	snprintf(fdarg, sizeof(fdarg), "socket,id=mon,fd=%d,server=on,wait=off",
		 lfd);
	T.qemu = fork();
	assert_true(T.qemu >= 0);
	if (T.qemu == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		execlp(hn_qemu_binary(), hn_qemu_binary(),
		       "-machine", "pc-i440fx-7.2", "-accel", "tcg",
		       "-nodefaults", "-S", "-m", "32M", "-display", "none",
		       "-chardev", fdarg, "-mon", "chardev=mon,mode=control",
		       (char *)NULL);
		_exit(127);
	}
	/* The backlog takes our connection before QEMU accepts it. */
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cfd >= 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(lfd);
	unlink(sa.sun_path);
	return cfd;
}

static int
teardown(void **state)
{
	(void)state;
	qmpc_free(T.c);
	T.c = NULL;
	if (T.qemu > 0) {
		kill(T.qemu, SIGKILL);
		waitpid(T.qemu, NULL, 0);
		T.qemu = 0;
	}
	for (int i = 0; i < MAX_LOG; i++)
		json_decref(T.ret[i]);
	loop_free(T.l);
	memset(&T, 0, sizeof(T));
	return hn_teardown(state);
}

static bool
hup(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

static void
test_qemu_session(void **state)
{
	json_t *g;
	int pfd[2], mark, st;
	(void)state;

	memset(&T, 0, sizeof(T));
	assert_int_equal(loop_new(&T.l), 0);
	assert_int_equal(qmpc_new(T.l, start_qemu(), on_event, on_state, &T,
				  &T.c), 0);
	assert_null(qmpc_greeting(T.c));
	/* Queued before the handshake: sent once negotiated. */
	exec("query-status", NULL, -1, 1);
	run_until(2);
	assert_string_equal(T.log[0], "READY");
	assert_string_equal(T.log[1], "R:1");
	g = qmpc_greeting(T.c);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		json_object_get(g, "version"), "qemu"), "major")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
		json_object_get(g, "version"), "qemu"), "minor")), 2);
	assert_string_equal(json_string_value(json_object_get(T.ret[1],
							      "status")),
			    "prelaunch");

	/* cont -> RESUME, stop -> STOP, each with its reply. */
	mark = T.nlog;
	exec("cont", NULL, -1, 2);
	run_until(mark + 2);
	assert_true(logged(mark, "R:2") && logged(mark, "E:RESUME"));
	mark = T.nlog;
	exec("stop", NULL, -1, 3);
	run_until(mark + 2);
	assert_true(logged(mark, "R:3") && logged(mark, "E:STOP"));
	mark = T.nlog;
	exec("query-status", NULL, -1, 4);
	run_until(mark + 1);
	assert_string_equal(json_string_value(json_object_get(T.ret[4],
							      "status")),
			    "paused");

	/* getfd: the fd travels with the command; QEMU then holds the pipe's
	 * only write end, and closefd drops it. */
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	mark = T.nlog;
	exec("getfd", json_pack("{s:s}", "fdname", "snapfd"), pfd[1], 5);
	close(pfd[1]);
	run_until(mark + 1);
	assert_string_equal(T.log[mark], "R:5");
	assert_false(hup(pfd[0]));
	mark = T.nlog;
	exec("getfd", json_pack("{s:s}", "fdname", "nofd"), -1, 6);
	exec("closefd", json_pack("{s:s}", "fdname", "snapfd"), -1, 7);
	run_until(mark + 2);
	assert_string_equal(T.log[mark], "X:6:GenericError:No file descriptor "
			    "supplied via SCM_RIGHTS");
	assert_string_equal(T.log[mark + 1], "R:7");
	assert_true(hup(pfd[0]));
	close(pfd[0]);

	/* quit: QEMU answers (SHUTDOWN may come first) and hangs up; the
	 * command queued behind quit gets exactly one callback, and the end
	 * is reported after every callback. */
	mark = T.nlog;
	exec("quit", NULL, -1, 8);
	exec("query-status", NULL, -1, 9);
	run_until(mark + 1);
	for (int i = 0; i < 100 && T.ended == 0; i++)
		run_until(T.nlog + 1);
	assert_int_equal(T.ended, 1);
	assert_int_equal(T.end_status, -ECONNRESET);
	assert_string_equal(T.log[T.nlog - 1], "END");
	assert_true(logged(mark, "E:SHUTDOWN"));
	assert_true(logged(mark, "R:8"));
	assert_true(logged(mark, "R:9") != logged(mark, "D:9"));
	assert_int_equal(qmpc_exec(T.c, "query-status", NULL, -1, on_reply,
				   NULL), -ENOTCONN);
	assert_int_equal(waitpid(T.qemu, &st, 0), T.qemu);
	T.qemu = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* QEMU killed with commands outstanding: all get "Disconnected". */
static void
test_qemu_killed(void **state)
{
	int mark, st;
	(void)state;

	memset(&T, 0, sizeof(T));
	assert_int_equal(loop_new(&T.l), 0);
	assert_int_equal(qmpc_new(T.l, start_qemu(), on_event, on_state, &T,
				  &T.c), 0);
	run_until(1);
	assert_string_equal(T.log[0], "READY");
	kill(T.qemu, SIGKILL);
	assert_int_equal(waitpid(T.qemu, &st, 0), T.qemu);
	T.qemu = 0;
	mark = T.nlog;
	exec("query-status", NULL, -1, 1);
	exec("query-name", NULL, -1, 2);
	run_until(mark + 3);
	assert_string_equal(T.log[mark], "D:1");
	assert_string_equal(T.log[mark + 1], "D:2");
	assert_string_equal(T.log[mark + 2], "END");
	assert_true(T.end_status < 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_qemu_session, teardown),
		cmocka_unit_test_teardown(test_qemu_killed, teardown),
	};

	hn_require_qemu();
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
