/*
 * snapd/vncproxy.h: a guest's public VNC endpoint, kept across restores.
 *
 * One struct vncproxy per guest whose spec has display "vnc"; it is created
 * with the guest (vncproxy_open, from guest_add) and lives until the guest
 * is undefined (vncproxy_free), whatever happens to its QEMU processes. It
 * listens on the spec's "vnc.listen" TCP address and terminates RFB toward
 * each client (versions 3.3, 3.7, 3.8; security None, or VNC
 * authentication checked here when the spec has a password).
 *
 * For each client it opens its own RFB session to an upstream: the
 * guest's QEMU through HOME/guests/NAME/vnc.sock, or another snapd's
 * endpoint after client_migrate_info. Upstream sessions change; the
 * client's never does. On each new upstream the proxy replays the client's
 * pixel format and encodings (filtered to stateless ones, rfb.h), releases
 * keys and buttons the client holds, announces a size change
 * (ExtendedDesktopSize or DesktopSize; a client that supports neither is
 * closed, as it cannot follow) and asks for a full frame. Messages are
 * forwarded whole in both directions, so no message is ever split between
 * two upstreams.
 *
 * While a client has no upstream it stays connected for the spec's
 * "vnc.hold-s" seconds; then it is closed. Limits: VNCPROXY_MAX_CLIENTS
 * clients per guest, the message limits of rfb.h, and reading from an
 * upstream pauses while VNCPROXY_MAX_OUTBUF bytes wait for a slow client.
 *
 * Hand-over (client_migrate_info): vncproxy_set_target() records another
 * host's endpoint. The next time this guest's QEMU goes away other than
 * by a local restore (vm-stop, the guest quitting, a crash), or at once
 * when it has no QEMU, every client is connected to that endpoint as an
 * RFB client and keeps being served from it. The target is used once.
 *
 * Every re-pointing round (a QEMU became ready, or a hand-over) ends with
 * the event CLIENTS_REPOINTED {vm, target, moved, failed, failures:
 * [{client: "ADDR:PORT", reason}]} once every client involved has a
 * working upstream or failed (a failed client is closed). A round with no
 * clients sends no event.
 *
 * Everything runs on the loop thread; nothing blocks.
 */
#ifndef SNAPD_VNCPROXY_H
#define SNAPD_VNCPROXY_H

#include <stdbool.h>

#include <jansson.h>

#define VNCPROXY_MAX_CLIENTS 16
#define VNCPROXY_MAX_OUTBUF  (32u << 20)

struct guest;
struct vncproxy;
struct snap_err;

/*
 * Listen on @g's endpoint. When the spec's port is taken and @any_port is
 * true, an automatic port is used instead (a restore that defines a guest
 * from another host's snapshot). Returns 0 and *out, or -errno with a
 * message in @err.
 */
int vncproxy_open(struct guest *g, bool any_port, struct vncproxy **out,
		  struct snap_err *err);

/* Close the endpoint and every client. NULL ok. */
void vncproxy_free(struct vncproxy *p);

/* The guest's QEMU is ready (its VNC socket listens): attach clients. */
void vncproxy_qemu_ready(struct vncproxy *p);

/* The guest's QEMU is gone; @local_restore: a restore replaces it here. */
void vncproxy_qemu_gone(struct vncproxy *p, bool local_restore);

/*
 * Record where clients go at the guest's next resume elsewhere. @host is
 * a numeric address; @password may be NULL. @qemu_running: whether the
 * guest has a QEMU now (if not, the hand-over starts at once).
 */
void vncproxy_set_target(struct vncproxy *p, const char *host, unsigned port,
			 const char *password, bool qemu_running);

/* The TCP port the endpoint listens on. */
unsigned vncproxy_port(const struct vncproxy *p);

/* {"host", "port", "clients", "password": bool, "target"?} for query-vms. */
json_t *vncproxy_to_json(const struct vncproxy *p);

#endif
