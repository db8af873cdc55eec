/*
 * catalog/guest.c: guest records (add, look up, list, update, remove) and
 * the text form of their states.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog_int.h"
#include "common/util.h"

static const char *const guest_states[CAT_GUEST_NSTATES] = {
	[CAT_GUEST_DEFINED] = "defined",
	[CAT_GUEST_RUNNING] = "running",
	[CAT_GUEST_PAUSED]  = "paused",
	[CAT_GUEST_STOPPED] = "stopped",
};

const char *
cat_guest_state_name(enum cat_guest_state s)
{
	if ((unsigned)s >= CAT_GUEST_NSTATES)
		return "unknown";
	return guest_states[s];
}

int
cat_guest_state_parse(const char *s)
{
	for (int i = 0; i < CAT_GUEST_NSTATES; i++)
		if (s != NULL && strcmp(s, guest_states[i]) == 0)
			return i;
	return -EINVAL;
}

static int
check_name(const char *name, struct snap_err *err)
{
	if (!cat_name_valid(name))
		return snap_err_set(err, -EINVAL, 0, "invalid guest name '%s'",
				    name != NULL ? name : "(null)");
	return 0;
}

int
cat_guest_id(struct cat_db *db, const char *name, int64_t *id,
	     struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, Q_GUEST_ID, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = snap_err_set(err, -ENOENT, 0, "no such guest '%s'", name);
	} else {
		rc = cat_sqlerr(db, err, "cannot look up guest");
	}
	sqlite3_reset(st);
	return rc;
}

int
cat_guest_add(struct cat_db *db, const char *name, const char *spec,
	      int64_t *id, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = check_name(name, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_GUEST_ADD, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, spec != NULL ? spec : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)snap_now_real_ns());
	sqlite3_bind_text(st, 4, guest_states[CAT_GUEST_DEFINED], -1,
			  SQLITE_STATIC);
	rc = cat_step_done(db, st, err, "cannot add guest");
	if (rc == -EEXIST)
		return snap_err_set(err, -EEXIST, 0, "guest '%s' exists", name);
	if (rc < 0)
		return rc;
	if (id != NULL)
		*id = sqlite3_last_insert_rowid(db->h);
	return 0;
}

/* A guest record with its strings in the same allocation. */
static int
guest_from_row(sqlite3_stmt *st, struct cat_guest **out, struct snap_err *err)
{
	const char *name = (const char *)sqlite3_column_text(st, 1);
	const char *spec = (const char *)sqlite3_column_text(st, 2);
	const char *state = (const char *)sqlite3_column_text(st, 4);
	size_t nlen, slen;
	struct cat_guest *g;
	char *p;
	int s;

	name = name != NULL ? name : "";
	spec = spec != NULL ? spec : "";
	nlen = strlen(name) + 1;
	slen = strlen(spec) + 1;
	g = malloc(sizeof(*g) + nlen + slen);
	if (g == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	p = (char *)(g + 1);
	memcpy(p, name, nlen);
	g->name = p;
	memcpy(p + nlen, spec, slen);
	g->spec = p + nlen;
	g->id = sqlite3_column_int64(st, 0);
	g->created_ns = sqlite3_column_int64(st, 3);
	s = cat_guest_state_parse(state);
	/* A state written by a newer program reads as stopped. */
	g->state = s >= 0 ? (enum cat_guest_state)s : CAT_GUEST_STOPPED;
	*out = g;
	return 0;
}

int
cat_guest_get(struct cat_db *db, const char *name, struct cat_guest **out,
	      struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = check_name(name, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_GUEST_GET, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rc = guest_from_row(st, out, err);
	else if (rc == SQLITE_DONE)
		rc = snap_err_set(err, -ENOENT, 0, "no such guest '%s'", name);
	else
		rc = cat_sqlerr(db, err, "cannot look up guest");
	sqlite3_reset(st);
	return rc;
}

int
cat_guest_list(struct cat_db *db, struct cat_guest_list **out,
	       struct snap_err *err)
{
	struct cat_guest_list *l;
	size_t cap = 0;
	sqlite3_stmt *st = NULL;
	int rc;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	rc = cat_stmt(db, Q_GUEST_LIST, &st, err);
	if (rc < 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cat_guest **v = snap_grow(l->v, &cap, l->n,
						 sizeof(*v), 16);

		if (v == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		l->v = v;
		rc = guest_from_row(st, &l->v[l->n], err);
		if (rc < 0)
			goto out;
		l->n++;
	}
	if (rc != SQLITE_DONE) {
		rc = cat_sqlerr(db, err, "cannot list guests");
		goto out;
	}
	*out = l;
	l = NULL;
	rc = 0;
out:
	sqlite3_reset(st);
	cat_guest_list_free(l);
	return rc;
}

static int
guest_update(struct cat_db *db, enum cat_q q, const char *name,
	     const char *value, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = check_name(name, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, q, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	rc = cat_step_done(db, st, err, "cannot update guest");
	if (rc < 0)
		return rc;
	if (sqlite3_changes(db->h) == 0)
		return snap_err_set(err, -ENOENT, 0, "no such guest '%s'", name);
	return 0;
}

int
cat_guest_set_state(struct cat_db *db, const char *name,
		    enum cat_guest_state state, struct snap_err *err)
{
	if ((unsigned)state >= CAT_GUEST_NSTATES)
		return snap_err_set(err, -EINVAL, 0, "invalid guest state %d",
				    (int)state);
	return guest_update(db, Q_GUEST_SET_STATE, name, guest_states[state],
			    err);
}

int
cat_guest_set_spec(struct cat_db *db, const char *name, const char *spec,
		   struct snap_err *err)
{
	return guest_update(db, Q_GUEST_SET_SPEC, name,
			    spec != NULL ? spec : "{}", err);
}

static int
exists(struct cat_db *db, enum cat_q q, int64_t id, bool *out,
       struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, q, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0) != 0;
		rc = 0;
	} else {
		rc = cat_sqlerr(db, err, "cannot query guest");
	}
	sqlite3_reset(st);
	return rc;
}

int
cat_guest_remove(struct cat_db *db, const char *name, struct snap_err *err)
{
	sqlite3_stmt *st;
	int64_t id;
	bool has, outer;
	int rc;

	rc = check_name(name, err);
	if (rc < 0)
		return rc;
	rc = cat_op_begin(db, &outer, err);
	if (rc < 0)
		return rc;
	rc = cat_guest_id(db, name, &id, err);
	if (rc < 0)
		goto out;
	rc = exists(db, Q_GUEST_NMAPS, id, &has, err);
	if (rc < 0)
		goto out;
	if (has) {
		rc = snap_err_set(err, SNAP_EINUSE, 0,
				  "guest '%s' maps a snapshot", name);
		goto out;
	}
	rc = exists(db, Q_GUEST_NSNAPS, id, &has, err);
	if (rc < 0)
		goto out;
	if (has) {
		rc = snap_err_set(err, -ENOTEMPTY, 0,
				  "guest '%s' has snapshots", name);
		goto out;
	}
	rc = cat_stmt(db, Q_GUEST_DEL, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	rc = cat_step_done(db, st, err, "cannot remove guest");
out:
	return cat_op_end(db, outer, rc, err);
}

void
cat_guest_free(struct cat_guest *g)
{
	free(g);
}

void
cat_guest_list_free(struct cat_guest_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		cat_guest_free(l->v[i]);
	free(l->v);
	free(l);
}
