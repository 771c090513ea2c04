/* The kernel build's pure pieces (scripts/config arguments, the .config check, progress from
 * kbuild's output, the error line), the no-op when a built kernel is present, the lock, and a
 * cancel that kills the running program's process group and leaves no tree. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <mbedtls/sha256.h>

#include "err.h"
#include "kit.h"
#include "kit_kernel.h"
#include "kit_tree.h"
#include "strbuf.h"

#define TARBALL "/usr/src/linux-source-6.1.tar.xz"

struct state {
	char dir[64]; /* the data dir, removed in teardown */
	char kdir[128];
	struct err err;
	unsigned cancel_calls, cancel_at;
	char last_step[32];
	unsigned last_percent;
};

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "/tmp/test_kit_kernel.XXXXXX");
	if (!mkdtemp(st->dir)) {
		free(st);
		return -1;
	}
	snprintf(st->kdir, sizeof(st->kdir), "%s/kernel", st->dir);
	if (mkdir(st->kdir, 0755) < 0) {
		free(st);
		return -1;
	}
	*ts = st;
	return 0;
}

static int
teardown(void **ts)
{
	struct state *st = *ts;

	kit_tree_remove(st->dir);
	free(st);
	return 0;
}

static void
progress(void *ud, const char *step, unsigned percent, const char *message)
{
	struct state *st = ud;

	(void)message;
	assert_true(percent <= 100);
	snprintf(st->last_step, sizeof(st->last_step), "%s", step);
	st->last_percent = percent;
}

static bool
cancelled(void *ud)
{
	struct state *st = ud;

	return ++st->cancel_calls >= st->cancel_at;
}

/* A .config with every option on built in and every option off "not set". */
static void
good_config(struct strbuf *sb)
{
	for (size_t i = 0; kit_kernel_options_on[i]; i++)
		strbuf_printf(sb, "CONFIG_%s=y\n", kit_kernel_options_on[i]);
	for (size_t i = 0; kit_kernel_options_off[i]; i++)
		strbuf_printf(sb, "# CONFIG_%s is not set\n", kit_kernel_options_off[i]);
}

static void
assert_pair(const char **argv, const char *flag, const char *name)
{
	for (size_t i = 0; argv[i] && argv[i + 1]; i++)
		if (strcmp(argv[i], flag) == 0 && strcmp(argv[i + 1], name) == 0)
			return;
	fail_msg("no '%s %s' in the scripts/config arguments", flag, name);
}

static void
test_config_argv(void **ts)
{
	const char *argv[256] = {"scripts/config", "--file", ".config"};
	const char *small[8] = {0};
	size_t n = 0;

	(void)ts;
	int r = kit_kernel_config_argv(argv, 3, 256);
	assert_true(r > 3);
	assert_null(argv[r]);
	assert_string_equal(argv[0], "scripts/config");
	assert_string_equal(argv[2], ".config");
	while (argv[n])
		n++;
	assert_int_equal(n, (size_t)r);
	assert_pair(argv, "-e", "VIRTIO_MMIO_CMDLINE_DEVICES");
	assert_pair(argv, "-e", "IP_PNP");
	assert_pair(argv, "-e", "ACPI_BUTTON");
	assert_pair(argv, "-e", "INPUT_EVDEV");
	assert_pair(argv, "-e", "EXT4_FS");
	assert_pair(argv, "-d", "MODULES");
	assert_string_equal(argv[r - 3], "--set-str");
	assert_string_equal(argv[r - 2], "LOCALVERSION");
	assert_string_equal(argv[r - 1], KIT_KERNEL_LOCALVERSION);
	assert_int_equal(kit_kernel_config_argv(small, 3, 8), -E2BIG);
}

static void
test_config_missing(void **ts)
{
	struct strbuf sb = {0};
	char buf[2048];

	(void)ts;
	good_config(&sb);
	assert_int_equal(kit_kernel_config_missing(sb.data, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	strbuf_free(&sb);

	/* a longer name never stands for a shorter one; m is not y; MODULES=y is refused */
	strbuf_printf(&sb, "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\nCONFIG_EXT4_FS=m\n"
			   "CONFIG_MODULES=y\nCONFIG_ACPI_BUTTON=y\n");
	size_t n = kit_kernel_config_missing(sb.data, buf, sizeof(buf));
	assert_true(n > 3);
	assert_non_null(strstr(buf, "VIRTIO_MMIO=y"));
	assert_non_null(strstr(buf, "EXT4_FS=y"));
	assert_non_null(strstr(buf, "MODULES=n"));
	assert_non_null(strstr(buf, "ACPI=y"));
	assert_null(strstr(buf, "ACPI_BUTTON=y"));
	assert_null(strstr(buf, "VIRTIO_MMIO_CMDLINE_DEVICES=y"));
	/* a small buffer is cut, the count is still right */
	assert_int_equal(kit_kernel_config_missing(sb.data, buf, 8), n);
	assert_true(strlen(buf) < 8);
	strbuf_free(&sb);
}

static void
test_compile_progress(void **ts)
{
	unsigned last = 0;

	(void)ts;
	assert_string_equal(kit_kernel_cc_object("  CC      kernel/fork.o"), "kernel/fork.o");
	assert_string_equal(kit_kernel_cc_object("  CC      arch/x86/kernel/setup.o"),
			    "arch/x86/kernel/setup.o");
	assert_null(kit_kernel_cc_object("  HOSTCC  scripts/kallsyms"));
	assert_null(kit_kernel_cc_object("  LD      vmlinux"));
	assert_null(kit_kernel_cc_object("  CC      "));
	assert_null(kit_kernel_cc_object("make[2]: *** [scripts/Makefile.build:250] Error 1"));
	assert_int_equal(kit_kernel_compile_percent(0), 8);
	assert_int_equal(kit_kernel_compile_percent(KIT_KERNEL_CC_EXPECTED), 95);
	assert_int_equal(kit_kernel_compile_percent(10 * KIT_KERNEL_CC_EXPECTED), 95);
	assert_int_equal(kit_kernel_compile_percent(UINT32_MAX), 95);
	for (unsigned n = 0; n <= KIT_KERNEL_CC_EXPECTED + 10; n++) {
		unsigned p = kit_kernel_compile_percent(n);
		assert_true(p >= last);
		last = p;
	}
}

static void
test_error_line(void **ts)
{
	char buf[64];

	(void)ts;
	kit_kernel_error_line("  CC      a.o\nkernel/a.c:3:1: error: expected ';'\n  CC      b.o\n"
			      "make[1]: *** Waiting for unfinished jobs....\n\n",
			      buf, sizeof(buf));
	assert_string_equal(buf, "kernel/a.c:3:1: error: expected ';'");
	kit_kernel_error_line("one\ntwo\n\n", buf, sizeof(buf));
	assert_string_equal(buf, "two");
	kit_kernel_error_line("", buf, sizeof(buf));
	assert_string_equal(buf, "");
	kit_kernel_error_line(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A file with a bzImage setup header whose version string says "6.1.192-sistemo". */
static void
fake_bzimage(const char *path, unsigned char img[0x300])
{
	static const unsigned char magic[] = {'H', 'd', 'r', 'S'};

	memset(img, 0, 0x300);
	memcpy(img + 0x202, magic, sizeof(magic));
	img[0x20e] = 0x80; /* the version is at 0x200 + 0x80 */
	snprintf((char *)img + 0x280, 0x80, "%s", "6.1.192-sistemo (sistemo@sistemo) #1 SMP");
	write_file(path, img, 0x300);
}

static void
sha256_hex(const unsigned char *data, size_t len, char hex[65])
{
	unsigned char sum[32];

	assert_int_equal(mbedtls_sha256_ret(data, len, sum, 0), 0);
	for (size_t i = 0; i < sizeof(sum); i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
}

static void
test_present_is_noop(void **ts)
{
	struct state *st = *ts;
	struct kit_kernel_built k;
	unsigned char img[0x300];
	char path[256], hex[65];

	snprintf(path, sizeof(path), "%s/bzImage-sistemo", st->kdir);
	fake_bzimage(path, img);
	sha256_hex(img, sizeof(img), hex);
	snprintf(path, sizeof(path), "%s/vmlinux-sistemo", st->kdir);
	write_file(path, "\177ELF", 4);
	st->cancel_at = 1; /* a no-op never asks */
	assert_int_equal(kit_kernel_build(st->dir, false, progress, cancelled, st, &k, &st->err),
			 0);
	assert_int_equal(st->cancel_calls, 0);
	assert_string_equal(st->last_step, "done");
	assert_int_equal(st->last_percent, 100);
	assert_int_equal(k.build_ms, 0);
	assert_int_equal(k.size_bytes, sizeof(img));
	assert_string_equal(k.version, "6.1.192-sistemo");
	assert_string_equal(k.sha256, hex);
	snprintf(path, sizeof(path), "%s/bzImage-sistemo", st->kdir);
	assert_string_equal(k.path, path);
	assert_true(k.mtime_ms > 0);
	assert_int_equal(kit_kernel_build(st->dir, false, NULL, NULL, NULL, NULL, &st->err), 0);
}

static bool
build_trees_left(const struct state *st)
{
	char path[128];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "%s/tmp", st->dir);
	if (!(d = opendir(path)))
		return false;
	while ((de = readdir(d)))
		found |= strncmp(de->d_name, "kernel-build-", 13) == 0;
	closedir(d);
	return found;
}

static void
test_one_build_at_a_time(void **ts)
{
	struct state *st = *ts;
	char path[256];

	if (access(TARBALL, R_OK) < 0)
		skip();
	snprintf(path, sizeof(path), "%s/.build.lock", st->kdir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	int r = kit_kernel_build(st->dir, true, NULL, NULL, NULL, NULL, &st->err);
	close(fd);
	if (r < 0 && strstr(st->err.msg, "apt-get install"))
		skip(); /* a build tool is missing here */
	assert_true(r < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(st->err.msg, "already running"));
	assert_false(build_trees_left(st));
}

/* The second look at the cancel flag comes while tar runs: it is killed, the tree goes. */
static void
test_cancel_kills_and_cleans(void **ts)
{
	struct state *st = *ts;
	struct timespec t0, t1;
	char path[256];

	if (access(TARBALL, R_OK) < 0)
		skip();
	snprintf(path, sizeof(path), "%s/tmp", st->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/tmp/kernel-build-stale", st->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	st->cancel_at = 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = kit_kernel_build(st->dir, true, progress, cancelled, st, NULL, &st->err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0 && strstr(st->err.msg, "apt-get install"))
		skip();
	assert_true(r < 0);
	assert_int_equal(st->err.code, ERR_CANCELLED);
	assert_non_null(strstr(st->err.msg, "cancelled"));
	assert_true(t1.tv_sec - t0.tv_sec < 20);
	assert_string_equal(st->last_step, "cleanup");
	assert_false(build_trees_left(st)); /* the stale tree went too */
	snprintf(path, sizeof(path), "%s/bzImage-sistemo", st->kdir);
	assert_int_equal(access(path, F_OK), -1);
}

/* A kernel built on this machine: its .config has every option (skipped when there is none). */
static void
test_built_config(void **ts)
{
	const char *dir = getenv("SISTEMO_TEST_KERNEL_DIR");
	char path[PATH_MAX], missing[512];
	char *text = NULL;

	(void)ts;
	snprintf(path, sizeof(path), "%s/config-sistemo",
		 dir && *dir ? dir : "/var/cache/sistemo/kernel");
	if (kit_tree_read(path, 1u << 20, &text) < 0)
		skip();
	size_t n = kit_kernel_config_missing(text, missing, sizeof(missing));
	free(text);
	if (n)
		fail_msg("'%s' lacks %s", path, missing);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_argv),
		cmocka_unit_test(test_config_missing),
		cmocka_unit_test(test_compile_progress),
		cmocka_unit_test(test_error_line),
		cmocka_unit_test_setup_teardown(test_present_is_noop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_build_at_a_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_kills_and_cleans, setup, teardown),
		cmocka_unit_test(test_built_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
