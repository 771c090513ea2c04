/* Facts about the host the daemon runs on: KVM, VMM binaries, CPUs, memory, disk.
 * Probes are cheap except versions (a spawn each), which callers cache. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Finds an executable: <data_dir>/bin/NAME first (when data_dir is set), then $PATH. */
int host_find_binary(const char *name, const char *data_dir, char *out, size_t size);

/* True when /dev/kvm exists and opens read-write; otherwise why not, in `why`. */
bool host_kvm_usable(char *why, size_t size);

struct vmm_probe {
	const char *name; /* "qemu", "firecracker" */
	bool available;
	bool is_default;
	char reason[256]; /* "kvm", "tcg (no /dev/kvm: ...)", or why it cannot run */
	char binary[PATH_MAX];
	char version[96];
};

/* Probes both drivers; `vmm` is the configured choice (auto|qemu|firecracker) and decides
 * which is the default. Spawns each binary once with --version. */
void host_probe_vmms(const char *data_dir, const char *vmm, struct vmm_probe ret[2]);

unsigned host_cpus(void);
uint64_t host_memory_mb(void);
uint64_t host_memory_available_mb(void);
/* Free space of the filesystem holding path, in MiB, or 0 when it cannot be read. */
uint64_t host_disk_free_mb(const char *path);
/* The host CPU's frequency in kHz from /proc/cpuinfo ("cpu MHz"), 0 when unknown: QEMU microvm
 * guests under TCG need it as tsc_early_khz. */
unsigned host_tsc_khz(void);

/* "6.1.0-13-amd64" */
void host_kernel_release(char *out, size_t size);
