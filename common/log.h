/*
 * common/log.h: logging for the programs (snapd, snapctl) only.
 *
 * Libraries must not include this header: they return errors and let the
 * program decide what to say. Messages go to stderr, prefixed with the
 * program name; a daemon may switch on timestamps. Not thread-safe to
 * reconfigure; safe to call snap_log() from several threads (one fprintf per
 * message).
 */
#ifndef SNAP_COMMON_LOG_H
#define SNAP_COMMON_LOG_H

#include <stddef.h>

enum snap_log_level {
	SNAP_LOG_ERR,
	SNAP_LOG_WARN,
	SNAP_LOG_INFO,
	SNAP_LOG_DEBUG,
	SNAP_LOG_TRACE,     /* protocol traffic */
};

/* Set the program name, the most verbose level printed, and timestamps. */
void snap_log_init(const char *prog, enum snap_log_level max, int timestamps);

void snap_log(enum snap_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define snap_err(...)   snap_log(SNAP_LOG_ERR, __VA_ARGS__)
#define snap_warn(...)  snap_log(SNAP_LOG_WARN, __VA_ARGS__)
#define snap_info(...)  snap_log(SNAP_LOG_INFO, __VA_ARGS__)
#define snap_debug(...) snap_log(SNAP_LOG_DEBUG, __VA_ARGS__)
#define snap_trace(...) snap_log(SNAP_LOG_TRACE, __VA_ARGS__)

/* Whether messages of @lvl are printed (to skip building costly ones). */
int snap_log_enabled(enum snap_log_level lvl);

/*
 * A protocol message @p (@n bytes) at the trace level, after @who: its
 * first 400 bytes without the line end, or a placeholder when it holds a
 * password.
 */
void snap_trace_msg(const char *who, const char *p, size_t n);

#endif
