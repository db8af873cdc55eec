/*
 * tests/unit/test_pagemap.c: finding private copies in a file mapping
 * (restore/pagemap.c), on this very process.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "restore/restore.h"

#define NPAGES 300

static void
test_private_copies(void **state)
{
	char path[] = "/tmp/snap-pagemap-XXXXXX";
	uint64_t bitmap[(NPAGES + 63) / 64], addr = 0;
	volatile uint8_t sum = 0;
	struct snap_err e;
	uint8_t *m;
	int fd;
	(void)state;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NPAGES * 4096), 0);
	assert_int_equal(pwrite(fd, "data", 4, 5 * 4096), 4);
	m = mmap(NULL, NPAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(m != MAP_FAILED);

	/* Reading maps page-cache pages: not private. */
	for (int i = 0; i < NPAGES; i++)
		sum += m[i * 4096];
	assert_int_equal(rst_find_mapping(getpid(), path, NPAGES * 4096, &addr,
					  &e), 0);
	assert_true(addr == (uintptr_t)m);
	assert_int_equal(rst_private_pages(getpid(), addr, NPAGES, bitmap, &e), 0);
	{
		uint64_t bytes = 1;
		assert_int_equal(rst_mapping_private(getpid(), addr, &bytes, &e), 0);
		assert_true(bytes == 0);
	}

	/* Writing makes private copies: exactly those pages are reported. */
	m[5 * 4096 + 1] = 1;
	m[64 * 4096] = 2;
	m[299 * 4096 + 4095] = 3;
	assert_int_equal(rst_private_pages(getpid(), addr, NPAGES, bitmap, &e), 3);
	{
		uint64_t bytes = 0;
		assert_int_equal(rst_mapping_private(getpid(), addr, &bytes, &e), 0);
		assert_true(bytes == 3 * 4096);
		assert_int_equal(rst_mapping_private(getpid(), addr + 4096, &bytes,
						     &e), -ENOENT);
	}
	for (int i = 0; i < NPAGES; i++) {
		int set = (bitmap[i / 64] >> (i % 64)) & 1;
		assert_int_equal(set, i == 5 || i == 64 || i == 299);
	}

	unlink(path);
	/* A file that is not mapped at all. */
	assert_int_equal(rst_find_mapping(getpid(), "/etc/hostname", 1, &addr,
					  &e), -ENOENT);
	/* A mapping too short is not the one asked for. */
	{
		char p2[] = "/tmp/snap-pagemap-XXXXXX";
		int fd2 = mkstemp(p2);
		assert_int_equal(ftruncate(fd2, 4096), 0);
		void *m2 = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd2, 0);
		assert_int_equal(rst_find_mapping(getpid(), p2, 8192, &addr, &e),
				 -ENOENT);
		assert_int_equal(rst_find_mapping(getpid(), p2, 4096, &addr, &e), 0);
		munmap(m2, 4096);
		close(fd2);
		unlink(p2);
	}
	munmap(m, NPAGES * 4096);
	close(fd);
	(void)sum;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_private_copies),
	};
	return cmocka_run_group_tests_name("pagemap", tests, NULL, NULL);
}
