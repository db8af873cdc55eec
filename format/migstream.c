/*
 * format/migstream.c: the QEMU 7.2 migration stream parser, byte by byte.
 *
 * The parser is a push state machine: every state needs a fixed number of
 * bytes (a field, a name, a page). When the fed buffer holds them, the
 * state works on them in place; otherwise they are gathered in a staging
 * buffer across calls. So a page that is contiguous in the caller's buffer
 * reaches the page callback without a copy, and feeding one byte at a time
 * gives the same result as feeding everything at once. The bytes before
 * the RAM START section are also kept verbatim as the preamble; everything
 * after the RAM END footer is passed through as device state. The
 * synthesizer (format/migsynth.c) uses mig_preamble_check() from here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "format/migstream.h"
#include "format/migstream_int.h"

#define VMDESC_CANDS            8

#define PAGE_BITS               12u

enum pstate {
	PS_HEADER,      /* be32 magic, be32 version */
	PS_CONFIG,      /* the configuration record type */
	PS_CONFIG_LEN,  /* be32 machine name length */
	PS_CONFIG_NAME,
	PS_TOP,         /* one record type byte */
	PS_SUB_LEN,     /* configuration subsection: name length */
	PS_SUB_NAME,
	PS_SUB_VERSION, /* be32 */
	PS_SUB_PAGEBITS,/* be32 target page bits */
	PS_SUB_UUID,    /* 16 bytes */
	PS_CAP_COUNT,   /* be32 */
	PS_CAP_LEN,
	PS_CAP_NAME,
	PS_CMD,         /* be16 command, be16 length */
	PS_CMD_DATA,
	PS_SEC_ID,      /* START/FULL: be32 section id, u8 idstr length */
	PS_SEC_IDSTR,
	PS_SEC_VERS,    /* be32 instance id, be32 version id */
	PS_PART_ID,     /* PART/END: be32 section id */
	PS_MEMSIZE,     /* be64 total | MEM_SIZE */
	PS_BLK_LEN,
	PS_BLK_NAME,
	PS_BLK_SIZE,    /* be64 used_length [, be64 addr] */
	PS_REC,         /* be64 offset | flags */
	PS_REC_IDLEN,
	PS_REC_IDSTR,
	PS_REC_FILL,
	PS_REC_PAGE,
	PS_FOOTER,      /* 0x7E, be32 section id */
	PS_DEVICE,
	PS_FAILED,
};

static const char *const state_names[] = {
	[PS_HEADER] = "file header",
	[PS_CONFIG] = "configuration",
	[PS_CONFIG_LEN] = "configuration",
	[PS_CONFIG_NAME] = "configuration machine type",
	[PS_TOP] = "record type",
	[PS_SUB_LEN] = "configuration subsection",
	[PS_SUB_NAME] = "configuration subsection",
	[PS_SUB_VERSION] = "configuration subsection",
	[PS_SUB_PAGEBITS] = "configuration subsection",
	[PS_SUB_UUID] = "configuration subsection",
	[PS_CAP_COUNT] = "capability list",
	[PS_CAP_LEN] = "capability list",
	[PS_CAP_NAME] = "capability list",
	[PS_CMD] = "command",
	[PS_CMD_DATA] = "command",
	[PS_SEC_ID] = "section header",
	[PS_SEC_IDSTR] = "section header",
	[PS_SEC_VERS] = "section header",
	[PS_PART_ID] = "section header",
	[PS_MEMSIZE] = "ram block list",
	[PS_BLK_LEN] = "ram block list",
	[PS_BLK_NAME] = "ram block list",
	[PS_BLK_SIZE] = "ram block list",
	[PS_REC] = "ram record",
	[PS_REC_IDLEN] = "ram record",
	[PS_REC_IDSTR] = "ram record",
	[PS_REC_FILL] = "zero page record",
	[PS_REC_PAGE] = "page record",
	[PS_FOOTER] = "section footer",
	[PS_DEVICE] = "device state",
	[PS_FAILED] = "failed stream",
};

enum phase {
	PH_PREAMBLE,    /* before the RAM START section */
	PH_RAM,         /* from RAM START up to the END footer */
	PH_DEVICE,      /* after the END footer */
};

enum subsec {
	SUB_PAGEBITS,
	SUB_CAPS,
	SUB_UUID,
};

struct mig_parser {
	struct mig_parser_ops ops;
	void *opaque;

	enum pstate state;
	enum phase phase;
	size_t need;            /* bytes the current state consumes */
	size_t staged;          /* of which already in stage[] */
	uint64_t off;           /* stream bytes consumed */
	uint64_t item_off;      /* stream offset of the current item */
	uint64_t rec_off;       /* stream offset of the current record */

	/* preamble */
	uint8_t *pre;
	size_t pre_len, pre_cap;
	char machine[MIG_IDSTR_MAX + 1];
	bool subs_ok;           /* a subsection may follow here */
	bool ignore_shared;
	bool return_path;
	enum subsec sub;
	uint32_t caps_left;

	/* section headers */
	uint8_t sec_type;       /* START, PART, END or FULL being read */
	uint32_t hdr_id;        /* section id of the header being read */
	char hdr_idstr[MIG_IDSTR_MAX + 1];
	bool have_ram;
	uint32_t ram_id, ram_instance, ram_version;

	/* block list */
	struct mig_block *blocks;
	size_t nblocks;
	uint64_t total, sum;

	/* page records */
	uint64_t rec_page;      /* offset of the page being read */
	uint32_t rec_flags;
	int64_t cur_block;      /* -1 until a record names its block */
	int fill;               /* byte held in fill_page, or -1 */

	/*
	 * Where the VMDESC may start: the last few "00 06" pairs of the device
	 * state with the 5 bytes that follow (be32 length, first JSON byte).
	 * JSON text holds neither byte, so the real one is among the last
	 * pairs (only its length field can add more).
	 */
	struct {
		uint64_t pos;   /* stream offset of the 0x06 byte */
		uint8_t hdr[5];
		uint8_t have;
	} cand[VMDESC_CANDS];
	unsigned ncand;         /* next slot, round robin */
	uint8_t last_byte;      /* last device state byte */

	struct mig_stats st;
	int err_code;
	bool cb_failed;         /* err_code came from a callback */
	struct snap_err errd;

	uint8_t stage[MIG_PAGE_SIZE];
	uint8_t fill_page[MIG_PAGE_SIZE];
};

/* Copy a stream string for a message, replacing what is not printable. */
static const char *
printable(char *dst, size_t size, const void *src, size_t len)
{
	const uint8_t *s = src;
	size_t i;

	if (len >= size)
		len = size - 1;
	for (i = 0; i < len; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
	dst[i] = '\0';
	return dst;
}

static int perr(struct mig_parser *p, int code, uint64_t off,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
perr(struct mig_parser *p, int code, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	p->errd.code = code;
	p->errd.offset = off;
	va_start(ap, fmt);
	vsnprintf(p->errd.msg, sizeof(p->errd.msg), fmt, ap);
	va_end(ap);
	p->err_code = code;
	p->state = PS_FAILED;
	return code;
}

/* A callback failed: keep its code, note where. */
static int
cb_failed(struct mig_parser *p, int rc)
{
	perr(p, rc, p->rec_off, "stream consumer failed at offset %llu: %s",
	     (unsigned long long)p->rec_off, snap_strerror(rc));
	p->cb_failed = true;
	return rc;
}

static void
go(struct mig_parser *p, enum pstate st, size_t need)
{
	p->state = st;
	p->need = need;
}

static int
pre_append(struct mig_parser *p, const uint8_t *b, size_t n)
{
	if (n > MIG_PREAMBLE_MAX - p->pre_len)
		return perr(p, SNAP_ELIMIT, p->item_off,
			    "stream preamble exceeds %d bytes", MIG_PREAMBLE_MAX);
	if (p->pre_len + n > p->pre_cap) {
		size_t cap = p->pre_cap ? p->pre_cap : 512;
		uint8_t *np;

		while (cap < p->pre_len + n)
			cap *= 2;
		if (cap > MIG_PREAMBLE_MAX)
			cap = MIG_PREAMBLE_MAX;
		np = realloc(p->pre, cap);
		if (!np)
			return perr(p, -ENOMEM, p->item_off,
				    "out of memory for the stream preamble");
		p->pre = np;
		p->pre_cap = cap;
	}
	memcpy(p->pre + p->pre_len, b, n);
	p->pre_len += n;
	return 0;
}

int
mig_parser_open(struct mig_parser **out, const struct mig_parser_ops *ops,
		void *opaque)
{
	struct mig_parser *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (ops)
		p->ops = *ops;
	p->opaque = opaque;
	p->cur_block = -1;
	p->fill = -1;
	go(p, PS_HEADER, 8);
	*out = p;
	return 0;
}

void
mig_parser_free(struct mig_parser *p)
{
	if (!p)
		return;
	free(p->pre);
	free(p->blocks);
	free(p);
}

void
mig_parser_stats(const struct mig_parser *p, struct mig_stats *st)
{
	*st = p->st;
	st->bytes = p->off;
}

static int
end_preamble(struct mig_parser *p)
{
	struct mig_preamble pre = {
		.bytes = p->pre,
		.len = p->pre_len,
		.machine = p->machine,
		.ignore_shared = p->ignore_shared,
		.return_path = p->return_path,
	};
	int rc;

	if (p->ops.preamble) {
		rc = p->ops.preamble(p->opaque, &pre);
		if (rc < 0)
			return cb_failed(p, rc);
	}
	return 0;
}

/* The record type byte that opens every top-level record. */
static int
step_top(struct mig_parser *p, uint8_t t)
{
	int rc;

	p->rec_off = p->item_off;
	if (p->phase == PH_PREAMBLE) {
		switch (t) {
		case REC_SUBSECTION:
			if (!p->subs_ok)
				break;
			if ((rc = pre_append(p, &t, 1)) < 0)
				return rc;
			go(p, PS_SUB_LEN, 1);
			return 0;
		case REC_COMMAND:
			if ((rc = pre_append(p, &t, 1)) < 0)
				return rc;
			p->subs_ok = false;
			go(p, PS_CMD, 4);
			return 0;
		case REC_SECTION_START:
		case REC_SECTION_FULL:
			p->sec_type = t;
			go(p, PS_SEC_ID, 5);
			return 0;
		case REC_EOF:
			return perr(p, SNAP_ESTREAM, p->rec_off,
				    "stream has no 'ram' section (EOF at offset %llu)",
				    (unsigned long long)p->rec_off);
		default:
			break;
		}
	} else {
		switch (t) {
		case REC_SECTION_PART:
		case REC_SECTION_END:
			p->sec_type = t;
			go(p, PS_PART_ID, 4);
			return 0;
		case REC_SECTION_START:
		case REC_SECTION_FULL:
			p->sec_type = t;
			go(p, PS_SEC_ID, 5);
			return 0;
		case REC_COMMAND:
			return perr(p, SNAP_ESTREAM, p->rec_off,
				    "unsupported command inside the ram sections at offset %llu",
				    (unsigned long long)p->rec_off);
		case REC_EOF:
			return perr(p, SNAP_ECORRUPT, p->rec_off,
				    "EOF record before the 'ram' END section at offset %llu",
				    (unsigned long long)p->rec_off);
		default:
			break;
		}
	}
	return perr(p, SNAP_ECORRUPT, p->rec_off,
		    "unexpected record type 0x%02x at offset %llu", t,
		    (unsigned long long)p->rec_off);
}

static int
step_command(struct mig_parser *p, const uint8_t *b)
{
	uint16_t cmd = snap_get_be16(b), len = snap_get_be16(b + 2);

	switch (cmd) {
	case CMD_OPEN_RETURN_PATH:
		if (len != 0)
			break;
		p->return_path = true;
		go(p, PS_TOP, 1);
		return 0;
	case CMD_PING:
		if (len != 4)
			break;
		go(p, PS_CMD_DATA, 4);
		return 0;
	case CMD_ENABLE_COLO:
		return perr(p, SNAP_ESTREAM, p->rec_off,
			    "unsupported COLO command at offset %llu",
			    (unsigned long long)p->rec_off);
	default:
		if (cmd >= CMD_POSTCOPY_ADVISE && cmd <= CMD_RECV_BITMAP)
			return perr(p, SNAP_ESTREAM, p->rec_off,
				    "unsupported postcopy command %u at offset %llu",
				    cmd, (unsigned long long)p->rec_off);
		return perr(p, SNAP_ESTREAM, p->rec_off,
			    "unknown command %u at offset %llu", cmd,
			    (unsigned long long)p->rec_off);
	}
	return perr(p, SNAP_ECORRUPT, p->rec_off,
		    "command %u has length %u at offset %llu", cmd, len,
		    (unsigned long long)p->rec_off);
}

static int
step_subsection_name(struct mig_parser *p, const uint8_t *b, size_t n)
{
	static const struct {
		const char *name;
		enum subsec kind;
	} known[] = {
		{ "configuration/target-page-bits", SUB_PAGEBITS },
		{ "configuration/capabilities", SUB_CAPS },
		{ "configuration/uuid", SUB_UUID },
	};
	char name[MIG_IDSTR_MAX + 1];

	for (size_t i = 0; i < SNAP_ARRAY_SIZE(known); i++) {
		if (strlen(known[i].name) == n &&
		    memcmp(known[i].name, b, n) == 0) {
			p->sub = known[i].kind;
			go(p, PS_SUB_VERSION, 4);
			return 0;
		}
	}
	return perr(p, SNAP_ESTREAM, p->rec_off,
		    "unknown configuration subsection '%s' at offset %llu",
		    printable(name, sizeof(name), b, n),
		    (unsigned long long)p->rec_off);
}

static int
step_subsection_version(struct mig_parser *p, uint32_t v)
{
	if (v != 1)
		return perr(p, SNAP_ESTREAM, p->item_off,
			    "unsupported configuration subsection version %u at offset %llu",
			    v, (unsigned long long)p->item_off);
	switch (p->sub) {
	case SUB_PAGEBITS:
		go(p, PS_SUB_PAGEBITS, 4);
		break;
	case SUB_CAPS:
		go(p, PS_CAP_COUNT, 4);
		break;
	case SUB_UUID:
		go(p, PS_SUB_UUID, 16);
		break;
	}
	return 0;
}

static int
step_capability(struct mig_parser *p, const uint8_t *b, size_t n)
{
	char name[MIG_IDSTR_MAX + 1];

	if (n == strlen("x-ignore-shared") &&
	    memcmp(b, "x-ignore-shared", n) == 0) {
		p->ignore_shared = true;
	} else {
		return perr(p, SNAP_ESTREAM, p->item_off,
			    "unsupported capability '%s' in the configuration at offset %llu",
			    printable(name, sizeof(name), b, n),
			    (unsigned long long)p->item_off);
	}
	if (--p->caps_left > 0)
		go(p, PS_CAP_LEN, 1);
	else
		go(p, PS_TOP, 1);
	return 0;
}

/* A START or FULL header is complete (type, id, idstr, instance, version). */
static int
step_section_header(struct mig_parser *p, uint32_t instance, uint32_t version)
{
	char name[MIG_IDSTR_MAX + 1];
	int rc;

	printable(name, sizeof(name), p->hdr_idstr, strlen(p->hdr_idstr));
	if (p->sec_type == REC_SECTION_FULL)
		return perr(p, SNAP_ESTREAM, p->rec_off,
			    "device section '%s' before the end of the 'ram' section at offset %llu",
			    name, (unsigned long long)p->rec_off);
	if (strcmp(p->hdr_idstr, RAM_IDSTR) != 0)
		return perr(p, SNAP_ESTREAM, p->rec_off,
			    "unsupported iterative section '%s' at offset %llu",
			    name, (unsigned long long)p->rec_off);
	if (p->have_ram)
		return perr(p, SNAP_ECORRUPT, p->rec_off,
			    "second 'ram' START section at offset %llu",
			    (unsigned long long)p->rec_off);
	if (version != RAM_VERSION)
		return perr(p, SNAP_ESTREAM, p->rec_off,
			    "unsupported 'ram' section version %u at offset %llu",
			    version, (unsigned long long)p->rec_off);
	if ((rc = end_preamble(p)) < 0)
		return rc;
	p->phase = PH_RAM;
	p->have_ram = true;
	p->ram_id = p->hdr_id;
	p->ram_instance = instance;
	p->ram_version = version;
	p->st.sections++;
	go(p, PS_MEMSIZE, 8);
	return 0;
}

static int
step_memsize(struct mig_parser *p, uint64_t v)
{
	if ((v & RAM_FLAG_MASK) != RAM_FLAG_MEM_SIZE)
		return perr(p, SNAP_ECORRUPT, p->item_off,
			    "'ram' START section does not begin with a block list (flags 0x%llx) at offset %llu",
			    (unsigned long long)(v & RAM_FLAG_MASK),
			    (unsigned long long)p->item_off);
	p->total = v & ~RAM_FLAG_MASK;
	if (p->total == 0)
		return perr(p, SNAP_ECORRUPT, p->item_off,
			    "ram block list announces no memory at offset %llu",
			    (unsigned long long)p->item_off);
	p->sum = 0;
	go(p, PS_BLK_LEN, 1);
	return 0;
}

static int
step_block_name(struct mig_parser *p, const uint8_t *b, size_t n)
{
	char name[MIG_IDSTR_MAX + 1];
	struct mig_block *blk;

	for (size_t i = 0; i < p->nblocks; i++) {
		if (strlen(p->blocks[i].idstr) == n &&
		    memcmp(p->blocks[i].idstr, b, n) == 0)
			return perr(p, SNAP_ECORRUPT, p->item_off,
				    "ram block '%s' listed twice at offset %llu",
				    printable(name, sizeof(name), b, n),
				    (unsigned long long)p->item_off);
	}
	if (memchr(b, '\0', n))
		return perr(p, SNAP_ECORRUPT, p->item_off,
			    "ram block name contains a NUL byte at offset %llu",
			    (unsigned long long)p->item_off);
	if (p->nblocks % 16 == 0) {
		struct mig_block *nb;

		nb = realloc(p->blocks, (p->nblocks + 16) * sizeof(*nb));
		if (!nb)
			return perr(p, -ENOMEM, p->item_off,
				    "out of memory for the ram block list");
		p->blocks = nb;
	}
	blk = &p->blocks[p->nblocks];
	memset(blk, 0, sizeof(*blk));
	memcpy(blk->idstr, b, n);
	go(p, PS_BLK_SIZE, p->ignore_shared ? 16 : 8);
	return 0;
}

static int
step_block_size(struct mig_parser *p, const uint8_t *b)
{
	struct mig_block *blk = &p->blocks[p->nblocks];
	uint64_t len = snap_get_be64(b);
	int rc;

	if (len == 0 || !SNAP_IS_ALIGNED(len, MIG_PAGE_SIZE))
		return perr(p, SNAP_ECORRUPT, p->item_off,
			    "ram block '%s' has invalid length 0x%llx at offset %llu",
			    blk->idstr, (unsigned long long)len,
			    (unsigned long long)p->item_off);
	if (len > p->total - p->sum)
		return perr(p, SNAP_ECORRUPT, p->item_off,
			    "ram blocks exceed the announced total 0x%llx at block '%s' at offset %llu",
			    (unsigned long long)p->total, blk->idstr,
			    (unsigned long long)p->item_off);
	blk->used_length = len;
	if (p->ignore_shared)
		blk->addr = snap_get_be64(b + 8);
	p->nblocks++;
	p->sum += len;
	if (p->sum < p->total) {
		go(p, PS_BLK_LEN, 1);
		return 0;
	}
	if (p->ops.ram) {
		struct mig_ram ram = {
			.section_id = p->ram_id,
			.instance_id = p->ram_instance,
			.version_id = p->ram_version,
			.total = p->total,
			.nblocks = p->nblocks,
			.blocks = p->blocks,
		};

		rc = p->ops.ram(p->opaque, &ram);
		if (rc < 0)
			return cb_failed(p, rc);
	}
	go(p, PS_REC, 8);
	return 0;
}

/* The current block and page offset are known: read the page body. */
static int
page_body(struct mig_parser *p)
{
	const struct mig_block *blk = &p->blocks[p->cur_block];

	if (p->rec_page >= blk->used_length)
		return perr(p, SNAP_ECORRUPT, p->rec_off,
			    "page offset 0x%llx beyond ram block '%s' (0x%llx bytes) at offset %llu",
			    (unsigned long long)p->rec_page, blk->idstr,
			    (unsigned long long)blk->used_length,
			    (unsigned long long)p->rec_off);
	if (p->rec_flags & RAM_FLAG_ZERO)
		go(p, PS_REC_FILL, 1);
	else
		go(p, PS_REC_PAGE, MIG_PAGE_SIZE);
	return 0;
}

static int
step_record(struct mig_parser *p, uint64_t v)
{
	uint32_t flags = (uint32_t)(v & RAM_FLAG_MASK);
	uint32_t kind = flags & ~RAM_FLAG_CONTINUE;
	unsigned long long at = p->item_off;

	p->rec_off = p->item_off;
	if (flags & RAM_FLAG_XBZRLE)
		return perr(p, SNAP_ESTREAM, at,
			    "unsupported XBZRLE page record at offset %llu (capability xbzrle)", at);
	if (flags & RAM_FLAG_COMPRESS_PAGE)
		return perr(p, SNAP_ESTREAM, at,
			    "unsupported compressed page record at offset %llu (capability compress)", at);
	if (flags & RAM_FLAG_HOOK)
		return perr(p, SNAP_ESTREAM, at,
			    "unsupported RDMA hook record at offset %llu", at);
	if (flags & RAM_FLAG_MULTIFD_FLUSH)
		return perr(p, SNAP_ESTREAM, at,
			    "unsupported multifd flush record at offset %llu (capability multifd)", at);
	switch (kind) {
	case RAM_FLAG_EOS:
		if (v != RAM_FLAG_EOS)
			break;
		go(p, PS_FOOTER, 5);
		return 0;
	case RAM_FLAG_ZERO:
	case RAM_FLAG_PAGE:
		p->rec_page = v & ~RAM_FLAG_MASK;
		p->rec_flags = flags;
		if (!(flags & RAM_FLAG_CONTINUE)) {
			go(p, PS_REC_IDLEN, 1);
			return 0;
		}
		if (p->cur_block < 0)
			return perr(p, SNAP_ECORRUPT, at,
				    "page record continues no previous block at offset %llu", at);
		return page_body(p);
	case RAM_FLAG_MEM_SIZE:
		return perr(p, SNAP_ECORRUPT, at,
			    "second ram block list at offset %llu", at);
	default:
		break;
	}
	return perr(p, SNAP_ECORRUPT, at,
		    "unknown ram record flags 0x%x at offset %llu", flags, at);
}

static int
step_record_idstr(struct mig_parser *p, const uint8_t *b, size_t n)
{
	char name[MIG_IDSTR_MAX + 1];

	for (size_t i = 0; i < p->nblocks; i++) {
		if (strlen(p->blocks[i].idstr) == n &&
		    memcmp(p->blocks[i].idstr, b, n) == 0) {
			p->cur_block = (int64_t)i;
			return page_body(p);
		}
	}
	return perr(p, SNAP_ECORRUPT, p->rec_off,
		    "page record for unknown ram block '%s' at offset %llu",
		    printable(name, sizeof(name), b, n),
		    (unsigned long long)p->rec_off);
}

static int
deliver_page(struct mig_parser *p, const uint8_t *data)
{
	int rc;

	if (data)
		p->st.pages++;
	else
		p->st.zero_pages++;
	if (p->ops.page) {
		rc = p->ops.page(p->opaque, (uint32_t)p->cur_block, p->rec_page,
				 data);
		if (rc < 0)
			return cb_failed(p, rc);
	}
	go(p, PS_REC, 8);
	return 0;
}

static int
step_fill(struct mig_parser *p, uint8_t fill)
{
	if (fill == 0)
		return deliver_page(p, NULL);
	/* QEMU 7.2 memsets the page with a nonzero fill byte. */
	if (p->fill != fill) {
		memset(p->fill_page, fill, sizeof(p->fill_page));
		p->fill = fill;
	}
	return deliver_page(p, p->fill_page);
}

static int
step_footer(struct mig_parser *p, const uint8_t *b)
{
	uint32_t id = snap_get_be32(b + 1);
	unsigned long long at = p->item_off;

	if (b[0] != REC_FOOTER)
		return perr(p, SNAP_ECORRUPT, at,
			    "missing section footer for 'ram' at offset %llu", at);
	if (id != p->ram_id)
		return perr(p, SNAP_ECORRUPT, at,
			    "section footer id %u does not match 'ram' section %u at offset %llu",
			    id, p->ram_id, at);
	if (p->sec_type == REC_SECTION_END) {
		p->phase = PH_DEVICE;
		go(p, PS_DEVICE, 0);
	} else {
		go(p, PS_TOP, 1);
	}
	return 0;
}

/* Work on the p->need bytes at @b that the current state was waiting for. */
static int
step(struct mig_parser *p, const uint8_t *b)
{
	size_t n = p->need;
	int rc;

	if (p->phase == PH_PREAMBLE && p->state != PS_TOP &&
	    p->state != PS_SEC_ID && p->state != PS_SEC_IDSTR &&
	    p->state != PS_SEC_VERS) {
		if ((rc = pre_append(p, b, n)) < 0)
			return rc;
	}
	switch (p->state) {
	case PS_HEADER:
		if (snap_get_be32(b) != QEVM_MAGIC)
			return perr(p, SNAP_EMAGIC, 0,
				    "not a migration stream (bad magic)");
		if (snap_get_be32(b + 4) != QEVM_VERSION)
			return perr(p, SNAP_ESTREAM, 4,
				    "unsupported migration stream version %u",
				    snap_get_be32(b + 4));
		go(p, PS_CONFIG, 1);
		return 0;
	case PS_CONFIG:
		if (b[0] != REC_CONFIGURATION)
			return perr(p, SNAP_ESTREAM, p->item_off,
				    "configuration section missing (record type 0x%02x at offset %llu)",
				    b[0], (unsigned long long)p->item_off);
		go(p, PS_CONFIG_LEN, 4);
		return 0;
	case PS_CONFIG_LEN: {
		uint32_t len = snap_get_be32(b);

		if (len == 0 || len > MIG_IDSTR_MAX)
			return perr(p, SNAP_ELIMIT, p->item_off,
				    "machine type length %u out of range at offset %llu",
				    len, (unsigned long long)p->item_off);
		go(p, PS_CONFIG_NAME, len);
		return 0;
	}
	case PS_CONFIG_NAME:
		printable(p->machine, sizeof(p->machine), b, n);
		p->subs_ok = true;
		go(p, PS_TOP, 1);
		return 0;
	case PS_TOP:
		return step_top(p, b[0]);
	case PS_SUB_LEN:
		if (b[0] == 0)
			return perr(p, SNAP_ECORRUPT, p->item_off,
				    "empty subsection name at offset %llu",
				    (unsigned long long)p->item_off);
		go(p, PS_SUB_NAME, b[0]);
		return 0;
	case PS_SUB_NAME:
		return step_subsection_name(p, b, n);
	case PS_SUB_VERSION:
		return step_subsection_version(p, snap_get_be32(b));
	case PS_SUB_PAGEBITS:
		if (snap_get_be32(b) != PAGE_BITS)
			return perr(p, SNAP_ESTREAM, p->item_off,
				    "unsupported target page bits %u at offset %llu",
				    snap_get_be32(b),
				    (unsigned long long)p->item_off);
		go(p, PS_TOP, 1);
		return 0;
	case PS_SUB_UUID:
		go(p, PS_TOP, 1);
		return 0;
	case PS_CAP_COUNT:
		p->caps_left = snap_get_be32(b);
		if (p->caps_left > MIG_MAX_CAPS)
			return perr(p, SNAP_ELIMIT, p->item_off,
				    "%u capabilities in the configuration exceed the limit of %d at offset %llu",
				    p->caps_left, MIG_MAX_CAPS,
				    (unsigned long long)p->item_off);
		go(p, p->caps_left ? PS_CAP_LEN : PS_TOP, 1);
		return 0;
	case PS_CAP_LEN:
		if (b[0] == 0)
			return perr(p, SNAP_ECORRUPT, p->item_off,
				    "empty capability name at offset %llu",
				    (unsigned long long)p->item_off);
		go(p, PS_CAP_NAME, b[0]);
		return 0;
	case PS_CAP_NAME:
		return step_capability(p, b, n);
	case PS_CMD:
		return step_command(p, b);
	case PS_CMD_DATA:
		go(p, PS_TOP, 1);
		return 0;
	case PS_SEC_ID:
		p->hdr_id = snap_get_be32(b);
		if (b[4] == 0)
			return perr(p, SNAP_ECORRUPT, p->rec_off,
				    "empty section name at offset %llu",
				    (unsigned long long)p->rec_off);
		go(p, PS_SEC_IDSTR, b[4]);
		return 0;
	case PS_SEC_IDSTR:
		if (memchr(b, '\0', n))
			return perr(p, SNAP_ECORRUPT, p->rec_off,
				    "section name contains a NUL byte at offset %llu",
				    (unsigned long long)p->rec_off);
		memcpy(p->hdr_idstr, b, n);
		p->hdr_idstr[n] = '\0';
		go(p, PS_SEC_VERS, 8);
		return 0;
	case PS_SEC_VERS:
		return step_section_header(p, snap_get_be32(b),
					   snap_get_be32(b + 4));
	case PS_PART_ID: {
		uint32_t id = snap_get_be32(b);

		if (id != p->ram_id)
			return perr(p, SNAP_ESTREAM, p->rec_off,
				    "section id %u is not the 'ram' section %u at offset %llu",
				    id, p->ram_id, (unsigned long long)p->rec_off);
		p->st.sections++;
		go(p, PS_REC, 8);
		return 0;
	}
	case PS_MEMSIZE:
		return step_memsize(p, snap_get_be64(b));
	case PS_BLK_LEN:
		if (b[0] == 0)
			return perr(p, SNAP_ECORRUPT, p->item_off,
				    "empty ram block name at offset %llu",
				    (unsigned long long)p->item_off);
		if (p->nblocks >= MIG_MAX_BLOCKS)
			return perr(p, SNAP_ELIMIT, p->item_off,
				    "more than %d ram blocks at offset %llu",
				    MIG_MAX_BLOCKS,
				    (unsigned long long)p->item_off);
		go(p, PS_BLK_NAME, b[0]);
		return 0;
	case PS_BLK_NAME:
		return step_block_name(p, b, n);
	case PS_BLK_SIZE:
		return step_block_size(p, b);
	case PS_REC:
		return step_record(p, snap_get_be64(b));
	case PS_REC_IDLEN:
		if (b[0] == 0)
			return perr(p, SNAP_ECORRUPT, p->item_off,
				    "empty ram block name at offset %llu",
				    (unsigned long long)p->item_off);
		go(p, PS_REC_IDSTR, b[0]);
		return 0;
	case PS_REC_IDSTR:
		return step_record_idstr(p, b, n);
	case PS_REC_FILL:
		return step_fill(p, b[0]);
	case PS_REC_PAGE:
		return deliver_page(p, b);
	case PS_FOOTER:
		return step_footer(p, b);
	case PS_DEVICE:
	case PS_FAILED:
		break;
	}
	return perr(p, SNAP_EMISUSE, p->off, "parser in an impossible state");
}

/* Give candidate @c the bytes of @b (at stream offset @at) it still lacks. */
static void
cand_fill(struct mig_parser *p, unsigned c, const uint8_t *b, size_t n,
	  uint64_t at)
{
	uint64_t want = p->cand[c].pos + 1 + p->cand[c].have;
	size_t k;

	if (p->cand[c].have == sizeof(p->cand[c].hdr) || want < at ||
	    want - at >= n)
		return;
	k = SNAP_MIN(sizeof(p->cand[c].hdr) - p->cand[c].have,
		     n - (size_t)(want - at));
	memcpy(p->cand[c].hdr + p->cand[c].have, b + (want - at), k);
	p->cand[c].have += (uint8_t)k;
}

/* Track where EOF + VMDESC may begin; see struct mig_parser. */
static void
vmdesc_scan(struct mig_parser *p, const uint8_t *b, size_t n, uint64_t at)
{
	const uint8_t *q = b, *end = b + n;

	for (unsigned c = 0; c < VMDESC_CANDS; c++)
		cand_fill(p, c, b, n, at);
	while ((q = memchr(q, REC_VMDESCRIPTION, (size_t)(end - q))) != NULL) {
		uint8_t prev = q > b ? q[-1] : p->last_byte;

		if (prev == REC_EOF && (q > b || at > 0 ||
					p->st.device_bytes > 0)) {
			unsigned c = p->ncand++ % VMDESC_CANDS;

			p->cand[c].pos = at + (uint64_t)(q - b);
			p->cand[c].have = 0;
			cand_fill(p, c, b, n, at);
		}
		q++;
	}
	p->last_byte = b[n - 1];
}

static int
device(struct mig_parser *p, const uint8_t *b, size_t n)
{
	int rc;

	if (p->st.device_bytes == 0 && b[0] != REC_SECTION_FULL &&
	    b[0] != REC_EOF)
		return perr(p, SNAP_ECORRUPT, p->off,
			    "device state begins with record type 0x%02x at offset %llu",
			    b[0], (unsigned long long)p->off);
	vmdesc_scan(p, b, n, p->off);
	p->rec_off = p->off;
	p->off += n;
	p->st.device_bytes += n;
	if (p->ops.device) {
		rc = p->ops.device(p->opaque, b, n);
		if (rc < 0)
			return cb_failed(p, rc);
	}
	return 0;
}

/*
 * The device state ended at p->off: find its EOF marker, either right
 * before a VMDESC whose length runs exactly to the end, or as the last byte.
 */
static int
device_end(struct mig_parser *p)
{
	for (unsigned c = 0; c < VMDESC_CANDS; c++) {
		uint64_t pos = p->cand[c].pos;

		if (p->cand[c].have != sizeof(p->cand[c].hdr) ||
		    p->cand[c].hdr[4] != '{' || p->last_byte != '}')
			continue;
		if (pos + 5 + snap_get_be32(p->cand[c].hdr) == p->off) {
			p->st.vmdesc = true;
			p->st.eof_offset = pos - 1;
			return 0;
		}
	}
	if (p->last_byte == REC_EOF) {
		p->st.eof_offset = p->off - 1;
		return 0;
	}
	return perr(p, SNAP_ETRUNC, p->off,
		    "device state ends without an EOF record or a VM description at offset %llu",
		    (unsigned long long)p->off);
}

/*
 * Report the sticky error. When a callback failed and filled the caller's
 * detail with its own code, that detail is kept (and remembered).
 */
static int
sticky(struct mig_parser *p, struct snap_err *err)
{
	if (!err)
		return p->err_code;
	if (p->cb_failed && err->code == p->err_code && err->msg[0] != '\0')
		p->errd = *err;
	else
		*err = p->errd;
	p->cb_failed = false;
	return p->err_code;
}

int
mig_parser_feed(struct mig_parser *p, const void *buf, size_t len,
		struct snap_err *err)
{
	const uint8_t *in = buf;
	int rc = 0;

	if (p->state == PS_FAILED)
		return sticky(p, err);
	while (len > 0) {
		const uint8_t *b;

		if (p->state == PS_DEVICE) {
			rc = device(p, in, len);
			break;
		}
		/* take p->need bytes, in place when the buffer holds them */
		if (p->staged == 0) {
			p->item_off = p->off;
			if (len >= p->need) {
				b = in;
				in += p->need;
				len -= p->need;
				p->off += p->need;
				if ((rc = step(p, b)) < 0)
					break;
				continue;
			}
		}
		size_t k = SNAP_MIN(p->need - p->staged, len);
		memcpy(p->stage + p->staged, in, k);
		p->staged += k;
		in += k;
		len -= k;
		p->off += k;
		if (p->staged < p->need)
			break;
		p->staged = 0;
		if ((rc = step(p, p->stage)) < 0)
			break;
	}
	if (rc < 0)
		return sticky(p, err);
	return 0;
}

int
mig_parser_finish(struct mig_parser *p, struct snap_err *err)
{
	if (p->state == PS_FAILED)
		return sticky(p, err);
	if (p->state == PS_DEVICE && p->st.device_bytes > 0) {
		if (device_end(p) < 0)
			return sticky(p, err);
		return 0;
	}
	if (p->state == PS_DEVICE)
		perr(p, SNAP_ETRUNC, p->off,
		     "stream ends right after the 'ram' END section, without device state");
	else
		perr(p, SNAP_ETRUNC, p->off,
		     "stream ends inside the %s at offset %llu",
		     state_names[p->state], (unsigned long long)p->off);
	return sticky(p, err);
}

/* ---- preamble check, for the synthesizer ------------------------------------ */

struct pre_check {
	bool seen;
	size_t len;
	bool ignore_shared;
};

static int
pre_check_cb(void *opaque, const struct mig_preamble *pre)
{
	struct pre_check *pc = opaque;

	pc->seen = true;
	pc->len = pre->len;
	pc->ignore_shared = pre->ignore_shared;
	return 0;
}

int
mig_preamble_check(const uint8_t *pre, size_t len, bool *ignore_shared,
		   struct snap_err *err)
{
	static const uint8_t start[] = {
		REC_SECTION_START, 0, 0, 0, 0, 3, 'r', 'a', 'm',
		0, 0, 0, 0, 0, 0, 0, RAM_VERSION,
	};
	struct mig_parser_ops ops = { .preamble = pre_check_cb };
	struct pre_check pc = { 0 };
	struct mig_parser *p = NULL;
	int rc;

	if ((rc = mig_parser_open(&p, &ops, &pc)) < 0)
		goto out;
	if ((rc = mig_parser_feed(p, pre, len, err)) < 0)
		goto out;
	if (p->state != PS_TOP || p->staged != 0 || p->phase != PH_PREAMBLE) {
		rc = snap_err_set(err, SNAP_ECORRUPT, len,
				  "preamble of %zu bytes is incomplete", len);
		goto out;
	}
	if ((rc = mig_parser_feed(p, start, sizeof(start), err)) < 0)
		goto out;
	if (!pc.seen || pc.len != len) {
		rc = snap_err_set(err, SNAP_ECORRUPT, len,
				  "preamble of %zu bytes is incomplete", len);
		goto out;
	}
	*ignore_shared = pc.ignore_shared;
out:
	mig_parser_free(p);
	return rc;
}
