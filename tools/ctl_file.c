/*
 * tools/ctl_file.c: "snapctl inspect" and "snapctl verify", the offline
 * commands that read a snapshot file directly (no daemon): a description
 * of the file, and a full check of its pages and sections with a verdict.
 * Human output by default, JSON (jansson) with --json.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "format/format.h"
#include "tools/ctl.h"

#define MAX_JSON_BAD 10000

static const char *
mode_name(enum fmt_save_mode m)
{
	switch (m) {
	case FMT_SAVE_LIVE:    return "live";
	case FMT_SAVE_STOPPED: return "stopped";
	case FMT_SAVE_UNKNOWN: break;
	}
	return "unknown";
}

static const char *
err_name(int code)
{
	switch (code) {
	case SNAP_ECORRUPT:  return "corrupt";
	case SNAP_EMAGIC:    return "magic";
	case SNAP_EVERSION:  return "version";
	case SNAP_ECHECKSUM: return "checksum";
	case SNAP_ETRUNC:    return "truncated";
	case SNAP_ELIMIT:    return "limit";
	default:             return "error";
	}
}

/* Parse "FILE [--json]" in any order. */
static int
file_args(int argc, char **argv, const char **file, bool *json)
{
	*file = NULL;
	*json = ctl_json_output != 0;   /* snapctl --json COMMAND */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			*json = true;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			snap_err("%s: unknown option '%s'", argv[0], argv[i]);
			return -1;
		} else if (*file == NULL) {
			*file = argv[i];
		} else {
			snap_err("%s: too many arguments", argv[0]);
			return -1;
		}
	}
	if (*file == NULL) {
		snap_err("usage: snapctl %s FILE [--json]", argv[0]);
		return -1;
	}
	return 0;
}

static void
fmt_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;

	if (ns == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snap_strlcpy(buf, "-", len);
}

/* A JSON text field as JSON when it parses, else as a string. */
static json_t *
json_field(const char *text)
{
	json_t *v;

	if (text[0] == '\0')
		return json_null();
	v = json_loads(text, JSON_DECODE_ANY, NULL);
	return v != NULL ? v : json_string(text);
}

static json_t *
json_str_or_null(const char *s)
{
	return s[0] != '\0' ? json_string(s) : json_null();
}

static void
print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s != NULL) {
		puts(s);
		free(s);
	}
}

/* The failure to open @file, in the chosen output style. */
static int
open_failed(const char *file, bool json, int rc, const struct snap_err *e)
{
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "file", json_string(file));
		json_object_set_new(o, "verdict", json_string(
			ctl_exit_for(rc) == CTL_EXIT_CORRUPT ? "corrupt" :
			"error"));
		json_object_set_new(o, "error", json_pack("{s:s, s:s, s:I}",
			"kind", err_name(rc), "message", snap_err_text(e, rc),
			"offset", (json_int_t)e->offset));
		print_json(o);
		json_decref(o);
	}
	snap_err("%s: %s", file, snap_err_text(e, rc));
	return ctl_exit_for(rc);
}

/* ---- inspect ----------------------------------------------------------- */

static json_t *
inspect_json(const char *file, struct fmt_reader *r)
{
	const struct fmt_meta *m = fmt_reader_meta(r);
	struct fmt_stat st;
	json_t *o = json_object(), *blocks = json_array(), *ents = json_array();
	char hex[33];

	fmt_reader_stat(r, &st);
	fmt_digest_hex(&st.root, hex);
	json_object_set_new(o, "file", json_string(file));
	json_object_set_new(o, "format", json_sprintf("%u.%u",
			    st.version_major, st.version_minor));
	json_object_set_new(o, "root_digest", json_string(hex));
	json_object_set_new(o, "apparent_size",
			    json_integer((json_int_t)st.apparent_size));
	json_object_set_new(o, "allocated_size",
			    json_integer((json_int_t)st.allocated_size));
	json_object_set_new(o, "total_pages",
			    json_integer((json_int_t)st.total_pages));
	json_object_set_new(o, "present_pages",
			    json_integer((json_int_t)st.present_pages));
	json_object_set_new(o, "guest", json_str_or_null(m->guest_name));
	json_object_set_new(o, "snapshot", json_str_or_null(m->snapshot_name));
	json_object_set_new(o, "created_ns", json_integer((json_int_t)m->created_ns));
	json_object_set_new(o, "qemu_version", json_str_or_null(m->qemu_version));
	json_object_set_new(o, "machine_type", json_str_or_null(m->machine_type));
	json_object_set_new(o, "save_mode", json_string(mode_name(m->save_mode)));
	json_object_set_new(o, "save_duration_ns",
			    json_integer((json_int_t)m->save_duration_ns));
	json_object_set_new(o, "downtime_ns",
			    json_integer((json_int_t)m->downtime_ns));
	json_object_set_new(o, "parent", json_str_or_null(m->parent));
	json_object_set_new(o, "disks_policy", json_str_or_null(m->disks_policy));
	json_object_set_new(o, "capabilities", json_field(m->capabilities));
	json_object_set_new(o, "guest_spec", json_field(m->guest_spec));
	json_object_set_new(o, "qemu_argv", json_field(m->qemu_argv));
	json_object_set_new(o, "device_state", json_pack("{s:I, s:I}",
			    "size", (json_int_t)st.devstate_raw,
			    "stored", (json_int_t)st.devstate_stored));
	for (unsigned i = 0; i < st.nblocks; i++) {
		struct fmt_block_info b;
		if (fmt_reader_block(r, i, &b) < 0)
			continue;
		json_array_append_new(blocks, json_pack(
			"{s:s, s:I, s:i, s:b, s:I, s:I, s:I}", "name", b.idstr,
			"length", (json_int_t)b.length, "page_size",
			(int)b.page_size, "main", b.main, "file_offset",
			(json_int_t)b.file_offset, "pages", (json_int_t)b.npages,
			"present", (json_int_t)b.present));
	}
	json_object_set_new(o, "blocks", blocks);
	for (unsigned i = 0; i < st.nentries; i++) {
		const char *name;
		const void *d;
		size_t len;
		if (fmt_reader_entry_at(r, i, &name, &d, &len) < 0)
			continue;
		json_array_append_new(ents, json_pack("{s:s, s:I}", "name",
				      name, "size", (json_int_t)len));
	}
	json_object_set_new(o, "entries", ents);
	return o;
}

static void
inspect_human(const char *file, struct fmt_reader *r)
{
	const struct fmt_meta *m = fmt_reader_meta(r);
	struct fmt_stat st;
	char hex[33], when[64];

	fmt_reader_stat(r, &st);
	fmt_digest_hex(&st.root, hex);
	fmt_time(m->created_ns, when, sizeof(when));
	printf("file:          %s\n", file);
	printf("format:        %u.%u\n", st.version_major, st.version_minor);
	printf("root digest:   %s\n", hex);
	printf("size:          %llu bytes apparent, %llu allocated\n",
	       (unsigned long long)st.apparent_size,
	       (unsigned long long)st.allocated_size);
	printf("pages:         %llu present of %llu\n",
	       (unsigned long long)st.present_pages,
	       (unsigned long long)st.total_pages);
	printf("guest:         %s\n", m->guest_name[0] ? m->guest_name : "-");
	printf("snapshot:      %s\n", m->snapshot_name[0] ? m->snapshot_name : "-");
	printf("created:       %s\n", when);
	printf("qemu:          %s, machine %s\n",
	       m->qemu_version[0] ? m->qemu_version : "-",
	       m->machine_type[0] ? m->machine_type : "-");
	printf("save:          %s, %.3f s, downtime %.3f ms\n",
	       mode_name(m->save_mode), (double)m->save_duration_ns / 1e9,
	       (double)m->downtime_ns / 1e6);
	printf("parent:        %s\n", m->parent[0] ? m->parent : "-");
	printf("disks:         %s\n", m->disks_policy[0] ? m->disks_policy : "-");
	printf("capabilities:  %s\n", m->capabilities[0] ? m->capabilities : "-");
	printf("guest spec:    %zu bytes of JSON (see --json)\n",
	       strlen(m->guest_spec));
	printf("qemu argv:     %zu bytes of JSON (see --json)\n",
	       strlen(m->qemu_argv));
	printf("device state:  %llu bytes (%llu stored, zstd)\n",
	       (unsigned long long)st.devstate_raw,
	       (unsigned long long)st.devstate_stored);
	printf("blocks:\n  %-24s %14s %8s %14s %10s %10s\n", "NAME", "LENGTH",
	       "PAGE", "OFFSET", "PAGES", "PRESENT");
	for (unsigned i = 0; i < st.nblocks; i++) {
		struct fmt_block_info b;
		if (fmt_reader_block(r, i, &b) < 0)
			continue;
		printf("  %-24s %14llu %8u %14llu %10llu %10llu%s\n", b.idstr,
		       (unsigned long long)b.length, b.page_size,
		       (unsigned long long)b.file_offset,
		       (unsigned long long)b.npages,
		       (unsigned long long)b.present, b.main ? "  main" : "");
	}
	printf("entries:\n");
	for (unsigned i = 0; i < st.nentries; i++) {
		const char *name;
		const void *d;
		size_t len;
		if (fmt_reader_entry_at(r, i, &name, &d, &len) == 0)
			printf("  %-24s %zu bytes\n", name, len);
	}
}

int
ctl_inspect(int argc, char **argv)
{
	struct fmt_reader *r = NULL;
	struct snap_err e;
	const char *file;
	bool json;
	int rc;

	if (file_args(argc, argv, &file, &json) < 0)
		return CTL_EXIT_USAGE;
	snap_err_clear(&e);
	rc = fmt_reader_open(&r, file, &e);
	if (rc < 0)
		return open_failed(file, json, rc, &e);
	if (json) {
		json_t *o = inspect_json(file, r);
		print_json(o);
		json_decref(o);
	} else {
		inspect_human(file, r);
	}
	fmt_reader_free(r);
	return CTL_EXIT_OK;
}

/* ---- verify ------------------------------------------------------------ */

struct vctx {
	bool json;
	bool tty;
	bool progress_shown;
	json_t *bad;
	uint64_t nbad;
	uint64_t t0;
};

static void
on_bad(void *ctx, const char *idstr, uint64_t page, uint64_t off)
{
	struct vctx *v = ctx;

	v->nbad++;
	if (v->json) {
		if (json_array_size(v->bad) < MAX_JSON_BAD)
			json_array_append_new(v->bad, json_pack("{s:s, s:I, s:I}",
				"block", idstr, "page", (json_int_t)page,
				"offset", (json_int_t)off));
		return;
	}
	if (v->progress_shown) {
		fputs("\r\033[K", stderr);
		v->progress_shown = false;
	}
	printf("bad page: block '%s' page %llu (file offset %llu)\n", idstr,
	       (unsigned long long)page, (unsigned long long)off);
}

static void
on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct vctx *v = ctx;
	double secs = (double)(snap_now_mono_ns() - v->t0) / 1e9;

	if (!v->tty || total < ((uint64_t)256 << 20))
		return;
	fprintf(stderr, "\r\033[Kverify: %3.0f%%  %llu of %llu MiB  %.0f MiB/s",
		total > 0 ? 100.0 * (double)done / (double)total : 100.0,
		(unsigned long long)(done >> 20),
		(unsigned long long)(total >> 20),
		secs > 0 ? (double)done / 1048576.0 / secs : 0.0);
	v->progress_shown = true;
}

int
ctl_verify(int argc, char **argv)
{
	struct fmt_reader *r = NULL;
	struct fmt_verify_opts vo = { 0 };
	struct fmt_verify_result res;
	struct snap_err e;
	struct vctx v = { 0 };
	const char *file;
	double secs;
	bool json;
	int rc;

	if (file_args(argc, argv, &file, &json) < 0)
		return CTL_EXIT_USAGE;
	snap_err_clear(&e);
	rc = fmt_reader_open(&r, file, &e);
	if (rc < 0)
		return open_failed(file, json, rc, &e);
	v.json = json;
	v.tty = isatty(STDERR_FILENO);
	v.bad = json_array();
	v.t0 = snap_now_mono_ns();
	vo.bad_page = on_bad;
	vo.progress = on_progress;
	vo.ctx = &v;
	rc = fmt_reader_verify(r, &vo, &res, &e);
	secs = (double)(snap_now_mono_ns() - v.t0) / 1e9;
	if (v.progress_shown)
		fputs("\r\033[K", stderr);
	if (rc < 0 && rc != SNAP_ECHECKSUM) {
		fmt_reader_free(r);
		json_decref(v.bad);
		return open_failed(file, json, rc, &e);
	}
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "file", json_string(file));
		json_object_set_new(o, "verdict", json_string(rc == 0 ? "good" :
							      "corrupt"));
		json_object_set_new(o, "pages_checked",
				    json_integer((json_int_t)res.pages_checked));
		json_object_set_new(o, "bad_page_count",
				    json_integer((json_int_t)res.bad_pages));
		json_object_set_new(o, "bad_pages", v.bad);
		json_object_set_new(o, "bad_pages_truncated",
				    json_boolean(res.bad_pages > MAX_JSON_BAD));
		json_object_set_new(o, "bad_sections",
				    json_integer((json_int_t)res.bad_sections));
		json_object_set_new(o, "bytes_read",
				    json_integer((json_int_t)res.bytes_read));
		json_object_set_new(o, "direct_io", json_boolean(res.direct));
		json_object_set_new(o, "seconds", json_real(secs));
		if (rc < 0)
			json_object_set_new(o, "error", json_string(e.msg));
		print_json(o);
		json_decref(o);
	} else {
		json_decref(v.bad);
		if (res.bad_sections > 0)
			printf("bad section: %s\n", e.msg);
		printf("%s: %s: %llu pages checked, %llu bad pages, %llu bad "
		       "sections, %.1f MiB read in %.2f s (%s I/O)\n", file,
		       rc == 0 ? "good" : "CORRUPT",
		       (unsigned long long)res.pages_checked,
		       (unsigned long long)res.bad_pages,
		       (unsigned long long)res.bad_sections,
		       (double)res.bytes_read / 1048576.0, secs,
		       res.direct ? "direct" : "buffered");
	}
	fmt_reader_free(r);
	return rc == 0 ? CTL_EXIT_OK : CTL_EXIT_CORRUPT;
}
