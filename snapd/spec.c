/*
 * snapd/spec.c: validating guest specifications and building QEMU's
 * command line from them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "snapd/spec.h"

/* Options snapd sets itself; a spec's extra arguments may not override them. */
static const char *const reserved_opts[] = {
	"-incoming", "-qmp", "-qmp-pretty", "-monitor", "-mon", "-daemonize",
	"-m", "-machine", "-M", "-S", "-loadvm", "-serial", "-vnc", "-display",
	"-nodefaults", "-name", "-accel", "-enable-kvm", "-pidfile",
	"-runas", "-chroot", "-kernel", "-initrd", "-append", "-smp",
	"-mem-path", "-mem-prealloc", "-readconfig", "-writeconfig", NULL,
};

bool
spec_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > SPEC_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* A pinned machine type ends in "-MAJOR.MINOR" (pc-i440fx-7.2). */
static bool
machine_pinned(const char *m)
{
	const char *dash = strrchr(m, '-');
	const char *p;
	int dots = 0;

	if (dash == NULL || dash == m || dash[1] == '\0' || strlen(m) > 64)
		return false;
	for (p = m; p < dash; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_'))
			return false;
	for (p = dash + 1; *p; p++) {
		if (*p == '.')
			dots++;
		else if (*p < '0' || *p > '9')
			return false;
	}
	return dots == 1 && dash[1] != '.' && p[-1] != '.';
}

static int
dup_str(char **dst, const char *src)
{
	*dst = strdup(src);
	return *dst == NULL ? -ENOMEM : 0;
}

static int
get_opt_str(const json_t *j, const char *key, char **dst, struct snap_err *err)
{
	json_t *v = json_object_get(j, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field '%s' must be a string", key);
	if (json_string_length(v) == 0 || json_string_length(v) > 4096)
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field '%s' must be 1 to 4096 bytes",
				    key);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field '%s' contains a NUL byte", key);
	return dup_str(dst, json_string_value(v));
}

static int
parse_memory(const json_t *v, uint64_t *out, struct snap_err *err)
{
	uint64_t m;

	if (json_is_integer(v) && json_integer_value(v) > 0) {
		m = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		if (snap_parse_size(json_string_value(v), &m) < 0)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "spec field 'memory': cannot parse '%s'",
					    json_string_value(v));
	} else {
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field 'memory' is missing or not a size");
	}
	if (m < SPEC_MIN_MEMORY || m > SPEC_MAX_MEMORY ||
	    !SNAP_IS_ALIGNED(m, 2u << 20))
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field 'memory': %llu bytes is not a "
				    "multiple of 2 MiB between 16 MiB and 1 TiB",
				    (unsigned long long)m);
	*out = m;
	return 0;
}

static int
parse_disks(const json_t *arr, struct guest_spec *s, struct snap_err *err)
{
	size_t i;
	json_t *d;
	int rc;

	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > SPEC_MAX_DISKS)
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field 'disks' must be an array of at "
				    "most %d disks", SPEC_MAX_DISKS);
	json_array_foreach(arr, i, d) {
		struct spec_disk *sd = &s->disks[s->ndisks];
		const char *mode = "rw";
		json_t *m;

		if (!json_is_object(d))
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk %zu must be an object", i);
		s->ndisks++;
		if ((rc = get_opt_str(d, "path", &sd->path, err)) < 0)
			return rc;
		if (sd->path == NULL)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk %zu has no 'path'", i);
		if (strchr(sd->path, ',') != NULL)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk path '%s' contains a comma",
					    sd->path);
		if ((rc = get_opt_str(d, "format", &sd->format, err)) < 0)
			return rc;
		if (sd->format == NULL && (rc = dup_str(&sd->format, "raw")) < 0)
			return rc;
		if (strcmp(sd->format, "raw") != 0 &&
		    strcmp(sd->format, "qcow2") != 0)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk %zu: format '%s' is not raw "
					    "or qcow2", i, sd->format);
		m = json_object_get(d, "mode");
		if (m != NULL && !json_is_string(m))
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk %zu: 'mode' must be a string", i);
		if (m != NULL)
			mode = json_string_value(m);
		if (strcmp(mode, "rw") == 0)
			sd->mode = SPEC_DISK_RW;
		else if (strcmp(mode, "ro") == 0)
			sd->mode = SPEC_DISK_RO;
		else if (strcmp(mode, "external") == 0)
			sd->mode = SPEC_DISK_EXTERNAL;
		else
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "disk %zu: mode '%s' is not rw, ro "
					    "or external", i, mode);
	}
	return 0;
}

static int
parse_extra(const json_t *arr, struct guest_spec *s, struct snap_err *err)
{
	size_t i;
	json_t *v;

	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > SPEC_MAX_EXTRA)
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field 'extra-args' must be an array "
				    "of at most %d strings", SPEC_MAX_EXTRA);
	json_array_foreach(arr, i, v) {
		const char *a;

		if (!json_is_string(v))
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "extra argument %zu is not a string", i);
		a = json_string_value(v);
		for (const char *const *r = reserved_opts; *r; r++) {
			/* "-opt" and "--opt" are the same to QEMU. */
			const char *o = a[0] == '-' && a[1] == '-' ? a + 1 : a;
			if (strcmp(o, *r) == 0)
				return snap_err_set(err, SNAP_ECONFIG, 0,
						    "extra argument '%s' is "
						    "managed by snapd", a);
		}
		if (dup_str(&s->extra[s->nextra], a) < 0)
			return -ENOMEM;
		s->nextra++;
	}
	return 0;
}

/* "ADDR:PORT" or "ADDR:auto"; IPv6 addresses in brackets. */
static int
parse_listen(const char *v, struct spec_vnc *ep, struct snap_err *err)
{
	const char *colon = strrchr(v, ':'), *port;
	char host[64];
	unsigned char addr[16];
	size_t hl;
	bool v6 = v[0] == '[';

	if (colon == NULL)
		goto bad;
	port = colon + 1;
	if (v6) {
		if (colon == v || colon[-1] != ']')
			goto bad;
		hl = (size_t)(colon - v) - 2;
		if (hl == 0 || hl >= sizeof(host))
			goto bad;
		memcpy(host, v + 1, hl);
	} else {
		hl = (size_t)(colon - v);
		if (hl == 0 || hl >= sizeof(host))
			goto bad;
		memcpy(host, v, hl);
	}
	host[hl] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1 ||
	    hl >= sizeof(ep->host))
		goto bad;
	if (strcmp(port, "auto") == 0) {
		ep->port = 0;
	} else {
		unsigned long p = 0;

		if (*port == '\0' || strlen(port) > 5)
			goto bad;
		for (const char *c = port; *c; c++) {
			if (*c < '0' || *c > '9')
				goto bad;
			p = p * 10 + (unsigned long)(*c - '0');
		}
		if (p == 0 || p > 65535)
			goto bad;
		ep->port = (unsigned)p;
	}
	snap_strlcpy(ep->host, host, sizeof(ep->host));
	return 0;
bad:
	return snap_err_set(err, SNAP_ECONFIG, 0,
			    "spec field 'vnc.listen' '%s' is not ADDR:PORT or "
			    "ADDR:auto with a numeric address", v);
}

static int
parse_vnc(const json_t *o, struct spec_vnc *ep, struct snap_err *err)
{
	const char *key;
	json_t *v;

	snap_strlcpy(ep->host, "127.0.0.1", sizeof(ep->host));
	ep->port = 0;
	ep->password[0] = '\0';
	ep->hold_s = SPEC_VNC_HOLD_DEFAULT;
	if (o == NULL || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "spec field 'vnc' must be an object");
	json_object_foreach((json_t *)(uintptr_t)o, key, v) {
		if (strcmp(key, "listen") != 0 && strcmp(key, "password") != 0 &&
		    strcmp(key, "hold-s") != 0)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "unknown spec field 'vnc.%s'", key);
	}
	v = json_object_get(o, "listen");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v))
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "spec field 'vnc.listen' must be a "
					    "string");
		if (parse_listen(json_string_value(v), ep, err) < 0)
			return SNAP_ECONFIG;
	}
	v = json_object_get(o, "password");
	if (v != NULL && !json_is_null(v)) {
		const char *pw = json_string_value(v);

		if (pw == NULL || strlen(pw) == 0 ||
		    strlen(pw) > SPEC_VNC_PASSWORD_MAX ||
		    strlen(pw) != json_string_length(v))
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "spec field 'vnc.password' must be "
					    "1 to %d bytes (VNC authentication "
					    "uses no more)", SPEC_VNC_PASSWORD_MAX);
		snap_strlcpy(ep->password, pw, sizeof(ep->password));
	}
	v = json_object_get(o, "hold-s");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > SPEC_VNC_HOLD_MAX)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "spec field 'vnc.hold-s' must be 1 "
					    "to %d seconds", SPEC_VNC_HOLD_MAX);
		ep->hold_s = (unsigned)json_integer_value(v);
	}
	return 0;
}

/* The endpoint as "ADDR:PORT" / "ADDR:auto" (brackets for IPv6). */
static void
listen_str(const struct spec_vnc *ep, char *buf, size_t size)
{
	int n = strchr(ep->host, ':') ? snprintf(buf, size, "[%s]:", ep->host) :
		snprintf(buf, size, "%s:", ep->host);

	if (n < 0 || (size_t)n >= size)
		return;
	if (ep->port == 0)
		snprintf(buf + n, size - (size_t)n, "auto");
	else
		snprintf(buf + n, size - (size_t)n, "%u", ep->port);
}

static const char *const spec_keys[] = {
	"name", "memory", "vcpus", "machine", "kernel", "initrd", "append",
	"disks", "accel", "display", "vnc", "extra-args", NULL,
};

int
spec_from_json(const json_t *j, struct guest_spec **out, struct snap_err *err)
{
	struct guest_spec *s = NULL;
	const char *key;
	json_t *v;
	int rc;

	if (!json_is_object(j))
		return snap_err_set(err, SNAP_ECONFIG, 0,
				    "guest spec must be a JSON object");
	json_object_foreach((json_t *)(uintptr_t)j, key, v) {
		const char *const *k;
		for (k = spec_keys; *k; k++)
			if (strcmp(*k, key) == 0)
				break;
		if (*k == NULL)
			return snap_err_set(err, SNAP_ECONFIG, 0,
					    "unknown spec field '%s'", key);
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;

	v = json_object_get(j, "name");
	if (!json_is_string(v) || !spec_name_valid(json_string_value(v))) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "spec field 'name' must be 1-%d characters "
				  "of [A-Za-z0-9_.-], not starting with '.' or '-'",
				  SPEC_NAME_MAX);
		goto out;
	}
	snap_strlcpy(s->name, json_string_value(v), sizeof(s->name));

	if ((rc = parse_memory(json_object_get(j, "memory"), &s->memory, err)) < 0)
		goto out;

	s->vcpus = 1;
	v = json_object_get(j, "vcpus");
	if (v != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > SPEC_MAX_VCPUS) {
			rc = snap_err_set(err, SNAP_ECONFIG, 0,
					  "spec field 'vcpus' must be 1 to %d",
					  SPEC_MAX_VCPUS);
			goto out;
		}
		s->vcpus = (unsigned)json_integer_value(v);
	}

	if ((rc = get_opt_str(j, "machine", &s->machine, err)) < 0)
		goto out;
	if (s->machine == NULL && (rc = dup_str(&s->machine, "pc-i440fx-7.2")) < 0)
		goto out;
	if (!machine_pinned(s->machine)) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "machine type '%s' is not pinned: give a "
				  "versioned type such as 'pc-i440fx-7.2' or "
				  "'pc-q35-7.2'", s->machine);
		goto out;
	}
	if ((rc = get_opt_str(j, "kernel", &s->kernel, err)) < 0 ||
	    (rc = get_opt_str(j, "initrd", &s->initrd, err)) < 0 ||
	    (rc = get_opt_str(j, "append", &s->append, err)) < 0)
		goto out;
	if ((s->initrd != NULL || s->append != NULL) && s->kernel == NULL) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "spec fields 'initrd' and 'append' need 'kernel'");
		goto out;
	}
	if ((rc = parse_disks(json_object_get(j, "disks"), s, err)) < 0)
		goto out;
	if (s->kernel == NULL && s->ndisks == 0) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "guest spec needs a 'kernel' or at least one disk");
		goto out;
	}

	if ((rc = get_opt_str(j, "accel", &s->accel, err)) < 0)
		goto out;
	if (s->accel == NULL && (rc = dup_str(&s->accel, "tcg")) < 0)
		goto out;
	if (strcmp(s->accel, "tcg") != 0 && strcmp(s->accel, "kvm") != 0) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "accelerator '%s' is not tcg or kvm", s->accel);
		goto out;
	}

	s->vnc = true;
	v = json_object_get(j, "display");
	if (v != NULL) {
		if (json_is_string(v) && strcmp(json_string_value(v), "vnc") == 0) {
			s->vnc = true;
		} else if (json_is_string(v) &&
			   strcmp(json_string_value(v), "none") == 0) {
			s->vnc = false;
		} else {
			rc = snap_err_set(err, SNAP_ECONFIG, 0,
					  "spec field 'display' must be \"vnc\" "
					  "or \"none\"");
			goto out;
		}
	}
	if (!s->vnc && json_object_get(j, "vnc") != NULL &&
	    !json_is_null(json_object_get(j, "vnc"))) {
		rc = snap_err_set(err, SNAP_ECONFIG, 0,
				  "spec field 'vnc' needs display \"vnc\"");
		goto out;
	}
	if ((rc = parse_vnc(json_object_get(j, "vnc"), &s->vnc_ep, err)) < 0)
		goto out;
	if ((rc = parse_extra(json_object_get(j, "extra-args"), s, err)) < 0)
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	if (rc == -ENOMEM)
		snap_err_set(err, rc, 0, "out of memory");
	spec_free(s);
	return rc;
}

json_t *
spec_to_json(const struct guest_spec *s)
{
	json_t *j = json_object(), *disks = json_array(), *extra = json_array();
	json_t *vnc = json_null();
	char listen[80];
	static const char *const modes[] = {
		[SPEC_DISK_RW] = "rw", [SPEC_DISK_RO] = "ro",
		[SPEC_DISK_EXTERNAL] = "external",
	};

	if (j == NULL || disks == NULL || extra == NULL)
		goto fail;
	for (unsigned i = 0; i < s->ndisks; i++)
		if (json_array_append_new(disks, json_pack("{s:s, s:s, s:s}",
				"path", s->disks[i].path,
				"format", s->disks[i].format,
				"mode", modes[s->disks[i].mode])) < 0)
			goto fail;
	for (unsigned i = 0; i < s->nextra; i++)
		if (json_array_append_new(extra, json_string(s->extra[i])) < 0)
			goto fail;
	if (s->vnc) {
		listen_str(&s->vnc_ep, listen, sizeof(listen));
		vnc = json_pack("{s:s, s:s?, s:i}", "listen", listen,
				"password", s->vnc_ep.password[0] ?
				s->vnc_ep.password : NULL,
				"hold-s", (int)s->vnc_ep.hold_s);
		if (vnc == NULL)
			goto fail;
	}
	if (json_object_set_new(j, "vnc", vnc) < 0) {
		vnc = NULL;
		goto fail;
	}
	vnc = NULL;
	if (json_object_set_new(j, "name", json_string(s->name)) < 0 ||
	    json_object_set_new(j, "memory", json_integer((json_int_t)s->memory)) < 0 ||
	    json_object_set_new(j, "vcpus", json_integer(s->vcpus)) < 0 ||
	    json_object_set_new(j, "machine", json_string(s->machine)) < 0 ||
	    json_object_set_new(j, "kernel", s->kernel ? json_string(s->kernel) : json_null()) < 0 ||
	    json_object_set_new(j, "initrd", s->initrd ? json_string(s->initrd) : json_null()) < 0 ||
	    json_object_set_new(j, "append", s->append ? json_string(s->append) : json_null()) < 0 ||
	    json_object_set_new(j, "disks", disks) < 0 ||
	    json_object_set_new(j, "accel", json_string(s->accel)) < 0 ||
	    json_object_set_new(j, "display", json_string(s->vnc ? "vnc" : "none")) < 0 ||
	    json_object_set_new(j, "extra-args", extra) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
fail:
	json_decref(j);
	json_decref(disks);
	json_decref(extra);
	json_decref(vnc);
	return NULL;
}

void
spec_free(struct guest_spec *s)
{
	if (s == NULL)
		return;
	free(s->machine);
	free(s->kernel);
	free(s->initrd);
	free(s->append);
	free(s->accel);
	for (unsigned i = 0; i < s->ndisks; i++) {
		free(s->disks[i].path);
		free(s->disks[i].format);
	}
	for (unsigned i = 0; i < s->nextra; i++)
		free(s->extra[i]);
	free(s);
}

bool
spec_has_writable_disk(const struct guest_spec *s)
{
	for (unsigned i = 0; i < s->ndisks; i++)
		if (s->disks[i].mode == SPEC_DISK_RW)
			return true;
	return false;
}

/* Append a formatted argument; the vector was sized by the caller. */
static int
push(struct qemu_argv *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
push(struct qemu_argv *a, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&a->argv[a->argc], fmt, ap);
	va_end(ap);
	if (n < 0) {
		a->argv[a->argc] = NULL;
		return -ENOMEM;
	}
	a->argc++;
	return 0;
}

/* QEMU option values escape a comma by doubling it. */
static char *
qemu_escape(const char *s)
{
	size_t n = strlen(s), extra = 0;
	char *o, *p;

	for (size_t i = 0; i < n; i++)
		extra += s[i] == ',';
	o = malloc(n + extra + 1);
	if (o == NULL)
		return NULL;
	for (p = o; *s; s++) {
		*p++ = *s;
		if (*s == ',')
			*p++ = ',';
	}
	*p = '\0';
	return o;
}

int
spec_build_argv(const struct guest_spec *s, const struct qemu_run *run,
		struct qemu_argv **out)
{
	struct qemu_argv *a;
	char *ram = NULL, *ser = NULL, *vnc = NULL;
	int rc = -ENOMEM;

	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->argv = calloc(64 + 2 * SPEC_MAX_DISKS + SPEC_MAX_EXTRA, sizeof(char *));
	if (a->argv == NULL)
		goto out;
	if ((run->ram_file && (ram = qemu_escape(run->ram_file)) == NULL) ||
	    (ser = qemu_escape(run->serial_path)) == NULL ||
	    (run->vnc_path && (vnc = qemu_escape(run->vnc_path)) == NULL))
		goto out;

	if (push(a, "%s", run->qemu) < 0 ||
	    push(a, "-name") < 0 || push(a, "guest=%s", s->name) < 0 ||
	    push(a, "-nodefaults") < 0 || push(a, "-no-user-config") < 0 ||
	    push(a, "-machine") < 0 ||
	    push(a, "%s,memory-backend=%s", s->machine, SPEC_RAM_ID) < 0 ||
	    push(a, "-accel") < 0 || push(a, "%s", s->accel) < 0 ||
	    push(a, "-m") < 0 || push(a, "%llu",
					(unsigned long long)(s->memory >> 20)) < 0 ||
	    push(a, "-smp") < 0 || push(a, "%u", s->vcpus) < 0 ||
	    push(a, "-object") < 0)
		goto out;
	if (ram != NULL)
		rc = push(a, "memory-backend-file,id=%s,size=%llu,mem-path=%s,"
			  "share=off", SPEC_RAM_ID,
			  (unsigned long long)s->memory, ram);
	else
		rc = push(a, "memory-backend-ram,id=%s,size=%llu",
			  SPEC_RAM_ID, (unsigned long long)s->memory);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	if (push(a, "-chardev") < 0 ||
	    push(a, "socket,id=snapd-qmp,fd=%d,server=on,wait=off",
		 run->qmp_listen_fd) < 0 ||
	    push(a, "-mon") < 0 || push(a, "chardev=snapd-qmp,mode=control") < 0 ||
	    push(a, "-chardev") < 0 ||
	    push(a, "file,id=snapd-serial,path=%s", ser) < 0 ||
	    push(a, "-serial") < 0 || push(a, "chardev:snapd-serial") < 0 ||
	    push(a, "-display") < 0 || push(a, "none") < 0)
		goto out;
	if (s->vnc && vnc != NULL &&
	    (push(a, "-vga") < 0 || push(a, "std") < 0 ||
	     push(a, "-vnc") < 0 || push(a, "unix:%s", vnc) < 0))
		goto out;
	if (s->kernel != NULL &&
	    (push(a, "-kernel") < 0 || push(a, "%s", s->kernel) < 0))
		goto out;
	if (s->initrd != NULL &&
	    (push(a, "-initrd") < 0 || push(a, "%s", s->initrd) < 0))
		goto out;
	if (s->append != NULL &&
	    (push(a, "-append") < 0 || push(a, "%s", s->append) < 0))
		goto out;
	for (unsigned i = 0; i < s->ndisks; i++) {
		const struct spec_disk *d = &s->disks[i];
		if (push(a, "-drive") < 0 ||
		    push(a, "file=%s,format=%s,if=virtio%s", d->path, d->format,
			 d->mode == SPEC_DISK_RO ? ",readonly=on" : "") < 0)
			goto out;
	}
	if (run->incoming && (push(a, "-incoming") < 0 || push(a, "defer") < 0))
		goto out;
	if (run->paused && push(a, "-S") < 0)
		goto out;
	for (unsigned i = 0; i < s->nextra; i++)
		if (push(a, "%s", s->extra[i]) < 0)
			goto out;
	*out = a;
	a = NULL;
	rc = 0;
out:
	free(ram);
	free(ser);
	free(vnc);
	argv_free(a);
	return rc;
}

void
argv_free(struct qemu_argv *a)
{
	if (a == NULL)
		return;
	if (a->argv != NULL)
		for (unsigned i = 0; i < a->argc; i++)
			free(a->argv[i]);
	free(a->argv);
	free(a);
}

json_t *
argv_to_json(const struct qemu_argv *a)
{
	json_t *arr = json_array();

	if (arr == NULL)
		return NULL;
	for (unsigned i = 0; i < a->argc; i++) {
		if (json_array_append_new(arr, json_string(a->argv[i])) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}
