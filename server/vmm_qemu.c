/* The QEMU driver: -M microvm with virtio-mmio devices, KVM when usable, TCG otherwise. The
 * process side lives here; the monitor protocol is qmp.c. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "macro.h"
#include "qmp.h"
#include "strbuf.h"
#include "vmm.h"
#include "vmm_impl.h"

#define QEMU_START_MS 15000 /* launch to a monitor that answers (no guest code runs yet) */
#define QEMU_COMMAND_MS 5000
#define QEMU_MACHINE "microvm,x-option-roms=off,rtc=on,isa-serial=on"

/* Appends before + value + after, with the commas in value doubled: QEMU's option syntax
 * splits on single ones ("file=/a,,b" is the file "/a,b"). */
static void
add_opt(struct vmm_argv *a, const char *before, const char *value, const char *after)
{
	cleanup_strbuf struct strbuf sb = {0};
	int r = strbuf_append(&sb, before, strlen(before));

	for (const char *p = value; r == 0 && *p; p++) {
		if (*p == ',')
			r = strbuf_append(&sb, ",", 1);
		if (r == 0)
			r = strbuf_append(&sb, p, 1);
	}
	if (r == 0)
		r = strbuf_append(&sb, after, strlen(after));
	if (r < 0 && !a->error)
		a->error = r;
	vmm_argv_add(a, "%s", sb.data ? sb.data : "");
}

/* Under TCG, -cpu max exposes RDRAND (the guest's entropy is ready at once); the caller adds
 * tsc_early_khz to the kernel command line (microvm has no HPET or PM timer to calibrate). */
static void
argv_machine(const struct vmm_config *cfg, const char *binary, struct vmm_argv *a)
{
	vmm_argv_add(a, "%s", binary);
	vmm_argv_add(a, "-M");
	vmm_argv_add(a, QEMU_MACHINE);
	vmm_argv_add(a, "-accel");
	vmm_argv_add(a, cfg->kvm ? "kvm" : "tcg,tb-size=32");
	vmm_argv_add(a, "-cpu");
	vmm_argv_add(a, cfg->kvm ? "host" : "max");
	vmm_argv_add(a, "-m");
	vmm_argv_add(a, "%" PRIu64 "M", cfg->memory_mb);
	vmm_argv_add(a, "-smp");
	vmm_argv_add(a, "%u", cfg->vcpus);
	vmm_argv_add(a, "-nodefaults");
	vmm_argv_add(a, "-no-user-config");
	vmm_argv_add(a, "-display");
	vmm_argv_add(a, "none");
	vmm_argv_add(a, "-no-reboot"); /* a guest reboot ends the process; the daemon decides */
}

static void
argv_boot(const struct vmm_config *cfg, struct vmm_argv *a)
{
	vmm_argv_add(a, "-kernel");
	vmm_argv_add(a, "%s", cfg->kernel);
	if (cfg->initrd && *cfg->initrd) {
		vmm_argv_add(a, "-initrd");
		vmm_argv_add(a, "%s", cfg->initrd);
	}
	vmm_argv_add(a, "-append");
	vmm_argv_add(a, "%s", cfg->cmdline ? cfg->cmdline : "");
}

/* -drive id=d1,file=/x,format=raw,if=none,discard=unmap -device virtio-blk-device,drive=d1
 * Devices are created in this order: root first, so it is /dev/vda. */
static void
argv_disk(struct vmm_argv *a, const char *id, const char *path)
{
	char before[32], after[96];

	snprintf(before, sizeof(before), "id=%s,file=", id);
	snprintf(after, sizeof(after), ",format=raw,if=none,discard=unmap,detect-zeroes=unmap");
	vmm_argv_add(a, "-drive");
	add_opt(a, before, path, after);
	vmm_argv_add(a, "-device");
	vmm_argv_add(a, "virtio-blk-device,drive=%s", id);
}

static void
argv_devices(const struct vmm_config *cfg, struct vmm_argv *a)
{
	char id[24], mtu[32] = "";

	if (cfg->rootfs && *cfg->rootfs)
		argv_disk(a, "root", cfg->rootfs);
	for (size_t i = 0; i < cfg->n_disks; i++) {
		snprintf(id, sizeof(id), "d%zu", i + 1);
		argv_disk(a, id, cfg->disks[i]);
	}
	if (!cfg->tap)
		return;
	vmm_argv_add(a, "-netdev");
	add_opt(a, "tap,id=n0,ifname=", cfg->tap, ",script=no,downscript=no");
	if (cfg->mtu)
		snprintf(mtu, sizeof(mtu), ",host_mtu=%u", cfg->mtu);
	vmm_argv_add(a, "-device");
	if (cfg->mac && *cfg->mac)
		add_opt(a, "virtio-net-device,netdev=n0,mac=", cfg->mac, mtu);
	else
		vmm_argv_add(a, "virtio-net-device,netdev=n0%s", mtu);
}

/* The serial console appends to console.log; the QMP monitor serves the socket the daemon
 * created and passed as VMM_QMP_FD; the run_dir stays on the command line (vmm_alive). */
static void
argv_files(const struct vmm_config *cfg, struct vmm_argv *a)
{
	vmm_argv_add(a, "-chardev");
	add_opt(a, "file,id=con,path=", cfg->run_dir, "/console.log,append=on");
	vmm_argv_add(a, "-serial");
	vmm_argv_add(a, "chardev:con");
	vmm_argv_add(a, "-chardev");
	vmm_argv_add(a, "socket,id=qmp,fd=%d,server=on,wait=off", VMM_QMP_FD);
	vmm_argv_add(a, "-mon");
	vmm_argv_add(a, "chardev=qmp,mode=control");
	vmm_argv_add(a, "-pidfile");
	vmm_argv_add(a, "%s/vmm.pid", cfg->run_dir);
	vmm_argv_add(a, "-name");
	add_opt(a, "sistemo-", cfg->id, "");
}

int
vmm_qemu_argv(const struct vmm_config *cfg, const char *binary, struct vmm_argv *ret)
{
	struct vmm_argv a = {0};

	if (!cfg->kernel || !*cfg->kernel || !cfg->run_dir || !cfg->id ||
	    cfg->n_disks > VMM_MAX_DISKS)
		return -EINVAL;
	argv_machine(cfg, binary, &a);
	argv_boot(cfg, &a);
	argv_devices(cfg, &a);
	argv_files(cfg, &a);
	if (a.error) {
		int r = a.error;
		vmm_argv_free(&a);
		return r;
	}
	*ret = a;
	return 0;
}

static int
qemu_prepare(const struct vmm_config *cfg, struct vmm_argv *argv, struct err *err)
{
	char binary[PATH_MAX];
	int r = vmm_config_check(cfg, err);

	if (r < 0 || (r = vmm_check_stopped(cfg->run_dir, err)) < 0)
		return r;
	if (cfg->binary)
		snprintf(binary, sizeof(binary), "%s", cfg->binary);
	else if (host_find_binary("qemu-system-x86_64", NULL, binary, sizeof(binary)) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
	r = vmm_qemu_argv(cfg, binary, argv);
	if (r < 0)
		return err_set(err, ERR_INVALID, NULL, -r, "qemu command line: %s", strerror(-r));
	return vmm_logs_rotate(cfg->run_dir, err);
}

static int
qemu_start(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err)
{
	cleanup_vmm_argv struct vmm_argv argv = {0};
	cleanup_close int qmp = -1, log = -1;
	struct err ping = {0};
	char sock[PATH_MAX];
	pid_t pid;
	int r = qemu_prepare(cfg, &argv, err);

	if (r < 0)
		return r;
	snprintf(sock, sizeof(sock), "%s/qmp.sock", cfg->run_dir);
	r = qmp_listen(sock, &qmp, err);
	if (r < 0 || (log = vmm_log_open(cfg->run_dir, "vmm.log", err)) < 0)
		return r < 0 ? r : log;
	const struct vmm_spawn s = {argv.v, cfg->netns_path, cfg->cgroup, log, log, qmp};
	r = vmm_spawn(&s, &pid, err);
	if (r < 0)
		return r;
	close(TAKE_FD(qmp)); /* QEMU holds it now: if QEMU dies, connecting fails */
	if (qmp_execute(sock, NULL, QEMU_START_MS, &ping) < 0)
		return vmm_spawn_abort(pid, cfg->run_dir, "qemu", ping.msg, err);
	log_debug("qemu: machine '%s' runs as pid %d (%s)", cfg->id, (int)pid,
		  cfg->kvm ? "kvm" : "tcg");
	*ret_pid = pid;
	return 0;
}

static int
qemu_request_shutdown(const char *run_dir, pid_t pid, struct err *err)
{
	char sock[PATH_MAX];

	(void)pid;
	snprintf(sock, sizeof(sock), "%s/qmp.sock", run_dir);
	return qmp_execute(sock, "system_powerdown", QEMU_COMMAND_MS, err);
}

const struct vmm_driver vmm_qemu = {
	.name = "qemu",
	.start = qemu_start,
	.request_shutdown = qemu_request_shutdown,
};
