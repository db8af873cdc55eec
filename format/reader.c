/*
 * format/reader.c: opens a snapshot file and validates everything but the
 * page data: footer, section directory, block table, bitmaps, checksum
 * table, metadata and entries. Every byte is hostile: each offset and
 * length is checked against the real file size and the FMT_MAX_* limits
 * before it is used, so allocations are bounded by the file itself. Also
 * single-page reads and the device-state stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "common/util.h"
#include "format/fmt_int.h"

#define CHUNK ((size_t)1 << 20)

static const uint16_t text_tags[9] = {
	FMT_T_GUEST_NAME, FMT_T_SNAPSHOT_NAME, FMT_T_GUEST_SPEC,
	FMT_T_QEMU_VERSION, FMT_T_MACHINE_TYPE, FMT_T_QEMU_ARGV,
	FMT_T_CAPABILITIES, FMT_T_PARENT, FMT_T_DISKS_POLICY };

static int
rd(struct fmt_reader *r, void *buf, size_t len, uint64_t off,
   struct snap_err *err)
{
	int rc = snap_pread_full(r->fd, buf, len, (off_t)off);

	if (rc < 0)
		return snap_err_set(err, rc, off, "cannot read %zu bytes at "
				    "offset %llu: %s", len,
				    (unsigned long long)off, snap_strerror(rc));
	return 0;
}

/* Read section @type whole (at most @limit bytes) and check its checksum. */
static int
read_sect(struct fmt_reader *r, uint32_t type, size_t limit, uint8_t **out,
	  struct snap_err *err)
{
	const struct rsect *s = &r->sect[type];
	uint8_t *buf;
	int rc;

	if (s->len > limit)
		return snap_err_set(err, SNAP_ELIMIT, s->off, "section '%s' is "
				    "%llu bytes (at most %zu)",
				    fmt_sect_name(type),
				    (unsigned long long)s->len, limit);
	buf = malloc(s->len > 0 ? (size_t)s->len : 1);
	if (buf == NULL)
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	rc = rd(r, buf, (size_t)s->len, s->off, err);
	if (rc == 0 && XXH3_64bits(buf, (size_t)s->len) != s->sum)
		rc = snap_err_set(err, SNAP_ECHECKSUM, s->off, "checksum "
				  "mismatch in section '%s' at offset %llu",
				  fmt_sect_name(type),
				  (unsigned long long)s->off);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

/* ---- footer and directory ------------------------------------------ */

static int
parse_footer(struct fmt_reader *r, uint32_t *count, uint64_t *dirsum,
	     struct snap_err *err)
{
	uint8_t ft[FMT_FOOTER_SIZE];
	uint64_t foff, dir_len;
	int rc;

	if (r->size < FMT_FOOTER_SIZE)
		return snap_err_set(err, SNAP_ETRUNC, 0, "file of %llu bytes "
				    "is too small for a snapshot footer",
				    (unsigned long long)r->size);
	foff = r->size - FMT_FOOTER_SIZE;
	rc = rd(r, ft, sizeof(ft), foff, err);
	if (rc < 0)
		return rc;
	if (memcmp(ft + FMT_FT_MAGIC, FMT_MAGIC, FMT_MAGIC_LEN) != 0)
		return snap_err_set(err, SNAP_EMAGIC, foff, "no snapshot footer "
				    "at the end of the file (not a snapshot, "
				    "or truncated)");
	r->major = snap_get_le16(ft + FMT_FT_MAJOR);
	r->minor = snap_get_le16(ft + FMT_FT_MINOR);
	if (r->major != FMT_VERSION_MAJOR)
		return snap_err_set(err, SNAP_EVERSION, foff + FMT_FT_MAJOR,
				    "unsupported format version %u.%u (this "
				    "reader knows %d.x)", r->major, r->minor,
				    FMT_VERSION_MAJOR);
	if (snap_get_le64(ft + FMT_FT_SUM) != XXH3_64bits(ft, FMT_FT_SUM))
		return snap_err_set(err, SNAP_ECHECKSUM, foff, "footer checksum "
				    "mismatch");
	if (snap_get_le32(ft + FMT_FT_SIZE) != FMT_FOOTER_SIZE)
		return snap_err_set(err, SNAP_ECORRUPT, foff + FMT_FT_SIZE,
				    "footer size %u is not %d",
				    snap_get_le32(ft + FMT_FT_SIZE),
				    FMT_FOOTER_SIZE);
	*count = snap_get_le32(ft + FMT_FT_DIRCOUNT);
	if (*count > FMT_MAX_SECTIONS)
		return snap_err_set(err, SNAP_ELIMIT, foff + FMT_FT_DIRCOUNT,
				    "%u sections (at most %d)", *count,
				    FMT_MAX_SECTIONS);
	dir_len = (uint64_t)*count * FMT_DIRENT_SIZE;
	r->dir_off = snap_get_le64(ft + FMT_FT_DIROFF);
	if (r->dir_off > foff || foff - r->dir_off != dir_len)
		return snap_err_set(err, SNAP_ECORRUPT, foff + FMT_FT_DIROFF,
				    "section directory at offset %llu does not "
				    "end at the footer (offset %llu)",
				    (unsigned long long)r->dir_off,
				    (unsigned long long)foff);
	*dirsum = snap_get_le64(ft + FMT_FT_DIRSUM);
	memcpy(r->root.bytes, ft + FMT_FT_ROOT, 16);
	return 0;
}

static int
parse_dir(struct fmt_reader *r, uint32_t count, uint64_t dirsum,
	  struct snap_err *err)
{
	uint8_t dir[FMT_MAX_SECTIONS * FMT_DIRENT_SIZE];
	size_t len = (size_t)count * FMT_DIRENT_SIZE;
	XXH128_canonical_t canon;
	int rc;

	rc = rd(r, dir, len, r->dir_off, err);
	if (rc < 0)
		return rc;
	if (XXH3_64bits(dir, len) != dirsum)
		return snap_err_set(err, SNAP_ECHECKSUM, r->dir_off, "section "
				    "directory checksum mismatch");
	XXH128_canonicalFromHash(&canon, XXH3_128bits(dir, len));
	if (memcmp(canon.digest, r->root.bytes, 16) != 0)
		return snap_err_set(err, SNAP_ECHECKSUM, r->dir_off, "root "
				    "digest does not match the section "
				    "directory");
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *d = dir + (size_t)i * FMT_DIRENT_SIZE;
		uint32_t type = snap_get_le32(d);
		uint64_t off = snap_get_le64(d + 8), slen = snap_get_le64(d + 16);
		uint64_t at = r->dir_off + (uint64_t)i * FMT_DIRENT_SIZE;

		if (off > r->dir_off || slen > r->dir_off - off)
			return snap_err_set(err, SNAP_ECORRUPT, at, "section "
					    "'%s' (offset %llu, length %llu) "
					    "extends past the section "
					    "directory at %llu",
					    fmt_sect_name(type),
					    (unsigned long long)off,
					    (unsigned long long)slen,
					    (unsigned long long)r->dir_off);
		if (type == 0 || type > FMT_S_KNOWN_LAST)
			continue;       /* a later minor version's section */
		if (r->sect[type].seen)
			return snap_err_set(err, SNAP_ECORRUPT, at, "section "
					    "'%s' appears twice",
					    fmt_sect_name(type));
		r->sect[type].seen = true;
		r->sect[type].off = off;
		r->sect[type].len = slen;
		r->sect[type].aux = snap_get_le64(d + 24);
		r->sect[type].sum = snap_get_le64(d + 32);
	}
	for (uint32_t t = 1; t <= FMT_S_KNOWN_LAST; t++)
		if (!r->sect[t].seen)
			return snap_err_set(err, SNAP_ECORRUPT, r->dir_off,
					    "section '%s' is missing",
					    fmt_sect_name(t));
	if (r->sect[FMT_S_DEVSTATE].aux > FMT_MAX_DEVSTATE)
		return snap_err_set(err, SNAP_ELIMIT, r->sect[FMT_S_DEVSTATE].off,
				    "device state of %llu bytes (at most %llu)",
				    (unsigned long long)r->sect[FMT_S_DEVSTATE].aux,
				    (unsigned long long)FMT_MAX_DEVSTATE);
	return 0;
}

/* ---- blocks, bitmap, checksums -------------------------------------- */

static int
parse_blocks(struct fmt_reader *r, struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_BLOCKS];
	uint8_t *buf = NULL;
	uint32_t n;
	unsigned nmain = 0;
	int rc;

	rc = read_sect(r, FMT_S_BLOCKS, FMT_BLOCKS_HDR +
		       FMT_MAX_BLOCKS * FMT_BLOCKREC_SIZE, &buf, err);
	if (rc < 0)
		return rc;
	if (s->len < FMT_BLOCKS_HDR) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "block table of "
				  "%llu bytes is too short",
				  (unsigned long long)s->len);
		goto out;
	}
	n = snap_get_le32(buf);
	if (n == 0 || n > FMT_MAX_BLOCKS) {
		rc = snap_err_set(err, n == 0 ? SNAP_ECORRUPT : SNAP_ELIMIT,
				  s->off, "%u RAM blocks (1 to %d allowed)", n,
				  FMT_MAX_BLOCKS);
		goto out;
	}
	if (s->len != FMT_BLOCKS_HDR + (uint64_t)n * FMT_BLOCKREC_SIZE) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "block table is "
				  "%llu bytes, %u blocks need %llu",
				  (unsigned long long)s->len, n,
				  (unsigned long long)(FMT_BLOCKS_HDR +
				  (uint64_t)n * FMT_BLOCKREC_SIZE));
		goto out;
	}
	r->blocks = calloc(n, sizeof(*r->blocks));
	if (r->blocks == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	r->nblocks = n;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *rec = buf + FMT_BLOCKS_HDR +
				     (size_t)i * FMT_BLOCKREC_SIZE;
		uint64_t at = s->off + FMT_BLOCKS_HDR +
			      (uint64_t)i * FMT_BLOCKREC_SIZE;
		struct fmt_block_info *b = &r->blocks[i].info;
		const char *id = (const char *)rec + 32;
		size_t idlen = strnlen(id, FMT_MAX_IDSTR + 1);
		uint32_t flags = snap_get_le32(rec + 28);

		b->file_offset = snap_get_le64(rec);
		b->length = snap_get_le64(rec + 8);
		b->present = snap_get_le64(rec + 16);
		b->page_size = snap_get_le32(rec + 24);
		if (idlen == 0 || idlen > FMT_MAX_IDSTR) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at + 32, "RAM "
					  "block %u has a bad name", i);
			goto out;
		}
		for (size_t k = idlen; k < FMT_MAX_IDSTR + 1; k++) {
			if (id[k] != '\0') {
				rc = snap_err_set(err, SNAP_ECORRUPT, at + 32,
						  "RAM block %u name is not "
						  "zero-padded", i);
				goto out;
			}
		}
		memcpy(b->idstr, id, idlen);
		b->idstr[idlen] = '\0';
		for (uint32_t j = 0; j < i; j++) {
			if (strcmp(r->blocks[j].info.idstr, b->idstr) == 0) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at + 32,
						  "RAM block '%s' appears "
						  "twice", b->idstr);
				goto out;
			}
		}
		if (b->page_size < FMT_MIN_PAGE_SIZE ||
		    b->page_size > FMT_MAX_PAGE_SIZE ||
		    (b->page_size & (b->page_size - 1)) != 0) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at + 24, "RAM "
					  "block '%s' has bad page size %u",
					  b->idstr, b->page_size);
			goto out;
		}
		if (b->length > FMT_MAX_BLOCK_LEN) {
			rc = snap_err_set(err, SNAP_ELIMIT, at + 8, "RAM block "
					  "'%s' is %llu bytes (at most %llu)",
					  b->idstr,
					  (unsigned long long)b->length,
					  (unsigned long long)FMT_MAX_BLOCK_LEN);
			goto out;
		}
		if (b->length == 0 || b->length % b->page_size != 0 ||
		    b->file_offset % b->page_size != 0) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "RAM block "
					  "'%s' (offset %llu, length %llu) is "
					  "not page-aligned", b->idstr,
					  (unsigned long long)b->file_offset,
					  (unsigned long long)b->length);
			goto out;
		}
		if (b->file_offset > r->dir_off ||
		    b->length > r->dir_off - b->file_offset) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "RAM block "
					  "'%s' (offset %llu, length %llu) "
					  "extends past the section directory "
					  "at %llu", b->idstr,
					  (unsigned long long)b->file_offset,
					  (unsigned long long)b->length,
					  (unsigned long long)r->dir_off);
			goto out;
		}
		if (flags & ~FMT_BLOCK_F_MAIN) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at + 28, "RAM "
					  "block '%s' has unknown flags 0x%x",
					  b->idstr, flags);
			goto out;
		}
		b->main = flags & FMT_BLOCK_F_MAIN;
		if (b->main && (b->file_offset != 0 || ++nmain > 1)) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "main RAM "
					  "block '%s' is not the only one at "
					  "offset 0", b->idstr);
			goto out;
		}
		b->npages = b->length / b->page_size;
		if (b->present > b->npages) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at + 16, "RAM "
					  "block '%s' claims %llu present of "
					  "%llu pages", b->idstr,
					  (unsigned long long)b->present,
					  (unsigned long long)b->npages);
			goto out;
		}
		r->total_pages += b->npages;
		if (r->total_pages > FMT_MAX_TOTAL_PAGES) {
			rc = snap_err_set(err, SNAP_ELIMIT, at, "more than %llu "
					  "pages in all RAM blocks",
					  (unsigned long long)FMT_MAX_TOTAL_PAGES);
			goto out;
		}
		r->present += b->present;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * Read the bitmap (@type FMT_S_BITMAP) or checksum table (FMT_S_PAGESUM)
 * into the blocks, checking its size, its checksum and what it says.
 */
static int
parse_arrays(struct fmt_reader *r, uint32_t type, struct snap_err *err)
{
	const struct rsect *s = &r->sect[type];
	uint64_t need = 0, off = s->off;
	XXH3_state_t *st = NULL;
	uint8_t *tmp = NULL;
	int rc;

	for (unsigned i = 0; i < r->nblocks; i++) {
		uint64_t np = r->blocks[i].info.npages;
		need += type == FMT_S_BITMAP ? fmt_bitmap_bytes(np) : np * 8;
	}
	if (s->len != need)
		return snap_err_set(err, SNAP_ECORRUPT, s->off, "section '%s' is "
				    "%llu bytes, the blocks need %llu",
				    fmt_sect_name(type),
				    (unsigned long long)s->len,
				    (unsigned long long)need);
	st = XXH3_createState();
	tmp = malloc(CHUNK);
	if (st == NULL || tmp == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	XXH3_64bits_reset(st);
	for (unsigned i = 0; i < r->nblocks; i++) {
		struct rblock *b = &r->blocks[i];
		uint64_t nw = type == FMT_S_BITMAP ?
			      fmt_bitmap_bytes(b->info.npages) / 8 :
			      b->info.npages;
		uint64_t *dst = calloc(nw > 0 ? (size_t)nw : 1, 8);

		if (dst == NULL) {
			rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		if (type == FMT_S_BITMAP)
			b->bitmap = dst;
		else
			b->sums = dst;
		for (uint64_t j = 0; j < nw;) {
			size_t k = (size_t)SNAP_MIN(nw - j, (uint64_t)(CHUNK / 8));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			/* The file's byte order: read straight into place. */
			rc = rd(r, dst + j, k * 8, off, err);
			if (rc < 0)
				goto out;
			XXH3_64bits_update(st, dst + j, k * 8);
#else
			rc = rd(r, tmp, k * 8, off, err);
			if (rc < 0)
				goto out;
			XXH3_64bits_update(st, tmp, k * 8);
			for (size_t x = 0; x < k; x++)
				dst[j + x] = snap_get_le64(tmp + 8 * x);
#endif
			off += k * 8;
			j += k;
		}
	}
	if (XXH3_64bits_digest(st) != s->sum) {
		rc = snap_err_set(err, SNAP_ECHECKSUM, s->off, "checksum "
				  "mismatch in section '%s' at offset %llu",
				  fmt_sect_name(type),
				  (unsigned long long)s->off);
		goto out;
	}
	rc = 0;
out:
	XXH3_freeState(st);
	free(tmp);
	return rc;
}

/* The bitmaps agree with the block table. */
static int
check_bitmaps(struct fmt_reader *r, struct snap_err *err)
{
	for (unsigned i = 0; i < r->nblocks; i++) {
		const struct rblock *b = &r->blocks[i];
		uint64_t np = b->info.npages, nw = fmt_bitmap_bytes(np) / 8;
		uint64_t cnt = 0;

		if (np % 64 != 0 && (b->bitmap[nw - 1] >> (np % 64)) != 0)
			return snap_err_set(err, SNAP_ECORRUPT,
					    r->sect[FMT_S_BITMAP].off,
					    "bitmap of RAM block '%s' has bits "
					    "past its last page",
					    b->info.idstr);
		for (uint64_t w = 0; w < nw; w++)
			cnt += (uint64_t)__builtin_popcountll(b->bitmap[w]);
		if (cnt != b->info.present)
			return snap_err_set(err, SNAP_ECORRUPT,
					    r->sect[FMT_S_BITMAP].off,
					    "bitmap of RAM block '%s' has %llu "
					    "pages, the block table says %llu",
					    b->info.idstr,
					    (unsigned long long)cnt,
					    (unsigned long long)b->info.present);
	}
	return 0;
}

/* The error for zero page @p of block @b whose entry is not 0. */
static int
zero_sum_error(const struct fmt_reader *r, const struct rblock *b,
	       uint64_t p, struct snap_err *err)
{
	(void)r;
	return snap_err_set(err, SNAP_ECORRUPT, b->sum_off + 8 * p,
			    "zero page %llu of RAM block '%s' has a checksum",
			    (unsigned long long)p, b->info.idstr);
}

/*
 * The first zero page in [@from, @to) of @b whose entry in @ent (entries
 * of pages @from.. in host order) is not 0, walking clear bits only; or
 * UINT64_MAX.
 */
static uint64_t
first_bad_zero(const struct rblock *b, const uint64_t *ent, uint64_t from,
	       uint64_t to)
{
	for (uint64_t w = from / 64; w * 64 < to; w++) {
		uint64_t zero = ~b->bitmap[w];

		if (w == from / 64)
			zero &= ~0ull << (from % 64);
		if (to - w * 64 < 64)
			zero &= (1ull << (to - w * 64)) - 1;
		while (zero != 0) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(zero);

			zero &= zero - 1;
			if (ent[p - from] != 0)
				return p;
		}
	}
	return UINT64_MAX;
}

/* Entries of pages [@from, @from + @n) of @b from the file, host order. */
static int
read_entries(struct fmt_reader *r, const struct rblock *b, uint64_t from,
	     uint64_t n, uint64_t *out, struct snap_err *err)
{
	int rc = rd(r, out, (size_t)(n * 8), b->sum_off + 8 * from, err);

	if (rc < 0)
		return rc;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
	for (uint64_t i = 0; i < n; i++)
		out[i] = snap_get_le64((const uint8_t *)&out[i]);
#endif
	return 0;
}

#define SUMS_STEP ((size_t)32768)   /* entries per read while checking */

int
fmt_reader_load_sums(struct fmt_reader *r, struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_PAGESUM];
	const struct rblock *zb = NULL;
	uint64_t zp = UINT64_MAX, need = 0;
	XXH3_state_t *st;
	uint64_t *ent;
	int rc = 0;

	if (r->sums_checked)
		return 0;
	for (unsigned i = 0; i < r->nblocks; i++)
		need += r->blocks[i].info.npages * 8;
	if (s->len != need)
		return snap_err_set(err, SNAP_ECORRUPT, s->off, "section '%s' is "
				    "%llu bytes, the blocks need %llu",
				    fmt_sect_name(FMT_S_PAGESUM),
				    (unsigned long long)s->len,
				    (unsigned long long)need);
	/*
	 * Streamed through a small buffer: the table is 8 bytes per page and
	 * most restores need only a few of its entries, so it is not kept.
	 */
	st = XXH3_createState();
	ent = malloc(SUMS_STEP * 8);
	if (st == NULL || ent == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	XXH3_64bits_reset(st);
	for (unsigned i = 0; i < r->nblocks; i++) {
		const struct rblock *b = &r->blocks[i];

		for (uint64_t p = 0; p < b->info.npages;) {
			uint64_t n = SNAP_MIN((uint64_t)SUMS_STEP,
					      b->info.npages - p), bad;

			rc = rd(r, ent, (size_t)(n * 8), b->sum_off + 8 * p, err);
			if (rc < 0)
				goto out;
			XXH3_64bits_update(st, ent, (size_t)(n * 8));
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
			for (uint64_t x = 0; x < n; x++)
				ent[x] = snap_get_le64((const uint8_t *)&ent[x]);
#endif
			/* Reported after the checksum, which comes first. */
			if (zb == NULL &&
			    (bad = first_bad_zero(b, ent, p, p + n)) != UINT64_MAX) {
				zb = b;
				zp = bad;
			}
			p += n;
		}
	}
	if (XXH3_64bits_digest(st) != s->sum) {
		rc = snap_err_set(err, SNAP_ECHECKSUM, s->off, "checksum "
				  "mismatch in section '%s' at offset %llu",
				  fmt_sect_name(FMT_S_PAGESUM),
				  (unsigned long long)s->off);
		goto out;
	}
	if (zb != NULL) {
		rc = zero_sum_error(r, zb, zp, err);
		goto out;
	}
	r->sums_checked = true;
out:
	XXH3_freeState(st);
	free(ent);
	return rc;
}

/* The whole table in memory (blocks[].sums), checked as it is read. */
static int
load_table(struct fmt_reader *r, struct snap_err *err)
{
	int rc;

	if (r->sums_loaded)
		return 0;
	rc = parse_arrays(r, FMT_S_PAGESUM, err);
	for (unsigned i = 0; rc == 0 && i < r->nblocks; i++) {
		const struct rblock *b = &r->blocks[i];
		uint64_t bad = first_bad_zero(b, b->sums, 0, b->info.npages);

		if (bad != UINT64_MAX)
			rc = zero_sum_error(r, b, bad, err);
	}
	if (rc < 0) {
		/* Nothing half-loaded stays behind: a retry starts over. */
		for (unsigned i = 0; i < r->nblocks; i++) {
			free(r->blocks[i].sums);
			r->blocks[i].sums = NULL;
		}
		return rc;
	}
	r->sums_checked = r->sums_loaded = true;
	return 0;
}

int
fmt_reader_hold_sums(struct fmt_reader *r, struct snap_err *err)
{
	return load_table(r, err);
}

/* No two regions (blocks and sections) overlap. */
static int
check_overlap(struct fmt_reader *r, struct snap_err *err)
{
	struct { uint64_t a, b; const char *what; } iv[FMT_MAX_BLOCKS +
						       FMT_S_KNOWN_LAST];
	unsigned n = 0;

	for (unsigned i = 0; i < r->nblocks; i++) {
		iv[n].a = r->blocks[i].info.file_offset;
		iv[n].b = iv[n].a + r->blocks[i].info.length;
		iv[n++].what = r->blocks[i].info.idstr;
	}
	for (uint32_t t = 1; t <= FMT_S_KNOWN_LAST; t++) {
		if (r->sect[t].len == 0)
			continue;
		iv[n].a = r->sect[t].off;
		iv[n].b = r->sect[t].off + r->sect[t].len;
		iv[n++].what = fmt_sect_name(t);
	}
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i + 1; j < n; j++)
			if (iv[i].a < iv[j].b && iv[j].a < iv[i].b)
				return snap_err_set(err, SNAP_ECORRUPT,
						    SNAP_MAX(iv[i].a, iv[j].a),
						    "'%s' overlaps '%s' in the "
						    "file", iv[i].what,
						    iv[j].what);
	return 0;
}

/* ---- metadata and entries ---------------------------------------------- */

static int
parse_meta(struct fmt_reader *r, struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_META];
	uint8_t *buf = NULL;
	uint64_t seen = 0;
	size_t pos = 0;
	int rc;

	rc = read_sect(r, FMT_S_META, FMT_MAX_META_SIZE, &buf, err);
	if (rc < 0)
		return rc;
	while (pos < s->len) {
		uint64_t at = s->off + pos;
		uint16_t tag;
		uint32_t len;
		const uint8_t *v;

		if (s->len - pos < 8) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "metadata "
					  "record header at offset %llu is cut "
					  "short", (unsigned long long)at);
			goto out;
		}
		tag = snap_get_le16(buf + pos);
		len = snap_get_le32(buf + pos + 4);
		if (len > s->len - pos - 8 ||
		    SNAP_ALIGN_UP((uint64_t)len, (uint64_t)8) > s->len - pos - 8) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "metadata "
					  "record %u of %u bytes at offset %llu "
					  "extends past its section", tag, len,
					  (unsigned long long)at);
			goto out;
		}
		v = buf + pos + 8;
		pos += 8 + SNAP_ALIGN_UP((size_t)len, (size_t)8);
		if (tag < 64) {
			if (seen & ((uint64_t)1 << tag)) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at,
						  "metadata record %u appears "
						  "twice", tag);
				goto out;
			}
			seen |= (uint64_t)1 << tag;
		}
		for (int i = 0; i < 9; i++) {
			if (tag != text_tags[i])
				continue;
			if (len > FMT_MAX_TEXT) {
				rc = snap_err_set(err, SNAP_ELIMIT, at, "metadata "
						  "record %u is %u bytes", tag,
						  len);
				goto out;
			}
			if (memchr(v, '\0', len) != NULL) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at,
						  "metadata record %u contains "
						  "a NUL byte", tag);
				goto out;
			}
			r->meta_text[i] = malloc((size_t)len + 1);
			if (r->meta_text[i] == NULL) {
				rc = snap_err_set(err, -ENOMEM, 0, "out of "
						  "memory");
				goto out;
			}
			memcpy(r->meta_text[i], v, len);
			r->meta_text[i][len] = '\0';
		}
		if (tag == FMT_T_CREATED_NS || tag == FMT_T_SAVE_DURATION ||
		    tag == FMT_T_DOWNTIME) {
			uint64_t x;
			if (len != 8) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at,
						  "metadata record %u is %u "
						  "bytes, not 8", tag, len);
				goto out;
			}
			x = snap_get_le64(v);
			if (tag == FMT_T_CREATED_NS)
				r->meta.created_ns = x;
			else if (tag == FMT_T_SAVE_DURATION)
				r->meta.save_duration_ns = x;
			else
				r->meta.downtime_ns = x;
		} else if (tag == FMT_T_SAVE_MODE) {
			uint32_t m = len == 4 ? snap_get_le32(v) : UINT32_MAX;
			if (m > FMT_SAVE_STOPPED) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at,
						  "bad save mode in metadata");
				goto out;
			}
			r->meta.save_mode = (enum fmt_save_mode)m;
		}
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

static int
parse_entries(struct fmt_reader *r, struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_ENTRIES];
	uint8_t *buf = NULL;
	uint32_t n;
	size_t pos = FMT_ENTRIES_HDR;
	int rc;

	rc = read_sect(r, FMT_S_ENTRIES, FMT_MAX_ENTRIES_SIZE, &buf, err);
	if (rc < 0)
		return rc;
	if (s->len < FMT_ENTRIES_HDR) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "entries section "
				  "of %llu bytes is too short",
				  (unsigned long long)s->len);
		goto out;
	}
	n = snap_get_le32(buf);
	if (n > FMT_MAX_ENTRIES) {
		rc = snap_err_set(err, SNAP_ELIMIT, s->off, "%u entries (at "
				  "most %d)", n, FMT_MAX_ENTRIES);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t at = s->off + pos;
		uint16_t nlen;
		uint32_t dlen;
		struct rentry *e = &r->entries[i];

		if (s->len - pos < 8) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "entry %u "
					  "header is cut short", i);
			goto out;
		}
		nlen = snap_get_le16(buf + pos);
		dlen = snap_get_le32(buf + pos + 4);
		if (!fmt_entry_name_ok((const char *)buf + pos + 8,
				       SNAP_MIN((size_t)nlen,
						(size_t)(s->len - pos - 8)))) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "entry %u "
					  "has a bad name", i);
			goto out;
		}
		if ((uint64_t)nlen + dlen > s->len - pos - 8 ||
		    SNAP_ALIGN_UP((uint64_t)nlen + dlen, (uint64_t)8) >
		    s->len - pos - 8) {
			rc = snap_err_set(err, SNAP_ECORRUPT, at, "entry %u "
					  "extends past its section", i);
			goto out;
		}
		memcpy(e->name, buf + pos + 8, nlen);
		e->name[nlen] = '\0';
		e->data = buf + pos + 8 + nlen;
		e->len = dlen;
		for (uint32_t j = 0; j < i; j++) {
			if (strcmp(r->entries[j].name, e->name) == 0) {
				rc = snap_err_set(err, SNAP_ECORRUPT, at,
						  "entry '%s' appears twice",
						  e->name);
				goto out;
			}
		}
		pos += 8 + SNAP_ALIGN_UP((size_t)nlen + dlen, (size_t)8);
	}
	if (pos != s->len) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off + pos, "entries "
				  "section has %llu bytes after its last entry",
				  (unsigned long long)(s->len - pos));
		goto out;
	}
	r->nentries = n;
	r->entries_buf = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

/* ---- open / free ------------------------------------------------------- */

static int
reader_load(struct fmt_reader *r, unsigned flags, struct snap_err *err)
{
	struct stat st;
	uint32_t count = 0;
	uint64_t dirsum = 0;
	int rc;

	if (fstat(r->fd, &st) < 0)
		return snap_err_set(err, -errno, 0, "cannot stat: %s",
				    strerror(errno));
	if (!S_ISREG(st.st_mode))
		return snap_err_set(err, -EINVAL, 0, "not a regular file");
	r->size = (uint64_t)st.st_size;
	r->allocated = (uint64_t)st.st_blocks * 512;
	rc = parse_footer(r, &count, &dirsum, err);
	if (rc == 0)
		rc = parse_dir(r, count, dirsum, err);
	if (rc == 0)
		rc = parse_blocks(r, err);
	if (rc == 0)
		rc = check_overlap(r, err);
	if (rc == 0) {
		uint64_t at = r->sect[FMT_S_PAGESUM].off;

		for (unsigned i = 0; i < r->nblocks; i++) {
			r->blocks[i].sum_off = at;
			at += 8 * r->blocks[i].info.npages;
		}
	}
	if (rc == 0)
		rc = parse_arrays(r, FMT_S_BITMAP, err);
	if (rc == 0)
		rc = check_bitmaps(r, err);
	if (rc == 0 && !(flags & FMT_OPEN_DEFER_SUMS))
		rc = load_table(r, err);
	if (rc == 0)
		rc = parse_meta(r, err);
	if (rc == 0)
		rc = parse_entries(r, err);
	if (rc < 0)
		return rc;
	for (int i = 0; i < 9; i++) {
		if (r->meta_text[i] == NULL && (r->meta_text[i] =
						calloc(1, 1)) == NULL)
			return snap_err_set(err, -ENOMEM, 0, "out of memory");
	}
	r->meta.guest_name = r->meta_text[0];
	r->meta.snapshot_name = r->meta_text[1];
	r->meta.guest_spec = r->meta_text[2];
	r->meta.qemu_version = r->meta_text[3];
	r->meta.machine_type = r->meta_text[4];
	r->meta.qemu_argv = r->meta_text[5];
	r->meta.capabilities = r->meta_text[6];
	r->meta.parent = r->meta_text[7];
	r->meta.disks_policy = r->meta_text[8];
	return 0;
}

static int
reader_new(struct fmt_reader **out, int fd, const char *path, unsigned flags,
	   struct snap_err *err)
{
	struct fmt_reader *r = calloc(1, sizeof(*r));
	int rc;

	if (r == NULL) {
		close(fd);
		return snap_err_set(err, -ENOMEM, 0, "out of memory");
	}
	r->fd = fd;
	snap_strlcpy(r->path, path, sizeof(r->path));
	rc = reader_load(r, flags, err);
	if (rc < 0) {
		fmt_reader_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int
fmt_reader_open(struct fmt_reader **out, const char *path, struct snap_err *err)
{
	return fmt_reader_open_flags(out, path, 0, err);
}

int
fmt_reader_open_flags(struct fmt_reader **out, const char *path,
		      unsigned flags, struct snap_err *err)
{
	/* O_NONBLOCK: a FIFO in place of a file must not block the open. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int rc = -errno;
		return snap_err_set(err, rc, 0, "cannot open snapshot '%s': %s",
				    path, snap_strerror(rc));
	}
	return reader_new(out, fd, path, flags, err);
}

int
fmt_reader_open_fd(struct fmt_reader **out, int fd, struct snap_err *err)
{
	char path[64];
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (dup < 0) {
		int rc = -errno;
		return snap_err_set(err, rc, 0, "cannot duplicate fd %d: %s",
				    fd, snap_strerror(rc));
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dup);
	return reader_new(out, dup, path, 0, err);
}

void
fmt_reader_free(struct fmt_reader *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	for (unsigned i = 0; i < r->nblocks; i++) {
		free(r->blocks[i].bitmap);
		free(r->blocks[i].sums);
	}
	free(r->blocks);
	for (int i = 0; i < 9; i++)
		free(r->meta_text[i]);
	free(r->entries_buf);
	free(r);
}

/* ---- accessors --------------------------------------------------------- */

void
fmt_reader_stat(const struct fmt_reader *r, struct fmt_stat *out)
{
	memset(out, 0, sizeof(*out));
	out->version_major = r->major;
	out->version_minor = r->minor;
	out->apparent_size = r->size;
	out->allocated_size = r->allocated;
	out->total_pages = r->total_pages;
	out->present_pages = r->present;
	out->devstate_raw = r->sect[FMT_S_DEVSTATE].aux;
	out->devstate_stored = r->sect[FMT_S_DEVSTATE].len;
	out->nblocks = r->nblocks;
	out->nentries = r->nentries;
	out->root = r->root;
}

const struct fmt_meta *
fmt_reader_meta(const struct fmt_reader *r)
{
	return &r->meta;
}

int
fmt_reader_entry(const struct fmt_reader *r, const char *name,
		 const void **data, size_t *len)
{
	for (unsigned i = 0; i < r->nentries; i++) {
		if (strcmp(r->entries[i].name, name) == 0) {
			*data = r->entries[i].data;
			*len = r->entries[i].len;
			return 0;
		}
	}
	return -ENOENT;
}

int
fmt_reader_entry_at(const struct fmt_reader *r, unsigned i, const char **name,
		    const void **data, size_t *len)
{
	if (i >= r->nentries)
		return -ERANGE;
	*name = r->entries[i].name;
	*data = r->entries[i].data;
	*len = r->entries[i].len;
	return 0;
}

int
fmt_reader_block(const struct fmt_reader *r, unsigned i,
		 struct fmt_block_info *out)
{
	if (i >= r->nblocks)
		return -ERANGE;
	*out = r->blocks[i].info;
	return 0;
}

int
fmt_reader_block_index(const struct fmt_reader *r, const char *idstr)
{
	for (unsigned i = 0; i < r->nblocks; i++)
		if (strcmp(r->blocks[i].info.idstr, idstr) == 0)
			return (int)i;
	return -ENOENT;
}

int
fmt_reader_page_present(const struct fmt_reader *r, unsigned block,
			uint64_t page)
{
	if (block >= r->nblocks || page >= r->blocks[block].info.npages)
		return -ERANGE;
	return (int)((r->blocks[block].bitmap[page / 64] >> (page % 64)) & 1);
}

int
fmt_reader_next_present(const struct fmt_reader *r, unsigned block,
			uint64_t from, uint64_t *page)
{
	const struct rblock *b;
	uint64_t w;

	if (block >= r->nblocks)
		return -ERANGE;
	b = &r->blocks[block];
	if (from >= b->info.npages)
		return -ENOENT;
	w = from / 64;
	uint64_t bits = b->bitmap[w] & (~(uint64_t)0 << (from % 64));
	for (;;) {
		if (bits != 0) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			if (p >= b->info.npages)
				return -ENOENT;
			*page = p;
			return 0;
		}
		if (++w >= fmt_bitmap_bytes(b->info.npages) / 8)
			return -ENOENT;
		bits = b->bitmap[w];
	}
}

static int
bad_page(const struct rblock *b, uint64_t page, struct snap_err *err)
{
	uint64_t off = b->info.file_offset + page * b->info.page_size;

	return snap_err_set(err, SNAP_ECHECKSUM, off, "checksum mismatch in "
			    "page %llu of RAM block '%s' (file offset %llu)",
			    (unsigned long long)page, b->info.idstr,
			    (unsigned long long)off);
}

int
fmt_reader_read_pages(struct fmt_reader *r, unsigned block, uint64_t page,
		      uint64_t n, void *buf, struct snap_err *err)
{
	const struct rblock *b;
	uint8_t *p = buf;
	uint64_t ps, first;
	int rc;

	if (block >= r->nblocks || page > r->blocks[block].info.npages ||
	    n > r->blocks[block].info.npages - page)
		return snap_err_set(err, -ERANGE, 0, "no pages %llu+%llu in "
				    "RAM block %u", (unsigned long long)page,
				    (unsigned long long)n, block);
	b = &r->blocks[block];
	ps = b->info.page_size;
	if (n > 1 && n * ps > FMT_READ_MAX)
		return snap_err_set(err, -EINVAL, 0, "read of %llu pages is "
				    "too large", (unsigned long long)n);
	/* The table vouches for zero pages too: no page without it. */
	rc = fmt_reader_load_sums(r, err);
	if (rc < 0)
		return rc;
	/* Only the span from the first to the last present page is read. */
	if (fmt_reader_next_present(r, block, page, &first) < 0 ||
	    first >= page + n) {
		memset(p, 0, (size_t)(n * ps));
		return 0;
	}
	{
		uint64_t last = page + n - 1;
		uint64_t held[FMT_READ_MAX / FMT_MIN_PAGE_SIZE];
		const uint64_t *sums;

		while (!((b->bitmap[last / 64] >> (last % 64)) & 1))
			last--;
		/* The entries: from the table in memory, or from the file
		 * (the table was checked whole; these are part of it). */
		if (r->sums_loaded) {
			sums = b->sums + first;
		} else {
			rc = read_entries(r, b, first, last + 1 - first, held,
					  err);
			if (rc < 0)
				return rc;
			sums = held;
		}
		memset(p, 0, (size_t)((first - page) * ps));
		memset(p + (last + 1 - page) * ps, 0,
		       (size_t)((page + n - last - 1) * ps));
		rc = rd(r, p + (first - page) * ps,
			(size_t)((last + 1 - first) * ps),
			b->info.file_offset + first * ps, err);
		if (rc < 0)
			return rc;
		for (uint64_t q = first; q <= last; q++) {
			uint8_t *pg = p + (q - page) * ps;

			if ((b->bitmap[q / 64] >> (q % 64)) & 1) {
				if (XXH3_64bits(pg, (size_t)ps) != sums[q - first])
					return bad_page(b, q, err);
			} else {
				/* A hole reads as zeros; anything else in a
				 * zero page's place is not the guest's. */
				memset(pg, 0, (size_t)ps);
			}
		}
	}
	return 0;
}

int
fmt_reader_read_page(struct fmt_reader *r, unsigned block, uint64_t page,
		     void *buf, struct snap_err *err)
{
	if (block >= r->nblocks || page >= r->blocks[block].info.npages)
		return snap_err_set(err, -ERANGE, 0, "no page %llu in RAM "
				    "block %u", (unsigned long long)page, block);
	return fmt_reader_read_pages(r, block, page, 1, buf, err);
}

/* ---- device state ------------------------------------------------------ */

/* Check the compressed device state against its directory checksum. */
int
fmt_check_devstate(struct fmt_reader *r, struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_DEVSTATE];
	XXH3_state_t *st = XXH3_createState();
	uint8_t *tmp = malloc(CHUNK);
	int rc = 0;

	if (st == NULL || tmp == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	XXH3_64bits_reset(st);
	for (uint64_t done = 0; done < s->len;) {
		size_t k = (size_t)SNAP_MIN(s->len - done, (uint64_t)CHUNK);
		rc = rd(r, tmp, k, s->off + done, err);
		if (rc < 0)
			goto out;
		XXH3_64bits_update(st, tmp, k);
		done += k;
	}
	if (XXH3_64bits_digest(st) != s->sum)
		rc = snap_err_set(err, SNAP_ECHECKSUM, s->off, "checksum "
				  "mismatch in section 'device state' at "
				  "offset %llu", (unsigned long long)s->off);
out:
	XXH3_freeState(st);
	free(tmp);
	return rc;
}

int
fmt_reader_devstate(struct fmt_reader *r, fmt_sink_fn sink, void *ctx,
		    struct snap_err *err)
{
	const struct rsect *s = &r->sect[FMT_S_DEVSTATE];
	ZSTD_DCtx *dc = NULL;
	uint8_t *in = NULL, *outb = NULL;
	size_t outcap = ZSTD_DStreamOutSize(), last = 0;
	uint64_t done = 0, produced = 0;
	int rc;

	rc = fmt_check_devstate(r, err);
	if (rc < 0)
		return rc;
	dc = ZSTD_createDCtx();
	in = malloc(CHUNK);
	outb = malloc(outcap);
	if (dc == NULL || in == NULL || outb == NULL) {
		rc = snap_err_set(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	/* Bound the decoder's memory whatever the frame header claims. */
	ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, 27);
	while (done < s->len) {
		size_t k = (size_t)SNAP_MIN(s->len - done, (uint64_t)CHUNK);
		ZSTD_inBuffer ib = { in, k, 0 };

		rc = rd(r, in, k, s->off + done, err);
		if (rc < 0)
			goto out;
		done += k;
		while (ib.pos < ib.size) {
			ZSTD_outBuffer ob = { outb, outcap, 0 };
			last = ZSTD_decompressStream(dc, &ob, &ib);
			if (ZSTD_isError(last)) {
				rc = snap_err_set(err, SNAP_ECORRUPT, s->off,
						  "cannot decompress the device "
						  "state: %s",
						  ZSTD_getErrorName(last));
				goto out;
			}
			produced += ob.pos;
			if (produced > s->aux) {
				rc = snap_err_set(err, SNAP_ECORRUPT, s->off,
						  "device state is longer than "
						  "its recorded %llu bytes",
						  (unsigned long long)s->aux);
				goto out;
			}
			if (ob.pos > 0 && (rc = sink(ctx, outb, ob.pos)) < 0)
				goto out;
		}
	}
	/* Flush what the decoder still holds. */
	while (s->len > 0 && last != 0) {
		ZSTD_inBuffer ib = { NULL, 0, 0 };
		ZSTD_outBuffer ob = { outb, outcap, 0 };
		last = ZSTD_decompressStream(dc, &ob, &ib);
		if (ZSTD_isError(last) || ob.pos == 0)
			break;
		produced += ob.pos;
		if (produced > s->aux) {
			rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "device "
					  "state is longer than its recorded "
					  "%llu bytes",
					  (unsigned long long)s->aux);
			goto out;
		}
		if ((rc = sink(ctx, outb, ob.pos)) < 0)
			goto out;
	}
	if (s->len > 0 && last != 0) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "device state "
				  "ends in the middle of a zstd frame");
		goto out;
	}
	if (produced != s->aux) {
		rc = snap_err_set(err, SNAP_ECORRUPT, s->off, "device state is "
				  "%llu bytes, its recorded size is %llu",
				  (unsigned long long)produced,
				  (unsigned long long)s->aux);
		goto out;
	}
	rc = 0;
out:
	ZSTD_freeDCtx(dc);
	free(in);
	free(outb);
	return rc;
}
