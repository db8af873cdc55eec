/*
 * catalog/catalog_int.h: what the catalog's .c files share and the unit
 * tests may reach: the connection, the statement cache, transactions and
 * the migration machinery. Not part of the public interface.
 */
#ifndef SNAP_CATALOG_CATALOG_INT_H
#define SNAP_CATALOG_CATALOG_INT_H

#include <sqlite3.h>

#include "catalog/catalog.h"

/* Every fixed statement of the module, prepared once per connection. */
enum cat_q {
	Q_GUEST_ADD,
	Q_GUEST_GET,
	Q_GUEST_LIST,
	Q_GUEST_ID,
	Q_GUEST_SET_STATE,
	Q_GUEST_SET_SPEC,
	Q_GUEST_NSNAPS,
	Q_GUEST_NMAPS,
	Q_GUEST_DEL,
	Q_SNAP_ADD,
	Q_SNAP_GET_ID,
	Q_SNAP_GET_NAME,
	Q_SNAP_PATH,
	Q_SNAP_DEL,
	Q_SNAP_SET_STATE,
	Q_SNAP_VERIFIED,
	Q_SNAP_PIN,
	Q_SNAP_EXISTS,
	Q_SNAP_SET_PARENT_BY_NAME,
	Q_LABEL_ADD,
	Q_LABEL_DEL,
	Q_RET_ALL,
	Q_RET_GUEST,
	Q_INUSE_ADD,
	Q_INUSE_DEL,
	Q_INUSE_CLEAR,
	Q_INUSE_COUNT,
	Q_INUSE_LIST,
	Q_REC_ROWS,
	Q_COUNT
};

/* List queries: one cached statement per combination of these bits. */
#define CAT_LQ_GUEST  0x01u
#define CAT_LQ_LABEL  0x02u
#define CAT_LQ_SINCE  0x04u
#define CAT_LQ_UNTIL  0x08u
#define CAT_LQ_STATES 0x10u
#define CAT_LQ_OLDEST 0x20u
#define CAT_LQ_COUNT  0x40u

/*
 * The columns a snapshot record is read from, in the order
 * cat_snapshot_from_row() expects; FROM snapshots s JOIN guests g.
 */
#define CAT_SNAP_COLS \
	"s.id, g.name, s.name, s.path, s.apparent_size, s.allocated_size, " \
	"s.ram_size, s.present_pages, s.root_digest, s.qemu_version, " \
	"s.machine, s.caps, s.created, s.save_ns, s.live, " \
	"coalesce(s.parent_id, 0), coalesce(s.verified, 0), s.verdict, " \
	"s.pinned, s.state, " \
	"(SELECT group_concat(label, ' ') FROM " \
	"(SELECT label FROM labels WHERE snapshot_id = s.id ORDER BY label))"
#define CAT_SNAP_FROM " FROM snapshots s JOIN guests g ON g.id = s.guest_id"

struct cat_db {
	sqlite3 *h;
	char *store;
	bool in_tx;                 /* inside cat_db_begin() */
	sqlite3_stmt *q[Q_COUNT];
	sqlite3_stmt *lq[CAT_LQ_COUNT];
};

/* Fill @err with SNAP_ESQLITE and "@what: <sqlite message>"; return it. */
int cat_sqlerr(struct cat_db *db, struct snap_err *err, const char *what);

/* The cached statement @q, reset and unbound, ready to bind. */
int cat_stmt(struct cat_db *db, enum cat_q q, sqlite3_stmt **out,
	     struct snap_err *err);

/*
 * Prepare a statement that is not cached (reconcile, migrations). The
 * caller finalizes it.
 */
int cat_prepare(struct cat_db *db, const char *sql, sqlite3_stmt **out,
		struct snap_err *err);

/*
 * Step a statement that returns no row (or whose rows are ignored) to
 * completion. Maps constraint violations: UNIQUE/PRIMARY KEY -> -EEXIST,
 * FOREIGN KEY -> -ENOENT; other failures -> SNAP_ESQLITE.
 */
int cat_step_done(struct cat_db *db, sqlite3_stmt *st, struct snap_err *err,
		  const char *what);

/*
 * Atomic unit for one API call: BEGIN IMMEDIATE when no transaction is
 * open, else a savepoint; *@outer says which. cat_op_end(), given that
 * flag, commits or releases (rc >= 0) or rolls back (rc < 0) and returns
 * rc, or the commit's failure.
 */
int cat_op_begin(struct cat_db *db, bool *outer, struct snap_err *err);
int cat_op_end(struct cat_db *db, bool outer, int rc, struct snap_err *err);

/* Text of enum values as stored in the database, and back (-EINVAL). */
int cat_guest_state_parse(const char *s);
int cat_snap_state_parse(const char *s);

/* The id of guest @name: 0 and *@id, -ENOENT or another error. */
int cat_guest_id(struct cat_db *db, const char *name, int64_t *id,
		 struct snap_err *err);

/* Build a caller-owned record from the current row of a CAT_SNAP_COLS query. */
int cat_snapshot_from_row(sqlite3_stmt *st, struct cat_snapshot **out,
			  struct snap_err *err);

/* Layout helpers: "snapshots/@guest/@name.snap" into @buf. */
int cat_layout_path(const char *guest, const char *name, char *buf,
		    size_t size);

/* One step of the schema: it brings the database to version @version. */
struct cat_migration {
	int version;                /* user_version after this step */
	const char *sql;            /* must end by setting user_version */
};

/*
 * Apply every step of @steps (ordered by version, starting at 1) above the
 * database's version, each in its own IMMEDIATE transaction that re-reads
 * the version first (so concurrent openers migrate once). SNAP_ESCHEMA when
 * the database is newer than the last step, SNAP_ECORRUPT when a step does
 * not leave user_version at its version.
 */
int cat_db_migrate(struct cat_db *db, const struct cat_migration *steps,
		   size_t n, struct snap_err *err);

/*
 * cat_db_open() on an explicit database file @dbpath for the store @store
 * (rebuild builds its new database under a temporary name).
 */
int cat_db_open_file(const char *dbpath, const char *store, bool create,
		     struct cat_db **out, struct snap_err *err);

#endif
