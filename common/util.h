/*
 * common/util.h: the few helpers every module needs.
 *
 * Byte order helpers (little-endian for our files, big-endian for QEMU's
 * migration stream), full reads and writes that retry on EINTR and short
 * transfers, a bounded string copy (Debian 12's glibc has no strlcpy), size
 * parsing, and a monotonic clock. All functions here are thread-safe and
 * keep no state.
 */
#ifndef SNAP_COMMON_UTIL_H
#define SNAP_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define SNAP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SNAP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SNAP_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Round @x up to a multiple of @a, which must be a power of two. */
#define SNAP_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define SNAP_IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a) - 1)) == 0)

static inline void
snap_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void
snap_put_le32(uint8_t *p, uint32_t v)
{
	snap_put_le16(p, (uint16_t)v);
	snap_put_le16(p + 2, (uint16_t)(v >> 16));
}

static inline void
snap_put_le64(uint8_t *p, uint64_t v)
{
	snap_put_le32(p, (uint32_t)v);
	snap_put_le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t
snap_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t
snap_get_le32(const uint8_t *p)
{
	return (uint32_t)snap_get_le16(p) | ((uint32_t)snap_get_le16(p + 2) << 16);
}

static inline uint64_t
snap_get_le64(const uint8_t *p)
{
	return (uint64_t)snap_get_le32(p) | ((uint64_t)snap_get_le32(p + 4) << 32);
}

static inline void
snap_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
snap_put_be32(uint8_t *p, uint32_t v)
{
	snap_put_be16(p, (uint16_t)(v >> 16));
	snap_put_be16(p + 2, (uint16_t)v);
}

static inline void
snap_put_be64(uint8_t *p, uint64_t v)
{
	snap_put_be32(p, (uint32_t)(v >> 32));
	snap_put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t
snap_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
snap_get_be32(const uint8_t *p)
{
	return ((uint32_t)snap_get_be16(p) << 16) | snap_get_be16(p + 2);
}

static inline uint64_t
snap_get_be64(const uint8_t *p)
{
	return ((uint64_t)snap_get_be32(p) << 32) | snap_get_be32(p + 4);
}

/*
 * Copy at most @size - 1 bytes of @src into @dst and NUL-terminate it (when
 * @size > 0). Returns strlen(@src); a result >= @size means truncation.
 */
size_t snap_strlcpy(char *dst, const char *src, size_t size);

/*
 * snprintf into @dst that reports truncation: returns 0, or -ENAMETOOLONG if
 * the result did not fit (@dst is still NUL-terminated).
 */
int snap_fmt(char *dst, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Room for element @len of array @v (elements of @size bytes, *@cap of them
 * allocated): @v itself while it has room, else @v reallocated to twice the
 * capacity (@first at the start) and *@cap updated. NULL when out of memory;
 * @v and *@cap are unchanged then.
 */
void *snap_grow(void *v, size_t *cap, size_t len, size_t size, size_t first);

/*
 * Read exactly @len bytes. Returns 0, -errno, or SNAP_ETRUNC when end of
 * file comes first. Retries on EINTR and short reads.
 */
int snap_read_full(int fd, void *buf, size_t len);
int snap_pread_full(int fd, void *buf, size_t len, off_t off);

/* Write exactly @len bytes. Returns 0 or -errno (a zero-byte write is -EIO). */
int snap_write_full(int fd, const void *buf, size_t len);
int snap_pwrite_full(int fd, const void *buf, size_t len, off_t off);

/*
 * Parse a size such as "4096", "64K", "256M", "1G", "2T" (binary units,
 * optional trailing "iB" or "B"). Returns 0 and sets *@out, or -EINVAL,
 * -ERANGE on overflow.
 */
int snap_parse_size(const char *s, uint64_t *out);

/* Monotonic and wall-clock time in nanoseconds. */
uint64_t snap_now_mono_ns(void);
uint64_t snap_now_real_ns(void);

/* fsync the directory that contains @path (for atomic publication). */
int snap_fsync_parent(const char *path);

/*
 * The default store directory of snapd and snapctl: /var/lib/qemu-snapd for
 * root, else $XDG_STATE_HOME/qemu-snapd or ~/.local/state/qemu-snapd.
 * (Never the snap package manager's /var/lib/snapd.) Returns 0, -ENOENT
 * when no home directory is known, -ENAMETOOLONG.
 */
int snap_default_store(char *buf, size_t size);

/* True when all @len bytes at @p are zero. Fast on aligned page buffers. */
bool snap_is_zero(const void *p, size_t len);

#endif
