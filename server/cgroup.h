/* Per-machine CPU and memory limits through cgroups: a group per machine under "sistemo/", in
 * the unified (v2) hierarchy when it holds the cpu and memory controllers, else in the v1 cpu
 * and memory hierarchies. The VMM joins the group before it execs (vmm_config.cgroup). */
#pragma once

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct cgroup_machine {
	char cpu[PATH_MAX];    /* the group the VMM joins (v2: the only one) */
	char memory[PATH_MAX]; /* v1 only: the memory group, joined after start; "" on v2 */
};

/* Creates the machine's group(s) with the limits: CPU quota vcpus × 100 ms per 100 ms, memory
 * limit memory_mb plus the VMM's own overhead. ERR_UNAVAILABLE when no usable hierarchy is
 * mounted (the machine then runs without limits: the caller logs it). */
int cgroup_machine_create(const char *id, unsigned vcpus, uint64_t memory_mb,
			  struct cgroup_machine *ret, struct err *err);

/* Moves pid into the v1 memory group (the cpu group it joined itself). */
int cgroup_machine_attach(const struct cgroup_machine *cg, pid_t pid, struct err *err);

/* Removes the machine's groups (after its VMM exited). Missing: success. */
void cgroup_machine_delete(const char *id);

/* The VMM's memory beyond the guest's: QEMU's own heap and (TCG) its code cache. */
#define CGROUP_VMM_OVERHEAD_MB 256
