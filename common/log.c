/*
 * common/log.c: stderr logging for the programs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

static const char *log_prog = "snap";
static enum snap_log_level log_max = SNAP_LOG_INFO;
static int log_stamps;

void
snap_log_init(const char *prog, enum snap_log_level max, int timestamps)
{
	if (prog != NULL)
		log_prog = prog;
	log_max = max;
	log_stamps = timestamps;
}

int
snap_log_enabled(enum snap_log_level lvl)
{
	return lvl <= log_max;
}

void
snap_log(enum snap_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = {
		[SNAP_LOG_ERR] = "error: ",
		[SNAP_LOG_WARN] = "warning: ",
		[SNAP_LOG_INFO] = "",
		[SNAP_LOG_DEBUG] = "debug: ",
		[SNAP_LOG_TRACE] = "trace: ",
	};
	char msg[1024], stamp[96] = "";
	va_list ap;

	if (lvl > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_stamps) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		snprintf(stamp, sizeof(stamp),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000L);
	}
	fprintf(stderr, "%s%s: %s%s\n", stamp, log_prog, names[lvl], msg);
}

void
snap_trace_msg(const char *who, const char *p, size_t n)
{
	if (!snap_log_enabled(SNAP_LOG_TRACE))
		return;
	while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
		n--;
	if (memmem(p, n, "password", 8) != NULL) {
		p = "(holds a password: not shown)";
		n = strlen(p);
	}
	snap_log(SNAP_LOG_TRACE, "%s %.*s%s", who, (int)(n < 400 ? n : 400), p,
		 n > 400 ? "..." : "");
}
