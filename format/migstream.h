/*
 * format/migstream.h: QEMU 7.2 migration streams, parsed and synthesized.
 *
 * A save makes snapd the destination of QEMU's "migrate fd:"; a restore
 * feeds QEMU a stream made from a snapshot. This module is the byte-level
 * part of both, with no I/O and no daemon state of its own. The layouts are
 * those of QEMU 7.2's migration/savevm.c and migration/ram.c, checked
 * against streams of the QEMU 7.2 binary:
 *
 *   preamble  "QEVM", version 3, the configuration section (machine type,
 *             optional subsections) and any commands before the first
 *             section; kept verbatim so that a restore can replay it
 *   ram       START section "ram" with the MEM_SIZE block list, then PART
 *             sections, then the END section; each holds page records
 *             (PAGE, ZERO, EOS) and ends with a footer
 *   device    everything after the footer of the RAM END section up to the
 *             end of the stream (FULL sections, EOF, VMDESC), opaque
 *
 * Invariants:
 *  - Pages are MIG_PAGE_SIZE (4096, x86 TARGET_PAGE_SIZE) bytes. A page
 *    offset is always page-aligned and lies inside its block.
 *  - Only the "ram" iterative section is understood. Any other START
 *    section, a device section before the RAM END, postcopy, XBZRLE,
 *    compression, RDMA hooks and multifd are refused with SNAP_ESTREAM; a
 *    stream that contradicts its own structure gives SNAP_ECORRUPT, one
 *    that stops early SNAP_ETRUNC, a count beyond the limits below
 *    SNAP_ELIMIT. Errors carry the stream offset of the offending record
 *    in struct snap_err.
 *  - The parser allocates at most MIG_PREAMBLE_MAX bytes of preamble and
 *    MIG_MAX_BLOCKS block descriptors, whatever the input.
 *
 * Ownership: pointers handed to callbacks are valid only during the call,
 * except the block array of struct mig_ram, which lives as long as the
 * parser. Callbacks run on the thread that calls mig_parser_feed().
 */
#ifndef SNAP_FORMAT_MIGSTREAM_H
#define SNAP_FORMAT_MIGSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MIG_PAGE_SIZE     4096u
#define MIG_IDSTR_MAX     255        /* counted strings: one length byte */
#define MIG_MAX_BLOCKS    1024       /* RAM blocks in a MEM_SIZE list */
#define MIG_MAX_CAPS      64         /* capabilities in the configuration */
#define MIG_PREAMBLE_MAX  (64 * 1024)

/* One RAM block as announced in the MEM_SIZE list. */
struct mig_block {
	char idstr[MIG_IDSTR_MAX + 1];  /* NUL-terminated RAMBlock name */
	uint64_t used_length;           /* bytes, a multiple of MIG_PAGE_SIZE */
	uint64_t addr;                  /* mr->addr, only with x-ignore-shared */
};

/* The stream's preamble, handed over once, before the RAM section. */
struct mig_preamble {
	const uint8_t *bytes;   /* header + configuration + commands, verbatim */
	size_t len;
	const char *machine;    /* resolved machine type, e.g. "pc-i440fx-7.2" */
	bool ignore_shared;     /* x-ignore-shared was on: blocks carry addr */
	bool return_path;       /* OPEN_RETURN_PATH seen: QEMU awaits replies */
};

/* The RAM section's identity and block list. */
struct mig_ram {
	uint32_t section_id;
	uint32_t instance_id;
	uint32_t version_id;
	uint64_t total;                 /* sum of used_length over blocks */
	size_t nblocks;
	const struct mig_block *blocks; /* lives as long as the parser */
};

/*
 * Parser callbacks. Each returns 0 to go on or a negative code, which stops
 * the parser and is returned by mig_parser_feed() (the error then sticks).
 * A callback that fills the struct snap_err passed to mig_parser_feed()
 * with the code it returns keeps its message; otherwise the parser's
 * detail names the stream offset. Any callback may be NULL.
 */
struct mig_parser_ops {
	int (*preamble)(void *opaque, const struct mig_preamble *pre);
	int (*ram)(void *opaque, const struct mig_ram *ram);
	/*
	 * A page of block @block (index into mig_ram.blocks) at byte @offset.
	 * @data is MIG_PAGE_SIZE bytes, or NULL for a page that must be zero.
	 * A page may come several times (live migration); the last one wins.
	 */
	int (*page)(void *opaque, uint32_t block, uint64_t offset,
		    const uint8_t *data);
	/* The next @len bytes of device state, in stream order. */
	int (*device)(void *opaque, const uint8_t *buf, size_t len);
};

struct mig_stats {
	uint64_t bytes;         /* stream bytes consumed */
	uint64_t pages;         /* PAGE records (and ZERO with a fill byte) */
	uint64_t zero_pages;    /* ZERO records with fill 0 */
	uint64_t sections;      /* RAM sections seen (START, PART, END) */
	uint64_t device_bytes;  /* bytes delivered as device state */
	/* Known after a successful mig_parser_finish(): */
	uint64_t eof_offset;    /* stream offset of the EOF record */
	bool vmdesc;            /* a VM description followed it */
};

struct mig_parser;

/*
 * Create a parser. @ops is copied; @opaque goes to every callback. Returns
 * 0 and sets *@out, or -ENOMEM.
 */
int mig_parser_open(struct mig_parser **out, const struct mig_parser_ops *ops,
		    void *opaque);

/*
 * Consume @len bytes of stream (any chunking, down to one byte at a time).
 * Returns 0, or the first error, which then sticks: every later call
 * returns it again and reports nothing more.
 */
int mig_parser_feed(struct mig_parser *p, const void *buf, size_t len,
		    struct snap_err *err);

/*
 * The stream has ended. Returns 0 when it ended properly: RAM END seen,
 * then device state starting with a device section or EOF and ending with
 * EOF followed by a VM description (JSON) whose length runs exactly to the
 * end, or, without a description, with the EOF byte itself. Otherwise
 * SNAP_ETRUNC (or the sticky error). The device sections themselves are
 * not parsed (they carry no lengths), so a stream cut inside them right
 * after a 0x00 byte passes when it has no description; QEMU 7.2 always
 * sends one unless the machine sets suppress-vmdesc, so a consumer may
 * require mig_stats.vmdesc.
 */
int mig_parser_finish(struct mig_parser *p, struct snap_err *err);

/* Counters so far; never fails. */
void mig_parser_stats(const struct mig_parser *p, struct mig_stats *st);

void mig_parser_free(struct mig_parser *p);

/*
 * Synthesizer: writes a stream QEMU 7.2 accepts with migrate-incoming.
 *
 *   mig_synth_open     validates the parameters (and the preamble, by
 *                      parsing it)
 *   mig_synth_page     any number of pages, any order (a zero page with
 *                      data == NULL becomes a ZERO record)
 *   mig_synth_ram_end  closes the RAM sections
 *   mig_synth_device   the device state, verbatim, in pieces
 *   mig_synth_finish   flushes; the caller then closes its fd, which QEMU
 *                      needs in order to complete
 *
 * Calls out of this order return SNAP_EMISUSE. The write callback must
 * write all @len bytes or fail; its error is returned and sticks.
 */
typedef int (*mig_write_fn)(void *opaque, const void *buf, size_t len);

enum mig_pages_in {
	MIG_PAGES_IN_END = 0,   /* START holds MEM_SIZE only (default) */
	MIG_PAGES_IN_START,     /* pages go after MEM_SIZE in START */
};

struct mig_synth_params {
	const uint8_t *preamble;        /* as handed over by the parser */
	size_t preamble_len;
	uint32_t section_id;            /* the saved RAM section's identity */
	uint32_t instance_id;
	uint32_t version_id;
	const struct mig_block *blocks; /* the saved MEM_SIZE list */
	size_t nblocks;
	enum mig_pages_in pages_in;
};

struct mig_synth;

/*
 * Create a synthesizer. The preamble and blocks are copied. Returns 0, or
 * SNAP_ESTREAM/SNAP_ECORRUPT for a preamble the parser would refuse,
 * SNAP_EMISUSE for bad parameters, -ENOMEM. Nothing is written yet.
 */
int mig_synth_open(struct mig_synth **out,
		   const struct mig_synth_params *params,
		   mig_write_fn write, void *opaque, struct snap_err *err);

/*
 * One page of block @block at page-aligned byte @offset: @data holds
 * MIG_PAGE_SIZE bytes, or is NULL for a ZERO record. The first call writes
 * the preamble and the RAM START section.
 */
int mig_synth_page(struct mig_synth *s, uint32_t block, uint64_t offset,
		   const uint8_t *data);

/* End the RAM sections (writing START first if no page came). */
int mig_synth_ram_end(struct mig_synth *s);

/* Append device state verbatim; only after mig_synth_ram_end(). */
int mig_synth_device(struct mig_synth *s, const void *buf, size_t len);

/* Flush everything; only after mig_synth_ram_end(). */
int mig_synth_finish(struct mig_synth *s);

/* Bytes handed to the write callback so far. */
uint64_t mig_synth_bytes(const struct mig_synth *s);

void mig_synth_free(struct mig_synth *s);

#endif
