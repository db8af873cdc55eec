/*
 * common/util.c: string, I/O, size-parsing and clock helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

size_t
snap_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

void *
snap_grow(void *v, size_t *cap, size_t len, size_t size, size_t first)
{
	size_t ncap;
	void *nv;

	if (len < *cap)
		return v;
	ncap = *cap != 0 ? *cap * 2 : first;
	if (ncap <= len || size == 0 || ncap > SIZE_MAX / size)
		return NULL;
	nv = realloc(v, ncap * size);
	if (nv != NULL)
		*cap = ncap;
	return nv;
}

int
snap_fmt(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, size, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

int
snap_read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return SNAP_ETRUNC;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
snap_pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return SNAP_ETRUNC;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int
snap_write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
snap_pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

int
snap_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift != 0 && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (end[0] == 'B')
		end++;
	if (*end != '\0')
		return -EINVAL;
	if (shift != 0 && v > (ULLONG_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static uint64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t
snap_now_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t
snap_now_real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int
snap_fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (slash == NULL) {
		snap_strlcpy(dir, ".", sizeof(dir));
	} else if (slash == path) {
		snap_strlcpy(dir, "/", sizeof(dir));
	} else {
		size_t n = (size_t)(slash - path);
		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

bool
snap_is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t acc = 0;
	size_t i = 0;

	/* Word-at-a-time with an early exit every 256 bytes. */
	for (; i + 256 <= len; i += 256) {
		for (size_t j = 0; j < 256; j += 8) {
			uint64_t w;
			memcpy(&w, b + i + j, sizeof(w));
			acc |= w;
		}
		if (acc != 0)
			return false;
	}
	for (; i < len; i++)
		if (b[i] != 0)
			return false;
	return true;
}

int
snap_default_store(char *buf, size_t size)
{
	const char *x = getenv("XDG_STATE_HOME"), *h = getenv("HOME");

	if (geteuid() == 0)
		return snap_fmt(buf, size, "/var/lib/qemu-snapd");
	if (x != NULL && x[0] == '/')
		return snap_fmt(buf, size, "%s/qemu-snapd", x);
	if (h != NULL && h[0] == '/')
		return snap_fmt(buf, size, "%s/.local/state/qemu-snapd", h);
	return -ENOENT;
}
