/*
 * tests/unit/test_qmpd.c: the QMP control server over a real UNIX socket.
 *
 * The server's loop runs in a thread of its own; the test thread is the
 * client, with blocking sockets and receive timeouts. Anything that must
 * touch the server (events, counts, held requests) is posted to the loop
 * thread and waited for. Also the framer and request checks on their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "snapd/loop.h"
#include "snapd/qmpd.h"
#include "snapd/qmpwire_int.h"

/* --- the server under test ----------------------------------------------- */

struct fx {
	char dir[64];
	char path[128];
	struct loop *l;
	struct qmpd *s;
	pthread_t th;
	json_t *version;
	struct qmpd_req *held;   /* kept by the "hold" command */
	bool held_orphaned;
	uid_t held_uid;
	int slow_fired;
	bool deny;               /* allow_peer answer */
};

static struct fx F;

static void
cmd_echo(struct qmpd_req *req, json_t *args, void *ctx)
{
	assert_ptr_equal(ctx, &F);
	qmpd_reply_ok(req, json_deep_copy(args));
}

static void
cmd_types(struct qmpd_req *req, json_t *args, void *ctx)
{
	static const char *const allowed[] = { "name", "flag", "n", "obj",
					       "list", NULL };
	const char *name = NULL;
	bool flag = false;
	long long n = -1;
	json_t *obj = NULL, *list = NULL;
	(void)ctx;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "name", true, &name) ||
	    !qmpd_arg_bool(req, args, "flag", false, &flag) ||
	    !qmpd_arg_int(req, args, "n", false, &n) ||
	    !qmpd_arg_obj(req, args, "obj", false, &obj) ||
	    !qmpd_arg_array(req, args, "list", false, &list))
		return;
	qmpd_reply_ok(req, json_pack("{s:s,s:b,s:I,s:b,s:b}", "name", name,
				     "flag", flag, "n", (json_int_t)n,
				     "obj", obj != NULL, "list", list != NULL));
}

static void
on_slow_timer(struct loop *l, void *arg)
{
	struct qmpd_req *req = arg;
	(void)l;

	F.slow_fired++;
	qmpd_reply_ok(req, json_pack("{s:b}", "done", 1));
}

/* Replies from a timer, after the handler has returned. */
static void
cmd_slow(struct qmpd_req *req, json_t *args, void *ctx)
{
	(void)args;
	(void)ctx;
	assert_int_equal(loop_timer_add(F.l, 20, on_slow_timer, req, NULL), 0);
}

/* Keeps the request until the test replies to it. */
static void
cmd_hold(struct qmpd_req *req, json_t *args, void *ctx)
{
	(void)args;
	(void)ctx;
	F.held = req;
	F.held_uid = qmpd_req_uid(req);
}

/* An event sent while the request is served goes out before the reply. */
static void
cmd_emit(struct qmpd_req *req, json_t *args, void *ctx)
{
	(void)ctx;
	qmpd_event(F.s, "TEST_EVENT", json_deep_copy(args));
	qmpd_reply_ok(req, NULL);
}

static const struct qmpd_command commands[] = {
	{ "echo", cmd_echo },
	{ "types", cmd_types },
	{ "slow", cmd_slow },
	{ "hold", cmd_hold },
	{ "emit", cmd_emit },
	{ NULL, NULL },
};

static bool
allow_peer(pid_t pid, uid_t uid, gid_t gid, void *ctx)
{
	(void)gid;
	assert_ptr_equal(ctx, &F);
	assert_int_equal(pid, getpid());
	assert_int_equal(uid, geteuid());
	return !F.deny;
}

static void *
loop_main(void *arg)
{
	(void)arg;
	if (loop_run(F.l) != 0)
		abort();
	return NULL;
}

/* Run @fn(@arg) on the loop thread and wait for it. */
struct call {
	void (*fn)(void *);
	void *arg;
	bool done;
	pthread_mutex_t m;
	pthread_cond_t cv;
};

static void
on_call(struct loop *l, void *arg)
{
	struct call *c = arg;
	(void)l;

	c->fn(c->arg);
	pthread_mutex_lock(&c->m);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->m);
}

static void
on_loop(void (*fn)(void *), void *arg)
{
	struct call c = { fn, arg, false, PTHREAD_MUTEX_INITIALIZER,
			  PTHREAD_COND_INITIALIZER };

	assert_int_equal(loop_post(F.l, on_call, &c), 0);
	pthread_mutex_lock(&c.m);
	while (!c.done)
		pthread_cond_wait(&c.cv, &c.m);
	pthread_mutex_unlock(&c.m);
}

static void
get_count(void *arg)
{
	*(unsigned *)arg = qmpd_client_count(F.s);
}

static unsigned
client_count(void)
{
	unsigned n;

	on_loop(get_count, &n);
	return n;
}

/* Wait (bounded) until the server counts @n clients. */
static void
wait_clients(unsigned n)
{
	for (int i = 0; i < 2000 && client_count() != n; i++)
		usleep(1000);
	assert_int_equal(client_count(), n);
}

static int
setup(void **state)
{
	struct qmpd_config cfg;
	struct snap_err err;
	(void)state;

	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "/tmp/test_qmpd.XXXXXX");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.path, sizeof(F.path), "%s/ctl.sock", F.dir);
	F.version = json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", 0,
			      "minor", 1, "micro", 2, "package", "snapd-test");
	if (loop_new(&F.l) != 0)
		return -1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.socket_path = F.path;
	cfg.version = F.version;
	cfg.commands = commands;
	cfg.ctx = &F;
	cfg.allow_peer = allow_peer;
	if (qmpd_new(F.l, &cfg, &F.s, &err) != 0)
		return -1;
	if (pthread_create(&F.th, NULL, loop_main, NULL) != 0)
		return -1;
	return 0;
}

static void
post_stop(struct loop *l, void *arg)
{
	(void)arg;
	loop_stop(l);
}

static int
teardown(void **state)
{
	(void)state;

	if (loop_post(F.l, post_stop, NULL) != 0)
		return -1;
	pthread_join(F.th, NULL);
	qmpd_free(F.s);
	loop_free(F.l);
	json_decref(F.version);
	/* qmpd_free removed its socket. */
	if (access(F.path, F_OK) == 0)
		return -1;
	rmdir(F.dir);
	return 0;
}

/* --- a blocking test client ---------------------------------------------- */

struct cli {
	int fd;
	char *buf;
	size_t len, cap;
};

static struct cli *
cli_open(void)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct sockaddr_un sa;
	struct timeval tv = { 10, 0 };

	assert_non_null(c);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	assert_true(strlen(F.path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, F.path, strlen(F.path) + 1);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				    sizeof(tv)), 0);
	return c;
}

static void
cli_close(struct cli *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

static void
cli_send_n(struct cli *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

static void
cli_send(struct cli *c, const char *s)
{
	cli_send_n(c, s, strlen(s));
}

/* Receive more bytes; 0 on EOF or reset. Fails the test on a timeout. */
static ssize_t
cli_fill(struct cli *c)
{
	ssize_t n;

	if (c->cap - c->len < 65536) {
		c->cap = c->cap ? c->cap * 2 : 131072;
		c->buf = realloc(c->buf, c->cap);
		assert_non_null(c->buf);
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n < 0 && errno == ECONNRESET)
		return 0;
	if (n < 0)
		fail_msg("recv: %s", strerror(errno));
	c->len += (size_t)n;
	return n;
}

/* The next message, which must end with CRLF. NULL on EOF. */
static json_t *
cli_read(struct cli *c)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;

		if (nl) {
			size_t n = (size_t)(nl - c->buf) + 1;
			json_error_t je;
			json_t *j;

			assert_true(n >= 2 && c->buf[n - 2] == '\r');
			j = json_loadb(c->buf, n, 0, &je);
			if (!j)
				fail_msg("bad reply: %s: %.*s", je.text, (int)n,
					 c->buf);
			memmove(c->buf, c->buf + n, c->len - n);
			c->len -= n;
			return j;
		}
		if (cli_fill(c) == 0)
			return NULL;
	}
}

static json_t *
cli_cmd(struct cli *c, const char *req)
{
	cli_send(c, req);
	return cli_read(c);
}

/* Connect, check the greeting, negotiate. */
static struct cli *
cli_ready(void)
{
	struct cli *c = cli_open();
	json_t *g = cli_read(c), *r;

	assert_non_null(g);
	assert_non_null(json_object_get(g, "QMP"));
	json_decref(g);
	r = cli_cmd(c, "{\"execute\": \"qmp_capabilities\"}\n");
	assert_non_null(json_object_get(r, "return"));
	json_decref(r);
	return c;
}

static void
assert_error(json_t *r, const char *cls, const char *desc)
{
	json_t *e;

	assert_non_null(r);
	e = json_object_get(r, "error");
	if (!e)
		fail_msg("expected an error, got %s", json_dumps(r, 0));
	assert_string_equal(json_string_value(json_object_get(e, "class")), cls);
	if (desc)
		assert_string_equal(json_string_value(json_object_get(e, "desc")),
				    desc);
	assert_null(json_object_get(r, "return"));
}

/* The connection still works: a command gets its answer. */
static void
assert_alive(struct cli *c)
{
	json_t *r = cli_cmd(c, "{\"execute\":\"echo\",\"arguments\":{\"k\":1},"
			    "\"id\":\"alive\"}");

	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "id")),
			    "alive");
	assert_int_equal(json_integer_value(json_object_get(
		json_object_get(r, "return"), "k")), 1);
	json_decref(r);
}

/* --- tests ---------------------------------------------------------------- */

static void
test_greeting_negotiation(void **state)
{
	struct cli *c;
	json_t *g, *r, *e;
	struct stat st;
	bool seen_echo = false, seen_caps = false;
	size_t i;
	(void)state;

	assert_int_equal(stat(F.path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	c = cli_open();
	g = cli_read(c);
	assert_non_null(g);
	assert_true(json_equal(json_object_get(json_object_get(g, "QMP"),
					       "version"), F.version));
	e = json_object_get(json_object_get(g, "QMP"), "capabilities");
	assert_true(json_is_array(e) && json_array_size(e) == 0);
	json_decref(g);

	/* Before negotiation: known and unknown commands alike. */
	r = cli_cmd(c, "{\"execute\":\"query-version\",\"id\":1}");
	assert_error(r, "CommandNotFound", "Expecting capabilities negotiation "
		     "with 'qmp_capabilities'");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
	r = cli_cmd(c, "{\"execute\":\"nope\"}");
	assert_error(r, "CommandNotFound", "Expecting capabilities negotiation "
		     "with 'qmp_capabilities'");
	json_decref(r);
	/* Malformed input keeps its own message. */
	r = cli_cmd(c, "[]");
	assert_error(r, "GenericError", "QMP input must be a JSON object");
	json_decref(r);
	r = cli_cmd(c, "{\"execute\":\"qmp_capabilities\",\"arguments\":"
		    "{\"enable\":[\"oob\"]}}");
	assert_error(r, "GenericError", "Capability oob not available");
	json_decref(r);
	r = cli_cmd(c, "{\"execute\":\"qmp_capabilities\",\"id\":{\"a\":2}}");
	assert_true(json_is_object(json_object_get(r, "return")));
	assert_int_equal(json_object_size(json_object_get(r, "return")), 0);
	json_decref(r);
	r = cli_cmd(c, "{\"execute\":\"qmp_capabilities\"}");
	assert_error(r, "CommandNotFound", "Capabilities negotiation is already "
		     "complete, command ignored");
	json_decref(r);

	r = cli_cmd(c, "{\"execute\":\"query-version\"}");
	assert_true(json_equal(json_object_get(r, "return"), F.version));
	json_decref(r);
	r = cli_cmd(c, "{\"execute\":\"query-commands\"}");
	json_array_foreach(json_object_get(r, "return"), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		seen_echo |= strcmp(n, "echo") == 0;
		seen_caps |= strcmp(n, "qmp_capabilities") == 0;
	}
	assert_true(seen_echo && seen_caps);
	json_decref(r);
	cli_close(c);
}

struct bad {
	const char *in;
	const char *cls;
	const char *desc;     /* exact, or a prefix when ending in "..." */
	const char *id;       /* JSON of the echoed id, or NULL for none */
};

static void
test_malformed(void **state)
{
	static const struct bad cases[] = {
		{ "{\"execute\":\"echo\",}", "GenericError",
		  "JSON parse error, ...", NULL },
		{ "{\"execute\" \"echo\"}", "GenericError",
		  "JSON parse error, ...", NULL },
		{ "}", "GenericError", "JSON parse error, ...", NULL },
		{ "nul\n", "GenericError", "JSON parse error, ...", NULL },
		{ "{'execute':'echo'}", "GenericError",
		  "JSON parse error, ...", NULL },
		{ "[1, 2]", "GenericError", "QMP input must be a JSON object",
		  NULL },
		{ "42\n", "GenericError", "QMP input must be a JSON object",
		  NULL },
		{ "\"str\"", "GenericError", "QMP input must be a JSON object",
		  NULL },
		{ "{\"id\":7}", "GenericError",
		  "QMP input lacks member 'execute'", "7" },
		{ "{\"execute\":1,\"id\":\"a\"}", "GenericError",
		  "QMP input member 'execute' must be a string", "\"a\"" },
		{ "{\"execute\":\"echo\",\"arguments\":[],\"id\":null}",
		  "GenericError",
		  "QMP input member 'arguments' must be an object", "null" },
		{ "{\"execute\":\"echo\",\"foo\":1}", "GenericError",
		  "QMP input member 'foo' is unexpected", NULL },
		{ "{\"exec-oob\":\"echo\"}", "GenericError",
		  "QMP input member 'exec-oob' is unexpected", NULL },
		{ "{\"execute\":\"echo\",\"id\":1,\"id\":2}", "GenericError",
		  "JSON parse error, duplicate key", NULL },
		{ "{\"execute\":\"nope\",\"id\":[1]}", "CommandNotFound",
		  "The command nope has not been found", "[1]" },
		{ "{\"execute\":\"types\",\"arguments\":{}}", "GenericError",
		  "Parameter 'name' is missing", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":1}}",
		  "GenericError",
		  "Invalid parameter type for 'name', expected: string", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		  "\"flag\":1}}", "GenericError",
		  "Invalid parameter type for 'flag', expected: boolean", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		  "\"n\":1.5}}", "GenericError",
		  "Invalid parameter type for 'n', expected: integer", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		  "\"obj\":[]}}", "GenericError",
		  "Invalid parameter type for 'obj', expected: object", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		  "\"list\":{}}}", "GenericError",
		  "Invalid parameter type for 'list', expected: array", NULL },
		{ "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		  "\"zzz\":1},\"id\":\"u\"}", "GenericError",
		  "Parameter 'zzz' is unexpected", "\"u\"" },
		{ "{\"execute\":\"query-version\",\"arguments\":{\"a\":1}}",
		  "GenericError", "Parameter 'a' is unexpected", NULL },
		/* An unterminated string ends at the newline. */
		{ "{\"execute\":\"echo\",\"id\":\"ab\n", "GenericError",
		  "JSON parse error, control character in string", NULL },
	};
	struct cli *c = cli_ready();
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad *b = &cases[i];
		json_t *r = cli_cmd(c, b->in), *e, *id;
		const char *desc;
		size_t dl = strlen(b->desc);

		assert_non_null(r);
		e = json_object_get(r, "error");
		if (!e)
			fail_msg("case %zu: no error for %s", i, b->in);
		assert_string_equal(json_string_value(json_object_get(e,
			"class")), b->cls);
		desc = json_string_value(json_object_get(e, "desc"));
		if (dl > 3 && strcmp(b->desc + dl - 3, "...") == 0)
			assert_memory_equal(desc, b->desc, dl - 3);
		else
			assert_string_equal(desc, b->desc);
		id = json_object_get(r, "id");
		if (!b->id) {
			assert_null(id);
		} else {
			json_t *want = json_loads(b->id, JSON_DECODE_ANY, NULL);
			assert_non_null(id);
			assert_true(json_equal(id, want));
			json_decref(want);
		}
		json_decref(r);
		assert_alive(c);
	}
	cli_close(c);
}

static void
test_types_ok(void **state)
{
	struct cli *c = cli_ready();
	json_t *r, *ret;
	(void)state;

	r = cli_cmd(c, "{\"execute\":\"types\",\"arguments\":{\"name\":\"x\","
		    "\"flag\":true,\"n\":-9000000000,\"obj\":{},\"list\":[]}}");
	ret = json_object_get(r, "return");
	assert_string_equal(json_string_value(json_object_get(ret, "name")), "x");
	assert_true(json_is_true(json_object_get(ret, "flag")));
	assert_true(json_integer_value(json_object_get(ret, "n")) ==
		    -9000000000LL);
	assert_true(json_is_true(json_object_get(ret, "obj")));
	assert_true(json_is_true(json_object_get(ret, "list")));
	json_decref(r);
	/* Optional members absent leave the defaults. */
	r = cli_cmd(c, "{\"execute\":\"types\",\"arguments\":{\"name\":\"y\"}}");
	ret = json_object_get(r, "return");
	assert_true(json_is_false(json_object_get(ret, "flag")));
	assert_int_equal(json_integer_value(json_object_get(ret, "n")), -1);
	json_decref(r);
	cli_close(c);
}

static void
test_id_any_type(void **state)
{
	static const char *const ids[] = {
		"0", "-5", "1.5", "\"s\"", "\"\\u00e9\\n\"", "true", "false",
		"null", "[]", "[1, {\"a\": []}]", "{}", "{\"k\": {\"n\": null}}",
	};
	struct cli *c = cli_ready();
	(void)state;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		char req[256];
		json_t *r, *want;

		snprintf(req, sizeof(req), "{\"id\": %s, \"execute\": \"echo\"}",
			 ids[i]);
		r = cli_cmd(c, req);
		want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		assert_non_null(want);
		assert_non_null(json_object_get(r, "return"));
		if (!json_equal(json_object_get(r, "id"), want))
			fail_msg("id %s came back as %s", ids[i],
				 json_dumps(r, 0));
		json_decref(want);
		json_decref(r);
	}
	cli_close(c);
}

static void
emit_event(void *arg)
{
	qmpd_event(F.s, "TEST_EVENT", arg ? json_pack("{s:i}", "x", 1) : NULL);
}

static void
test_events_after_negotiation(void **state)
{
	struct cli *a = cli_open(), *b = cli_ready();
	json_t *g, *r, *ts;
	(void)state;

	g = cli_read(a);
	json_decref(g);
	on_loop(emit_event, &F);
	r = cli_read(b);
	assert_string_equal(json_string_value(json_object_get(r, "event")),
			    "TEST_EVENT");
	assert_int_equal(json_integer_value(json_object_get(
		json_object_get(r, "data"), "x")), 1);
	ts = json_object_get(r, "timestamp");
	assert_true(json_integer_value(json_object_get(ts, "seconds")) >
		    1600000000);
	assert_true(json_is_integer(json_object_get(ts, "microseconds")));
	json_decref(r);
	/* Without data there is no "data" member. */
	on_loop(emit_event, NULL);
	r = cli_read(b);
	assert_null(json_object_get(r, "data"));
	json_decref(r);
	/* a never got the events: its next message is its own reply. */
	r = cli_cmd(a, "{\"execute\":\"qmp_capabilities\",\"id\":\"neg\"}");
	assert_string_equal(json_string_value(json_object_get(r, "id")), "neg");
	json_decref(r);
	/* An event raised by a command precedes the command's reply. */
	cli_send(a, "{\"execute\":\"emit\",\"arguments\":{\"y\":2},\"id\":3}");
	r = cli_read(a);
	assert_string_equal(json_string_value(json_object_get(r, "event")),
			    "TEST_EVENT");
	json_decref(r);
	r = cli_read(a);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 3);
	json_decref(r);
	r = cli_read(b);
	assert_int_equal(json_integer_value(json_object_get(
		json_object_get(r, "data"), "y")), 2);
	json_decref(r);
	cli_close(a);
	cli_close(b);
}

static void
test_async_reply_in_order(void **state)
{
	struct cli *c = cli_ready();
	json_t *r;
	(void)state;

	/* The echo waits for the slow command: replies keep request order. */
	cli_send(c, "{\"execute\":\"slow\",\"id\":5}{\"execute\":\"echo\","
		 "\"id\":6}");
	r = cli_read(c);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 5);
	assert_true(json_is_true(json_object_get(json_object_get(r, "return"),
						 "done")));
	json_decref(r);
	r = cli_read(c);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 6);
	json_decref(r);
	assert_int_equal(F.slow_fired, 1);
	cli_close(c);
}

static void
check_held(void *arg)
{
	bool *have = arg;

	*have = F.held != NULL;
	if (F.held)
		F.held_orphaned = qmpd_req_orphaned(F.held);
}

static void
reply_held(void *arg)
{
	(void)arg;
	F.held_uid = qmpd_req_uid(F.held);
	qmpd_reply_ok(F.held, json_pack("{s:s}", "late", "yes"));
	F.held = NULL;
}

static void
wait_held(void)
{
	bool have = false;

	for (int i = 0; i < 2000 && !have; i++) {
		on_loop(check_held, &have);
		if (!have)
			usleep(1000);
	}
	assert_true(have);
}

/* While one client's request is held, another client is served. */
static void
test_other_client_during_job(void **state)
{
	struct cli *a = cli_ready(), *b = cli_ready();
	json_t *r;
	(void)state;

	cli_send(a, "{\"execute\":\"hold\",\"id\":\"job\"}");
	wait_held();
	assert_int_equal(F.held_uid, geteuid());
	assert_alive(b);
	on_loop(reply_held, NULL);
	r = cli_read(a);
	assert_string_equal(json_string_value(json_object_get(r, "id")), "job");
	assert_string_equal(json_string_value(json_object_get(
		json_object_get(r, "return"), "late")), "yes");
	json_decref(r);
	cli_close(a);
	cli_close(b);
}

static void
test_orphaned_request(void **state)
{
	struct cli *a = cli_ready();
	bool have;
	(void)state;

	cli_send(a, "{\"execute\":\"hold\"}");
	wait_held();
	on_loop(check_held, &have);
	assert_false(F.held_orphaned);
	cli_close(a);
	wait_clients(0);
	on_loop(check_held, &have);
	assert_true(have);
	assert_true(F.held_orphaned);
	/* The reply goes nowhere; the request is freed (ASan checks). */
	on_loop(reply_held, NULL);
	assert_int_equal(F.held_uid, (uid_t)-1);
}

static void
test_client_limit(void **state)
{
	struct cli *c[QMPD_MAX_CLIENTS + 1];
	json_t *r;
	(void)state;

	for (int i = 0; i < QMPD_MAX_CLIENTS; i++) {
		c[i] = cli_open();
		r = cli_read(c[i]);
		assert_non_null(json_object_get(r, "QMP"));
		json_decref(r);
	}
	c[QMPD_MAX_CLIENTS] = cli_open();
	r = cli_read(c[QMPD_MAX_CLIENTS]);
	assert_error(r, "GenericError", "too many clients");
	json_decref(r);
	assert_null(cli_read(c[QMPD_MAX_CLIENTS]));
	cli_close(c[QMPD_MAX_CLIENTS]);
	assert_int_equal(client_count(), QMPD_MAX_CLIENTS);
	/* A slot freed is a slot available. */
	cli_close(c[0]);
	wait_clients(QMPD_MAX_CLIENTS - 1);
	c[0] = cli_ready();
	assert_alive(c[0]);
	for (int i = 0; i < QMPD_MAX_CLIENTS; i++)
		cli_close(c[i]);
	wait_clients(0);
}

static void
test_several_in_one_write(void **state)
{
	struct cli *c = cli_ready();
	json_t *r;
	(void)state;

	cli_send(c, "{\"execute\":\"echo\",\"id\":1}\r\n"
		 "  {\"execute\":\"echo\",\"arguments\":{\"s\":\"}{\\\"\"},"
		 "\"id\":2}{\"execute\":\"echo\",\"id\":3}[]"
		 "{\"execute\":\"echo\",\"id\":4}\n");
	for (int i = 1; i <= 4; i++) {
		r = cli_read(c);
		assert_int_equal(json_integer_value(json_object_get(r, "id")), i);
		if (i == 2)
			assert_string_equal(json_string_value(json_object_get(
				json_object_get(r, "return"), "s")), "}{\"");
		json_decref(r);
		if (i == 3) {
			r = cli_read(c);
			assert_error(r, "GenericError",
				     "QMP input must be a JSON object");
			json_decref(r);
		}
	}
	cli_close(c);
}

static void
test_split_byte_by_byte(void **state)
{
	const char *req = "{\"execute\": \"echo\", \"arguments\": {\"a\": "
			  "[1, {\"b\": \"x\\\"]}\"}]}, \"id\": \"bytes\"}";
	struct cli *c = cli_ready();
	json_t *r;
	(void)state;

	for (size_t i = 0; req[i]; i++) {
		cli_send_n(c, req + i, 1);
		if (i % 8 == 0)
			usleep(200); /* let the server see partial input */
	}
	r = cli_read(c);
	assert_string_equal(json_string_value(json_object_get(r, "id")),
			    "bytes");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
		json_object_get(json_object_get(r, "return"), "a"), 1), "b")),
		"x\"]}");
	json_decref(r);
	cli_close(c);
}

static void
test_oversized(void **state)
{
	struct cli *c = cli_ready();
	size_t big = QMPD_MAX_MSG + 4096;
	char *req = malloc(big + 64);
	json_t *r;
	char want[64];
	(void)state;

	assert_non_null(req);
	/* A string far over the limit, with brackets inside it. */
	strcpy(req, "{\"execute\":\"echo\",\"id\":9,\"arguments\":{\"s\":\"");
	memset(req + strlen(req), '{', big);
	strcpy(req + big, "\"}}");
	cli_send(c, req);
	r = cli_read(c);
	snprintf(want, sizeof(want), "QMP input exceeds %u bytes", QMPD_MAX_MSG);
	assert_error(r, "GenericError", want);
	assert_null(json_object_get(r, "id"));
	json_decref(r);
	assert_alive(c);
	/* Just under the limit is fine. */
	memset(req, ' ', QMPD_MAX_MSG);
	memcpy(req, "{\"execute\":\"echo\",\"id\":10}", 26);
	cli_send_n(c, req, QMPD_MAX_MSG);
	r = cli_read(c);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 10);
	json_decref(r);
	/* Too deep: refused as QEMU refuses it, the rest skipped. */
	memset(req, '[', 1100);
	memset(req + 1100, ']', 1100);
	cli_send_n(c, req, 2200);
	r = cli_read(c);
	assert_error(r, "GenericError", "JSON nesting depth limit exceeded");
	json_decref(r);
	assert_alive(c);
	free(req);
	cli_close(c);
}

/* A client that never reads is cut off when its output passes the cap. */
static void
test_output_cap(void **state)
{
	struct cli *c = cli_ready();
	size_t chunk = 900 * 1024, n = 0;
	char *req = malloc(chunk + 128);
	int sent = 0;
	(void)state;

	assert_non_null(req);
	strcpy(req, "{\"execute\":\"echo\",\"arguments\":{\"s\":\"");
	n = strlen(req);
	memset(req + n, 'a', chunk);
	strcpy(req + n + chunk, "\"}}");
	n = strlen(req);
	for (int i = 0; i < 40; i++) {
		const char *p = req;
		size_t left = n;
		while (left > 0) {
			ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL);
			if (w <= 0)
				goto cut;
			p += w;
			left -= (size_t)w;
		}
		sent++;
	}
cut:
	free(req);
	wait_clients(0);
	/* More than the cap's worth of replies were asked for. */
	assert_true((size_t)sent * chunk > QMPD_MAX_OUTBUF);
	cli_close(c);
}

static void
test_half_close(void **state)
{
	struct cli *c = cli_ready();
	json_t *r;
	(void)state;

	cli_send(c, "{\"execute\":\"slow\",\"id\":1}{\"execute\":\"echo\","
		 "\"id\":2}{\"execute\":\"ech");
	shutdown(c->fd, SHUT_WR);
	r = cli_read(c);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
	r = cli_read(c);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
	json_decref(r);
	/* The partial third request is dropped and the server hangs up. */
	assert_null(cli_read(c));
	cli_close(c);
	wait_clients(0);
}

static void
set_deny(void *arg)
{
	F.deny = *(bool *)arg;
}

static void
test_peer_refused(void **state)
{
	bool yes = true, no = false;
	struct cli *c;
	char b;
	(void)state;

	on_loop(set_deny, &yes);
	c = cli_open();
	assert_int_equal(recv(c->fd, &b, 1, 0), 0);
	cli_close(c);
	on_loop(set_deny, &no);
	c = cli_ready();
	cli_close(c);
}

static void
test_socket_replacement(void **state)
{
	struct qmpd_config cfg;
	struct snap_err err;
	struct qmpd *s2 = NULL;
	struct sockaddr_un sa;
	char path[160];
	int fd;
	(void)state;

	memset(&cfg, 0, sizeof(cfg));
	cfg.version = F.version;
	/* The live socket of the running server is not taken over. */
	cfg.socket_path = F.path;
	snap_err_clear(&err);
	assert_int_equal(qmpd_new(F.l, &cfg, &s2, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "in use"));
	assert_null(s2);
	/* A stale socket (nobody listening) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", F.dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	cfg.socket_path = path;
	/* The second server is never run; creating and freeing it is enough. */
	assert_int_equal(qmpd_new(F.l, &cfg, &s2, NULL), 0);
	qmpd_free(s2);
	assert_int_equal(access(path, F_OK), -1);
	/* A regular file is never removed. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(qmpd_new(F.l, &cfg, &s2, &err), -EEXIST);
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
}

/* --- the framer and checks without sockets ------------------------------- */

/* Feed @in in pieces of @step bytes; collect events as text. */
static void
frame_all(const char *in, size_t len, size_t step, size_t max, char *out,
	  size_t outlen)
{
	struct qmp_framer f;
	size_t o = 0;

	qmp_framer_init(&f, max);
	out[0] = '\0';
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step, used = 0;

		while (used < n) {
			enum qmp_frame ev;
			used += qmp_framer_scan(&f, in + off + used, n - used, &ev);
			if (ev == QMP_FRAME_MSG)
				o += (size_t)snprintf(out + o, outlen - o, "<%.*s>",
						      (int)f.len, f.buf);
			else if (ev != QMP_FRAME_NONE)
				o += (size_t)snprintf(out + o, outlen - o, "!%d",
						      (int)ev);
		}
	}
	qmp_framer_release(&f);
}

static void
test_framer(void **state)
{
	static const char in[] =
		" {\"a\":\"}]\\\\\"}[1,[2]]\r\n\"s\\\"t\" 12 true{\"x\":1}"
		"}{\"u\":\"bad\n{\"ok\":{}} 7";
	const char *want =
		"<{\"a\":\"}]\\\\\"}><[1,[2]]><\"s\\\"t\"><12><true>"
		"<{\"x\":1}><}>!4<{\"ok\":{}}>";
	char out[512];
	(void)state;

	/* Every split of the same input gives the same messages. */
	for (size_t step = 1; step <= sizeof(in); step++) {
		frame_all(in, sizeof(in) - 1, step, 1024, out, sizeof(out));
		assert_string_equal(out, want);
	}
	/* A limit of 8 bytes: the second message is skipped to its end. */
	frame_all("{\"a\":1} {\"abcdefgh\":[\"]\"]} [2]", 31, 3, 8, out,
		  sizeof(out));
	assert_string_equal(out, "<{\"a\":1}>!2<[2]>");
	/* A closing byte that passes the limit still ends the message. */
	frame_all("[1234567] [1]", 13, 1, 8, out, sizeof(out));
	assert_string_equal(out, "!2<[1]>");
	frame_all("[123456] [1]", 12, 1, 8, out, sizeof(out));
	assert_string_equal(out, "<[123456]><[1]>");
	/* A long scalar too. */
	frame_all("123456789012 [1]", 16, 5, 8, out, sizeof(out));
	assert_string_equal(out, "!2<[1]>");
}

static void
test_request_parse(void **state)
{
	struct qmp_request r;
	char desc[256];
	static const char ok[] = "{\"id\":[2],\"arguments\":{\"x\":1},"
				 "\"execute\":\"go\"}";
	(void)state;

	assert_int_equal(qmp_request_parse(ok, sizeof(ok) - 1, &r, desc,
					   sizeof(desc)), 0);
	assert_string_equal(r.execute, "go");
	assert_int_equal(json_integer_value(json_object_get(r.args, "x")), 1);
	assert_true(json_is_array(r.id));
	qmp_request_clear(&r);
	assert_int_equal(qmp_request_parse("{\"execute\":\"go\"}x", 17, &r, desc,
					   sizeof(desc)), -1);
	assert_memory_equal(desc, "JSON parse error, ", 18);
	assert_null(r.root);
	qmp_request_clear(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framer),
		cmocka_unit_test(test_request_parse),
		cmocka_unit_test_setup_teardown(test_greeting_negotiation, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_types_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_id_any_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_after_negotiation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_reply_in_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_other_client_during_job,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_orphaned_request, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_several_in_one_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_split_byte_by_byte, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_socket_replacement, setup,
						teardown),
	};

	alarm(120);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
