/* VMM drivers behind one interface: QEMU (-M microvm; KVM when usable, TCG otherwise) and
 * Firecracker (KVM only). A driver starts the VMM process inside the machine's network
 * namespace, waits for the guest's ready marker, shuts it down cleanly, and reports its logs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define VMM_MAX_DISKS 16 /* data disks, besides the root disk */

struct vmm_config {
	const char *id; /* machine UUID */
	const char *name;
	unsigned vcpus; /* Firecracker: 1 or an even number up to 32 */
	uint64_t memory_mb;
	const char *kernel;       /* bzImage (QEMU) or vmlinux (Firecracker) */
	const char *initrd;       /* NULL or "" when none */
	const char *cmdline;      /* docs/guest.md */
	const char *rootfs;       /* root disk: /dev/vda; NULL: none (initramfs-only guests) */
	const char *const *disks; /* data disks: /dev/vdb, /dev/vdc... (at most VMM_MAX_DISKS) */
	size_t n_disks;
	const char *tap;        /* "tap0" inside the namespace; NULL: no NIC */
	const char *mac;        /* "52:54:xx:xx:xx:xx" (vmm_mac_for_ip) */
	unsigned mtu;           /* NIC MTU advertised to the guest; 0: the default (1500) */
	const char *netns_path; /* "/run/netns/sistemo-<short>"; NULL: the daemon's namespace */
	const char *run_dir;    /* <data dir>/vms/<id>: console.log, vmm.log, vmm.pid, sockets */
	bool kvm;               /* use KVM (QEMU: -accel kvm; otherwise tcg,tb-size=32) */
	const char *cgroup;     /* cgroup directory to place the process in, or NULL */
	const char *binary;  /* the VMM executable (vmm_probe.binary); NULL: looked up in $PATH */
	const char *version; /* its version (vmm_probe.version, "Firecracker v1.16.1"); gates
			      * fields such as Firecracker's mtu; NULL: unknown, none sent */
};

struct vmm_driver {
	const char *name; /* "qemu", "firecracker" */

	/* Starts the VMM in cfg->netns_path, in its own session (a daemon restart leaves it
	 * running), console to run_dir/console.log and its stderr to run_dir/vmm.log; the logs of
	 * the previous run are kept as console.log.1 and vmm.log.1. Returns its pid once the
	 * process runs (QEMU: its monitor answers, so bad arguments and a missing kernel are
	 * reported here, with the tail of vmm.log; Firecracker: its API socket exists).
	 * ERR_EXISTS when run_dir/vmm.pid names a VMM still running for run_dir. On failure
	 * nothing is left running. */
	int (*start)(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err);

	/* Asks the guest to power off (QMP system_powerdown / SendCtrlAltDel). Returns once the
	 * VMM accepted the request, without waiting for the guest. */
	int (*request_shutdown)(const char *run_dir, pid_t pid, struct err *err);
};

extern const struct vmm_driver vmm_qemu, vmm_firecracker;

/* The driver called name, or NULL. */
const struct vmm_driver *vmm_driver_find(const char *name);

/* Waits until the console log at run_dir/console.log holds the ready marker
 * ("sistemo: ready"), the process dies, or timeout_ms passes: inotify on the log, a pidfd on
 * the process, a timerfd for the deadline. ERR_DEADLINE / ERR_INTERNAL (naming the last
 * console and vmm.log lines) on failure; a dead VMM that was our child is reaped. */
int vmm_wait_ready(const char *run_dir, pid_t pid, unsigned timeout_ms, struct err *err);

/* Stops a VMM: request_shutdown, wait up to grace_ms for it to exit (pidfd), then SIGTERM,
 * then SIGKILL after another second. Reaps it if it is our child. *ret_clean says whether it
 * exited without a signal from us (the guest powered off, or it was already gone). A pid
 * that is not the VMM of run_dir (vmm_alive) counts as already gone and is never signalled. */
int vmm_stop(const struct vmm_driver *d, const char *run_dir, pid_t pid, unsigned grace_ms,
	     bool *ret_clean, struct err *err);

/* True when pid is alive and is the VMM started for run_dir (its command line names run_dir),
 * so a recycled pid is never mistaken for a machine (reconciler, daemon restart). */
bool vmm_alive(pid_t pid, const char *run_dir);

/* The Firecracker config JSON for cfg (for tests: checked against the swagger schema).
 * `fc_version` gates fields ("1.16.0" or "Firecracker v1.16.1": mtu allowed; NULL: none).
 * Returns the length, -EINVAL for a config Firecracker cannot run, -ENOSPC when buf is small. */
int vmm_firecracker_config(const struct vmm_config *cfg, const char *fc_version, char *buf,
			   size_t size);

/* A stable MAC for an IPv4 address (host order): 52:54:<a>:<b>:<c>:<d>. */
void vmm_mac_for_ip(uint32_t ip, char out[18]);
