#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "err.h"

static const char *const env_names[] = {
	"PORT",
	"HOST_INTERFACE",
	"BRIDGE_SUBNET",
	"MAX_VCPUS",
	"MAX_MEMORY_MB",
	"MAX_STORAGE_MB",
	"MIN_DISK_FREE_MB",
	"DEFAULT_BANDWIDTH_MBPS",
	"DEFAULT_UPLOAD_MBPS",
	"DEFAULT_IOPS",
	"DEFAULT_DISK_BW_MBPS",
	"RECONCILER_INTERVAL_SEC",
	"SSH_TIMEOUT_SEC",
	"BLOCK_SMTP",
	"RATE_LIMIT_RPS",
	"RATE_LIMIT_BURST",
	"VMM",
	"REGISTRY_URL",
	"LOG_LEVEL",
	"REMOTE_LISTEN",
	"GATEWAY_LISTEN",
};

struct state {
	char dir[64];
	char path[PATH_MAX];
	char render[8192];
	struct config c;
	struct err err;
};

static void
env_clear(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
}

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "/tmp/test_config.XXXXXX");
	if (!mkdtemp(st->dir)) {
		free(st);
		return -1;
	}
	snprintf(st->path, sizeof(st->path), "%s/config.yml", st->dir);
	env_clear();
	*ts = st;
	return 0;
}

static int
teardown(void **ts)
{
	struct state *st = *ts;

	env_clear();
	unlink(st->path);
	rmdir(st->path); /* test_load_directory makes it a folder */
	rmdir(st->dir);
	free(st);
	return 0;
}

static void
write_file(struct state *st, const char *text)
{
	FILE *f = fopen(st->path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static int
load_text(struct state *st, const char *text)
{
	write_file(st, text);
	err_clear(&st->err);
	return config_load(&st->c, st->path, &st->err);
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

struct lookup {
	const char *key;
	char value[600];
	char source[16];
	int found;
};

static int
lookup_cb(void *userdata, const char *key, const char *value, const char *source, const char *help)
{
	struct lookup *l = userdata;

	assert_non_null(help);
	assert_true(strlen(help) > 0);
	if (strcmp(key, l->key) != 0)
		return 0;
	snprintf(l->value, sizeof(l->value), "%s", value);
	snprintf(l->source, sizeof(l->source), "%s", source);
	l->found++;
	return 0;
}

static const char *
source_of(const struct config *c, const char *key)
{
	static struct lookup l;

	memset(&l, 0, sizeof(l));
	l.key = key;
	assert_int_equal(config_foreach(c, lookup_cb, &l), 0);
	assert_int_equal(l.found, 1);
	return l.source;
}

static void
test_defaults_when_missing(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(config_load(&st->c, st->path, &st->err), 0);
	assert_int_equal(st->c.port, 7777);
	assert_string_equal(st->c.host_interface, "");
	assert_string_equal(st->c.bridge_subnet, "10.200.0.0/16");
	assert_int_equal(st->c.max_vcpus, 64);
	assert_int_equal(st->c.max_memory_mb, 262144);
	assert_int_equal(st->c.max_storage_mb, 1048576);
	assert_int_equal(st->c.min_disk_free_mb, 512);
	assert_int_equal(st->c.default_bandwidth_mbps, 0);
	assert_int_equal(st->c.default_upload_mbps, 0);
	assert_int_equal(st->c.default_iops, 0);
	assert_int_equal(st->c.default_disk_bw_mbps, 0);
	assert_int_equal(st->c.reconciler_interval_sec, 30);
	assert_int_equal(st->c.ssh_timeout_sec, 60);
	assert_true(st->c.block_smtp);
	assert_int_equal(st->c.rate_limit_rps, 100);
	assert_int_equal(st->c.rate_limit_burst, 200);
	assert_string_equal(st->c.vmm, "auto");
	assert_string_equal(st->c.registry_url, "");
	assert_string_equal(st->c.log_level, "info");
	assert_string_equal(st->c.remote_listen, "");
	assert_string_equal(st->c.gateway_listen, "127.0.0.1");
	assert_int_equal(config_warning_count(&st->c), 0);
	assert_string_equal(source_of(&st->c, "port"), "default");
	assert_string_equal(source_of(&st->c, "gateway_listen"), "default");
	assert_int_equal(config_load(&st->c, NULL, &st->err), 0);
	assert_int_equal(st->c.port, 7777);
}

static void
test_empty_documents(void **ts)
{
	static const char *const texts[] = {"", "# nothing here\n\n", "---\n", "---\n...\n", "~\n"};
	struct state *st = *ts;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		assert_int_equal(load_text(st, texts[i]), 0);
		assert_int_equal(st->c.port, 7777);
		assert_int_equal(config_warning_count(&st->c), 0);
	}
}

/* Every key set away from its default, at the edges of the ranges. */
static const char every_key_text[] = "# sistemo\n"
				     "port: 8080\n"
				     "host_interface: enp3s0\n"
				     "bridge_subnet: 172.16.0.0/12\n"
				     "max_vcpus: 256\n"
				     "max_memory_mb: 16777216\n"
				     "max_storage_mb: 18446744073709551615\n"
				     "min_disk_free_mb: 0\n"
				     "default_bandwidth_mbps: 100\n"
				     "default_upload_mbps: 50\n"
				     "default_iops: 1000\n"
				     "default_disk_bw_mbps: 200\n"
				     "reconciler_interval_sec: 3600\n"
				     "ssh_timeout_sec: 1\n"
				     "block_smtp: no\n"
				     "rate_limit_rps: 4294967295\n"
				     "rate_limit_burst: 0\n"
				     "vmm: firecracker\n"
				     "registry_url: 'https://images.example.com/v1/'\n"
				     "log_level: debug\n"
				     "remote_listen: \"tls+tcp://[::]:7778\"\n"
				     "gateway_listen: '::1'\n";

static void
test_every_type_parsed(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, every_key_text), 0);
	assert_int_equal(st->c.port, 8080);
	assert_int_equal(st->c.max_vcpus, 256);
	assert_int_equal(st->c.max_memory_mb, 16777216);
	assert_true(st->c.max_storage_mb == UINT64_MAX);
	assert_int_equal(st->c.min_disk_free_mb, 0);
	assert_int_equal(st->c.default_bandwidth_mbps, 100);
	assert_int_equal(st->c.default_upload_mbps, 50);
	assert_int_equal(st->c.default_iops, 1000);
	assert_int_equal(st->c.default_disk_bw_mbps, 200);
	assert_int_equal(st->c.reconciler_interval_sec, 3600);
	assert_int_equal(st->c.ssh_timeout_sec, 1);
	assert_false(st->c.block_smtp);
	assert_int_equal(st->c.rate_limit_rps, 4294967295u);
	assert_int_equal(st->c.rate_limit_burst, 0);
	assert_string_equal(source_of(&st->c, "port"), "config.yml");
	assert_int_equal(config_warning_count(&st->c), 0);
}

static void
test_every_string_parsed(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, every_key_text), 0);
	assert_string_equal(st->c.host_interface, "enp3s0");
	assert_string_equal(st->c.bridge_subnet, "172.16.0.0/12");
	assert_string_equal(st->c.vmm, "firecracker");
	assert_string_equal(st->c.registry_url, "https://images.example.com/v1/");
	assert_string_equal(st->c.log_level, "debug");
	assert_string_equal(st->c.remote_listen, "tls+tcp://[::]:7778");
	assert_string_equal(st->c.gateway_listen, "::1");
	assert_string_equal(source_of(&st->c, "gateway_listen"), "config.yml");
}

static void
test_bool_words(void **ts)
{
	static const struct {
		const char *text;
		bool value;
	} cases[] = {{"true", true}, {"FALSE", false}, {"Yes", true}, {"no", false},
		     {"ON", true},   {"off", false},   {"1", true},   {"0", false}};
	struct state *st = *ts;
	char text[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "block_smtp: %s\n", cases[i].text);
		assert_int_equal(load_text(st, text), 0);
		assert_int_equal(st->c.block_smtp, cases[i].value);
	}
}

static void
test_null_and_quoted(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, "host_interface: eth0\n"), 0);
	assert_int_equal(load_text(st, "host_interface: ~\n\"port\": '9000'\n"), 0);
	assert_string_equal(st->c.host_interface, "");
	assert_string_equal(source_of(&st->c, "host_interface"), "config.yml");
	assert_int_equal(st->c.port, 9000);
	assert_int_equal(load_text(st, "{port: 9001, vmm: qemu}\n"), 0);
	assert_int_equal(st->c.port, 9001);
	assert_string_equal(st->c.vmm, "qemu");
}

static void
test_unknown_key_warns(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, "port: 8080\nfoo: bar\nmax_vcpu: 4\n"), 0);
	assert_int_equal(st->c.port, 8080);
	assert_int_equal(config_warning_count(&st->c), 2);
	assert_contains(config_warning(&st->c, 0),
			"config.yml line 2: unknown key 'foo' (ignored)");
	assert_contains(config_warning(&st->c, 0), "known keys: port, host_interface,");
	assert_contains(config_warning(&st->c, 0), ", gateway_listen");
	assert_contains(config_warning(&st->c, 1), "line 3: unknown key 'max_vcpu'");
	assert_null(config_warning(&st->c, 2));
}

static void
test_many_unknown_keys(void **ts)
{
	struct state *st = *ts;
	char text[4096];
	size_t len = 0;

	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "unknown_%d: %d\n", i, i);
	assert_int_equal(load_text(st, text), 0);
	assert_int_equal(config_warning_count(&st->c), CONFIG_WARNINGS_MAX);
	assert_contains(config_warning(&st->c, 0), "'unknown_0'");
	assert_contains(config_warning(&st->c, CONFIG_WARNINGS_MAX - 2), "'unknown_14'");
	assert_contains(config_warning(&st->c, CONFIG_WARNINGS_MAX - 1), "more unknown keys");
}

static const struct bad_case {
	const char *key;
	const char *value; /* as written in YAML */
	const char *shown; /* as the message quotes it */
	const char *allowed;
} bad_cases[] = {
	{"port", "lots", "lots", "expected a whole number from 1 to 65535"},
	{"port", "0", "0", "from 1 to 65535"},
	{"port", "65536", "65536", "from 1 to 65535"},
	{"port", "-1", "-1", "from 1 to 65535"},
	{"port", "'+80'", "+80", "from 1 to 65535"},
	{"port", "0x50", "0x50", "from 1 to 65535"},
	{"port", "'80 '", "80 ", "from 1 to 65535"},
	{"port", "''", "", "from 1 to 65535"},
	{"max_vcpus", "257", "257", "from 1 to 256"},
	{"max_memory_mb", "99999999999999999999999", "99999999999999999999999",
	 "from 128 to 16777216"},
	{"max_storage_mb", "18446744073709551616", "18446744073709551616",
	 "from 64 to 18446744073709551615"},
	{"rate_limit_rps", "4294967296", "4294967296", "from 0 to 4294967295"},
	{"reconciler_interval_sec", "3601", "3601", "from 1 to 3600"},
	{"ssh_timeout_sec", "0", "0", "from 1 to 600"},
	{"block_smtp", "maybe", "maybe", "expected true or false"},
	{"block_smtp", "2", "2", "expected true or false"},
	{"vmm", "kvm", "kvm", "expected 'auto', 'qemu' or 'firecracker'"},
	{"vmm", "QEMU", "QEMU", "'auto', 'qemu' or 'firecracker'"},
	{"log_level", "verbose", "verbose", "expected 'error', 'warn', 'info' or 'debug'"},
	{"bridge_subnet", "10.200.0.1/16", "10.200.0.1/16", "did you mean '10.200.0.0/16'?"},
	{"bridge_subnet", "10.200.0.0/30", "10.200.0.0/30", "with a prefix from /8 to /24"},
	{"bridge_subnet", "10.0.0.0/7", "10.0.0.0/7", "with a prefix from /8 to /24"},
	{"bridge_subnet", "garbage", "garbage", "expected an IPv4 network address"},
	{"bridge_subnet", "10.200.0.0", "10.200.0.0", "such as '10.200.0.0/16'"},
	{"host_interface", "eth/0", "eth/0", "without '/', ':' or spaces"},
	{"host_interface", "'eth 0'", "eth 0", "network interface name of 1 to 15 characters"},
	{"host_interface", "abcdefghijklmnop", "abcdefghijklmnop", "at most 15 characters"},
	{"registry_url", "ftp://example.com", "ftp://example.com",
	 "starting with 'http://' or 'https://'"},
	{"registry_url", "https://", "https://", "'http://' or 'https://'"},
	{"remote_listen", "tcp://0.0.0.0:7778", "tcp://0.0.0.0:7778", "'tls+tcp://HOST:PORT'"},
	{"remote_listen", "tls+tcp://0.0.0.0", "tls+tcp://0.0.0.0", "port from 1 to 65535"},
	{"remote_listen", "tls+tcp://0.0.0.0:99999", "tls+tcp://0.0.0.0:99999", "or '' for off"},
	{"gateway_listen", "localhost", "localhost", "expected an IPv4 or IPv6 address"},
	{"gateway_listen", "'[::1]'", "[::1]", "without port or brackets"},
	{"gateway_listen", "''", "", "'127.0.0.1', '0.0.0.0' or '::1'"},
	{"log_level", "\"in\\0fo\"", "in?fo", "without NUL bytes"},
};

static void
test_bad_values(void **ts)
{
	struct state *st = *ts;
	char text[256], want[256];

	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *b = &bad_cases[i];

		snprintf(text, sizeof(text), "# line 1\n%s: %s\n", b->key, b->value);
		assert_int_equal(load_text(st, text), -EINVAL);
		assert_int_equal(st->err.code, ERR_INVALID);
		assert_string_equal(st->err.field, b->key);
		snprintf(want, sizeof(want), "config.yml line 2: '%s' is '%s': ", b->key, b->shown);
		assert_contains(st->err.msg, want);
		assert_contains(st->err.msg, b->allowed);
	}
}

static void
test_overlong_string(void **ts)
{
	struct state *st = *ts;
	char text[1024] = "registry_url: https://";

	memset(text + strlen(text), 'a', 600);
	strcat(text, "\n");
	assert_int_equal(load_text(st, text), -EINVAL);
	assert_string_equal(st->err.field, "registry_url");
	assert_contains(st->err.msg, "'registry_url' is 'https://aaaa");
	assert_contains(st->err.msg, "...': expected at most 511 characters, not 608");
	assert_true(strlen(st->err.msg) < 400);

	err_clear(&st->err);
	setenv("GATEWAY_LISTEN",
	       "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee", 1);
	assert_int_equal(config_load(&st->c, NULL, &st->err), -EINVAL);
	assert_contains(st->err.msg, "environment variable GATEWAY_LISTEN: 'gateway_listen' is");
	assert_contains(st->err.msg, "expected at most 63 characters");
}

static void
test_syntax_error(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, "port: 8080\nmax_vcpus: 4\nvmm: qemu: kvm\n"), -EINVAL);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_contains(st->err.msg, st->path);
	assert_contains(st->err.msg, " line 3 column 10: mapping values are not allowed");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "port: 1\nmax_vcpus: 2\n\tbad: 3\n"), -EINVAL);
	assert_contains(st->err.msg, "line 3 column 1: found ");
	assert_contains(st->err.msg, "tab");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "port: \"8080\n"), -EINVAL);
	assert_contains(st->err.msg, "line 2 column 1: found unexpected end of stream");
}

static void
test_not_scalar(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, "vmm: qemu\nport:\n  - 1\n  - 2\n"), -EINVAL);
	assert_string_equal(st->err.field, "port");
	assert_contains(
		st->err.msg,
		"config.yml line 2: 'port' is a list: expected a whole number from 1 to 65535");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "extra:\n  a: 1\n"), -EINVAL);
	assert_string_equal(st->err.field, "extra");
	assert_contains(st->err.msg, "line 1: 'extra' is a mapping: expected a single value");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "a: &x 5\nport: *x\n"), -EINVAL);
	assert_contains(st->err.msg, "line 2: 'port' is an alias");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "[port]: 5\n"), -EINVAL);
	assert_contains(st->err.msg, "line 1: expected a key name, found a list");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "- port\n- 5\n"), -EINVAL);
	assert_contains(st->err.msg, "line 1: the top level must be a mapping of keys to values");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "hello\n"), -EINVAL);
	assert_contains(st->err.msg, "the top level must be a mapping");
}

static void
test_duplicate_and_documents(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(load_text(st, "port: 1\nvmm: qemu\nport: 2\n"), -EINVAL);
	assert_string_equal(st->err.field, "port");
	assert_contains(st->err.msg, "line 3: 'port' is set twice (first on line 1)");

	err_clear(&st->err);
	assert_int_equal(load_text(st, "port: 1\n---\nport: 2\n"), -EINVAL);
	assert_contains(st->err.msg, "line 2: only one YAML document is allowed");
}

static void
test_env_beats_file(void **ts)
{
	struct state *st = *ts;

	setenv("PORT", "9000", 1);
	setenv("BLOCK_SMTP", "off", 1);
	setenv("VMM", "", 1); /* empty: unset */
	assert_int_equal(load_text(st, "port: 8000\nvmm: qemu\nmax_vcpus: 8\n"), 0);
	assert_int_equal(st->c.port, 9000);
	assert_false(st->c.block_smtp);
	assert_string_equal(st->c.vmm, "qemu");
	assert_int_equal(st->c.max_vcpus, 8);
	assert_string_equal(source_of(&st->c, "port"), "env");
	assert_string_equal(source_of(&st->c, "block_smtp"), "env");
	assert_string_equal(source_of(&st->c, "vmm"), "config.yml");
	assert_string_equal(source_of(&st->c, "max_vcpus"), "config.yml");
	assert_string_equal(source_of(&st->c, "log_level"), "default");
}

static void
test_bad_env(void **ts)
{
	struct state *st = *ts;

	setenv("MAX_VCPUS", "lots", 1);
	assert_int_equal(load_text(st, "max_vcpus: 8\n"), -EINVAL);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_string_equal(st->err.field, "max_vcpus");
	assert_string_equal(st->err.msg, "environment variable MAX_VCPUS: 'max_vcpus' is 'lots': "
					 "expected a whole number from 1 to 256");

	unsetenv("MAX_VCPUS");
	setenv("BRIDGE_SUBNET", "10.1.2.3/8", 1);
	err_clear(&st->err);
	assert_int_equal(config_load(&st->c, NULL, &st->err), -EINVAL);
	assert_contains(st->err.msg, "environment variable BRIDGE_SUBNET: 'bridge_subnet' is "
				     "'10.1.2.3/8'");
	assert_contains(st->err.msg, "did you mean '10.0.0.0/8'?");
}

static void
test_parse_cidr(void **ts)
{
	static const char *const bad[] = {
		"garbage",
		"10.200.0.0",
		"10.200.0.0/",
		"10.200.0.0/033",
		"10.200.0.0/+8",
		"010.200.0.0/16",
		"10.200.0.0/16 ",
		" 10.200.0.0/16",
		"256.0.0.0/8",
		"10.200.0.0/33",
		"",
		"/16",
		"1.2.3/24",
		"10.200.0.0/1a",
		"::/0",
		"10.200.0.0/16/1",
	};
	uint32_t addr = 0;
	unsigned prefix = 0;

	(void)ts;
	assert_int_equal(config_parse_cidr("10.200.0.0/16", 8, 24, &addr, &prefix), 0);
	assert_int_equal(addr, 0x0ac80000);
	assert_int_equal(prefix, 16);
	assert_int_equal(config_parse_cidr("0.0.0.0/0", 0, 32, &addr, &prefix), 0);
	assert_int_equal(prefix, 0);
	assert_int_equal(config_parse_cidr("10.0.0.1/32", 0, 32, &addr, &prefix), 0);
	assert_int_equal(addr, 0x0a000001);
	assert_int_equal(config_parse_cidr("192.168.1.0/24", 8, 24, NULL, NULL), 0);
	assert_int_equal(config_parse_cidr("10.200.0.1/16", 8, 24, &addr, &prefix), -EINVAL);
	assert_int_equal(config_parse_cidr("10.200.0.0/30", 8, 24, &addr, &prefix), -EINVAL);
	assert_int_equal(config_parse_cidr("10.0.0.0/7", 8, 24, &addr, &prefix), -EINVAL);
	assert_int_equal(config_parse_cidr(NULL, 8, 24, &addr, &prefix), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_parse_cidr(bad[i], 0, 32, &addr, &prefix) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
}

static int
count_cb(void *userdata, const char *key, const char *value, const char *source, const char *help)
{
	size_t *n = userdata;

	(void)key, (void)value, (void)source, (void)help;
	return ++*n == 3 ? -ECANCELED : 0;
}

struct keys_in {
	const char *yaml;
	size_t n;
};

static int
key_in_yaml_cb(void *userdata, const char *key, const char *value, const char *source,
	       const char *help)
{
	struct keys_in *k = userdata;
	char line[700];

	(void)value, (void)help;
	snprintf(line, sizeof(line), "\n%s: ", key);
	assert_contains(k->yaml - 1, line); /* yaml is preceded by a '\n' */
	snprintf(line, sizeof(line), "  # %s\n", source);
	assert_contains(k->yaml, line);
	k->n++;
	return 0;
}

static void
test_foreach_stops(void **ts)
{
	struct state *st = *ts;
	size_t n = 0;

	config_defaults(&st->c);
	assert_int_equal(config_foreach(&st->c, count_cb, &n), -ECANCELED);
	assert_int_equal(n, 3);
}

static void
test_render_yaml(void **ts)
{
	struct state *st = *ts;
	struct config again;
	struct keys_in k = {0};
	int len;

	setenv("REGISTRY_URL", "http://x/\"q\"\\", 1);
	assert_int_equal(load_text(st, "port: 8080\nhost_interface: eth0\n"), 0);
	st->render[0] = '\n';
	len = config_render_yaml(&st->c, st->render + 1, sizeof(st->render) - 1);
	assert_true(len > 0);
	assert_int_equal((size_t)len, strlen(st->render + 1));
	k.yaml = st->render + 1;
	assert_int_equal(config_foreach(&st->c, key_in_yaml_cb, &k), 0);
	assert_int_equal(k.n, CONFIG_KEY_COUNT);
	assert_contains(k.yaml - 1, "\nport: 8080  # config.yml\n");
	assert_contains(k.yaml - 1, "\nhost_interface: \"eth0\"  # config.yml\n");
	assert_contains(k.yaml - 1, "\nblock_smtp: true  # default\n");
	assert_contains(k.yaml - 1, "\nregistry_url: \"http://x/\\\"q\\\"\\\\\"  # env\n");
	assert_contains(k.yaml - 1, "\nremote_listen: \"\"  # default\n");

	/* what it renders loads back to the same values */
	env_clear();
	assert_int_equal(load_text(st, k.yaml), 0);
	memcpy(&again, &st->c, sizeof(again));
	assert_int_equal(load_text(st, "port: 8080\nhost_interface: eth0\n"), 0);
	assert_int_equal(memcmp(&again, &st->c, offsetof(struct config, registry_url)), 0);
	assert_string_equal(again.registry_url, "http://x/\"q\"\\");

	len = config_render_yaml(&st->c, st->render, sizeof(st->render));
	assert_true(len > 0);
	assert_int_equal(config_render_yaml(&st->c, st->render, (size_t)len + 1), len);
	assert_int_equal(config_render_yaml(&st->c, st->render, (size_t)len), -ENOSPC);
	assert_int_equal(config_render_yaml(&st->c, st->render, 10), -ENOSPC);
	assert_int_equal(config_render_yaml(&st->c, NULL, 0), -ENOSPC);
}

static void
test_load_directory(void **ts)
{
	struct state *st = *ts;

	assert_int_equal(mkdir(st->path, 0700), 0);
	assert_int_equal(config_load(&st->c, st->path, &st->err), -EINVAL);
	assert_contains(st->err.msg, "is not a regular file");
	assert_contains(st->err.msg, st->path);
}

static void
test_unreadable_file(void **ts)
{
	struct state *st = *ts;

	if (geteuid() == 0)
		skip(); /* root reads a mode 000 file */
	write_file(st, "port: 1\n");
	assert_int_equal(chmod(st->path, 0), 0);
	assert_int_equal(config_load(&st->c, st->path, &st->err), -EACCES);
	assert_int_equal(st->err.code, ERR_PERMISSION);
	assert_contains(st->err.msg, "cannot read '");
	assert_contains(st->err.msg, "Permission denied");
}

static void
test_file_too_big(void **ts)
{
	struct state *st = *ts;
	char *text = malloc(70000);

	assert_non_null(text);
	memset(text, '#', 69999);
	text[69999] = '\0';
	write_file(st, text);
	free(text);
	assert_int_equal(config_load(&st->c, st->path, &st->err), -EFBIG);
	assert_contains(st->err.msg, "is larger than 64 KiB");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults_when_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_documents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_type_parsed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_string_parsed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bool_words, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_and_quoted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_warns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_unknown_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_string, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_scalar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_and_documents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_beats_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_cidr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_render_yaml, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_too_big, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
