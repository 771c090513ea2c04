/* A machine's root disk (kit_rootfs_clone and kit_rootfs_inject in kit.h): reflink or sparse
 * copy, resize2fs, and debugfs scripts that change the ext4 file without mounting it, so
 * paths resolve inside the image and never on the host. The probe is here for the tests. */
#pragma once

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
