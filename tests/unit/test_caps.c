/*
 * tests/unit/test_caps.c: capability rules of a restore (restore/restore.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "restore/restore.h"

static int
resolve(const struct rst_cap *call, size_t nc, const struct rst_cap *guest,
	size_t ng, struct rst_cap_plan *p, struct snap_err *e)
{
	snap_err_clear(e);
	memset(p, 0xa5, sizeof(*p));
	return rst_caps_resolve(call, nc, guest, ng, p, e);
}

static void
expect_refused(const struct rst_cap *call, size_t nc,
	       const struct rst_cap *guest, size_t ng, const char *part)
{
	struct rst_cap_plan p;
	struct snap_err e;

	assert_int_equal(resolve(call, nc, guest, ng, &p, &e), SNAP_ECAPS);
	if (strstr(e.msg, part) == NULL)
		fail_msg("message '%s' lacks '%s'", e.msg, part);
}

static void
test_defaults(void **state)
{
	struct rst_cap_plan p;
	struct snap_err e;
	(void)state;

	assert_int_equal(resolve(NULL, 0, NULL, 0, &p, &e), 0);
	assert_true(p.mapped_ram);
	assert_true(p.events);
	assert_int_equal(p.nqemu, 1);
	assert_string_equal(p.qemu[0].name, "events");
	assert_true(p.qemu[0].state);
}

static void
test_unknown_and_duplicate(void **state)
{
	const struct rst_cap bad[] = { { "turbo", true } };
	const struct rst_cap dup[] = { { "events", true }, { "events", false } };
	(void)state;

	expect_refused(bad, 1, NULL, 0, "unknown migration capability 'turbo' in the request");
	expect_refused(NULL, 0, bad, 1, "'turbo' in the guest's");
	expect_refused(dup, 2, NULL, 0, "'events' is given twice");
}

static void
test_contradicts_file(void **state)
{
	const struct rst_cap off[] = { { "mapped-ram", false } };
	const struct rst_cap on[] = { { "mapped-ram", true } };
	struct rst_cap_plan p;
	struct snap_err e;
	(void)state;

	expect_refused(off, 1, NULL, 0,
		       "capability 'mapped-ram' is off in the request, but the "
		       "snapshot file needs it on");
	expect_refused(NULL, 0, off, 1, "off in the guest's capabilities");
	/* The call overrides a contradicting guest setting. */
	assert_int_equal(resolve(on, 1, off, 1, &p, &e), 0);
	assert_true(p.mapped_ram);
	/* mapped-ram is the file's business, never sent to QEMU 7.2. */
	for (size_t i = 0; i < p.nqemu; i++)
		assert_string_not_equal(p.qemu[i].name, "mapped-ram");
}

static void
test_inapplicable(void **state)
{
	static const char *const names[] = {
		"xbzrle", "compress", "postcopy-ram", "multifd",
		"x-ignore-shared", "background-snapshot", "block",
		"return-path", "auto-converge", "zero-blocks",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct rst_cap c = { names[i], true };
		struct rst_cap_plan p;
		struct snap_err e;
		char want[128];

		snprintf(want, sizeof(want), "capability '%s' (on in the request) "
			 "cannot apply to a snapshot restore: ", names[i]);
		expect_refused(&c, 1, NULL, 0, want);
		/* Off is accepted and changes nothing. */
		c.state = false;
		assert_int_equal(resolve(&c, 1, NULL, 0, &p, &e), 0);
		assert_int_equal(p.nqemu, 1);
	}
}

static void
test_order_and_precedence(void **state)
{
	const struct rst_cap call[] = {
		{ "validate-uuid", true }, { "events", false },
	};
	const struct rst_cap guest[] = {
		{ "late-block-activate", true }, { "events", true },
		{ "validate-uuid", false },
	};
	struct rst_cap_plan p;
	struct snap_err e;
	(void)state;

	assert_int_equal(resolve(call, 2, guest, 3, &p, &e), 0);
	/* The call's entries in its order, then the guest's remaining one. */
	assert_int_equal(p.nqemu, 3);
	assert_string_equal(p.qemu[0].name, "validate-uuid");
	assert_true(p.qemu[0].state);
	assert_string_equal(p.qemu[1].name, "events");
	assert_false(p.qemu[1].state);
	assert_string_equal(p.qemu[2].name, "late-block-activate");
	assert_false(p.events);

	/* Without a call list the guest's list decides. */
	assert_int_equal(resolve(NULL, 0, guest, 3, &p, &e), 0);
	assert_int_equal(p.nqemu, 3);
	assert_true(p.events);
	assert_string_equal(p.qemu[0].name, "late-block-activate");
	assert_true(rst_cap_effective("late-block-activate", guest, 3));
	assert_false(rst_cap_effective("validate-uuid", guest, 3));
	assert_true(rst_cap_effective("mapped-ram", NULL, 0));
	assert_true(rst_cap_effective("events", NULL, 0));
	assert_false(rst_cap_effective("xbzrle", NULL, 0));
}

static void
test_table(void **state)
{
	enum rst_cap_role role;
	const char *why = NULL;
	(void)state;

	/* QEMU 7.2's 21 capabilities plus mapped-ram. */
	assert_int_equal(rst_cap_count(), 22);
	assert_null(rst_cap_name(rst_cap_count()));
	assert_int_equal(rst_cap_role("multifd", &role, &why), 0);
	assert_int_equal(role, RST_CAP_NONE);
	assert_non_null(why);
	assert_int_equal(rst_cap_role("nope", &role, &why), -ENOENT);
	assert_int_equal(rst_cap_role("validate-uuid", &role, NULL), 0);
	assert_int_equal(role, RST_CAP_QEMU);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_unknown_and_duplicate),
		cmocka_unit_test(test_contradicts_file),
		cmocka_unit_test(test_inapplicable),
		cmocka_unit_test(test_order_and_precedence),
		cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests_name("caps", tests, NULL, NULL);
}
