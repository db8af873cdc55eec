/*
 * tools/snapctl.c: the snapctl entry point. Parses the global options,
 * finds the command in the table and runs it; the commands live in their
 * own files (tools/ctl_*.c) and return the exit status.
 */
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "format/format.h"
#include "tools/ctl.h"

#define SNAPCTL_VERSION "0.1"

static const struct ctl_cmd commands[] = {
	{ "inspect", "FILE [--json]",
	  "show what a snapshot file holds (offline)", ctl_inspect },
	{ "verify", "FILE [--json]",
	  "check every page and section of a snapshot file (offline)",
	  ctl_verify },
	{ "vm", "define|start|stop|undefine|list ...",
	  "manage guests", ctl_cmd_vm },
	{ "save", "VM [--name N] [--live] [--stop]",
	  "save a running guest into a snapshot", ctl_cmd_save },
	{ "load", "NAME|FILE [--as NEW] [--eager] [--verify=MODE]",
	  "restore a guest from a snapshot", ctl_cmd_load },
	{ "list", "[VM] [--label L] [--limit N]",
	  "list the cataloged snapshots", ctl_cmd_list },
	{ "rm", "VM NAME", "remove a snapshot and its file", ctl_cmd_rm },
	{ "prune", "VM [--keep-last N] [--keep-daily N] ... [--dry-run]",
	  "remove the snapshots a retention policy does not keep",
	  ctl_cmd_prune },
	{ "pin", "VM NAME", "keep a snapshot whatever the policy", ctl_cmd_pin },
	{ "unpin", "VM NAME", "let the policy decide again", ctl_cmd_pin },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: snapctl [--help | --version] [--socket PATH] [--json] "
		"COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %-44s %s\n", commands[i].name,
			commands[i].args, commands[i].summary);
	fprintf(f, "\nexit status: 0 success (verify: good), 1 corrupt file, "
		"2 usage error, 3 other error\nsee snapctl(1)\n");
}

int
ctl_exit_for(int code)
{
	if (code >= 0)
		return CTL_EXIT_OK;
	switch (code) {
	case SNAP_ECORRUPT:
	case SNAP_EMAGIC:
	case SNAP_ECHECKSUM:
	case SNAP_ETRUNC:
	case SNAP_ELIMIT:
		return CTL_EXIT_CORRUPT;
	default:
		return CTL_EXIT_ERROR;
	}
}

int
main(int argc, char **argv)
{
	snap_log_init("snapctl", SNAP_LOG_INFO, 0);
	if (argc < 2) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CTL_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("snapctl %s (snapshot format %d.%d)\n", SNAPCTL_VERSION,
		       FMT_VERSION_MAJOR, FMT_VERSION_MINOR);
		return CTL_EXIT_OK;
	}
	/* Global options before the command; --json also after it. */
	while (argc > 2 && strncmp(argv[1], "--", 2) == 0) {
		if (strcmp(argv[1], "--socket") == 0 && argc > 3) {
			ctl_socket_path = argv[2];
			argc -= 2;
			argv += 2;
		} else if (strcmp(argv[1], "--json") == 0) {
			ctl_json_output = 1;
			argc--;
			argv++;
		} else {
			break;
		}
	}
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--json") == 0)
			ctl_json_output = 1;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	snap_err("unknown command '%s' (see snapctl --help)", argv[1]);
	return CTL_EXIT_USAGE;
}
