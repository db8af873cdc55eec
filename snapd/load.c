/*
 * snapd/load.c: restoring a guest from a snapshot with one migrate-incoming
 * request.
 *
 * Everything that can be refused is refused before any process starts:
 * capabilities (restore/restore.h), the file's trailer and metadata, the
 * machine type (against "qemu -machine help"), the RAM size against the
 * saved spec, the verify policy. The per-page checksum table, whose size
 * grows with the guest, is read by a thread while QEMU starts (before it,
 * when the restore replaces a running guest); the feed waits for it, so a
 * bad table still fails the restore before the guest runs. Pages are
 * checked first (verify=full; in eager mode by the feed itself), while the
 * guest runs (background) or not again (none).
 *
 * A QEMU is launched from the saved
 * spec with -incoming defer and -S; in lazy mode its main RAM is the
 * snapshot file mapped copy-on-write. Once its monitor is up: set QEMU's
 * capabilities in request order, find the pages its reset already copied
 * privately (they shadow the file; they are sent again), hand it one end of
 * a socketpair and migrate-incoming from it while a worker thread feeds the
 * stream (restore/feed.c). When QEMU reports completion the guest is
 * resumed if it was running when saved.
 *
 * Job states (loop thread) and transitions:
 *
 *   VERIFYING --pages good--> [REPLACING --old QEMU gone-->] STARTING
 *   STARTING --monitor up--> CAPS --> LOADING
 *   LOADING --QEMU completed--> RUNNING (or PAUSED) --> done
 *   any state --failure--> FAILED (QEMU killed, a new clone undefined)
 *
 * In background verify mode a second worker checks every page after the
 * guest runs; a bad page stops the guest and raises SNAPSHOT_CORRUPT.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "format/format.h"
#include "restore/restore.h"
#include "snapd/daemon.h"

enum load_state {
	LOAD_VERIFYING,
	LOAD_REPLACING,
	LOAD_STARTING,
	LOAD_CAPS,
	LOAD_LOADING,
	LOAD_DONE,
	LOAD_FAILED,
};

static const char *const load_state_names[] = {
	[LOAD_VERIFYING] = "setup",
	[LOAD_REPLACING] = "setup",
	[LOAD_STARTING] = "setup",
	[LOAD_CAPS] = "setup",
	[LOAD_LOADING] = "active",
	[LOAD_DONE] = "completed",
	[LOAD_FAILED] = "failed",
};

enum verify_mode { VERIFY_FULL, VERIFY_BACKGROUND, VERIFY_NONE };

/* The daemon, for callbacks that carry only a guest's name. */
static struct snapd *load_daemon;

struct load_job {
	struct snapd *d;
	struct guest *g;
	enum load_state state;
	bool created_guest;         /* the restore defined this guest */
	bool replacing;             /* the guest ran when asked: keep it until
				     * the whole file is known good */
	bool eager, was_running;
	enum verify_mode verify;
	struct rst_cap_plan plan;
	char path[4096];
	int64_t snap_id;            /* catalog id, 0 when not cataloged */
	uint64_t t0_ns;             /* request received */
	uint64_t ram_size;
	uint64_t *fixups;
	uint64_t nfixups;
	char error[512];

	struct fmt_reader *r;       /* owned by a worker while one runs */
	pthread_t thread;
	bool thread_running;
	/*
	 * The checksum table is read while QEMU starts (its size grows with
	 * the guest; QEMU's start does not): the feed worker joins this
	 * thread before it reads a page.
	 */
	pthread_t sums_thread;
	bool sums_running;
	int sums_rc;
	struct snap_err sums_err;
	volatile int cancel;
	int sock;                   /* feed end */
	int worker_rc;
	struct snap_err worker_err;
	struct rst_feed_stats feed;
	struct fmt_verify_result vres;
	char bad[256];              /* first bad page, from verification */
	bool feed_done, qemu_done;
};

static void load_fail(struct load_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Where the time of a restore goes (snapd -v). */
static void
phase(const struct load_job *j, const char *what)
{
	snap_debug("restore of '%s': %s at %.1f ms", j->g->spec->name, what,
		   (double)(snap_now_mono_ns() - j->t0_ns) / 1e6);
}

static void
emit(struct load_job *j, const char *status)
{
	qmpd_event(j->d->qmpd, "MIGRATION",
		   json_pack("{s:s, s:s, s:s}", "vm", j->g->spec->name,
			     "status", status, "direction", "incoming"));
}

/* Wait for the checksum table; its outcome in sums_rc / sums_err. */
static void
join_sums(struct load_job *j)
{
	if (j->sums_running) {
		pthread_join(j->sums_thread, NULL);
		j->sums_running = false;
	}
}

static void
job_free(struct load_job *j)
{
	if (j == NULL)
		return;
	/* At most the time to read the table: it cannot block on anything. */
	join_sums(j);
	if (j->sock >= 0)
		close(j->sock);
	fmt_reader_free(j->r);
	free(j->fixups);
	free(j);
}

/* Undefine a clone a failed restore created, once it has no QEMU. */
static void
remove_failed_clone(struct loop *l, void *arg)
{
	char *name = arg;
	struct guest *g;

	(void)l;
	g = guest_find(load_daemon, name);
	if (g != NULL && g->remove_on_exit && g->pid <= 0 && g->load == NULL) {
		cat_guest_remove(load_daemon->db, g->spec->name, NULL);
		guest_remove(load_daemon, g);
	}
	free(name);
}

/* Detach and free the job; the worker must be gone. */
static void
job_end(struct load_job *j)
{
	struct guest *g = j->g;
	struct snapd *d = j->d;

	if (j->state == LOAD_FAILED) {
		emit(j, "failed");
		qmpd_event(d->qmpd, "RESTORE_FAILED",
			   json_pack("{s:s, s:s, s:s}", "vm", g->spec->name,
				     "path", j->path, "error", j->error));
		snap_warn("guest '%s': restore from '%s' failed: %s",
			  g->spec->name, j->path, j->error);
	}
	g->load = NULL;
	if (j->state == LOAD_FAILED) {
		if (g->pid > 0)
			guest_kill(g);
		/*
		 * A clone this restore defined goes away again, but never from
		 * here: we may be deep inside the guest's own exit handling.
		 */
		if (j->created_guest) {
			char *name = strdup(g->spec->name);
			g->remove_on_exit = true;
			if (name != NULL &&
			    loop_post(d->loop, remove_failed_clone, name) < 0)
				free(name);
		}
	}
	job_free(j);
}

static void
load_fail(struct load_job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->state == LOAD_FAILED || j->state == LOAD_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
	j->state = LOAD_FAILED;
	j->cancel = 1;
	if (j->sock >= 0)
		shutdown(j->sock, SHUT_RDWR);
	if (!j->thread_running)
		job_end(j);
	/* else the worker posts its end and job_end runs then */
}

/* ---- workers ---------------------------------------------------------- */

static void worker_done(struct loop *l, void *arg);

static void
on_bad_page(void *ctx, const char *idstr, uint64_t page, uint64_t off)
{
	struct load_job *j = ctx;

	if (j->bad[0] == '\0')
		snprintf(j->bad, sizeof(j->bad),
			 "block '%s' page %llu (file offset %llu)", idstr,
			 (unsigned long long)page, (unsigned long long)off);
}

static void *
verify_worker(void *arg)
{
	struct load_job *j = arg;
	struct fmt_verify_opts o = {
		.bad_page = on_bad_page, .ctx = j, .cancel = &j->cancel,
	};

	j->worker_rc = fmt_reader_verify(j->r, &o, &j->vres, &j->worker_err);
	loop_post(j->d->loop, worker_done, j);
	return NULL;
}

static void *
sums_worker(void *arg)
{
	struct load_job *j = arg;

	j->sums_rc = fmt_reader_load_sums(j->r, &j->sums_err);
	return NULL;
}

static void *
feed_worker(void *arg)
{
	struct load_job *j = arg;
	struct rst_feed_opts o = {
		.eager = j->eager, .fixups = j->fixups, .cancel = &j->cancel,
	};

	join_sums(j);
	/* Loaded by now, unless its thread could not start. */
	if (j->sums_rc == 0)
		j->sums_rc = fmt_reader_load_sums(j->r, &j->sums_err);
	if (j->sums_rc < 0) {
		j->worker_rc = j->sums_rc;
		j->worker_err = j->sums_err;
	} else {
		j->worker_rc = rst_feed(j->r, j->sock, &o, &j->feed,
					&j->worker_err);
	}
	/* QEMU finishes loading only when the stream ends. */
	shutdown(j->sock, SHUT_WR);
	loop_post(j->d->loop, worker_done, j);
	return NULL;
}

static int
start_worker(struct load_job *j, void *(*fn)(void *))
{
	if (pthread_create(&j->thread, NULL, fn, j) != 0)
		return -EAGAIN;
	j->thread_running = true;
	return 0;
}

/* ---- the steps -------------------------------------------------------- */

/*
 * The restore a QMP reply (to @what) belongs to, when it goes on: NULL when
 * there is none any more, or when the step failed (the restore fails,
 * naming QEMU's exit if that was the cause).
 */
static struct load_job *
step_job(struct guest *g, const char *what, const char *cls,
	 const char *desc)
{
	struct load_job *j = g->load;

	if (j == NULL || j->state == LOAD_FAILED)
		return NULL;
	if (desc == NULL)
		return j;
	if (cls != NULL && strcmp(cls, "Disconnected") == 0)
		load_fail(j, "QEMU exited during the restore");
	else
		load_fail(j, "QEMU refused %s: %s", what, desc);
	return NULL;
}

static void launched(struct guest *g, int rc, const char *why, void *arg);
static void background_verify(struct load_job *j);

static void
launch(struct load_job *j)
{
	struct guest_launch opt = {
		.ram_file = j->eager ? NULL : j->path,
		.incoming = true, .paused = true,
	};
	char why[512];

	if (j->g->pid > 0) {
		/* A restore onto a running guest replaces its QEMU. */
		j->state = LOAD_REPLACING;
		guest_kill(j->g);
		return;
	}
	j->state = LOAD_STARTING;
	phase(j, "launching QEMU");
	if (guest_launch(j->g, &opt, launched, j, why, sizeof(why)) < 0)
		load_fail(j, "%s", why);
}

void
load_on_exited(struct guest *g)
{
	struct load_job *j = g->load;

	if (j != NULL && j->state == LOAD_REPLACING)
		launch(j);
}

static void
finish_ok(struct load_job *j)
{
	struct guest *g = j->g;
	uint64_t ms = (snap_now_mono_ns() - j->t0_ns) / 1000000u;

	j->state = LOAD_DONE;
	g->parent_id = j->snap_id;
	if (j->snap_id > 0 && !j->eager)
		cat_inuse_add(j->d->db, j->snap_id, g->spec->name, NULL);
	emit(j, "completed");
	qmpd_event(j->d->qmpd, "RESTORED",
		   json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:b}",
			     "vm", g->spec->name, "path", j->path,
			     "mode", j->eager ? "eager" : "lazy",
			     "time-ms", (json_int_t)ms,
			     "stream-bytes", (json_int_t)j->feed.bytes,
			     "fixups", (json_int_t)j->feed.fixups,
			     "running", j->was_running));
	snap_info("guest '%s': restored from '%s' in %llu ms (%s, %llu stream "
		  "bytes)", g->spec->name, j->path, (unsigned long long)ms,
		  j->eager ? "eager" : "lazy",
		  (unsigned long long)j->feed.bytes);
	if (j->verify == VERIFY_BACKGROUND) {
		background_verify(j);
		return;
	}
	g->load = NULL;
	job_free(j);
}

static void
on_cont(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	void *arg)
{
	struct load_job *j = step_job(arg, "to resume", cls, desc);

	(void)c;
	(void)ret;
	if (j != NULL)
		finish_ok(j);
}

/* Both the stream and QEMU are done. */
static void
maybe_done(struct load_job *j)
{
	if (j->state != LOAD_LOADING || !j->feed_done || !j->qemu_done)
		return;
	phase(j, "QEMU loaded the stream");
	/* Display clients see the restored frame before the guest runs. */
	vncproxy_qemu_ready(j->g->vnc);
	if (j->was_running)
		qmpc_exec(j->g->qmp, "cont", NULL, -1, on_cont, j->g);
	else
		finish_ok(j);
}

/* Background verification ended; the guest may be gone (load_release). */
static void
background_done(struct load_job *j, int rc)
{
	struct guest *g = j->g;
	const char *bad = j->bad[0] ? j->bad : snap_err_text(&j->worker_err, rc);

	if (j->snap_id > 0 && (rc >= 0 || rc == SNAP_ECHECKSUM))
		cat_snapshot_mark_verified(j->d->db, j->snap_id, 0, rc >= 0,
					   NULL);
	if (g == NULL) {
		j->d->detached_jobs--;
		if (rc == SNAP_ECHECKSUM)
			snap_err("snapshot '%s' is corrupt at %s", j->path, bad);
		else if (rc < 0 && rc != -ECANCELED)
			snap_warn("background check of '%s' failed: %s",
				  j->path, snap_err_text(&j->worker_err, rc));
	}
	if (rc < 0 && rc != -ECANCELED && g != NULL) {
		if (g->qmp != NULL)
			qmpc_exec(g->qmp, "stop", NULL, -1, NULL, NULL);
		qmpd_event(j->d->qmpd, "SNAPSHOT_CORRUPT",
			   json_pack("{s:s, s:s, s:s}", "vm", g->spec->name,
				     "path", j->path, "page", bad));
		snap_err("guest '%s' stopped: its snapshot '%s' is corrupt at "
			 "%s", g->spec->name, j->path, bad);
	}
	if (g != NULL)
		g->load = NULL;
	job_free(j);
}

/*
 * An eager feed reads every present page and checks it, the device state
 * and the checksum table before QEMU may run the guest: for verify=full it
 * is the verification, and a separate pass first would read the file twice.
 */
static bool
feed_verifies(const struct load_job *j)
{
	/* Not over a running guest: a bad file must be refused before its
	 * QEMU is replaced. */
	return j->eager && j->verify == VERIFY_FULL && !j->replacing;
}

static void
worker_done(struct loop *l, void *arg)
{
	struct load_job *j = arg;
	int rc = j->worker_rc;

	(void)l;
	pthread_join(j->thread, NULL);
	j->thread_running = false;
	switch (j->state) {
	case LOAD_FAILED:
		job_end(j);
		return;
	case LOAD_VERIFYING:
		if (rc < 0) {
			if (j->snap_id > 0 && rc == SNAP_ECHECKSUM)
				cat_snapshot_mark_verified(j->d->db, j->snap_id,
							   0, false, NULL);
			load_fail(j, "snapshot '%s' failed verification: %s",
				  j->path, j->bad[0] ? j->bad :
				  snap_err_text(&j->worker_err, rc));
			return;
		}
		if (j->snap_id > 0)
			cat_snapshot_mark_verified(j->d->db, j->snap_id, 0, true,
						   NULL);
		launch(j);
		return;
	case LOAD_LOADING:
		if (j->sums_rc == SNAP_ECHECKSUM && feed_verifies(j) &&
		    j->snap_id > 0)
			cat_snapshot_mark_verified(j->d->db, j->snap_id, 0, false,
						   NULL);
		if (j->sums_rc < 0) {
			load_fail(j, "cannot load '%s': %s", j->path,
				  snap_err_text(&j->sums_err, j->sums_rc));
			return;
		}
		if (rc < 0 && rc == SNAP_ECHECKSUM && feed_verifies(j)) {
			if (j->snap_id > 0)
				cat_snapshot_mark_verified(j->d->db, j->snap_id,
							   0, false, NULL);
			load_fail(j, "snapshot '%s' failed verification: %s",
				  j->path, snap_err_text(&j->worker_err, rc));
			return;
		}
		if (rc < 0) {
			load_fail(j, "cannot feed the snapshot to QEMU: %s",
				  snap_err_text(&j->worker_err, rc));
			return;
		}
		/* Every page passed its checksum on the way, if the stream
		 * named every block of the file. */
		if (feed_verifies(j) && j->snap_id > 0) {
			struct fmt_stat st;

			fmt_reader_stat(j->r, &st);
			if (j->feed.blocks == st.nblocks)
				cat_snapshot_mark_verified(j->d->db, j->snap_id,
							   0, true, NULL);
		}
		j->feed_done = true;
		maybe_done(j);
		return;
	case LOAD_DONE:
		background_done(j, rc);
		return;
	case LOAD_REPLACING:
	case LOAD_STARTING:
	case LOAD_CAPS:
		break;
	}
	job_end(j);
}

static void
background_verify(struct load_job *j)
{
	/* The reader is free again: the feed worker is done with it. */
	if (start_worker(j, verify_worker) < 0) {
		j->g->load = NULL;
		job_free(j);
	}
}

static void
on_incoming(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	    void *arg)
{
	(void)c;
	(void)ret;
	step_job(arg, "migrate-incoming", cls, desc);
}

static void
on_getfd(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	 void *arg)
{
	(void)ret;
	if (step_job(arg, "getfd", cls, desc) != NULL)
		qmpc_exec(c, "migrate-incoming",
			  json_pack("{s:s}", "uri", "fd:snapd-load"), -1,
			  on_incoming, arg);
}

/* Capabilities are set: look for shadowed pages and start the feed. */
static void
on_caps(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	void *arg)
{
	struct guest *g = arg;
	struct load_job *j = step_job(g, "its capabilities", cls, desc);
	struct snap_err e;
	int pair[2];

	(void)ret;
	if (j == NULL)
		return;
	if (!j->eager) {
		uint64_t addr, npages = j->ram_size / 4096;
		int64_t n;
		int rc;

		snap_err_clear(&e);
		j->fixups = calloc((size_t)((npages + 63) / 64), sizeof(uint64_t));
		if (j->fixups == NULL) {
			load_fail(j, "out of memory");
			return;
		}
		uint64_t priv = 1;

		rc = rst_find_mapping(g->pid, j->path, j->ram_size, &addr, &e);
		if (rc >= 0)
			rc = rst_mapping_private(g->pid, addr, &priv, &e);
		/* Walk the pages only when some shadow the file. */
		n = rc < 0 ? rc : priv == 0 ? 0 :
		    rst_private_pages(g->pid, addr, npages, j->fixups, &e);
		if (n < 0) {
			load_fail(j, "cannot inspect the new QEMU's memory: %s",
				  snap_err_text(&e, (int)n));
			return;
		}
		j->nfixups = (uint64_t)n;
	}
	phase(j, "capabilities set, shadowed pages found");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		load_fail(j, "cannot create a socketpair: %s", strerror(errno));
		return;
	}
	j->sock = pair[0];
	j->state = LOAD_LOADING;
	if (start_worker(j, feed_worker) < 0) {
		close(pair[1]);
		load_fail(j, "cannot start the restore thread");
		return;
	}
	qmpc_exec(c, "getfd", json_pack("{s:s}", "fdname", "snapd-load"),
		  pair[1], on_getfd, g);
	close(pair[1]);
}

static void
launched(struct guest *g, int rc, const char *why, void *arg)
{
	struct load_job *j = arg;
	json_t *caps;

	if (g->load != j)
		return;
	if (rc < 0) {
		load_fail(j, "%s", why);
		return;
	}
	phase(j, "QEMU monitor ready");
	j->state = LOAD_CAPS;
	caps = json_array();
	for (size_t i = 0; i < j->plan.nqemu; i++)
		json_array_append_new(caps, json_pack("{s:s, s:b}",
			"capability", j->plan.qemu[i].name,
			"state", j->plan.qemu[i].state));
	qmpc_exec(g->qmp, "migrate-set-capabilities",
		  json_pack("{s:o}", "capabilities", caps), -1, on_caps, g);
}

static void
on_query_migrate(struct qmpc *c, json_t *ret, const char *cls,
		 const char *desc, void *arg);

static void
poll_migrate(struct loop *l, void *arg)
{
	struct guest *g = arg;

	(void)l;
	if (g->load != NULL && g->qmp != NULL)
		qmpc_exec(g->qmp, "query-migrate", NULL, -1, on_query_migrate, g);
}

static void
incoming_status(struct load_job *j, const char *st)
{
	if (strcmp(st, "completed") == 0) {
		j->qemu_done = true;
		maybe_done(j);
	} else if (strcmp(st, "failed") == 0) {
		load_fail(j, "QEMU could not load the snapshot (see its log)");
	} else if (strcmp(st, "active") == 0) {
		emit(j, "active");
	}
}

static void
on_query_migrate(struct qmpc *c, json_t *ret, const char *cls,
		 const char *desc, void *arg)
{
	struct guest *g = arg;
	struct load_job *j = g->load;
	const char *st;

	(void)c;
	(void)cls;
	(void)desc;
	if (j == NULL || j->state != LOAD_LOADING || j->qemu_done)
		return;
	st = json_string_value(json_object_get(ret, "status"));
	if (st != NULL)
		incoming_status(j, st);
	if (!j->qemu_done && g->load == j && j->state == LOAD_LOADING)
		loop_timer_add(j->d->loop, 5, poll_migrate, g, NULL);
}

void
load_on_qemu_event(struct guest *g, const char *name, json_t *data)
{
	struct load_job *j = g->load;
	const char *st;

	if (j == NULL || strcmp(name, "MIGRATION") != 0)
		return;
	st = json_string_value(json_object_get(data, "status"));
	if (st != NULL && j->state == LOAD_LOADING)
		incoming_status(j, st);
}

void
load_on_qemu_gone(struct guest *g)
{
	struct load_job *j = g->load;

	if (j == NULL || j->state == LOAD_REPLACING)
		return;
	if (j->state == LOAD_DONE)
		return;     /* background verification: it still has a verdict */
	load_fail(j, "QEMU exited during the restore");
}

bool
load_busy(const struct guest *g)
{
	return g->load != NULL && g->load->state != LOAD_DONE;
}

void
load_release(struct guest *g)
{
	struct load_job *j = g->load;

	if (j == NULL || j->state != LOAD_DONE)
		return;
	/* Only the background verification is left: it ends alone (and
	 * shutdown waits for it). */
	j->cancel = 1;
	j->g = NULL;
	g->load = NULL;
	j->d->detached_jobs++;
}

void
load_abort(struct guest *g, const char *why)
{
	struct load_job *j = g->load;

	if (j == NULL)
		return;
	if (j->state == LOAD_DONE)
		j->cancel = 1;
	else
		load_fail(j, "%s", why);
}

json_t *
load_query(const struct guest *g)
{
	const struct load_job *j = g->load;

	if (j == NULL)
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:I}", "status",
			 load_state_names[j->state], "vm", g->spec->name,
			 "path", j->path, "total-time",
			 (json_int_t)((snap_now_mono_ns() - j->t0_ns) / 1000000u));
}

/* ---- the request ------------------------------------------------------ */

/* Read "[{capability, state}]" into @out (names are the table's own). */
static int
parse_caps(json_t *arr, struct rst_cap *out, size_t *n, char *why, size_t wl)
{
	size_t i;
	json_t *c;

	*n = 0;
	if (arr == NULL)
		return 0;
	if (json_array_size(arr) > RST_MAX_CAPS) {
		snprintf(why, wl, "too many capabilities (at most %d)", RST_MAX_CAPS);
		return -EINVAL;
	}
	json_array_foreach(arr, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		json_t *st = json_object_get(c, "state");
		size_t k;

		if (!json_is_object(c) || name == NULL || !json_is_boolean(st) ||
		    json_object_size(c) != 2) {
			snprintf(why, wl, "capability %zu must be {\"capability\": "
				 "NAME, \"state\": BOOL}", i);
			return -EINVAL;
		}
		for (k = 0; k < rst_cap_count(); k++)
			if (strcmp(rst_cap_name(k), name) == 0)
				break;
		if (k == rst_cap_count()) {
			snprintf(why, wl, "unknown migration capability '%s'", name);
			return SNAP_ECAPS;
		}
		out[*n].name = rst_cap_name(k);
		out[(*n)++].state = json_is_true(st);
	}
	return 0;
}

static bool
machine_known(struct snapd *d, const char *m)
{
	if (d->machines == NULL)
		return true;    /* could not ask QEMU: let QEMU decide */
	for (char **p = d->machines; *p != NULL; p++)
		if (strcmp(*p, m) == 0)
			return true;
	return false;
}

/* Resolve the uri to a file path and (when cataloged) its snapshot row. */
static int
resolve_uri(struct snapd *d, const char *uri, const char *vm, char *path,
	    size_t size, int64_t *id, char *why, size_t wl)
{
	struct cat_snapshot *s = NULL;
	struct snap_err e;
	int rc;

	*id = 0;
	snap_err_clear(&e);
	if (strncmp(uri, "file:", 5) == 0) {
		if (uri[5] != '/' ||
		    snap_strlcpy(path, uri + 5, size) >= size) {
			snprintf(why, wl, "uri must be 'file:/ABSOLUTE/PATH'");
			return -EINVAL;
		}
		return 0;
	}
	if (strncmp(uri, "snapshot:", 9) == 0) {
		const char *name = uri + 9, *slash = strchr(name, '/');
		char guest[CAT_NAME_MAX + 1];

		if (slash != NULL) {
			if ((size_t)(slash - name) > CAT_NAME_MAX) {
				snprintf(why, wl, "bad snapshot uri '%s'", uri);
				return -EINVAL;
			}
			memcpy(guest, name, (size_t)(slash - name));
			guest[slash - name] = '\0';
			name = slash + 1;
		} else if (vm != NULL) {
			snap_strlcpy(guest, vm, sizeof(guest));
		} else {
			snprintf(why, wl, "say whose snapshot: 'snapshot:GUEST/NAME' "
				 "or give 'vm'");
			return -EINVAL;
		}
		rc = cat_snapshot_find(d->db, guest, name, &s, &e);
		if (rc < 0) {
			snprintf(why, wl, "guest '%s' has no snapshot '%s'", guest,
				 name);
			return rc;
		}
		rc = cat_db_resolve_path(d->db, s->path, path, size);
		*id = s->id;
		cat_snapshot_free(s);
		if (rc < 0)
			snprintf(why, wl, "snapshot path too long");
		return rc;
	}
	snprintf(why, wl, "uri must be 'file:PATH' or 'snapshot:NAME'");
	return -EINVAL;
}

/* verify=none is allowed only for a file verified since it last changed. */
static bool
verified_since_modified(struct snapd *d, int64_t id, const char *path)
{
	struct cat_snapshot *s = NULL;
	struct stat st;
	bool ok;

	if (id <= 0 || stat(path, &st) < 0 ||
	    cat_snapshot_get(d->db, id, &s, NULL) < 0)
		return false;
	ok = s->verdict == CAT_VERDICT_GOOD &&
	     s->verified_ns >= (int64_t)st.st_mtim.tv_sec * 1000000000 +
			       st.st_mtim.tv_nsec;
	cat_snapshot_free(s);
	return ok;
}

void
load_start(struct snapd *d, struct qmpd_req *req, json_t *args)
{
	static const char *const allowed[] = {
		"uri", "vm", "capabilities", "exit-on-error", "mode", "verify",
		NULL,
	};
	const char *uri = NULL, *vm = NULL, *mode = "lazy", *verify = "full";
	struct rst_cap call[RST_MAX_CAPS];
	struct guest_spec *spec = NULL;
	struct load_job *j = NULL;
	const struct fmt_meta *meta;
	struct fmt_block_info bi;
	json_t *caps = NULL, *sj;
	bool exit_on_error = true;
	struct snap_err e;
	struct guest *g;
	char why[512];
	size_t ncall;
	int rc;

	if (!qmpd_args_only(req, args, allowed) ||
	    !qmpd_arg_str(req, args, "uri", true, &uri) ||
	    !qmpd_arg_str(req, args, "vm", false, &vm) ||
	    !qmpd_arg_array(req, args, "capabilities", false, &caps) ||
	    !qmpd_arg_bool(req, args, "exit-on-error", false, &exit_on_error) ||
	    !qmpd_arg_str(req, args, "mode", false, &mode) ||
	    !qmpd_arg_str(req, args, "verify", false, &verify))
		return;
	snap_err_clear(&e);
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "out of memory");
		return;
	}
	j->d = d;
	load_daemon = d;
	j->sock = -1;
	j->t0_ns = snap_now_mono_ns();
	if (strcmp(mode, "lazy") != 0 && strcmp(mode, "eager") != 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'mode' must be "
			       "'lazy' or 'eager'");
		goto fail;
	}
	j->eager = strcmp(mode, "eager") == 0;
	if (strcmp(verify, "full") == 0) {
		j->verify = VERIFY_FULL;
	} else if (strcmp(verify, "background") == 0) {
		j->verify = VERIFY_BACKGROUND;
	} else if (strcmp(verify, "none") == 0) {
		j->verify = VERIFY_NONE;
	} else {
		qmpd_reply_err(req, QMPD_GENERIC, "parameter 'verify' must be "
			       "'full', 'background' or 'none'");
		goto fail;
	}
	if (!exit_on_error) {
		qmpd_reply_err(req, QMPD_GENERIC, "exit-on-error=false needs "
			       "QEMU 9.1; QEMU 7.2 always exits on a failed load");
		goto fail;
	}
	/* 1. capabilities, before anything else */
	rc = parse_caps(caps, call, &ncall, why, sizeof(why));
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "%s", why);
		goto fail;
	}
	g = vm != NULL ? guest_find(d, vm) : NULL;
	rc = rst_caps_resolve(call, ncall, g && g->caps ? g->caps : d->caps,
			      g && g->caps ? g->ncaps : d->ncaps, &j->plan, &e);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "%s", snap_err_text(&e, rc));
		goto fail;
	}
	/* 2. the file */
	rc = resolve_uri(d, uri, vm, j->path, sizeof(j->path), &j->snap_id, why,
			 sizeof(why));
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "%s", why);
		goto fail;
	}
	rc = fmt_reader_open_flags(&j->r, j->path, FMT_OPEN_DEFER_SUMS, &e);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot load '%s': %s", j->path,
			       snap_err_text(&e, rc));
		goto fail;
	}
	meta = fmt_reader_meta(j->r);
	sj = json_loads(meta->guest_spec, 0, NULL);
	rc = sj ? spec_from_json(sj, &spec, &e) : SNAP_ECORRUPT;
	json_decref(sj);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "snapshot '%s' has no usable "
			       "guest spec: %s", j->path, snap_err_text(&e, rc));
		goto fail;
	}
	if (meta->machine_type[0] && strcmp(meta->machine_type, spec->machine) != 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "snapshot '%s' was saved with "
			       "machine type '%s' but its spec says '%s'", j->path,
			       meta->machine_type, spec->machine);
		goto fail;
	}
	if (!machine_known(d, spec->machine)) {
		qmpd_reply_err(req, QMPD_GENERIC, "machine type '%s' of snapshot "
			       "'%s' is not supported by %s", spec->machine,
			       j->path, d->qemu);
		goto fail;
	}
	rc = fmt_reader_block_index(j->r, SPEC_RAM_ID);
	if (rc < 0 || fmt_reader_block(j->r, (unsigned)rc, &bi) < 0 ||
	    !bi.main || bi.length != spec->memory) {
		qmpd_reply_err(req, QMPD_GENERIC, "snapshot '%s': its main RAM "
			       "block does not match the guest's %llu bytes of "
			       "memory", j->path,
			       (unsigned long long)spec->memory);
		goto fail;
	}
	j->ram_size = bi.length;
	{
		const void *rs;
		size_t rl;
		j->was_running = fmt_reader_entry(j->r, "snapd.run-state", &rs,
						  &rl) == 0 && rl == 7 &&
				 memcmp(rs, "running", 7) == 0;
	}
	if (j->verify == VERIFY_NONE &&
	    !verified_since_modified(d, j->snap_id, j->path)) {
		qmpd_reply_err(req, QMPD_GENERIC, "verify=none needs a snapshot "
			       "verified since it was last modified; '%s' is not",
			       j->path);
		goto fail;
	}
	/* 3. the guest that receives it */
	if (vm == NULL)
		vm = meta->guest_name[0] ? meta->guest_name : spec->name;
	if (!spec_name_valid(vm)) {
		qmpd_reply_err(req, QMPD_GENERIC, "'%s' is not a valid guest name",
			       vm);
		goto fail;
	}
	g = guest_find(d, vm);
	if (g != NULL && (g->save != NULL || g->load != NULL)) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is busy with a %s",
			       vm, g->save ? "save" : "restore");
		goto fail;
	}
	if (g != NULL && g->pid > 0) {
		/* Its QEMU is killed before the new one starts: everything
		 * short of the pages is checked first, the table included. */
		j->replacing = true;
		rc = fmt_reader_load_sums(j->r, &e);
		if (rc < 0) {
			qmpd_reply_err(req, QMPD_GENERIC, "cannot load '%s': %s",
				       j->path, snap_err_text(&e, rc));
			goto fail;
		}
	}
	snap_strlcpy(spec->name, vm, sizeof(spec->name));
	if (g == NULL) {
		json_t *canon = spec_to_json(spec);
		char *text = canon ? json_dumps(canon, JSON_COMPACT |
						JSON_SORT_KEYS) : NULL;
		json_decref(canon);
		rc = text ? cat_guest_add(d->db, vm, text, NULL, &e) : -ENOMEM;
		free(text);
		if (rc < 0 && rc != -EEXIST) {
			qmpd_reply_err(req, QMPD_GENERIC, "cannot record guest "
				       "'%s': %s", vm, snap_err_text(&e, rc));
			goto fail;
		}
		struct guest *ng = NULL;

		rc = guest_add(d, spec, &ng);
		spec = NULL;
		if (rc < 0 || ng == NULL) {
			qmpd_reply_err(req, QMPD_GENERIC, "out of memory");
			goto fail;
		}
		g = ng;
		j->created_guest = true;
		/* Another host's port may be taken here: any port will do. */
		if (guest_open_display(g, true, why, sizeof(why)) < 0)
			snap_warn("%s", why);
	} else {
		/* A guest a failed restore left for removal is wanted again. */
		g->remove_on_exit = false;
		/* The snapshot's spec is what the stream needs. */
		spec_free(g->spec);
		g->spec = spec;
		spec = NULL;
	}
	if (g == NULL) {        /* cannot happen; keeps analysers calm */
		qmpd_reply_err(req, QMPD_GENERIC, "internal error");
		goto fail;
	}
	j->g = g;
	g->load = j;
	qmpd_reply_ok(req, json_pack("{s:s, s:s, s:s}", "vm", vm, "path",
				     j->path, "mode", j->eager ? "eager" : "lazy"));
	emit(j, "setup");
	if (j->verify == VERIFY_FULL && !feed_verifies(j)) {
		j->state = LOAD_VERIFYING;
		if (start_worker(j, verify_worker) < 0)
			load_fail(j, "cannot start the verify thread");
		return;
	}
	/* Read the checksum table while QEMU starts (full verification
	 * reads it first thing anyway). */
	if (pthread_create(&j->sums_thread, NULL, sums_worker, j) == 0)
		j->sums_running = true;
	launch(j);
	return;
fail:
	spec_free(spec);
	job_free(j);
}
