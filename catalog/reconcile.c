/*
 * catalog/reconcile.c: keeps the catalog true to the store directory.
 * Reconcile walks STORE/snapshots/GUEST/ and the snapshot rows together:
 * files without a row are adopted from their own metadata (through the
 * format reader), rows without a file are marked missing, files whose size
 * changed are marked corrupt, writers' leftover temporary files are
 * removed. Rebuild builds a fresh database from the files alone and swaps
 * it in.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog_int.h"
#include "common/util.h"
#include "format/format.h"

static const char *const fix_names[CAT_FIX_NKINDS] = {
	[CAT_FIX_ADOPTED]         = "adopted",
	[CAT_FIX_ADOPTED_CORRUPT] = "adopted-corrupt",
	[CAT_FIX_MISSING]         = "missing",
	[CAT_FIX_RETURNED]        = "returned",
	[CAT_FIX_SIZE_CHANGED]    = "size-changed",
	[CAT_FIX_TEMP_REMOVED]    = "temp-removed",
	[CAT_FIX_STRAY]           = "stray",
	[CAT_FIX_FAILED]          = "failed",
};

const char *
cat_fix_kind_name(enum cat_fix_kind k)
{
	if ((unsigned)k >= CAT_FIX_NKINDS)
		return "unknown";
	return fix_names[k];
}

struct row {
	int64_t id;
	char *path;                 /* as stored */
	char *key;                  /* layout path from guest and name */
	int state;
	uint64_t size;
	bool seen;
};

struct rec {
	struct cat_db *db;
	const struct cat_reconcile_opts *opts;
	struct cat_reconcile_report rep;
	struct row *rows;
	size_t nrows;
	int64_t now_ns;
	int fixes;
	/* Adopted snapshots whose parent (by name) is resolved at the end. */
	int64_t *parent_ids;
	char **parent_names;
	size_t nparents;
};

static void
report(struct rec *r, enum cat_fix_kind kind, const char *path, int64_t id,
       int error, const char *detail)
{
	struct cat_fix f = {
		.kind = kind, .path = path, .id = id, .error = error,
		.detail = detail != NULL ? detail : "",
	};

	r->rep.count[kind]++;
	if (kind != CAT_FIX_STRAY && kind != CAT_FIX_FAILED)
		r->fixes++;
	if (r->opts->fix != NULL)
		r->opts->fix(r->opts->ctx, &f);
}

static int
cmp_row_key(const void *a, const void *b)
{
	return strcmp(((const struct row *)a)->key,
		      ((const struct row *)b)->key);
}

static int
cmp_key_row(const void *key, const void *elem)
{
	return strcmp(key, ((const struct row *)elem)->key);
}

static struct row *
find_row(struct rec *r, const char *path)
{
	if (r->nrows == 0)
		return NULL;
	return bsearch(path, r->rows, r->nrows, sizeof(*r->rows),
		       cmp_key_row);
}

static int
load_rows(struct rec *r, struct snap_err *err)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int rc;

	rc = cat_stmt(r->db, Q_REC_ROWS, &st, err);
	if (rc < 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *p = (const char *)sqlite3_column_text(st, 1);
		char key[PATH_MAX];
		struct row *row, *nv;

		nv = snap_grow(r->rows, &cap, r->nrows, sizeof(*nv), 256);
		if (nv == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		r->rows = nv;
		p = p != NULL ? p : "";
		/*
		 * A file is matched to the row of its guest and name,
		 * wherever the row says it lives (an absolute path into the
		 * store, say): the catalog holds one snapshot per name.
		 */
		if (cat_layout_path((const char *)sqlite3_column_text(st, 4),
				    (const char *)sqlite3_column_text(st, 5),
				    key, sizeof(key)) < 0)
			snap_strlcpy(key, p, sizeof(key));
		row = &r->rows[r->nrows];
		row->path = strdup(p);
		row->key = strdup(key);
		if (row->path == NULL || row->key == NULL) {
			free(row->path);
			free(row->key);
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		row->id = sqlite3_column_int64(st, 0);
		row->state = cat_snap_state_parse(
			(const char *)sqlite3_column_text(st, 2));
		row->size = (uint64_t)sqlite3_column_int64(st, 3);
		row->seen = false;
		r->nrows++;
	}
	if (rc != SQLITE_DONE) {
		rc = cat_sqlerr(r->db, err, "cannot read snapshot rows");
		goto out;
	}
	if (r->nrows > 0)
		qsort(r->rows, r->nrows, sizeof(*r->rows), cmp_row_key);
	r->rep.rows = r->nrows;
	rc = 0;
out:
	sqlite3_reset(st);
	return rc;
}

static bool
is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name, ".tmp-") != NULL;
}

static void
remove_temp(struct rec *r, const char *full, const char *rel,
	    const struct stat *st)
{
	int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 +
			st->st_mtim.tv_nsec;

	if (r->opts->temp_min_age_ns > 0 &&
	    r->now_ns - mtime < r->opts->temp_min_age_ns)
		return;
	if (!r->opts->dry_run && unlink(full) < 0 && errno != ENOENT) {
		char msg[256];
		int e = errno;

		snprintf(msg, sizeof(msg), "cannot remove '%s': %s", rel,
			 strerror(e));
		report(r, CAT_FIX_FAILED, rel, 0, -e, msg);
		return;
	}
	report(r, CAT_FIX_TEMP_REMOVED, rel, 0, 0, NULL);
}

static int
set_state(struct rec *r, int64_t id, enum cat_snap_state s,
	  struct snap_err *err)
{
	if (r->opts->dry_run)
		return 0;
	return cat_snapshot_set_state(r->db, id, s, err);
}

/* Compare an existing row with the file it names. */
static int
check_row(struct rec *r, struct row *row, const struct stat *st,
	  struct snap_err *err)
{
	int rc = 0;

	row->seen = true;
	if (row->state == CAT_SNAP_MISSING) {
		rc = set_state(r, row->id, CAT_SNAP_OK, err);
		if (rc < 0)
			return rc;
		row->state = CAT_SNAP_OK;
		report(r, CAT_FIX_RETURNED, row->path, row->id, 0, NULL);
	}
	if ((uint64_t)st->st_size != row->size &&
	    row->state != CAT_SNAP_CORRUPT) {
		char msg[128];

		snprintf(msg, sizeof(msg), "size %llu, catalog says %llu",
			 (unsigned long long)st->st_size,
			 (unsigned long long)row->size);
		rc = set_state(r, row->id, CAT_SNAP_CORRUPT, err);
		if (rc < 0)
			return rc;
		row->state = CAT_SNAP_CORRUPT;
		report(r, CAT_FIX_SIZE_CHANGED, row->path, row->id, 0, msg);
	}
	return 0;
}

static int
remember_parent(struct rec *r, int64_t id, const char *parent,
		struct snap_err *err)
{
	int64_t *ids;
	char **names;

	ids = realloc(r->parent_ids, (r->nparents + 1) * sizeof(*ids));
	if (ids == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	r->parent_ids = ids;
	names = realloc(r->parent_names, (r->nparents + 1) * sizeof(*names));
	if (names == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	r->parent_names = names;
	names[r->nparents] = strdup(parent);
	if (names[r->nparents] == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	ids[r->nparents++] = id;
	return 0;
}

/*
 * Add a row for the file @full (@rel in the store) of guest @guest named
 * @name, from its metadata; a file the reader rejects becomes a corrupt
 * row with what stat() tells.
 */
static int
adopt(struct rec *r, const char *full, const char *rel, const char *guest,
      const char *name, const struct stat *st, struct snap_err *err)
{
	struct snap_err rerr;
	struct fmt_reader *fr = NULL;
	const struct fmt_meta *m = NULL;
	struct cat_snapshot s = { .guest = guest, .name = name };
	struct fmt_stat fs;
	char digest[33];
	int64_t gid, id = 0;
	int rrc, rc;

	snap_err_clear(&rerr);
	rrc = fmt_reader_open(&fr, full, &rerr);
	if (rrc == 0) {
		m = fmt_reader_meta(fr);
		fmt_reader_stat(fr, &fs);
		fmt_digest_hex(&fs.root, digest);
		s.apparent_size = fs.apparent_size;
		s.allocated_size = fs.allocated_size;
		s.present_pages = fs.present_pages;
		for (unsigned i = 0; i < fs.nblocks; i++) {
			struct fmt_block_info bi;

			if (fmt_reader_block(fr, i, &bi) == 0)
				s.ram_size += bi.length;
		}
		s.root_digest = digest;
		s.qemu_version = m->qemu_version;
		s.machine = m->machine_type;
		s.capabilities = m->capabilities[0] != '\0' ?
				 m->capabilities : NULL;
		s.created_ns = (int64_t)m->created_ns;
		s.save_duration_ns = (int64_t)m->save_duration_ns;
		s.live = m->save_mode == FMT_SAVE_LIVE;
	} else {
		s.apparent_size = (uint64_t)st->st_size;
		s.allocated_size = (uint64_t)st->st_blocks * 512;
	}
	if (s.created_ns <= 0)
		s.created_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
			       st->st_mtim.tv_nsec;
	if (s.save_duration_ns < 0)
		s.save_duration_ns = 0;

	if (!r->opts->dry_run) {
		rc = cat_guest_id(r->db, guest, &gid, err);
		if (rc == -ENOENT)
			rc = cat_guest_add(r->db, guest,
					   m != NULL && m->guest_spec[0] != '\0' ?
					   m->guest_spec : NULL, &gid, err);
		if (rc < 0)
			goto out;
		rc = cat_snapshot_add(r->db, &s, &id, err);
		if (rc < 0)
			goto out;
		if (rrc < 0) {
			rc = cat_snapshot_set_state(r->db, id,
						    CAT_SNAP_CORRUPT, err);
			if (rc < 0)
				goto out;
		}
		if (m != NULL && m->parent[0] != '\0') {
			rc = remember_parent(r, id, m->parent, err);
			if (rc < 0)
				goto out;
		}
	}
	if (rrc == 0)
		report(r, CAT_FIX_ADOPTED, rel, id, 0, NULL);
	else
		report(r, CAT_FIX_ADOPTED_CORRUPT, rel, id, rrc,
		       snap_err_text(&rerr, rrc));
	rc = 0;
out:
	fmt_reader_free(fr);
	return rc;
}

/* One entry of STORE/snapshots/@guest/. */
static int
guest_entry(struct rec *r, const char *guest, const char *name,
	    struct snap_err *err)
{
	char full[PATH_MAX], rel[PATH_MAX], sname[CAT_NAME_MAX + 1];
	size_t len = strlen(name), slen = strlen(CAT_SNAP_SUFFIX);
	struct stat st;
	struct row *row;

	if (snap_fmt(rel, sizeof(rel), "%s/%s/%s", CAT_SNAP_DIR, guest,
		     name) < 0 ||
	    snap_fmt(full, sizeof(full), "%s/%s", r->db->store, rel) < 0) {
		report(r, CAT_FIX_STRAY, name, 0, -ENAMETOOLONG, NULL);
		return 0;
	}
	if (lstat(full, &st) < 0) {
		/* Gone since readdir (a concurrent delete): nothing to do. */
		if (errno == ENOENT)
			return 0;
		return snap_err_set(err, -errno, 0, "cannot stat '%s': %s",
				    full, strerror(errno));
	}
	if (!S_ISREG(st.st_mode)) {
		report(r, CAT_FIX_STRAY, rel, 0, 0, NULL);
		return 0;
	}
	if (is_temp_name(name)) {
		remove_temp(r, full, rel, &st);
		return 0;
	}
	if (len <= slen || len - slen > CAT_NAME_MAX ||
	    strcmp(name + len - slen, CAT_SNAP_SUFFIX) != 0) {
		report(r, CAT_FIX_STRAY, rel, 0, 0, NULL);
		return 0;
	}
	memcpy(sname, name, len - slen);
	sname[len - slen] = '\0';
	if (!cat_name_valid(sname)) {
		report(r, CAT_FIX_STRAY, rel, 0, 0, NULL);
		return 0;
	}
	r->rep.files++;
	row = find_row(r, rel);
	if (row != NULL)
		return check_row(r, row, &st, err);
	return adopt(r, full, rel, guest, sname, &st, err);
}

static int
scan_dir(struct rec *r, const char *guest, struct snap_err *err)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	if (guest != NULL)
		rc = snap_fmt(path, sizeof(path), "%s/%s/%s", r->db->store,
			      CAT_SNAP_DIR, guest);
	else
		rc = snap_fmt(path, sizeof(path), "%s/%s", r->db->store,
			      CAT_SNAP_DIR);
	if (rc < 0)
		return snap_err_set(err, rc, 0, "store path too long");
	d = opendir(path);
	if (d == NULL) {
		/* A store without snapshots yet. */
		if (errno == ENOENT && guest == NULL)
			return 0;
		return snap_err_set(err, -errno, 0, "cannot open '%s': %s",
				    path, strerror(errno));
	}
	rc = 0;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		char rel[PATH_MAX], full[PATH_MAX];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (guest != NULL) {
			rc = guest_entry(r, guest, de->d_name, err);
			continue;
		}
		if (snap_fmt(rel, sizeof(rel), "%s/%s", CAT_SNAP_DIR,
			     de->d_name) < 0 ||
		    snap_fmt(full, sizeof(full), "%s/%s", path,
			     de->d_name) < 0 ||
		    lstat(full, &st) < 0) {
			report(r, CAT_FIX_STRAY, de->d_name, 0, 0, NULL);
			continue;
		}
		if (S_ISDIR(st.st_mode) && cat_name_valid(de->d_name))
			rc = scan_dir(r, de->d_name, err);
		else if (S_ISREG(st.st_mode) && is_temp_name(de->d_name))
			remove_temp(r, full, rel, &st);
		else
			report(r, CAT_FIX_STRAY, rel, 0, 0, NULL);
	}
	if (rc == 0 && errno != 0)
		rc = snap_err_set(err, -errno, 0, "cannot read '%s': %s", path,
				  strerror(errno));
	closedir(d);
	return rc;
}

/* Rows whose file the scan did not meet (gone, or outside the layout). */
static int
check_unseen(struct rec *r, struct snap_err *err)
{
	for (size_t i = 0; i < r->nrows; i++) {
		struct row *row = &r->rows[i];
		char full[PATH_MAX];
		struct stat st;
		int rc;

		if (row->seen)
			continue;
		rc = cat_db_resolve_path(r->db, row->path, full, sizeof(full));
		if (rc == 0 && stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
			rc = check_row(r, row, &st, err);
			if (rc < 0)
				return rc;
			continue;
		}
		if (row->state == CAT_SNAP_MISSING)
			continue;
		rc = set_state(r, row->id, CAT_SNAP_MISSING, err);
		if (rc < 0)
			return rc;
		report(r, CAT_FIX_MISSING, row->path, row->id, 0, NULL);
	}
	return 0;
}

static int
link_parents(struct rec *r, struct snap_err *err)
{
	for (size_t i = 0; i < r->nparents; i++) {
		sqlite3_stmt *st;
		int rc;

		rc = cat_stmt(r->db, Q_SNAP_SET_PARENT_BY_NAME, &st, err);
		if (rc < 0)
			return rc;
		sqlite3_bind_int64(st, 1, r->parent_ids[i]);
		sqlite3_bind_text(st, 2, r->parent_names[i], -1,
				  SQLITE_STATIC);
		rc = cat_step_done(r->db, st, err, "cannot link parent");
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void
rec_free(struct rec *r)
{
	for (size_t i = 0; i < r->nrows; i++) {
		free(r->rows[i].path);
		free(r->rows[i].key);
	}
	free(r->rows);
	for (size_t i = 0; i < r->nparents; i++)
		free(r->parent_names[i]);
	free(r->parent_names);
	free(r->parent_ids);
}

int
cat_reconcile(struct cat_db *db, const struct cat_reconcile_opts *opts,
	      struct cat_reconcile_report *rep, struct snap_err *err)
{
	static const struct cat_reconcile_opts defaults = { 0 };
	struct rec r = { .db = db, .opts = opts != NULL ? opts : &defaults };
	bool outer;
	int rc;

	if (r.opts->temp_min_age_ns < 0)
		return snap_err_set(err, -EINVAL, 0,
				    "negative temporary file age");
	if (db->in_tx)
		return snap_err_set(err, SNAP_EMISUSE, 0,
				    "reconcile inside a transaction");
	r.now_ns = (int64_t)snap_now_real_ns();
	rc = cat_op_begin(db, &outer, err);
	if (rc < 0)
		return rc;
	rc = load_rows(&r, err);
	if (rc < 0)
		goto out;
	rc = scan_dir(&r, NULL, err);
	if (rc < 0)
		goto out;
	rc = check_unseen(&r, err);
	if (rc < 0)
		goto out;
	rc = link_parents(&r, err);
	if (rc < 0)
		goto out;
	rc = r.fixes;
out:
	rc = cat_op_end(db, outer, rc, err);
	if (rc >= 0 && rep != NULL)
		*rep = r.rep;
	rec_free(&r);
	return rc;
}

static void
unlink_db_files(const char *base)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	char p[PATH_MAX];

	for (size_t i = 0; i < SNAP_ARRAY_SIZE(sfx); i++)
		if (snap_fmt(p, sizeof(p), "%s%s", base, sfx[i]) == 0)
			unlink(p);
}

/* Remove what an earlier, interrupted rebuild left in the store. */
static void
unlink_old_rebuilds(const char *store)
{
	char prefix[64], p[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (snap_fmt(prefix, sizeof(prefix), ".%s.tmp-", CAT_DB_FILE) < 0)
		return;
	d = opendir(store);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
		    snap_fmt(p, sizeof(p), "%s/%s", store, de->d_name) == 0)
			unlink(p);
	closedir(d);
}

int
cat_rebuild(const char *store, const struct cat_reconcile_opts *opts,
	    struct cat_reconcile_report *rep, struct snap_err *err)
{
	char tmp[PATH_MAX], final[PATH_MAX], old[PATH_MAX];
	struct cat_reconcile_report r;
	struct cat_db *db = NULL;
	struct stat st;
	int rc, fixes;

	if (opts != NULL && opts->dry_run)
		return snap_err_set(err, -EINVAL, 0,
				    "rebuild has no dry run; use reconcile");
	if (stat(store, &st) < 0)
		return snap_err_set(err, -errno, 0, "cannot open store '%s': %s",
				    store, strerror(errno));
	if (snap_fmt(tmp, sizeof(tmp), "%s/.%s.tmp-%ld", store, CAT_DB_FILE,
		     (long)getpid()) < 0 ||
	    snap_fmt(final, sizeof(final), "%s/%s", store, CAT_DB_FILE) < 0)
		return snap_err_set(err, -ENAMETOOLONG, 0,
				    "store path too long '%s'", store);
	unlink_old_rebuilds(store);
	rc = cat_db_open_file(tmp, store, true, &db, err);
	if (rc < 0)
		goto out;
	rc = cat_reconcile(db, opts, &r, err);
	if (rc < 0)
		goto out;
	fixes = rc;
	/* A self-contained file: no WAL to carry along the rename. */
	if (sqlite3_exec(db->h, "PRAGMA journal_mode = DELETE", NULL, NULL,
			 NULL) != SQLITE_OK) {
		rc = cat_sqlerr(db, err, "cannot leave WAL mode");
		goto out;
	}
	cat_db_close(db);
	db = NULL;
	/*
	 * The old database's WAL must not outlive it: replayed onto the new
	 * file it would corrupt it. Remove it first, then rename.
	 */
	for (size_t i = 0; i < 2; i++) {
		if (snap_fmt(old, sizeof(old), "%s%s", final,
			     i == 0 ? "-wal" : "-shm") == 0 &&
		    unlink(old) < 0 && errno != ENOENT) {
			rc = snap_err_set(err, -errno, 0,
					  "cannot remove '%s': %s", old,
					  strerror(errno));
			goto out;
		}
	}
	if (rename(tmp, final) < 0) {
		rc = snap_err_set(err, -errno, 0, "cannot rename '%s': %s",
				  tmp, strerror(errno));
		goto out;
	}
	rc = snap_fsync_parent(final);
	if (rc < 0) {
		snap_err_set(err, rc, 0, "cannot sync store '%s'", store);
		goto out;
	}
	if (rep != NULL)
		*rep = r;
	rc = fixes;
out:
	cat_db_close(db);
	if (rc < 0)
		unlink_db_files(tmp);
	return rc;
}
