/*
 * format/format.h: the mapped-RAM snapshot file (format version 1).
 *
 * One file holds one snapshot: RAM blocks at fixed page-aligned offsets
 * (the main RAM block at file offset 0, so QEMU can map the file directly as
 * guest RAM), the zstd-compressed device state, metadata, a present-page
 * bitmap, a per-page XXH3-64 checksum table and, at the very end, a footer
 * that locates everything. The byte layout is specified in format/FORMAT.md
 * and snapshot(5).
 *
 * Invariants and ownership:
 *   - A published file is never modified. The writer builds it under a
 *     temporary name in the store directory (".NAME.tmp-XXXXXX", see
 *     fmt_is_temp_name()) and renames it into place only in
 *     fmt_writer_commit(). Any failure, fmt_writer_abort() or freeing an
 *     uncommitted writer removes the temporary file: no half-written file is
 *     ever left behind by a writer that was freed.
 *   - Zero pages are holes: the writer never writes their data (except that
 *     it may write a short run of zeros between data pages to keep its
 *     writes large); their bitmap bit is clear and they read as zero.
 *   - The reader treats every byte as hostile: every offset and length is
 *     checked against the real file size and the explicit FMT_MAX_* limits
 *     before use; memory it allocates is bounded by those limits and by the
 *     file size. It never crashes, hangs or reads out of bounds.
 *   - Handles are opaque and not thread-safe, except fmt_writer_progress(),
 *     which may be called from another thread while the writer works.
 *   - Pointers returned by a reader (metadata strings, entries, bitmaps)
 *     belong to the reader and stay valid until fmt_reader_free().
 *   - Every fallible function returns >= 0 on success or a negative code
 *     (common/err.h) and fills the optional struct snap_err; outputs are
 *     written only on success unless stated otherwise. The library never
 *     logs and never exits.
 */
#ifndef SNAP_FORMAT_FORMAT_H
#define SNAP_FORMAT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Format version written by this library; readers reject other majors. */
#define FMT_VERSION_MAJOR 1
#define FMT_VERSION_MINOR 0

/* Alignment of everything after the main RAM block. */
#define FMT_ALIGN ((uint64_t)1 << 20)

/* Explicit limits, checked by the writer and by the reader. */
#define FMT_MAX_BLOCKS        64                   /* RAM blocks per file */
#define FMT_MAX_IDSTR         255                  /* bytes in a block name */
#define FMT_MIN_PAGE_SIZE     4096u
#define FMT_MAX_PAGE_SIZE     (2u << 20)           /* 2 MiB huge pages */
#define FMT_MAX_BLOCK_LEN     ((uint64_t)1 << 40)  /* 1 TiB per block */
#define FMT_MAX_TOTAL_PAGES   ((uint64_t)1 << 28)  /* all blocks together */
#define FMT_MAX_SECTIONS      64                   /* directory entries */
#define FMT_MAX_TEXT          ((size_t)1 << 20)    /* one metadata field */
#define FMT_MAX_META_SIZE     ((size_t)4 << 20)    /* metadata section */
#define FMT_MAX_ENTRIES       64                   /* named byte entries */
#define FMT_MAX_ENTRY_NAME    63                   /* bytes in an entry name */
#define FMT_MAX_ENTRY_SIZE    ((size_t)1 << 20)    /* bytes in one entry */
#define FMT_MAX_ENTRIES_SIZE  ((size_t)4 << 20)    /* entries section */
#define FMT_MAX_DEVSTATE      ((uint64_t)1 << 32)  /* uncompressed device state */

/* ---- common types ---------------------------------------------------- */

/* The root digest: XXH3-128 over the section directory (see FORMAT.md). */
struct fmt_digest {
	uint8_t bytes[16];
};

/* Write the digest as 32 lowercase hex digits plus NUL into @out. */
void fmt_digest_hex(const struct fmt_digest *d, char out[33]);

/*
 * True when @name (a file name without directory) is a writer's temporary
 * file: ".NAME.tmp-XXXXXX". The catalog's reconcile removes such leftovers.
 */
bool fmt_is_temp_name(const char *name);

enum fmt_save_mode {
	FMT_SAVE_UNKNOWN = 0,
	FMT_SAVE_LIVE    = 1,   /* guest kept running, precopy re-sends */
	FMT_SAVE_STOPPED = 2,   /* guest stopped first (stop-and-copy) */
};

/*
 * Well-known metadata. Strings are NUL-terminated UTF-8 without embedded
 * NUL, at most FMT_MAX_TEXT bytes each. For the writer NULL means absent;
 * the reader gives "" for an absent field, never NULL. The JSON fields are
 * stored as given (the format does not parse them).
 */
struct fmt_meta {
	const char *guest_name;
	const char *snapshot_name;
	const char *guest_spec;     /* JSON text */
	const char *qemu_version;   /* e.g. "7.2.0" */
	const char *machine_type;   /* resolved, e.g. "pc-i440fx-7.2" */
	const char *qemu_argv;      /* JSON array of strings */
	const char *capabilities;   /* JSON: migration capabilities saved with */
	const char *parent;         /* parent snapshot name, or absent */
	const char *disks_policy;   /* e.g. "none", "readonly", "external" */
	uint64_t created_ns;        /* wall clock, ns since the epoch */
	uint64_t save_duration_ns;
	uint64_t downtime_ns;
	enum fmt_save_mode save_mode;
};

/*
 * Optional fault hooks for the writer's I/O (tests inject short writes,
 * ENOSPC and fsync failures through these). Each is called before the real
 * operation; NULL members are skipped.
 *   write: about to write @len bytes at file offset @off (pages, device
 *          state, metadata alike). Return 0 to proceed, a negative errno to
 *          fail the write with it, or n with 0 < n < @len to write only the
 *          first n bytes (a short write, which the writer then retries).
 *   fsync: about to fsync the file (@dir false) or its directory (@dir
 *          true). Return 0 to proceed or a negative errno to fail it.
 * With a write hook set, page runs are written synchronously (buffered), so
 * that a short write can be made exactly where the hook asks.
 */
struct fmt_io_hooks {
	int (*write)(void *ctx, uint64_t off, size_t len);
	int (*fsync)(void *ctx, bool dir);
	void *ctx;
};

/* ---- writer ---------------------------------------------------------- */

struct fmt_writer;

#define FMT_W_BUFFERED  0x1u   /* do not try O_DIRECT */
#define FMT_W_NO_FSYNC  0x2u   /* skip fsync (tests and benchmarks only) */

struct fmt_writer_opts {
	unsigned flags;             /* FMT_W_* */
	int zstd_level;             /* 0: default (3) */
	unsigned queue_depth;       /* writes in flight; 0: default (16) */
	size_t run_size;            /* bytes per write; 0: default (1 MiB) */
	unsigned gap_fill_pages;    /* zero pages written as data to join two
				       runs; 0: default (4), UINT32_MAX: never */
	const struct fmt_io_hooks *hooks;   /* NULL: none */
	uint64_t align;             /* alignment of what follows the main
				       block; 0: FMT_ALIGN. A power of two
				       >= 4096 (small test files use 4096) */
};

enum fmt_io_mode {
	FMT_IO_DIRECT   = 0,   /* O_DIRECT with libaio */
	FMT_IO_FALLBACK = 1,   /* O_DIRECT refused (e.g. tmpfs): buffered */
	FMT_IO_BUFFERED = 2,   /* buffered because FMT_W_BUFFERED was asked */
};

/* A RAM block as declared to the writer. */
struct fmt_block_decl {
	const char *idstr;     /* QEMU RAMBlock name, 1..FMT_MAX_IDSTR bytes */
	uint64_t length;       /* used length, a non-zero multiple of page_size */
	uint32_t page_size;    /* power of two in [FMT_MIN_PAGE_SIZE, FMT_MAX_PAGE_SIZE] */
	bool main;             /* the main RAM block: placed at file offset 0 */
};

/*
 * Create a writer for the file @dir/@name (@name: a plain file name, not
 * starting with '.', no '/'). The data goes to a new temporary file
 * "@dir/.@name.tmp-XXXXXX" (mode 0600: it holds guest memory);
 * @dir/@name must not exist at commit time. @opts may be NULL. On success
 * *@out owns the temporary file.
 */
int fmt_writer_open(struct fmt_writer **out, const char *dir, const char *name,
		    const struct fmt_writer_opts *opts, struct snap_err *err);

/*
 * Declare all RAM blocks, exactly once, before any page. At most one block
 * may be main; the main block goes to file offset 0, the others follow in
 * the given order at FMT_ALIGN-aligned offsets. Block numbers used below are
 * indexes into @blocks. Names must be unique.
 */
int fmt_writer_declare(struct fmt_writer *w, const struct fmt_block_decl *blocks,
		       size_t n, struct snap_err *err);

/* Index of the declared block named @idstr, or -ENOENT. */
int fmt_writer_block_index(const struct fmt_writer *w, const char *idstr);

/*
 * Put page @page of block @block (page_size bytes at @data). Pages may come
 * in any order and any number of times; a later put replaces the page and
 * its checksum. All-zero @data is treated as fmt_writer_put_zero(). @data
 * is copied; the caller keeps it.
 */
int fmt_writer_put_page(struct fmt_writer *w, unsigned block, uint64_t page,
			const void *data, struct snap_err *err);

/*
 * Mark page @page zero. Never writes data for a page that was never data; a
 * page that held data before is punched out (or overwritten with zeros) so
 * that it reads as zero, as QEMU maps the main block directly.
 */
int fmt_writer_put_zero(struct fmt_writer *w, unsigned block, uint64_t page,
			struct snap_err *err);

/*
 * Append @len bytes of device state (the raw migration stream after the RAM
 * section). Compressed with zstd as it arrives; may be called any number of
 * times, after fmt_writer_declare().
 */
int fmt_writer_devstate(struct fmt_writer *w, const void *buf, size_t len,
			struct snap_err *err);

/* Set the well-known metadata (copied; replaces an earlier call). */
int fmt_writer_set_meta(struct fmt_writer *w, const struct fmt_meta *m,
			struct snap_err *err);

/*
 * Set the named byte entry @name (1..FMT_MAX_ENTRY_NAME bytes of
 * [A-Za-z0-9._-]) to @len bytes at @data (copied; replaces an entry of the
 * same name). At most FMT_MAX_ENTRIES entries of FMT_MAX_ENTRY_SIZE bytes.
 */
int fmt_writer_set_entry(struct fmt_writer *w, const char *name,
			 const void *data, size_t len, struct snap_err *err);

/* What fmt_writer_commit() produced. */
struct fmt_summary {
	struct fmt_digest root;
	uint64_t apparent_size;     /* st_size */
	uint64_t allocated_size;    /* st_blocks * 512 */
	uint64_t present_pages;     /* bits set in all bitmaps */
	uint64_t total_pages;
	uint64_t data_bytes_written;/* page bytes written, rewrites included */
	uint64_t devstate_raw;      /* device state bytes in */
	uint64_t devstate_stored;   /* compressed bytes in the file */
	char path[4096];            /* final path */
};

/*
 * Finish the file: drain the writes, write the bitmap, checksum table,
 * metadata and footer, fsync, rename to @dir/@name (fails with -EEXIST if
 * it exists), fsync the directory. On success fills *@out (may be NULL).
 * On failure the temporary file is removed and the writer is dead (only
 * fmt_writer_free() remains). May be called once.
 */
int fmt_writer_commit(struct fmt_writer *w, struct fmt_summary *out,
		      struct snap_err *err);

/* Remove the temporary file; the writer is dead afterwards. Idempotent. */
void fmt_writer_abort(struct fmt_writer *w);

/* Free; aborts first when not committed. NULL is a no-op. */
void fmt_writer_free(struct fmt_writer *w);

/* Progress counters, safe to read from another thread. */
struct fmt_progress {
	uint64_t bytes_written;     /* all bytes written to the file so far */
	uint64_t pages_put;         /* put_page + put_zero calls */
	uint64_t devstate_in;       /* device state bytes received */
};
void fmt_writer_progress(const struct fmt_writer *w, struct fmt_progress *out);

/* How the writer does its I/O (valid after fmt_writer_open()). */
enum fmt_io_mode fmt_writer_io_mode(const struct fmt_writer *w);

/* The temporary file's path (for messages). */
const char *fmt_writer_tmp_path(const struct fmt_writer *w);

/* ---- reader ---------------------------------------------------------- */

struct fmt_reader;

/*
 * Open and validate @path: footer, directory, every metadata section and its
 * checksum, the block table, bitmaps and the checksum table (not the page
 * data: see fmt_reader_verify()). Errors: SNAP_EMAGIC (no footer),
 * SNAP_EVERSION (unknown major), SNAP_ECHECKSUM, SNAP_ECORRUPT,
 * SNAP_ETRUNC, SNAP_ELIMIT, -errno; @err names what and where.
 */
int fmt_reader_open(struct fmt_reader **out, const char *path,
		    struct snap_err *err);

/*
 * fmt_reader_open() with @flags. FMT_OPEN_DEFER_SUMS leaves the per-page
 * checksum table (the one part whose size grows with the guest: 8 bytes per
 * page) for later: fmt_reader_load_sums() checks it, or the first call that
 * needs it does (fmt_reader_read_page(s), fmt_reader_verify()). Checked that
 * way it is streamed and not kept: page reads fetch their entries from the
 * file, so a restore never holds (or allocates) the whole table.
 */
#define FMT_OPEN_DEFER_SUMS 0x1u
int fmt_reader_open_flags(struct fmt_reader **out, const char *path,
			  unsigned flags, struct snap_err *err);

/*
 * Check the checksum table: its size, its section checksum, and a zero
 * entry for every zero page, with the errors of fmt_reader_open(). Reads it
 * in pieces through a small buffer. Idempotent; 0 at once when checked.
 * Only pread()s the file: while it runs, other threads may use the
 * reader's metadata, blocks, bitmaps and entries, but nothing that reads
 * pages.
 */
int fmt_reader_load_sums(struct fmt_reader *r, struct snap_err *err);

/* The same on an open fd, which is duplicated (the caller keeps @fd). */
int fmt_reader_open_fd(struct fmt_reader **out, int fd, struct snap_err *err);

void fmt_reader_free(struct fmt_reader *r);

/* File-level facts. */
struct fmt_stat {
	uint16_t version_major;
	uint16_t version_minor;
	uint64_t apparent_size;
	uint64_t allocated_size;
	uint64_t total_pages;
	uint64_t present_pages;
	uint64_t devstate_raw;      /* uncompressed device state size */
	uint64_t devstate_stored;
	unsigned nblocks;
	unsigned nentries;
	struct fmt_digest root;
};
void fmt_reader_stat(const struct fmt_reader *r, struct fmt_stat *out);

/* The well-known metadata; strings never NULL ("" when absent). */
const struct fmt_meta *fmt_reader_meta(const struct fmt_reader *r);

/* Named entry @name: 0 and *@data / *@len, or -ENOENT. */
int fmt_reader_entry(const struct fmt_reader *r, const char *name,
		     const void **data, size_t *len);

/* Entry number @i (0 <= i < nentries): 0, or -ERANGE. */
int fmt_reader_entry_at(const struct fmt_reader *r, unsigned i,
			const char **name, const void **data, size_t *len);

struct fmt_block_info {
	char idstr[FMT_MAX_IDSTR + 1];
	uint64_t length;
	uint32_t page_size;
	bool main;
	uint64_t file_offset;
	uint64_t npages;
	uint64_t present;
};

/* Block number @i: 0, or -ERANGE. */
int fmt_reader_block(const struct fmt_reader *r, unsigned i,
		     struct fmt_block_info *out);

/* Index of the block named @idstr, or -ENOENT. */
int fmt_reader_block_index(const struct fmt_reader *r, const char *idstr);

/* 1 when page @page of @block holds data, 0 when zero, -ERANGE. */
int fmt_reader_page_present(const struct fmt_reader *r, unsigned block,
			    uint64_t page);

/*
 * The first present page >= @from in @block: 0 and *@page, or -ENOENT when
 * there is none, -ERANGE for a bad block.
 */
int fmt_reader_next_present(const struct fmt_reader *r, unsigned block,
			    uint64_t from, uint64_t *page);

/*
 * Read page @page of @block into @buf (page_size bytes). A zero page reads
 * as zeros; a present page is checked against its checksum
 * (SNAP_ECHECKSUM, @err naming block and offset).
 */
int fmt_reader_read_page(struct fmt_reader *r, unsigned block, uint64_t page,
			 void *buf, struct snap_err *err);

/*
 * The same for @n consecutive pages from @page (at most FMT_READ_MAX bytes,
 * or one page whatever its size) with one read: into @buf (n * page_size bytes), zero pages as zeros,
 * present ones checked (the first bad one is named). Cheaper than page by
 * page for a whole block, whether the file is cached or not.
 */
#define FMT_READ_MAX ((size_t)1 << 20)
int fmt_reader_read_pages(struct fmt_reader *r, unsigned block, uint64_t page,
			  uint64_t n, void *buf, struct snap_err *err);

/*
 * Stream the decompressed device state to @sink in pieces. A sink that
 * returns negative stops the stream and that value is returned. The size
 * and checksum of the compressed section are checked before, and the
 * decompressed size is checked against the directory.
 */
typedef int (*fmt_sink_fn)(void *ctx, const void *buf, size_t len);
int fmt_reader_devstate(struct fmt_reader *r, fmt_sink_fn sink, void *ctx,
			struct snap_err *err);

/* Verification of the page data. */
struct fmt_verify_opts {
	/* Called for each bad page (checksum mismatch or unreadable). */
	void (*bad_page)(void *ctx, const char *idstr, uint64_t page,
			 uint64_t file_offset);
	/* Called now and then with bytes checked so far and the total. */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
	bool buffered;              /* do not try O_DIRECT */
	/* When set and *cancel becomes nonzero (any thread), stop soon
	 * and fail with -ECANCELED. */
	const volatile int *cancel;
};

struct fmt_verify_result {
	uint64_t pages_checked;
	uint64_t bad_pages;
	uint64_t bad_sections;      /* the device state failed its checksum */
	uint64_t bytes_read;
	bool direct;                /* O_DIRECT was used */
};

/*
 * Check every present page against its checksum, reading only present runs
 * with large aligned reads (O_DIRECT + libaio when possible, else buffered
 * with readahead). Returns 0 when all is good, SNAP_ECHECKSUM when any page
 * is bad (*@res is filled in both cases; @err names the first bad page),
 * another negative code when verification could not run. @opts may be NULL.
 */
int fmt_reader_verify(struct fmt_reader *r, const struct fmt_verify_opts *opts,
		      struct fmt_verify_result *res, struct snap_err *err);

#endif
