/*
 * bench/memtouch.c: what it costs this machine to give a process fresh
 * memory, one of the limits of an eager restore (QEMU writes every page of
 * the guest into memory it has just allocated). Maps MIB MiB (default
 * 1024) of anonymous memory, writes one byte per 4 KiB page, unmaps it;
 * ROUNDS times (default 4) in a row. Prints "first=<ms> again=<ms>": the
 * first round, and the median of the others, which get memory the kernel
 * has just had back. On a virtual machine whose balloon driver reports
 * free pages to the host, the first touch of memory that has been idle
 * for a while can cost many times the second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "timing.h"

int
main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
	int rounds = argc > 2 ? atoi(argv[2]) : 4;
	size_t size = mib << 20;
	double t[64];

	if (mib == 0 || rounds < 2 || rounds > 64) {
		fprintf(stderr, "usage: memtouch [MIB [ROUNDS (2..64)]]\n");
		return 2;
	}
	for (int i = 0; i < rounds; i++) {
		double t0 = now_s();
		volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED) {
			perror("memtouch: mmap");
			return 1;
		}
		/* As QEMU asks for its guest RAM. */
		madvise((void *)p, size, MADV_HUGEPAGE);
		for (size_t off = 0; off < size; off += 4096)
			p[off] = 1;
		t[i] = (now_s() - t0) * 1e3;
		munmap((void *)p, size);
	}
	qsort(t + 1, (size_t)rounds - 1, sizeof(t[0]), cmp_double);
	printf("first=%.0f again=%.0f\n", t[0], t[1 + (rounds - 1) / 2]);
	return 0;
}
