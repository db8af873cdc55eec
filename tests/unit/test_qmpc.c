/*
 * tests/unit/test_qmpc.c: the QMP client against a scripted fake QEMU on
 * the other end of a socketpair: what it sends, how it matches replies,
 * events, protocol violations, the size limit, and freeing the handle from
 * inside its own callbacks. (tests/integration/itest_qmpc.c does the same
 * against real QEMU.)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapd/loop.h"
#include "snapd/qmpc.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, " \
		 "\"minor\": 2, \"major\": 7}, \"package\": \"\"}, " \
		 "\"capabilities\": [\"oob\"]}}\r\n"

struct t {
	struct loop *l;
	struct qmpc *c;
	int peer;
	char log[64][128];
	int nlog;
	int want;
	bool free_in_reply;    /* free the handle in the first reply */
	bool free_on_ready;
	bool timed_out;
};

static struct t T;

static void __attribute__((format(printf, 1, 2)))
logf_(const char *fmt, ...)
{
	va_list ap;

	assert_true(T.nlog < 64);
	va_start(ap, fmt);
	vsnprintf(T.log[T.nlog++], sizeof(T.log[0]), fmt, ap);
	va_end(ap);
	if (T.nlog >= T.want)
		loop_stop(T.l);
}

static void
on_state(struct qmpc *c, int status, void *arg)
{
	(void)arg;
	logf_("S:%d", status);
	if (status == 0 && T.free_on_ready) {
		qmpc_free(c);
		T.c = NULL;
		loop_stop(T.l);
	}
}

static void
on_event(struct qmpc *c, const char *name, json_t *data,
	 unsigned long long ts_us, void *arg)
{
	char *d = data ? json_dumps(data, JSON_COMPACT) : NULL;
	(void)c;
	(void)arg;

	logf_("E:%s:%s:%llu", name, d ? d : "-", ts_us);
	free(d);
}

static void
on_reply(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	 void *arg)
{
	char *r = ret ? json_dumps(ret, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	if (ret)
		logf_("R:%d:%s", (int)(intptr_t)arg, r);
	else
		logf_("X:%d:%s:%s", (int)(intptr_t)arg, cls, desc);
	free(r);
	if (T.free_in_reply) {
		T.free_in_reply = false;
		qmpc_free(c);
		T.c = NULL;
		loop_stop(T.l);
	}
}

static void
on_guard(struct loop *l, void *arg)
{
	(void)arg;
	T.timed_out = true;
	loop_stop(l);
}

static void
run_until(int n)
{
	struct loop_timer *g;

	T.want = n;
	if (T.nlog >= n)
		return;
	assert_int_equal(loop_timer_add(T.l, 10000, on_guard, NULL, &g), 0);
	assert_int_equal(loop_run(T.l), 0);
	assert_false(T.timed_out);
	loop_timer_cancel(T.l, g);
}

/* Run the loop briefly, for effects that produce no callback. */
static void
spin(void)
{
	assert_int_equal(loop_timer_add(T.l, 20, on_guard, NULL, NULL), 0);
	T.want = 1000;
	assert_int_equal(loop_run(T.l), 0);
	T.timed_out = false;
}

static void
peer_say(const char *s)
{
	assert_int_equal(write(T.peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* Everything the client sent so far. */
static char *
peer_heard(void)
{
	static char buf[65536];
	ssize_t n = recv(T.peer, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int
setup(void **state)
{
	int sv[2];
	(void)state;

	memset(&T, 0, sizeof(T));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    loop_new(&T.l) < 0 ||
	    qmpc_new(T.l, sv[0], on_event, on_state, &T, &T.c) < 0)
		return -1;
	T.peer = sv[1];
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	qmpc_free(T.c);
	close(T.peer);
	loop_free(T.l);
	return 0;
}

static void
exec(const char *cmd, json_t *args, int n)
{
	assert_int_equal(qmpc_exec(T.c, cmd, args, -1, on_reply,
				   (void *)(intptr_t)n), 0);
}

static void
test_handshake_and_order(void **state)
{
	char *heard;
	(void)state;

	/* Queued before the greeting: nothing goes out until negotiated. */
	exec("first", json_pack("{s:i}", "a", 1), 1);
	spin();
	assert_string_equal(peer_heard(), "");
	assert_null(qmpc_greeting(T.c));
	peer_say(GREETING);
	spin();
	assert_string_equal(peer_heard(), "{\"execute\": \"qmp_capabilities\", "
			    "\"id\": 2}\r\n");
	assert_non_null(qmpc_greeting(T.c));
	peer_say("{\"return\": {}, \"id\": 2}\r\n");
	run_until(1);
	assert_string_equal(T.log[0], "S:0");
	spin();
	heard = peer_heard();
	assert_non_null(strstr(heard, "\"execute\": \"first\""));
	assert_non_null(strstr(heard, "\"arguments\": {\"a\": 1}"));
	assert_non_null(strstr(heard, "\"id\": 1"));
	exec("second", NULL, 2);
	/* Events interleave with replies in arrival order; split writes. */
	peer_say("{\"timestamp\": {\"seconds\": 2, \"microseconds\": 5}, "
		 "\"event\": \"STOP\"}\r\n{\"return\": {\"x\": [1]}, ");
	run_until(2);
	peer_say("\"id\": 1}\r\n{\"id\": 3, \"error\": {\"class\": "
		 "\"GenericError\", \"desc\": \"nope\"}}\r\n{\"event\": \"E\", "
		 "\"data\": {\"k\": true}, \"timestamp\": {\"seconds\": -1, "
		 "\"microseconds\": -1}}\r\n");
	run_until(5);
	assert_string_equal(T.log[1], "E:STOP:-:2000005");
	assert_string_equal(T.log[2], "R:1:{\"x\":[1]}");
	assert_string_equal(T.log[3], "X:2:GenericError:nope");
	assert_string_equal(T.log[4], "E:E:{\"k\":true}:0");
	/* EOF: the end is reported; further commands are refused. */
	exec("third", NULL, 3);
	shutdown(T.peer, SHUT_WR);
	run_until(7);
	assert_string_equal(T.log[5], "X:3:Disconnected:connection to QEMU "
			    "closed");
	assert_string_equal(T.log[6], "S:-104");
	assert_int_equal(qmpc_exec(T.c, "x", json_object(), -1, NULL, NULL),
			 -ENOTCONN);
}

static void
negotiate(void)
{
	peer_say(GREETING "{\"return\": {}, \"id\": 1}\r\n");
	run_until(1);
	assert_string_equal(T.log[0], "S:0");
	(void)peer_heard();
}

static void
test_wrong_id(void **state)
{
	(void)state;
	negotiate();
	exec("a", NULL, 1);
	exec("b", NULL, 2);
	spin();
	peer_say("{\"return\": {}, \"id\": 3}\r\n");
	run_until(4);
	assert_string_equal(T.log[1], "X:1:Disconnected:QEMU broke the QMP "
			    "protocol");
	assert_string_equal(T.log[2], "X:2:Disconnected:QEMU broke the QMP "
			    "protocol");
	assert_string_equal(T.log[3], "S:-71");
}

static void
test_violations(void **state)
{
	static const char *const bad[] = {
		"[1]\r\n",                       /* not an object */
		"{\"neither\": 1}\r\n",          /* no event, return, error */
		"{\"return\": {}}\r\n",          /* reply to nothing */
		"{\"error\": {\"class\": 1}, \"id\": 2}\r\n",
		"{\"a\": \"b\n",                 /* broken string */
		"{\"event\": 5}\r\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int sv[2];

		if (i > 0) {
			qmpc_free(T.c);
			close(T.peer);
			memset(T.log, 0, sizeof(T.log));
			T.nlog = 0;
			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv),
					 0);
			assert_int_equal(qmpc_new(T.l, sv[0], on_event, on_state,
						  &T, &T.c), 0);
			T.peer = sv[1];
		}
		negotiate();
		if (i == 3)
			exec("a", NULL, 1);
		peer_say(bad[i]);
		run_until(i == 3 ? 3 : 2);
		assert_string_equal(T.log[T.nlog - 1], "S:-71");
	}
	/* A greeting that is not one. */
	qmpc_free(T.c);
	close(T.peer);
	T.nlog = 0;
	{
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		assert_int_equal(qmpc_new(T.l, sv[0], on_event, on_state, &T,
					  &T.c), 0);
		T.peer = sv[1];
	}
	peer_say("{\"return\": {}}\r\n");
	run_until(1);
	assert_string_equal(T.log[0], "S:-71");
}

static void
test_caps_refused(void **state)
{
	(void)state;
	exec("a", NULL, 1);
	peer_say(GREETING "{\"error\": {\"class\": \"GenericError\", "
		 "\"desc\": \"no\"}, \"id\": 2}\r\n");
	run_until(2);
	/* Never ready; the queued command learns of the end. */
	assert_string_equal(T.log[0], "X:1:Disconnected:QEMU broke the QMP "
			    "protocol");
	assert_string_equal(T.log[1], "S:-71");
}

static void
test_free_in_reply(void **state)
{
	(void)state;
	negotiate();
	exec("a", NULL, 1);
	exec("b", NULL, 2);
	spin();
	T.free_in_reply = true;
	/* Both replies in one read: the second must not reach anyone. */
	peer_say("{\"return\": 1, \"id\": 2}\r\n{\"return\": 2, \"id\": 3}\r\n");
	run_until(2);
	spin();
	assert_int_equal(T.nlog, 2);
	assert_string_equal(T.log[1], "R:1:1");
	assert_null(T.c);
}

static void
test_free_on_ready(void **state)
{
	(void)state;
	T.free_on_ready = true;
	exec("a", NULL, 1);
	peer_say(GREETING "{\"return\": {}, \"id\": 2}\r\n");
	run_until(1);
	spin();
	/* The queued command's callback is never called. */
	assert_int_equal(T.nlog, 1);
	assert_null(T.c);
}

struct flood {
	int fd;
	size_t sent;
};

static void *
flood_main(void *arg)
{
	struct flood *f = arg;
	static char chunk[65536];

	memset(chunk, 'a', sizeof(chunk));
	if (send(f->fd, "{\"event\": \"", 11, MSG_NOSIGNAL) != 11)
		return NULL;
	for (;;) {
		ssize_t n = send(f->fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (n <= 0)
			break;
		f->sent += (size_t)n;
	}
	return NULL;
}

static void
test_oversized(void **state)
{
	struct flood f = { T.peer, 0 };
	pthread_t th;
	(void)state;

	negotiate();
	assert_int_equal(pthread_create(&th, NULL, flood_main, &f), 0);
	run_until(2);
	assert_string_equal(T.log[1], "S:-71");
	pthread_join(th, NULL);
	assert_true(f.sent >= QMPC_MAX_MSG - 65536);
}

/* The fd travels with the command: the peer receives it. */
static void
test_fd_passing(void **state)
{
	int p[2], got = -1;
	char buf[256], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;
	(void)state;

	negotiate();
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qmpc_exec(T.c, "getfd", json_pack("{s:s}", "fdname",
							  "x"), p[1], NULL,
				   NULL), 0);
	close(p[1]);
	spin();
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	n = recvmsg(T.peer, &mh, MSG_DONTWAIT);
	assert_true(n > 0);
	assert_non_null(memmem(buf, (size_t)n, "\"getfd\"", 7));
	cm = CMSG_FIRSTHDR(&mh);
	assert_non_null(cm);
	assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
	memcpy(&got, CMSG_DATA(cm), sizeof(int));
	/* The received fd is the pipe's write end: the only one left. */
	assert_int_equal(write(got, "z", 1), 1);
	assert_int_equal(read(p[0], buf, 1), 1);
	assert_int_equal(buf[0], 'z');
	close(got);
	close(p[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_and_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wrong_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_violations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_caps_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_in_reply, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_on_ready, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_passing, setup, teardown),
	};

	alarm(120);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
