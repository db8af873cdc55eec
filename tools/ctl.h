/*
 * tools/ctl.h: what the snapctl command files share with tools/snapctl.c.
 *
 * Each command is a function taking the arguments after the command name
 * (argv[0] is the command name) and returning the process exit status, one
 * of the CTL_EXIT_* values. Commands print their own output and errors
 * (through common/log.h). A new command is a function declared here and a
 * row in the table in tools/snapctl.c.
 */
#ifndef SNAP_TOOLS_CTL_H
#define SNAP_TOOLS_CTL_H

/* Exit statuses of snapctl, documented in snapctl(1). */
enum ctl_exit {
	CTL_EXIT_OK      = 0,   /* success; for verify: the file is good */
	CTL_EXIT_CORRUPT = 1,   /* the file is corrupt or not a snapshot */
	CTL_EXIT_FAIL    = 1,   /* snapd refused or the job failed */
	CTL_EXIT_USAGE   = 2,   /* bad command line */
	CTL_EXIT_ERROR   = 3,   /* could not do it: I/O error, unsupported
				   version, daemon unreachable, ... */
	CTL_EXIT_NOCONN  = 3,   /* snapd cannot be reached */
};

struct ctl_cmd {
	const char *name;
	const char *args;       /* synopsis of the arguments */
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* tools/ctl_file.c: offline commands on snapshot files. */
int ctl_inspect(int argc, char **argv);
int ctl_verify(int argc, char **argv);

/*
 * tools/ctl_daemon.c: commands that drive snapd over its control socket
 * (tools/ctl_qmp.c is their client).
 */
int ctl_cmd_vm(int argc, char **argv);
int ctl_cmd_save(int argc, char **argv);
int ctl_cmd_load(int argc, char **argv);
int ctl_cmd_list(int argc, char **argv);
int ctl_cmd_rm(int argc, char **argv);
int ctl_cmd_prune(int argc, char **argv);
int ctl_cmd_pin(int argc, char **argv);     /* "pin" and "unpin" */

/* Global options, set by main before a command runs. */
extern const char *ctl_socket_path;   /* --socket, or NULL: the default */
extern int ctl_json_output;           /* --json */

/* Map a common/err.h code from opening or checking a file to an exit status. */
int ctl_exit_for(int code);

#endif
