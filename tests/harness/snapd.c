/*
 * tests/harness/snapd.c: running the real snapd daemon in integration tests.
 *
 * snapd runs in the foreground with a private store under the harness's
 * temporary directory, its output in HOME.log, and dies with the test
 * program (and its guests with it, through snapd's own PR_SET_PDEATHSIG on
 * them). Guests it runs are followed through hn_qemu_attach().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

struct hn_snapd {
	pid_t pid;
	char home[512];
	char sock[600];
	char log[600];
	struct hn_qmp *qmp;
};

static unsigned snapd_count;

static const char *
build_dir(void)
{
	const char *b = getenv("SNAP_BUILD");

	return b && *b ? b : "build";
}

static int
bin_path(const char *name, char *buf, size_t size)
{
	char rel[512];

	if (snap_fmt(rel, sizeof(rel), "%s/bin/%s", build_dir(), name) < 0 ||
	    realpath(rel, buf) == NULL)
		return -ENOENT;
	(void)size;
	return 0;
}

static void
dump_log(const struct hn_snapd *s)
{
	char buf[8192];
	ssize_t n;
	int fd = open(s->log, O_RDONLY);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = 0;
		fprintf(stderr, "--- snapd log ---\n%s--- end ---\n", buf);
	}
	close(fd);
}

int
hn_snapd_start(struct hn_snapd **out)
{
	char bin[4096];
	struct hn_snapd *s;
	const char *tmp = hn_tmpdir();
	uint64_t deadline;
	pid_t parent = getpid();
	int rc;

	if (tmp == NULL)
		return -EIO;
	if (bin_path("snapd", bin, sizeof(bin)) < 0) {
		fprintf(stderr, "harness: no snapd binary under '%s/bin'\n",
			build_dir());
		return -ENOENT;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	snapd_count++;
	snap_fmt(s->home, sizeof(s->home), "%s/snapd-%u", tmp, snapd_count);
	snap_fmt(s->sock, sizeof(s->sock), "%s/control.sock", s->home);
	snap_fmt(s->log, sizeof(s->log), "%s.log", s->home);
	s->pid = fork();
	if (s->pid < 0) {
		rc = -errno;
		free(s);
		return rc;
	}
	if (s->pid == 0) {
		int log = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent || log < 0 || dup2(log, 1) < 0 ||
		    dup2(log, 2) < 0)
			_exit(127);
		execl(bin, bin, "-d", "--home", s->home, "--qemu",
		      hn_qemu_binary(), (char *)NULL);
		_exit(127);
	}
	deadline = snap_now_mono_ns() + 20 * 1000000000ull;
	for (;;) {
		int st;

		rc = hn_qmp_connect(s->sock, 200, &s->qmp);
		if (rc == 0)
			break;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid ||
		    snap_now_mono_ns() >= deadline) {
			dump_log(s);
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			free(s);
			return rc < 0 ? rc : -EIO;
		}
	}
	*out = s;
	return 0;
}

int
hn_snapd_stop(struct hn_snapd *s)
{
	uint64_t deadline;
	int st = 0;

	if (s == NULL)
		return 0;
	hn_qmp_free(s->qmp);
	kill(s->pid, SIGTERM);
	deadline = snap_now_mono_ns() + 30 * 1000000000ull;
	while (waitpid(s->pid, &st, WNOHANG) == 0) {
		if (snap_now_mono_ns() >= deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		dump_log(s);
	free(s);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

struct hn_qmp *
hn_snapd_qmp(struct hn_snapd *s)
{
	return s->qmp;
}

const char *
hn_snapd_home(const struct hn_snapd *s)
{
	return s->home;
}

const char *
hn_snapd_socket(const struct hn_snapd *s)
{
	return s->sock;
}

pid_t
hn_snapd_pid(const struct hn_snapd *s)
{
	return s->pid;
}

int
hn_snapd_connect(struct hn_snapd *s, struct hn_qmp **out)
{
	return hn_qmp_connect(s->sock, 5000, out);
}

int
hn_snapd_attach(struct hn_snapd *s, const char *name, struct hn_qemu **q)
{
	json_t *ret = NULL, *g;
	pid_t pid = -1;
	char dir[1024];
	size_t i;
	int rc;

	rc = hn_qmp_exec(s->qmp, "query-vms", NULL, &ret);
	if (rc < 0)
		return rc;
	json_array_foreach(ret, i, g) {
		if (strcmp(json_string_value(json_object_get(g, "name")), name) == 0)
			pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	}
	json_decref(ret);
	if (pid <= 0)
		return -ESRCH;
	if (snap_fmt(dir, sizeof(dir), "%s/guests/%s", s->home, name) < 0)
		return -ENAMETOOLONG;
	return hn_qemu_attach(dir, pid, q);
}

int
hn_snapd_guest(struct hn_snapd *s, const char *name, const char *memory,
	       const char *guest_args, json_t *extra, struct hn_qemu **q)
{
	char kernel[4096];
	json_t *spec;
	int rc;

	if (realpath(hn_guest_path(), kernel) == NULL) {
		json_decref(extra);
		return -ENOENT;
	}
	spec = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "memory",
			 memory, "kernel", kernel, "append", guest_args,
			 "display", "none");
	if (extra != NULL)
		json_object_set_new(spec, "extra-args", extra);
	rc = hn_qmp_exec(s->qmp, "vm-define", json_pack("{s:o}", "spec", spec),
			 NULL);
	if (rc < 0) {
		fprintf(stderr, "harness: vm-define: %s\n", hn_qmp_error(s->qmp));
		return rc;
	}
	rc = hn_qmp_execf(s->qmp, NULL, "vm-start", "{s:s}", "vm", name);
	if (rc < 0) {
		fprintf(stderr, "harness: vm-start: %s\n", hn_qmp_error(s->qmp));
		return rc;
	}
	return hn_snapd_attach(s, name, q);
}

int
hn_snapd_wait_event(struct hn_qmp *m, const char *name, const char *vm,
		    int timeout_ms, json_t **data)
{
	json_t *ev = NULL;
	int rc = hn_qmp_wait_event_vm(m, name, vm, timeout_ms, &ev);

	if (rc < 0)
		return rc;
	if (data != NULL)
		*data = json_incref(json_object_get(ev, "data"));
	json_decref(ev);
	return 0;
}

int
hn_snapctl(struct hn_snapd *s, char *out, size_t outlen,
	   const char *const *args)
{
	char bin[4096];
	const char *argv[32];
	int pipefd[2], st;
	size_t n = 0, len = 0;
	pid_t pid;

	if (bin_path("snapctl", bin, sizeof(bin)) < 0)
		return -ENOENT;
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = s->sock;
	for (size_t i = 0; args[i] != NULL && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe(pipefd) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		union { const char **c; char *const *v; } a = { .c = argv };

		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		close(pipefd[0]);
		execv(bin, a.v);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		char buf[4096];
		ssize_t r = read(pipefd[0], buf, sizeof(buf));

		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && out != NULL && len + 1 < outlen; i++)
			out[len++] = buf[i];
	}
	if (out != NULL && outlen > 0)
		out[len] = 0;
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
