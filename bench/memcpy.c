/*
 * bench/memcpy.c: the machine's memory copy bandwidth, one of the limits
 * bench/bench.sh compares snapd against. Copies a buffer of MIB MiB
 * (default 256, far larger than any cache) into another ROUNDS times
 * (default 5) with memcpy and prints the best and median rate of one copy,
 * in MiB/s, as "best=<rate> median=<rate>". Both buffers are touched first
 * so that page faults are not measured.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

int
main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	size_t len = mib << 20;
	double rates[64];
	char *src, *dst;
	int i;

	if (mib == 0 || rounds < 1 || rounds > 64) {
		fprintf(stderr, "usage: memcpy [MIB [ROUNDS <= 64]]\n");
		return 2;
	}
	src = malloc(len);
	dst = malloc(len);
	if (src == NULL || dst == NULL) {
		fprintf(stderr, "memcpy: cannot allocate 2 x %zu MiB\n", mib);
		return 1;
	}
	memset(src, 0x5a, len);
	memset(dst, 0, len);
	for (i = 0; i < rounds; i++) {
		double t0 = now_s();

		memcpy(dst, src, len);
		rates[i] = (double)mib / (now_s() - t0);
		src[(size_t)i * 4096 % len]++;
	}
	qsort(rates, (size_t)rounds, sizeof(rates[0]), cmp_double);
	printf("best=%.0f median=%.0f check=%d\n", rates[rounds - 1],
	       rates[rounds / 2], dst[len / 2]);
	free(src);
	free(dst);
	return 0;
}
