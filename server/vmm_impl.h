/* Internals shared by the VMM drivers (vmm.c, vmm_qemu.c, vmm_firecracker.c) and exposed to
 * their unit tests: argv building, the async-signal-safe spawn, log tails, the HTTP action. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "vmm.h"

#define VMM_ARGV_MAX 128
#define VMM_QMP_FD 3 /* QEMU inherits its QMP listening socket as this fd */

/* A NULL-terminated argv whose strings it owns; zero-initialise, free with vmm_argv_free.
 * The first failed append is kept in `error` and later appends do nothing. */
struct vmm_argv {
	size_t n;
	int error; /* 0, -E2BIG or -ENOMEM */
	char *v[VMM_ARGV_MAX + 1];
};
void vmm_argv_free(struct vmm_argv *a);
#define cleanup_vmm_argv __attribute__((cleanup(vmm_argv_free)))

/* Appends one formatted argument. Returns a->error: -E2BIG when full, -ENOMEM. */
int vmm_argv_add(struct vmm_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The QEMU command line for cfg with `binary` as argv[0]. -EINVAL for a config it cannot
 * express (too many disks, missing kernel), -E2BIG, -ENOMEM. */
int vmm_qemu_argv(const struct vmm_config *cfg, const char *binary, struct vmm_argv *ret);

/* The Firecracker command line: --api-sock run_dir/api.sock --config-file run_dir/config.json */
int vmm_firecracker_argv(const struct vmm_config *cfg, const char *binary, struct vmm_argv *ret);

/* The Firecracker driver's start without its KVM check (tests run a stand-in binary on hosts
 * without KVM): writes config.json, spawns, waits for the API socket, writes vmm.pid. */
int vmm_firecracker_launch(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err);

/* Sends `PUT /actions {"action_type": action}` over the connected API socket fd and reads the
 * status: 204 is success, anything else an error carrying Firecracker's fault_message. */
int vmm_firecracker_action(int fd, const char *action, unsigned timeout_ms, struct err *err);

struct vmm_spawn {
	char *const *argv;      /* argv[0] is the executable's path */
	const char *netns_path; /* network namespace to enter, or NULL */
	const char *cgroup;     /* cgroup directory to join, or NULL */
	int stdout_fd;          /* -1: /dev/null */
	int stderr_fd;          /* -1: /dev/null */
	int pass_fd;            /* becomes VMM_QMP_FD in the child, or -1 */
};

/* fork+exec with only async-signal-safe calls in the child: default signal mask and
 * dispositions, setsid, cgroup, setns, stdin from /dev/null, fds above 3 closed on exec.
 * Returns once exec succeeded; a failing step is reported as an error and the child reaped. */
int vmm_spawn(const struct vmm_spawn *s, pid_t *ret_pid, struct err *err);

/* Reaps a child that failed to come up (it gets a second to exit by itself, then SIGKILL) and
 * sets the error "<what> exited with status N: <tail of vmm.log>", or "<what> did not start
 * (<why>): <tail>" when it had to be killed. Returns -EIO. */
int vmm_spawn_abort(pid_t pid, const char *run_dir, const char *what, const char *why,
		    struct err *err);

/* The last lines (at most max_bytes of the file) of run_dir/name on one line, separated by
 * " | ", control characters replaced; "" when missing or empty. */
void vmm_log_tail(const char *run_dir, const char *name, size_t max_bytes, char *out, size_t size);

/* Checks what every driver needs (id, run_dir short enough for a socket path, kernel,
 * vcpus, memory, disk count). ERR_INVALID naming the field. */
int vmm_config_check(const struct vmm_config *cfg, struct err *err);

/* ERR_EXISTS when run_dir/vmm.pid names a VMM still running for run_dir: a second one would
 * share its disks. */
int vmm_check_stopped(const char *run_dir, struct err *err);

/* Moves console.log and vmm.log to *.1 (a run's logs start empty; one run of history). */
int vmm_logs_rotate(const char *run_dir, struct err *err);

/* Opens run_dir/name for appending (O_CLOEXEC, created 0640). */
int vmm_log_open(const char *run_dir, const char *name, struct err *err);

/* CLOCK_MONOTONIC in milliseconds, for deadlines. */
int64_t vmm_now_ms(void);

/* pidfd_open(2); -errno. */
int vmm_pidfd_open(pid_t pid);

/* Waits up to timeout_ms for fd to become readable: 1 readable, 0 timed out, -errno. */
int vmm_wait_readable(int fd, unsigned timeout_ms);
