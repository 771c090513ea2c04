/* Argument parsers and formatters of the CLI: sizes, port specs, bounded integers, ages. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "units.h"
#include "macro.h"

static void
test_size_forms(void **state)
{
	static const struct {
		const char *s;
		uint64_t mb;
	} ok[] = {
		{"512", 512},
		{"512M", 512},
		{"512m", 512},
		{"512MB", 512},
		{"512mb", 512},
		{"512MiB", 512},
		{"512mib", 512},
		{"2G", 2048},
		{"2g", 2048},
		{"2GB", 2048},
		{"2Gb", 2048},
		{"2GiB", 2048},
		{"1T", 1048576},
		{"1TB", 1048576},
		{"1tib", 1048576},
		{"128", 128},
		{"0512", 512},
		{"18446744073709551615", UINT64_MAX},
		{"17592186044415T", 17592186044415ULL * 1048576},
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct err err = {0};
		uint64_t mb = 0;
		assert_int_equal(units_parse_size_mb("memory", ok[i].s, &mb, &err), 0);
		assert_int_equal(err.code, ERR_OK);
		assert_true(mb == ok[i].mb);
	}
}

static void
test_size_errors(void **state)
{
	static const char *const bad[] = {
		"",    "0",   "0G", "-1", "-512M", "+512", "1.5G", "1,5G", " 512", "512 ",
		"5 G", "12X", "G",  "M",  "2GG",   "2KB",  "2P",   "0x10", "2Gi",  "2iB",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct err err = {0};
		uint64_t mb = 77;
		assert_true(units_parse_size_mb("memory", bad[i], &mb, &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
		assert_string_equal(err.field, "memory");
		assert_int_equal(mb, 77);
	}
}

static void
test_size_message(void **state)
{
	struct err err = {0};
	uint64_t mb;

	(void)state;
	units_parse_size_mb("memory", "12X", &mb, &err);
	assert_string_equal(err.msg, "--memory: invalid size '12X': use a whole number of MB or a "
				     "number with M, G or T (e.g. 512M, 2G)");
	err_clear(&err);
	units_parse_size_mb(NULL, "12X", &mb, &err);
	assert_string_equal(err.msg,
			    "invalid size '12X': use a whole number of MB or a number with "
			    "M, G or T (e.g. 512M, 2G)");
	assert_string_equal(err.field, "");
}

static void
test_size_overflow(void **state)
{
	static const char *const big[] = {
		"18446744073709551616",
		"99999999999999999999999",
		"17592186044416T",
		"18014398509481984G",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(big); i++) {
		struct err err = {0};
		uint64_t mb;
		assert_true(units_parse_size_mb("storage", big[i], &mb, &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
		assert_non_null(strstr(err.msg, "--storage: size '"));
		assert_non_null(strstr(err.msg, "is too large"));
	}
}

static void
check_spec(const char *s, const char *ip, unsigned host, unsigned machine, bool udp)
{
	struct port_spec p;
	struct err err = {0};

	assert_int_equal(units_parse_port_spec("expose", s, &p, &err), 0);
	assert_string_equal(p.host_ip, ip);
	assert_int_equal(p.host_port, host);
	assert_int_equal(p.machine_port, machine);
	assert_int_equal(p.udp, udp);
}

static void
test_port_spec_forms(void **state)
{
	(void)state;
	check_spec("80", "", 80, 80, false);
	check_spec("8080:3000", "", 8080, 3000, false);
	check_spec("53:53/udp", "", 53, 53, true);
	check_spec("53/udp", "", 53, 53, true);
	check_spec("53/UDP", "", 53, 53, true);
	check_spec("80/tcp", "", 80, 80, false);
	check_spec("127.0.0.1:8443:443", "127.0.0.1", 8443, 443, false);
	check_spec("127.0.0.1:8443:443/tcp", "127.0.0.1", 8443, 443, false);
	check_spec("0.0.0.0:1:65535/udp", "0.0.0.0", 1, 65535, true);
	check_spec("[::1]:8443:443", "::1", 8443, 443, false);
	check_spec("[fd00:0:0::0001]:53:5353/udp", "fd00::1", 53, 5353, true);
	check_spec("65535", "", 65535, 65535, false);
}

static void
check_spec_error(const char *s, const char *needle)
{
	struct port_spec p = {.host_port = 9};
	struct err err = {0};

	assert_true(units_parse_port_spec("expose", s, &p, &err) < 0);
	assert_int_equal(err.code, ERR_INVALID);
	assert_string_equal(err.field, "expose");
	assert_int_equal(strncmp(err.msg, "--expose: ", 10), 0);
	if (!strstr(err.msg, needle))
		fail_msg("'%s': message '%s' lacks '%s'", s, err.msg, needle);
	assert_int_equal(p.host_port, 9);
}

static void
test_port_spec_errors(void **state)
{
	(void)state;
	check_spec_error("0", "port '0' in '0' is out of range: use 1 to 65535");
	check_spec_error("65536", "port '65536' in '65536' is out of range");
	check_spec_error("8080:0", "port '0' in '8080:0' is out of range");
	check_spec_error("99999999999999999999999", "is out of range");
	check_spec_error("80:", "invalid port spec '80:': use PORT, HOST:MACHINE");
	check_spec_error(":80", "invalid port spec ':80'");
	check_spec_error(":80:80", "invalid port spec ':80:80'");
	check_spec_error("", "invalid port spec ''");
	check_spec_error("http", "invalid port spec 'http'");
	check_spec_error("-80", "invalid port spec '-80'");
	check_spec_error("8 0", "invalid port spec '8 0'");
	check_spec_error("1:2:3:4", "invalid port spec '1:2:3:4'");
	check_spec_error("::1:80:80", "invalid port spec '::1:80:80'");
	check_spec_error("[::1]:80", "invalid port spec '[::1]:80'");
	check_spec_error("[::1:80:80", "invalid port spec '[::1:80:80'");
	check_spec_error("[::1]:80:80:1", "invalid port spec");
	check_spec_error("80/sctp", "unknown protocol 'sctp' in '80/sctp': use tcp or udp");
	check_spec_error("80/", "unknown protocol '' in '80/'");
	check_spec_error("300.1.1.1:80:80", "invalid host ip '300.1.1.1' in '300.1.1.1:80:80'");
	check_spec_error("localhost:80:80", "invalid host ip 'localhost'");
	check_spec_error("[127.0.0.1]:80:80", "invalid host ip '127.0.0.1'");
	check_spec_error("[zz::1]:80:80", "invalid host ip 'zz::1'");
}

static void
test_uint(void **state)
{
	static const char *const bad[] = {
		"0", "65", "", "-1", "2x", " 2", "1.0", "+2", "99999999999999999999999"};
	struct err err = {0};
	unsigned v = 0;

	(void)state;
	assert_int_equal(units_parse_uint("vcpus", "1", 1, 64, &v, &err), 0);
	assert_int_equal(v, 1);
	assert_int_equal(units_parse_uint("vcpus", "64", 1, 64, &v, &err), 0);
	assert_int_equal(v, 64);
	assert_int_equal(units_parse_uint("limit", "4294967295", 0, 4294967295u, &v, &err), 0);
	assert_int_equal(v, 4294967295u);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear(&err);
		assert_true(units_parse_uint("vcpus", bad[i], 1, 64, &v, &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
		assert_string_equal(err.field, "vcpus");
	}
	err_clear(&err);
	units_parse_uint("vcpus", "65", 1, 64, &v, &err);
	assert_string_equal(err.msg,
			    "--vcpus: invalid value '65': use a whole number from 1 to 64");
}

static void
test_host_port(void **state)
{
	static const char *const bad[] = {"0",     "65536", "",    "80/sctp",
					  "80:80", "x",     "80/", "123456789012345678901"};
	struct err err = {0};
	unsigned port = 0;
	bool udp = true;

	(void)state;
	assert_int_equal(units_parse_host_port("port", "8080", &port, &udp, &err), 0);
	assert_int_equal(port, 8080);
	assert_false(udp);
	assert_int_equal(units_parse_host_port("port", "53/udp", &port, &udp, &err), 0);
	assert_int_equal(port, 53);
	assert_true(udp);
	assert_int_equal(units_parse_host_port("port", "443/tcp", &port, &udp, &err), 0);
	assert_false(udp);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear(&err);
		assert_true(units_parse_host_port("port", bad[i], &port, &udp, &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
		assert_int_equal(strncmp(err.msg, "--port: ", 8), 0);
	}
	err_clear(&err);
	units_parse_host_port("port", "70000", &port, &udp, &err);
	assert_string_equal(err.msg, "--port: port '70000' is out of range: use 1 to 65535");
}

static void
test_format_mb(void **state)
{
	static const struct {
		uint64_t mb;
		const char *s;
	} cases[] = {
		{0, "0M"},
		{1, "1M"},
		{512, "512M"},
		{1023, "1023M"},
		{1024, "1G"},
		{1536, "1.5G"},
		{2048, "2G"},
		{1025, "1G"},
		{1996, "1.9G"},
		{2047, "2G"},
		{10240, "10G"},
		{1048576, "1T"},
		{1572864, "1.5T"},
		{1047552, "1023G"},
		{1048064, "1023.5G"},
		{1048575, "1T"},
		{UINT64_MAX, "17592186044416T"},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		units_format_mb(cases[i].mb, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
	}
	units_format_mb(1536, buf, 3);
	assert_string_equal(buf, "1.");
}

static void
test_format_age(void **state)
{
	static const int64_t now = 1700000000000;
	static const struct {
		int64_t at;
		const char *s;
	} cases[] = {
		{0, "-"},
		{now, "just now"},
		{now - 999, "just now"},
		{now + 5000, "just now"},
		{now - 1000, "1s ago"},
		{now - 42000, "42s ago"},
		{now - 59999, "59s ago"},
		{now - 60000, "1m ago"},
		{now - 5 * 60000 - 1, "5m ago"},
		{now - 3600000, "1h ago"},
		{now - 3 * 3600000 - 59000, "3h ago"},
		{now - 86400000, "1d ago"},
		{now - 2 * 86400000 - 1, "2d ago"},
		{INT64_MIN, "106752010843d ago"},
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		units_format_age(cases[i].at, now, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_forms),
		cmocka_unit_test(test_size_errors),
		cmocka_unit_test(test_size_message),
		cmocka_unit_test(test_size_overflow),
		cmocka_unit_test(test_port_spec_forms),
		cmocka_unit_test(test_port_spec_errors),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_host_port),
		cmocka_unit_test(test_format_mb),
		cmocka_unit_test(test_format_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
