/*
 * snapd/qmpwire.c: splitting a QMP byte stream into messages, and the
 * request checks QEMU applies before it looks a command up.
 *
 * The framer is a byte-at-a-time state machine that knows just enough JSON
 * to find where a top-level value ends (brackets, strings, escapes, bare
 * scalars); jansson then parses each framed message on its own. Keeping the
 * two apart lets the framer enforce the size and depth limits before any
 * parsing happens and resynchronise after garbage, which a streaming parser
 * fed straight from the socket cannot do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapd/qmpwire_int.h"

enum {
	F_IDLE,    /* between messages */
	F_VALUE,   /* inside an object or array, outside strings */
	F_STR,     /* inside a string */
	F_ESC,     /* after a backslash inside a string */
	F_SCALAR,  /* a bare top-level number or keyword */
};

void
qmp_framer_init(struct qmp_framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
	f->state = F_IDLE;
}

void
qmp_framer_release(struct qmp_framer *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = f->cap = 0;
}

bool
qmp_framer_idle(const struct qmp_framer *f)
{
	return f->state == F_IDLE;
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Keep @c; false when the message would pass the limit (or no memory). */
static bool
keep(struct qmp_framer *f, char c)
{
	if (f->skip)
		return true;
	if (f->len >= f->max)
		return false;
	if (f->len == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 256;
		char *b;

		if (cap > f->max)
			cap = f->max;
		b = realloc(f->buf, cap);
		if (!b)
			return false;
		f->buf = b;
		f->cap = cap;
	}
	f->buf[f->len++] = c;
	return true;
}

/*
 * The byte @c closes the current message. Returns the event to report, or
 * QMP_FRAME_NONE when the message was being skipped (already reported).
 */
static enum qmp_frame
close_msg(struct qmp_framer *f, char c)
{
	bool kept = keep(f, c);
	bool skipped = f->skip;

	f->state = F_IDLE;
	f->depth = 0;
	f->skip = false;
	if (skipped) {
		f->len = 0;
		return QMP_FRAME_NONE;
	}
	if (!kept) {
		f->len = 0;
		return QMP_FRAME_TOO_BIG;
	}
	f->done = true;
	return QMP_FRAME_MSG;
}

size_t
qmp_framer_scan(struct qmp_framer *f, const char *p, size_t n,
		enum qmp_frame *ev)
{
	enum qmp_frame e;
	size_t i;

	if (f->done) {
		f->done = false;
		f->len = 0;
	}
	for (i = 0; i < n; i++) {
		char c = p[i];

		switch (f->state) {
		case F_IDLE:
			if (is_ws(c))
				continue;
			f->len = 0;
			if (c == '}' || c == ']') {
				/* A stray closer is a message of its own: the
				 * parser reports it. */
				*ev = close_msg(f, c);
				return i + 1;
			}
			if (c == '{' || c == '[') {
				f->state = F_VALUE;
				f->depth = 1;
			} else if (c == '"') {
				f->state = F_STR;
			} else {
				f->state = F_SCALAR;
			}
			break;
		case F_SCALAR:
			if (is_ws(c) || memchr("{}[]\":,", c, 7)) {
				/* @c belongs to what follows: not consumed. */
				f->state = F_IDLE;
				if (f->skip) {
					f->skip = false;
					f->len = 0;
					i--;
					continue;
				}
				f->done = true;
				*ev = QMP_FRAME_MSG;
				return i;
			}
			break;
		case F_VALUE:
			if (c == '"') {
				f->state = F_STR;
			} else if (c == '{' || c == '[') {
				if (++f->depth > QMP_MAX_DEPTH && !f->skip) {
					f->skip = true;
					f->len = 0;
					*ev = QMP_FRAME_TOO_DEEP;
					return i + 1;
				}
			} else if ((c == '}' || c == ']') && --f->depth == 0) {
				e = close_msg(f, c);
				if (e == QMP_FRAME_NONE)
					continue;
				*ev = e;
				return i + 1;
			}
			break;
		case F_STR:
		case F_ESC:
			if ((unsigned char)c < 0x20) {
				bool skipped = f->skip;

				f->state = F_IDLE;
				f->depth = 0;
				f->skip = false;
				f->len = 0;
				if (skipped)
					continue;
				*ev = QMP_FRAME_BAD_CHAR;
				return i + 1;
			}
			if (f->state == F_ESC) {
				f->state = F_STR;
			} else if (c == '\\') {
				f->state = F_ESC;
			} else if (c == '"' && f->depth == 0) {
				e = close_msg(f, c);
				if (e == QMP_FRAME_NONE)
					continue;
				*ev = e;
				return i + 1;
			} else if (c == '"') {
				f->state = F_VALUE;
			}
			break;
		}
		if (!keep(f, c)) {
			/* Report once, then follow the structure to its end. */
			f->skip = true;
			f->len = 0;
			*ev = QMP_FRAME_TOO_BIG;
			return i + 1;
		}
	}
	*ev = QMP_FRAME_NONE;
	return n;
}

const char *
qmp_frame_desc(enum qmp_frame ev, size_t max)
{
	static _Thread_local char buf[96];

	switch (ev) {
	case QMP_FRAME_TOO_BIG:
		snprintf(buf, sizeof(buf), "QMP input exceeds %zu bytes", max);
		return buf;
	case QMP_FRAME_TOO_DEEP:
		return "JSON nesting depth limit exceeded";
	case QMP_FRAME_BAD_CHAR:
		return "JSON parse error, control character in string";
	case QMP_FRAME_NONE:
	case QMP_FRAME_MSG:
		break;
	}
	return "JSON parse error";
}

/* --- request checks ---------------------------------------------------- */

static void
parse_error_desc(const json_error_t *je, char *desc, size_t desclen)
{
	/* QEMU's own words where they name the same fault. */
	switch (json_error_code(je)) {
	case json_error_duplicate_key:
		snprintf(desc, desclen, "JSON parse error, duplicate key");
		return;
	case json_error_premature_end_of_input:
	case json_error_end_of_input_expected:
	case json_error_invalid_syntax:
	case json_error_invalid_utf8:
	case json_error_null_character:
	case json_error_null_value:
	case json_error_null_byte_in_key:
	case json_error_numeric_overflow:
	case json_error_unknown:
	case json_error_out_of_memory:
	case json_error_stack_overflow:
	case json_error_cannot_open_file:
	case json_error_invalid_argument:
	case json_error_invalid_format:
	case json_error_wrong_type:
	case json_error_item_not_found:
	case json_error_index_out_of_range:
	default:
		break;
	}
	snprintf(desc, desclen, "JSON parse error, %s", je->text);
}

int
qmp_request_parse(const char *buf, size_t len, struct qmp_request *req,
		  char *desc, size_t desclen)
{
	json_error_t je;
	const char *key;
	json_t *v, *exec = NULL;

	memset(req, 0, sizeof(*req));
	req->root = json_loadb(buf, len,
			       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (!req->root) {
		parse_error_desc(&je, desc, desclen);
		return -1;
	}
	if (!json_is_object(req->root)) {
		snprintf(desc, desclen, "QMP input must be a JSON object");
		return -1;
	}
	req->id = json_object_get(req->root, "id");
	json_object_foreach(req->root, key, v) {
		if (strcmp(key, "execute") == 0) {
			if (!json_is_string(v)) {
				snprintf(desc, desclen, "QMP input member "
					 "'execute' must be a string");
				return -1;
			}
			exec = v;
		} else if (strcmp(key, "arguments") == 0) {
			if (!json_is_object(v)) {
				snprintf(desc, desclen, "QMP input member "
					 "'arguments' must be an object");
				return -1;
			}
			req->args = v;
		} else if (strcmp(key, "id") != 0) {
			/* exec-oob lands here too: no OOB capability. */
			snprintf(desc, desclen,
				 "QMP input member '%s' is unexpected", key);
			return -1;
		}
	}
	if (!exec) {
		snprintf(desc, desclen, "QMP input lacks member 'execute'");
		return -1;
	}
	req->execute = json_string_value(exec);
	return 0;
}

void
qmp_request_clear(struct qmp_request *req)
{
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}

char *
qmp_dump(const json_t *msg, size_t *len)
{
	char *s = json_dumps(msg, 0);
	size_t n;
	char *r;

	if (!s)
		return NULL;
	n = strlen(s);
	r = realloc(s, n + 3);
	if (!r) {
		free(s);
		return NULL;
	}
	r[n] = '\r';
	r[n + 1] = '\n';
	r[n + 2] = '\0';
	*len = n + 2;
	return r;
}

json_t *
qmp_error_msg(json_t *id, const char *cls, const char *desc)
{
	json_t *msg;

	msg = json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
	if (!msg)
		return NULL;
	if (id && json_object_set(msg, "id", id) < 0) {
		json_decref(msg);
		return NULL;
	}
	return msg;
}
