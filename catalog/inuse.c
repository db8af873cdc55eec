/*
 * catalog/inuse.c: which running guests map which snapshot file. snapd
 * records a mapping before it starts a QEMU that maps a snapshot as guest
 * RAM and clears it when that QEMU exits; delete refuses a mapped snapshot.
 */
#include <errno.h>
#include <stdlib.h>

#include "catalog/catalog_int.h"
#include "common/util.h"

int
cat_inuse_add(struct cat_db *db, int64_t id, const char *guest,
	      struct snap_err *err)
{
	sqlite3_stmt *st;
	int64_t gid;
	int rc;

	rc = cat_guest_id(db, guest, &gid, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_INUSE_ADD, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, gid);
	sqlite3_bind_int64(st, 3, (int64_t)snap_now_real_ns());
	rc = cat_step_done(db, st, err, "cannot record mapping");
	if (rc == -ENOENT)
		return snap_err_set(err, -ENOENT, 0, "no snapshot %lld",
				    (long long)id);
	return rc;
}

int
cat_inuse_remove(struct cat_db *db, int64_t id, const char *guest,
		 struct snap_err *err)
{
	sqlite3_stmt *st;
	int64_t gid;
	int rc;

	rc = cat_guest_id(db, guest, &gid, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_INUSE_DEL, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, gid);
	rc = cat_step_done(db, st, err, "cannot remove mapping");
	if (rc < 0)
		return rc;
	if (sqlite3_changes(db->h) == 0)
		return snap_err_set(err, -ENOENT, 0,
				    "guest '%s' does not map snapshot %lld",
				    guest, (long long)id);
	return 0;
}

int
cat_inuse_clear(struct cat_db *db, const char *guest, struct snap_err *err)
{
	sqlite3_stmt *st;
	int64_t gid;
	int rc;

	rc = cat_guest_id(db, guest, &gid, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_INUSE_CLEAR, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, gid);
	rc = cat_step_done(db, st, err, "cannot clear mappings");
	if (rc < 0)
		return rc;
	return sqlite3_changes(db->h);
}

int
cat_inuse_count(struct cat_db *db, int64_t id, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, Q_INUSE_COUNT, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		rc = sqlite3_column_int(st, 0);
	else
		rc = cat_sqlerr(db, err, "cannot count mappings");
	sqlite3_reset(st);
	return rc;
}

int
cat_inuse_list(struct cat_db *db, const char *guest, int64_t **ids, size_t *n,
	       struct snap_err *err)
{
	int64_t *v = NULL, gid;
	size_t len = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = cat_guest_id(db, guest, &gid, err);
	if (rc < 0)
		goto out;
	rc = cat_stmt(db, Q_INUSE_LIST, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, gid);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t *nv = snap_grow(v, &cap, len, sizeof(*v), 8);

		if (nv == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		v = nv;
		v[len++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		rc = cat_sqlerr(db, err, "cannot list mappings");
		goto out;
	}
	*ids = v;
	*n = len;
	v = NULL;
	rc = 0;
out:
	sqlite3_reset(st);
	free(v);
	return rc;
}
