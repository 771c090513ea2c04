/* The built-in images (kit_image_build in kit.h): a staging tree made with kit_tree (never
 * through a link), then mkfs.ext4 -d. The pieces the tests look at are here. */
#pragma once

#include <stdint.h>

#include "err.h"
#include "strbuf.h"

/* The host's static busybox: applets are links to it, in the initramfs and the images. */
#define KIT_BUSYBOX "/bin/busybox"

/* `busybox --list-full` of the host's busybox: "bin/sh\nsbin/init\nusr/bin/awk..." */
int kit_image_busybox_applets(struct strbuf *out, struct err *err);

/* Fills the empty directory root (an fd) with the tiny image: busybox and its applet links,
 * dropbear and dropbearkey with the shared libraries ldd lists, /etc, /root/.ssh (0700),
 * no SSH host keys. */
int kit_image_tiny_tree(int root, struct err *err);

/* Copies the host's dropbear and dropbearkey into the tree at root (usr/sbin, usr/bin) with the
 * shared libraries ldd lists, at the same paths; a library already in the tree is kept. */
int kit_image_add_dropbear(int root, struct err *err);

/* mkfs.ext4 -d tree into file (size_mb): 4 KiB blocks, 256-byte inodes, the label; no mount. */
int kit_image_mkfs(const char *tree, const char *file, const char *label, uint64_t size_mb,
		   struct err *err);
