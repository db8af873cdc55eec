/*
 * bench/format.c: the snapshot writer and verifier against the disk,
 * driven by bench/format.sh (which also runs fio for comparison).
 *
 *   format write DIR NAME SIZE_MIB [SEED]
 *       Write a snapshot with one main RAM block of SIZE_MIB, 30% of whose
 *       pages are zero: a fifth of those as single zero pages scattered
 *       among the data, the rest in long runs (64 to 1024 pages), as in a
 *       real guest. Pages arrive in ascending order, as in a precopy pass.
 *   format verify PATH
 *       Verify it.
 *
 * Each prints one line of key=value pairs for the script to read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/err.h"
#include "common/util.h"
#include "format/format.h"

#define PS   4096u
#define POOL ((size_t)64 << 20)

static uint64_t
xs(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static double
cpu_secs(const struct rusage *a, const struct rusage *b)
{
	return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec) +
	       (double)(b->ru_stime.tv_sec - a->ru_stime.tv_sec) +
	       (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec) / 1e6 +
	       (double)(b->ru_stime.tv_usec - a->ru_stime.tv_usec) / 1e6;
}

static int
do_write(const char *dir, const char *name, uint64_t mib, uint64_t seed)
{
	struct fmt_block_decl d = { "pc.ram", mib << 20, PS, true };
	struct fmt_writer *w = NULL;
	struct fmt_summary sum;
	struct fmt_progress pr;
	struct snap_err e;
	uint64_t npages = (mib << 20) / PS, zrun = 0, singles = 0, runs = 0;
	uint64_t s = seed * 2 + 1, t0, t1;
	struct rusage ru0, ru1;
	struct fmt_writer_opts o = { 0 };
	const char *env;

	/* Tuning knobs for experiments; the defaults are the library's. */
	if ((env = getenv("FMT_BENCH_QD")) != NULL)
		o.queue_depth = (unsigned)atoi(env);
	if ((env = getenv("FMT_BENCH_RUN_KIB")) != NULL)
		o.run_size = (size_t)atoi(env) << 10;
	if ((env = getenv("FMT_BENCH_GAP")) != NULL)
		o.gap_fill_pages = (unsigned)atoi(env);
	uint8_t *pool;
	int rc;

	pool = malloc(POOL);
	if (pool == NULL)
		return 1;
	for (size_t i = 0; i < POOL; i += 8) {
		uint64_t v = xs(&s);
		memcpy(pool + i, &v, 8);
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = snap_now_mono_ns();
	rc = fmt_writer_open(&w, dir, name, &o, &e);
	if (rc == 0)
		rc = fmt_writer_declare(w, &d, 1, &e);
	for (uint64_t p = 0; rc == 0 && p < npages; p++) {
		uint64_t r = xs(&s);

		/*
		 * Outside a run: a 6/10000 chance to start a zero run of 544
		 * pages on average (about 24.6% of all pages end up in runs),
		 * else an 8% chance of a single zero page (6% of all pages).
		 */
		if (zrun == 0 && r % 10000 < 6) {
			zrun = 64 + (r >> 32) % 961;
			runs += zrun;
		}
		if (zrun > 0) {
			zrun--;
			rc = fmt_writer_put_zero(w, 0, p, &e);
			continue;
		}
		if ((r >> 16) % 1000 < 80) {
			singles++;
			rc = fmt_writer_put_zero(w, 0, p, &e);
			continue;
		}
		/* Straight from the pool: the generator copies nothing. */
		rc = fmt_writer_put_page(w, 0, p,
					 pool + (size_t)(p % (POOL / PS)) * PS, &e);
	}
	if (rc == 0)
		rc = fmt_writer_devstate(w, pool, 256 << 10, &e);
	if (rc == 0) {
		fmt_writer_progress(w, &pr);
		rc = fmt_writer_commit(w, &sum, &e);
	}
	t1 = snap_now_mono_ns();
	getrusage(RUSAGE_SELF, &ru1);
	if (rc < 0) {
		fprintf(stderr, "bench: %s\n", snap_err_text(&e, rc));
		fmt_writer_free(w);
		free(pool);
		return 1;
	}
	fmt_writer_progress(w, &pr);
	printf("bytes_written=%llu seconds=%.3f apparent=%llu allocated=%llu "
	       "present=%llu pages=%llu single_zero=%llu run_zero=%llu "
	       "page_bytes=%llu io=%s cpu=%.3f\n",
	       (unsigned long long)pr.bytes_written, (double)(t1 - t0) / 1e9,
	       (unsigned long long)sum.apparent_size,
	       (unsigned long long)sum.allocated_size,
	       (unsigned long long)sum.present_pages,
	       (unsigned long long)npages, (unsigned long long)singles,
	       (unsigned long long)runs,
	       (unsigned long long)sum.data_bytes_written,
	       fmt_writer_io_mode(w) == FMT_IO_DIRECT ? "direct" : "buffered",
	       cpu_secs(&ru0, &ru1));
	fmt_writer_free(w);
	free(pool);
	return 0;
}

static int
do_verify(const char *path)
{
	struct fmt_reader *r = NULL;
	struct fmt_verify_result res;
	struct snap_err e;
	uint64_t t0, t1;
	int rc;

	t0 = snap_now_mono_ns();
	rc = fmt_reader_open(&r, path, &e);
	if (rc == 0)
		rc = fmt_reader_verify(r, NULL, &res, &e);
	t1 = snap_now_mono_ns();
	fmt_reader_free(r);
	if (rc < 0) {
		fprintf(stderr, "bench: %s\n", snap_err_text(&e, rc));
		return 1;
	}
	printf("bytes_read=%llu seconds=%.3f pages=%llu io=%s\n",
	       (unsigned long long)res.bytes_read, (double)(t1 - t0) / 1e9,
	       (unsigned long long)res.pages_checked,
	       res.direct ? "direct" : "buffered");
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 5 && strcmp(argv[1], "write") == 0)
		return do_write(argv[2], argv[3], strtoull(argv[4], NULL, 10),
				argc > 5 ? strtoull(argv[5], NULL, 10) : 1);
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return do_verify(argv[2]);
	fprintf(stderr, "usage: format write DIR NAME SIZE_MIB [SEED] | "
		"format verify PATH\n");
	return 2;
}
