/*
 * catalog/catalog.h: the SQLite catalog of guests and snapshots.
 *
 * The snapshot files are the truth; the catalog is an index of them that
 * backup schedulers and people query. It records guests, snapshots (with
 * labels, verification results, pinning and lineage) and which running
 * guests map which snapshot file, and it can be reconciled with the store
 * directory or rebuilt from the files alone.
 *
 * Store layout (fixed; every path below is relative to the store directory
 * given to cat_db_open()):
 *
 *     catalog.db (+ catalog.db-wal, catalog.db-shm)   this database
 *     snapshots/GUEST/NAME.snap                        one snapshot file
 *     snapshots/GUEST/.NAME.snap.tmp-XXXXXX            a writer's temporary
 *
 * The format writer is given the directory cat_db_snapshot_dir() returns
 * and the file name NAME CAT_SNAP_SUFFIX. Guest and snapshot names are 1 to
 * CAT_NAME_MAX bytes of [A-Za-z0-9._-] not starting with '.' (so they are
 * safe file names and never look like temporary files); labels are 1 to
 * CAT_NAME_MAX bytes of [A-Za-z0-9._:=/+-].
 *
 * Invariants:
 *   - SQLite in WAL mode with foreign keys on, a busy timeout of
 *     CAT_BUSY_TIMEOUT_MS and synchronous=FULL: a committed change survives
 *     a crash, and a process killed mid-transaction leaves no trace of it.
 *   - The schema version is PRAGMA user_version. Opening runs the
 *     forward-only migrations up to CAT_SCHEMA_VERSION (an empty or new file
 *     gets the current schema); a database with a newer version is refused
 *     with SNAP_ESCHEMA and left untouched.
 *   - Every call that changes several rows does so in one transaction: it
 *     all happens or none of it does. Calls made between cat_db_begin() and
 *     cat_db_commit() join that transaction (each as a savepoint).
 *   - Snapshot ids are never reused, even after a delete.
 *   - A snapshot that a guest maps (cat_inuse_add()) cannot be deleted
 *     (SNAP_EINUSE); a guest cannot be removed while it has snapshots
 *     (-ENOTEMPTY) or maps one (SNAP_EINUSE).
 *
 * Ownership: a struct cat_db is not thread-safe; use one per thread (or
 * process; several may share a store). Records returned by the catalog
 * (struct cat_guest, struct cat_snapshot and the lists) are owned by the
 * caller and released with their _free function; each record is one
 * allocation, its strings included, and stays valid after the database is
 * closed. Structures passed in are only read and never retained.
 *
 * Errors: every fallible call returns >= 0 or a negative code from
 * common/err.h: SNAP_ESQLITE (the SQLite message in @err), -EINVAL for a bad
 * name or argument, -ENOENT when the guest or snapshot does not exist,
 * -EEXIST for a duplicate, SNAP_EINUSE, -ENOTEMPTY, SNAP_ESCHEMA, -ENOMEM,
 * or -errno from the file system. Outputs are written only on success.
 */
#ifndef SNAP_CATALOG_CATALOG_H
#define SNAP_CATALOG_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/retention.h"
#include "common/err.h"

#define CAT_SCHEMA_VERSION   1
#define CAT_BUSY_TIMEOUT_MS  10000
#define CAT_NAME_MAX         64
#define CAT_DB_FILE          "catalog.db"
#define CAT_SNAP_DIR         "snapshots"
#define CAT_SNAP_SUFFIX      ".snap"

struct cat_db;

/* ---- database ------------------------------------------------------- */

#define CAT_OPEN_CREATE 0x1u    /* create the store directory and database */

/*
 * Open the catalog of the store directory @store (STORE/catalog.db), set
 * the connection up and migrate the schema. Without CAT_OPEN_CREATE a
 * missing store or database gives -ENOENT. SNAP_ESCHEMA when the database
 * is newer than this program.
 */
int cat_db_open(const char *store, unsigned flags, struct cat_db **out,
		struct snap_err *err);

/* Close; rolls back a transaction left open. NULL is a no-op. */
void cat_db_close(struct cat_db *db);

/* The store directory given to cat_db_open(). */
const char *cat_db_store(const struct cat_db *db);

/* The schema version of the open database (CAT_SCHEMA_VERSION after open). */
int cat_db_schema_version(struct cat_db *db, struct snap_err *err);

/*
 * Explicit transaction (BEGIN IMMEDIATE: the write lock is taken at once,
 * waiting up to the busy timeout). Calls made until cat_db_commit() or
 * cat_db_rollback() join it. Nesting is SNAP_EMISUSE. A failed call inside
 * the transaction undoes its own changes only; the caller decides whether
 * to commit the rest.
 */
int cat_db_begin(struct cat_db *db, struct snap_err *err);
int cat_db_commit(struct cat_db *db, struct snap_err *err);
int cat_db_rollback(struct cat_db *db, struct snap_err *err);

/*
 * Write STORE/snapshots/@guest into @buf (the directory a snapshot file of
 * @guest is written to), creating it (and its parents) when @create.
 * -EINVAL for a bad guest name, -ENAMETOOLONG when @size is too small.
 */
int cat_db_snapshot_dir(const struct cat_db *db, const char *guest,
			bool create, char *buf, size_t size,
			struct snap_err *err);

/*
 * Write the file system path of a row's @path (relative to the store, or
 * absolute) into @buf. -EINVAL for an empty path, -ENAMETOOLONG.
 */
int cat_db_resolve_path(const struct cat_db *db, const char *path, char *buf,
			size_t size);

/* True when @s is a valid guest or snapshot name (see the layout above). */
bool cat_name_valid(const char *s);
/* True when @s is a valid label. */
bool cat_label_valid(const char *s);

/* ---- guests --------------------------------------------------------- */

enum cat_guest_state {
	CAT_GUEST_DEFINED = 0,      /* known, never started */
	CAT_GUEST_RUNNING,
	CAT_GUEST_PAUSED,
	CAT_GUEST_STOPPED,
	CAT_GUEST_NSTATES,
};

struct cat_guest {
	int64_t id;
	const char *name;
	const char *spec;           /* JSON text, stored as given */
	int64_t created_ns;         /* Unix time in ns */
	enum cat_guest_state state;
};

struct cat_guest_list {
	size_t n;
	struct cat_guest **v;       /* ordered by name */
};

/* "defined", "running", "paused", "stopped"; "unknown" otherwise. */
const char *cat_guest_state_name(enum cat_guest_state s);

/*
 * Add guest @name with @spec (JSON text; NULL means "{}"), state
 * CAT_GUEST_DEFINED, created now. -EEXIST when the name is taken. Sets
 * *@id (may be NULL).
 */
int cat_guest_add(struct cat_db *db, const char *name, const char *spec,
		  int64_t *id, struct snap_err *err);
int cat_guest_get(struct cat_db *db, const char *name, struct cat_guest **out,
		  struct snap_err *err);
int cat_guest_list(struct cat_db *db, struct cat_guest_list **out,
		   struct snap_err *err);
int cat_guest_set_state(struct cat_db *db, const char *name,
			enum cat_guest_state state, struct snap_err *err);
int cat_guest_set_spec(struct cat_db *db, const char *name, const char *spec,
		       struct snap_err *err);
/* -ENOTEMPTY while it has snapshots, SNAP_EINUSE while it maps one. */
int cat_guest_remove(struct cat_db *db, const char *name,
		     struct snap_err *err);

void cat_guest_free(struct cat_guest *g);
void cat_guest_list_free(struct cat_guest_list *l);

/* ---- snapshots ------------------------------------------------------ */

enum cat_snap_state {
	CAT_SNAP_OK = 0,            /* file present, not known to be bad */
	CAT_SNAP_MISSING,           /* the row's file is gone */
	CAT_SNAP_CORRUPT,           /* verification failed or unreadable */
	CAT_SNAP_NSTATES,
};

enum cat_verdict {
	CAT_VERDICT_NONE = 0,       /* never verified */
	CAT_VERDICT_GOOD,
	CAT_VERDICT_BAD,
};

/*
 * A snapshot record. As input (cat_snapshot_add()) the fields marked "out"
 * are ignored; as output every field is set and the strings are never NULL.
 */
struct cat_snapshot {
	int64_t id;                 /* out */
	const char *guest;          /* guest name; the guest must exist */
	const char *name;           /* unique per guest */
	const char *path;           /* relative to the store, or absolute
				       (see cat_db_resolve_path()); on input
				       NULL means the layout path
				       snapshots/GUEST/NAME.snap, and a path
				       under the store directory as given to
				       cat_db_open() is stored relative */
	uint64_t apparent_size;     /* bytes (st_size) */
	uint64_t allocated_size;    /* bytes on disk */
	uint64_t ram_size;          /* guest RAM bytes (all blocks) */
	uint64_t present_pages;     /* pages holding data */
	const char *root_digest;    /* hex; may be "" */
	const char *qemu_version;   /* may be "" */
	const char *machine;        /* resolved machine type; may be "" */
	const char *capabilities;   /* JSON text; NULL on input: "{}" */
	int64_t created_ns;         /* 0 on input: now */
	int64_t save_duration_ns;
	bool live;                  /* live save (else the guest was stopped) */
	int64_t parent_id;          /* snapshot a restored guest came from; 0 */
	int64_t verified_ns;        /* out: last verification, 0 = never */
	enum cat_verdict verdict;   /* out */
	bool pinned;                /* never removed by retention */
	enum cat_snap_state state;  /* out (CAT_SNAP_OK when added) */
	size_t nlabels;
	const char *const *labels;  /* sorted on output */
};

struct cat_snapshot_list {
	size_t n;
	struct cat_snapshot **v;
};

enum cat_order {
	CAT_NEWEST_FIRST = 0,       /* created descending, then id descending */
	CAT_OLDEST_FIRST,           /* created ascending, then id ascending */
};

/* A filter; zero-initialised it matches everything, newest first. */
struct cat_filter {
	const char *guest;          /* NULL: every guest */
	const char *label;          /* NULL: any labels */
	int64_t since_ns;           /* created >= since_ns; 0: no bound */
	int64_t until_ns;           /* created < until_ns; 0: no bound */
	unsigned states;            /* bits 1u << CAT_SNAP_*; 0: any */
	enum cat_order order;
	size_t limit;               /* at most this many; 0: no limit */
};

const char *cat_snap_state_name(enum cat_snap_state s);   /* "ok", ... */
const char *cat_verdict_name(enum cat_verdict v);         /* "none", ... */

/*
 * Register @s and its labels in one transaction; sets *@id (may be NULL).
 * -ENOENT when the guest or the parent does not exist, -EEXIST when the
 * guest already has a snapshot of that name or a row has that path,
 * -EINVAL for bad names or labels.
 */
int cat_snapshot_add(struct cat_db *db, const struct cat_snapshot *s,
		     int64_t *id, struct snap_err *err);

/* Look up by id, or by guest and name. -ENOENT when absent. */
int cat_snapshot_get(struct cat_db *db, int64_t id, struct cat_snapshot **out,
		     struct snap_err *err);
int cat_snapshot_find(struct cat_db *db, const char *guest, const char *name,
		      struct cat_snapshot **out, struct snap_err *err);

/* The snapshots that match @f (NULL: all), in its order. */
int cat_snapshot_list(struct cat_db *db, const struct cat_filter *f,
		      struct cat_snapshot_list **out, struct snap_err *err);

#define CAT_DELETE_KEEP_FILE 0x1u   /* remove the row only */

/*
 * Delete snapshot @id: the row, its labels and (unless
 * CAT_DELETE_KEEP_FILE) its file, in that order inside one transaction, so
 * a crash leaves at worst a row marked missing at the next reconcile, never
 * a file without a row. SNAP_EINUSE when a guest maps it (nothing is
 * changed). A file that is already gone is not an error. Snapshots that
 * named it as parent keep a parent id of 0. Inside cat_db_begin() the
 * file is removed at once, even if the transaction is later rolled back
 * (the row then reads as missing at the next reconcile).
 */
int cat_snapshot_delete(struct cat_db *db, int64_t id, unsigned flags,
			struct snap_err *err);

/* Set the state (e.g. CAT_SNAP_CORRUPT when a load finds a bad page). */
int cat_snapshot_set_state(struct cat_db *db, int64_t id,
			   enum cat_snap_state state, struct snap_err *err);

/*
 * Record a verification at @when_ns (0: now) with verdict @good. A bad
 * verdict also sets the state to CAT_SNAP_CORRUPT; a good one turns a
 * corrupt snapshot back to CAT_SNAP_OK (a missing one stays missing).
 */
int cat_snapshot_mark_verified(struct cat_db *db, int64_t id, int64_t when_ns,
			       bool good, struct snap_err *err);

int cat_snapshot_set_pinned(struct cat_db *db, int64_t id, bool pinned,
			    struct snap_err *err);

/* Add a label (adding one it has is not an error) or remove one (-ENOENT). */
int cat_snapshot_label_add(struct cat_db *db, int64_t id, const char *label,
			   struct snap_err *err);
int cat_snapshot_label_remove(struct cat_db *db, int64_t id, const char *label,
			      struct snap_err *err);

void cat_snapshot_free(struct cat_snapshot *s);
void cat_snapshot_list_free(struct cat_snapshot_list *l);

/*
 * The retention view of @guest's snapshots (NULL: every guest; retention is
 * normally applied per guest), every state included, in no particular
 * order: *@out is an array of *@n items the caller releases with free().
 */
int cat_snapshot_ret_items(struct cat_db *db, const char *guest,
			   struct cat_ret_item **out, size_t *n,
			   struct snap_err *err);

/* ---- in-use tracking ------------------------------------------------ */

/*
 * Record that running guest @guest maps the file of snapshot @id (adding
 * an existing pair is not an error). -ENOENT when either does not exist.
 */
int cat_inuse_add(struct cat_db *db, int64_t id, const char *guest,
		  struct snap_err *err);
/* Forget one mapping (-ENOENT when it was not recorded). */
int cat_inuse_remove(struct cat_db *db, int64_t id, const char *guest,
		     struct snap_err *err);
/* Forget every mapping of @guest (its QEMU exited); returns how many. */
int cat_inuse_clear(struct cat_db *db, const char *guest, struct snap_err *err);
/* How many guests map snapshot @id (0 when none or no such snapshot). */
int cat_inuse_count(struct cat_db *db, int64_t id, struct snap_err *err);
/*
 * The ids of the snapshots @guest maps, ascending: *@ids is released with
 * free() (NULL when *@n is 0).
 */
int cat_inuse_list(struct cat_db *db, const char *guest, int64_t **ids,
		   size_t *n, struct snap_err *err);

/* ---- reconcile and rebuild ------------------------------------------ */

enum cat_fix_kind {
	CAT_FIX_ADOPTED = 0,        /* file without a row: row added from
				       the file's metadata (state ok) */
	CAT_FIX_ADOPTED_CORRUPT,    /* file without a row that the format
				       reader rejects: row added, corrupt */
	CAT_FIX_MISSING,            /* row without a file: marked missing */
	CAT_FIX_RETURNED,           /* row marked missing whose file is back:
				       marked ok */
	CAT_FIX_SIZE_CHANGED,       /* file size differs from the row:
				       marked corrupt */
	CAT_FIX_TEMP_REMOVED,       /* leftover temporary file removed */
	CAT_FIX_STRAY,              /* entry that fits no layout: left alone */
	CAT_FIX_FAILED,             /* an action failed (see error) */
	CAT_FIX_NKINDS,
};

/* One thing reconcile did (or, in a dry run, would do). */
struct cat_fix {
	enum cat_fix_kind kind;
	const char *path;           /* relative to the store (or absolute) */
	int64_t id;                 /* the row concerned, 0 if none */
	int error;                  /* reader or file error, 0 if none */
	const char *detail;         /* error text, "" if none */
};

struct cat_reconcile_opts {
	bool dry_run;               /* report, change nothing */
	/*
	 * Leave temporary files modified within this many ns alone (a save
	 * may be writing them). 0 removes them all: right at startup, before
	 * any save can run.
	 */
	int64_t temp_min_age_ns;
	/* Called for each fix as it is made (may be NULL). */
	void (*fix)(void *ctx, const struct cat_fix *f);
	void *ctx;
};

struct cat_reconcile_report {
	size_t count[CAT_FIX_NKINDS];   /* fixes of each kind */
	size_t files;                   /* snapshot files seen */
	size_t rows;                    /* rows seen */
};

/* "adopted", "adopted-corrupt", "missing", ... */
const char *cat_fix_kind_name(enum cat_fix_kind k);

/*
 * Bring the catalog in line with the store: every STORE/snapshots/G/N.snap
 * without a row is adopted (guest G created if needed; labels, pinning and
 * verification are not in files and start empty), every row whose file is
 * gone is marked missing (and back to ok when it returns), a file whose
 * size differs from its row is marked corrupt, and leftover temporary
 * files are removed. Database changes happen in one transaction (holding
 * the write lock throughout: run it at startup, or when saves are rare);
 * if it fails they are all rolled back, but temporary files already
 * removed stay removed. The callback sees each fix as it is made. Not
 * allowed inside cat_db_begin() (SNAP_EMISUSE). @opts and @rep may be
 * NULL. Returns the number of fixes (strays and failures not counted).
 */
int cat_reconcile(struct cat_db *db, const struct cat_reconcile_opts *opts,
		  struct cat_reconcile_report *rep, struct snap_err *err);

/*
 * Recreate STORE/catalog.db from the snapshot files alone: a new database
 * is built under a temporary name (STORE/.catalog.db.tmp-PID; leftovers of
 * an interrupted rebuild are removed first), filled by adopting every file
 * (as cat_reconcile()), and renamed over the old one, whose WAL is removed
 * first. Guests without
 * snapshots, labels, pins, verification results and in-use records are
 * lost. No process may have the catalog open meanwhile. @opts (dry_run is
 * refused with -EINVAL) and @rep may be NULL. Returns the number of fixes.
 */
int cat_rebuild(const char *store, const struct cat_reconcile_opts *opts,
		struct cat_reconcile_report *rep, struct snap_err *err);

#endif
