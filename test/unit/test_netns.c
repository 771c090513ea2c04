#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <net/if.h>

#include "err.h"
#include "netns.h"

static void
assert_ifname(const char *s, size_t size)
{
	size_t len = strnlen(s, size);

	assert_true(len > 0);
	assert_true(len < IFNAMSIZ);
	assert_true(len < size);
}

static void
names_from_uuid(void **state)
{
	struct netns_names n;

	(void)state;
	assert_int_equal(netns_names_for("1a2b3c4d-5e6f-4a8b-9c0d-112233445566", &n), 0);
	assert_string_equal(n.ns, "sistemo-1a2b3c4d");
	assert_string_equal(n.ns_path, "/run/netns/sistemo-1a2b3c4d");
	assert_string_equal(n.veth_host, "vh-1a2b3c4d");
	assert_string_equal(n.veth_ns, "eth0");
	assert_string_equal(n.bridge, "br0");
	assert_string_equal(n.tap, "tap0");
	assert_ifname(n.veth_host, sizeof(n.veth_host));
	assert_ifname(n.veth_ns, sizeof(n.veth_ns));
	assert_ifname(n.bridge, sizeof(n.bridge));
	assert_ifname(n.tap, sizeof(n.tap));
}

static void
names_lowercase(void **state)
{
	struct netns_names n;

	(void)state;
	assert_int_equal(netns_names_for("ABCDEF01-0000-4000-8000-000000000000", &n), 0);
	assert_string_equal(n.ns, "sistemo-abcdef01");
	assert_string_equal(n.veth_host, "vh-abcdef01");
}

static void
names_only_first_eight(void **state)
{
	struct netns_names n;

	(void)state;
	/* a bare 32-digit id still gives 8 */
	assert_int_equal(netns_names_for("0123456789abcdef0123456789abcdef", &n), 0);
	assert_string_equal(n.veth_host, "vh-01234567");
}

static void
names_reject_bad_ids(void **state)
{
	static const char *const bad[] = {"", "1a2b3c", "1a2b3c4g-0000", "../../etc", "1a2b-3c4d"};
	struct netns_names n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(netns_names_for(bad[i], &n), -EINVAL);
		/* whatever was read, nothing escapes the directory or the name size */
		assert_null(strchr(n.ns, '/'));
		assert_ifname(n.veth_host, sizeof(n.veth_host));
	}
	assert_int_equal(netns_names_for(NULL, &n), -EINVAL);
}

static void
create_rejects_bad_names(void **state)
{
	struct netns_names n;
	struct err err = {0};

	(void)state;
	netns_names_for("1a2b3c4d-0000-4000-8000-000000000000", &n);
	strcpy(n.ns_path, "/tmp/elsewhere");
	assert_int_equal(netns_machine_create(&n, "sistemo0", &err), -EINVAL);
	assert_int_equal(err.code, ERR_INVALID);

	err_clear(&err);
	netns_names_for("1a2b3c4d-0000-4000-8000-000000000000", &n);
	memset(n.tap, 'x', sizeof(n.tap)); /* no terminator */
	assert_int_equal(netns_machine_create(&n, "sistemo0", &err), -EINVAL);
	assert_int_equal(err.code, ERR_INVALID);

	err_clear(&err);
	netns_names_for("1a2b3c4d-0000-4000-8000-000000000000", &n);
	assert_int_equal(netns_machine_create(&n, "a-bridge-name-too-long", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid bridge name"));

	err_clear(&err);
	strcpy(n.veth_host, "vh/1");
	assert_int_equal(netns_machine_delete(&n, &err), -EINVAL);
	assert_false(netns_machine_exists(&n));
}

static void
bridge_rejects_bad_input(void **state)
{
	struct err err = {0};

	(void)state;
	assert_int_equal(netns_bridge_ensure("", 0x0ac80001, 16, &err), -EINVAL);
	assert_int_equal(err.code, ERR_INVALID);
	err_clear(&err);
	assert_int_equal(netns_bridge_ensure("sistemo0", 0x0ac80001, 31, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "invalid prefix /31"));
	err_clear(&err);
	assert_int_equal(netns_bridge_delete("has space", &err), -EINVAL);
}

static int
never_called(void *ud)
{
	(void)ud;
	fail_msg("fn ran although the namespace could not be entered");
	return 0;
}

static void
run_in_missing_namespace(void **state)
{
	struct err err = {0};

	(void)state;
	assert_int_equal(netns_run_in("/nonexistent/netns/x", never_called, NULL, &err), -ENOENT);
	assert_int_equal(err.code, ERR_NOT_FOUND);
	assert_string_equal(err.msg,
			    "enter namespace '/nonexistent/netns/x': No such file or directory");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_from_uuid),
		cmocka_unit_test(names_lowercase),
		cmocka_unit_test(names_only_first_eight),
		cmocka_unit_test(names_reject_bad_ids),
		cmocka_unit_test(create_rejects_bad_names),
		cmocka_unit_test(bridge_rejects_bad_input),
		cmocka_unit_test(run_in_missing_namespace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
