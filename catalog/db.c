/*
 * catalog/db.c: the catalog connection. Opening the store's database and
 * setting the connection up (WAL, busy timeout, foreign keys), the schema
 * and its forward-only migrations, the prepared-statement cache, the
 * transaction helpers every API call uses, and the store layout.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog_int.h"
#include "common/util.h"

/*
 * Version 1. Times are Unix nanoseconds. Text enums ("ok", "running", ...)
 * rather than integers keep the database readable with the sqlite3 shell.
 * AUTOINCREMENT keeps snapshot ids from being reused after a delete.
 */
static const char schema_v1[] =
	"CREATE TABLE guests ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  spec TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  state TEXT NOT NULL"
	");"
	"CREATE TABLE snapshots ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  guest_id INTEGER NOT NULL REFERENCES guests(id),"
	"  name TEXT NOT NULL,"
	"  path TEXT NOT NULL UNIQUE,"
	"  apparent_size INTEGER NOT NULL,"
	"  allocated_size INTEGER NOT NULL,"
	"  ram_size INTEGER NOT NULL,"
	"  present_pages INTEGER NOT NULL,"
	"  root_digest TEXT NOT NULL,"
	"  qemu_version TEXT NOT NULL,"
	"  machine TEXT NOT NULL,"
	"  caps TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  save_ns INTEGER NOT NULL,"
	"  live INTEGER NOT NULL,"
	"  parent_id INTEGER REFERENCES snapshots(id) ON DELETE SET NULL,"
	"  verified INTEGER,"
	"  verdict TEXT CHECK (verdict IN ('good', 'bad')),"
	"  pinned INTEGER NOT NULL DEFAULT 0,"
	"  state TEXT NOT NULL DEFAULT 'ok'"
	"    CHECK (state IN ('ok', 'missing', 'corrupt')),"
	"  UNIQUE (guest_id, name)"
	");"
	/* Covers the per-guest retention view (id, created, pinned). */
	"CREATE INDEX snapshots_guest_created"
	"  ON snapshots (guest_id, created, id, pinned);"
	"CREATE INDEX snapshots_created ON snapshots (created, id);"
	"CREATE INDEX snapshots_parent ON snapshots (parent_id)"
	"  WHERE parent_id IS NOT NULL;"
	"CREATE TABLE labels ("
	"  snapshot_id INTEGER NOT NULL"
	"    REFERENCES snapshots(id) ON DELETE CASCADE,"
	"  label TEXT NOT NULL,"
	"  PRIMARY KEY (snapshot_id, label)"
	") WITHOUT ROWID;"
	"CREATE INDEX labels_label ON labels (label, snapshot_id);"
	"CREATE TABLE in_use ("
	"  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),"
	"  guest_id INTEGER NOT NULL REFERENCES guests(id),"
	"  since INTEGER NOT NULL,"
	"  PRIMARY KEY (snapshot_id, guest_id)"
	") WITHOUT ROWID;"
	"CREATE INDEX in_use_guest ON in_use (guest_id);"
	"PRAGMA user_version = 1;";

/*
 * The migrations, oldest first. A schema change appends an entry (version
 * N + 1, SQL from version N, ending with "PRAGMA user_version = N + 1"),
 * bumps CAT_SCHEMA_VERSION, and commits a dump of a version-N database
 * under tests/unit/data/ for the upgrade test. Entries are never edited.
 */
static const struct cat_migration migrations[] = {
	{ 1, schema_v1 },
};

_Static_assert(SNAP_ARRAY_SIZE(migrations) == CAT_SCHEMA_VERSION,
	       "one migration per schema version");

static const char *const q_sql[Q_COUNT] = {
	[Q_GUEST_ADD] =
		"INSERT INTO guests (name, spec, created, state)"
		" VALUES (?1, ?2, ?3, ?4)",
	[Q_GUEST_GET] =
		"SELECT id, name, spec, created, state FROM guests"
		" WHERE name = ?1",
	[Q_GUEST_LIST] =
		"SELECT id, name, spec, created, state FROM guests"
		" ORDER BY name",
	[Q_GUEST_ID] = "SELECT id FROM guests WHERE name = ?1",
	[Q_GUEST_SET_STATE] = "UPDATE guests SET state = ?2 WHERE name = ?1",
	[Q_GUEST_SET_SPEC] = "UPDATE guests SET spec = ?2 WHERE name = ?1",
	[Q_GUEST_NSNAPS] =
		"SELECT EXISTS (SELECT 1 FROM snapshots WHERE guest_id = ?1)",
	[Q_GUEST_NMAPS] =
		"SELECT EXISTS (SELECT 1 FROM in_use WHERE guest_id = ?1)",
	[Q_GUEST_DEL] = "DELETE FROM guests WHERE id = ?1",
	[Q_SNAP_ADD] =
		"INSERT INTO snapshots (guest_id, name, path, apparent_size,"
		" allocated_size, ram_size, present_pages, root_digest,"
		" qemu_version, machine, caps, created, save_ns, live,"
		" parent_id, pinned, state)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
		" ?13, ?14, ?15, ?16, ?17)",
	[Q_SNAP_GET_ID] =
		"SELECT " CAT_SNAP_COLS CAT_SNAP_FROM " WHERE s.id = ?1",
	[Q_SNAP_GET_NAME] =
		"SELECT " CAT_SNAP_COLS CAT_SNAP_FROM
		" WHERE g.name = ?1 AND s.name = ?2",
	[Q_SNAP_PATH] = "SELECT path FROM snapshots WHERE id = ?1",
	[Q_SNAP_DEL] = "DELETE FROM snapshots WHERE id = ?1",
	[Q_SNAP_SET_STATE] = "UPDATE snapshots SET state = ?2 WHERE id = ?1",
	[Q_SNAP_VERIFIED] =
		"UPDATE snapshots SET verified = ?2, verdict = ?3,"
		" state = CASE WHEN ?3 = 'bad' THEN 'corrupt'"
		"              WHEN state = 'corrupt' THEN 'ok'"
		"              ELSE state END"
		" WHERE id = ?1",
	[Q_SNAP_PIN] = "UPDATE snapshots SET pinned = ?2 WHERE id = ?1",
	[Q_SNAP_EXISTS] = "SELECT 1 FROM snapshots WHERE id = ?1",
	[Q_SNAP_SET_PARENT_BY_NAME] =
		"UPDATE snapshots SET parent_id ="
		" (SELECT p.id FROM snapshots p"
		"  WHERE p.guest_id = snapshots.guest_id AND p.name = ?2"
		"  AND p.id != snapshots.id)"
		" WHERE id = ?1",
	[Q_LABEL_ADD] =
		"INSERT OR IGNORE INTO labels (snapshot_id, label)"
		" VALUES (?1, ?2)",
	[Q_LABEL_DEL] =
		"DELETE FROM labels WHERE snapshot_id = ?1 AND label = ?2",
	[Q_RET_ALL] = "SELECT id, created, pinned FROM snapshots",
	[Q_RET_GUEST] =
		"SELECT id, created, pinned FROM snapshots"
		" WHERE guest_id = (SELECT id FROM guests WHERE name = ?1)",
	[Q_INUSE_ADD] =
		"INSERT OR IGNORE INTO in_use (snapshot_id, guest_id, since)"
		" VALUES (?1, ?2, ?3)",
	[Q_INUSE_DEL] =
		"DELETE FROM in_use WHERE snapshot_id = ?1 AND guest_id = ?2",
	[Q_INUSE_CLEAR] = "DELETE FROM in_use WHERE guest_id = ?1",
	[Q_INUSE_COUNT] = "SELECT count(*) FROM in_use WHERE snapshot_id = ?1",
	[Q_INUSE_LIST] =
		"SELECT snapshot_id FROM in_use WHERE guest_id = ?1"
		" ORDER BY snapshot_id",
	[Q_REC_ROWS] =
		"SELECT s.id, s.path, s.state, s.apparent_size, g.name, s.name"
		CAT_SNAP_FROM " ORDER BY s.id",
};

int
cat_sqlerr(struct cat_db *db, struct snap_err *err, const char *what)
{
	const char *msg = db != NULL && db->h != NULL ?
			  sqlite3_errmsg(db->h) : "no database";

	return snap_err_set(err, SNAP_ESQLITE, 0, "%s: %s", what, msg);
}

int
cat_prepare(struct cat_db *db, const char *sql, sqlite3_stmt **out,
	    struct snap_err *err)
{
	if (sqlite3_prepare_v2(db->h, sql, -1, out, NULL) != SQLITE_OK)
		return cat_sqlerr(db, err, "cannot prepare statement");
	return 0;
}

int
cat_stmt(struct cat_db *db, enum cat_q q, sqlite3_stmt **out,
	 struct snap_err *err)
{
	sqlite3_stmt *st = db->q[q];

	if (st == NULL) {
		if (sqlite3_prepare_v3(db->h, q_sql[q], -1,
				       SQLITE_PREPARE_PERSISTENT, &st,
				       NULL) != SQLITE_OK)
			return cat_sqlerr(db, err, "cannot prepare statement");
		db->q[q] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	*out = st;
	return 0;
}

int
cat_step_done(struct cat_db *db, sqlite3_stmt *st, struct snap_err *err,
	      const char *what)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	switch (sqlite3_extended_errcode(db->h)) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		rc = snap_err_set(err, -EEXIST, 0, "%s: %s", what,
				  sqlite3_errmsg(db->h));
		break;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		rc = snap_err_set(err, -ENOENT, 0, "%s: %s", what,
				  sqlite3_errmsg(db->h));
		break;
	default:
		rc = cat_sqlerr(db, err, what);
		break;
	}
	sqlite3_reset(st);
	return rc;
}

static int
exec(struct cat_db *db, const char *sql, struct snap_err *err)
{
	if (sqlite3_exec(db->h, sql, NULL, NULL, NULL) != SQLITE_OK)
		return cat_sqlerr(db, err, sql);
	return 0;
}

int
cat_op_begin(struct cat_db *db, bool *outer, struct snap_err *err)
{
	*outer = sqlite3_get_autocommit(db->h) != 0;
	if (*outer)
		return exec(db, "BEGIN IMMEDIATE", err);
	/* Nested savepoints may share a name: the innermost is meant. */
	return exec(db, "SAVEPOINT cat_op", err);
}

int
cat_op_end(struct cat_db *db, bool outer, int rc, struct snap_err *err)
{
	int rc2;

	if (rc >= 0) {
		rc2 = exec(db, outer ? "COMMIT" : "RELEASE cat_op", err);
		if (rc2 == 0)
			return rc;
		rc = rc2;
	}
	/* Keep the first error's text; the rollback's is secondary. */
	if (outer) {
		if (!sqlite3_get_autocommit(db->h))
			exec(db, "ROLLBACK", NULL);
	} else {
		exec(db, "ROLLBACK TO cat_op", NULL);
		exec(db, "RELEASE cat_op", NULL);
	}
	return rc;
}

int
cat_db_begin(struct cat_db *db, struct snap_err *err)
{
	int rc;

	if (db->in_tx || !sqlite3_get_autocommit(db->h))
		return snap_err_set(err, SNAP_EMISUSE, 0,
				    "transaction already open");
	rc = exec(db, "BEGIN IMMEDIATE", err);
	if (rc == 0)
		db->in_tx = true;
	return rc;
}

int
cat_db_commit(struct cat_db *db, struct snap_err *err)
{
	int rc;

	if (!db->in_tx)
		return snap_err_set(err, SNAP_EMISUSE, 0, "no transaction open");
	rc = exec(db, "COMMIT", err);
	if (rc == 0 || sqlite3_get_autocommit(db->h))
		db->in_tx = false;
	return rc;
}

int
cat_db_rollback(struct cat_db *db, struct snap_err *err)
{
	int rc = 0;

	if (!db->in_tx)
		return snap_err_set(err, SNAP_EMISUSE, 0, "no transaction open");
	if (!sqlite3_get_autocommit(db->h))
		rc = exec(db, "ROLLBACK", err);
	db->in_tx = false;
	return rc;
}

static int
user_version(struct cat_db *db, int *out, struct snap_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = cat_prepare(db, "PRAGMA user_version", &st, err);
	if (rc < 0)
		goto out;
	if (sqlite3_step(st) != SQLITE_ROW) {
		rc = cat_sqlerr(db, err, "cannot read schema version");
		goto out;
	}
	*out = sqlite3_column_int(st, 0);
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

int
cat_db_schema_version(struct cat_db *db, struct snap_err *err)
{
	int v = 0;
	int rc = user_version(db, &v, err);

	return rc < 0 ? rc : v;
}

int
cat_db_migrate(struct cat_db *db, const struct cat_migration *steps, size_t n,
	       struct snap_err *err)
{
	int have, rc;

	rc = user_version(db, &have, err);
	if (rc < 0)
		return rc;
	if (have < 0 || (size_t)have > n)
		return snap_err_set(err, SNAP_ESCHEMA, 0,
				    "catalog schema version %d is newer than "
				    "this program's %zu", have, n);
	for (size_t i = (size_t)have; i < n; i++) {
		int now;

		rc = exec(db, "BEGIN IMMEDIATE", err);
		if (rc < 0)
			return rc;
		/* Another process may have migrated while we waited. */
		rc = user_version(db, &now, err);
		if (rc < 0)
			goto fail;
		if (now >= steps[i].version) {
			rc = exec(db, "COMMIT", err);
			if (rc < 0)
				goto fail;
			continue;
		}
		if (now != steps[i].version - 1) {
			rc = snap_err_set(err, SNAP_ESCHEMA, 0,
					  "catalog schema version %d cannot be "
					  "migrated to %d", now,
					  steps[i].version);
			goto fail;
		}
		rc = exec(db, steps[i].sql, err);
		if (rc < 0)
			goto fail;
		rc = user_version(db, &now, err);
		if (rc < 0)
			goto fail;
		if (now != steps[i].version) {
			rc = snap_err_set(err, SNAP_ECORRUPT, 0,
					  "schema migration to version %d left "
					  "version %d", steps[i].version, now);
			goto fail;
		}
		rc = exec(db, "COMMIT", err);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	if (!sqlite3_get_autocommit(db->h))
		exec(db, "ROLLBACK", NULL);
	return rc;
}

static int
mkdir_p(const char *path, struct snap_err *err)
{
	char buf[PATH_MAX];
	size_t len;

	if (snap_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf))
		return snap_err_set(err, -ENAMETOOLONG, 0,
				    "path too long '%s'", path);
	len = strlen(buf);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0750) < 0 && errno != EEXIST)
			return snap_err_set(err, -errno, 0,
					    "cannot create directory '%s': %s",
					    buf, strerror(errno));
		buf[i] = i < len ? '/' : '\0';
	}
	return 0;
}

static void
db_free(struct cat_db *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(db->q[i]);
	for (size_t i = 0; i < CAT_LQ_COUNT; i++)
		sqlite3_finalize(db->lq[i]);
	if (db->h != NULL) {
		if (!sqlite3_get_autocommit(db->h))
			sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close_v2(db->h);
	}
	free(db->store);
	free(db);
}

void
cat_db_close(struct cat_db *db)
{
	db_free(db);
}

/*
 * Switch to WAL. Changing the journal mode needs an exclusive lock and
 * SQLite does not always call the busy handler for it (two processes
 * opening a new store at once), so retry here within the busy timeout.
 */
static int
set_wal(struct cat_db *db, struct snap_err *err)
{
	uint64_t deadline = snap_now_mono_ns() +
			    (uint64_t)CAT_BUSY_TIMEOUT_MS * 1000000;
	sqlite3_stmt *st = NULL;
	const char *mode;
	int rc;

	rc = cat_prepare(db, "PRAGMA journal_mode = WAL", &st, err);
	if (rc < 0)
		goto out;
	while ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
		if (snap_now_mono_ns() > deadline)
			break;
		sqlite3_reset(st);
		usleep(5000);
	}
	if (rc != SQLITE_ROW) {
		rc = cat_sqlerr(db, err, "cannot switch catalog to WAL");
		goto out;
	}
	mode = (const char *)sqlite3_column_text(st, 0);
	if (mode == NULL || strcmp(mode, "wal") != 0) {
		rc = snap_err_set(err, SNAP_ESQLITE, 0,
				  "catalog journal mode is '%s', not 'wal'",
				  mode != NULL ? mode : "");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

static int
open_raw(const char *dbpath, const char *store, bool create,
	 struct cat_db **out, struct snap_err *err)
{
	struct cat_db *db;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW;
	int version = 0;
	int rc;

	db = calloc(1, sizeof(*db));
	if (db == NULL || (db->store = strdup(store)) == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	/* "/srv/store/" and "/srv/store" are the same store. */
	for (size_t n = strlen(db->store); n > 1 && db->store[n - 1] == '/'; n--)
		db->store[n - 1] = '\0';
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	else if (access(dbpath, F_OK) < 0) {
		rc = snap_err_set(err, -errno, 0, "cannot open catalog '%s': %s",
				  dbpath, strerror(errno));
		goto out;
	}
	if (sqlite3_open_v2(dbpath, &db->h, flags, NULL) != SQLITE_OK) {
		rc = snap_err_set(err, SNAP_ESQLITE, 0,
				  "cannot open catalog '%s': %s", dbpath,
				  db->h != NULL ? sqlite3_errmsg(db->h) :
				  "out of memory");
		goto out;
	}
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, CAT_BUSY_TIMEOUT_MS);
	/* Refuse a newer database before changing anything in it. */
	rc = user_version(db, &version, err);
	if (rc < 0)
		goto out;
	if (version > CAT_SCHEMA_VERSION || version < 0) {
		rc = snap_err_set(err, SNAP_ESCHEMA, 0,
				  "catalog '%s' has schema version %d, newer "
				  "than this program's %d", dbpath, version,
				  CAT_SCHEMA_VERSION);
		goto out;
	}
	rc = set_wal(db, err);
	if (rc < 0)
		goto out;
	rc = exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL",
		  err);
	if (rc < 0)
		goto out;
	*out = db;
	db = NULL;
	rc = 0;
out:
	db_free(db);
	return rc;
}

int
cat_db_open_file(const char *dbpath, const char *store, bool create,
		 struct cat_db **out, struct snap_err *err)
{
	struct cat_db *db = NULL;
	int rc;

	rc = open_raw(dbpath, store, create, &db, err);
	if (rc < 0)
		goto out;
	rc = cat_db_migrate(db, migrations, SNAP_ARRAY_SIZE(migrations), err);
	if (rc < 0)
		goto out;
	*out = db;
	db = NULL;
out:
	db_free(db);
	return rc;
}

int
cat_db_open(const char *store, unsigned flags, struct cat_db **out,
	    struct snap_err *err)
{
	char path[PATH_MAX];
	bool create = flags & CAT_OPEN_CREATE;
	int rc;

	if (flags & ~CAT_OPEN_CREATE) {
		rc = snap_err_set(err, -EINVAL, 0, "unknown open flags %#x",
				  flags);
		goto out;
	}
	rc = snap_fmt(path, sizeof(path), "%s/%s", store, CAT_DB_FILE);
	if (rc < 0) {
		snap_err_set(err, rc, 0, "path too long '%s'", store);
		goto out;
	}
	if (create) {
		char sdir[PATH_MAX];

		rc = snap_fmt(sdir, sizeof(sdir), "%s/%s", store,
			      CAT_SNAP_DIR);
		if (rc < 0) {
			snap_err_set(err, rc, 0, "path too long '%s'", store);
			goto out;
		}
		rc = mkdir_p(sdir, err);
		if (rc < 0)
			goto out;
	}
	rc = cat_db_open_file(path, store, create, out, err);
out:
	return rc;
}

const char *
cat_db_store(const struct cat_db *db)
{
	return db->store;
}

static bool
valid_chars(const char *s, const char *extra, bool dot_first)
{
	size_t n = 0;

	if (s == NULL || s[0] == '\0' || (!dot_first && s[0] == '.'))
		return false;
	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= CAT_NAME_MAX)
			return false;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
			continue;
		if (strchr(extra, c) != NULL)
			continue;
		return false;
	}
	return true;
}

bool
cat_name_valid(const char *s)
{
	return valid_chars(s, "", false);
}

bool
cat_label_valid(const char *s)
{
	return valid_chars(s, ":=/+", true);
}

int
cat_layout_path(const char *guest, const char *name, char *buf, size_t size)
{
	if (!cat_name_valid(guest) || !cat_name_valid(name))
		return -EINVAL;
	return snap_fmt(buf, size, "%s/%s/%s%s", CAT_SNAP_DIR, guest, name,
			CAT_SNAP_SUFFIX);
}

int
cat_db_snapshot_dir(const struct cat_db *db, const char *guest, bool create,
		    char *buf, size_t size, struct snap_err *err)
{
	char tmp[PATH_MAX];
	int rc;

	if (!cat_name_valid(guest))
		return snap_err_set(err, -EINVAL, 0, "invalid guest name '%s'",
				    guest != NULL ? guest : "(null)");
	rc = snap_fmt(tmp, sizeof(tmp), "%s/%s/%s", db->store, CAT_SNAP_DIR,
		      guest);
	if (rc < 0)
		return snap_err_set(err, rc, 0, "path too long for guest '%s'",
				    guest);
	if (create) {
		rc = mkdir_p(tmp, err);
		if (rc < 0)
			return rc;
	}
	if (snap_strlcpy(buf, tmp, size) >= size)
		return snap_err_set(err, -ENAMETOOLONG, 0,
				    "buffer too small for '%s'", tmp);
	return 0;
}

int
cat_db_resolve_path(const struct cat_db *db, const char *path, char *buf,
		    size_t size)
{
	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	if (path[0] == '/')
		return snap_fmt(buf, size, "%s", path);
	return snap_fmt(buf, size, "%s/%s", db->store, path);
}
