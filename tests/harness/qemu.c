/*
 * tests/harness/qemu.c: QEMU processes for integration tests. It starts
 * qemu-system-x86_64 with the test guest in a private directory, keeps a
 * registry of every instance so that nothing outlives the test (process
 * groups, PR_SET_PDEATHSIG, an atexit hook, signal handlers and the cmocka
 * teardown hn_teardown), and reads the guest's serial console from its file,
 * turning SNAPGUEST/RANGE/READY/TICK/OK/BAD lines into struct hn_guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "tests/harness/harness.h"

#define CON_BUF		8192
#define MAX_ARGS	64

struct hn_qemu {
	struct hn_qemu *next;	/* registry of live instances */
	pid_t pid;
	bool attached;		/* not ours: run by snapd (hn_qemu_attach) */
	bool reaped;
	int status;		/* exit status once reaped */
	char dir[PATH_MAX];
	char qmp_path[PATH_MAX];
	char serial_path[PATH_MAX];
	char log_path[PATH_MAX];
	struct hn_qmp *qmp;
	int con_fd;
	char con_buf[CON_BUF];
	size_t con_len;
	struct hn_guest guest;
	char err[1024];
};

static struct hn_qemu *live;
static unsigned instances;
static char tmpdir[PATH_MAX];
static bool hooks_installed;

static int
set_err(struct hn_qemu *q, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
set_err(struct hn_qemu *q, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q->err, sizeof(q->err), fmt, ap);
	va_end(ap);
	return rc;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void
rm_tree(const char *path)
{
	if (path[0])
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void
kill_all_now(void)
{
	for (struct hn_qemu *q = live; q; q = q->next)
		if (!q->reaped && q->pid > 0)
			kill(-q->pid, SIGKILL);
}

static void
on_signal(int sig)
{
	kill_all_now();
	/*
	 * nftw is not async-signal-safe, but the one test thread is stopped
	 * here and leaving a directory behind on every ^C is worse.
	 */
	rm_tree(tmpdir);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
at_exit(void)
{
	hn_teardown(NULL);
	rm_tree(tmpdir);
}

static void
install_hooks(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT };
	struct sigaction sa;

	if (hooks_installed)
		return;
	hooks_installed = true;
	atexit(at_exit);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
}

const char *
hn_qemu_binary(void)
{
	const char *b = getenv("SNAP_QEMU");

	return b && *b ? b : "qemu-system-x86_64";
}

static bool
find_binary(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (strchr(name, '/'))
		return access(name, X_OK) == 0;
	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (n && snap_fmt(buf, sizeof(buf), "%.*s/%s", (int)n, path,
				  name) == 0 && access(buf, X_OK) == 0)
			return true;
		path += n;
		if (*path)
			path++;
	}
	return false;
}

void
hn_require_qemu(void)
{
	if (!find_binary(hn_qemu_binary())) {
		printf("skipped: '%s' not found\n", hn_qemu_binary());
		exit(77);
	}
}

const char *
hn_guest_path(void)
{
	static char path[PATH_MAX];
	const char *b = getenv("SNAP_BUILD");

	if (!path[0])
		snap_fmt(path, sizeof(path), "%s/guest/snapguest.elf",
			 b && *b ? b : "build");
	return path;
}

const char *
hn_tmpdir(void)
{
	const char *t = getenv("TMPDIR");

	if (tmpdir[0])
		return tmpdir;
	/* UNIX socket paths must stay short: avoid long TMPDIRs. */
	if (!t || !*t || strlen(t) > 60)
		t = "/tmp";
	if (snap_fmt(tmpdir, sizeof(tmpdir), "%s/snap-itest.XXXXXX", t) < 0 ||
	    !mkdtemp(tmpdir)) {
		tmpdir[0] = 0;
		return NULL;
	}
	install_hooks();
	return tmpdir;
}

/* Reap @q if it has exited; true when it is gone. */
static bool
reap(struct hn_qemu *q, int flags)
{
	int st;
	pid_t r;

	if (q->reaped)
		return true;
	if (q->attached) {
		if (kill(q->pid, 0) < 0 && errno == ESRCH) {
			q->reaped = true;
			q->status = 255;	/* not our child: unknown */
		}
		return q->reaped;
	}
	do {
		r = waitpid(q->pid, &st, flags);
	} while (r < 0 && errno == EINTR);
	if (r == q->pid) {
		q->reaped = true;
		q->status = WIFEXITED(st) ? WEXITSTATUS(st) :
			    128 + WTERMSIG(st);
		/* Take down whatever it left in its group (exec: helpers). */
		kill(-q->pid, SIGKILL);
		return true;
	}
	if (r < 0) {		/* not our child any more */
		q->reaped = true;
		q->status = 255;
		return true;
	}
	return false;
}

int
hn_teardown(void **state)
{
	(void)state;
	while (live)
		hn_qemu_free(live);
	return 0;
}

void
hn_qemu_free(struct hn_qemu *q)
{
	if (!q)
		return;
	for (struct hn_qemu **p = &live; *p; p = &(*p)->next) {
		if (*p == q) {
			*p = q->next;
			break;
		}
	}
	hn_qmp_free(q->qmp);
	if (!q->reaped && !q->attached) {
		kill(-q->pid, SIGKILL);
		reap(q, 0);
	}
	if (q->con_fd >= 0)
		close(q->con_fd);
	if (!q->attached)
		rm_tree(q->dir);
	free(q);
}

int
hn_qemu_attach(const char *dir, pid_t pid, struct hn_qemu **out)
{
	struct hn_qemu *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->con_fd = -1;
	q->pid = pid;
	q->attached = true;
	if (snap_fmt(q->dir, sizeof(q->dir), "%s", dir) < 0 ||
	    snap_fmt(q->serial_path, sizeof(q->serial_path), "%s/serial.log",
		     dir) < 0 ||
	    snap_fmt(q->log_path, sizeof(q->log_path), "%s/qemu.log", dir) < 0) {
		free(q);
		return -ENAMETOOLONG;
	}
	q->next = live;
	live = q;
	*out = q;
	return 0;
}

static pid_t
spawn(struct hn_qemu *q, const char **argv)
{
	/* execvp's prototype predates const; it does not write argv. */
	union {
		const char **c;
		char *const *v;
	} args = { .c = argv };
	pid_t parent = getpid(), pid;

	pid = fork();
	if (pid != 0)
		return pid;
	/* Child: own group, die with the test, output to the log. */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	int nul = open("/dev/null", O_RDONLY);
	int log = open(q->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (nul < 0 || log < 0 || dup2(nul, 0) < 0 || dup2(log, 1) < 0 ||
	    dup2(log, 2) < 0)
		_exit(127);
	execvp(argv[0], args.v);
	_exit(127);
}

int
hn_qemu_start(const struct hn_qemu_opts *o, struct hn_qemu **out)
{
	static const struct hn_qemu_opts defaults;
	const char *argv[MAX_ARGS];
	char serial_arg[PATH_MAX + 8], qmp_arg[PATH_MAX + 32];
	struct hn_qemu *q;
	size_t n = 0;
	uint64_t deadline;
	int rc;

	if (!o)
		o = &defaults;
	if (!hn_tmpdir())
		return -errno ? -errno : -EIO;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->con_fd = -1;
	q->pid = -1;
	q->reaped = true;
	rc = snap_fmt(q->dir, sizeof(q->dir), "%s/qemu-%u", tmpdir, ++instances);
	if (rc < 0 || mkdir(q->dir, 0700) < 0) {
		rc = rc < 0 ? rc : -errno;
		q->dir[0] = 0;
		goto out;
	}
	snap_fmt(q->qmp_path, sizeof(q->qmp_path), "%s/qmp.sock", q->dir);
	snap_fmt(q->serial_path, sizeof(q->serial_path), "%s/serial.log", q->dir);
	snap_fmt(q->log_path, sizeof(q->log_path), "%s/qemu.log", q->dir);
	snap_fmt(serial_arg, sizeof(serial_arg), "file:%s", q->serial_path);
	snap_fmt(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off",
		 q->qmp_path);

	argv[n++] = hn_qemu_binary();
	argv[n++] = "-machine";
	argv[n++] = o->machine ? o->machine : "pc-i440fx-7.2";
	argv[n++] = "-accel";
	argv[n++] = "tcg";
	argv[n++] = "-m";
	argv[n++] = o->memory ? o->memory : "64M";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-monitor";
	argv[n++] = "none";
	argv[n++] = "-parallel";
	argv[n++] = "none";
	argv[n++] = "-nic";
	argv[n++] = "none";
	argv[n++] = "-serial";
	argv[n++] = serial_arg;
	argv[n++] = "-qmp";
	argv[n++] = qmp_arg;
	if (!o->no_kernel) {
		argv[n++] = "-kernel";
		argv[n++] = hn_guest_path();
		argv[n++] = "-append";
		argv[n++] = o->guest_args ? o->guest_args : "";
	}
	if (o->paused)
		argv[n++] = "-S";
	if (o->incoming) {
		argv[n++] = "-incoming";
		argv[n++] = o->incoming;
	}
	for (size_t i = 0; o->extra && o->extra[i]; i++) {
		if (n == MAX_ARGS - 1) {
			rc = set_err(q, -E2BIG, "too many qemu arguments");
			goto out;
		}
		argv[n++] = o->extra[i];
	}
	argv[n] = NULL;

	if (!o->no_kernel && access(hn_guest_path(), R_OK) < 0) {
		rc = set_err(q, -errno, "cannot read test guest '%s': %s",
			     hn_guest_path(), strerror(errno));
		goto out;
	}
	install_hooks();
	q->pid = spawn(q, argv);
	if (q->pid < 0) {
		rc = set_err(q, -errno, "cannot fork: %s", strerror(errno));
		goto out;
	}
	q->reaped = false;
	setpgid(q->pid, q->pid);	/* also here: no race with kill(-pid) */
	q->next = live;
	live = q;

	/* Connect QMP in short slices, so a QEMU that dies is seen at once. */
	deadline = snap_now_mono_ns() + 30 * 1000000000ull;
	for (;;) {
		rc = hn_qmp_connect(q->qmp_path, 200, &q->qmp);
		if (rc == 0)
			break;
		if (reap(q, WNOHANG)) {
			rc = set_err(q, SNAP_EQEMU,
				     "qemu exited with status %d at start",
				     q->status);
			goto out;
		}
		if (snap_now_mono_ns() >= deadline) {
			rc = set_err(q, rc, "cannot connect to qmp '%s': %s",
				     q->qmp_path, snap_strerror(rc));
			goto out;
		}
	}
	*out = q;
	q = NULL;
out:
	if (q && rc < 0 && q->err[0])
		hn_report(q, "qemu start", rc);
	hn_qemu_free(q);
	return rc;
}

int
hn_qemu_wait_exit(struct hn_qemu *q, int timeout_ms)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;

	while (!reap(q, WNOHANG)) {
		if (snap_now_mono_ns() >= deadline)
			return set_err(q, -ETIMEDOUT, "qemu did not exit in time");
		usleep(10000);
	}
	return q->status;
}

int
hn_qemu_quit(struct hn_qemu *q, int timeout_ms)
{
	int rc = hn_qmp_exec(q->qmp, "quit", NULL, NULL);

	/* QEMU may close the socket before its reply gets out. */
	if (rc < 0 && rc != -ECONNRESET && rc != -EPIPE)
		return set_err(q, rc, "%s", hn_qmp_error(q->qmp));
	return hn_qemu_wait_exit(q, timeout_ms);
}

struct hn_qmp *
hn_qemu_qmp(struct hn_qemu *q)
{
	return q->qmp;
}

const char *
hn_qemu_dir(const struct hn_qemu *q)
{
	return q->dir;
}

pid_t
hn_qemu_pid(const struct hn_qemu *q)
{
	return q->pid;
}

const struct hn_guest *
hn_qemu_guest(const struct hn_qemu *q)
{
	return &q->guest;
}

const char *
hn_qemu_error(const struct hn_qemu *q)
{
	return q->err[0] ? q->err : "no error";
}

int
hn_qemu_execf(struct hn_qemu *q, json_t **ret, const char *cmd,
	      const char *fmt, ...)
{
	json_t *args = NULL;
	json_error_t jerr;
	va_list ap;
	int rc;

	if (fmt) {
		va_start(ap, fmt);
		args = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
		if (!args)
			return set_err(q, -EINVAL, "bad arguments for '%s': %s",
				       cmd, jerr.text);
	}
	rc = hn_qmp_exec(q->qmp, cmd, args, ret);
	if (rc < 0)
		set_err(q, rc, "%s", hn_qmp_error(q->qmp));
	return rc;
}

int
hn_migrate_wait(struct hn_qemu *q, int timeout_ms)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		json_t *info = NULL;
		const char *st;
		int rc = hn_qemu_execf(q, &info, "query-migrate", NULL);

		if (rc < 0)
			return rc;
		st = json_string_value(json_object_get(info, "status"));
		if (st && strcmp(st, "completed") == 0)
			rc = 1;
		else if (st && (strcmp(st, "failed") == 0 ||
				strcmp(st, "cancelled") == 0))
			rc = set_err(q, SNAP_EQEMU, "migration %s: %s", st,
				     json_string_value(json_object_get(info,
					"error-desc")));
		json_decref(info);
		if (rc != 0)
			return rc < 0 ? rc : 0;
		if (snap_now_mono_ns() >= deadline)
			return set_err(q, -ETIMEDOUT,
				       "migration not completed in time (%s)",
				       st ? st : "no status");
		usleep(20000);
	}
}

/* --- console -------------------------------------------------------------------- */

/* Value of " key=" in @line (base auto-detected), or @dflt. */
static uint64_t
field(const char *line, const char *key, uint64_t dflt)
{
	size_t kl = strlen(key);

	for (const char *p = strchr(line, ' '); p; p = strchr(p + 1, ' ')) {
		if (strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '=')
			return strtoull(p + 2 + kl, NULL, 0);
	}
	return dflt;
}

static bool
starts(const char *line, const char *prefix)
{
	return strncmp(line, prefix, strlen(prefix)) == 0;
}

static void
record(struct hn_qemu *q, const char *line)
{
	struct hn_guest *g = &q->guest;

	if (starts(line, "SNAPGUEST ")) {
		g->configured = true;
		g->seed = field(line, "seed", 0);
		g->zero_pct = field(line, "zero", 0);
		g->single_pct = field(line, "single", 0);
		g->dirty = field(line, "dirty", 0);
		g->verify = field(line, "verify", 0);
		g->tick_ms = field(line, "tick_ms", 0);
		g->nranges = 0;
	} else if (starts(line, "RANGE ") && g->nranges < HN_MAX_RANGES) {
		g->ranges[g->nranges].pfn = field(line, "pfn", 0);
		g->ranges[g->nranges].pages = field(line, "pages", 0);
		g->nranges++;
	} else if (starts(line, "READY ")) {
		g->ready_lines++;
		g->fill = field(line, "fill", 0);
		g->pages = field(line, "pages", 0);
		g->zero_pages = field(line, "zero", 0);
		g->digest = field(line, "digest", 0);
		g->fill_ms = field(line, "ms", 0);
	} else if (starts(line, "TICK ")) {
		g->last_tick = strtoull(line + 5, NULL, 10);
		if (g->tick_lines++ == 0)
			g->first_tick = g->last_tick;
	} else if (starts(line, "OK ")) {
		g->ok_lines++;
	} else if (starts(line, "BAD ")) {
		g->bad_lines++;
	}
}

int
hn_console_line(struct hn_qemu *q, char *buf, size_t size, int timeout_ms)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		char *nl = memchr(q->con_buf, '\n', q->con_len);
		size_t n;

		if (nl || q->con_len == sizeof(q->con_buf)) {
			n = nl ? (size_t)(nl - q->con_buf) : q->con_len;
			size_t take = nl ? n + 1 : n;

			while (n && (q->con_buf[n - 1] == '\r'))
				n--;
			if (n >= size)
				n = size - 1;
			memcpy(buf, q->con_buf, n);
			buf[n] = 0;
			memmove(q->con_buf, q->con_buf + take, q->con_len - take);
			q->con_len -= take;
			record(q, buf);
			return (int)n;
		}
		if (q->con_fd < 0)
			q->con_fd = open(q->serial_path, O_RDONLY | O_CLOEXEC);
		bool dead = reap(q, WNOHANG);
		ssize_t r = 0;

		if (q->con_fd >= 0)
			r = read(q->con_fd, q->con_buf + q->con_len,
				 sizeof(q->con_buf) - q->con_len);
		if (r > 0) {
			q->con_len += (size_t)r;
			continue;
		}
		if (dead)
			return set_err(q, SNAP_EQEMU,
				       "qemu exited with status %d", q->status);
		if (snap_now_mono_ns() >= deadline)
			return set_err(q, -ETIMEDOUT,
				       "no console line within %d ms", timeout_ms);
		usleep(5000);
	}
}

const char *
hn_console_pending(struct hn_qemu *q)
{
	static char pending[CON_BUF + 1];
	ssize_t r;

	if (q->con_fd < 0)
		q->con_fd = open(q->serial_path, O_RDONLY | O_CLOEXEC);
	while (q->con_fd >= 0 && q->con_len < sizeof(q->con_buf) &&
	       (r = read(q->con_fd, q->con_buf + q->con_len,
			 sizeof(q->con_buf) - q->con_len)) > 0)
		q->con_len += (size_t)r;
	memcpy(pending, q->con_buf, q->con_len);
	pending[q->con_len] = 0;
	return pending;
}

/*
 * Read lines until one starts with @want (copied into @line). A guest
 * ERROR or FAULT line ends the wait with SNAP_EPROTO.
 */
static int
wait_for(struct hn_qemu *q, const char *want, char *line, size_t size,
	 int timeout_ms)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;

	for (;;) {
		uint64_t now = snap_now_mono_ns();
		int left = now >= deadline ? 0 :
			   (int)((deadline - now) / 1000000) + 1;
		int rc = hn_console_line(q, line, size, left);

		if (rc == -ETIMEDOUT)
			return set_err(q, rc, "no '%s' line within %d ms",
				       want, timeout_ms);
		if (rc < 0)
			return rc;
		if (starts(line, "ERROR") || starts(line, "FAULT"))
			return set_err(q, SNAP_EPROTO, "guest: %s", line);
		if (starts(line, want))
			return 0;
	}
}

int
hn_wait_ready(struct hn_qemu *q, int timeout_ms)
{
	char line[512];

	return wait_for(q, "READY ", line, sizeof(line), timeout_ms);
}

int
hn_wait_tick(struct hn_qemu *q, uint64_t *tick, int timeout_ms)
{
	char line[512];
	int rc = wait_for(q, "TICK ", line, sizeof(line), timeout_ms);

	if (rc == 0)
		*tick = strtoull(line + 5, NULL, 10);
	return rc;
}

int
hn_wait_verdict(struct hn_qemu *q, struct hn_verdict *v, int timeout_ms)
{
	uint64_t deadline = snap_now_mono_ns() + (uint64_t)timeout_ms * 1000000;
	char line[512];

	for (;;) {
		uint64_t now = snap_now_mono_ns();
		int left = now >= deadline ? 0 :
			   (int)((deadline - now) / 1000000) + 1;
		int rc = wait_for(q, "", line, sizeof(line), left);

		if (rc < 0)
			return rc == -ETIMEDOUT ?
				set_err(q, rc, "no OK or BAD line within %d ms",
					timeout_ms) : rc;
		if (starts(line, "OK ")) {
			memset(v, 0, sizeof(*v));
			v->ok = true;
			v->tick = strtoull(line + 3, NULL, 10);
			return 0;
		}
		if (starts(line, "BAD ")) {
			memset(v, 0, sizeof(*v));
			v->page = field(line, "page", 0);
			v->addr = field(line, "addr", 0);
			v->tick = field(line, "tick", 0);
			v->count = field(line, "count", 0);
			return 0;
		}
	}
}

static void
dump_file(const char *title, const char *path, size_t max)
{
	char buf[4096];
	struct stat st;
	size_t r;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	fprintf(stderr, "--- %s (%s)\n", title, path);
	if (fstat(fileno(f), &st) == 0 && (size_t)st.st_size > max) {
		fseek(f, st.st_size - (off_t)max, SEEK_SET);
		fprintf(stderr, "[... first %zu bytes left out]\n",
			(size_t)st.st_size - max);
	}
	while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, r, stderr);
	fclose(f);
	fprintf(stderr, "--- end of %s\n", title);
}

void
hn_report(const struct hn_qemu *q, const char *what, int rc)
{
	fprintf(stderr, "harness: %s failed: %s", what, snap_strerror(rc));
	if (q && q->err[0])
		fprintf(stderr, ": %s", q->err);
	fprintf(stderr, "\n");
	if (!q)
		return;
	dump_file("guest console", q->serial_path, 3000);
	dump_file("qemu output", q->log_path, 3000);
}
