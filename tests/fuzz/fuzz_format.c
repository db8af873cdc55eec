/*
 * tests/fuzz/fuzz_format.c: libFuzzer target for the snapshot file reader
 * (format/reader.c, format/verify.c).
 *
 * The input is a whole snapshot file, placed in a memfd and opened with
 * fmt_reader_open_fd(). When it opens, every accessor runs over what it
 * describes: metadata, entries, blocks, presence bits, page reads (one by
 * one and in runs), the device-state stream (to a sink that stops after a
 * bounded amount) and a full verify. Opened again with the checksum table
 * deferred, it must be accepted exactly when the plain open accepts it.
 * Whatever the bytes, nothing may crash, leak or hang.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "format/format.h"

#define DS_CAP ((uint64_t)8 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	uint64_t total;
	uint8_t x;
};

static int
sink(void *ctx, const void *buf, size_t len)
{
	struct sink *s = ctx;

	s->total += len;
	if (len > 0)
		s->x ^= ((const uint8_t *)buf)[len - 1];
	return s->total > DS_CAP ? -EFBIG : 0;
}

static void
bad(void *ctx, const char *idstr, uint64_t page, uint64_t off)
{
	(void)ctx;
	(void)page;
	(void)off;
	if (strlen(idstr) > FMT_MAX_IDSTR)
		abort();
}

static void
exercise(struct fmt_reader *r)
{
	struct fmt_stat st;
	struct fmt_verify_opts vo = { .bad_page = bad, .buffered = true };
	struct fmt_verify_result vr;
	struct snap_err e;
	struct sink s = { 0, 0 };
	const struct fmt_meta *me;
	static uint8_t page[FMT_MAX_PAGE_SIZE];

	fmt_reader_stat(r, &st);
	me = fmt_reader_meta(r);
	if (me->guest_name == NULL || me->guest_spec == NULL ||
	    me->disks_policy == NULL)
		abort();
	for (unsigned i = 0; i < st.nentries; i++) {
		const char *name;
		const void *d, *d2;
		size_t len, len2;
		if (fmt_reader_entry_at(r, i, &name, &d, &len) != 0 ||
		    fmt_reader_entry(r, name, &d2, &len2) != 0 || d != d2)
			abort();
	}
	for (unsigned b = 0; b < st.nblocks; b++) {
		struct fmt_block_info bi;
		uint64_t p = 0, n = 0;

		if (fmt_reader_block(r, b, &bi) != 0 ||
		    fmt_reader_block_index(r, bi.idstr) != (int)b)
			abort();
		while (n < 64 && fmt_reader_next_present(r, b, p, &p) == 0) {
			if (fmt_reader_page_present(r, b, p) != 1)
				abort();
			fmt_reader_read_page(r, b, p, page, &e);
			p++;
			n++;
		}
		if (bi.npages > 0)
			fmt_reader_read_page(r, b, bi.npages - 1, page, &e);
		/* Runs of pages: the first few, and one at the end. */
		{
			static uint8_t run[FMT_READ_MAX];
			uint64_t k = bi.page_size > 0 &&
				     bi.page_size <= FMT_READ_MAX ?
				     FMT_READ_MAX / bi.page_size : 1;

			for (p = 0; p < bi.npages && p < 4 * k; p += k)
				fmt_reader_read_pages(r, b, p, SNAP_MIN(k,
						      bi.npages - p),
						      k == 1 ? page : run, &e);
			if (bi.npages > 2 && k > 2)
				fmt_reader_read_pages(r, b, bi.npages - 3, 3,
						      run, &e);
		}
	}
	fmt_reader_devstate(r, sink, &s, &e);
	fmt_reader_verify(r, &vo, &vr, &e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fmt_reader *r = NULL;
	struct snap_err e;
	char path[64];
	int fd = memfd_create("fuzz_format", MFD_CLOEXEC), rc, rc2;

	if (fd < 0)
		return 0;
	if (snap_write_full(fd, data, size) < 0) {
		close(fd);
		return 0;
	}
	rc = fmt_reader_open_fd(&r, fd, &e);
	if (rc == 0) {
		exercise(r);
		fmt_reader_free(r);
	}
	/* With the checksum table deferred, the open and the later load
	 * together accept exactly what the plain open accepts. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rc2 = fmt_reader_open_flags(&r, path, FMT_OPEN_DEFER_SUMS, &e);
	if (rc2 == 0) {
		rc2 = fmt_reader_load_sums(r, &e);
		if (rc2 == 0)
			exercise(r);
		fmt_reader_free(r);
	}
	if ((rc == 0) != (rc2 == 0))
		abort();
	close(fd);
	return 0;
}
