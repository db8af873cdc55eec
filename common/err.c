/*
 * common/err.c: text for error codes and the optional error detail.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

static const char *const project_msgs[] = {
	[1]  = "corrupt data",
	[2]  = "bad magic number",
	[3]  = "unsupported format version",
	[4]  = "checksum mismatch",
	[5]  = "data truncated",
	[6]  = "limit exceeded",
	[7]  = "database error",
	[8]  = "invalid use of interface",
	[9]  = "protocol error",
	[10] = "QEMU reported an error",
	[11] = "unsupported migration stream",
	[12] = "migration capability error",
	[13] = "catalog schema is newer than this program",
	[14] = "object in use",
	[15] = "invalid configuration",
};

const char *
snap_strerror(int code)
{
	if (code >= 0)
		return "success";
	if (code <= -SNAP_ERR_BASE) {
		long idx = -(long)code - SNAP_ERR_BASE;
		if (idx > 0 && idx < (long)(sizeof(project_msgs) /
					    sizeof(project_msgs[0])) &&
		    project_msgs[idx] != NULL)
			return project_msgs[idx];
		return "unknown error";
	}
	/* strerror() is MT-unsafe only for unknown values on old libcs. */
	return strerror(-code);
}

int
snap_err_set(struct snap_err *e, int code, uint64_t offset,
	     const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return code;
	e->code = code;
	e->offset = offset;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return code;
}

void
snap_err_clear(struct snap_err *e)
{
	if (e == NULL)
		return;
	e->code = 0;
	e->offset = 0;
	e->msg[0] = '\0';
}

const char *
snap_err_text(const struct snap_err *e, int code)
{
	if (e != NULL && e->msg[0] != '\0')
		return e->msg;
	return snap_strerror(code);
}
