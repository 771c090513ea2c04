/* The built-in images (kit_image_build in kit.h): a staging tree made with kit_tree (never
 * through a link), then mkfs.ext4 -d. The pieces the tests look at are here. */
#pragma once

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
