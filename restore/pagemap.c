/*
 * restore/pagemap.c: finding the pages of a new QEMU's file-mapped RAM that
 * no longer come from the snapshot file.
 *
 * A lazy restore maps the snapshot as guest RAM copy-on-write. QEMU resets
 * the machine at start-up even with -incoming, and a reset may copy ROM
 * blobs into RAM (e.g. -device loader); each such write makes a private
 * anonymous page that shadows the file from then on. /proc/PID/pagemap
 * tells them apart: a page-cache page is "file-page or shared-anon" (bit
 * 61), a private copy is present without that bit, or swapped out.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "restore/restore.h"

#define PM_PRESENT   (1ull << 63)
#define PM_SWAPPED   (1ull << 62)
#define PM_FILE      (1ull << 61)
#define PM_CHUNK     4096u   /* entries per read */

int
rst_find_mapping(pid_t pid, const char *path, uint64_t len, uint64_t *addr,
		 struct snap_err *err)
{
	char maps[64], line[4608];
	struct stat st;
	FILE *f;
	int rc = -ENOENT;

	if (stat(path, &st) < 0)
		return snap_err_set(err, -errno, 0, "cannot stat '%s': %s", path,
				    strerror(errno));
	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	f = fopen(maps, "re");
	if (f == NULL)
		return snap_err_set(err, -errno, 0, "cannot read '%s': %s", maps,
				    strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;

		if (sscanf(line, "%llx-%llx %*4s %llx %x:%x %llu", &start, &end,
			   &off, &maj, &min, &ino) != 6)
			continue;
		if (ino != (unsigned long long)st.st_ino ||
		    makedev(maj, min) != st.st_dev || off != 0 ||
		    end - start < len)
			continue;
		*addr = start;
		rc = 0;
		break;
	}
	fclose(f);
	if (rc < 0)
		snap_err_set(err, rc, 0, "process %d does not map '%s'",
			     (int)pid, path);
	return rc;
}

int
rst_mapping_private(pid_t pid, uint64_t addr, uint64_t *bytes,
		    struct snap_err *err)
{
	char path[64], line[512], head[32];
	unsigned long long anon = 0, swap = 0, kb;
	bool inside = false, found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	snprintf(head, sizeof(head), "%llx-", (unsigned long long)addr);
	f = fopen(path, "re");
	if (f == NULL)
		return snap_err_set(err, -errno, 0, "cannot read '%s': %s", path,
				    strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		/*
		 * A mapping's header starts with its range in lower-case hex;
		 * its fields ("Size:", "Anonymous:", ...) with a capital.
		 */
		bool header = (line[0] >= '0' && line[0] <= '9') ||
			      (line[0] >= 'a' && line[0] <= 'f');
		if (header) {
			if (inside)
				break;
			inside = strncmp(line, head, strlen(head)) == 0;
			found |= inside;
			continue;
		}
		if (!inside)
			continue;
		if (sscanf(line, "Anonymous: %llu kB", &kb) == 1)
			anon = kb;
		else if (sscanf(line, "Swap: %llu kB", &kb) == 1)
			swap = kb;
	}
	fclose(f);
	if (!found)
		return snap_err_set(err, -ENOENT, 0, "process %d has no mapping "
				    "at 0x%llx", (int)pid,
				    (unsigned long long)addr);
	*bytes = (anon + swap) * 1024;
	return 0;
}

int64_t
rst_private_pages(pid_t pid, uint64_t addr, uint64_t npages, uint64_t *bitmap,
		  struct snap_err *err)
{
	uint64_t *buf = NULL;
	char path[64];
	int64_t count = 0;
	int fd, rc;

	memset(bitmap, 0, (size_t)((npages + 63) / 64) * sizeof(uint64_t));
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return snap_err_set(err, -errno, 0, "cannot open '%s': %s", path,
				    strerror(errno));
	buf = malloc(PM_CHUNK * sizeof(uint64_t));
	if (buf == NULL) {
		count = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < npages; i += PM_CHUNK) {
		uint64_t n = SNAP_MIN((uint64_t)PM_CHUNK, npages - i);
		off_t off = (off_t)(((addr >> 12) + i) * sizeof(uint64_t));

		rc = snap_pread_full(fd, buf, (size_t)n * sizeof(uint64_t), off);
		if (rc < 0) {
			count = snap_err_set(err, rc, 0, "cannot read '%s': %s",
					     path, snap_strerror(rc));
			goto out;
		}
		for (uint64_t k = 0; k < n; k++) {
			uint64_t e = buf[k];
			if (((e & PM_PRESENT) && !(e & PM_FILE)) ||
			    (e & PM_SWAPPED)) {
				bitmap[(i + k) / 64] |= 1ull << ((i + k) % 64);
				count++;
			}
		}
	}
out:
	free(buf);
	close(fd);
	return count;
}
