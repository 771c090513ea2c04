/* The VMM drivers against real processes, inside private namespaces (it_isolate): a real guest
 * under QEMU -M microvm (Debian's cloud kernel and a throwaway busybox initramfs built here),
 * started in a network namespace holding its TAP, waited for through its console, checked
 * alive, powered off through the ACPI power button (QMP system_powerdown → busybox acpid), and
 * stopped by escalation when its init ignores the button. Firecracker is not installed, so its
 * driver runs a stand-in binary that serves the same API socket.
 *
 * Accel: SISTEMO_TEST_ACCEL=kvm|tcg; by default KVM when host_kvm_usable(), TCG otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it.h"

#include "err.h"
#include "host.h"
#include "vmm.h"
#include "vmm_impl.h"

#define READY_TIMEOUT_MS 90000 /* TCG on 2 busy vCPUs; a boot takes 3-7 s */
#define NETNS "/run/netns/t"

/* Built once in main, before the tests. */
static struct fixture {
	char dir[64];          /* scratch: kernel, initramfs, disks, run dirs */
	char kernel[PATH_MAX]; /* vmlinuz from linux-image-*-cloud-amd64 */
	char initrd[PATH_MAX];
	char root_disk[PATH_MAX], data_disk[PATH_MAX];
	char cgroup[PATH_MAX]; /* "" when no cgroup hierarchy is writable */
	bool kvm;
	char cmdline_extra[64]; /* tsc_early_khz under TCG */
	pid_t pids[16];         /* every VMM started, killed in teardown */
	size_t n_pids;
	int runs;
} fx;

static void __attribute__((format(printf, 1, 2))) sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	if (r != 0) {
		fprintf(stderr, "failed (%d): %s\n", r, cmd);
		exit(1);
	}
}

/* The guest's /init: mounts, the power-button path (button + evdev modules, busybox acpid
 * running /etc/acpi/PWRF/00000080 = poweroff), the disk sizes, then the ready marker.
 * sistemo.test=deaf on the command line leaves acpid out: the button does nothing. */
static const char init_script[] =
	"#!/bin/sh\n"
	"export PATH=/bin\n"
	"/bin/busybox mount -t proc proc /proc\n"
	"/bin/busybox mount -t sysfs sys /sys\n"
	"/bin/busybox mount -t devtmpfs dev /dev\n"
	"/bin/busybox --install -s /bin\n"
	"for m in button evdev virtio_ring virtio virtio_mmio virtio_blk; do\n"
	"  insmod /lib/$m.ko\n"
	"done\n"
	"mkdir -p /etc/acpi/PWRF\n"
	"printf '#!/bin/sh\\necho \"guest: power button\"\\npoweroff -f\\n' "
	">/etc/acpi/PWRF/00000080\n"
	"chmod 755 /etc/acpi/PWRF/00000080\n"
	"grep -q sistemo.test=deaf /proc/cmdline || acpid -d &\n"
	"sleep 1\n"
	"echo \"guest: vda=$(cat /sys/block/vda/size) vdb=$(cat /sys/block/vdb/size)\"\n"
	"echo \"guest: uptime $(cut -d' ' -f1 /proc/uptime)\"\n"
	"echo 'sistemo: ready' >/dev/console\n"
	"exec sleep 1000000\n";

static void
build_kernel_and_initrd(void)
{
	glob_t g;
	char path[PATH_MAX];
	FILE *f;

	if (glob("/var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb", 0, NULL, &g) != 0)
		it_skip("no linux-image-*-cloud-amd64 package in /var/cache/apt/archives");
	sh("dpkg-deb -x '%s' '%s/k'", g.gl_pathv[0], fx.dir);
	globfree(&g);
	snprintf(path, sizeof(path), "%s/k/boot/vmlinuz-*", fx.dir);
	if (glob(path, 0, NULL, &g) != 0)
		it_skip("the cloud kernel package holds no vmlinuz");
	snprintf(fx.kernel, sizeof(fx.kernel), "%s", g.gl_pathv[0]);
	globfree(&g);

	sh("mkdir -p %s/root/bin %s/root/lib %s/root/proc %s/root/sys %s/root/dev %s/root/etc",
	   fx.dir, fx.dir, fx.dir, fx.dir, fx.dir, fx.dir);
	sh("cp /bin/busybox %s/root/bin/busybox && ln -s busybox %s/root/bin/sh", fx.dir, fx.dir);
	sh("for m in button evdev virtio_ring virtio virtio_mmio virtio_blk; do "
	   "cp $(find %s/k/lib/modules -name $m.ko) %s/root/lib/ || exit 1; done",
	   fx.dir, fx.dir);
	snprintf(path, sizeof(path), "%s/root/init", fx.dir);
	f = fopen(path, "w");
	if (!f)
		it_skip("cannot write the initramfs tree");
	fputs(init_script, f);
	fclose(f);
	chmod(path, 0755);
	snprintf(fx.initrd, sizeof(fx.initrd), "%s/initrd.gz", fx.dir);
	sh("cd %s/root && find . | cpio -o -H newc --quiet | gzip -1 >%s", fx.dir, fx.initrd);
}

/* Root 8 MiB and data 4 MiB: the guest prints their sizes, which shows the order. */
static void
build_disks_and_netns(void)
{
	snprintf(fx.root_disk, sizeof(fx.root_disk), "%s/root.raw", fx.dir);
	snprintf(fx.data_disk, sizeof(fx.data_disk), "%s/data.raw", fx.dir);
	sh("truncate -s 8M %s && truncate -s 4M %s", fx.root_disk, fx.data_disk);
	sh("ip netns add t && ip -n t tuntap add tap0 mode tap && ip -n t link set tap0 up");
}

/* A cgroup to put the VMMs in: v2 at the root, else v1's pids hierarchy. */
static void
make_cgroup(void)
{
	const char *base = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0
				   ? "/sys/fs/cgroup"
				   : "/sys/fs/cgroup/pids";

	snprintf(fx.cgroup, sizeof(fx.cgroup), "%s/sistemo-it-%d", base, (int)getpid());
	if (mkdir(fx.cgroup, 0755) < 0) {
		printf("note: no writable cgroup (%s: %s): cgroup placement not checked\n",
		       fx.cgroup, strerror(errno));
		fx.cgroup[0] = '\0';
	}
}

static void
choose_accel(void)
{
	const char *forced = getenv("SISTEMO_TEST_ACCEL");
	char why[256] = "forced", line[256];
	double mhz = 0;
	FILE *f;

	fx.kvm = forced ? strcmp(forced, "kvm") == 0 : host_kvm_usable(why, sizeof(why));
	printf("accel: %s (%s)\n", fx.kvm ? "kvm" : "tcg", why);
	if (fx.kvm)
		return;
	f = fopen("/proc/cpuinfo", "r"); /* microvm under TCG: skip TSC calibration */
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			break;
	if (f)
		fclose(f);
	if (mhz > 0)
		snprintf(fx.cmdline_extra, sizeof(fx.cmdline_extra), " tsc_early_khz=%ld",
			 (long)(mhz * 1000));
}

/* ---- per test ---------------------------------------------------------------------------- */

struct run {
	char run_dir[PATH_MAX];
	char cmdline[512];
	struct vmm_config cfg;
	const char *disks[1];
	struct err err;
};

static struct run *
new_run(const char *mode)
{
	struct run *r = calloc(1, sizeof(*r));

	snprintf(r->run_dir, sizeof(r->run_dir), "%s/vms/%08d-0000-4000-8000-000000000000", fx.dir,
		 ++fx.runs);
	sh("mkdir -p %s", r->run_dir);
	snprintf(r->cmdline, sizeof(r->cmdline),
		 "console=ttyS0 reboot=k panic=-1 sistemo.test=%s%s", mode, fx.cmdline_extra);
	r->disks[0] = fx.data_disk;
	r->cfg = (struct vmm_config){
		.id = strrchr(r->run_dir, '/') + 1,
		.name = "it",
		.vcpus = 1,
		.memory_mb = 256,
		.kernel = fx.kernel,
		.initrd = fx.initrd,
		.cmdline = r->cmdline,
		.rootfs = fx.root_disk,
		.disks = r->disks,
		.n_disks = 1,
		.tap = "tap0",
		.mac = "52:54:0a:c8:00:0a",
		.netns_path = NETNS,
		.run_dir = r->run_dir,
		.kvm = fx.kvm,
		.cgroup = fx.cgroup[0] ? fx.cgroup : NULL,
	};
	return r;
}

static pid_t
start(const struct vmm_driver *d, struct run *r)
{
	pid_t pid = 0;

	err_clear(&r->err);
	if (d->start(&r->cfg, &pid, &r->err) < 0)
		fail_msg("%s start: %s", d->name, r->err.msg);
	fx.pids[fx.n_pids++] = pid;
	return pid;
}

static bool
file_has(const char *path, const char *needle)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static ino_t
inode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* What start promised: own session, the machine's netns (its TAP has a carrier now), the
 * cgroup, the pidfile. */
static void
check_placement(struct run *r, pid_t pid, bool opens_tap)
{
	char path[PATH_MAX + 16], cg[PATH_MAX + 8];

	assert_int_equal(getsid(pid), pid);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	assert_int_equal(inode_of(path), inode_of(NETNS));
	if (opens_tap)
		assert_int_equal(system("ip -n t link show tap0 | grep -q NO-CARRIER"), 256);
	snprintf(path, sizeof(path), "%s/vmm.pid", r->run_dir);
	snprintf(cg, sizeof(cg), "%d", (int)pid);
	assert_true(file_has(path, cg));
	if (!r->cfg.cgroup)
		return;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	snprintf(cg, sizeof(cg), ":/%s\n", strrchr(fx.cgroup, '/') + 1);
	assert_true(file_has(path, cg));
}

/* The guest's uptime when it printed the marker ("guest: uptime 2.97"). */
static const char *
guest_uptime(const char *console)
{
	static char up[32];
	char line[512];
	FILE *f = fopen(console, "r");

	snprintf(up, sizeof(up), "?");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "guest: uptime %31s", up) == 1)
			break;
	if (f)
		fclose(f);
	return up;
}

static void
test_qemu_boot_and_clean_stop(void **ts)
{
	struct run *r = new_run("acpid");
	char console[PATH_MAX + 16];
	int64_t t0, t_started, t_ready, t_stop;
	bool clean = false;
	pid_t pid;

	(void)ts;
	t0 = vmm_now_ms();
	pid = start(&vmm_qemu, r);
	t_started = vmm_now_ms() - t0;
	if (vmm_wait_ready(r->run_dir, pid, READY_TIMEOUT_MS, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	t_ready = vmm_now_ms() - t0;
	check_placement(r, pid, true);
	snprintf(console, sizeof(console), "%s/console.log", r->run_dir);
	assert_true(file_has(console, "guest: vda=16384 vdb=8192")); /* root is /dev/vda */
	assert_true(vmm_alive(pid, r->run_dir));
	assert_false(vmm_alive(pid, "/var/lib/sistemo/vms/another"));

	t0 = vmm_now_ms();
	if (vmm_stop(&vmm_qemu, r->run_dir, pid, 20000, &clean, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	t_stop = vmm_now_ms() - t0;
	assert_true(clean); /* the guest powered off by itself */
	assert_true(file_has(console, "guest: power button"));
	assert_false(vmm_alive(pid, r->run_dir));
	assert_int_equal(kill(pid, 0), -1); /* reaped: not even a zombie */
	printf("qemu (%s): start returned after %lld ms; launch -> ready %lld ms (guest %s s, "
	       "including its 1 s sleep); stop via power button %lld ms (clean)\n",
	       fx.kvm ? "kvm" : "tcg", (long long)t_started, (long long)t_ready,
	       guest_uptime(console), (long long)t_stop);
	free(r);
}

static void
test_qemu_stop_escalates(void **ts)
{
	struct run *r = new_run("deaf");
	const unsigned grace_ms = 1500;
	bool clean = true;
	int64_t t0, took;
	pid_t pid;

	(void)ts;
	r->cfg.cgroup = NULL;
	pid = start(&vmm_qemu, r);
	if (vmm_wait_ready(r->run_dir, pid, READY_TIMEOUT_MS, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	t0 = vmm_now_ms();
	if (vmm_stop(&vmm_qemu, r->run_dir, pid, grace_ms, &clean, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	took = vmm_now_ms() - t0;
	assert_false(clean);
	assert_in_range(took, grace_ms, grace_ms + 2000);
	assert_false(vmm_alive(pid, r->run_dir));
	printf("qemu (%s): init ignores the button: stopped by SIGTERM after %lld ms (grace %u)\n",
	       fx.kvm ? "kvm" : "tcg", (long long)took, grace_ms);
	free(r);
}

static void
test_qemu_start_errors(void **ts)
{
	struct run *r = new_run("acpid");
	char path[PATH_MAX + 16];
	pid_t pid = 0;
	FILE *f;

	(void)ts;
	r->cfg.kernel = "/nonexistent/vmlinuz";
	assert_true(vmm_qemu.start(&r->cfg, &pid, &r->err) < 0);
	printf("bad kernel: %s\n", r->err.msg);
	assert_non_null(strstr(r->err.msg, "qemu exited with status 1: "));
	assert_non_null(strstr(r->err.msg, "'/nonexistent/vmlinuz'")); /* from vmm.log */
	snprintf(path, sizeof(path), "%s/vmm.pid", r->run_dir);
	f = fopen(path, "r"); /* QEMU wrote its pid before failing: it is gone and reaped */
	if (f) {
		int old = 0;
		assert_int_equal(fscanf(f, "%d", &old), 1);
		fclose(f);
		assert_int_equal(kill(old, 0), -1);
	}

	err_clear(&r->err);
	r->cfg.kernel = fx.kernel;
	r->cfg.netns_path = "/run/netns/missing";
	assert_true(vmm_qemu.start(&r->cfg, &pid, &r->err) < 0);
	assert_int_equal(r->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(r->err.msg, "'/run/netns/missing'"));
	free(r);
}

/* A Firecracker stand-in: checks its config is JSON, prints the marker on its stdout (the
 * console), serves PUT /actions on --api-sock and exits on SendCtrlAltDel. */
static const char fake_firecracker[] =
	"#!/usr/bin/env python3\n"
	"import json, socket, sys\n"
	"a = sys.argv[1:]\n"
	"sock, cfg = a[a.index('--api-sock') + 1], a[a.index('--config-file') + 1]\n"
	"c = json.load(open(cfg))\n"
	"print('fake firecracker: kernel', c['boot-source']['kernel_image_path'], "
	"file=sys.stderr, flush=True)\n"
	"s = socket.socket(socket.AF_UNIX)\n"
	"s.bind(sock)\n"
	"s.listen(1)\n"
	"print('sistemo: ready', flush=True)\n"
	"while True:\n"
	"    conn, _ = s.accept()\n"
	"    data = b''\n"
	"    while b'SendCtrlAltDel' not in data:\n"
	"        chunk = conn.recv(4096)\n"
	"        if not chunk: break\n"
	"        data += chunk\n"
	"    if data.startswith(b'PUT /actions HTTP/1.1\\r\\n') and b'SendCtrlAltDel' in data:\n"
	"        conn.sendall(b'HTTP/1.1 204 \\r\\nContent-Length: 0\\r\\n\\r\\n')\n"
	"        sys.exit(0)\n"
	"    conn.sendall(b'HTTP/1.1 400 \\r\\nContent-Length: 2\\r\\n\\r\\n{}')\n";

/* Points the run at a stand-in firecracker binary. Without KVM the driver's start refuses
 * before anything runs, and the tests go on through vmm_firecracker_launch (start minus that
 * check). */
static void
use_fake_firecracker(struct run *r, const char *script)
{
	char bin[PATH_MAX], why[256];
	pid_t pid;
	FILE *f;

	snprintf(bin, sizeof(bin), "%s/bin/firecracker", fx.dir);
	sh("mkdir -p %s/bin", fx.dir);
	f = fopen(bin, "w");
	assert_non_null(f);
	fputs(script, f);
	fclose(f);
	chmod(bin, 0755);
	r->cfg.binary = strdup(bin);
	r->cfg.version = "Firecracker v1.16.1";
	r->cfg.mtu = 1400;
	r->cfg.cgroup = NULL;
	if (host_kvm_usable(why, sizeof(why)))
		return;
	assert_true(vmm_firecracker.start(&r->cfg, &pid, &r->err) < 0);
	assert_int_equal(r->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(r->err.msg, "firecracker needs KVM ("));
	err_clear(&r->err);
}

static int
fc_launch(struct run *r, pid_t *pid)
{
	char why[256];

	err_clear(&r->err);
	if (host_kvm_usable(why, sizeof(why)))
		return vmm_firecracker.start(&r->cfg, pid, &r->err);
	return vmm_firecracker_launch(&r->cfg, pid, &r->err);
}

static void
test_firecracker_stand_in(void **ts)
{
	struct run *r = new_run("acpid");
	char path[PATH_MAX + 16];
	bool clean = false;
	pid_t pid = 0;

	(void)ts;
	if (system("python3 -c '' 2>/dev/null") != 0) {
		printf("skipped: the stand-in needs python3\n");
		free(r);
		skip();
	}
	use_fake_firecracker(r, fake_firecracker);
	if (fc_launch(r, &pid) < 0)
		fail_msg("firecracker start: %s", r->err.msg);
	fx.pids[fx.n_pids++] = pid;
	check_placement(r, pid, false);
	if (vmm_wait_ready(r->run_dir, pid, 10000, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	snprintf(path, sizeof(path), "%s/config.json", r->run_dir);
	assert_true(file_has(path, "\"mtu\":1400"));
	assert_true(vmm_alive(pid, r->run_dir));
	if (vmm_stop(&vmm_firecracker, r->run_dir, pid, 5000, &clean, &r->err) < 0)
		fail_msg("%s", r->err.msg);
	assert_true(clean); /* it exited on SendCtrlAltDel */
	free((char *)r->cfg.binary);
	free(r);
}

/* A binary that fails at once: start reports its stderr (vmm.log). */
static void
test_firecracker_start_fails(void **ts)
{
	struct run *r = new_run("acpid");
	pid_t pid;

	(void)ts;
	use_fake_firecracker(r,
			     "#!/bin/sh\necho \"fake firecracker: bad config $*\" >&2\nexit 1\n");
	assert_true(fc_launch(r, &pid) < 0);
	printf("failing firecracker: %s\n", r->err.msg);
	assert_non_null(strstr(r->err.msg, "firecracker exited with status 1: fake firecracker: "
					   "bad config --api-sock "));
	assert_non_null(strstr(r->err.msg, "/config.json"));
	free((char *)r->cfg.binary);
	free(r);
}

static int
teardown(void **ts)
{
	(void)ts;
	for (size_t i = 0; i < fx.n_pids; i++) { /* by pid: only what this test started */
		kill(fx.pids[i], SIGKILL);
		waitpid(fx.pids[i], NULL, WNOHANG);
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_qemu_boot_and_clean_stop, teardown),
		cmocka_unit_test_teardown(test_qemu_stop_escalates, teardown),
		cmocka_unit_test_teardown(test_qemu_start_errors, teardown),
		cmocka_unit_test_teardown(test_firecracker_stand_in, teardown),
		cmocka_unit_test_teardown(test_firecracker_start_fails, teardown),
	};
	char qemu[PATH_MAX];
	int failed;

	it_isolate();
	if (host_find_binary("qemu-system-x86_64", NULL, qemu, sizeof(qemu)) < 0)
		it_skip("qemu-system-x86_64 not installed");
	if (access("/bin/busybox", X_OK) < 0 || system("command -v dpkg-deb cpio >/dev/null"))
		it_skip("needs /bin/busybox (busybox-static), dpkg-deb and cpio");
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/it_vmm.XXXXXX");
	if (!mkdtemp(fx.dir))
		it_skip("cannot create a scratch directory");
	build_kernel_and_initrd();
	build_disks_and_netns();
	make_cgroup();
	choose_accel();
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	for (size_t i = 0; i < fx.n_pids; i++)
		kill(fx.pids[i], SIGKILL);
	if (fx.cgroup[0])
		rmdir(fx.cgroup);
	sh("rm -rf %s", fx.dir);
	return failed;
}
