/*
 * snapd/rfb.c: RFB message framing, the stateless encoding filter, pixel
 * formats and VNC authentication (DES from nettle) for the display proxy.
 * The protocol is RFC 6143 plus the pseudo-encodings QEMU implements; the
 * framing rules are in rfb.h.
 */
#include <errno.h>
#include <string.h>

#include <nettle/des.h>

#include "common/util.h"
#include "snapd/rfb.h"

const struct rfb_pixfmt rfb_pixfmt_default = {
	.bpp = 32, .depth = 24, .big_endian = 0, .true_colour = 1,
	.red_max = 255, .green_max = 255, .blue_max = 255,
	.red_shift = 16, .green_shift = 8, .blue_shift = 0,
};

void
rfb_pixfmt_get(const uint8_t p[16], struct rfb_pixfmt *f)
{
	f->bpp = p[0];
	f->depth = p[1];
	f->big_endian = p[2] != 0;
	f->true_colour = p[3] != 0;
	f->red_max = snap_get_be16(p + 4);
	f->green_max = snap_get_be16(p + 6);
	f->blue_max = snap_get_be16(p + 8);
	f->red_shift = p[10];
	f->green_shift = p[11];
	f->blue_shift = p[12];
}

void
rfb_pixfmt_put(const struct rfb_pixfmt *f, uint8_t p[16])
{
	memset(p, 0, 16);
	p[0] = f->bpp;
	p[1] = f->depth;
	p[2] = f->big_endian;
	p[3] = f->true_colour;
	snap_put_be16(p + 4, f->red_max);
	snap_put_be16(p + 6, f->green_max);
	snap_put_be16(p + 8, f->blue_max);
	p[10] = f->red_shift;
	p[11] = f->green_shift;
	p[12] = f->blue_shift;
}

bool
rfb_pixfmt_valid(const struct rfb_pixfmt *f)
{
	return (f->bpp == 8 || f->bpp == 16 || f->bpp == 32) &&
	       f->depth > 0 && f->depth <= f->bpp;
}

int
rfb_parse_version(const uint8_t p[RFB_VERSION_LEN])
{
	int major = 0, minor = 0;

	if (memcmp(p, "RFB ", 4) != 0 || p[7] != '.' || p[11] != '\n')
		return -EPROTO;
	for (int i = 4; i < 7; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EPROTO;
		major = major * 10 + (p[i] - '0');
	}
	for (int i = 8; i < 11; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EPROTO;
		minor = minor * 10 + (p[i] - '0');
	}
	if (major != 3)
		return -EPROTO;
	if (minor < 7)
		return 3;
	return minor == 7 ? 7 : 8;
}

ssize_t
rfb_client_msg_len(const uint8_t *p, size_t n)
{
	size_t need;

	if (n < 1)
		return 0;
	switch (p[0]) {
	case RFB_C_SET_PIXEL_FORMAT:
		need = 20;
		break;
	case RFB_C_SET_ENCODINGS:
		if (n < 4)
			return 0;
		if (snap_get_be16(p + 2) > RFB_MAX_ENCODINGS)
			return -EMSGSIZE;
		need = 4 + 4u * snap_get_be16(p + 2);
		break;
	case RFB_C_UPDATE_REQUEST:
		need = 10;
		break;
	case RFB_C_KEY:
		need = 8;
		break;
	case RFB_C_POINTER:
		need = 6;
		break;
	case RFB_C_CUT_TEXT: {
		int32_t len;

		if (n < 8)
			return 0;
		len = (int32_t)snap_get_be32(p + 4);
		/* A negative length is the extended clipboard's. */
		if (len == INT32_MIN)
			return -EMSGSIZE;
		if (len < 0)
			len = -len;
		if ((uint32_t)len > RFB_MAX_CUT_TEXT)
			return -EMSGSIZE;
		need = 8 + (size_t)len;
		break;
	}
	case RFB_C_CONT_UPDATES:
		need = 10;
		break;
	case RFB_C_FENCE:
		if (n < 9)
			return 0;
		if (p[8] > 64)
			return -EMSGSIZE;
		need = 9 + (size_t)p[8];
		break;
	case RFB_C_XVP:
		need = 4;
		break;
	case RFB_C_SET_DESKTOP_SIZE:
		if (n < 8)
			return 0;
		if (p[6] == 0 || p[6] > 16)
			return -EMSGSIZE;
		need = 8 + 16u * p[6];
		break;
	case RFB_C_QEMU:
		if (n < 2)
			return 0;
		if (p[1] == 0) {            /* extended key event */
			need = 12;
		} else if (p[1] == 1) {     /* audio */
			if (n < 4)
				return 0;
			switch (snap_get_be16(p + 2)) {
			case 0:
			case 1:
				need = 4;
				break;
			case 2:
				need = 10;
				break;
			default:
				return -EPROTO;
			}
		} else {
			return -EPROTO;
		}
		break;
	default:
		return -EPROTO;
	}
	return n >= need ? (ssize_t)need : 0;
}

/* Bytes of Hextile data for a w x h rectangle at @p (n available). */
static ssize_t
hextile_len(const uint8_t *p, size_t n, unsigned w, unsigned h, unsigned bpp)
{
	size_t off = 0;

	for (unsigned ty = 0; ty < h; ty += 16) {
		unsigned th = h - ty < 16 ? h - ty : 16;
		for (unsigned tx = 0; tx < w; tx += 16) {
			unsigned tw = w - tx < 16 ? w - tx : 16;
			uint8_t sub;

			if (off >= n)
				return 0;
			sub = p[off++];
			if (sub & 1) {          /* Raw tile */
				off += (size_t)tw * th * bpp;
				continue;
			}
			if (sub & 2)            /* BackgroundSpecified */
				off += bpp;
			if (sub & 4)            /* ForegroundSpecified */
				off += bpp;
			if (sub & 8) {          /* AnySubrects */
				if (off >= n)
					return 0;
				unsigned ns = p[off++];
				off += (size_t)ns * ((sub & 16) ? bpp + 2 : 2);
			}
		}
	}
	return off <= n ? (ssize_t)off : 0;
}

/* Bytes after the 12-byte header of one rectangle; 0 with *more when the
 * buffer is too short. */
static ssize_t
rect_len(const uint8_t *p, size_t n, unsigned bpp, bool *more)
{
	unsigned w = snap_get_be16(p + 4), h = snap_get_be16(p + 6);
	int32_t enc = (int32_t)snap_get_be32(p + 8);
	const uint8_t *d = p + 12;
	size_t avail = n - 12;
	uint64_t need;
	ssize_t hl;

	*more = false;
	if (w > RFB_MAX_DIM || h > RFB_MAX_DIM)
		return -EMSGSIZE;
	switch (enc) {
	case RFB_ENC_RAW:
		need = (uint64_t)w * h * bpp;
		break;
	case RFB_ENC_COPYRECT:
		need = 4;
		break;
	case RFB_ENC_RRE:
		if (avail < 4) {
			*more = true;
			return 0;
		}
		need = 4 + bpp + (uint64_t)snap_get_be32(d) * (bpp + 8);
		break;
	case RFB_ENC_HEXTILE:
		hl = hextile_len(d, avail, w, h, bpp);
		if (hl == 0 && w > 0 && h > 0) {
			*more = true;
			return 0;
		}
		need = (uint64_t)hl;
		break;
	case RFB_ENC_DESKTOP_SIZE:
	case RFB_ENC_LAST_RECT:
	case RFB_ENC_QEMU_POINTER:
	case RFB_ENC_QEMU_EXT_KEY:
		need = 0;
		break;
	case RFB_ENC_QEMU_LED:
		need = 1;
		break;
	case RFB_ENC_EXT_DESKTOP_SIZE:
		if (avail < 1) {
			*more = true;
			return 0;
		}
		need = 4 + 16u * d[0];
		break;
	case RFB_ENC_DESKTOP_NAME:
		if (avail < 4) {
			*more = true;
			return 0;
		}
		if (snap_get_be32(d) > RFB_MAX_NAME)
			return -EMSGSIZE;
		need = 4 + (uint64_t)snap_get_be32(d);
		break;
	case RFB_ENC_CURSOR:
		need = (uint64_t)w * h * bpp + (uint64_t)((w + 7) / 8) * h;
		break;
	case RFB_ENC_ALPHA_CURSOR:
		need = 4 + (uint64_t)w * h * 4;
		break;
	default:
		return -EPROTO;
	}
	if (need > RFB_MAX_MSG)
		return -EMSGSIZE;
	if (need > avail) {
		*more = true;
		return 0;
	}
	return (ssize_t)need;
}

ssize_t
rfb_server_msg_len(const uint8_t *p, size_t n, unsigned bpp)
{
	size_t off, need;
	unsigned nrects;

	if (bpp != 8 && bpp != 16 && bpp != 32)
		return -EINVAL;
	bpp /= 8;
	if (n < 1)
		return 0;
	switch (p[0]) {
	case RFB_S_UPDATE:
		if (n < 4)
			return 0;
		nrects = snap_get_be16(p + 2);
		off = 4;
		for (unsigned i = 0; i < nrects; i++) {
			bool more;
			ssize_t rl;

			if (n - off < 12)
				return 0;
			rl = rect_len(p + off, n - off, bpp, &more);
			if (rl < 0)
				return rl;
			if (more)
				return 0;
			off += 12 + (size_t)rl;
			if (off > RFB_MAX_MSG)
				return -EMSGSIZE;
			if ((int32_t)snap_get_be32(p + off - (size_t)rl - 4) ==
			    RFB_ENC_LAST_RECT)
				break;
		}
		return (ssize_t)off;
	case RFB_S_COLOUR_MAP:
		if (n < 6)
			return 0;
		need = 6 + 6u * snap_get_be16(p + 4);
		break;
	case RFB_S_BELL:
		need = 1;
		break;
	case RFB_S_CUT_TEXT:
		if (n < 8)
			return 0;
		if (snap_get_be32(p + 4) > RFB_MAX_CUT_TEXT)
			return -EMSGSIZE;
		need = 8 + snap_get_be32(p + 4);
		break;
	case RFB_S_QEMU:
		if (n < 4)
			return 0;
		if (p[1] != 1)
			return -EPROTO;
		switch (snap_get_be16(p + 2)) {
		case 0:
		case 1:
			need = 4;
			break;
		case 2:
			if (n < 8)
				return 0;
			if (snap_get_be32(p + 4) > RFB_MAX_CUT_TEXT)
				return -EMSGSIZE;
			need = 8 + snap_get_be32(p + 4);
			break;
		default:
			return -EPROTO;
		}
		break;
	default:
		return -EPROTO;
	}
	return n >= need ? (ssize_t)need : 0;
}

bool
rfb_enc_allowed(int32_t e)
{
	switch (e) {
	case RFB_ENC_RAW:
	case RFB_ENC_COPYRECT:
	case RFB_ENC_RRE:
	case RFB_ENC_HEXTILE:
	case RFB_ENC_CURSOR:
	case RFB_ENC_DESKTOP_SIZE:
	case RFB_ENC_LAST_RECT:
	case RFB_ENC_QEMU_POINTER:
	case RFB_ENC_QEMU_EXT_KEY:
	case RFB_ENC_QEMU_LED:
	case RFB_ENC_DESKTOP_NAME:
	case RFB_ENC_EXT_DESKTOP_SIZE:
	case RFB_ENC_ALPHA_CURSOR:
		return true;
	default:
		return false;
	}
}

size_t
rfb_filter_encodings(const int32_t *in, size_t n, int32_t *out)
{
	size_t k = 0;
	bool raw = false;

	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		if (!rfb_enc_allowed(in[i]))
			continue;
		for (size_t j = 0; j < k; j++)
			dup |= out[j] == in[i];
		if (dup)
			continue;
		raw |= in[i] == RFB_ENC_RAW;
		out[k++] = in[i];
	}
	if (!raw)
		out[k++] = RFB_ENC_RAW;
	return k;
}

static uint8_t
bit_reverse(uint8_t b)
{
	b = (uint8_t)((b & 0xf0) >> 4 | (b & 0x0f) << 4);
	b = (uint8_t)((b & 0xcc) >> 2 | (b & 0x33) << 2);
	b = (uint8_t)((b & 0xaa) >> 1 | (b & 0x55) << 1);
	return b;
}

void
rfb_vnc_auth(const char *password, const uint8_t challenge[16],
	     uint8_t out[16])
{
	struct des_ctx ctx;
	uint8_t key[DES_KEY_SIZE] = { 0 };
	size_t n = strlen(password);

	for (size_t i = 0; i < DES_KEY_SIZE && i < n; i++)
		key[i] = bit_reverse((uint8_t)password[i]);
	/* des_set_key reports weak keys; VNC uses them all the same. */
	(void)des_set_key(&ctx, key);
	des_encrypt(&ctx, 16, out, challenge);
	memset(&ctx, 0, sizeof(ctx));
	memset(key, 0, sizeof(key));
}
