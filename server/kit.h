/* The guest kit: the kernel and initramfs machines boot, the built-in images, and the
 * per-machine root disk (clone, grow, inject). Built from Debian packages on the host;
 * docs/guest.md is the contract with the guest. Long steps report progress through a callback. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Progress of a long step: a short step name ("kernel", "initramfs", "image") and a message. */
typedef void (*kit_progress_fn)(void *ud, const char *step, const char *message);

/* What a machine boots. */
struct kit_kernel {
	char kernel[PATH_MAX];  /* bzImage/vmlinuz for QEMU */
	char vmlinux[PATH_MAX]; /* uncompressed ELF for Firecracker, "" when absent */
	char initrd[PATH_MAX];  /* "" when the kernel needs none (the built kernel) */
	bool built;             /* the kernel from `sistemo kernel build` */
	char version[64];       /* "6.1.0-56-cloud-amd64" */
};

/* Installs into <data_dir>/kernel: Debian's cloud kernel, taken from the linux-image-*-cloud-amd64
 * package file (apt's cache, as ci/install.sh leaves it; `apt-get download` when missing), never
 * installed on the host; and an initramfs built from busybox-static and the virtio module
 * closure: vmlinuz-<ver>, initrd-<ver>.img, then kit.stamp (written last: its presence means a
 * complete install). Idempotent and fast (a millisecond) when the stamp matches the newest
 * package in apt's cache and the current initramfs script; `force` rebuilds. */
int kit_install(const char *data_dir, bool force, kit_progress_fn progress, void *ud,
		struct err *err);

/* The kernel to boot: the built kernel when present (<data_dir>/kernel/bzImage-sistemo, with
 * vmlinux-sistemo next to it for Firecracker; version read from the bzImage header), else the
 * cloud kernel + initramfs named by kit.stamp. ERR_PRECONDITION naming 'sistemo install' when
 * neither is. */
int kit_kernel_find(const char *data_dir, struct kit_kernel *ret, struct err *err);

/* Progress of the kernel build: a step ("source", "config", "compile", "install"), the percent
 * of the whole build and a message. */
typedef void (*kit_percent_fn)(void *ud, const char *step, unsigned percent, const char *message);

/* What kit_kernel_build left in <data_dir>/kernel. */
struct kit_kernel_built {
	char path[PATH_MAX]; /* <data_dir>/kernel/bzImage-sistemo */
	char version[64];    /* "6.1.192-sistemo" */
	char sha256[65];     /* of the bzImage, hex */
	uint64_t size_bytes; /* of the bzImage */
	int64_t mtime_ms;
	uint64_t build_ms; /* 0: it was there already, nothing was built */
};

/* Builds the guest kernel from Debian's linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz,
 * with flex, bison, libelf-dev and bc: ERR_PRECONDITION naming them when missing) in
 * <data_dir>/tmp/kernel-build-XXXXXX, at nice 10: x86_64_defconfig + kvm_guest.config + the
 * options of docs/guest.md (virtio-mmio with cmdline devices, ext4, IP_PNP, ACPI button, no
 * modules), checked in the final .config; then installs bzImage-sistemo, vmlinux-sistemo and
 * config-sistemo into <data_dir>/kernel (each renamed into place, the bzImage last) and removes
 * the tree. About 15 min on 2 cores. Present and !force: nothing to do. One build at a time per
 * data dir (ERR_PRECONDITION otherwise). cancelled (may be NULL) is asked between steps and
 * every half second while a program runs: make is then killed with its process group and the
 * result is ERR_CANCELLED. ret (may be NULL) describes the installed kernel. */
int kit_kernel_build(const char *data_dir, bool force, kit_percent_fn progress,
		     bool (*cancelled)(void *ud), void *ud, struct kit_kernel_built *ret,
		     struct err *err);

/* Builds a built-in image into out_path (an ext4 file, written through a temporary file and
 * renamed, never left half-made). "tiny": busybox-static + dropbear, busybox init (a second).
 * "debian": debootstrap of Debian 12 minbase with systemd, udev and OpenSSH, run in its own
 * mount and PID namespaces, from the host's apt mirror (a few minutes, ~200 MB; server/
 * kit_debian.h). Neither carries SSH host keys (each machine makes its own). Refuses other
 * names with ERR_NOT_FOUND listing the built-in ones. Never writes through a symlink of the
 * staging tree. One build of a name at a time: a second caller waits, and returns at once
 * when the first made the image it lacked. */
int kit_image_build(const char *name, const char *out_path, kit_progress_fn progress, void *ud,
		    struct err *err);

/* kit_image_build reporting the share of the build done (0-100) with each message. */
int kit_image_build_percent(const char *name, const char *out_path, kit_percent_fn progress,
			    void *ud, struct err *err);

/* Makes a machine's root disk: a reflink or sparse copy of image to dest (never a byte-for-byte
 * copy of holes), grown to size_mb with resize2fs (after e2fsck -fy when resize2fs asks for it)
 * when larger than the image. Built in a temporary file next to dest and renamed, so dest is
 * never half-made: on failure nothing is left. ERR_INVALID when size_mb is below the image's
 * size, ERR_EXISTS when dest exists (never replaced). */
int kit_rootfs_clone(const char *image, const char *dest, uint64_t size_mb, struct err *err);

/* Injects /sbin/sistemo-init, root's authorized_keys (public_key: one line; the file is replaced)
 * and, for systemd images, the ready and power-button units with their multi-user.target.wants
 * links into the ext4 file at rootfs, with debugfs: no mount, and paths resolve inside the
 * image. A link or file where /root/.ssh should be is replaced by a directory (0700, root);
 * links on the way to /sbin or /etc/systemd (merged /usr) are followed, inside the image.
 * Idempotent. */
int kit_rootfs_inject(const char *rootfs, const char *public_key, struct err *err);

/* Writes script as /etc/sistemo/entrypoint (0755, root) into the ext4 file rootfs the same
 * way (debugfs, no mount): the image's OCI command, which /sbin/sistemo-init runs once the
 * machine is ready (docs/images.md). A link or file at /etc/sistemo is replaced. */
int kit_rootfs_inject_entrypoint(const char *rootfs, const char *script, struct err *err);
