/*
 * catalog/snapshot.c: snapshot records. Registration with labels in one
 * transaction, look-ups, filtered and ordered listing (one cached statement
 * per combination of filters, so every query is prepared and bound), state,
 * verification, pinning and labels, delete (row, then file), and the
 * retention view.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog_int.h"
#include "common/util.h"

static const char *const snap_states[CAT_SNAP_NSTATES] = {
	[CAT_SNAP_OK]      = "ok",
	[CAT_SNAP_MISSING] = "missing",
	[CAT_SNAP_CORRUPT] = "corrupt",
};

const char *
cat_snap_state_name(enum cat_snap_state s)
{
	if ((unsigned)s >= CAT_SNAP_NSTATES)
		return "unknown";
	return snap_states[s];
}

int
cat_snap_state_parse(const char *s)
{
	for (int i = 0; i < CAT_SNAP_NSTATES; i++)
		if (s != NULL && strcmp(s, snap_states[i]) == 0)
			return i;
	return -EINVAL;
}

const char *
cat_verdict_name(enum cat_verdict v)
{
	switch (v) {
	case CAT_VERDICT_NONE:
		return "none";
	case CAT_VERDICT_GOOD:
		return "good";
	case CAT_VERDICT_BAD:
		return "bad";
	}
	return "unknown";
}

static const char *
col_text(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);

	return s != NULL ? s : "";
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Text columns of CAT_SNAP_COLS, in the order they are copied. */
static const int text_cols[] = { 1, 2, 3, 8, 9, 10, 11 };

int
cat_snapshot_from_row(sqlite3_stmt *st, struct cat_snapshot **out,
		      struct snap_err *err)
{
	const char *labels = col_text(st, 20);
	const char *txt[SNAP_ARRAY_SIZE(text_cols)];
	size_t len[SNAP_ARRAY_SIZE(text_cols)];
	size_t total, llen = strlen(labels), nlabels = 0;
	struct cat_snapshot *s;
	const char **lv;
	const char *verdict;
	char *p;
	int state;

	total = sizeof(*s);
	if (llen > 0) {
		nlabels = 1;
		for (size_t i = 0; i < llen; i++)
			nlabels += labels[i] == ' ';
	}
	total += nlabels * sizeof(char *) + llen + 1;
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(text_cols); i++) {
		txt[i] = col_text(st, text_cols[i]);
		len[i] = strlen(txt[i]) + 1;
		total += len[i];
	}
	s = calloc(1, total);
	if (s == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	lv = (const char **)(s + 1);
	p = (char *)(lv + nlabels);
	for (size_t i = 0; i < SNAP_ARRAY_SIZE(text_cols); i++) {
		memcpy(p, txt[i], len[i]);
		txt[i] = p;
		p += len[i];
	}
	s->guest = txt[0];
	s->name = txt[1];
	s->path = txt[2];
	s->root_digest = txt[3];
	s->qemu_version = txt[4];
	s->machine = txt[5];
	s->capabilities = txt[6];
	/* Labels come space-separated (labels never contain spaces). */
	memcpy(p, labels, llen + 1);
	for (size_t i = 0; i < nlabels; i++) {
		lv[i] = p;
		p = strchr(p, ' ');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	/* SQLite does not promise group_concat()'s order: sort here. */
	qsort(lv, nlabels, sizeof(*lv), cmp_str);
	s->labels = lv;
	s->nlabels = nlabels;
	s->id = sqlite3_column_int64(st, 0);
	s->apparent_size = (uint64_t)sqlite3_column_int64(st, 4);
	s->allocated_size = (uint64_t)sqlite3_column_int64(st, 5);
	s->ram_size = (uint64_t)sqlite3_column_int64(st, 6);
	s->present_pages = (uint64_t)sqlite3_column_int64(st, 7);
	s->created_ns = sqlite3_column_int64(st, 12);
	s->save_duration_ns = sqlite3_column_int64(st, 13);
	s->live = sqlite3_column_int(st, 14) != 0;
	s->parent_id = sqlite3_column_int64(st, 15);
	s->verified_ns = sqlite3_column_int64(st, 16);
	verdict = col_text(st, 17);
	s->verdict = strcmp(verdict, "good") == 0 ? CAT_VERDICT_GOOD :
		     strcmp(verdict, "bad") == 0 ? CAT_VERDICT_BAD :
		     CAT_VERDICT_NONE;
	s->pinned = sqlite3_column_int(st, 18) != 0;
	state = cat_snap_state_parse(col_text(st, 19));
	s->state = state >= 0 ? (enum cat_snap_state)state : CAT_SNAP_CORRUPT;
	*out = s;
	return 0;
}

static bool
hex_valid(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
		      (*s >= 'A' && *s <= 'F')))
			return false;
	return true;
}

static int
check_snapshot(const struct cat_snapshot *s, struct snap_err *err)
{
	if (!cat_name_valid(s->guest))
		return snap_err_set(err, -EINVAL, 0, "invalid guest name '%s'",
				    s->guest != NULL ? s->guest : "(null)");
	if (!cat_name_valid(s->name))
		return snap_err_set(err, -EINVAL, 0,
				    "invalid snapshot name '%s'",
				    s->name != NULL ? s->name : "(null)");
	if (s->path != NULL && s->path[0] == '\0')
		return snap_err_set(err, -EINVAL, 0, "empty path for '%s'",
				    s->name);
	if (s->root_digest != NULL && !hex_valid(s->root_digest))
		return snap_err_set(err, -EINVAL, 0,
				    "invalid root digest '%s'", s->root_digest);
	if (s->nlabels > 0 && s->labels == NULL)
		return snap_err_set(err, -EINVAL, 0, "no labels given");
	for (size_t i = 0; i < s->nlabels; i++)
		if (!cat_label_valid(s->labels[i]))
			return snap_err_set(err, -EINVAL, 0,
					    "invalid label '%s'",
					    s->labels[i] != NULL ?
					    s->labels[i] : "(null)");
	if (s->parent_id < 0 || s->save_duration_ns < 0)
		return snap_err_set(err, -EINVAL, 0,
				    "negative parent or duration for '%s'",
				    s->name);
	return 0;
}

static const char *
or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static int
label_op(struct cat_db *db, enum cat_q q, int64_t id, const char *label,
	 struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, q, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC);
	rc = cat_step_done(db, st, err, "cannot change label");
	if (rc == -ENOENT)
		return snap_err_set(err, -ENOENT, 0, "no snapshot %lld",
				    (long long)id);
	return rc;
}

int
cat_snapshot_add(struct cat_db *db, const struct cat_snapshot *s,
		 int64_t *id, struct snap_err *err)
{
	char path[PATH_MAX];
	sqlite3_stmt *st;
	int64_t gid, sid = 0;
	bool outer;
	int rc;

	rc = check_snapshot(s, err);
	if (rc < 0)
		return rc;
	if (s->path == NULL) {
		rc = cat_layout_path(s->guest, s->name, path, sizeof(path));
		if (rc < 0)
			return snap_err_set(err, rc, 0, "bad path for '%s'",
					    s->name);
	} else {
		/* A path inside the store is kept relative to it. */
		const char *p = s->path;
		size_t sl = strlen(db->store);

		if (strncmp(p, db->store, sl) == 0 && p[sl] == '/') {
			p += sl;
			while (*p == '/')
				p++;
		}
		if (*p == '\0' ||
		    snap_strlcpy(path, p, sizeof(path)) >= sizeof(path))
			return snap_err_set(err, -EINVAL, 0, "bad path '%s'",
					    s->path);
	}
	rc = cat_op_begin(db, &outer, err);
	if (rc < 0)
		return rc;
	rc = cat_guest_id(db, s->guest, &gid, err);
	if (rc < 0)
		goto out;
	rc = cat_stmt(db, Q_SNAP_ADD, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, gid);
	sqlite3_bind_text(st, 2, s->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, path, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)s->apparent_size);
	sqlite3_bind_int64(st, 5, (int64_t)s->allocated_size);
	sqlite3_bind_int64(st, 6, (int64_t)s->ram_size);
	sqlite3_bind_int64(st, 7, (int64_t)s->present_pages);
	sqlite3_bind_text(st, 8, or_empty(s->root_digest), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, or_empty(s->qemu_version), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, or_empty(s->machine), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, s->capabilities != NULL ?
			  s->capabilities : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 12, s->created_ns != 0 ? s->created_ns :
			   (int64_t)snap_now_real_ns());
	sqlite3_bind_int64(st, 13, s->save_duration_ns);
	sqlite3_bind_int(st, 14, s->live);
	if (s->parent_id != 0)
		sqlite3_bind_int64(st, 15, s->parent_id);
	else
		sqlite3_bind_null(st, 15);
	sqlite3_bind_int(st, 16, s->pinned);
	sqlite3_bind_text(st, 17, snap_states[CAT_SNAP_OK], -1, SQLITE_STATIC);
	rc = cat_step_done(db, st, err, "cannot add snapshot");
	if (rc == -EEXIST) {
		rc = snap_err_set(err, -EEXIST, 0,
				  "snapshot '%s' of guest '%s' or path '%s' "
				  "exists", s->name, s->guest, path);
		goto out;
	}
	if (rc == -ENOENT) {
		rc = snap_err_set(err, -ENOENT, 0, "no parent snapshot %lld",
				  (long long)s->parent_id);
		goto out;
	}
	if (rc < 0)
		goto out;
	sid = sqlite3_last_insert_rowid(db->h);
	for (size_t i = 0; i < s->nlabels; i++) {
		rc = label_op(db, Q_LABEL_ADD, sid, s->labels[i], err);
		if (rc < 0)
			goto out;
	}
out:
	rc = cat_op_end(db, outer, rc, err);
	if (rc >= 0 && id != NULL)
		*id = sid;
	return rc;
}

static int
get_one(struct cat_db *db, sqlite3_stmt *st, struct cat_snapshot **out,
	struct snap_err *err, const char *guest, const char *name, int64_t id)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		rc = cat_snapshot_from_row(st, out, err);
	else if (rc != SQLITE_DONE)
		rc = cat_sqlerr(db, err, "cannot look up snapshot");
	else if (name != NULL)
		rc = snap_err_set(err, -ENOENT, 0,
				  "no snapshot '%s' of guest '%s'", name, guest);
	else
		rc = snap_err_set(err, -ENOENT, 0, "no snapshot %lld",
				  (long long)id);
	sqlite3_reset(st);
	return rc;
}

int
cat_snapshot_get(struct cat_db *db, int64_t id, struct cat_snapshot **out,
		 struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, Q_SNAP_GET_ID, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	return get_one(db, st, out, err, NULL, NULL, id);
}

int
cat_snapshot_find(struct cat_db *db, const char *guest, const char *name,
		  struct cat_snapshot **out, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if (guest == NULL || name == NULL)
		return snap_err_set(err, -EINVAL, 0, "no guest or name given");
	rc = cat_stmt(db, Q_SNAP_GET_NAME, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, guest, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	return get_one(db, st, out, err, guest, name, 0);
}

/*
 * The list statement for a combination of filters, built only from the
 * constant fragments below; every value is a bound parameter. Parameter
 * numbers are fixed so that binding does not depend on the combination.
 */
static int
list_stmt(struct cat_db *db, unsigned bits, sqlite3_stmt **out,
	  struct snap_err *err)
{
	char sql[2048];
	int rc;

	if (db->lq[bits] != NULL) {
		sqlite3_reset(db->lq[bits]);
		sqlite3_clear_bindings(db->lq[bits]);
		*out = db->lq[bits];
		return 0;
	}
	rc = snap_fmt(sql, sizeof(sql), "SELECT %s%s WHERE 1%s%s%s%s%s%s"
		      " LIMIT ?8",
		      CAT_SNAP_COLS, CAT_SNAP_FROM,
		      bits & CAT_LQ_GUEST ? " AND s.guest_id ="
		      " (SELECT id FROM guests WHERE name = ?1)" : "",
		      bits & CAT_LQ_LABEL ? " AND s.id IN"
		      " (SELECT snapshot_id FROM labels WHERE label = ?2)" : "",
		      bits & CAT_LQ_SINCE ? " AND s.created >= ?3" : "",
		      bits & CAT_LQ_UNTIL ? " AND s.created < ?4" : "",
		      bits & CAT_LQ_STATES ? " AND s.state IN (?5, ?6, ?7)" : "",
		      bits & CAT_LQ_OLDEST ?
		      " ORDER BY s.created ASC, s.id ASC" :
		      " ORDER BY s.created DESC, s.id DESC");
	if (rc < 0)
		return snap_err_set(err, rc, 0, "list query too long");
	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT,
			       &db->lq[bits], NULL) != SQLITE_OK)
		return cat_sqlerr(db, err, "cannot prepare list");
	*out = db->lq[bits];
	return 0;
}

int
cat_snapshot_list(struct cat_db *db, const struct cat_filter *f,
		  struct cat_snapshot_list **out, struct snap_err *err)
{
	static const struct cat_filter all = { 0 };
	struct cat_snapshot_list *l;
	sqlite3_stmt *st = NULL;
	unsigned bits = 0;
	size_t cap = 0;
	int rc;

	if (f == NULL)
		f = &all;
	if (f->states >= (1u << CAT_SNAP_NSTATES) ||
	    (f->order != CAT_NEWEST_FIRST && f->order != CAT_OLDEST_FIRST))
		return snap_err_set(err, -EINVAL, 0, "invalid list filter");
	bits |= f->guest != NULL ? CAT_LQ_GUEST : 0;
	bits |= f->label != NULL ? CAT_LQ_LABEL : 0;
	bits |= f->since_ns != 0 ? CAT_LQ_SINCE : 0;
	bits |= f->until_ns != 0 ? CAT_LQ_UNTIL : 0;
	bits |= f->states != 0 ? CAT_LQ_STATES : 0;
	bits |= f->order == CAT_OLDEST_FIRST ? CAT_LQ_OLDEST : 0;

	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	rc = list_stmt(db, bits, &st, err);
	if (rc < 0)
		goto out;
	if (f->guest != NULL)
		sqlite3_bind_text(st, 1, f->guest, -1, SQLITE_STATIC);
	if (f->label != NULL)
		sqlite3_bind_text(st, 2, f->label, -1, SQLITE_STATIC);
	if (f->since_ns != 0)
		sqlite3_bind_int64(st, 3, f->since_ns);
	if (f->until_ns != 0)
		sqlite3_bind_int64(st, 4, f->until_ns);
	for (int i = 0; i < CAT_SNAP_NSTATES; i++)
		if (f->states & (1u << i))
			sqlite3_bind_text(st, 5 + i, snap_states[i], -1,
					  SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, f->limit == 0 || f->limit > INT64_MAX ?
			   -1 : (int64_t)f->limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cat_snapshot **v = snap_grow(l->v, &cap, l->n,
						    sizeof(*v), 16);

		if (v == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		l->v = v;
		rc = cat_snapshot_from_row(st, &l->v[l->n], err);
		if (rc < 0)
			goto out;
		l->n++;
	}
	if (rc != SQLITE_DONE) {
		rc = cat_sqlerr(db, err, "cannot list snapshots");
		goto out;
	}
	*out = l;
	l = NULL;
	rc = 0;
out:
	sqlite3_reset(st);
	cat_snapshot_list_free(l);
	return rc;
}

int
cat_snapshot_delete(struct cat_db *db, int64_t id, unsigned flags,
		    struct snap_err *err)
{
	char path[PATH_MAX] = "";
	sqlite3_stmt *st = NULL;
	bool outer;
	int rc;

	if (flags & ~CAT_DELETE_KEEP_FILE)
		return snap_err_set(err, -EINVAL, 0, "unknown delete flags %#x",
				    flags);
	rc = cat_op_begin(db, &outer, err);
	if (rc < 0)
		return rc;
	rc = cat_stmt(db, Q_INUSE_COUNT, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		rc = cat_sqlerr(db, err, "cannot query in-use records");
		goto out;
	}
	if (sqlite3_column_int(st, 0) > 0) {
		rc = snap_err_set(err, SNAP_EINUSE, 0,
				  "snapshot %lld is mapped by %d guest(s)",
				  (long long)id, sqlite3_column_int(st, 0));
		goto out;
	}
	sqlite3_reset(st);
	rc = cat_stmt(db, Q_SNAP_PATH, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = snap_err_set(err, -ENOENT, 0, "no snapshot %lld",
				  (long long)id);
		goto out;
	}
	if (rc != SQLITE_ROW) {
		rc = cat_sqlerr(db, err, "cannot look up snapshot");
		goto out;
	}
	rc = cat_db_resolve_path(db, col_text(st, 0), path, sizeof(path));
	if (rc < 0) {
		snap_err_set(err, rc, 0, "path too long for snapshot %lld",
			     (long long)id);
		goto out;
	}
	sqlite3_reset(st);
	rc = cat_stmt(db, Q_SNAP_DEL, &st, err);
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	rc = cat_step_done(db, st, err, "cannot delete snapshot");
	if (rc < 0)
		goto out;
	/* The row goes first: a crash now leaves a row that reconcile marks
	 * missing, never a file that reconcile would adopt again. */
	if (!(flags & CAT_DELETE_KEEP_FILE) && unlink(path) < 0 &&
	    errno != ENOENT)
		rc = snap_err_set(err, -errno, 0,
				  "cannot remove snapshot file '%s': %s",
				  path, strerror(errno));
out:
	sqlite3_reset(st);
	return cat_op_end(db, outer, rc, err);
}

static int
update_one(struct cat_db *db, int64_t id, sqlite3_stmt *st,
	   struct snap_err *err)
{
	int rc;

	rc = cat_step_done(db, st, err, "cannot update snapshot");
	if (rc < 0)
		return rc;
	if (sqlite3_changes(db->h) == 0)
		return snap_err_set(err, -ENOENT, 0, "no snapshot %lld",
				    (long long)id);
	return 0;
}

int
cat_snapshot_set_state(struct cat_db *db, int64_t id,
		       enum cat_snap_state state, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	if ((unsigned)state >= CAT_SNAP_NSTATES)
		return snap_err_set(err, -EINVAL, 0,
				    "invalid snapshot state %d", (int)state);
	rc = cat_stmt(db, Q_SNAP_SET_STATE, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, snap_states[state], -1, SQLITE_STATIC);
	return update_one(db, id, st, err);
}

int
cat_snapshot_mark_verified(struct cat_db *db, int64_t id, int64_t when_ns,
			   bool good, struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, Q_SNAP_VERIFIED, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, when_ns != 0 ? when_ns :
			   (int64_t)snap_now_real_ns());
	sqlite3_bind_text(st, 3, good ? "good" : "bad", -1, SQLITE_STATIC);
	return update_one(db, id, st, err);
}

int
cat_snapshot_set_pinned(struct cat_db *db, int64_t id, bool pinned,
			struct snap_err *err)
{
	sqlite3_stmt *st;
	int rc;

	rc = cat_stmt(db, Q_SNAP_PIN, &st, err);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, pinned);
	return update_one(db, id, st, err);
}

int
cat_snapshot_label_add(struct cat_db *db, int64_t id, const char *label,
		       struct snap_err *err)
{
	if (!cat_label_valid(label))
		return snap_err_set(err, -EINVAL, 0, "invalid label '%s'",
				    label != NULL ? label : "(null)");
	return label_op(db, Q_LABEL_ADD, id, label, err);
}

int
cat_snapshot_label_remove(struct cat_db *db, int64_t id, const char *label,
			  struct snap_err *err)
{
	int rc;

	if (!cat_label_valid(label))
		return snap_err_set(err, -EINVAL, 0, "invalid label '%s'",
				    label != NULL ? label : "(null)");
	rc = label_op(db, Q_LABEL_DEL, id, label, err);
	if (rc < 0)
		return rc;
	if (sqlite3_changes(db->h) == 0)
		return snap_err_set(err, -ENOENT, 0,
				    "snapshot %lld has no label '%s'",
				    (long long)id, label);
	return 0;
}

void
cat_snapshot_free(struct cat_snapshot *s)
{
	free(s);
}

void
cat_snapshot_list_free(struct cat_snapshot_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		cat_snapshot_free(l->v[i]);
	free(l->v);
	free(l);
}

int
cat_snapshot_ret_items(struct cat_db *db, const char *guest,
		       struct cat_ret_item **out, size_t *n,
		       struct snap_err *err)
{
	struct cat_ret_item *v = NULL;
	size_t len = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = cat_stmt(db, guest != NULL ? Q_RET_GUEST : Q_RET_ALL, &st, err);
	if (rc < 0)
		goto out;
	if (guest != NULL)
		sqlite3_bind_text(st, 1, guest, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct cat_ret_item *nv = snap_grow(v, &cap, len, sizeof(*v),
						    64);

		if (nv == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		v = nv;
		v[len].id = sqlite3_column_int64(st, 0);
		v[len].created_ns = sqlite3_column_int64(st, 1);
		v[len].pinned = sqlite3_column_int(st, 2) != 0;
		len++;
	}
	if (rc != SQLITE_DONE) {
		rc = cat_sqlerr(db, err, "cannot list snapshots");
		goto out;
	}
	*out = v;
	*n = len;
	v = NULL;
	rc = 0;
out:
	sqlite3_reset(st);
	free(v);
	return rc;
}
