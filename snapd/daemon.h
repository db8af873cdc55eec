/*
 * snapd/daemon.h: the daemon's state and the pieces that share it.
 *
 * One struct snapd exists per process, owned by main.c and used only on the
 * loop thread. Guests hang off it in a list; each guest owns at most one
 * QEMU process and at most one job (a save) at a time.
 *
 * Guest process states and their transitions:
 *
 *   OFF --start--> STARTING --QMP ready--> UP --quit/exit--> OFF
 *                      |                    |
 *                      +---exit/timeout-----+--unexpected exit--> CRASHED
 *
 * CRASHED behaves like OFF (it may be started again) but is reported as
 * such until then. While UP, the run state (running, paused, ...) follows
 * QEMU's STOP/RESUME events and query-status.
 *
 * Store layout under the home directory (created 0700):
 *   catalog.db                   the SQLite catalog
 *   control.sock                 the control socket (default path)
 *   guests/NAME/                 per-guest run files: qmp.sock, vnc.sock,
 *                                serial.log, qemu.log
 *   snapshots/NAME/SNAP.snap     snapshot files of guest NAME
 */
#ifndef SNAPD_DAEMON_H
#define SNAPD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "snapd/loop.h"
#include "snapd/qmpc.h"
#include "snapd/qmpd.h"
#include "snapd/spec.h"
#include "snapd/vncproxy.h"

struct cat_db;
struct save_job;
struct load_job;
struct guest;
struct rst_cap;

/* Called once when a launched QEMU is ready (rc 0) or failed to start. */
typedef void (*guest_ready_fn)(struct guest *g, int rc, const char *why,
			       void *arg);

enum guest_proc {
	GUEST_OFF,
	GUEST_STARTING,
	GUEST_UP,
	GUEST_STOPPING,
	GUEST_CRASHED,
};

struct guest {
	struct guest *next;
	struct snapd *d;
	struct guest_spec *spec;
	enum guest_proc proc;
	char run_state[32];         /* QEMU's runstate while UP ("running") */
	pid_t pid;
	struct qmpc *qmp;
	struct loop_timer *timer;   /* start/stop timeout */
	struct qmpd_req *pending;   /* stop request awaiting QEMU's exit */
	guest_ready_fn ready_fn;    /* who waits for the start */
	void *ready_arg;
	struct load_job *load;      /* the running restore, if any */
	struct rst_cap *caps;       /* migrate-set-capabilities {vm} list */
	size_t ncaps;
	int64_t parent_id;          /* snapshot this QEMU was restored from */
	bool remove_on_exit;        /* a failed clone: undefine once reaped */
	uint64_t started_ns;
	int exit_status;            /* last wait status, for reports */
	char dir[4096];             /* guests/NAME */
	struct save_job *save;      /* the running save, if any */
	json_t *argv;               /* argv of the running QEMU, for records */
	char qemu_version[32];      /* from the QMP greeting */
	struct vncproxy *vnc;       /* public VNC endpoint (display "vnc") */
};

struct snapd {
	struct loop *loop;
	struct qmpd *qmpd;
	struct cat_db *db;
	char home[4096];
	const char *qemu;           /* QEMU binary */
	struct guest *guests;
	struct rst_cap *caps;       /* migrate-set-capabilities without vm */
	size_t ncaps;
	char **machines;            /* "qemu -machine help", NULL-terminated */
	bool stopping;              /* SIGTERM received */
	uint64_t stop_ns;           /* when it was */
	unsigned detached_jobs;     /* background checks of undefined guests */
	bool jobs_left;             /* shutdown gave up waiting for jobs */
};

/* guest.c */
struct guest *guest_find(struct snapd *d, const char *name);
const char *guest_proc_name(enum guest_proc p);
/* Create a guest object (not started) from a validated spec (stolen). */
int guest_add(struct snapd *d, struct guest_spec *spec, struct guest **out);
void guest_remove(struct snapd *d, struct guest *g);
/*
 * Open @g's public VNC endpoint if its spec has one and it is not open yet
 * (vm-define, a restore that defines a guest, startup). @any_port: fall back to an
 * automatic port when the spec's is taken. Returns 0 or -errno with a
 * message in @why.
 */
int guest_open_display(struct guest *g, bool any_port, char *why,
		       size_t whylen);
/* Open the endpoints of every guest (at startup, once the loop exists). */
void guest_open_displays(struct snapd *d);
/* How to launch QEMU beyond the spec. */
struct guest_launch {
	const char *ram_file;       /* map this snapshot file as main RAM */
	bool incoming;              /* -incoming defer */
	bool paused;                /* -S */
};
/*
 * Launch QEMU; @fn is called when QMP is ready or the start failed. On an
 * immediate failure returns negative with a message in @why and never
 * calls @fn.
 */
int guest_launch(struct guest *g, const struct guest_launch *opt,
		 guest_ready_fn fn, void *arg, char *why, size_t whylen);
/* Start QEMU; replies to @req when QMP is ready or the start failed. */
void guest_start(struct guest *g, struct qmpd_req *req);
/* Ask QEMU to quit (kill after a timeout); replies when it has exited. */
void guest_stop(struct guest *g, struct qmpd_req *req);
/* Make QEMU quit now (no reply; the exit is reported as usual). */
void guest_kill(struct guest *g);
/* Reap children after SIGCHLD. */
void guest_reap(struct snapd *d);
/* A JSON description of @g for query commands. */
json_t *guest_to_json(const struct guest *g);
/* Stop every guest at shutdown; returns the number still alive. */
unsigned guest_shutdown_all(struct snapd *d);

/* save.c */
void save_start(struct guest *g, struct qmpd_req *req, json_t *args,
		bool qemu_named);
void save_on_qemu_event(struct guest *g, const char *name, json_t *data);
void save_on_qemu_gone(struct guest *g);
json_t *save_query(const struct guest *g);
void save_cancel(struct guest *g, struct qmpd_req *req);

/* load.c */
void load_start(struct snapd *d, struct qmpd_req *req, json_t *args);
void load_on_qemu_event(struct guest *g, const char *name, json_t *data);
void load_on_qemu_gone(struct guest *g);
/* The guest's QEMU has been reaped. */
void load_on_exited(struct guest *g);
json_t *load_query(const struct guest *g);
/* A restore is under way (not counting a background verification). */
bool load_busy(const struct guest *g);
/*
 * Before the guest goes away (!load_busy()): a background verification
 * still running is cancelled and carries on detached from the guest.
 */
void load_release(struct guest *g);
/* End a restore under way (it fails with @why), or cancel a background
 * verification. The job ends through the loop, as any other. */
void load_abort(struct guest *g, const char *why);

/* prune.c */
void cmd_snapshot_prune(struct qmpd_req *req, json_t *args, void *ctx);
void cmd_snapshot_pin(struct qmpd_req *req, json_t *args, void *ctx);

/* commands.c */
extern const struct qmpd_command snapd_commands[];

#endif
