/*
 * tools/ctl_daemon.h: the blocking QMP client that snapctl's daemon
 * commands share (tools/ctl_qmp.c).
 */
#ifndef SNAP_TOOLS_CTL_DAEMON_H
#define SNAP_TOOLS_CTL_DAEMON_H

#include <stddef.h>

#include <jansson.h>

#include "tools/ctl.h"

struct ctl_qmp;

/* Connect, read the greeting, negotiate. On failure @err says why. */
int ctl_qmp_open(const char *path, struct ctl_qmp **out, char *err,
		 size_t errlen);
void ctl_qmp_close(struct ctl_qmp *c);

/*
 * Run @cmd with @args (stolen; NULL for none). On success *@ret (if not
 * NULL) is the "return" value (caller's reference). An error reply gives
 * SNAP_EQEMU with snapd's description in @err. Events that arrive
 * meanwhile are queued.
 */
int ctl_qmp_exec(struct ctl_qmp *c, const char *cmd, json_t *args,
		 json_t **ret, char *err, size_t errlen);

/* The next event (queued first), waiting up to @timeout_ms. */
int ctl_qmp_event(struct ctl_qmp *c, int timeout_ms, json_t **ev, char *err,
		  size_t errlen);

#endif
