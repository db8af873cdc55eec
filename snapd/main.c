/*
 * snapd/main.c: the daemon's entry point.
 *
 * Parses the command line, prepares the store, opens and reconciles the
 * catalog, loads the defined guests, opens the control socket and runs the
 * event loop until SIGTERM or SIGINT. At shutdown every running guest is
 * asked to quit (and killed after a grace period); nothing is saved
 * automatically. See snapd(8).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "snapd/daemon.h"

#define SNAPD_VERSION "0.1.0"

/* How long shutdown waits for jobs once every QEMU is gone. */
#define SHUTDOWN_JOBS_NS (30ull * 1000000000u)

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: snapd [-d] [-v] [--home DIR] [--socket PATH] [--qemu BINARY]\n"
		"  -d, --foreground   stay in the foreground, log to stderr\n"
		"  -v, --verbose      log debugging details; twice: also every QMP\n"
		"                     message on the control and QEMU sockets\n"
		"  --home DIR         the store (default /var/lib/qemu-snapd as root,\n"
		"                     else $XDG_STATE_HOME/qemu-snapd)\n"
		"  --socket PATH      control socket (default HOME/control.sock)\n"
		"  --qemu BINARY      QEMU binary (default qemu-system-x86_64)\n");
}

static void
on_sigchld(struct loop *l, int signo, void *arg)
{
	(void)l;
	(void)signo;
	guest_reap(arg);
}

static void shutdown_check(struct loop *l, void *arg);

static void
shutdown_check(struct loop *l, void *arg)
{
	struct snapd *d = arg;
	unsigned alive = 0;

	unsigned jobs = d->detached_jobs;

	/* Every QEMU reaped and every job ended (a save's file removed or
	 * published, a restore's threads joined). */
	for (struct guest *g = d->guests; g != NULL; g = g->next) {
		alive += g->pid > 0;
		jobs += g->save != NULL || g->load != NULL;
	}
	if (alive == 0 && jobs > 0 &&
	    snap_now_mono_ns() - d->stop_ns > SHUTDOWN_JOBS_NS) {
		/* A job that cannot end must not keep snapd up for ever; its
		 * memory stays with the process (see below). */
		snap_warn("%u job%s did not end; exiting anyway", jobs,
			  jobs == 1 ? "" : "s");
		d->jobs_left = true;
		loop_stop(l);
	} else if (alive + jobs == 0)
		loop_stop(l);
	else
		loop_timer_add(l, 50, shutdown_check, d, NULL);
}

static void
on_sigterm(struct loop *l, int signo, void *arg)
{
	struct snapd *d = arg;
	unsigned n;

	if (d->stopping)
		return;
	d->stopping = true;
	d->stop_ns = snap_now_mono_ns();
	n = guest_shutdown_all(d);
	snap_info("signal %d: shutting down (%u guest%s to stop)", signo, n,
		  n == 1 ? "" : "s");
	shutdown_check(l, d);
}

static int
load_guests(struct snapd *d)
{
	struct cat_guest_list *l = NULL;
	struct snap_err e;
	int rc;

	snap_err_clear(&e);
	rc = cat_guest_list(d->db, &l, &e);
	if (rc < 0) {
		snap_err("cannot list guests: %s", snap_err_text(&e, rc));
		return rc;
	}
	for (size_t i = 0; i < l->n; i++) {
		struct guest_spec *spec = NULL;
		struct guest *g;
		json_t *j = json_loads(l->v[i]->spec, 0, NULL);

		rc = j ? spec_from_json(j, &spec, &e) : SNAP_ECONFIG;
		json_decref(j);
		if (rc < 0) {
			/* Guests adopted from snapshot files have no spec yet. */
			snap_debug("guest '%s' has no usable spec; not loaded",
				   l->v[i]->name);
			continue;
		}
		if (guest_add(d, spec, &g) < 0)
			break;
	}
	cat_guest_list_free(l);
	return 0;
}

/* The machine types QEMU supports, from "qemu -machine help". */
static char **
query_machines(const char *qemu)
{
	char cmd[4200], line[512], **v = NULL;
	size_t n = 0;
	FILE *p;

	if (snap_fmt(cmd, sizeof(cmd), "'%s' -machine help 2>/dev/null", qemu) < 0 ||
	    strchr(qemu, '\'') != NULL)
		return NULL;
	p = popen(cmd, "re");
	if (p == NULL)
		return NULL;
	while (fgets(line, sizeof(line), p) != NULL) {
		char name[128], **nv;

		if (strncmp(line, "Supported", 9) == 0 ||
		    sscanf(line, "%127s", name) != 1)
			continue;
		nv = realloc(v, (n + 2) * sizeof(*v));
		if (nv == NULL)
			break;
		v = nv;
		v[n] = strdup(name);
		if (v[n] == NULL)
			break;
		v[++n] = NULL;
	}
	if (pclose(p) != 0 || n == 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return NULL;
	}
	return v;
}

static void
on_fix(void *ctx, const struct cat_fix *f)
{
	(void)ctx;
	snap_info("reconcile: %s '%s'%s%s", cat_fix_kind_name(f->kind), f->path,
		  f->detail[0] ? ": " : "", f->detail);
}

static int
daemonize(const char *home)
{
	char logp[4200];
	pid_t pid;
	int fd;

	if (snap_fmt(logp, sizeof(logp), "%s/snapd.log", home) < 0)
		return -ENAMETOOLONG;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (dup2(fd, 2) < 0 || dup2(fd, 1) < 0)
		return -errno;
	close(fd);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		dup2(fd, 0);
		close(fd);
	}
	return chdir("/") < 0 ? -errno : 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'd' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "home", required_argument, NULL, 'H' },
		{ "socket", required_argument, NULL, 'S' },
		{ "qemu", required_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct snapd d = { .qemu = "qemu-system-x86_64" };
	struct cat_reconcile_opts ro = { .fix = on_fix };
	struct qmpd_config qc = { 0 };
	const char *socket_opt = NULL;
	char sockpath[4200];
	bool foreground = false;
	int verbose = 0;
	struct snap_err e;
	json_t *version;
	int c, rc, status = 1;

	while ((c = getopt_long(argc, argv, "dvh", opts, NULL)) != -1) {
		switch (c) {
		case 'd': foreground = true; break;
		case 'v': verbose++; break;
		case 'H':
			if (snap_strlcpy(d.home, optarg, sizeof(d.home)) >=
			    sizeof(d.home)) {
				fprintf(stderr, "snapd: --home is too long\n");
				return 2;
			}
			break;
		case 'S': socket_opt = optarg; break;
		case 'Q': d.qemu = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("snapd %s\n", SNAPD_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	snap_log_init("snapd", verbose > 1 ? SNAP_LOG_TRACE : verbose ?
		      SNAP_LOG_DEBUG : SNAP_LOG_INFO,
		      !foreground);
	if (d.home[0] == '\0' && snap_default_store(d.home, sizeof(d.home)) < 0) {
		snap_err("cannot choose a store directory: give --home");
		return 2;
	}
	if (mkdir(d.home, 0700) < 0 && errno != EEXIST) {
		snap_err("cannot create store '%s': %s", d.home, strerror(errno));
		return 1;
	}
	if (socket_opt == NULL) {
		if (snap_fmt(sockpath, sizeof(sockpath), "%s/control.sock",
			     d.home) < 0) {
			snap_err("store path '%s' is too long", d.home);
			return 2;
		}
		socket_opt = sockpath;
	}
	if (!foreground && (rc = daemonize(d.home)) < 0) {
		snap_err("cannot become a daemon: %s", snap_strerror(rc));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	snap_err_clear(&e);
	rc = cat_db_open(d.home, CAT_OPEN_CREATE, &d.db, &e);
	if (rc < 0) {
		snap_err("cannot open the catalog in '%s': %s", d.home,
			 snap_err_text(&e, rc));
		return 1;
	}
	rc = cat_reconcile(d.db, &ro, NULL, &e);
	if (rc < 0)
		snap_warn("cannot reconcile the catalog: %s",
			  snap_err_text(&e, rc));
	if (load_guests(&d) < 0)
		goto out;
	d.machines = query_machines(d.qemu);
	if (d.machines == NULL)
		snap_warn("cannot list the machine types of '%s'", d.qemu);

	if ((rc = loop_new(&d.loop)) < 0 ||
	    (rc = loop_watch_signal(d.loop, SIGCHLD, on_sigchld, &d)) < 0 ||
	    (rc = loop_watch_signal(d.loop, SIGTERM, on_sigterm, &d)) < 0 ||
	    (rc = loop_watch_signal(d.loop, SIGINT, on_sigterm, &d)) < 0) {
		snap_err("cannot set up the event loop: %s", snap_strerror(rc));
		goto out;
	}
	guest_open_displays(&d);
	version = json_pack("{s:{s:i, s:i, s:i}, s:s}", "qemu", "major", 0,
			    "minor", 1, "micro", 0, "package",
			    "snapd " SNAPD_VERSION);
	qc.socket_path = socket_opt;
	qc.version = version;
	qc.commands = snapd_commands;
	qc.ctx = &d;
	rc = qmpd_new(d.loop, &qc, &d.qmpd, &e);
	json_decref(version);
	if (rc < 0) {
		snap_err("cannot listen on '%s': %s", socket_opt,
			 snap_err_text(&e, rc));
		goto out;
	}
	snap_info("snapd %s ready: store '%s', control socket '%s'",
		  SNAPD_VERSION, d.home, socket_opt);
	rc = loop_run(d.loop);
	if (rc < 0) {
		snap_err("event loop failed: %s", snap_strerror(rc));
		goto out;
	}
	status = 0;
	snap_info("stopped");
out:
	qmpd_free(d.qmpd);
	if (d.jobs_left) {
		/* Threads may still use the guests and the loop: leave them. */
		cat_db_close(d.db);
		return status;
	}
	while (d.guests != NULL)
		guest_remove(&d, d.guests);
	loop_free(d.loop);
	cat_db_close(d.db);
	for (char **m = d.machines; m && *m; m++)
		free(*m);
	free(d.machines);
	free(d.caps);
	return status;
}
