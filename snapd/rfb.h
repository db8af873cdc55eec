/*
 * snapd/rfb.h: the parts of the RFB (VNC) protocol that snapd's display
 * proxy needs: message framing in both directions, the encodings it lets
 * through to QEMU, pixel formats and VNC authentication.
 *
 * Everything here is pure: functions look at byte buffers and never do I/O,
 * so they are unit-tested and fuzzable without sockets. Framing functions
 * return the length of the complete message at the start of a buffer, 0
 * when more bytes are needed, or a negative error: -EPROTO for a message
 * type or encoding the proxy does not accept, -EMSGSIZE for a message over
 * the limits below. A caller forwards a message only once it is complete,
 * so a message is never split between two upstream servers.
 *
 * Only encodings that carry no state from one message to the next are
 * allowed toward QEMU (rfb_filter_encodings): Raw, CopyRect, RRE, Hextile
 * and the pseudo-encodings listed in rfb_enc_allowed(). zlib, ZRLE and
 * Tight keep compressor state for a whole connection, which a new server
 * cannot continue, so a client that asks for them gets Raw or Hextile.
 */
#ifndef SNAPD_RFB_H
#define SNAPD_RFB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RFB_VERSION_38   "RFB 003.008\n"
#define RFB_VERSION_LEN  12

#define RFB_SEC_NONE     1
#define RFB_SEC_VNC      2

/* Client to server message types. */
#define RFB_C_SET_PIXEL_FORMAT   0
#define RFB_C_SET_ENCODINGS      2
#define RFB_C_UPDATE_REQUEST     3
#define RFB_C_KEY                4
#define RFB_C_POINTER            5
#define RFB_C_CUT_TEXT           6
#define RFB_C_CONT_UPDATES       150
#define RFB_C_FENCE              248
#define RFB_C_XVP                250
#define RFB_C_SET_DESKTOP_SIZE   251
#define RFB_C_QEMU               255

/* Server to client message types. */
#define RFB_S_UPDATE             0
#define RFB_S_COLOUR_MAP         1
#define RFB_S_BELL               2
#define RFB_S_CUT_TEXT           3
#define RFB_S_QEMU               255

/* Encodings and pseudo-encodings. */
#define RFB_ENC_RAW              0
#define RFB_ENC_COPYRECT         1
#define RFB_ENC_RRE              2
#define RFB_ENC_HEXTILE          5
#define RFB_ENC_ZLIB             6
#define RFB_ENC_TIGHT            7
#define RFB_ENC_ZRLE             16
#define RFB_ENC_CURSOR           (-239)
#define RFB_ENC_DESKTOP_SIZE     (-223)
#define RFB_ENC_LAST_RECT        (-224)
#define RFB_ENC_QEMU_POINTER     (-257)
#define RFB_ENC_QEMU_EXT_KEY     (-258)
#define RFB_ENC_QEMU_AUDIO       (-259)
#define RFB_ENC_QEMU_LED         (-261)
#define RFB_ENC_DESKTOP_NAME     (-307)
#define RFB_ENC_EXT_DESKTOP_SIZE (-308)
#define RFB_ENC_ALPHA_CURSOR     (-314)

/* Limits. */
#define RFB_MAX_ENCODINGS  256          /* entries in one SetEncodings */
#define RFB_MAX_CUT_TEXT   (1u << 20)   /* clipboard text, either way */
#define RFB_MAX_DIM        8192         /* framebuffer width or height */
#define RFB_MAX_MSG        (256u << 20) /* one server message */
#define RFB_MAX_NAME       4096         /* desktop name */

struct rfb_pixfmt {
	uint8_t bpp, depth, big_endian, true_colour;
	uint16_t red_max, green_max, blue_max;
	uint8_t red_shift, green_shift, blue_shift;
};

/* QEMU's own format: 32 bpp, depth 24, little endian, shifts 16/8/0. */
extern const struct rfb_pixfmt rfb_pixfmt_default;

/* Decode / encode the 16-byte PIXEL_FORMAT structure. */
void rfb_pixfmt_get(const uint8_t p[16], struct rfb_pixfmt *f);
void rfb_pixfmt_put(const struct rfb_pixfmt *f, uint8_t p[16]);
/* Can QEMU produce it? (8, 16 or 32 bits per pixel, depth not above.) */
bool rfb_pixfmt_valid(const struct rfb_pixfmt *f);

/*
 * Parse the 12-byte ProtocolVersion a client sent. Returns the minor
 * version the session uses (3, 7 or 8: 3.4-3.6 count as 3.3, anything
 * newer than 3.8 as 3.8), or -EPROTO.
 */
int rfb_parse_version(const uint8_t p[RFB_VERSION_LEN]);

/* Length of the complete client message at @p (see the header comment). */
ssize_t rfb_client_msg_len(const uint8_t *p, size_t n);

/*
 * Length of the complete server message at @p, pixel data being @bpp bits
 * per pixel (8, 16 or 32).
 */
ssize_t rfb_server_msg_len(const uint8_t *p, size_t n, unsigned bpp);

/* Is encoding @e allowed toward QEMU? */
bool rfb_enc_allowed(int32_t e);

/*
 * Keep the allowed entries of @in (order kept, duplicates dropped) in
 * @out, which has room for @n + 1 entries; Raw is added when missing.
 * Returns the number of entries written.
 */
size_t rfb_filter_encodings(const int32_t *in, size_t n, int32_t *out);

/*
 * The 16-byte response to a VNC authentication @challenge for @password
 * (its first 8 bytes, zero-padded; each key byte bit-reversed, as VNC
 * does, then DES-ECB over both halves).
 */
void rfb_vnc_auth(const char *password, const uint8_t challenge[16],
		  uint8_t out[16]);

#endif
