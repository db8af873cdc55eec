/*
 * tests/unit/test_spec.c: guest spec validation and QEMU argv building.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/err.h"
#include "snapd/spec.h"

static int
parse(const char *text, struct guest_spec **s, struct snap_err *e)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	int rc;

	assert_non_null(j);
	snap_err_clear(e);
	rc = spec_from_json(j, s, e);
	json_decref(j);
	return rc;
}

static void
expect_bad(const char *text, const char *msg_part)
{
	struct guest_spec *s = NULL;
	struct snap_err e;

	assert_int_equal(parse(text, &s, &e), SNAP_ECONFIG);
	assert_null(s);
	if (strstr(e.msg, msg_part) == NULL)
		fail_msg("error '%s' lacks '%s'", e.msg, msg_part);
}

static void
test_minimal_defaults(void **state)
{
	struct guest_spec *s = NULL;
	struct snap_err e;
	json_t *j;
	(void)state;

	assert_int_equal(parse("{\"name\":\"g1\",\"memory\":\"64M\","
			       "\"kernel\":\"/k\"}", &s, &e), 0);
	assert_string_equal(s->name, "g1");
	assert_true(s->memory == 64ull << 20);
	assert_int_equal(s->vcpus, 1);
	assert_string_equal(s->machine, "pc-i440fx-7.2");
	assert_string_equal(s->accel, "tcg");
	assert_true(s->vnc);
	assert_false(spec_has_writable_disk(s));
	j = spec_to_json(s);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "memory")),
			 64 << 20);
	assert_true(json_is_null(json_object_get(j, "initrd")));
	/* The canonical form parses back to the same canonical form. */
	{
		struct guest_spec *s2 = NULL;
		json_t *j2;
		assert_int_equal(spec_from_json(j, &s2, &e), 0);
		j2 = spec_to_json(s2);
		assert_true(json_equal(j, j2));
		json_decref(j2);
		spec_free(s2);
	}
	json_decref(j);
	spec_free(s);
}

static void
test_rejections(void **state)
{
	(void)state;
	expect_bad("{\"memory\":\"64M\",\"kernel\":\"/k\"}", "'name'");
	expect_bad("{\"name\":\".hidden\",\"memory\":\"64M\",\"kernel\":\"/k\"}",
		   "'name'");
	expect_bad("{\"name\":\"a/b\",\"memory\":\"64M\",\"kernel\":\"/k\"}",
		   "'name'");
	expect_bad("{\"name\":\"g\",\"kernel\":\"/k\"}", "'memory'");
	expect_bad("{\"name\":\"g\",\"memory\":\"65M\",\"kernel\":\"/k\"}",
		   "multiple of 2 MiB");
	expect_bad("{\"name\":\"g\",\"memory\":\"8M\",\"kernel\":\"/k\"}",
		   "between 16 MiB");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\"}", "'kernel' or");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"machine\":\"q35\"}", "not pinned");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"machine\":\"pc\"}", "not pinned");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"vcpus\":0}", "'vcpus'");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"accel\":\"hvf\"}", "'hvf'");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"colour\":1}", "unknown spec field 'colour'");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"extra-args\":[\"-incoming\",\"defer\"]}",
		   "'-incoming' is managed by snapd");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"kernel\":\"/k\","
		   "\"extra-args\":[\"--qmp\"]}", "managed by snapd");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\",\"append\":\"x\","
		   "\"disks\":[{\"path\":\"/d\"}]}", "need 'kernel'");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\","
		   "\"disks\":[{\"path\":\"/d\",\"mode\":\"w\"}]}", "mode 'w'");
	expect_bad("{\"name\":\"g\",\"memory\":\"64M\","
		   "\"disks\":[{\"path\":\"/a,b\"}]}", "comma");
	expect_bad("[1]", "JSON object");
}

static void
test_disks(void **state)
{
	struct guest_spec *s = NULL;
	struct snap_err e;
	(void)state;

	assert_int_equal(parse("{\"name\":\"g\",\"memory\":268435456,"
			       "\"disks\":[{\"path\":\"/a\",\"mode\":\"ro\"},"
			       "{\"path\":\"/b\",\"format\":\"qcow2\","
			       "\"mode\":\"external\"}]}", &s, &e), 0);
	assert_int_equal(s->ndisks, 2);
	assert_false(spec_has_writable_disk(s));
	spec_free(s);
	assert_int_equal(parse("{\"name\":\"g\",\"memory\":268435456,"
			       "\"disks\":[{\"path\":\"/a\"}]}", &s, &e), 0);
	assert_true(spec_has_writable_disk(s));
	spec_free(s);
}

static bool
has_arg(const struct qemu_argv *a, const char *arg)
{
	for (unsigned i = 0; i < a->argc; i++)
		if (strcmp(a->argv[i], arg) == 0)
			return true;
	return false;
}

#define VNC_BASE "{\"name\":\"g1\",\"memory\":\"64M\",\"kernel\":\"/k\","

static void
test_vnc_endpoint(void **state)
{
	struct guest_spec *s = NULL, *s2 = NULL;
	struct snap_err e;
	json_t *j, *v;
	char *text;
	(void)state;

	/* Default: loopback, automatic port, no password, 60 s hold. */
	assert_int_equal(parse(VNC_BASE "\"display\":\"vnc\"}", &s, &e), 0);
	assert_string_equal(s->vnc_ep.host, "127.0.0.1");
	assert_int_equal(s->vnc_ep.port, 0);
	assert_string_equal(s->vnc_ep.password, "");
	assert_int_equal(s->vnc_ep.hold_s, SPEC_VNC_HOLD_DEFAULT);
	j = spec_to_json(s);
	v = json_object_get(j, "vnc");
	assert_string_equal(json_string_value(json_object_get(v, "listen")),
			    "127.0.0.1:auto");
	json_decref(j);
	spec_free(s);
	s = NULL;

	assert_int_equal(parse(VNC_BASE "\"vnc\":{\"listen\":\"127.0.0.1:5901\","
			       "\"password\":\"12345678\",\"hold-s\":5}}",
			       &s, &e), 0);
	assert_int_equal(s->vnc_ep.port, 5901);
	assert_string_equal(s->vnc_ep.password, "12345678");
	assert_int_equal(s->vnc_ep.hold_s, 5);
	/* The canonical JSON reads back to the same spec. */
	j = spec_to_json(s);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_int_equal(parse(text, &s2, &e), 0);
	assert_int_equal(s2->vnc_ep.port, 5901);
	assert_string_equal(s2->vnc_ep.password, "12345678");
	assert_int_equal(s2->vnc_ep.hold_s, 5);
	free(text);
	json_decref(j);
	spec_free(s);
	spec_free(s2);
	s = NULL;

	assert_int_equal(parse(VNC_BASE "\"vnc\":{\"listen\":\"[::1]:auto\"}}",
			       &s, &e), 0);
	assert_string_equal(s->vnc_ep.host, "::1");
	j = spec_to_json(s);
	assert_string_equal(json_string_value(json_object_get(
			    json_object_get(j, "vnc"), "listen")), "[::1]:auto");
	json_decref(j);
	spec_free(s);

	expect_bad(VNC_BASE "\"vnc\":{\"password\":\"123456789\"}}",
		   "'vnc.password' must be 1 to 8 bytes");
	expect_bad(VNC_BASE "\"vnc\":{\"password\":\"\"}}", "vnc.password");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":\"localhost:5901\"}}",
		   "numeric address");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":\"127.0.0.1:65536\"}}",
		   "vnc.listen");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":\"127.0.0.1:0\"}}",
		   "vnc.listen");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":\"127.0.0.1\"}}",
		   "vnc.listen");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":\"::1:5901\"}}",
		   "vnc.listen");
	expect_bad(VNC_BASE "\"vnc\":{\"listen\":5901}}", "must be a string");
	expect_bad(VNC_BASE "\"vnc\":{\"hold-s\":0}}", "vnc.hold-s");
	expect_bad(VNC_BASE "\"vnc\":{\"port\":1}}", "unknown spec field 'vnc.port'");
	expect_bad(VNC_BASE "\"vnc\":[]}", "must be an object");
	expect_bad(VNC_BASE "\"display\":\"none\",\"vnc\":{}}",
		   "needs display");
}

static void
test_argv(void **state)
{
	struct guest_spec *s = NULL;
	struct qemu_argv *a = NULL;
	struct snap_err e;
	struct qemu_run run = {
		.qemu = "qemu-system-x86_64", .qmp_listen_fd = 7,
		.vnc_path = "/st/vnc.sock", .serial_path = "/st/ser,ial.log",
	};
	(void)state;

	assert_int_equal(parse("{\"name\":\"g\",\"memory\":\"64M\","
			       "\"kernel\":\"/k\",\"append\":\"fill=1M\","
			       "\"extra-args\":[\"-device\",\"loader,addr=0x1000,data=1,data-len=1\"]}",
			       &s, &e), 0);
	assert_int_equal(spec_build_argv(s, &run, &a), 0);
	assert_null(a->argv[a->argc]);
	assert_true(has_arg(a, "pc-i440fx-7.2,memory-backend=ram0"));
	assert_true(has_arg(a, "memory-backend-ram,id=ram0,size=67108864"));
	assert_true(has_arg(a, "socket,id=snapd-qmp,fd=7,server=on,wait=off"));
	assert_true(has_arg(a, "file,id=snapd-serial,path=/st/ser,,ial.log"));
	assert_true(has_arg(a, "unix:/st/vnc.sock"));
	assert_true(has_arg(a, "fill=1M"));
	assert_true(has_arg(a, "-nodefaults"));
	assert_false(has_arg(a, "-incoming"));
	assert_false(has_arg(a, "-S"));
	assert_string_equal(a->argv[a->argc - 1],
			    "loader,addr=0x1000,data=1,data-len=1");
	argv_free(a);

	run.ram_file = "/st/snap.snap";
	run.incoming = true;
	run.paused = true;
	assert_int_equal(spec_build_argv(s, &run, &a), 0);
	assert_true(has_arg(a, "memory-backend-file,id=ram0,size=67108864,"
			    "mem-path=/st/snap.snap,share=off"));
	assert_true(has_arg(a, "-incoming"));
	assert_true(has_arg(a, "defer"));
	assert_true(has_arg(a, "-S"));
	{
		json_t *j = argv_to_json(a);
		assert_int_equal(json_array_size(j), a->argc);
		json_decref(j);
	}
	argv_free(a);
	spec_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_disks),
		cmocka_unit_test(test_vnc_endpoint),
		cmocka_unit_test(test_argv),
	};
	return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
