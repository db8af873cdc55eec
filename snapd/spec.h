/*
 * snapd/spec.h: a guest's specification and the QEMU command line built
 * from it.
 *
 * A spec is what a user defines (JSON on the control socket, stored as JSON
 * in the catalog and in every snapshot). spec_from_json() validates all of
 * it; a struct guest_spec that exists is valid. spec_to_json() gives back
 * the canonical form (every field present, sizes in bytes), so that two
 * equal specs have equal JSON.
 *
 * spec_build_argv() turns a spec plus the run-time paths and fds of one
 * QEMU process into an argv. It always:
 *   - gives main RAM a named memory backend ("ram0"): anonymous RAM for a
 *     fresh boot, or the snapshot file mapped copy-on-write (share=off) for
 *     a lazy restore;
 *   - puts QMP on a listening socket that snapd created and passes as an fd;
 *   - puts VNC on a private UNIX socket and the serial console in a file;
 *   - uses -nodefaults and the spec's pinned machine type.
 *
 * Ownership: guest_spec and qemu_argv are owned by the caller and released
 * with spec_free() / argv_free(); both accept NULL.
 */
#ifndef SNAPD_SPEC_H
#define SNAPD_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct snap_err;

#define SPEC_NAME_MAX     64
#define SPEC_MAX_DISKS    8
#define SPEC_MAX_EXTRA    64
#define SPEC_MIN_MEMORY   (16ull << 20)
#define SPEC_MAX_MEMORY   (1ull << 40)
#define SPEC_MAX_VCPUS    64
#define SPEC_RAM_ID       "ram0"

enum spec_disk_mode {
	SPEC_DISK_RW,        /* writable: saving is refused (not captured) */
	SPEC_DISK_RO,        /* read-only to the guest */
	SPEC_DISK_EXTERNAL,  /* writable, but its contents are managed elsewhere */
};

struct spec_disk {
	char *path;
	char *format;          /* "raw" or "qcow2" */
	enum spec_disk_mode mode;
};

/*
 * The guest's public VNC endpoint, served by snapd's display proxy
 * (vncproxy.h): "listen" is "ADDR:PORT" or "ADDR:auto" with a numeric IPv4
 * address or a bracketed IPv6 one (default "127.0.0.1:auto"); "password"
 * (1 to 8 bytes, VNC authentication) is optional; "hold-s" is how long
 * clients wait connected while the guest has no QEMU.
 */
#define SPEC_VNC_PASSWORD_MAX 8
#define SPEC_VNC_HOLD_DEFAULT 60
#define SPEC_VNC_HOLD_MAX     3600

struct spec_vnc {
	char host[48];         /* numeric address, without brackets */
	unsigned port;         /* 0: chosen by the system */
	char password[SPEC_VNC_PASSWORD_MAX + 1]; /* "" when none */
	unsigned hold_s;       /* 1..SPEC_VNC_HOLD_MAX */
};

struct guest_spec {
	char name[SPEC_NAME_MAX + 1];
	uint64_t memory;       /* bytes, multiple of 2 MiB */
	unsigned vcpus;
	char *machine;         /* pinned, versioned: "pc-i440fx-7.2" */
	char *kernel, *initrd, *append;   /* NULL when absent */
	struct spec_disk disks[SPEC_MAX_DISKS];
	unsigned ndisks;
	char *accel;           /* "tcg" or "kvm" */
	bool vnc;              /* display through VNC (a VGA card is added) */
	struct spec_vnc vnc_ep;  /* its public endpoint, when vnc */
	char *extra[SPEC_MAX_EXTRA];
	unsigned nextra;
};

/* Is @name usable as a guest or snapshot name? [A-Za-z0-9_.-], not
 * starting with '.' or '-', 1..SPEC_NAME_MAX bytes. */
bool spec_name_valid(const char *name);

/*
 * Parse and validate @j. Returns 0 and *out, or SNAP_ECONFIG with a
 * message naming the bad field in @err.
 */
int spec_from_json(const json_t *j, struct guest_spec **out,
		   struct snap_err *err);

/* Canonical JSON of @s (new reference), or NULL on allocation failure. */
json_t *spec_to_json(const struct guest_spec *s);

void spec_free(struct guest_spec *s);

/* Does the spec have a writable disk whose contents a save would miss? */
bool spec_has_writable_disk(const struct guest_spec *s);

struct qemu_run {
	const char *qemu;          /* binary, e.g. "qemu-system-x86_64" */
	int qmp_listen_fd;         /* listening socket passed to QEMU */
	const char *vnc_path;      /* private VNC socket (NULL: no VNC) */
	const char *serial_path;   /* serial console log file */
	const char *ram_file;      /* lazy restore: map this file as RAM */
	bool incoming;             /* -incoming defer */
	bool paused;               /* -S */
};

struct qemu_argv {
	char **argv;               /* NULL-terminated */
	unsigned argc;
};

/* Build the argv. Returns 0 and *out, or -ENOMEM / -ENAMETOOLONG. */
int spec_build_argv(const struct guest_spec *s, const struct qemu_run *run,
		    struct qemu_argv **out);

void argv_free(struct qemu_argv *a);

/* The argv as one JSON array of strings (new reference) for the records. */
json_t *argv_to_json(const struct qemu_argv *a);

#endif
