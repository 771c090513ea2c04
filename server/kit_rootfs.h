/* A machine's root disk (kit_rootfs_clone and kit_rootfs_inject in kit.h): reflink or sparse
 * copy, resize2fs, and debugfs scripts that change the ext4 file without mounting it, so
 * paths resolve inside the image and never on the host. Here: the probe (for the tests) and
 * the growth of a volume's file. */
#pragma once

#include <stdint.h>

#include "err.h"

enum kit_rootfs_type {
	KIT_ROOTFS_NONE,
	KIT_ROOTFS_DIR,
	KIT_ROOTFS_FILE,
	KIT_ROOTFS_LINK,
	KIT_ROOTFS_OTHER,
};

/* What path is inside the ext4 file rootfs (`debugfs -R "stat PATH"`; the last component is
 * not followed). ERR_INVALID when rootfs is no ext2/3/4 filesystem. */
int kit_rootfs_type(const char *rootfs, const char *path, enum kit_rootfs_type *ret,
		    struct err *err);

/* Grows the ext4 file at path (a regular file, not a link) to size_mb: the file first, then
 * its filesystem with resize2fs (after e2fsck -fy when resize2fs asks for it). The file must
 * not be in use. ERR_INVALID when size_mb is below its size. */
int kit_rootfs_grow(const char *path, uint64_t size_mb, struct err *err);
