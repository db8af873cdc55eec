/*
 * snapd/guest.c: guests and their QEMU processes.
 *
 * Launches QEMU with the command line built by spec.c, connects to its QMP
 * monitor through a listening socket created here and handed to QEMU as an
 * inherited fd (so there is no race with QEMU creating a socket), follows
 * its events, stops it (quit, then SIGKILL after a grace period) and reaps
 * it. The state machine is described in daemon.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/daemon.h"

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS  10000

static const char *const proc_names[] = {
	[GUEST_OFF] = "off",
	[GUEST_STARTING] = "starting",
	[GUEST_UP] = "up",
	[GUEST_STOPPING] = "stopping",
	[GUEST_CRASHED] = "crashed",
};

const char *
guest_proc_name(enum guest_proc p)
{
	return proc_names[p];
}

struct guest *
guest_find(struct snapd *d, const char *name)
{
	for (struct guest *g = d->guests; g != NULL; g = g->next)
		if (strcmp(g->spec->name, name) == 0)
			return g;
	return NULL;
}

int
guest_add(struct snapd *d, struct guest_spec *spec, struct guest **out)
{
	struct guest *g = calloc(1, sizeof(*g));
	int rc;

	if (g == NULL) {
		spec_free(spec);
		return -ENOMEM;
	}
	g->d = d;
	g->spec = spec;
	g->proc = GUEST_OFF;
	g->pid = -1;
	rc = snap_fmt(g->dir, sizeof(g->dir), "%s/guests/%s", d->home,
		      spec->name);
	if (rc < 0) {
		spec_free(spec);
		free(g);
		return rc;
	}
	g->next = d->guests;
	d->guests = g;
	*out = g;
	return 0;
}

int
guest_open_display(struct guest *g, bool any_port, char *why, size_t whylen)
{
	struct snap_err e;
	int rc;

	if (!g->spec->vnc || g->vnc != NULL)
		return 0;
	snap_err_clear(&e);
	rc = vncproxy_open(g, any_port, &g->vnc, &e);
	if (rc < 0)
		snprintf(why, whylen, "%s", snap_err_text(&e, rc));
	return rc;
}

void
guest_open_displays(struct snapd *d)
{
	char why[512];

	for (struct guest *g = d->guests; g != NULL; g = g->next)
		if (guest_open_display(g, true, why, sizeof(why)) < 0)
			snap_warn("%s", why);
}

void
guest_remove(struct snapd *d, struct guest *g)
{
	struct guest **pp;

	for (pp = &d->guests; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	}
	vncproxy_free(g->vnc);
	qmpc_free(g->qmp);
	loop_timer_cancel(d->loop, g->timer);
	json_decref(g->argv);
	spec_free(g->spec);
	free(g->caps);
	free(g);
}

/* The last few lines QEMU wrote to its log, for error messages. */
static void
qemu_log_tail(const struct guest *g, char *buf, size_t size)
{
	char path[4200];
	ssize_t n;
	off_t end;
	int fd;

	buf[0] = '\0';
	if (snap_fmt(path, sizeof(path), "%s/qemu.log", g->dir) < 0)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > 0) {
		off_t from = end > (off_t)size - 1 ? end - (off_t)size + 1 : 0;
		n = pread(fd, buf, size - 1, from);
		if (n > 0) {
			buf[n] = '\0';
			while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
				buf[--n] = '\0';
			/* Keep the last line only: QEMU says the cause there. */
			char *nl = strrchr(buf, '\n');
			if (nl != NULL)
				memmove(buf, nl + 1, strlen(nl + 1) + 1);
		}
	}
	close(fd);
}

static json_t *
vm_data(const struct guest *g)
{
	return json_pack("{s:s}", "vm", g->spec->name);
}

static void
set_run_state(struct guest *g, const char *st)
{
	snap_strlcpy(g->run_state, st, sizeof(g->run_state));
}

static void
on_status(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	  void *arg)
{
	struct guest *g = arg;
	const char *st;

	(void)c;
	(void)cls;
	(void)desc;
	if (ret != NULL && (st = json_string_value(json_object_get(ret, "status"))))
		set_run_state(g, st);
}

static void
on_qemu_event(struct qmpc *c, const char *name, json_t *data,
	      unsigned long long ts_us, void *arg)
{
	struct guest *g = arg;
	json_t *ev;

	(void)c;
	(void)ts_us;
	if (strcmp(name, "STOP") == 0)
		set_run_state(g, "paused");
	else if (strcmp(name, "RESUME") == 0)
		set_run_state(g, "running");
	if (strcmp(name, "MIGRATION") == 0 || strcmp(name, "MIGRATION_PASS") == 0) {
		/* The save or load job reports these with the guest's name. */
		if (g->load != NULL)
			load_on_qemu_event(g, name, data);
		else
			save_on_qemu_event(g, name, data);
		return;
	}
	/* Forward QEMU's own events, tagged with the guest. */
	ev = data != NULL ? json_deep_copy(data) : json_object();
	if (ev != NULL) {
		json_object_set_new(ev, "vm", json_string(g->spec->name));
		qmpd_event(g->d->qmpd, name, ev);
	}
}

static void
start_done(struct guest *g, int ok, const char *why)
{
	guest_ready_fn fn = g->ready_fn;

	g->ready_fn = NULL;
	loop_timer_cancel(g->d->loop, g->timer);
	g->timer = NULL;
	if (fn != NULL)
		fn(g, ok ? 0 : SNAP_EQEMU, why, g->ready_arg);
}

static void
on_qemu_state(struct qmpc *c, int status, void *arg)
{
	struct guest *g = arg;
	json_t *greet;

	if (status == 0) {
		greet = json_object_get(json_object_get(qmpc_greeting(c), "version"),
					"qemu");
		snprintf(g->qemu_version, sizeof(g->qemu_version), "%lld.%lld.%lld",
			 json_integer_value(json_object_get(greet, "major")),
			 json_integer_value(json_object_get(greet, "minor")),
			 json_integer_value(json_object_get(greet, "micro")));
		if (g->proc == GUEST_STARTING) {
			g->proc = GUEST_UP;
			qmpc_exec(c, "query-status", NULL, -1, on_status, g);
			qmpd_event(g->d->qmpd, "GUEST_STARTED", vm_data(g));
			/* A restore attaches display clients once loaded. */
			if (g->load == NULL)
				vncproxy_qemu_ready(g->vnc);
			start_done(g, 1, NULL);
		}
		return;
	}
	/* The monitor went away: QEMU is exiting; reaping finishes the job. */
	save_on_qemu_gone(g);
	load_on_qemu_gone(g);
}

static void
on_timeout(struct loop *l, void *arg)
{
	struct guest *g = arg;

	(void)l;
	g->timer = NULL;
	if (g->pid > 0) {
		snap_warn("guest '%s': QEMU (pid %d) did not %s in time; killing it",
			  g->spec->name, (int)g->pid,
			  g->proc == GUEST_STARTING ? "start" : "stop");
		kill(g->pid, SIGKILL);
	}
}

static int
make_dirs(const struct guest *g)
{
	char p[4200];

	if (snap_fmt(p, sizeof(p), "%s/guests", g->d->home) < 0)
		return -ENAMETOOLONG;
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (mkdir(g->dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A listening UNIX socket at @path (replacing a stale one). */
static int
listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (snap_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 4) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static int
connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	snap_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/*
 * fork and exec QEMU with @listen_fd as fd 3 and its output in qemu.log.
 * Returns the pid or -errno.
 */
static pid_t
spawn_qemu(const struct guest *g, struct qemu_argv *argv, int listen_fd)
{
	char logp[4200];
	int logfd;
	pid_t pid;

	if (snap_fmt(logp, sizeof(logp), "%s/qemu.log", g->dir) < 0)
		return -ENAMETOOLONG;
	logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(logfd);
		return e;
	}
	if (pid == 0) {
		sigset_t all;
		int nullfd = open("/dev/null", O_RDONLY);

		/* Signals blocked for the loop's signalfd must not stay blocked. */
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		setsid();
		/* A guest nobody can manage any more dies with snapd. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 ||
		    dup2(logfd, 2) < 0 || dup2(listen_fd, 3) < 0)
			_exit(127);
		closefrom(4);
		execvp(argv->argv[0], argv->argv);
		dprintf(2, "cannot run '%s': %s\n", argv->argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	return pid;
}

int
guest_launch(struct guest *g, const struct guest_launch *opt,
	     guest_ready_fn fn, void *arg, char *why, size_t whylen)
{
	struct qemu_run run = { .qemu = g->d->qemu, .qmp_listen_fd = 3 };
	char qmp[4200], vnc[4200], serial[4200];
	struct qemu_argv *argv = NULL;
	int lfd = -1, cfd = -1, rc;
	pid_t pid;

	if (g->proc != GUEST_OFF && g->proc != GUEST_CRASHED) {
		snprintf(why, whylen, "guest '%s' is already %s", g->spec->name,
			 guest_proc_name(g->proc));
		return -EBUSY;
	}
	if ((rc = make_dirs(g)) < 0 ||
	    (rc = snap_fmt(qmp, sizeof(qmp), "%s/qmp.sock", g->dir)) < 0 ||
	    (rc = snap_fmt(vnc, sizeof(vnc), "%s/vnc.sock", g->dir)) < 0 ||
	    (rc = snap_fmt(serial, sizeof(serial), "%s/serial.log", g->dir)) < 0) {
		snprintf(why, whylen, "cannot prepare '%s': %s", g->dir,
			 snap_strerror(rc));
		return rc;
	}
	run.vnc_path = vnc;
	run.serial_path = serial;
	run.ram_file = opt->ram_file;
	run.incoming = opt->incoming;
	run.paused = opt->paused;
	if ((rc = spec_build_argv(g->spec, &run, &argv)) < 0 ||
	    (rc = lfd = listen_unix(qmp)) < 0) {
		snprintf(why, whylen, "cannot start guest '%s': %s",
			 g->spec->name, snap_strerror(rc));
		goto out;
	}
	pid = spawn_qemu(g, argv, lfd);
	if (pid < 0) {
		rc = (int)pid;
		snprintf(why, whylen, "cannot start QEMU: %s", snap_strerror(rc));
		goto out;
	}
	g->pid = pid;
	g->proc = GUEST_STARTING;
	g->ready_fn = fn;
	g->ready_arg = arg;
	g->started_ns = snap_now_real_ns();
	set_run_state(g, "prelaunch");
	json_decref(g->argv);
	g->argv = argv_to_json(argv);
	loop_timer_add(g->d->loop, START_TIMEOUT_MS, on_timeout, g, &g->timer);
	/* The backlog holds our connection until QEMU's main loop accepts. */
	cfd = connect_unix(qmp);
	if (cfd < 0 || qmpc_new(g->d->loop, cfd, on_qemu_event, on_qemu_state,
				g, &g->qmp) < 0) {
		snap_err("guest '%s': cannot connect to QEMU's monitor",
			 g->spec->name);
		kill(pid, SIGKILL);
	} else {
		qmpc_set_name(g->qmp, g->spec->name);
	}
	rc = 0;
out:
	if (lfd >= 0)
		close(lfd);
	argv_free(argv);
	return rc;
}

static void
start_replied(struct guest *g, int rc, const char *why, void *arg)
{
	struct qmpd_req *req = arg;

	if (rc == 0)
		qmpd_reply_ok(req, guest_to_json(g));
	else
		qmpd_reply_err(req, QMPD_GENERIC, "cannot start guest '%s': %s",
			       g->spec->name, why);
}

void
guest_start(struct guest *g, struct qmpd_req *req)
{
	static const struct guest_launch plain = { .ram_file = NULL };
	char why[512];

	if (guest_launch(g, &plain, start_replied, req, why, sizeof(why)) < 0)
		qmpd_reply_err(req, QMPD_GENERIC, "%s", why);
}

static void
stop_done(struct guest *g, const char *why)
{
	struct qmpd_req *req = g->pending;

	g->pending = NULL;
	if (req == NULL)
		return;
	if (why == NULL)
		qmpd_reply_ok(req, NULL);
	else
		qmpd_reply_err(req, QMPD_GENERIC, "%s", why);
}

void
guest_stop(struct guest *g, struct qmpd_req *req)
{
	if (g->proc != GUEST_UP && g->proc != GUEST_STARTING) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is not running",
			       g->spec->name);
		return;
	}
	if (g->ready_fn != NULL) {
		/* Whoever waits for the start learns it failed. */
		start_done(g, 0, "stopped while starting");
	}
	guest_kill(g);
	g->pending = req;
}

static void
guest_exited(struct guest *g, int status)
{
	enum guest_proc was = g->proc;
	char tail[512], why[700];
	json_t *ev;

	g->exit_status = status;
	g->pid = -1;
	qmpc_free(g->qmp);
	g->qmp = NULL;
	loop_timer_cancel(g->d->loop, g->timer);
	g->timer = NULL;
	save_on_qemu_gone(g);
	load_on_qemu_gone(g);
	vncproxy_qemu_gone(g->vnc, g->load != NULL);
	if (g->d->db != NULL)
		cat_inuse_clear(g->d->db, g->spec->name, NULL);
	g->parent_id = 0;
	qemu_log_tail(g, tail, sizeof(tail));
	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "QEMU exited with status %d%s%s",
			 WEXITSTATUS(status), tail[0] ? ": " : "", tail);
	else
		snprintf(why, sizeof(why), "QEMU killed by signal %d%s%s",
			 WTERMSIG(status), tail[0] ? ": " : "", tail);

	if (was == GUEST_STOPPING) {
		g->proc = GUEST_OFF;
		stop_done(g, NULL);
	} else {
		g->proc = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ?
			  GUEST_OFF : GUEST_CRASHED;
		if (was == GUEST_STARTING)
			start_done(g, 0, why);
		if (g->proc == GUEST_CRASHED)
			snap_warn("guest '%s': %s", g->spec->name, why);
	}
	set_run_state(g, "");
	ev = json_pack("{s:s, s:s, s:s}", "vm", g->spec->name,
		       "state", guest_proc_name(g->proc), "reason",
		       was == GUEST_STOPPING ? "stopped" : why);
	qmpd_event(g->d->qmpd, "GUEST_STOPPED", ev);
	load_on_exited(g);
	if (g->remove_on_exit && g->load == NULL) {
		cat_guest_remove(g->d->db, g->spec->name, NULL);
		guest_remove(g->d, g);
	}
}

void
guest_kill(struct guest *g)
{
	if (g->pid <= 0)
		return;
	g->proc = GUEST_STOPPING;
	if (g->qmp != NULL)
		qmpc_exec(g->qmp, "quit", NULL, -1, NULL, NULL);
	else
		kill(g->pid, SIGTERM);
	loop_timer_cancel(g->d->loop, g->timer);
	loop_timer_add(g->d->loop, STOP_TIMEOUT_MS, on_timeout, g, &g->timer);
}

void
guest_reap(struct snapd *d)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (struct guest *g = d->guests; g != NULL; g = g->next) {
			if (g->pid == pid) {
				guest_exited(g, status);
				break;
			}
		}
	}
}

json_t *
guest_to_json(const struct guest *g)
{
	json_t *j = json_pack("{s:s, s:s, s:o}", "name", g->spec->name,
			      "state", guest_proc_name(g->proc),
			      "spec", spec_to_json(g->spec));
	json_t *vnc;

	if (j == NULL)
		return NULL;
	/* The VNC password is not shown; "vnc" says whether there is one. */
	vnc = json_object_get(json_object_get(j, "spec"), "vnc");
	if (json_is_object(vnc))
		json_object_del(vnc, "password");
	if (g->vnc != NULL)
		json_object_set_new(j, "vnc", vncproxy_to_json(g->vnc));
	if (g->proc == GUEST_UP || g->proc == GUEST_STARTING ||
	    g->proc == GUEST_STOPPING) {
		json_object_set_new(j, "pid", json_integer(g->pid));
		json_object_set_new(j, "status", json_string(g->run_state));
		if (g->qemu_version[0])
			json_object_set_new(j, "qemu-version",
					    json_string(g->qemu_version));
	}
	if (g->save != NULL)
		json_object_set_new(j, "job", json_string("save"));
	return j;
}

unsigned
guest_shutdown_all(struct snapd *d)
{
	unsigned alive = 0;

	for (struct guest *g = d->guests; g != NULL; g = g->next) {
		load_abort(g, "snapd is shutting down");
		if (g->pid <= 0)
			continue;
		alive++;
		if (g->proc != GUEST_STOPPING)
			guest_kill(g);
	}
	return alive;
}
