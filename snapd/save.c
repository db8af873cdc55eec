/*
 * snapd/save.c: saving a running guest into a snapshot file.
 *
 * snapd is the migration destination: QEMU gets one end of a socketpair with
 * getfd and migrates into "fd:"; a worker thread reads the other end, parses
 * the stream (format/migstream.h) and hands every RAM page to the snapshot
 * writer at its fixed offset and everything after the RAM section to it as
 * device state. The loop thread drives QEMU and decides the outcome.
 *
 * Job states (loop thread) and transitions:
 *
 *   PREPARE --QMP steps ok--> MIGRATING --QEMU "completed"--> WAIT_STREAM
 *      |                         |                              |
 *      +-------any failure-------+------------------------------+--> FAILED
 *   WAIT_STREAM --worker parsed a complete stream--> COMMITTING
 *   COMMITTING --worker committed--> DONE  (catalog row, SAVE_COMPLETED)
 *
 * The worker thread never touches daemon state: it reports through
 * loop_post() and waits, under the job's mutex, for the loop's verdict
 * (commit with the final metadata, or abort). Only after a commit is the
 * file published and the catalog row written; every failure aborts the
 * writer, which removes its temporary file. The guest is resumed afterwards
 * if it was running and the request asked for it (the default), whether the
 * save succeeded or not.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "format/format.h"
#include "format/migstream.h"
#include "snapd/daemon.h"

#define SAVE_READ_CHUNK (1u << 20)
/* QEMU's own "no limit" for max-bandwidth is INT64_MAX; any huge value. */
#define SAVE_BANDWIDTH  ((json_int_t)1 << 50)

enum save_state {
	SAVE_PREPARE,
	SAVE_MIGRATING,
	SAVE_WAIT_STREAM,
	SAVE_COMMITTING,
	SAVE_DONE,
	SAVE_FAILED,
};

static const char *const save_state_names[] = {
	[SAVE_PREPARE] = "setup",
	[SAVE_MIGRATING] = "active",
	[SAVE_WAIT_STREAM] = "active",
	[SAVE_COMMITTING] = "completing",
	[SAVE_DONE] = "completed",
	[SAVE_FAILED] = "failed",
};

enum verdict { VERDICT_NONE, VERDICT_COMMIT, VERDICT_ABORT };

struct save_job {
	struct guest *g;
	struct snapd *d;
	enum save_state state;
	char name[SPEC_NAME_MAX + 1];
	char dir[4096];
	char file[SPEC_NAME_MAX + 8];
	bool live, resume, was_running, qemu_done;
	bool resuming;              /* "cont" sent, outcome not reported yet */
	char disks_policy[16];
	uint64_t t_start_ns, t_end_ns;
	int64_t downtime_ms;
	char qemu_status[32];
	char error[512];
	bool error_weak;            /* only "QEMU says it failed": the worker
				       may know the cause */

	/* Shared with the worker, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum verdict verdict;
	struct fmt_meta meta;       /* set by the loop with the verdict */
	char *spec_json, *argv_json, *caps_json;
	json_t *user_caps;          /* migrate's own capabilities, applied last */

	/* Owned by the worker while it runs. */
	pthread_t thread;
	bool thread_started;
	int sock;                   /* our end of the socketpair */
	struct fmt_writer *w;
	struct mig_parser *p;
	bool main_seen;
	int worker_rc;
	struct snap_err worker_err;
	struct fmt_summary summary;
	char machine[64];
	_Atomic uint64_t stream_bytes;
	_Atomic uint64_t pages;
};

/* ---- worker thread ---------------------------------------------------- */

static int
on_preamble(void *opaque, const struct mig_preamble *pre)
{
	struct save_job *j = opaque;

	if (pre->return_path || pre->ignore_shared)
		return snap_err_set(&j->worker_err, SNAP_ESTREAM, 0,
				    "stream uses %s, which a snapshot cannot hold",
				    pre->return_path ? "a return path" :
				    "x-ignore-shared");
	snap_strlcpy(j->machine, pre->machine, sizeof(j->machine));
	return fmt_writer_set_entry(j->w, "qemu.preamble", pre->bytes, pre->len,
				    &j->worker_err);
}

static int
on_ram(void *opaque, const struct mig_ram *ram)
{
	struct save_job *j = opaque;
	struct fmt_block_decl decl[FMT_MAX_BLOCKS];
	json_t *info, *blocks;
	char *text;
	int rc;

	if (ram->nblocks > FMT_MAX_BLOCKS)
		return snap_err_set(&j->worker_err, SNAP_ELIMIT, 0,
				    "stream has %zu RAM blocks, more than %d",
				    ram->nblocks, FMT_MAX_BLOCKS);
	blocks = json_array();
	for (size_t i = 0; i < ram->nblocks; i++) {
		decl[i].idstr = ram->blocks[i].idstr;
		decl[i].length = ram->blocks[i].used_length;
		decl[i].page_size = MIG_PAGE_SIZE;
		decl[i].main = strcmp(ram->blocks[i].idstr, SPEC_RAM_ID) == 0;
		j->main_seen |= decl[i].main;
		json_array_append_new(blocks, json_pack("{s:s, s:I}",
			"idstr", ram->blocks[i].idstr,
			"used-length", (json_int_t)ram->blocks[i].used_length));
	}
	if (!j->main_seen) {
		json_decref(blocks);
		return snap_err_set(&j->worker_err, SNAP_ESTREAM, 0,
				    "stream has no RAM block '%s'", SPEC_RAM_ID);
	}
	rc = fmt_writer_declare(j->w, decl, ram->nblocks, &j->worker_err);
	if (rc < 0) {
		json_decref(blocks);
		return rc;
	}
	info = json_pack("{s:I, s:I, s:I, s:o}",
			 "section-id", (json_int_t)ram->section_id,
			 "instance-id", (json_int_t)ram->instance_id,
			 "version-id", (json_int_t)ram->version_id,
			 "blocks", blocks);
	text = info ? json_dumps(info, JSON_COMPACT) : NULL;
	json_decref(info);
	if (text == NULL)
		return -ENOMEM;
	rc = fmt_writer_set_entry(j->w, "qemu.ram", text, strlen(text),
				  &j->worker_err);
	free(text);
	return rc;
}

static int
on_page(void *opaque, uint32_t block, uint64_t offset, const uint8_t *data)
{
	struct save_job *j = opaque;

	atomic_fetch_add_explicit(&j->pages, 1, memory_order_relaxed);
	if (data == NULL)
		return fmt_writer_put_zero(j->w, block, offset / MIG_PAGE_SIZE,
					   &j->worker_err);
	return fmt_writer_put_page(j->w, block, offset / MIG_PAGE_SIZE, data,
				   &j->worker_err);
}

static int
on_device(void *opaque, const uint8_t *buf, size_t len)
{
	struct save_job *j = opaque;

	return fmt_writer_devstate(j->w, buf, len, &j->worker_err);
}

static void job_worker_done(struct loop *l, void *arg);
static void job_stream_ended(struct loop *l, void *arg);

/* Read and parse the whole stream. Returns 0 when it ended properly. */
static int
read_stream(struct save_job *j)
{
	uint8_t *buf = malloc(SAVE_READ_CHUNK);
	int rc = 0;

	if (buf == NULL)
		return snap_err_set(&j->worker_err, -ENOMEM, 0, "out of memory");
	for (;;) {
		ssize_t n = read(j->sock, buf, SAVE_READ_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = snap_err_set(&j->worker_err, -errno, 0,
					  "cannot read the migration stream: %s",
					  strerror(errno));
			break;
		}
		if (n == 0) {
			rc = mig_parser_finish(j->p, &j->worker_err);
			break;
		}
		atomic_fetch_add_explicit(&j->stream_bytes, (uint64_t)n,
					  memory_order_relaxed);
		rc = mig_parser_feed(j->p, buf, (size_t)n, &j->worker_err);
		if (rc < 0)
			break;
	}
	free(buf);
	return rc;
}

static void *
worker(void *arg)
{
	struct save_job *j = arg;
	enum verdict v;
	int rc;

	rc = read_stream(j);
	if (rc < 0) {
		/* Stop QEMU's writes at once: it fails its migration. */
		shutdown(j->sock, SHUT_RDWR);
		fmt_writer_abort(j->w);
		j->worker_rc = rc;
		loop_post(j->d->loop, job_worker_done, j);
		return NULL;
	}
	loop_post(j->d->loop, job_stream_ended, j);

	pthread_mutex_lock(&j->mu);
	while (j->verdict == VERDICT_NONE)
		pthread_cond_wait(&j->cv, &j->mu);
	v = j->verdict;
	pthread_mutex_unlock(&j->mu);

	if (v == VERDICT_COMMIT) {
		const char *rs = j->was_running ? "running" : "paused";

		rc = fmt_writer_set_entry(j->w, "snapd.run-state", rs, strlen(rs),
					  &j->worker_err);
		if (rc >= 0)
			rc = fmt_writer_set_meta(j->w, &j->meta, &j->worker_err);
		if (rc >= 0)
			rc = fmt_writer_commit(j->w, &j->summary, &j->worker_err);
	} else {
		fmt_writer_abort(j->w);
		rc = snap_err_set(&j->worker_err, -ECANCELED, 0,
				  "save abandoned");
	}
	j->worker_rc = rc;
	loop_post(j->d->loop, job_worker_done, j);
	return NULL;
}

/* ---- loop side -------------------------------------------------------- */

static void
job_free(struct save_job *j)
{
	if (j == NULL)
		return;
	if (j->sock >= 0)
		close(j->sock);
	mig_parser_free(j->p);
	fmt_writer_free(j->w);
	free(j->spec_json);
	free(j->argv_json);
	free(j->caps_json);
	json_decref(j->user_caps);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
}

static void
set_verdict(struct save_job *j, enum verdict v)
{
	pthread_mutex_lock(&j->mu);
	if (j->verdict == VERDICT_NONE)
		j->verdict = v;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

static void
emit_migration(struct save_job *j, const char *status)
{
	qmpd_event(j->d->qmpd, "MIGRATION",
		   json_pack("{s:s, s:s}", "vm", j->g->spec->name,
			     "status", status));
}

/* Report the outcome, detach the job from the guest and free it. */
static void
job_report(struct save_job *j)
{
	struct guest *g = j->g;
	uint64_t ms = (j->t_end_ns ? j->t_end_ns : snap_now_mono_ns()) -
		      j->t_start_ns;

	ms /= 1000000u;
	if (j->state == SAVE_DONE) {
		json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s}",
			"vm", g->spec->name, "name", j->name,
			"path", j->summary.path,
			"bytes", (json_int_t)j->summary.apparent_size,
			"allocated", (json_int_t)j->summary.allocated_size,
			"duration-ms", (json_int_t)ms,
			"downtime-ms", (json_int_t)(j->live ? j->downtime_ms : 0),
			"mode", j->live ? "live" : "stopped");
		emit_migration(j, "completed");
		qmpd_event(j->d->qmpd, "SNAPSHOT_SAVED", ev);
		snap_info("guest '%s': saved '%s' (%llu bytes, %llu ms)",
			  g->spec->name, j->summary.path,
			  (unsigned long long)j->summary.apparent_size,
			  (unsigned long long)ms);
	} else {
		/* Nothing may be left behind by the time anyone hears. */
		if (j->w != NULL)
			fmt_writer_abort(j->w);
		emit_migration(j, "failed");
		qmpd_event(j->d->qmpd, "SNAPSHOT_FAILED",
			   json_pack("{s:s, s:s, s:s}", "vm", g->spec->name,
				     "name", j->name, "error", j->error));
		snap_warn("guest '%s': save '%s' failed: %s", g->spec->name,
			  j->name, j->error);
	}
	g->save = NULL;
	job_free(j);
}

static void
on_resumed(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	   void *arg)
{
	struct save_job *j = arg;

	(void)c;
	(void)ret;
	(void)cls;
	if (desc != NULL)
		snap_warn("guest '%s': cannot resume after the save: %s",
			  j->g->spec->name, desc);
	job_report(j);
}

/*
 * The job has ended one way or another. Called once; the worker, if any,
 * must have finished (or never started). The guest is resumed first when
 * it was running and the request asked for it, and the outcome is reported
 * once QEMU has answered, so that a client hearing "saved" finds the guest
 * running (and may save again at once).
 */
static void
job_finish(struct save_job *j)
{
	struct guest *g = j->g;

	if (j->state != SAVE_DONE)
		j->state = SAVE_FAILED;
	if (g->qmp != NULL && g->proc == GUEST_UP && j->was_running &&
	    j->resume &&
	    qmpc_exec(g->qmp, "cont", NULL, -1, on_resumed, j) == 0) {
		j->resuming = true;
		return;
	}
	job_report(j);
}

static void
job_fail(struct save_job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Record the first error and stop both QEMU's side and the worker's. Too
 * late once the worker commits: the file is then complete and published.
 */
static void
job_fail(struct save_job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->state == SAVE_FAILED || j->state == SAVE_COMMITTING ||
	    j->state == SAVE_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
	j->state = SAVE_FAILED;
	if (j->g->qmp != NULL && !j->qemu_done)
		qmpc_exec(j->g->qmp, "migrate_cancel", NULL, -1, NULL, NULL);
	if (j->thread_started) {
		/* Unblock a worker still reading; it aborts and posts done. */
		shutdown(j->sock, SHUT_RDWR);
		set_verdict(j, VERDICT_ABORT);
	} else {
		job_finish(j);
	}
}

static int
record_in_catalog(struct save_job *j)
{
	struct cat_snapshot s = { 0 };
	struct snap_err e;
	char hex[33];
	int rc;

	fmt_digest_hex(&j->summary.root, hex);
	s.guest = j->g->spec->name;
	s.name = j->name;
	s.path = j->summary.path;
	s.apparent_size = j->summary.apparent_size;
	s.allocated_size = j->summary.allocated_size;
	s.ram_size = j->summary.total_pages * MIG_PAGE_SIZE;   /* all blocks */
	s.present_pages = j->summary.present_pages;
	s.root_digest = hex;
	s.qemu_version = j->meta.qemu_version;
	s.machine = j->meta.machine_type;
	s.capabilities = j->caps_json;
	s.created_ns = (int64_t)j->meta.created_ns;
	s.save_duration_ns = (int64_t)j->meta.save_duration_ns;
	s.live = j->live;
	s.parent_id = j->g->parent_id;
	rc = cat_snapshot_add(j->d->db, &s, NULL, &e);
	if (rc < 0)
		snap_err("guest '%s': snapshot '%s' saved but not cataloged "
			 "(reconcile will adopt it): %s", j->g->spec->name,
			 j->name, snap_err_text(&e, rc));
	return rc;
}

static void
job_worker_done(struct loop *l, void *arg)
{
	struct save_job *j = arg;

	(void)l;
	pthread_join(j->thread, NULL);
	j->thread_started = false;
	if (j->worker_rc < 0) {
		/*
		 * QEMU's "failed" often arrives before the worker's own
		 * report of why (a stream it refused, a full disk): keep the
		 * cause, not the symptom. A stream cut short is our own doing
		 * once the job failed, so it explains nothing.
		 */
		if (j->state == SAVE_FAILED && j->error_weak &&
		    j->worker_rc != -ECANCELED && j->worker_rc != SNAP_ETRUNC)
			snap_strlcpy(j->error, snap_err_text(&j->worker_err,
							     j->worker_rc),
				     sizeof(j->error));
		if (j->state != SAVE_FAILED) {
			snap_strlcpy(j->error, snap_err_text(&j->worker_err,
							     j->worker_rc),
				     sizeof(j->error));
			j->state = SAVE_FAILED;
			if (j->g->qmp != NULL && !j->qemu_done)
				qmpc_exec(j->g->qmp, "migrate_cancel", NULL, -1,
					  NULL, NULL);
		}
		job_finish(j);
		return;
	}
	j->state = SAVE_DONE;
	record_in_catalog(j);
	job_finish(j);
}

/* Both the stream and QEMU are done: publish. */
static void
maybe_commit(struct save_job *j)
{
	struct guest *g = j->g;

	if (j->state != SAVE_WAIT_STREAM || !j->qemu_done)
		return;
	j->state = SAVE_COMMITTING;
	j->t_end_ns = snap_now_mono_ns();
	pthread_mutex_lock(&j->mu);
	j->meta.guest_name = g->spec->name;
	j->meta.snapshot_name = j->name;
	j->meta.guest_spec = j->spec_json;
	j->meta.qemu_version = g->qemu_version;
	j->meta.machine_type = j->machine;
	j->meta.qemu_argv = j->argv_json;
	j->meta.capabilities = j->caps_json;
	j->meta.disks_policy = j->disks_policy;
	j->meta.created_ns = snap_now_real_ns();
	j->meta.save_duration_ns = j->t_end_ns - j->t_start_ns;
	j->meta.downtime_ns = j->live && j->downtime_ms > 0 ?
			      (uint64_t)j->downtime_ms * 1000000u : 0;
	j->meta.save_mode = j->live ? FMT_SAVE_LIVE : FMT_SAVE_STOPPED;
	pthread_mutex_unlock(&j->mu);
	set_verdict(j, VERDICT_COMMIT);
}

static void
job_stream_ended(struct loop *l, void *arg)
{
	struct save_job *j = arg;

	(void)l;
	if (j->state == SAVE_FAILED)
		return;     /* the verdict is already abort */
	j->state = SAVE_WAIT_STREAM;
	maybe_commit(j);
}

static void
on_query_migrate(struct qmpc *c, json_t *ret, const char *cls,
		 const char *desc, void *arg)
{
	struct guest *g = arg;
	struct save_job *j = g->save;

	(void)c;
	(void)cls;
	(void)desc;
	if (j == NULL)
		return;
	if (ret != NULL)
		j->downtime_ms = json_integer_value(json_object_get(ret,
								    "downtime"));
	j->qemu_done = true;
	maybe_commit(j);
}

void
save_on_qemu_event(struct guest *g, const char *name, json_t *data)
{
	struct save_job *j = g->save;
	const char *st;

	if (j == NULL || strcmp(name, "MIGRATION") != 0)
		return;
	st = json_string_value(json_object_get(data, "status"));
	if (st == NULL)
		return;
	snap_strlcpy(j->qemu_status, st, sizeof(j->qemu_status));
	if (strcmp(st, "completed") == 0) {
		/* The downtime is in query-migrate; ask before publishing. */
		qmpc_exec(g->qmp, "query-migrate", NULL, -1, on_query_migrate, g);
	} else if (strcmp(st, "failed") == 0) {
		/* (job_fail frees the job when no worker runs.) */
		if (j->thread_started && j->state != SAVE_FAILED)
			j->error_weak = true;
		job_fail(j, "QEMU reported the migration failed");
	} else if (strcmp(st, "cancelled") == 0) {
		job_fail(j, "the migration was cancelled");
	} else if (strcmp(st, "active") == 0) {
		emit_migration(j, st);
	}
}

void
save_on_qemu_gone(struct guest *g)
{
	struct save_job *j = g->save;

	if (j == NULL)
		return;
	if (j->resuming) {
		/* Reaped before the monitor said goodbye: the answer to
		 * "cont" was dropped with the connection. */
		job_report(j);
		return;
	}
	if (j->state == SAVE_FAILED)
		return;
	if (j->qemu_done && j->state != SAVE_PREPARE) {
		/* QEMU finished its part; the stream is in our hands. */
		return;
	}
	job_fail(j, "QEMU exited during the save");
}

/* ---- the QMP steps ---------------------------------------------------- */

static void step_migrate(struct qmpc *c, json_t *ret, const char *cls,
			 const char *desc, void *arg);

static bool
step_failed(struct guest *g, const char *what, const char *cls,
	    const char *desc)
{
	struct save_job *j = g->save;

	if (j == NULL)
		return true;
	if (cls != NULL && strcmp(cls, "Disconnected") == 0) {
		job_fail(j, "QEMU exited during the save");
		return true;
	}
	if (desc != NULL) {
		job_fail(j, "QEMU refused %s: %s", what, desc);
		return true;
	}
	return j->state == SAVE_FAILED;
}

static void
step_getfd(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	   void *arg)
{
	struct guest *g = arg;

	(void)ret;
	if (step_failed(g, "getfd", cls, desc))
		return;
	qmpc_exec(c, "migrate", json_pack("{s:s}", "uri", "fd:snapd-save"), -1,
		  step_migrate, g);
}

static void
step_migrate(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	     void *arg)
{
	struct guest *g = arg;

	(void)c;
	(void)ret;
	if (step_failed(g, "migrate", cls, desc))
		return;
	g->save->state = SAVE_MIGRATING;
}

static void
step_params(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	    void *arg)
{
	struct guest *g = arg;
	struct save_job *j = g->save;
	int pair[2];

	(void)ret;
	if (step_failed(g, "migrate-set-parameters", cls, desc))
		return;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		job_fail(j, "cannot create a socketpair: %s", strerror(errno));
		return;
	}
	j->sock = pair[0];
	if (pthread_create(&j->thread, NULL, worker, j) != 0) {
		close(pair[1]);
		job_fail(j, "cannot start the save thread");
		return;
	}
	j->thread_started = true;
	qmpc_exec(c, "getfd", json_pack("{s:s}", "fdname", "snapd-save"),
		  pair[1], step_getfd, g);
	close(pair[1]);   /* qmpc sent a duplicate */
}

static void
step_caps(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	  void *arg)
{
	struct guest *g = arg;

	(void)ret;
	if (step_failed(g, "migrate-set-capabilities", cls, desc))
		return;
	qmpc_exec(c, "migrate-set-parameters",
		  json_pack("{s:I}", "max-bandwidth", SAVE_BANDWIDTH), -1,
		  step_params, g);
}

static void
step_stopped(struct qmpc *c, json_t *ret, const char *cls, const char *desc,
	     void *arg)
{
	struct guest *g = arg;
	struct save_job *j = g->save;
	json_t *caps;

	(void)ret;
	if (step_failed(g, "stop", cls, desc))
		return;
	/*
	 * Capabilities are set explicitly, every one that matters to the
	 * stream's shape, so a leftover from an earlier user of this QEMU can
	 * never change what we parse.
	 */
	caps = json_pack("[{s:s,s:b},{s:s,s:b},{s:s,s:b},{s:s,s:b},{s:s,s:b},"
			 "{s:s,s:b},{s:s,s:b},{s:s,s:b}]",
			 "capability", "events", "state", 1,
			 "capability", "xbzrle", "state", 0,
			 "capability", "compress", "state", 0,
			 "capability", "postcopy-ram", "state", 0,
			 "capability", "multifd", "state", 0,
			 "capability", "return-path", "state", 0,
			 "capability", "x-ignore-shared", "state", 0,
			 "capability", "auto-converge", "state", 0);
	/*
	 * A migrate request's own capabilities come last and win; the parser
	 * refuses whatever stream shape they lead to that a snapshot cannot
	 * hold.
	 */
	if (j->user_caps != NULL)
		json_array_extend(caps, j->user_caps);
	j->caps_json = json_dumps(caps, JSON_COMPACT);
	qmpc_exec(c, "migrate-set-capabilities",
		  json_pack("{s:o}", "capabilities", caps), -1, step_caps, g);
}

/* ---- entry points ----------------------------------------------------- */

static void
default_name(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y%m%dT%H%M%SZ", &tm);
}

void
save_start(struct guest *g, struct qmpd_req *req, json_t *args, bool qemu_named)
{
	static const char *const allowed_save[] = {
		"vm", "name", "live", "resume", "disks", NULL };
	static const char *const allowed_migrate[] = {
		"vm", "uri", "live", "resume", "disks", "capabilities", NULL };
	const char *name = NULL, *uri = NULL, *disks = NULL;
	bool live = false, resume = true;
	struct snap_err e;
	struct save_job *j;
	json_t *caps = NULL;
	int rc;

	snap_err_clear(&e);
	if (!qmpd_args_only(req, args, qemu_named ? allowed_migrate : allowed_save) ||
	    !qmpd_arg_str(req, args, "name", false, &name) ||
	    !qmpd_arg_str(req, args, "uri", qemu_named, &uri) ||
	    !qmpd_arg_bool(req, args, "live", false, &live) ||
	    !qmpd_arg_bool(req, args, "resume", false, &resume) ||
	    !qmpd_arg_str(req, args, "disks", false, &disks) ||
	    !qmpd_arg_array(req, args, "capabilities", false, &caps))
		return;
	if (g->proc != GUEST_UP || g->qmp == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' is not running",
			       g->spec->name);
		return;
	}
	if (g->save != NULL) {
		qmpd_reply_err(req, QMPD_GENERIC,
			       "guest '%s' is already being saved", g->spec->name);
		return;
	}
	if (caps != NULL) {
		size_t i;
		json_t *c;
		json_array_foreach(caps, i, c) {
			if (!json_is_string(json_object_get(c, "capability")) ||
			    !json_is_boolean(json_object_get(c, "state"))) {
				qmpd_reply_err(req, QMPD_GENERIC,
					       "capability %zu must be "
					       "{\"capability\": NAME, "
					       "\"state\": BOOL}", i);
				return;
			}
		}
	}
	if (disks != NULL && strcmp(disks, "readonly") != 0 &&
	    strcmp(disks, "external") != 0) {
		qmpd_reply_err(req, QMPD_GENERIC,
			       "parameter 'disks' must be 'readonly' or 'external'");
		return;
	}
	if (spec_has_writable_disk(g->spec) && disks == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC,
			       "guest '%s' has writable disks whose contents a "
			       "snapshot does not capture; say disks='readonly' "
			       "or disks='external' if they are safe to leave out",
			       g->spec->name);
		return;
	}

	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "out of memory");
		return;
	}
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	j->sock = -1;
	j->g = g;
	j->d = g->d;
	j->live = live;
	j->resume = resume;
	j->was_running = strcmp(g->run_state, "running") == 0;
	j->t_start_ns = snap_now_mono_ns();
	snap_strlcpy(j->disks_policy, disks ? disks :
		     (g->spec->ndisks ? "readonly" : "none"),
		     sizeof(j->disks_policy));

	if (qemu_named) {
		/* migrate {uri: "file:PATH"}: an explicit path. */
		const char *path, *slash;

		if (strncmp(uri, "file:", 5) != 0 || uri[5] != '/') {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "migrate: uri must be 'file:/ABSOLUTE/PATH'");
			goto fail;
		}
		path = uri + 5;
		slash = strrchr(path, '/');
		if ((size_t)(slash - path) >= sizeof(j->dir) ||
		    strlen(slash + 1) >= sizeof(j->file) || slash[1] == '.' ||
		    slash[1] == '\0') {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "migrate: bad file name in '%s'", path);
			goto fail;
		}
		memcpy(j->dir, path, (size_t)(slash - path));
		j->dir[slash == path ? 1 : slash - path] = '\0';
		if (slash == path)
			j->dir[0] = '/';
		snap_strlcpy(j->file, slash + 1, sizeof(j->file));
		snap_strlcpy(j->name, slash + 1, sizeof(j->name));
		{
			char *dot = strrchr(j->name, '.');
			if (dot != NULL && strcmp(dot, ".snap") == 0)
				*dot = '\0';
		}
		if (!spec_name_valid(j->name)) {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "migrate: '%s' is not a usable snapshot name",
				       j->name);
			goto fail;
		}
	} else {
		if (name != NULL)
			snap_strlcpy(j->name, name, sizeof(j->name));
		else
			default_name(j->name, sizeof(j->name));
		if (!spec_name_valid(j->name)) {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "snapshot name '%s' is not valid: 1-%d "
				       "characters of [A-Za-z0-9_.-]", j->name,
				       SPEC_NAME_MAX);
			goto fail;
		}
		rc = cat_db_snapshot_dir(g->d->db, g->spec->name, true, j->dir,
					 sizeof(j->dir), &e);
		if (rc < 0) {
			qmpd_reply_err(req, QMPD_GENERIC,
				       "cannot create the snapshot directory: %s",
				       snap_err_text(&e, rc));
			goto fail;
		}
		snap_fmt(j->file, sizeof(j->file), "%s%s", j->name,
			 CAT_SNAP_SUFFIX);
	}
	{
		struct cat_snapshot *old = NULL;
		if (cat_snapshot_find(g->d->db, g->spec->name, j->name, &old,
				      NULL) == 0) {
			cat_snapshot_free(old);
			qmpd_reply_err(req, QMPD_GENERIC,
				       "guest '%s' already has a snapshot '%s'",
				       g->spec->name, j->name);
			goto fail;
		}
	}
	rc = fmt_writer_open(&j->w, j->dir, j->file, NULL, &e);
	if (rc < 0) {
		qmpd_reply_err(req, QMPD_GENERIC, "cannot create snapshot in '%s': %s",
			       j->dir, snap_err_text(&e, rc));
		goto fail;
	}
	{
		static const struct mig_parser_ops ops = {
			.preamble = on_preamble, .ram = on_ram,
			.page = on_page, .device = on_device,
		};
		if (mig_parser_open(&j->p, &ops, j) < 0) {
			qmpd_reply_err(req, QMPD_GENERIC, "out of memory");
			goto fail;
		}
	}
	{
		json_t *sj = spec_to_json(g->spec);
		j->spec_json = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
		json_decref(sj);
		j->argv_json = g->argv ? json_dumps(g->argv, JSON_COMPACT) : NULL;
	}
	j->user_caps = json_incref(caps);
	g->save = j;
	j->state = SAVE_PREPARE;
	qmpd_reply_ok(req, json_pack("{s:s, s:s, s:s}", "vm", g->spec->name,
				     "name", j->name, "mode",
				     live ? "live" : "stopped"));
	emit_migration(j, "setup");
	if (!live && j->was_running)
		qmpc_exec(g->qmp, "stop", NULL, -1, step_stopped, g);
	else
		step_stopped(g->qmp, NULL, NULL, NULL, g);
	return;
fail:
	job_free(j);
}

json_t *
save_query(const struct guest *g)
{
	const struct save_job *j = g->save;
	struct fmt_progress p = { 0 };

	if (j == NULL)
		return NULL;
	if (j->w != NULL)
		fmt_writer_progress(j->w, &p);
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
			 "status", save_state_names[j->state],
			 "vm", g->spec->name, "name", j->name,
			 "total-time", (json_int_t)((snap_now_mono_ns() -
						    j->t_start_ns) / 1000000u),
			 "stream-bytes", (json_int_t)atomic_load(&((struct save_job *)(uintptr_t)j)->stream_bytes),
			 "written-bytes", (json_int_t)p.bytes_written,
			 "pages", (json_int_t)p.pages_put);
}

void
save_cancel(struct guest *g, struct qmpd_req *req)
{
	if (g->save == NULL) {
		qmpd_reply_err(req, QMPD_GENERIC, "guest '%s' has no save running",
			       g->spec->name);
		return;
	}
	if (g->save->state == SAVE_COMMITTING) {
		qmpd_reply_err(req, QMPD_GENERIC, "the save of guest '%s' is "
			       "already being published", g->spec->name);
		return;
	}
	job_fail(g->save, "the save was cancelled");
	qmpd_reply_ok(req, NULL);
}
