/*
 * tests/harness/harness.h: the integration-test harness. It starts real
 * QEMU 7.2 with the test guest (tests/guest/), talks QMP to it, reads the
 * guest's serial console, and computes what any guest page must contain.
 *
 * Ownership and lifetime:
 *  - Every QEMU started here runs in its own process group in a private
 *    directory under hn_tmpdir(), with PR_SET_PDEATHSIG so it dies with the
 *    test. hn_qemu_free() kills the group if it still runs, reaps it and
 *    removes its directory. At exit (and from hn_teardown(), usable as a
 *    cmocka teardown) every QEMU still alive is killed and hn_tmpdir() is
 *    removed, so a failed assertion never leaves QEMU behind.
 *  - A struct hn_qemu owns its struct hn_qmp; do not free that one.
 *  - json_t values returned through out-parameters belong to the caller
 *    (json_decref); json_t arguments passed in are stolen (also on error).
 *
 * Errors follow common/err.h: 0 or a negative code. -ETIMEDOUT when a wait
 * ran out, SNAP_EQEMU when QEMU answered with an error or exited, and
 * SNAP_EPROTO when the guest printed ERROR or FAULT. The text behind the
 * last failure is in hn_qemu_error() / hn_qmp_error().
 *
 * Not thread-safe: one test thread drives everything.
 */
#ifndef SNAP_TESTS_HARNESS_H
#define SNAP_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define HN_MAX_RANGES	32
/* Default waits: generous, because TCG under ASan on a busy host is slow. */
#define HN_BOOT_TIMEOUT_MS	120000
#define HN_TICK_TIMEOUT_MS	30000

/* --- environment ----------------------------------------------------------- */

/*
 * Exit the program with status 77 ("skipped") when the QEMU binary
 * (SNAP_QEMU, or qemu-system-x86_64 on PATH) does not exist. Call first.
 */
void hn_require_qemu(void);

/* The QEMU binary to run. Never NULL. */
const char *hn_qemu_binary(void);

/* $SNAP_BUILD/guest/snapguest.elf (SNAP_BUILD defaults to "build"). */
const char *hn_guest_path(void);

/*
 * A private temporary directory for this test program, created on first
 * use and removed at exit. NULL if it cannot be created.
 */
const char *hn_tmpdir(void);

/* Kill and free every QEMU still running. Always returns 0. */
int hn_teardown(void **state);

/* --- QMP client -------------------------------------------------------------- */

struct hn_qmp;

/*
 * Connect to a QMP UNIX socket, retrying until @timeout_ms passes (the
 * server may not listen yet), then read the greeting and negotiate with
 * qmp_capabilities (each within the 60 s reply timeout). Works for QEMU
 * and for any QMP-speaking server.
 */
int hn_qmp_connect(const char *path, int timeout_ms, struct hn_qmp **out);
void hn_qmp_free(struct hn_qmp *m);

/* How long hn_qmp_exec waits for a reply (default 60 s). */
void hn_qmp_set_timeout(struct hn_qmp *m, int timeout_ms);

/*
 * Run @cmd with @args (an object or NULL; stolen). Events that arrive
 * meanwhile are queued. On success *@ret (if not NULL) is the "return"
 * value. A QMP error gives SNAP_EQEMU with "Class: desc" in hn_qmp_error().
 */
int hn_qmp_exec(struct hn_qmp *m, const char *cmd, json_t *args, json_t **ret);

/* The same, with the arguments built by json_pack(@fmt, ...). */
int hn_qmp_execf(struct hn_qmp *m, json_t **ret, const char *cmd,
		 const char *fmt, ...);

/* The same as hn_qmp_exec, passing @fd with SCM_RIGHTS in the same message. */
int hn_qmp_exec_fd(struct hn_qmp *m, const char *cmd, json_t *args, int fd,
		   json_t **ret);

/* getfd: hand @fd to the server under @name (we keep our copy). */
int hn_qmp_getfd(struct hn_qmp *m, int fd, const char *name);

/*
 * Wait for an event named @name, taking the oldest queued one first.
 * *@event (if not NULL) gets the whole event object.
 */
int hn_qmp_wait_event(struct hn_qmp *m, const char *name, int timeout_ms,
		      json_t **event);

/*
 * The same, taking only an event whose data has "vm" == @vm (snapd's
 * events); others stay queued. @vm NULL matches any.
 */
int hn_qmp_wait_event_vm(struct hn_qmp *m, const char *name, const char *vm,
			 int timeout_ms, json_t **event);

/* Number of queued (not yet taken) events named @name (NULL: all). */
size_t hn_qmp_event_count(const struct hn_qmp *m, const char *name);

/* Text of the last failure. Never NULL. */
const char *hn_qmp_error(const struct hn_qmp *m);

/* --- QEMU with the test guest --------------------------------------------------- */

struct hn_qemu_opts {
	const char *machine;	/* NULL: "pc-i440fx-7.2" */
	const char *memory;	/* -m; NULL: "64M" */
	const char *guest_args;	/* the guest's command line, e.g. "fill=32M" */
	const char *incoming;	/* -incoming value (e.g. "defer"), or NULL */
	bool paused;		/* -S: do not start the vCPUs */
	bool no_kernel;		/* do not pass -kernel/-append */
	const char *const *extra; /* NULL-terminated extra arguments, or NULL */
};

struct hn_range {
	uint64_t pfn;
	uint64_t pages;
};

/* What the guest has told us so far on its console. */
struct hn_guest {
	/* From the SNAPGUEST and RANGE lines. */
	bool configured;
	uint64_t seed, zero_pct, single_pct, dirty, verify, tick_ms;
	unsigned nranges;
	struct hn_range ranges[HN_MAX_RANGES];
	/* From READY. */
	unsigned ready_lines;
	uint64_t fill, pages, zero_pages, digest, fill_ms;
	/* From TICK, OK and BAD. */
	unsigned tick_lines;
	uint64_t first_tick, last_tick;
	unsigned ok_lines, bad_lines;
};

struct hn_verdict {
	bool ok;
	uint64_t tick;
	uint64_t page;		/* BAD only: first bad page (pfn) */
	uint64_t addr;		/* BAD only: its guest-physical address */
	uint64_t count;		/* BAD only: number of bad pages */
};

struct hn_qemu;

/*
 * Start QEMU (TCG, no display, serial to a file, QMP on a UNIX socket in
 * the instance's directory) and connect QMP. Returns 0 and *@out.
 */
int hn_qemu_start(const struct hn_qemu_opts *o, struct hn_qemu **out);

/* Kill (if needed), reap and free; remove the directory. NULL is a no-op. */
void hn_qemu_free(struct hn_qemu *q);

/*
 * Follow a QEMU that something else runs (snapd): its console is
 * @dir/serial.log and its own output @dir/qemu.log. It has no QMP here
 * (hn_qemu_qmp() is NULL) and hn_qemu_free() neither kills it nor removes
 * @dir. Its exit is noticed when @pid disappears (status 255).
 */
int hn_qemu_attach(const char *dir, pid_t pid, struct hn_qemu **out);

/* Send "quit" and wait for QEMU to exit. Returns its exit status (>= 0). */
int hn_qemu_quit(struct hn_qemu *q, int timeout_ms);

/* Wait for QEMU to exit on its own. Returns its exit status (>= 0). */
int hn_qemu_wait_exit(struct hn_qemu *q, int timeout_ms);

struct hn_qmp *hn_qemu_qmp(struct hn_qemu *q);
const char *hn_qemu_dir(const struct hn_qemu *q);
pid_t hn_qemu_pid(const struct hn_qemu *q);
const struct hn_guest *hn_qemu_guest(const struct hn_qemu *q);
const char *hn_qemu_error(const struct hn_qemu *q);

/*
 * Read the next console line (without CR/LF) into @buf, waiting up to
 * @timeout_ms. Every line also updates hn_qemu_guest(). Returns its length.
 */
int hn_console_line(struct hn_qemu *q, char *buf, size_t size, int timeout_ms);

/*
 * The text after the last complete console line (a line the guest was
 * printing when it was stopped), after reading all that is there. Valid
 * until the next console call; "" when there is none.
 */
const char *hn_console_pending(struct hn_qemu *q);

/* Wait for READY; the lines before it are consumed (and recorded). */
int hn_wait_ready(struct hn_qemu *q, int timeout_ms);

/* Wait for the next TICK line; *@tick gets its number. */
int hn_wait_tick(struct hn_qemu *q, uint64_t *tick, int timeout_ms);

/* Wait for the next OK or BAD line. */
int hn_wait_verdict(struct hn_qemu *q, struct hn_verdict *v, int timeout_ms);

/* Run a QMP command on @q; on failure the QMP text goes to hn_qemu_error. */
int hn_qemu_execf(struct hn_qemu *q, json_t **ret, const char *cmd,
		  const char *fmt, ...);

/*
 * Poll query-migrate until its status is "completed" (0) or "failed" /
 * "cancelled" (SNAP_EQEMU), at most @timeout_ms.
 */
int hn_migrate_wait(struct hn_qemu *q, int timeout_ms);

/* Print the failure text, the console and QEMU's output to stderr. */
void hn_report(const struct hn_qemu *q, const char *what, int rc);

/* --- snapd ----------------------------------------------------------------------- */

struct hn_snapd;

/*
 * Start $SNAP_BUILD/bin/snapd in the foreground with a new store under
 * hn_tmpdir() and connect a negotiated QMP client to its control socket.
 * It dies with the test (PR_SET_PDEATHSIG), and its guests with it.
 */
int hn_snapd_start(struct hn_snapd **out);

/* SIGTERM, wait (then SIGKILL), free. Returns snapd's exit status. */
int hn_snapd_stop(struct hn_snapd *s);

struct hn_qmp *hn_snapd_qmp(struct hn_snapd *s);
const char *hn_snapd_home(const struct hn_snapd *s);
const char *hn_snapd_socket(const struct hn_snapd *s);
pid_t hn_snapd_pid(const struct hn_snapd *s);

/* Another client connection to the control socket. */
int hn_snapd_connect(struct hn_snapd *s, struct hn_qmp **out);

/*
 * Define guest @name running the test guest with @memory and guest
 * arguments @guest_args (display none), plus @extra QEMU arguments (a JSON
 * array or NULL, stolen), and start it. *@q follows its console.
 */
int hn_snapd_guest(struct hn_snapd *s, const char *name, const char *memory,
		   const char *guest_args, json_t *extra, struct hn_qemu **q);

/* Follow the console of guest @name that snapd runs now. */
int hn_snapd_attach(struct hn_snapd *s, const char *name, struct hn_qemu **q);

/*
 * Wait for event @name whose data has "vm" == @vm (others stay queued).
 * *@data (if not NULL) gets the event's data.
 */
int hn_snapd_wait_event(struct hn_qmp *m, const char *name, const char *vm,
			int timeout_ms, json_t **data);

/* Run $SNAP_BUILD/bin/snapctl with @args against @s; its exit status. */
int hn_snapctl(struct hn_snapd *s, char *out, size_t outlen,
	       const char *const *args);

/* --- the guest's memory model ----------------------------------------------------- */

/*
 * Expected bytes of page @pfn at generation @gen in a guest configured
 * like @g. Returns true when the layout leaves that page zero (then @out is
 * all zero).
 */
bool hn_expected_page(const struct hn_guest *g, uint64_t pfn, uint64_t gen,
		      uint8_t out[4096]);

/* True when @pfn lies in one of the guest's fill ranges. */
bool hn_page_filled(const struct hn_guest *g, uint64_t pfn);

/*
 * The READY digest and zero-page count a guest configured like @g must
 * report, computed on the host from its ranges (all generations 0).
 */
void hn_model_digest(const struct hn_guest *g, uint64_t *digest,
		     uint64_t *zero_pages);

#endif
