/*
 * format/fmt_int.h: on-disk constants of format version 1 and helpers
 * shared by the writer, the reader and the verifier. Private to format/.
 * The layout is specified in format/FORMAT.md; constants here never change
 * meaning.
 */
#ifndef SNAP_FORMAT_FMT_INT_H
#define SNAP_FORMAT_FMT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "format/format.h"

#define FMT_MAGIC          "SNAPDRAM"
#define FMT_MAGIC_LEN      8
#define FMT_FOOTER_SIZE    64
#define FMT_DIRENT_SIZE    40
#define FMT_BLOCKREC_SIZE  288
#define FMT_BLOCKS_HDR     8
#define FMT_ENTRIES_HDR    8
#define FMT_META_ALIGN     4096    /* start of the metadata area */
#define FMT_BLOCK_F_MAIN   0x1u

/* Footer field offsets. */
#define FMT_FT_MAGIC       0
#define FMT_FT_MAJOR       8
#define FMT_FT_MINOR       10
#define FMT_FT_SIZE        12
#define FMT_FT_DIROFF      16
#define FMT_FT_DIRCOUNT    24
#define FMT_FT_FLAGS       28
#define FMT_FT_DIRSUM      32
#define FMT_FT_ROOT        40
#define FMT_FT_SUM         56

/* Section types. */
enum fmt_sect {
	FMT_S_BLOCKS   = 1,
	FMT_S_BITMAP   = 2,
	FMT_S_PAGESUM  = 3,
	FMT_S_DEVSTATE = 4,
	FMT_S_META     = 5,
	FMT_S_ENTRIES  = 6,
	FMT_S_KNOWN_LAST = 6,
};

/* Metadata tags. */
enum fmt_tag {
	FMT_T_GUEST_NAME    = 1,
	FMT_T_SNAPSHOT_NAME = 2,
	FMT_T_GUEST_SPEC    = 3,
	FMT_T_QEMU_VERSION  = 4,
	FMT_T_MACHINE_TYPE  = 5,
	FMT_T_QEMU_ARGV     = 6,
	FMT_T_CAPABILITIES  = 7,
	FMT_T_PARENT        = 8,
	FMT_T_DISKS_POLICY  = 9,
	FMT_T_CREATED_NS    = 16,
	FMT_T_SAVE_DURATION = 17,
	FMT_T_DOWNTIME      = 18,
	FMT_T_SAVE_MODE     = 19,
};

/* The reader's view of one block. */
struct rblock {
	struct fmt_block_info info;
	uint64_t *bitmap;           /* host-order words, bit i = page i */
	uint64_t *sums;             /* XXH3-64 per page, 0 for zero pages;
				     * NULL until the whole table is read */
	uint64_t sum_off;           /* file offset of page 0's entry */
};

struct rsect {
	uint64_t off;
	uint64_t len;
	uint64_t aux;
	uint64_t sum;
	bool seen;
};

struct rentry {
	char name[FMT_MAX_ENTRY_NAME + 1];
	const uint8_t *data;        /* into entries_buf */
	size_t len;
};

struct fmt_reader {
	int fd;
	char path[4096];            /* for reopening with O_DIRECT */
	uint64_t size;
	uint64_t allocated;
	uint16_t major;
	uint16_t minor;
	uint64_t dir_off;
	struct rsect sect[FMT_S_KNOWN_LAST + 1];
	struct rblock *blocks;
	unsigned nblocks;
	uint64_t total_pages;
	uint64_t present;
	char *meta_text[9];
	struct fmt_meta meta;
	uint8_t *entries_buf;
	struct rentry entries[FMT_MAX_ENTRIES];
	unsigned nentries;
	struct fmt_digest root;
	bool sums_checked;          /* checksum table checked (streamed) */
	bool sums_loaded;           /* and held in memory (blocks[].sums) */
};

/* Read the whole checksum table into blocks[].sums, checked (reader.c). */
int fmt_reader_hold_sums(struct fmt_reader *r, struct snap_err *err);

/* Check the compressed device state against its checksum (reader.c). */
int fmt_check_devstate(struct fmt_reader *r, struct snap_err *err);

/* Name of a section type for messages ("section 7" for unknown ones). */
const char *fmt_sect_name(uint32_t type);

/* True when @name is a valid entry name. */
int fmt_entry_name_ok(const char *name, size_t len);

/* Bytes of one block's bitmap in the file. */
static inline uint64_t
fmt_bitmap_bytes(uint64_t npages)
{
	return ((npages + 63) / 64) * 8;
}

#endif
