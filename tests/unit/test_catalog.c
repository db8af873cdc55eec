/*
 * tests/unit/test_catalog.c: the SQLite catalog of catalog/catalog.h.
 * Every API call, schema creation and migration (including a refused
 * future version), explicit transactions, two processes writing at once,
 * a process killed inside a transaction, and reconcile/rebuild against a
 * store with each kind of inconsistency. The tests look into the database
 * with the sqlite3 API only to set up or check what the API cannot show.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "catalog/catalog.h"
#include "catalog/catalog_int.h"
#include "common/util.h"
#include "format/format.h"

#define S  1000000000LL
#define T0 (1700000000LL * S)

struct fixture {
	char store[PATH_MAX];
	char dbpath[PATH_MAX];
	struct cat_db *db;
};

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->store, "/tmp/test_catalog.XXXXXX");
	assert_non_null(mkdtemp(f->store));
	assert_int_equal(snap_fmt(f->dbpath, sizeof(f->dbpath), "%s/%s",
				  f->store, CAT_DB_FILE), 0);
	*state = f;
	return 0;
}

/* Setup that also opens (creating) the catalog. */
static int
setup_open(void **state)
{
	struct fixture *f;
	struct snap_err e;

	setup(state);
	f = *state;
	if (cat_db_open(f->store, CAT_OPEN_CREATE, &f->db, &e) != 0)
		fail_msg("open: %s", e.msg);
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	cat_db_close(f->db);
	nftw(f->store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Run one SQL statement on the raw file, outside the catalog. */
static void
raw_exec(const char *dbpath, const char *sql)
{
	sqlite3 *h;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 10000);
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("raw_exec '%s': %s", sql, msg);
	sqlite3_close(h);
}

/* The first column of the first row of @sql as an integer. */
static int64_t
raw_int(const char *dbpath, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	int64_t v;

	assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 10000);
	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("raw_int '%s': %s", sql, sqlite3_errmsg(h));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static void
write_file(const char *path, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char buf[512] = { 0 };

	assert_true(fd >= 0);
	for (size_t done = 0; done < len; done += sizeof(buf))
		assert_int_equal(snap_write_full(fd, buf,
				 SNAP_MIN(sizeof(buf), len - done)), 0);
	close(fd);
}

/* A snapshot record with every field set; names given by the caller. */
static struct cat_snapshot
sample(const char *guest, const char *name, int64_t created)
{
	return (struct cat_snapshot){
		.guest = guest, .name = name,
		.apparent_size = 1 << 20, .allocated_size = 4096 * 3,
		.ram_size = 64 << 20, .present_pages = 3,
		.root_digest = "00112233445566778899aabbccddeeff",
		.qemu_version = "7.2.0", .machine = "pc-i440fx-7.2",
		.capabilities = "{\"x-ignore-shared\":false}",
		.created_ns = created, .save_duration_ns = 1234567,
		.live = true,
	};
}

static int64_t
add(struct cat_db *db, const char *guest, const char *name, int64_t created)
{
	struct cat_snapshot s = sample(guest, name, created);
	struct snap_err e;
	int64_t id = 0;

	if (cat_snapshot_add(db, &s, &id, &e) != 0)
		fail_msg("add %s/%s: %s", guest, name, e.msg);
	assert_true(id > 0);
	return id;
}

/* ---- open, schema, migrations ---------------------------------------- */

static void
test_open_create_reopen(void **state)
{
	struct fixture *f = *state;
	struct cat_db *db = NULL;
	struct snap_err e;
	char missing[PATH_MAX + 16];
	struct stat st;

	snprintf(missing, sizeof(missing), "%s/nope", f->store);
	assert_int_equal(cat_db_open(missing, 0, &db, &e), -ENOENT);
	assert_null(db);
	assert_int_equal(cat_db_open(f->store, 0, &db, NULL), -ENOENT);
	assert_int_equal(cat_db_open(f->store, 0x80, &db, NULL), -EINVAL);

	assert_int_equal(cat_db_open(missing, CAT_OPEN_CREATE, &db, &e), 0);
	assert_string_equal(cat_db_store(db), missing);
	assert_int_equal(cat_db_schema_version(db, &e), CAT_SCHEMA_VERSION);
	assert_int_equal(cat_guest_add(db, "vm1", NULL, NULL, &e), 0);
	cat_db_close(db);
	cat_db_close(NULL);

	/* The layout directory exists; the database is in WAL mode. */
	snprintf(missing, sizeof(missing), "%s/nope/snapshots", f->store);
	assert_int_equal(stat(missing, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	snprintf(missing, sizeof(missing), "%s/nope", f->store);
	assert_int_equal(cat_db_open(missing, 0, &db, &e), 0);
	assert_int_equal(cat_guest_add(db, "vm1", NULL, NULL, &e), -EEXIST);
	cat_db_close(db);
	snprintf(missing, sizeof(missing), "%s/nope/catalog.db", f->store);
	assert_int_equal(raw_int(missing, "PRAGMA user_version"),
			 CAT_SCHEMA_VERSION);
	/* Header bytes 18 and 19 are 2 for a WAL database. */
	{
		uint8_t hdr[20];
		int fd = open(missing, O_RDONLY);

		assert_true(fd >= 0);
		assert_int_equal(snap_read_full(fd, hdr, sizeof(hdr)), 0);
		close(fd);
		assert_int_equal(hdr[18], 2);
		assert_int_equal(hdr[19], 2);
	}
}

static void
test_empty_file_gets_schema(void **state)
{
	struct fixture *f = *state;
	struct cat_db *db = NULL;
	struct snap_err e;

	write_file(f->dbpath, 0);
	if (cat_db_open(f->store, 0, &db, &e) != 0)
		fail_msg("open: %s", e.msg);
	assert_int_equal(cat_db_schema_version(db, NULL), CAT_SCHEMA_VERSION);
	assert_int_equal(cat_guest_add(db, "a", "{}", NULL, &e), 0);
	cat_db_close(db);
	assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM sqlite_schema"
				 " WHERE name IN ('guests', 'snapshots',"
				 " 'labels', 'in_use')"), 4);
}

static void
test_future_version_refused(void **state)
{
	struct fixture *f = *state;
	struct cat_db *db = NULL;
	struct snap_err e;
	uint8_t hdr[20];
	int fd;

	raw_exec(f->dbpath, "CREATE TABLE future (x); PRAGMA user_version = 7");
	snap_err_clear(&e);
	assert_int_equal(cat_db_open(f->store, 0, &db, &e), SNAP_ESCHEMA);
	assert_null(db);
	assert_int_equal(e.code, SNAP_ESCHEMA);
	assert_non_null(strstr(e.msg, "version 7"));
	/* Untouched: same version, still a rollback-journal database. */
	assert_int_equal(raw_int(f->dbpath, "PRAGMA user_version"), 7);
	fd = open(f->dbpath, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(snap_read_full(fd, hdr, sizeof(hdr)), 0);
	close(fd);
	assert_int_equal(hdr[18], 1);
	assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM sqlite_schema"
				 " WHERE name = 'guests'"), 0);
}

static void
test_not_a_database(void **state)
{
	struct fixture *f = *state;
	struct cat_db *db = NULL;
	struct snap_err e;
	int fd;

	fd = open(f->dbpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(snap_write_full(fd, "not sqlite, garbage only "
						 "and nothing else at all.\n",
						 50), 0);
	close(fd);
	snap_err_clear(&e);
	assert_int_equal(cat_db_open(f->store, 0, &db, &e), SNAP_ESQLITE);
	assert_null(db);
	assert_non_null(strstr(e.msg, "not a database"));
}

/* A second schema version, as a future change would append it. */
static void
test_migration_machinery(void **state)
{
	struct fixture *f = *state;
	struct cat_migration steps[2];
	struct cat_db *db = NULL;
	struct snap_err e;
	const char *v1_sql;

	assert_int_equal(cat_db_open(f->store, CAT_OPEN_CREATE, &db, &e), 0);
	assert_int_equal(cat_guest_add(db, "keep", "{\"a\":1}", NULL, &e), 0);
	/* Step 1 never runs again on a version-1 database. */
	v1_sql = "SELECT no_such_function()";
	steps[0] = (struct cat_migration){ 1, v1_sql };

	/* A failing step leaves version 1 and no partial change. */
	steps[1] = (struct cat_migration){ 2,
		"CREATE TABLE half (x); SELECT no_such_function();"
		" PRAGMA user_version = 2" };
	assert_int_equal(cat_db_migrate(db, steps, 2, &e), SNAP_ESQLITE);
	assert_int_equal(cat_db_schema_version(db, NULL), 1);
	/* A step that forgets to set the version is refused, rolled back. */
	steps[1].sql = "CREATE TABLE half (x)";
	assert_int_equal(cat_db_migrate(db, steps, 2, &e), SNAP_ECORRUPT);
	assert_int_equal(cat_db_schema_version(db, NULL), 1);
	cat_db_close(db);
	assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM sqlite_schema"
				 " WHERE name = 'half'"), 0);

	assert_int_equal(cat_db_open(f->store, 0, &db, &e), 0);
	steps[1].sql = "ALTER TABLE guests ADD COLUMN note TEXT DEFAULT 'n';"
		       " PRAGMA user_version = 2";
	assert_int_equal(cat_db_migrate(db, steps, 2, &e), 0);
	assert_int_equal(cat_db_schema_version(db, NULL), 2);
	/* Running the list again is a no-op. */
	assert_int_equal(cat_db_migrate(db, steps, 2, &e), 0);
	/* The data went through the migration. */
	{
		struct cat_guest *g = NULL;

		assert_int_equal(cat_guest_get(db, "keep", &g, &e), 0);
		assert_string_equal(g->spec, "{\"a\":1}");
		cat_guest_free(g);
	}
	/* This program only knows version 1: a version-2 list is newer. */
	assert_int_equal(cat_db_migrate(db, steps, 1, &e), SNAP_ESCHEMA);
	cat_db_close(db);
	assert_int_equal(raw_int(f->dbpath,
				 "SELECT count(*) FROM guests WHERE note = 'n'"),
			 1);
	db = NULL;
	assert_int_equal(cat_db_open(f->store, 0, &db, &e), SNAP_ESCHEMA);
	assert_null(db);
}

/* ---- guests ------------------------------------------------------------ */

static void
test_guests(void **state)
{
	struct fixture *f = *state;
	struct cat_guest_list *l = NULL;
	struct cat_guest *g = NULL;
	struct snap_err e;
	int64_t id1 = 0, id2 = 0;
	uint64_t before = snap_now_real_ns();

	assert_int_equal(cat_guest_add(f->db, "web", "{\"mem\":64}", &id1, &e),
			 0);
	assert_int_equal(cat_guest_add(f->db, "db-1", NULL, &id2, &e), 0);
	assert_true(id1 > 0 && id2 > 0 && id1 != id2);
	assert_int_equal(cat_guest_add(f->db, "web", NULL, NULL, &e), -EEXIST);
	assert_non_null(strstr(e.msg, "'web'"));
	assert_int_equal(cat_guest_add(f->db, ".hidden", NULL, NULL, &e),
			 -EINVAL);
	assert_int_equal(cat_guest_add(f->db, "a/b", NULL, NULL, &e), -EINVAL);
	assert_int_equal(cat_guest_add(f->db, "", NULL, NULL, &e), -EINVAL);
	assert_int_equal(cat_guest_add(f->db, NULL, NULL, NULL, &e), -EINVAL);

	assert_int_equal(cat_guest_get(f->db, "web", &g, &e), 0);
	assert_int_equal(g->id, id1);
	assert_string_equal(g->name, "web");
	assert_string_equal(g->spec, "{\"mem\":64}");
	assert_int_equal(g->state, CAT_GUEST_DEFINED);
	assert_true(g->created_ns >= (int64_t)before);
	cat_guest_free(g);
	g = NULL;
	assert_int_equal(cat_guest_get(f->db, "nope", &g, &e), -ENOENT);
	assert_null(g);

	assert_int_equal(cat_guest_set_state(f->db, "web", CAT_GUEST_RUNNING,
					     &e), 0);
	assert_int_equal(cat_guest_set_spec(f->db, "web", "{\"mem\":128}", &e),
			 0);
	assert_int_equal(cat_guest_set_state(f->db, "nope", CAT_GUEST_RUNNING,
					     &e), -ENOENT);
	assert_int_equal(cat_guest_set_state(f->db, "web", CAT_GUEST_NSTATES,
					     &e), -EINVAL);
	assert_int_equal(cat_guest_set_spec(f->db, "nope", "{}", &e), -ENOENT);

	assert_int_equal(cat_guest_list(f->db, &l, &e), 0);
	assert_int_equal(l->n, 2);
	assert_string_equal(l->v[0]->name, "db-1");
	assert_string_equal(l->v[0]->spec, "{}");
	assert_string_equal(l->v[1]->name, "web");
	assert_string_equal(l->v[1]->spec, "{\"mem\":128}");
	assert_int_equal(l->v[1]->state, CAT_GUEST_RUNNING);
	cat_guest_list_free(l);
	cat_guest_list_free(NULL);
	cat_guest_free(NULL);

	assert_string_equal(cat_guest_state_name(CAT_GUEST_PAUSED), "paused");
	assert_string_equal(cat_guest_state_name(CAT_GUEST_NSTATES), "unknown");

	assert_int_equal(cat_guest_remove(f->db, "db-1", &e), 0);
	assert_int_equal(cat_guest_remove(f->db, "db-1", &e), -ENOENT);
	assert_int_equal(cat_guest_list(f->db, &l, &e), 0);
	assert_int_equal(l->n, 1);
	cat_guest_list_free(l);
}

static void
test_guest_remove_refused(void **state)
{
	struct fixture *f = *state;
	struct snap_err e;
	int64_t id;

	assert_int_equal(cat_guest_add(f->db, "owner", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "clone", NULL, NULL, &e), 0);
	id = add(f->db, "owner", "s1", T0);
	assert_int_equal(cat_guest_remove(f->db, "owner", &e), -ENOTEMPTY);
	assert_int_equal(cat_inuse_add(f->db, id, "clone", &e), 0);
	assert_int_equal(cat_guest_remove(f->db, "clone", &e), SNAP_EINUSE);
	assert_int_equal(cat_inuse_clear(f->db, "clone", &e), 1);
	assert_int_equal(cat_guest_remove(f->db, "clone", &e), 0);
	assert_int_equal(cat_snapshot_delete(f->db, id, 0, &e), 0);
	assert_int_equal(cat_guest_remove(f->db, "owner", &e), 0);
}

/* ---- snapshots --------------------------------------------------------- */

static void
test_snapshot_add_get_find(void **state)
{
	struct fixture *f = *state;
	const char *labels[] = { "weekly", "before-upgrade", "env=prod" };
	struct cat_snapshot s = sample("vm", "first", T0);
	struct cat_snapshot *got = NULL;
	struct snap_err e;
	int64_t id = 0, id2 = 0, child = 0;
	uint64_t before;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	s.labels = labels;
	s.nlabels = 3;
	s.pinned = true;
	if (cat_snapshot_add(f->db, &s, &id, &e) != 0)
		fail_msg("add: %s", e.msg);

	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->id, id);
	assert_string_equal(got->guest, "vm");
	assert_string_equal(got->name, "first");
	assert_string_equal(got->path, "snapshots/vm/first.snap");
	assert_int_equal(got->apparent_size, 1 << 20);
	assert_int_equal(got->allocated_size, 4096 * 3);
	assert_int_equal(got->ram_size, 64 << 20);
	assert_int_equal(got->present_pages, 3);
	assert_string_equal(got->root_digest,
			    "00112233445566778899aabbccddeeff");
	assert_string_equal(got->qemu_version, "7.2.0");
	assert_string_equal(got->machine, "pc-i440fx-7.2");
	assert_string_equal(got->capabilities, "{\"x-ignore-shared\":false}");
	assert_int_equal(got->created_ns, T0);
	assert_int_equal(got->save_duration_ns, 1234567);
	assert_true(got->live);
	assert_int_equal(got->parent_id, 0);
	assert_int_equal(got->verified_ns, 0);
	assert_int_equal(got->verdict, CAT_VERDICT_NONE);
	assert_true(got->pinned);
	assert_int_equal(got->state, CAT_SNAP_OK);
	assert_int_equal(got->nlabels, 3);
	assert_string_equal(got->labels[0], "before-upgrade");
	assert_string_equal(got->labels[1], "env=prod");
	assert_string_equal(got->labels[2], "weekly");
	cat_snapshot_free(got);
	got = NULL;

	/* Defaults: layout path, "{}" capabilities, now as creation time. */
	s = (struct cat_snapshot){ .guest = "vm", .name = "second",
				   .path = "/elsewhere/x.snap", .live = false };
	before = snap_now_real_ns();
	assert_int_equal(cat_snapshot_add(f->db, &s, &id2, &e), 0);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "second", &got, &e),
			 0);
	assert_int_equal(got->id, id2);
	assert_string_equal(got->path, "/elsewhere/x.snap");
	assert_string_equal(got->capabilities, "{}");
	assert_string_equal(got->root_digest, "");
	assert_true(got->created_ns >= (int64_t)before);
	assert_false(got->live);
	assert_false(got->pinned);
	assert_int_equal(got->nlabels, 0);
	cat_snapshot_free(got);
	got = NULL;
	cat_snapshot_free(NULL);

	/* Lineage. */
	s = sample("vm", "child", T0 + S);
	s.parent_id = id;
	assert_int_equal(cat_snapshot_add(f->db, &s, &child, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, child, &got, &e), 0);
	assert_int_equal(got->parent_id, id);
	cat_snapshot_free(got);
	got = NULL;

	/* Errors. */
	assert_int_equal(cat_snapshot_get(f->db, 9999, &got, &e), -ENOENT);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "nope", &got, &e),
			 -ENOENT);
	assert_int_equal(cat_snapshot_find(f->db, "nope", "first", &got, &e),
			 -ENOENT);
	assert_null(got);
	s = sample("vm", "first", T0);
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -EEXIST);
	s = sample("vm", "other", T0);
	s.path = "snapshots/vm/first.snap";
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -EEXIST);
	s = sample("ghost", "x", T0);
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -ENOENT);
	s = sample("vm", "orphan", T0);
	s.parent_id = 777;
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "parent"));
	s = sample("vm", "../evil", T0);
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -EINVAL);
	s = sample("vm", "bad-label", T0);
	{
		const char *bad[] = { "ok", "has space" };

		s.labels = bad;
		s.nlabels = 2;
		assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e),
				 -EINVAL);
	}
	s = sample("vm", "bad-digest", T0);
	s.root_digest = "xyz";
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), -EINVAL);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "bad-label", &got, &e),
			 -ENOENT);
}

/* A failure after the row is inserted takes the row back out. */
static void
test_snapshot_add_atomic(void **state)
{
	struct fixture *f = *state;
	const char *labels[] = { "fine", "boom" };
	struct cat_snapshot s = sample("vm", "atomic", T0);
	struct cat_snapshot *got = NULL;
	struct snap_err e;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	raw_exec(f->dbpath, "CREATE TRIGGER boom BEFORE INSERT ON labels"
		 " WHEN NEW.label = 'boom'"
		 " BEGIN SELECT RAISE(ABORT, 'label exploded'); END");
	s.labels = labels;
	s.nlabels = 2;
	snap_err_clear(&e);
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), SNAP_ESQLITE);
	assert_non_null(strstr(e.msg, "label exploded"));
	assert_int_equal(cat_snapshot_find(f->db, "vm", "atomic", &got, &e),
			 -ENOENT);
	assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM labels"), 0);

	/* Inside an explicit transaction only the failed call is undone. */
	assert_int_equal(cat_db_begin(f->db, &e), 0);
	add(f->db, "vm", "before", T0);
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), SNAP_ESQLITE);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "atomic", &got, &e),
			 -ENOENT);
	assert_int_equal(cat_db_commit(f->db, &e), 0);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "before", &got, &e), 0);
	cat_snapshot_free(got);
	got = NULL;
	assert_int_equal(cat_snapshot_find(f->db, "vm", "atomic", &got, &e),
			 -ENOENT);
	assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM labels"), 0);

	/* The connection is usable afterwards. */
	s.nlabels = 1;
	assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e), 0);
}

static void
test_list_filters(void **state)
{
	struct fixture *f = *state;
	struct cat_snapshot_list *l = NULL;
	struct cat_filter flt;
	struct snap_err e;
	int64_t a[6], b[3];
	char name[16];

	assert_int_equal(cat_guest_add(f->db, "a", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "b", NULL, NULL, &e), 0);
	/* a0..a5 one second apart; a2 and a3 at the same time. */
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "a%d", i);
		a[i] = add(f->db, "a", name, T0 + (i == 3 ? 2 : i) * S);
	}
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		b[i] = add(f->db, "b", name, T0 + i * S + S / 2);
	}
	assert_int_equal(cat_snapshot_label_add(f->db, a[1], "daily", &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, a[4], "daily", &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, b[0], "daily", &e), 0);
	assert_int_equal(cat_snapshot_set_state(f->db, a[5], CAT_SNAP_MISSING,
						&e), 0);
	assert_int_equal(cat_snapshot_set_state(f->db, a[0], CAT_SNAP_CORRUPT,
						&e), 0);

	/* Everything, newest first; the tie at T0+2s goes by id. */
	assert_int_equal(cat_snapshot_list(f->db, NULL, &l, &e), 0);
	assert_int_equal(l->n, 9);
	{
		int64_t want[] = { a[5], a[4], b[2], a[3], a[2], b[1], a[1],
				   b[0], a[0] };
		for (size_t i = 0; i < 9; i++)
			assert_int_equal(l->v[i]->id, want[i]);
	}
	cat_snapshot_list_free(l);

	/* One guest, oldest first, limited. */
	flt = (struct cat_filter){ .guest = "a", .order = CAT_OLDEST_FIRST,
				   .limit = 3 };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 3);
	assert_int_equal(l->v[0]->id, a[0]);
	assert_int_equal(l->v[1]->id, a[1]);
	assert_int_equal(l->v[2]->id, a[2]);
	cat_snapshot_list_free(l);

	/* Label. */
	flt = (struct cat_filter){ .label = "daily" };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 3);
	assert_int_equal(l->v[0]->id, a[4]);
	assert_int_equal(l->v[1]->id, a[1]);
	assert_int_equal(l->v[2]->id, b[0]);
	assert_int_equal(l->v[2]->nlabels, 1);
	assert_string_equal(l->v[2]->labels[0], "daily");
	cat_snapshot_list_free(l);

	/* Label and guest. */
	flt.guest = "b";
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 1);
	assert_int_equal(l->v[0]->id, b[0]);
	cat_snapshot_list_free(l);

	/* Time range: [T0+1s, T0+3s). */
	flt = (struct cat_filter){ .guest = "a", .since_ns = T0 + S,
				   .until_ns = T0 + 3 * S,
				   .order = CAT_OLDEST_FIRST };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 3);
	assert_int_equal(l->v[0]->id, a[1]);
	assert_int_equal(l->v[1]->id, a[2]);
	assert_int_equal(l->v[2]->id, a[3]);
	cat_snapshot_list_free(l);

	/* States. */
	flt = (struct cat_filter){ .states = 1u << CAT_SNAP_MISSING |
					     1u << CAT_SNAP_CORRUPT };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 2);
	assert_int_equal(l->v[0]->id, a[5]);
	assert_int_equal(l->v[0]->state, CAT_SNAP_MISSING);
	assert_int_equal(l->v[1]->id, a[0]);
	assert_int_equal(l->v[1]->state, CAT_SNAP_CORRUPT);
	cat_snapshot_list_free(l);
	flt = (struct cat_filter){ .guest = "a", .states = 1u << CAT_SNAP_OK,
				   .limit = 2 };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 2);
	assert_int_equal(l->v[0]->id, a[4]);
	assert_int_equal(l->v[1]->id, a[3]);
	cat_snapshot_list_free(l);

	/* No match, unknown guest, bad filter. */
	flt = (struct cat_filter){ .guest = "nobody" };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 0);
	cat_snapshot_list_free(l);
	l = NULL;
	flt = (struct cat_filter){ .states = 1u << CAT_SNAP_NSTATES };
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), -EINVAL);
	assert_null(l);
	cat_snapshot_list_free(NULL);
}

static void
test_state_verify_pin_labels(void **state)
{
	struct fixture *f = *state;
	struct cat_snapshot *got = NULL;
	struct snap_err e;
	int64_t id;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	id = add(f->db, "vm", "s", T0);

	assert_int_equal(cat_snapshot_mark_verified(f->db, id, T0 + 5 * S,
						    false, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->verified_ns, T0 + 5 * S);
	assert_int_equal(got->verdict, CAT_VERDICT_BAD);
	assert_int_equal(got->state, CAT_SNAP_CORRUPT);
	cat_snapshot_free(got);

	assert_int_equal(cat_snapshot_mark_verified(f->db, id, T0 + 6 * S,
						    true, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->verified_ns, T0 + 6 * S);
	assert_int_equal(got->verdict, CAT_VERDICT_GOOD);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);

	/* A good verdict does not bring a missing file back. */
	assert_int_equal(cat_snapshot_set_state(f->db, id, CAT_SNAP_MISSING,
						&e), 0);
	assert_int_equal(cat_snapshot_mark_verified(f->db, id, 0, true, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_MISSING);
	assert_true(got->verified_ns > T0 + 6 * S);
	cat_snapshot_free(got);

	assert_int_equal(cat_snapshot_set_state(f->db, id, CAT_SNAP_CORRUPT,
						&e), 0);
	assert_int_equal(cat_snapshot_set_state(f->db, id, CAT_SNAP_NSTATES,
						&e), -EINVAL);
	assert_int_equal(cat_snapshot_set_state(f->db, 999, CAT_SNAP_OK, &e),
			 -ENOENT);
	assert_int_equal(cat_snapshot_mark_verified(f->db, 999, 0, true, &e),
			 -ENOENT);

	assert_int_equal(cat_snapshot_set_pinned(f->db, id, true, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_true(got->pinned);
	assert_int_equal(got->state, CAT_SNAP_CORRUPT);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_set_pinned(f->db, id, false, &e), 0);
	assert_int_equal(cat_snapshot_set_pinned(f->db, 999, false, &e),
			 -ENOENT);

	assert_int_equal(cat_snapshot_label_add(f->db, id, "z", &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, id, "a:b", &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, id, "z", &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, id, "no space", &e),
			 -EINVAL);
	assert_int_equal(cat_snapshot_label_add(f->db, 999, "z", &e), -ENOENT);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_false(got->pinned);
	assert_int_equal(got->nlabels, 2);
	assert_string_equal(got->labels[0], "a:b");
	assert_string_equal(got->labels[1], "z");
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_label_remove(f->db, id, "z", &e), 0);
	assert_int_equal(cat_snapshot_label_remove(f->db, id, "z", &e),
			 -ENOENT);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->nlabels, 1);
	assert_string_equal(got->labels[0], "a:b");
	cat_snapshot_free(got);

	assert_string_equal(cat_snap_state_name(CAT_SNAP_MISSING), "missing");
	assert_string_equal(cat_verdict_name(CAT_VERDICT_BAD), "bad");
}

static void
test_delete_and_inuse(void **state)
{
	struct fixture *f = *state;
	struct cat_snapshot *got = NULL;
	struct snap_err e;
	char dir[PATH_MAX], file[PATH_MAX + 32];
	int64_t id, child, other, *ids = NULL;
	size_t n = 99;
	struct cat_snapshot s;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "c1", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "c2", NULL, NULL, &e), 0);
	assert_int_equal(cat_db_snapshot_dir(f->db, "vm", true, dir,
					     sizeof(dir), &e), 0);
	snprintf(file, sizeof(file), "%s/base.snap", dir);
	write_file(file, 4096);
	id = add(f->db, "vm", "base", T0);
	s = sample("vm", "child", T0 + S);
	s.parent_id = id;
	assert_int_equal(cat_snapshot_add(f->db, &s, &child, &e), 0);
	other = add(f->db, "vm", "other", T0 + 2 * S);

	/* In-use tracking. */
	assert_int_equal(cat_inuse_count(f->db, id, &e), 0);
	assert_int_equal(cat_inuse_add(f->db, id, "c1", &e), 0);
	assert_int_equal(cat_inuse_add(f->db, id, "c1", &e), 0);
	assert_int_equal(cat_inuse_add(f->db, id, "c2", &e), 0);
	assert_int_equal(cat_inuse_add(f->db, other, "c2", &e), 0);
	assert_int_equal(cat_inuse_add(f->db, 999, "c2", &e), -ENOENT);
	assert_int_equal(cat_inuse_add(f->db, id, "nobody", &e), -ENOENT);
	assert_int_equal(cat_inuse_count(f->db, id, &e), 2);
	assert_int_equal(cat_inuse_list(f->db, "c2", &ids, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], id);
	assert_int_equal(ids[1], other);
	free(ids);
	ids = NULL;
	assert_int_equal(cat_inuse_list(f->db, "vm", &ids, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_null(ids);
	assert_int_equal(cat_inuse_list(f->db, "nobody", &ids, &n, &e),
			 -ENOENT);

	/* A mapped snapshot can be neither deleted nor its file removed. */
	assert_int_equal(cat_snapshot_delete(f->db, id, 0, &e), SNAP_EINUSE);
	assert_int_equal(access(file, F_OK), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	cat_snapshot_free(got);
	got = NULL;

	assert_int_equal(cat_inuse_remove(f->db, id, "c1", &e), 0);
	assert_int_equal(cat_inuse_remove(f->db, id, "c1", &e), -ENOENT);
	assert_int_equal(cat_snapshot_delete(f->db, id, 0, &e), SNAP_EINUSE);
	assert_int_equal(cat_inuse_clear(f->db, "c2", &e), 2);
	assert_int_equal(cat_inuse_clear(f->db, "c2", &e), 0);
	assert_int_equal(cat_inuse_count(f->db, id, &e), 0);

	assert_int_equal(cat_snapshot_delete(f->db, id, 0x10, &e), -EINVAL);
	assert_int_equal(cat_snapshot_delete(f->db, id, 0, &e), 0);
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), -ENOENT);
	assert_int_equal(cat_snapshot_delete(f->db, id, 0, &e), -ENOENT);
	/* The child loses its parent; labels went with the row. */
	assert_int_equal(cat_snapshot_get(f->db, child, &got, &e), 0);
	assert_int_equal(got->parent_id, 0);
	cat_snapshot_free(got);
	/* A row whose file is already gone deletes fine. */
	assert_int_equal(cat_snapshot_delete(f->db, child, 0, &e), 0);
	/* KEEP_FILE leaves the file. */
	snprintf(file, sizeof(file), "%s/other.snap", dir);
	write_file(file, 10);
	assert_int_equal(cat_snapshot_delete(f->db, other,
					     CAT_DELETE_KEEP_FILE, &e), 0);
	assert_int_equal(access(file, F_OK), 0);
	/* Ids are never reused. */
	assert_true(add(f->db, "vm", "again", T0) > other);
}

static void
test_explicit_transaction(void **state)
{
	struct fixture *f = *state;
	struct cat_snapshot *got = NULL;
	struct snap_err e;
	int64_t id;

	assert_int_equal(cat_db_commit(f->db, &e), SNAP_EMISUSE);
	assert_int_equal(cat_db_rollback(f->db, &e), SNAP_EMISUSE);
	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);

	assert_int_equal(cat_db_begin(f->db, &e), 0);
	assert_int_equal(cat_db_begin(f->db, &e), SNAP_EMISUSE);
	id = add(f->db, "vm", "gone", T0);
	/* A failing call inside undoes only itself. */
	{
		struct cat_snapshot s = sample("vm", "gone", T0);
		assert_int_equal(cat_snapshot_add(f->db, &s, NULL, &e),
				 -EEXIST);
	}
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	cat_snapshot_free(got);
	got = NULL;
	assert_int_equal(cat_db_rollback(f->db, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), -ENOENT);

	assert_int_equal(cat_db_begin(f->db, &e), 0);
	add(f->db, "vm", "kept1", T0);
	add(f->db, "vm", "kept2", T0);
	assert_int_equal(cat_db_commit(f->db, &e), 0);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "kept2", &got, &e), 0);
	cat_snapshot_free(got);
	/* A transaction left open is rolled back by close. */
	assert_int_equal(cat_db_begin(f->db, &e), 0);
	add(f->db, "vm", "lost", T0);
	cat_db_close(f->db);
	assert_int_equal(cat_db_open(f->store, 0, &f->db, &e), 0);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "lost", &got, &e),
			 -ENOENT);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "kept1", &got, &e), 0);
	cat_snapshot_free(got);
}

static void
test_snapshot_dir_and_names(void **state)
{
	struct fixture *f = *state;
	char buf[PATH_MAX], want[PATH_MAX + 32], small[8];
	struct snap_err e;
	struct stat st;

	assert_int_equal(cat_db_snapshot_dir(f->db, "g1", false, buf,
					     sizeof(buf), &e), 0);
	snprintf(want, sizeof(want), "%s/snapshots/g1", f->store);
	assert_string_equal(buf, want);
	assert_int_equal(stat(buf, &st), -1);
	assert_int_equal(cat_db_snapshot_dir(f->db, "g1", true, buf,
					     sizeof(buf), &e), 0);
	assert_int_equal(stat(buf, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(cat_db_snapshot_dir(f->db, "..", true, buf,
					     sizeof(buf), &e), -EINVAL);
	assert_int_equal(cat_db_snapshot_dir(f->db, "g1", false, small,
					     sizeof(small), &e), -ENAMETOOLONG);

	assert_true(cat_name_valid("vm-1.prod_2"));
	assert_false(cat_name_valid(".x"));
	assert_false(cat_name_valid("a b"));
	assert_false(cat_name_valid("a/b"));
	memset(buf, 'a', CAT_NAME_MAX);
	buf[CAT_NAME_MAX] = '\0';
	assert_true(cat_name_valid(buf));
	buf[CAT_NAME_MAX] = 'a';
	buf[CAT_NAME_MAX + 1] = '\0';
	assert_false(cat_name_valid(buf));
	assert_true(cat_label_valid("env=prod/eu:1+x"));
	assert_false(cat_label_valid("a,b"));
	assert_false(cat_label_valid(""));
}

static void
test_retention_view(void **state)
{
	struct fixture *f = *state;
	struct cat_ret_policy p = { .keep_last = 2 };
	struct cat_ret_item *items = NULL;
	struct cat_ret_result res[8];
	struct snap_err e;
	size_t n = 0;
	int64_t ids[5];

	assert_int_equal(cat_guest_add(f->db, "a", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "b", NULL, NULL, &e), 0);
	for (int i = 0; i < 4; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		ids[i] = add(f->db, "a", name, T0 + i * S);
	}
	ids[4] = add(f->db, "b", "only", T0);
	assert_int_equal(cat_snapshot_set_pinned(f->db, ids[0], true, &e), 0);

	assert_int_equal(cat_snapshot_ret_items(f->db, "a", &items, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_int_equal(cat_ret_evaluate(&p, items, n, res, &e), 3);
	for (size_t i = 0; i < n; i++) {
		if (items[i].id == ids[0]) {
			assert_true(items[i].pinned);
			assert_int_equal(res[i].reasons, CAT_RET_PINNED);
		} else if (items[i].id == ids[1]) {
			assert_false(res[i].keep);
		} else {
			assert_int_equal(res[i].reasons, CAT_RET_LAST);
		}
	}
	free(items);
	items = NULL;
	assert_int_equal(cat_snapshot_ret_items(f->db, NULL, &items, &n, &e), 0);
	assert_int_equal(n, 5);
	free(items);
	items = NULL;
	assert_int_equal(cat_snapshot_ret_items(f->db, "nobody", &items, &n,
						&e), 0);
	assert_int_equal(n, 0);
	free(items);
}

/* ---- several processes -------------------------------------------------- */

static void
writer_child(const char *store, const char *guest, int count)
{
	struct cat_db *db = NULL;
	struct snap_err e;
	char name[32];

	if (cat_db_open(store, 0, &db, &e) != 0) {
		fprintf(stderr, "child open: %s\n", e.msg);
		_exit(2);
	}
	for (int i = 0; i < count; i++) {
		struct cat_snapshot s = sample(guest, name, T0 + i * S);
		const char *label[] = { "conc" };

		snprintf(name, sizeof(name), "s%d", i);
		s.labels = label;
		s.nlabels = 1;
		if (cat_snapshot_add(db, &s, NULL, &e) != 0) {
			fprintf(stderr, "child add: %s\n", e.msg);
			_exit(3);
		}
	}
	cat_db_close(db);
	_exit(0);
}

static void
test_two_writers(void **state)
{
	struct fixture *f = *state;
	struct cat_filter flt = { .label = "conc" };
	struct cat_snapshot_list *l = NULL;
	struct snap_err e;
	pid_t pid[2];
	enum { N = 300 };

	assert_int_equal(cat_guest_add(f->db, "p0", NULL, NULL, &e), 0);
	assert_int_equal(cat_guest_add(f->db, "p1", NULL, NULL, &e), 0);
	cat_db_close(f->db);
	f->db = NULL;
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0)
			writer_child(f->store, i == 0 ? "p0" : "p1", N);
	}
	for (int i = 0; i < 2; i++) {
		int status;

		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(cat_db_open(f->store, 0, &f->db, &e), 0);
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, 2 * N);
	cat_snapshot_list_free(l);
	flt.guest = "p1";
	assert_int_equal(cat_snapshot_list(f->db, &flt, &l, &e), 0);
	assert_int_equal(l->n, N);
	cat_snapshot_list_free(l);
}

/* Two processes create the same fresh store at the same moment. */
static void
test_two_openers_fresh_store(void **state)
{
	struct fixture *f = *state;
	struct cat_guest_list *l = NULL;
	struct snap_err e;
	int go[2];
	pid_t pid[2];

	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			struct cat_db *db = NULL;
			char c;

			close(go[1]);
			/* Wait for the start signal (the pipe closing). */
			if (read(go[0], &c, 1) != 0)
				_exit(4);
			if (cat_db_open(f->store, CAT_OPEN_CREATE, &db,
					&e) != 0) {
				fprintf(stderr, "child open: %s\n", e.msg);
				_exit(2);
			}
			if (cat_guest_add(db, i == 0 ? "g0" : "g1", NULL,
					  NULL, &e) != 0) {
				fprintf(stderr, "child add: %s\n", e.msg);
				_exit(3);
			}
			cat_db_close(db);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < 2; i++) {
		int status;

		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(cat_db_open(f->store, 0, &f->db, &e), 0);
	assert_int_equal(cat_db_schema_version(f->db, &e), CAT_SCHEMA_VERSION);
	assert_int_equal(cat_guest_list(f->db, &l, &e), 0);
	assert_int_equal(l->n, 2);
	cat_guest_list_free(l);
}

/*
 * The child registers @count snapshots inside one explicit transaction and
 * writes one byte to @fd after each, and "C" once committed; it then waits
 * to be killed.
 */
static void
big_tx_child(const char *store, int fd, int go, int count)
{
	struct cat_db *db = NULL;
	struct snap_err e;
	char name[32], c;

	if (cat_db_open(store, 0, &db, &e) != 0 || cat_db_begin(db, &e) != 0)
		_exit(2);
	for (int i = 0; i < count; i++) {
		struct cat_snapshot s = sample("vm", name, T0 + i * S);

		snprintf(name, sizeof(name), "k%d", i);
		if (cat_snapshot_add(db, &s, NULL, &e) != 0)
			_exit(3);
		/* Lockstep: the parent decides before the next step runs. */
		if (write(fd, "+", 1) != 1 || read(go, &c, 1) != 1)
			_exit(4);
	}
	if (cat_db_commit(db, &e) != 0 || write(fd, "C", 1) != 1)
		_exit(5);
	for (;;)
		pause();
}

/* Kill the child after it has done @after inserts (or committed). */
static void
kill_after(struct fixture *f, int count, int after, bool *committed)
{
	int p[2], go[2], status, seen = 0;
	pid_t pid;
	char c;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		close(go[1]);
		big_tx_child(f->store, p[1], go[0], count);
	}
	close(p[1]);
	close(go[0]);
	*committed = false;
	while (read(p[0], &c, 1) == 1) {
		if (c == 'C') {
			*committed = true;
			break;
		}
		/* The child waits for us here, so the kill lands exactly. */
		if (++seen == after)
			break;
		assert_int_equal(write(go[1], "g", 1), 1);
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(p[0]);
	close(go[1]);
}

static void
test_killed_mid_transaction(void **state)
{
	struct fixture *f = *state;
	struct snap_err e;
	enum { N = 400 };
	int afters[] = { 1, N / 2, N - 1, N + 1 };
	bool committed;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	cat_db_close(f->db);
	f->db = NULL;
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(afters); i++) {
		int64_t rows;

		kill_after(f, N, afters[i], &committed);
		/* Before the commit, nothing; after, everything. */
		assert_int_equal(cat_db_open(f->store, 0, &f->db, &e), 0);
		rows = raw_int(f->dbpath, "SELECT count(*) FROM snapshots");
		if (afters[i] <= N) {
			assert_false(committed);
			assert_int_equal(rows, 0);
		} else {
			assert_true(committed);
			assert_int_equal(rows, N);
		}
		assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM"
					 " pragma_integrity_check"
					 " WHERE integrity_check != 'ok'"), 0);
		assert_int_equal(raw_int(f->dbpath, "SELECT count(*) FROM"
					 " pragma_foreign_key_check"), 0);
		/* The database is writable again at once. */
		add(f->db, "vm", afters[i] <= N ? "after" : "after2", T0);
		cat_db_close(f->db);
		f->db = NULL;
		raw_exec(f->dbpath, "DELETE FROM snapshots"
			 " WHERE name LIKE 'after%'");
	}
}


/* ---- reconcile and rebuild ---------------------------------------------- */

/* Write a real snapshot file @dir/@file with the format writer. */
static void
make_snap(const char *dir, const char *file, const char *guest,
	  const char *name, const char *parent, uint64_t created,
	  struct fmt_summary *sum)
{
	struct fmt_writer_opts o = { .flags = FMT_W_BUFFERED | FMT_W_NO_FSYNC };
	struct fmt_block_decl b = { .idstr = "pc.ram", .length = 16 * 4096,
				    .page_size = 4096, .main = true };
	struct fmt_meta m = {
		.guest_name = guest, .snapshot_name = name,
		.guest_spec = "{\"memory\":\"64K\"}", .qemu_version = "7.2.0",
		.machine_type = "pc-i440fx-7.2",
		.capabilities = "{\"x-ignore-shared\":true}",
		.parent = parent, .created_ns = created,
		.save_duration_ns = 42, .save_mode = FMT_SAVE_LIVE,
	};
	struct fmt_writer *w = NULL;
	struct fmt_summary local;
	struct snap_err e;
	uint8_t page[4096];

	memset(page, 0xab, sizeof(page));
	if (fmt_writer_open(&w, dir, file, &o, &e) != 0 ||
	    fmt_writer_declare(w, &b, 1, &e) != 0 ||
	    fmt_writer_put_page(w, 0, 0, page, &e) != 0 ||
	    fmt_writer_put_page(w, 0, 5, page, &e) != 0 ||
	    fmt_writer_devstate(w, "dev", 3, &e) != 0 ||
	    fmt_writer_set_meta(w, &m, &e) != 0 ||
	    fmt_writer_commit(w, sum != NULL ? sum : &local, &e) != 0)
		fail_msg("make_snap %s/%s: %s", dir, file, e.msg);
	fmt_writer_free(w);
}

/* Register a row for a file made by make_snap(). */
static int64_t
add_from(struct cat_db *db, const char *guest, const char *name,
	 const struct fmt_summary *sum, uint64_t size_delta)
{
	struct cat_snapshot s = sample(guest, name, T0);
	struct snap_err e;
	int64_t id = 0;

	s.apparent_size = sum->apparent_size + size_delta;
	if (cat_snapshot_add(db, &s, &id, &e) != 0)
		fail_msg("add %s: %s", name, e.msg);
	return id;
}

struct fixlog {
	size_t n;
	struct {
		enum cat_fix_kind kind;
		char path[256];
		int64_t id;
		int error;
	} v[64];
};

static void
log_fix(void *ctx, const struct cat_fix *f)
{
	struct fixlog *l = ctx;

	assert_true(l->n < SNAP_ARRAY_SIZE(l->v));
	l->v[l->n].kind = f->kind;
	snap_strlcpy(l->v[l->n].path, f->path, sizeof(l->v[l->n].path));
	l->v[l->n].id = f->id;
	l->v[l->n].error = f->error;
	assert_non_null(f->detail);
	l->n++;
}

/* The fix of @kind for @path in @l, or fail. */
static int
fix_index(const struct fixlog *l, enum cat_fix_kind kind, const char *path)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == kind && strcmp(l->v[i].path, path) == 0)
			return (int)i;
	fail_msg("no %s fix for '%s'", cat_fix_kind_name(kind), path);
	return -1;
}

static void
put(const char *dir, const char *name, size_t len)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	write_file(p, len);
}

static bool
exists_in(const char *dir, const char *name)
{
	char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

/*
 * A store with each kind of inconsistency:
 *   vm/a.snap      row and file agree              -> nothing
 *   vm/b.snap      row, no file                    -> missing
 *   vm/c.snap      row marked missing, file back   -> returned
 *   vm/d.snap      row with another size           -> size-changed
 *   vm/e.snap      file, no row, parent "a"        -> adopted, parent linked
 *   newvm/f.snap   file of an unknown guest        -> adopted, guest added
 *   vm/junk.snap   not a snapshot file, no row     -> adopted-corrupt
 *   vm/.e2.snap.tmp-ABCDEF, snapshots/.x.tmp-1     -> temp-removed
 *   vm/notes.txt, snapshots/README, vm/sub/        -> stray, untouched
 *   /abs row outside the store, file gone          -> missing
 */
static void
build_messy_store(struct fixture *f, char *vmdir, char *newdir, size_t size,
		  int64_t ids[5])
{
	struct fmt_summary sa, sc, sd;
	struct snap_err e;
	char top[PATH_MAX + 16], sub[PATH_MAX + 16];
	struct cat_snapshot s;

	assert_int_equal(cat_guest_add(f->db, "vm", "{}", NULL, &e), 0);
	assert_int_equal(cat_db_snapshot_dir(f->db, "vm", true, vmdir, size,
					     &e), 0);
	assert_int_equal(cat_db_snapshot_dir(f->db, "newvm", true, newdir, size,
					     &e), 0);
	make_snap(vmdir, "a.snap", "vm", "a", NULL, T0, &sa);
	make_snap(vmdir, "c.snap", "vm", "c", NULL, T0 + S, &sc);
	make_snap(vmdir, "d.snap", "vm", "d", NULL, T0 + 2 * S, &sd);
	make_snap(vmdir, "e.snap", "vm", "e", "a", T0 + 3 * S, NULL);
	make_snap(newdir, "f.snap", "newvm", "f", NULL, T0 + 4 * S, NULL);
	ids[0] = add_from(f->db, "vm", "a", &sa, 0);
	ids[1] = add_from(f->db, "vm", "b", &sa, 0);
	ids[2] = add_from(f->db, "vm", "c", &sc, 0);
	ids[3] = add_from(f->db, "vm", "d", &sd, 4096);
	assert_int_equal(cat_snapshot_set_state(f->db, ids[2],
						CAT_SNAP_MISSING, &e), 0);
	s = sample("vm", "abs", T0);
	s.path = "/nonexistent/dir/abs.snap";
	assert_int_equal(cat_snapshot_add(f->db, &s, &ids[4], &e), 0);

	put(vmdir, "junk.snap", 5000);
	put(vmdir, ".e2.snap.tmp-ABCDEF", 100);
	put(vmdir, "notes.txt", 10);
	snprintf(top, sizeof(top), "%s/snapshots", f->store);
	put(top, "README", 10);
	put(top, ".x.snap.tmp-123456", 10);
	snprintf(sub, sizeof(sub), "%s/sub", vmdir);
	assert_int_equal(mkdir(sub, 0755), 0);
}

static void
test_reconcile_each_kind(void **state)
{
	struct fixture *f = *state;
	char vmdir[PATH_MAX], newdir[PATH_MAX];
	struct fixlog log = { 0 };
	struct cat_reconcile_opts o = { .fix = log_fix, .ctx = &log };
	struct cat_reconcile_report rep;
	struct cat_snapshot *got = NULL;
	struct cat_guest *g = NULL;
	struct snap_err e;
	int64_t ids[5];
	int i;

	build_messy_store(f, vmdir, newdir, sizeof(vmdir), ids);

	/* A dry run reports everything and changes nothing. */
	o.dry_run = true;
	assert_int_equal(cat_reconcile(f->db, &o, &rep, &e), 9);
	assert_int_equal(rep.count[CAT_FIX_TEMP_REMOVED], 2);
	assert_true(exists_in(vmdir, ".e2.snap.tmp-ABCDEF"));
	assert_int_equal(cat_snapshot_find(f->db, "vm", "e", &got, &e),
			 -ENOENT);
	assert_int_equal(cat_snapshot_get(f->db, ids[1], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);
	got = NULL;

	memset(&log, 0, sizeof(log));
	o.dry_run = false;
	snap_err_clear(&e);
	if (cat_reconcile(f->db, &o, &rep, &e) != 9)
		fail_msg("reconcile: %s", e.msg);
	assert_int_equal(rep.rows, 5);
	assert_int_equal(rep.files, 6);   /* a c d e f junk */
	assert_int_equal(rep.count[CAT_FIX_ADOPTED], 2);
	assert_int_equal(rep.count[CAT_FIX_ADOPTED_CORRUPT], 1);
	assert_int_equal(rep.count[CAT_FIX_MISSING], 2);
	assert_int_equal(rep.count[CAT_FIX_RETURNED], 1);
	assert_int_equal(rep.count[CAT_FIX_SIZE_CHANGED], 1);
	assert_int_equal(rep.count[CAT_FIX_TEMP_REMOVED], 2);
	assert_int_equal(rep.count[CAT_FIX_STRAY], 3);
	assert_int_equal(rep.count[CAT_FIX_FAILED], 0);

	/* The callback saw each fix with its path and row. */
	i = fix_index(&log, CAT_FIX_MISSING, "snapshots/vm/b.snap");
	assert_int_equal(log.v[i].id, ids[1]);
	i = fix_index(&log, CAT_FIX_MISSING, "/nonexistent/dir/abs.snap");
	assert_int_equal(log.v[i].id, ids[4]);
	i = fix_index(&log, CAT_FIX_RETURNED, "snapshots/vm/c.snap");
	assert_int_equal(log.v[i].id, ids[2]);
	i = fix_index(&log, CAT_FIX_SIZE_CHANGED, "snapshots/vm/d.snap");
	assert_int_equal(log.v[i].id, ids[3]);
	fix_index(&log, CAT_FIX_ADOPTED, "snapshots/vm/e.snap");
	fix_index(&log, CAT_FIX_ADOPTED, "snapshots/newvm/f.snap");
	i = fix_index(&log, CAT_FIX_ADOPTED_CORRUPT, "snapshots/vm/junk.snap");
	assert_true(log.v[i].error < 0);
	fix_index(&log, CAT_FIX_TEMP_REMOVED,
		  "snapshots/vm/.e2.snap.tmp-ABCDEF");
	fix_index(&log, CAT_FIX_TEMP_REMOVED, "snapshots/.x.snap.tmp-123456");
	fix_index(&log, CAT_FIX_STRAY, "snapshots/vm/notes.txt");
	fix_index(&log, CAT_FIX_STRAY, "snapshots/README");
	fix_index(&log, CAT_FIX_STRAY, "snapshots/vm/sub");

	/* The files: temporaries gone, strays and snapshots untouched. */
	assert_false(exists_in(vmdir, ".e2.snap.tmp-ABCDEF"));
	assert_true(exists_in(vmdir, "notes.txt"));
	assert_true(exists_in(vmdir, "junk.snap"));
	assert_true(exists_in(vmdir, "a.snap"));

	/* The rows. */
	assert_int_equal(cat_snapshot_get(f->db, ids[0], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_get(f->db, ids[1], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_MISSING);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_get(f->db, ids[2], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_get(f->db, ids[3], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_CORRUPT);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_get(f->db, ids[4], &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_MISSING);
	cat_snapshot_free(got);

	/* Adopted from the file's own metadata. */
	assert_int_equal(cat_snapshot_find(f->db, "vm", "e", &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	assert_string_equal(got->path, "snapshots/vm/e.snap");
	assert_string_equal(got->qemu_version, "7.2.0");
	assert_string_equal(got->machine, "pc-i440fx-7.2");
	assert_string_equal(got->capabilities, "{\"x-ignore-shared\":true}");
	assert_int_equal(got->created_ns, T0 + 3 * S);
	assert_int_equal(got->save_duration_ns, 42);
	assert_true(got->live);
	assert_int_equal(got->ram_size, 16 * 4096);
	assert_int_equal(got->present_pages, 2);
	assert_int_equal(strlen(got->root_digest), 32);
	assert_int_equal(got->parent_id, ids[0]);
	assert_true(got->apparent_size > 0);
	cat_snapshot_free(got);
	assert_int_equal(cat_guest_get(f->db, "newvm", &g, &e), 0);
	assert_string_equal(g->spec, "{\"memory\":\"64K\"}");
	cat_guest_free(g);
	assert_int_equal(cat_snapshot_find(f->db, "newvm", "f", &got, &e), 0);
	assert_int_equal(got->created_ns, T0 + 4 * S);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "junk", &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_CORRUPT);
	assert_int_equal(got->apparent_size, 5000);
	cat_snapshot_free(got);

	/* A second pass finds nothing more to do. */
	memset(&log, 0, sizeof(log));
	assert_int_equal(cat_reconcile(f->db, &o, &rep, &e), 0);
	assert_int_equal(rep.count[CAT_FIX_STRAY], 3);
	assert_int_equal(rep.files, 6);
}

static void
test_reconcile_recent_temp_kept(void **state)
{
	struct fixture *f = *state;
	struct cat_reconcile_opts o = { .temp_min_age_ns = 3600 * S };
	struct cat_reconcile_report rep;
	char dir[PATH_MAX], p[PATH_MAX + 32];
	struct timespec old[2] = { { 1000, 0 }, { 1000, 0 } };
	struct snap_err e;

	assert_int_equal(cat_db_snapshot_dir(f->db, "vm", true, dir,
					     sizeof(dir), &e), 0);
	put(dir, ".new.snap.tmp-AAAAAA", 10);
	put(dir, ".old.snap.tmp-BBBBBB", 10);
	snprintf(p, sizeof(p), "%s/.old.snap.tmp-BBBBBB", dir);
	assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
	assert_int_equal(cat_reconcile(f->db, &o, &rep, &e), 1);
	assert_int_equal(rep.count[CAT_FIX_TEMP_REMOVED], 1);
	assert_true(exists_in(dir, ".new.snap.tmp-AAAAAA"));
	assert_false(exists_in(dir, ".old.snap.tmp-BBBBBB"));
	/* Without an age limit, at startup, every temporary goes. */
	assert_int_equal(cat_reconcile(f->db, NULL, NULL, &e), 1);
	assert_false(exists_in(dir, ".new.snap.tmp-AAAAAA"));
	o.temp_min_age_ns = -1;
	assert_int_equal(cat_reconcile(f->db, &o, NULL, &e), -EINVAL);
	/* Not inside an explicit transaction. */
	assert_int_equal(cat_db_begin(f->db, &e), 0);
	assert_int_equal(cat_reconcile(f->db, NULL, NULL, &e), SNAP_EMISUSE);
	assert_int_equal(cat_db_rollback(f->db, &e), 0);
}

/*
 * Paths: one given under the store is kept relative; a row whose path
 * names the layout file in another spelling is still that file's row.
 */
static void
test_paths_in_store(void **state)
{
	struct fixture *f = *state;
	struct cat_reconcile_report rep;
	struct cat_snapshot *got = NULL;
	struct fmt_summary sum;
	struct cat_snapshot s;
	struct snap_err e;
	char dir[PATH_MAX], p[2 * PATH_MAX], buf[PATH_MAX + 64];
	struct cat_db *db2 = NULL;
	int64_t id;

	assert_int_equal(cat_guest_add(f->db, "vm", NULL, NULL, &e), 0);
	assert_int_equal(cat_db_snapshot_dir(f->db, "vm", true, dir,
					     sizeof(dir), &e), 0);
	make_snap(dir, "a.snap", "vm", "a", NULL, T0, &sum);
	/* What the format writer reports as the final path. */
	assert_string_equal(sum.path, strcat(strcpy(p, dir), "/a.snap"));
	s = sample("vm", "a", T0);
	s.path = sum.path;
	s.apparent_size = sum.apparent_size;
	assert_int_equal(cat_snapshot_add(f->db, &s, &id, &e), 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_string_equal(got->path, "snapshots/vm/a.snap");
	assert_int_equal(cat_db_resolve_path(f->db, got->path, buf,
					     sizeof(buf)), 0);
	assert_string_equal(buf, sum.path);
	cat_snapshot_free(got);
	got = NULL;
	assert_int_equal(cat_db_resolve_path(f->db, "/x/y", buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "/x/y");
	assert_int_equal(cat_db_resolve_path(f->db, "", buf, sizeof(buf)),
			 -EINVAL);

	/* The same with the store spelled with a trailing slash. */
	snprintf(p, sizeof(p), "%s/", f->store);
	assert_int_equal(cat_db_open(p, 0, &db2, &e), 0);
	assert_string_equal(cat_db_store(db2), f->store);
	make_snap(dir, "b.snap", "vm", "b", NULL, T0, &sum);
	s = sample("vm", "b", T0);
	s.path = sum.path;
	s.apparent_size = sum.apparent_size;
	assert_int_equal(cat_snapshot_add(db2, &s, &id, &e), 0);
	assert_int_equal(cat_snapshot_get(db2, id, &got, &e), 0);
	assert_string_equal(got->path, "snapshots/vm/b.snap");
	cat_snapshot_free(got);
	got = NULL;
	cat_db_close(db2);

	/* A row that spells the layout file's path differently. */
	snprintf(p, sizeof(p), "UPDATE snapshots SET path = '%s/./snapshots/"
		 "vm/b.snap' WHERE id = %lld", f->store, (long long)id);
	raw_exec(f->dbpath, p);
	snap_err_clear(&e);
	if (cat_reconcile(f->db, NULL, &rep, &e) != 0)
		fail_msg("reconcile: %s", e.msg);
	assert_int_equal(rep.files, 2);
	assert_int_equal(rep.count[CAT_FIX_ADOPTED], 0);
	assert_int_equal(cat_snapshot_get(f->db, id, &got, &e), 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);
}

static void
test_rebuild_from_files(void **state)
{
	struct fixture *f = *state;
	char vmdir[PATH_MAX], newdir[PATH_MAX];
	struct cat_reconcile_opts o = { .dry_run = true };
	struct cat_reconcile_report rep;
	struct cat_snapshot_list *l = NULL;
	struct cat_guest_list *gl = NULL;
	struct cat_snapshot *got = NULL;
	struct snap_err e;
	int64_t ids[5];
	char p[PATH_MAX + 32];
	DIR *d;
	struct dirent *de;

	build_messy_store(f, vmdir, newdir, sizeof(vmdir), ids);
	assert_int_equal(cat_guest_add(f->db, "empty", NULL, NULL, &e), 0);
	assert_int_equal(cat_snapshot_label_add(f->db, ids[0], "lost", &e), 0);
	assert_int_equal(cat_rebuild(f->store, &o, NULL, &e), -EINVAL);
	/*
	 * Leave the old catalog with a WAL that holds a change: a process
	 * that writes without checkpointing and dies without closing.
	 */
	cat_db_close(f->db);
	f->db = NULL;
	{
		pid_t pid = fork();
		struct stat st;
		int status;

		assert_true(pid >= 0);
		if (pid == 0) {
			sqlite3 *h;

			if (sqlite3_open(f->dbpath, &h) != SQLITE_OK ||
			    sqlite3_exec(h, "PRAGMA wal_autocheckpoint = 0;"
					 " UPDATE guests SET spec ="
					 " '{\"stale\":1}'",
					 NULL, NULL, NULL) != SQLITE_OK)
				_exit(1);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		snprintf(p, sizeof(p), "%s-wal", f->dbpath);
		assert_int_equal(stat(p, &st), 0);
		assert_true(st.st_size > 0);
	}

	/* Leftovers of an interrupted rebuild go too. */
	put(f->store, ".catalog.db.tmp-99999", 100);
	put(f->store, ".catalog.db.tmp-99999-wal", 100);

	memset(&rep, 0, sizeof(rep));
	snap_err_clear(&e);
	if (cat_rebuild(f->store, NULL, &rep, &e) < 0)
		fail_msg("rebuild: %s", e.msg);
	assert_int_equal(rep.rows, 0);
	assert_int_equal(rep.count[CAT_FIX_ADOPTED], 5);   /* a c d e f */
	assert_int_equal(rep.count[CAT_FIX_ADOPTED_CORRUPT], 1);
	assert_int_equal(rep.count[CAT_FIX_TEMP_REMOVED], 2);
	assert_int_equal(rep.count[CAT_FIX_MISSING], 0);

	/* No temporary database is left in the store. */
	d = opendir(f->store);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		assert_null(strstr(de->d_name, ".tmp-"));
	closedir(d);

	assert_int_equal(cat_db_open(f->store, 0, &f->db, &e), 0);
	assert_int_equal(cat_snapshot_list(f->db, NULL, &l, &e), 0);
	assert_int_equal(l->n, 6);
	cat_snapshot_list_free(l);
	assert_int_equal(cat_guest_list(f->db, &gl, &e), 0);
	assert_int_equal(gl->n, 2);
	assert_string_equal(gl->v[0]->name, "newvm");
	assert_string_equal(gl->v[1]->name, "vm");
	/* The spec comes from the files, not from the stale WAL. */
	assert_string_equal(gl->v[1]->spec, "{\"memory\":\"64K\"}");
	cat_guest_list_free(gl);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "a", &got, &e), 0);
	assert_int_equal(got->nlabels, 0);
	assert_int_equal(got->state, CAT_SNAP_OK);
	cat_snapshot_free(got);
	assert_int_equal(cat_snapshot_find(f->db, "vm", "e", &got, &e), 0);
	assert_true(got->parent_id > 0);
	cat_snapshot_free(got);
	/* A reconcile right after the rebuild has nothing to do. */
	assert_int_equal(cat_reconcile(f->db, NULL, &rep, &e), 0);
	snprintf(p, sizeof(p), "%s/nope", f->store);
	assert_int_equal(cat_rebuild(p, NULL, NULL, &e), -ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_create_reopen,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file_gets_schema,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_version_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_machinery,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_guests,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_guest_remove_refused,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_add_get_find,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_add_atomic,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_list_filters,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_state_verify_pin_labels,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_delete_and_inuse,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_explicit_transaction,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_dir_and_names,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_retention_view,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_two_writers,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_two_openers_fresh_store,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_mid_transaction,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_each_kind,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile_recent_temp_kept,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_paths_in_store,
						setup_open, teardown),
		cmocka_unit_test_setup_teardown(test_rebuild_from_files,
						setup_open, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
