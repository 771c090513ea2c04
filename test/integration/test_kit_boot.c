/* The guest kit end to end: install the cloud kernel and initramfs into a fresh data dir (twice:
 * the second is a no-op), build the tiny image, clone it to a 256 MB root disk, inject a fresh
 * key, boot it under QEMU microvm on a bridge in a private network namespace, wait for the ready
 * marker, ssh in, then power it off over QMP and watch QEMU exit by itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "it.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "host.h"
#include "kit.h"
#include "kit_run.h"
#include "kit_tree.h"
#include "macro.h"
#include "strbuf.h"

#define GUEST_IP "10.200.0.2"
#define GATEWAY "10.200.0.1"
#define GATEWAY_CIDR "10.200.0.1/24"
#define GUEST_LOGIN "root@10.200.0.2"
#define READY_TIMEOUT_MS 60000
#define POWERDOWN_TIMEOUT_MS 20000

extern char **environ;

struct state {
	char dir[64]; /* everything: data dir, images, key, console, QMP socket */
	char data[PATH_MAX];
	char image[PATH_MAX];
	char rootfs[PATH_MAX];
	char key[PATH_MAX];
	char console[PATH_MAX];
	char qmp[PATH_MAX];
	char qemu_log[PATH_MAX];
	struct kit_kernel kernel;
	bool installed, disk_ready;
	bool kvm;
	pid_t qemu; /* > 0 while running and not reaped */
	struct err err;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
progress(void *ud, const char *step, const char *message)
{
	(void)ud;
	printf("  [%s] %s\n", step, message);
	fflush(stdout);
}

static void
join(char *buf, const struct state *st, const char *name)
{
	assert_int_equal(kit_path(buf, PATH_MAX, "%s/%s", st->dir, name), 0);
}

static int
group_setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "/tmp/it_kit_boot.XXXXXX");
	if (!mkdtemp(st->dir))
		return -1;
	kit_path(st->data, sizeof(st->data), "%s/data", st->dir);
	if (mkdir(st->data, 0711) < 0)
		return -1;
	*ts = st;
	return 0;
}

static int
group_teardown(void **ts)
{
	struct state *st = *ts;

	if (st->qemu > 0) {
		kill(st->qemu, SIGKILL);
		waitpid(st->qemu, NULL, 0);
	}
	if (!getenv("SISTEMO_KEEP"))
		kit_tree_remove(st->dir);
	else
		printf("kept %s\n", st->dir);
	free(st);
	return 0;
}

/* Runs a command that must succeed, with its output in out (may be NULL). */
static void
must_run(const char *const *argv, struct strbuf *out, unsigned timeout_ms)
{
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = timeout_ms};
	struct err err = {0};

	if (kit_run_ok(&cmd, out, &err) < 0)
		fail_msg("%s", err.msg);
}

static void
test_install(void **ts)
{
	struct state *st = *ts;
	double t0 = now_s(), t1, t2;

	if (kit_install(st->data, false, progress, NULL, &st->err) < 0)
		fail_msg("install: %s", st->err.msg);
	t1 = now_s();
	if (kit_install(st->data, false, progress, NULL, &st->err) < 0)
		fail_msg("second install: %s", st->err.msg);
	t2 = now_s();
	printf("install: %.2f s; again (no-op): %.3f s\n", t1 - t0, t2 - t1);
	assert_true(t2 - t1 < 1.0);
	if (kit_kernel_find(st->data, &st->kernel, &st->err) < 0)
		fail_msg("kernel: %s", st->err.msg);
	assert_false(st->kernel.built);
	assert_true(st->kernel.initrd[0] != '\0');
	printf("kernel %s: %s + %s\n", st->kernel.version, st->kernel.kernel, st->kernel.initrd);
	st->installed = true;
}

static void
test_disk(void **ts)
{
	struct state *st = *ts;
	char pub[PATH_MAX];
	double t0 = now_s(), t1, t2;
	char *key = NULL;

	join(st->image, st, "tiny.ext4");
	join(st->rootfs, st, "rootfs.ext4");
	join(st->key, st, "key");
	if (kit_image_build("tiny", st->image, progress, NULL, &st->err) < 0)
		fail_msg("image: %s", st->err.msg);
	t1 = now_s();
	if (kit_rootfs_clone(st->image, st->rootfs, 256, &st->err) < 0)
		fail_msg("clone: %s", st->err.msg);
	const char *keygen[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", st->key, NULL};
	must_run(keygen, NULL, 0);
	kit_path(pub, sizeof(pub), "%s.pub", st->key);
	assert_int_equal(kit_tree_read(pub, 4096, &key), 0);
	key[strcspn(key, "\n")] = '\0';
	int r = kit_rootfs_inject(st->rootfs, key, &st->err);
	free(key);
	if (r < 0)
		fail_msg("inject: %s", st->err.msg);
	t2 = now_s();
	printf("image build: %.2f s; clone to 256 MB + inject: %.2f s\n", t1 - t0, t2 - t1);
	st->disk_ready = true;
}

/* br-t 10.200.0.1/24 with tap-t enslaved, inside the private namespace of it_isolate(). */
static void
network_up(void)
{
	const char *cmds[][10] = {
		{"ip", "link", "add", "br-t", "type", "bridge", NULL},
		{"ip", "addr", "add", GATEWAY_CIDR, "dev", "br-t", NULL},
		{"ip", "link", "set", "br-t", "up", NULL},
		{"ip", "tuntap", "add", "tap-t", "mode", "tap", NULL},
		{"ip", "link", "set", "tap-t", "master", "br-t", NULL},
		{"ip", "link", "set", "tap-t", "up", NULL},
	};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		must_run(cmds[i], NULL, 10000);
}

/* "cpu MHz : 2249.998" -> 2249998 */
static long
host_khz(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	long khz = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) && !khz)
		if (strncmp(line, "cpu MHz", 7) == 0 && strchr(line, ':'))
			khz = (long)(strtod(strchr(line, ':') + 1, NULL) * 1000);
	fclose(f);
	return khz;
}

/* KVM when host_kvm_usable() says so; SISTEMO_TEST_TCG=1 forces TCG. */
static bool
kvm_works(char *why, size_t size)
{
	if (getenv("SISTEMO_TEST_TCG")) {
		snprintf(why, size, "SISTEMO_TEST_TCG set");
		return false;
	}
	return host_kvm_usable(why, size);
}

/* The docs/guest.md command line; tsc_early_khz under TCG (microvm has no HPET or PM timer). */
static void
kernel_cmdline(const struct state *st, char *buf, size_t size)
{
	int n = snprintf(buf, size,
			 "console=ttyS0 reboot=k panic=-1 root=/dev/vda rw rootfstype=ext4 "
			 "net.ifnames=0 ip=" GUEST_IP "::" GATEWAY ":255.255.255.0:t1:eth0:off "
			 "init=/sbin/sistemo-init sistemo.name=t1");

	if (!st->kvm && n > 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, " tsc_early_khz=%ld", host_khz());
}

static void
qemu_launch(struct state *st)
{
	char append[1024], drive[PATH_MAX + 64], chardev[PATH_MAX + 32], qmp[PATH_MAX + 32];
	const char *argv[64] = {"qemu-system-x86_64", "-nodefaults", "-no-user-config",
				"-no-reboot"};
	size_t n = 4;
	posix_spawn_file_actions_t fa;

	kernel_cmdline(st, append, sizeof(append));
	snprintf(drive, sizeof(drive), "id=root,file=%s,format=raw,if=none", st->rootfs);
	snprintf(chardev, sizeof(chardev), "file,id=con,path=%s", st->console);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", st->qmp);
	const char *opts[][2] = {
		{"-M", "microvm,x-option-roms=off,rtc=on,isa-serial=on"},
		{"-accel", st->kvm ? "kvm" : "tcg,tb-size=32"},
		{"-cpu", st->kvm ? "host" : "max"},
		{"-m", "256"},
		{"-smp", "1"},
		{"-display", "none"},
		{"-kernel", st->kernel.kernel},
		{"-initrd", st->kernel.initrd},
		{"-append", append},
		{"-drive", drive},
		{"-device", "virtio-blk-device,drive=root"},
		{"-netdev", "tap,id=n0,ifname=tap-t,script=no,downscript=no"},
		{"-device", "virtio-net-device,netdev=n0,mac=52:54:0a:c8:00:02"},
		{"-chardev", chardev},
		{"-serial", "chardev:con"},
		{"-qmp", qmp},
	};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		argv[n++] = opts[i][0];
		argv[n++] = opts[i][1];
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, st->qemu_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	printf("append: %s\n", append);
	assert_int_equal(posix_spawnp(&st->qemu, argv[0], &fa, NULL, (char *const *)argv, environ),
			 0);
	posix_spawn_file_actions_destroy(&fa);
}

static void
print_tail(const char *path)
{
	cleanup_free char *text = NULL;

	if (kit_tree_read(path, 16 << 20, &text) < 0)
		return;
	size_t n = strlen(text);
	printf("--- %s (tail) ---\n%s\n---\n", path, text + (n > 3000 ? n - 3000 : 0));
}

static bool
file_has(const char *path, const char *needle)
{
	cleanup_free char *text = NULL;

	return kit_tree_read(path, 16 << 20, &text) == 0 && strstr(text, needle);
}

/* Polls the console every 100 ms (fine in a test; the daemon uses inotify). */
static bool
wait_console(struct state *st, const char *needle, unsigned timeout_ms)
{
	for (unsigned waited = 0; waited < timeout_ms; waited += 100) {
		if (file_has(st->console, needle))
			return true;
		if (waitpid(st->qemu, NULL, WNOHANG) == st->qemu) {
			st->qemu = 0;
			return file_has(st->console, needle);
		}
		usleep(100 * 1000);
	}
	return false;
}

static void
ssh_check(const struct state *st)
{
	const char *argv[] = {
		"ssh",
		"-i",
		st->key,
		"-o",
		"StrictHostKeyChecking=no",
		"-o",
		"UserKnownHostsFile=/dev/null",
		"-o",
		"BatchMode=yes",
		"-o",
		"ConnectTimeout=10",
		"-o",
		"LogLevel=ERROR",
		GUEST_LOGIN,
		"hostname; ip -4 addr show eth0; cat /etc/resolv.conf; ls /etc/dropbear",
		NULL};
	struct strbuf out = {0};
	double t0 = now_s();

	must_run(argv, &out, 30000);
	printf("ssh (%.2f s):\n%s", now_s() - t0, out.data);
	assert_non_null(out.data);
	assert_true(strncmp(out.data, "t1\n", 3) == 0);
	assert_non_null(strstr(out.data, "inet " GUEST_IP "/24"));
	assert_non_null(strstr(out.data, "nameserver " GATEWAY));
	assert_non_null(strstr(out.data, "dropbear_ed25519_host_key"));
	strbuf_free(&out);
}

/* Reads QMP lines until one holds needle (bounded by SO_RCVTIMEO). */
static void
qmp_expect(int fd, const char *needle)
{
	char buf[8192];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			fail_msg("qmp: no '%s' (read %zd: %s)", needle, n, strerror(errno));
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, needle))
			return;
	}
	fail_msg("qmp: no '%s' in %s", needle, buf);
}

static void
qmp_powerdown(const struct state *st)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	static const char caps[] = "{\"execute\":\"qmp_capabilities\"}\n";
	static const char down[] = "{\"execute\":\"system_powerdown\"}\n";
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(st->qmp) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, st->qmp, strlen(st->qmp) + 1);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	qmp_expect(fd, "\"QMP\"");
	assert_int_equal(write(fd, caps, strlen(caps)), (ssize_t)strlen(caps));
	qmp_expect(fd, "\"return\"");
	assert_int_equal(write(fd, down, strlen(down)), (ssize_t)strlen(down));
	qmp_expect(fd, "\"return\"");
	close(fd);
}

/* Waits for QEMU to exit by itself: a pidfd, bounded. Returns true when it did. */
static bool
wait_exit(struct state *st, unsigned timeout_ms, int *ret_status)
{
	int pidfd = (int)syscall(SYS_pidfd_open, st->qemu, 0);
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	assert_true(pidfd >= 0);
	int r = poll(&p, 1, (int)timeout_ms);
	close(pidfd);
	if (r != 1)
		return false;
	assert_int_equal(waitpid(st->qemu, ret_status, 0), st->qemu);
	st->qemu = 0;
	return true;
}

static void
test_boot(void **ts)
{
	struct state *st = *ts;
	char why[128];
	double t0, t1, t2, t3;
	int status = -1;

	if (!st->installed || !st->disk_ready)
		skip();
	st->kvm = kvm_works(why, sizeof(why));
	join(st->console, st, "console.log");
	join(st->qmp, st, "qmp.sock");
	join(st->qemu_log, st, "qemu.log");
	network_up();
	t0 = now_s();
	qemu_launch(st);
	if (!wait_console(st, "sistemo: ready", READY_TIMEOUT_MS)) {
		print_tail(st->console);
		print_tail(st->qemu_log);
		fail_msg("no 'sistemo: ready' (%s)", st->qemu ? "timed out" : "qemu exited");
	}
	t1 = now_s();
	printf("launch -> ready: %.2f s (%s)\n", t1 - t0, st->kvm ? "kvm" : why);
	ssh_check(st);
	t2 = now_s();
	qmp_powerdown(st);
	if (!wait_exit(st, POWERDOWN_TIMEOUT_MS, &status)) {
		print_tail(st->console);
		fail_msg("qemu still running %d s after system_powerdown",
			 POWERDOWN_TIMEOUT_MS / 1000);
	}
	t3 = now_s();
	printf("powerdown -> exit: %.2f s (status %d)\n", t3 - t2, status);
	if (!file_has(st->console, "reboot: Power down")) {
		print_tail(st->console);
		fail_msg("no clean power-off on the console");
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int
main(void)
{
	it_isolate();
	if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0)
		it_skip("qemu-system-x86_64 missing (apt-get install qemu-system-x86)");
	if (access("/usr/bin/ssh", X_OK) < 0 || access("/usr/bin/ssh-keygen", X_OK) < 0)
		it_skip("ssh/ssh-keygen missing (apt-get install openssh-client)");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install),
		cmocka_unit_test(test_disk),
		cmocka_unit_test(test_boot),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
