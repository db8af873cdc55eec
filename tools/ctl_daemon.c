/*
 * tools/ctl_daemon.c: snapctl's commands that drive snapd: vm, save, load,
 * list and rm. Each connects to the control socket, sends QMP commands and,
 * for long work, follows snapd's events until the outcome arrives, showing
 * progress on a terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/err.h"
#include "common/util.h"
#include "tools/ctl_daemon.h"

const char *ctl_socket_path;
int ctl_json_output;

#define ERRLEN 1024

/* Drop "--json" (main has noted it) so getopt does not see it. */
static int
strip_json(int argc, char **argv)
{
	int n = 0;

	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--json") != 0)
			argv[n++] = argv[i];
	argv[n] = NULL;
	return n;
}

static int
connect_snapd(struct ctl_qmp **c)
{
	char path[PATH_MAX], err[ERRLEN];
	const char *p = ctl_socket_path ? ctl_socket_path : getenv("SNAPD_SOCKET");

	if (p == NULL) {
		if (snap_default_store(path, sizeof(path) - 16) < 0) {
			fprintf(stderr, "snapctl: cannot find snapd's socket: give "
				"--socket\n");
			return CTL_EXIT_NOCONN;
		}
		strcat(path, "/control.sock");
		p = path;
	}
	if (ctl_qmp_open(p, c, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapctl: %s\n", err);
		return CTL_EXIT_NOCONN;
	}
	return CTL_EXIT_OK;
}

/* Run one command; print its error. Returns an exit code. */
static int
run(struct ctl_qmp *c, const char *cmd, json_t *args, json_t **ret)
{
	char err[ERRLEN];
	int rc = ctl_qmp_exec(c, cmd, args, ret, err, sizeof(err));

	if (rc == SNAP_EQEMU) {
		fprintf(stderr, "snapctl: %s\n", err);
		return CTL_EXIT_FAIL;
	}
	if (rc < 0) {
		fprintf(stderr, "snapctl: %s\n", err);
		return CTL_EXIT_NOCONN;
	}
	return CTL_EXIT_OK;
}

/* Connect, run one command, print its result as JSON if asked. */
static int
simple(const char *cmd, json_t *args, json_t **ret)
{
	struct ctl_qmp *c = NULL;
	json_t *r = NULL;
	int rc = connect_snapd(&c);

	if (rc != CTL_EXIT_OK) {
		json_decref(args);
		return rc;
	}
	rc = run(c, cmd, args, &r);
	ctl_qmp_close(c);
	if (rc == CTL_EXIT_OK && ret != NULL)
		*ret = r;
	else
		json_decref(r);
	return rc;
}

static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

	if (s != NULL)
		puts(s);
	free(s);
}

static void
human_size(uint64_t b, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < SNAP_ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* ---- vm --------------------------------------------------------------- */

static int
read_spec_file(const char *path, json_t **out)
{
	json_error_t je;
	json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &je) :
		    json_load_file(path, 0, &je);

	if (j == NULL) {
		fprintf(stderr, "snapctl: cannot read spec '%s': %s (line %d)\n",
			path, je.text, je.line);
		return CTL_EXIT_USAGE;
	}
	*out = j;
	return CTL_EXIT_OK;
}

static int
vm_define(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, NULL, 'm' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "machine", required_argument, NULL, 'M' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "accel", required_argument, NULL, 'A' },
		{ "display", required_argument, NULL, 'D' },
		{ "disk", required_argument, NULL, 'd' },
		{ "spec", required_argument, NULL, 's' },
		{ "extra", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *spec = json_object(), *disks = json_array(), *extra = json_array();
	json_t *ret = NULL;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': json_object_set_new(spec, "memory", json_string(optarg)); break;
		case 'k': json_object_set_new(spec, "kernel", json_string(optarg)); break;
		case 'i': json_object_set_new(spec, "initrd", json_string(optarg)); break;
		case 'a': json_object_set_new(spec, "append", json_string(optarg)); break;
		case 'M': json_object_set_new(spec, "machine", json_string(optarg)); break;
		case 'c': json_object_set_new(spec, "vcpus", json_integer(atoi(optarg))); break;
		case 'A': json_object_set_new(spec, "accel", json_string(optarg)); break;
		case 'D': json_object_set_new(spec, "display", json_string(optarg)); break;
		case 'x': json_array_append_new(extra, json_string(optarg)); break;
		case 'd': {
			char *path = strdup(optarg), *colon = strrchr(path, ':');
			const char *mode = "rw";

			if (colon != NULL && (strcmp(colon, ":ro") == 0 ||
					      strcmp(colon, ":external") == 0 ||
					      strcmp(colon, ":rw") == 0)) {
				*colon = '\0';
				mode = colon + 1;
			}
			json_array_append_new(disks, json_pack("{s:s, s:s}",
				"path", path, "mode", mode));
			free(path);
			break;
		}
		case 's': {
			json_t *f = NULL;
			if ((rc = read_spec_file(optarg, &f)) != CTL_EXIT_OK)
				goto out;
			json_object_update(spec, f);
			json_decref(f);
			break;
		}
		default:
			rc = CTL_EXIT_USAGE;
			goto out;
		}
	}
	if (optind + 1 != argc && !json_object_get(spec, "name")) {
		fprintf(stderr, "usage: snapctl vm define NAME [--memory SIZE] "
			"[--kernel PATH] [--append ARGS] [--machine TYPE] ...\n"
			"       snapctl vm define --spec FILE.json\n");
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	if (optind < argc)
		json_object_set_new(spec, "name", json_string(argv[optind]));
	if (json_array_size(disks) > 0)
		json_object_set(spec, "disks", disks);
	if (json_array_size(extra) > 0)
		json_object_set(spec, "extra-args", extra);
	rc = simple("vm-define", json_pack("{s:O}", "spec", spec), &ret);
	if (rc == CTL_EXIT_OK) {
		if (ctl_json_output)
			print_json(ret);
		else
			printf("defined guest '%s'\n",
			       json_string_value(json_object_get(ret, "name")));
	}
out:
	json_decref(ret);
	json_decref(spec);
	json_decref(disks);
	json_decref(extra);
	return rc;
}

static int
vm_list(void)
{
	json_t *ret = NULL, *g;
	size_t i;
	int rc = simple("query-vms", NULL, &ret);

	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl_json_output) {
		print_json(ret);
	} else {
		printf("%-20s %-9s %-9s %8s %s\n", "NAME", "STATE", "STATUS",
		       "MEMORY", "MACHINE");
		json_array_foreach(ret, i, g) {
			json_t *spec = json_object_get(g, "spec");
			char mem[32];
			const char *st = json_string_value(json_object_get(g, "status"));

			human_size((uint64_t)json_integer_value(
					json_object_get(spec, "memory")),
				   mem, sizeof(mem));
			printf("%-20s %-9s %-9s %8s %s\n",
			       json_string_value(json_object_get(g, "name")),
			       json_string_value(json_object_get(g, "state")),
			       st && *st ? st : "-", mem,
			       json_string_value(json_object_get(spec, "machine")));
		}
	}
	json_decref(ret);
	return rc;
}

int
ctl_cmd_vm(int argc, char **argv)
{
	const char *sub;
	json_t *ret = NULL;
	int rc;

	argc = strip_json(argc, argv);	sub = argc > 1 ? argv[1] : "";
	if (strcmp(sub, "define") == 0)
		return vm_define(argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return vm_list();
	if ((strcmp(sub, "start") == 0 || strcmp(sub, "stop") == 0 ||
	     strcmp(sub, "undefine") == 0) && argc == 3) {
		char cmd[32];

		snprintf(cmd, sizeof(cmd), "vm-%s", sub);
		rc = simple(cmd, json_pack("{s:s}", "vm", argv[2]), &ret);
		if (rc == CTL_EXIT_OK && ctl_json_output)
			print_json(ret);
		else if (rc == CTL_EXIT_OK)
			printf("%s: %s\n", argv[2], strcmp(sub, "start") == 0 ?
			       "started" : strcmp(sub, "stop") == 0 ? "stopped" :
			       "undefined");
		json_decref(ret);
		return rc;
	}
	fprintf(stderr, "usage: snapctl vm define|start|stop|undefine|list ...\n");
	return CTL_EXIT_USAGE;
}

/* ---- following a job -------------------------------------------------- */

struct follow {
	const char *vm;
	const char *ok_event, *fail_event;
	uint64_t total;         /* expected stream bytes, for the bar */
	uint64_t t0;
	bool tty;
	uint64_t last_bytes, last_ns;
	double rate;
	json_t *result;         /* the ok event's data */
};

static void
show_progress(struct follow *f, json_t *q)
{
	uint64_t bytes = (uint64_t)json_integer_value(json_object_get(q,
							"stream-bytes"));
	uint64_t now = snap_now_mono_ns();
	char done[32], total[32], rate[32], eta[32] = "";

	if (!f->tty || bytes == 0)
		return;
	if (f->last_ns != 0 && now > f->last_ns) {
		double r = (double)(bytes - f->last_bytes) * 1e9 /
			   (double)(now - f->last_ns);
		f->rate = f->rate == 0 ? r : 0.7 * f->rate + 0.3 * r;
	}
	f->last_bytes = bytes;
	f->last_ns = now;
	human_size(bytes, done, sizeof(done));
	human_size(f->total, total, sizeof(total));
	human_size((uint64_t)f->rate, rate, sizeof(rate));
	if (f->rate > 0 && f->total > bytes)
		snprintf(eta, sizeof(eta), ", %.0f s left",
			 (double)(f->total - bytes) / f->rate);
	fprintf(stderr, "\r%s: %s of ~%s at %s/s%s\033[K", f->vm, done, total,
		rate, eta);
}

/* Wait for this guest's outcome event; progress in between. */
static int
follow(struct ctl_qmp *c, struct follow *f)
{
	char err[ERRLEN];
	const char *last_status = "";

	for (;;) {
		json_t *ev = NULL, *data;
		const char *name, *vm;
		int rc = ctl_qmp_event(c, 250, &ev, err, sizeof(err));

		if (rc == -ETIMEDOUT) {
			json_t *q = NULL;
			if (ctl_qmp_exec(c, "query-migrate",
					 json_pack("{s:s}", "vm", f->vm), &q, err,
					 sizeof(err)) == 0)
				show_progress(f, q);
			json_decref(q);
			continue;
		}
		if (rc < 0) {
			if (f->tty)
				fputc('\n', stderr);
			fprintf(stderr, "snapctl: %s (the job goes on in snapd)\n",
				err);
			return CTL_EXIT_NOCONN;
		}
		name = json_string_value(json_object_get(ev, "event"));
		data = json_object_get(ev, "data");
		vm = json_string_value(json_object_get(data, "vm"));
		if (name == NULL || vm == NULL || strcmp(vm, f->vm) != 0) {
			json_decref(ev);
			continue;
		}
		if (strcmp(name, "MIGRATION") == 0 && !f->tty) {
			const char *st = json_string_value(json_object_get(data,
								   "status"));
			if (st != NULL && strcmp(st, last_status) != 0 &&
			    !ctl_json_output) {
				printf("%s: %s\n", f->vm, st);
				fflush(stdout);
				last_status = strcmp(st, "active") == 0 ? "active" :
					      "";
			}
		}
		if (strcmp(name, f->ok_event) == 0) {
			if (f->tty)
				fputs("\r\033[K", stderr);
			f->result = json_incref(data);
			json_decref(ev);
			return CTL_EXIT_OK;
		}
		if (strcmp(name, f->fail_event) == 0) {
			if (f->tty)
				fputs("\r\033[K", stderr);
			const char *why = json_string_value(json_object_get(data,
								    "error"));
			if (why == NULL)
				why = json_string_value(json_object_get(data,
								"reason"));
			fprintf(stderr, "snapctl: %s: %s\n", f->vm,
				why != NULL ? why : "failed");
			json_decref(ev);
			return CTL_EXIT_FAIL;
		}
		json_decref(ev);
	}
}

/* The guest's memory size, for the progress bar (0 if unknown). */
static uint64_t
guest_memory(struct ctl_qmp *c, const char *vm)
{
	char err[ERRLEN];
	json_t *ret = NULL, *g;
	uint64_t mem = 0;
	size_t i;

	if (ctl_qmp_exec(c, "query-vms", NULL, &ret, err, sizeof(err)) < 0)
		return 0;
	json_array_foreach(ret, i, g) {
		const char *n = json_string_value(json_object_get(g, "name"));
		if (n != NULL && strcmp(n, vm) == 0)
			mem = (uint64_t)json_integer_value(json_object_get(
				json_object_get(g, "spec"), "memory"));
	}
	json_decref(ret);
	return mem;
}

/* ---- save ------------------------------------------------------------- */

int
ctl_cmd_save(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "live", no_argument, NULL, 'l' },
		{ "stop", no_argument, NULL, 's' },
		{ "disks", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	struct follow f = { .ok_event = "SNAPSHOT_SAVED",
			    .fail_event = "SNAPSHOT_FAILED" };
	const char *name = NULL, *disks = NULL;
	bool live = false, stop = false;
	struct ctl_qmp *c = NULL;
	json_t *args, *ret = NULL;
	int opt, rc;

	argc = strip_json(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 'l': live = true; break;
		case 's': stop = true; break;
		case 'd': disks = optarg; break;
		default: return CTL_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: snapctl save VM [--name NAME] [--live] "
			"[--stop] [--disks readonly|external]\n");
		return CTL_EXIT_USAGE;
	}
	f.vm = argv[optind];
	if ((rc = connect_snapd(&c)) != CTL_EXIT_OK)
		return rc;
	f.total = guest_memory(c, f.vm);
	f.tty = isatty(2) && !ctl_json_output;
	f.t0 = snap_now_mono_ns();
	args = json_pack("{s:s, s:b, s:b}", "vm", f.vm, "live", live,
			 "resume", !stop);
	if (name != NULL)
		json_object_set_new(args, "name", json_string(name));
	if (disks != NULL)
		json_object_set_new(args, "disks", json_string(disks));
	rc = run(c, "snapshot-save", args, &ret);
	if (rc == CTL_EXIT_OK)
		rc = follow(c, &f);
	if (rc == CTL_EXIT_OK) {
		if (ctl_json_output) {
			print_json(f.result);
		} else {
			char size[32], alloc[32];
			json_t *r = f.result;

			human_size((uint64_t)json_integer_value(
				json_object_get(r, "bytes")), size, sizeof(size));
			human_size((uint64_t)json_integer_value(
				json_object_get(r, "allocated")), alloc,
				sizeof(alloc));
			printf("saved %s/%s to %s: %s (%s on disk) in %lld ms",
			       f.vm, json_string_value(json_object_get(r, "name")),
			       json_string_value(json_object_get(r, "path")),
			       size, alloc,
			       json_integer_value(json_object_get(r, "duration-ms")));
			if (live)
				printf(", downtime %lld ms", json_integer_value(
					json_object_get(r, "downtime-ms")));
			putchar('\n');
		}
	}
	json_decref(f.result);
	json_decref(ret);
	ctl_qmp_close(c);
	return rc;
}

/* ---- load ------------------------------------------------------------- */

/* "GUEST/NAME" for a snapshot named @name, if exactly one guest has it. */
static int
find_snapshot(struct ctl_qmp *c, const char *name, char *out, size_t size)
{
	char err[ERRLEN];
	json_t *ret = NULL, *s;
	size_t i, hits = 0;

	if (ctl_qmp_exec(c, "query-snapshots", NULL, &ret, err, sizeof(err)) < 0) {
		fprintf(stderr, "snapctl: %s\n", err);
		return CTL_EXIT_FAIL;
	}
	json_array_foreach(ret, i, s) {
		if (strcmp(json_string_value(json_object_get(s, "name")), name))
			continue;
		if (hits++ == 0)
			snprintf(out, size, "%s/%s",
				 json_string_value(json_object_get(s, "vm")), name);
	}
	json_decref(ret);
	if (hits == 1)
		return CTL_EXIT_OK;
	fprintf(stderr, hits ? "snapctl: several guests have a snapshot '%s'; "
		"say GUEST/%s\n" : "snapctl: no snapshot '%s'%.0s\n", name, name);
	return CTL_EXIT_FAIL;
}

int
ctl_cmd_load(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "as", required_argument, NULL, 'a' },
		{ "eager", no_argument, NULL, 'e' },
		{ "verify", required_argument, NULL, 'v' },
		{ "cap", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	struct follow f = { .ok_event = "RESTORED", .fail_event = "RESTORE_FAILED" };
	const char *as = NULL, *verify = NULL, *what;
	char uri[PATH_MAX + 16], ref[2 * 80];
	json_t *caps = json_array(), *args = NULL, *ret = NULL;
	struct ctl_qmp *c = NULL;
	bool eager = false;
	struct stat st;
	int opt, rc;

	argc = strip_json(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': as = optarg; break;
		case 'e': eager = true; break;
		case 'v': verify = optarg; break;
		case 'c': {
			char *eq = strchr(optarg, '=');
			if (eq == NULL || (strcmp(eq + 1, "on") != 0 &&
					   strcmp(eq + 1, "off") != 0)) {
				fprintf(stderr, "snapctl: --cap wants NAME=on|off\n");
				json_decref(caps);
				return CTL_EXIT_USAGE;
			}
			*eq = '\0';
			json_array_append_new(caps, json_pack("{s:s, s:b}",
				"capability", optarg, "state",
				strcmp(eq + 1, "on") == 0));
			break;
		}
		default:
			json_decref(caps);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: snapctl load NAME|GUEST/NAME|FILE "
			"[--as NEWNAME] [--eager] [--verify=full|background|none] "
			"[--cap NAME=on|off]...\n");
		json_decref(caps);
		return CTL_EXIT_USAGE;
	}
	what = argv[optind];
	if ((rc = connect_snapd(&c)) != CTL_EXIT_OK) {
		json_decref(caps);
		return rc;
	}
	if (stat(what, &st) == 0 && S_ISREG(st.st_mode)) {
		char abs[PATH_MAX];
		if (realpath(what, abs) == NULL) {
			fprintf(stderr, "snapctl: cannot resolve '%s'\n", what);
			rc = CTL_EXIT_FAIL;
			goto out;
		}
		snprintf(uri, sizeof(uri), "file:%s", abs);
	} else if (strchr(what, '/') != NULL) {
		snprintf(uri, sizeof(uri), "snapshot:%s", what);
	} else {
		if ((rc = find_snapshot(c, what, ref, sizeof(ref))) != CTL_EXIT_OK)
			goto out;
		snprintf(uri, sizeof(uri), "snapshot:%s", ref);
	}
	args = json_pack("{s:s, s:s}", "uri", uri, "mode",
			 eager ? "eager" : "lazy");
	if (as != NULL)
		json_object_set_new(args, "vm", json_string(as));
	if (verify != NULL)
		json_object_set_new(args, "verify", json_string(verify));
	if (json_array_size(caps) > 0)
		json_object_set(args, "capabilities", caps);
	f.tty = isatty(2) && !ctl_json_output;
	f.t0 = snap_now_mono_ns();
	rc = run(c, "migrate-incoming", args, &ret);
	args = NULL;
	if (rc != CTL_EXIT_OK)
		goto out;
	f.vm = json_string_value(json_object_get(ret, "vm"));
	f.total = eager ? guest_memory(c, f.vm) : 0;
	rc = follow(c, &f);
	if (rc == CTL_EXIT_OK) {
		double ms = (double)(snap_now_mono_ns() - f.t0) / 1e6;

		if (ctl_json_output) {
			json_object_set_new(f.result, "client-ms", json_real(ms));
			print_json(f.result);
		} else {
			printf("restored %s from %s (%s) in %.1f ms from request "
			       "to running guest\n", f.vm,
			       json_string_value(json_object_get(f.result, "path")),
			       json_string_value(json_object_get(f.result, "mode")),
			       ms);
		}
	}
out:
	json_decref(f.result);
	json_decref(ret);
	json_decref(args);
	json_decref(caps);
	ctl_qmp_close(c);
	return rc;
}

/* ---- list and rm ------------------------------------------------------ */

int
ctl_cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "label", required_argument, NULL, 'l' },
		{ "limit", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *args = json_object(), *ret = NULL, *s;
	size_t i;
	int opt, rc;

	argc = strip_json(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': json_object_set_new(args, "label", json_string(optarg)); break;
		case 'n': json_object_set_new(args, "limit", json_integer(atoll(optarg))); break;
		default: json_decref(args); return CTL_EXIT_USAGE;
		}
	}
	if (optind + 1 == argc)
		json_object_set_new(args, "vm", json_string(argv[optind]));
	else if (optind != argc) {
		fprintf(stderr, "usage: snapctl list [VM] [--label L] [--limit N]\n");
		json_decref(args);
		return CTL_EXIT_USAGE;
	}
	rc = simple("query-snapshots", args, &ret);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl_json_output) {
		print_json(ret);
		json_decref(ret);
		return rc;
	}
	printf("%-16s %-24s %-20s %9s %9s %-7s %-7s %s\n", "GUEST", "NAME",
	       "CREATED (UTC)", "SIZE", "ON DISK", "MODE", "STATE", "VERIFIED");
	json_array_foreach(ret, i, s) {
		time_t t = (time_t)(json_integer_value(json_object_get(s,
						"created-ns")) / 1000000000);
		char when[32], size[32], alloc[32];
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		human_size((uint64_t)json_integer_value(json_object_get(s, "size")),
			   size, sizeof(size));
		human_size((uint64_t)json_integer_value(json_object_get(s,
							"allocated")),
			   alloc, sizeof(alloc));
		printf("%-16s %-24s %-20s %9s %9s %-7s %-7s %s\n",
		       json_string_value(json_object_get(s, "vm")),
		       json_string_value(json_object_get(s, "name")), when, size,
		       alloc, json_string_value(json_object_get(s, "mode")),
		       json_string_value(json_object_get(s, "state")),
		       json_string_value(json_object_get(s, "verdict")));
	}
	json_decref(ret);
	return rc;
}

int
ctl_cmd_rm(int argc, char **argv)
{
	int rc;

	argc = strip_json(argc, argv);
	if (argc != 3) {
		fprintf(stderr, "usage: snapctl rm VM NAME\n");
		return CTL_EXIT_USAGE;
	}
	rc = simple("snapshot-delete", json_pack("{s:s, s:s}", "vm", argv[1],
						 "name", argv[2]), NULL);
	if (rc == CTL_EXIT_OK && !ctl_json_output)
		printf("removed %s/%s\n", argv[1], argv[2]);
	return rc;
}

/* ---- prune and pin ---------------------------------------------------- */

int
ctl_cmd_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keep-last", required_argument, NULL, 'l' },
		{ "keep-hourly", required_argument, NULL, 'H' },
		{ "keep-daily", required_argument, NULL, 'd' },
		{ "keep-weekly", required_argument, NULL, 'w' },
		{ "keep-monthly", required_argument, NULL, 'm' },
		{ "keep-yearly", required_argument, NULL, 'y' },
		{ "keep-within", required_argument, NULL, 'W' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *args = json_object(), *ret = NULL, *s;
	bool dry = false;
	size_t i;
	int opt, rc;

	argc = strip_json(argc, argv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *key = NULL;
		char *end;
		long v;

		switch (opt) {
		case 'l': key = "keep-last"; break;
		case 'H': key = "keep-hourly"; break;
		case 'd': key = "keep-daily"; break;
		case 'w': key = "keep-weekly"; break;
		case 'm': key = "keep-monthly"; break;
		case 'y': key = "keep-yearly"; break;
		case 'W':
			json_object_set_new(args, "keep-within",
					    json_string(optarg));
			continue;
		case 'n':
			dry = true;
			continue;
		default:
			json_decref(args);
			return CTL_EXIT_USAGE;
		}
		v = strtol(optarg, &end, 10);
		if (*optarg == '\0' || *end != '\0' || v < 0) {
			fprintf(stderr, "snapctl: --%s wants a count\n", key);
			json_decref(args);
			return CTL_EXIT_USAGE;
		}
		json_object_set_new(args, key, json_integer(v));
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "usage: snapctl prune VM [--keep-last N] "
			"[--keep-hourly N] [--keep-daily N] [--keep-weekly N] "
			"[--keep-monthly N] [--keep-yearly N] [--keep-within "
			"DURATION] [--dry-run]\n");
		json_decref(args);
		return CTL_EXIT_USAGE;
	}
	json_object_set_new(args, "vm", json_string(argv[optind]));
	json_object_set_new(args, "dry-run", json_boolean(dry));
	rc = simple("snapshot-prune", args, &ret);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (ctl_json_output) {
		print_json(ret);
	} else {
		for (i = 0; i < json_array_size(ret); i++) {
			s = json_array_get(ret, i);
			printf("%-7s %-24s %s\n",
			       json_is_true(json_object_get(s, "keep")) ? "keep" :
			       dry ? "would remove" : "removed",
			       json_string_value(json_object_get(s, "name")),
			       json_string_value(json_object_get(s, "reasons")));
		}
	}
	json_decref(ret);
	return rc;
}

int
ctl_cmd_pin(int argc, char **argv)
{
	bool pin = strcmp(argv[0], "pin") == 0;
	int rc;

	argc = strip_json(argc, argv);
	if (argc != 3) {
		fprintf(stderr, "usage: snapctl %s VM NAME\n", argv[0]);
		return CTL_EXIT_USAGE;
	}
	rc = simple("snapshot-pin", json_pack("{s:s, s:s, s:b}", "vm", argv[1],
					      "name", argv[2], "pinned", pin),
		    NULL);
	if (rc == CTL_EXIT_OK && !ctl_json_output)
		printf("%s %s/%s\n", pin ? "pinned" : "unpinned", argv[1], argv[2]);
	return rc;
}
