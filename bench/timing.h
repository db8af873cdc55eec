/*
 * bench/timing.h: the clock and the sort order the stand-alone benchmark
 * programs (bench/memcpy.c, bench/memtouch.c) share. Header only: each of
 * them is built from its one source file.
 */
#ifndef SNAP_BENCH_TIMING_H
#define SNAP_BENCH_TIMING_H

#include <time.h>

/* Monotonic time in seconds. */
static inline double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* qsort() order of doubles, ascending. */
static inline int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

#endif
