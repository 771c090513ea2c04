/* VMM drivers behind one interface: QEMU (-M microvm; KVM when usable, TCG otherwise) and
 * Firecracker (KVM only). A driver starts the VMM process inside the machine's network
 * namespace, waits for the guest's ready marker, shuts it down cleanly, and reports its logs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct vmm_config {
	const char *id;          /* machine UUID */
	const char *name;
	unsigned vcpus;
	uint64_t memory_mb;
	const char *kernel;      /* bzImage (QEMU) or vmlinux (Firecracker) */
	const char *initrd;      /* NULL or "" when none */
	const char *cmdline;     /* docs/guest.md */
	const char *rootfs;      /* root disk: /dev/vda */
	const char *const *disks;/* data disks: /dev/vdb, /dev/vdc... */
	size_t n_disks;
	const char *tap;         /* "tap0" inside the namespace; NULL: no NIC */
	const char *mac;         /* "52:54:xx:xx:xx:xx" */
	const char *netns_path;  /* "/run/netns/sistemo-<short>" */
	const char *run_dir;     /* <data dir>/vms/<id>: console.log, vmm.log, vmm.pid, sockets */
	bool kvm;                /* use KVM (QEMU: -accel kvm; otherwise tcg,tb-size=32) */
	const char *cgroup;      /* cgroup directory to place the process in, or NULL */
};

struct vmm_driver {
	const char *name; /* "qemu", "firecracker" */

	/* Starts the VMM in cfg->netns_path, console to run_dir/console.log. Returns its pid
	 * once the process runs (not yet booted). On failure nothing is left running. */
	int (*start)(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err);

	/* Asks the guest to power off (QMP system_powerdown / SendCtrlAltDel). Returns at once. */
	int (*request_shutdown)(const char *run_dir, pid_t pid, struct err *err);
};

extern const struct vmm_driver vmm_qemu, vmm_firecracker;

/* The driver called name, or NULL. */
const struct vmm_driver *vmm_driver_find(const char *name);

/* Waits until the console log at run_dir/console.log holds the ready marker
 * ("sistemo: ready"), the process dies, or timeout_ms passes: inotify on the log, a pidfd on
 * the process, a timerfd for the deadline. ERR_DEADLINE / ERR_INTERNAL (naming the last
 * console lines) on failure. */
int vmm_wait_ready(const char *run_dir, pid_t pid, unsigned timeout_ms, struct err *err);

/* Stops a VMM: request_shutdown, wait up to grace_ms for it to exit (pidfd), then SIGTERM,
 * then SIGKILL after another second. Reaps it if it is our child. *ret_clean says whether the
 * guest powered off by itself. */
int vmm_stop(const struct vmm_driver *d, const char *run_dir, pid_t pid, unsigned grace_ms,
	     bool *ret_clean, struct err *err);

/* True when pid is alive and is the VMM started for run_dir (its command line names run_dir),
 * so a recycled pid is never mistaken for a machine (reconciler, daemon restart). */
bool vmm_alive(pid_t pid, const char *run_dir);

/* The Firecracker config JSON for cfg (for tests: checked against the swagger schema).
 * `fc_version` gates fields ("1.16.0": mtu allowed). Returns length or negative errno. */
int vmm_firecracker_config(const struct vmm_config *cfg, const char *fc_version, char *buf,
			   size_t size);

/* A stable MAC for an IPv4 address (host order): 52:54:<a>:<b>:<c>:<d>. */
void vmm_mac_for_ip(uint32_t ip, char out[18]);
