/*
 * tools/ctl_daemon.h: snapctl's commands that talk to snapd, and the
 * blocking QMP client they share.
 *
 * Exit codes of these commands (documented in snapctl(1)):
 *   0  done
 *   1  snapd refused or the operation failed (the message says why)
 *   2  usage error
 *   3  cannot reach snapd
 */
#ifndef SNAP_TOOLS_CTL_DAEMON_H
#define SNAP_TOOLS_CTL_DAEMON_H

#include <stddef.h>

#include <jansson.h>

#define CTL_EXIT_OK      0
#define CTL_EXIT_FAIL    1
#define CTL_EXIT_USAGE   2
#define CTL_EXIT_NOCONN  3

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

/*
 * The commands. Each takes the arguments after its name (argv[0] is the
 * command name) and returns an exit code.
 */
int ctl_cmd_vm(int argc, char **argv);
int ctl_cmd_save(int argc, char **argv);
int ctl_cmd_load(int argc, char **argv);
int ctl_cmd_list(int argc, char **argv);
int ctl_cmd_rm(int argc, char **argv);

/* Global options, set by main before a command runs. */
extern const char *ctl_socket_path;   /* --socket, or NULL: the default */
extern int ctl_json_output;           /* --json */

#endif
