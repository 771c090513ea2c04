/* Volumes: every machine's root disk and the data volumes, sparse ext4 files under
 * <data dir>/volumes: create, grow, attach, detach, delete, and what a machine's deploy, boot
 * and delete need of them (docs/volumes.md). No protobuf here. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store_volume.h"
#include "vmm.h"

struct daemon;
struct machine_info;
struct op;

#define VOLUME_MIN_MB 64
#define VOLUME_NAME_MAX 63
#define VOLUME_MAX_ATTACHED VMM_MAX_DISKS /* data volumes per machine: /dev/vdb, /dev/vdc... */

/* A volume name: [a-z0-9][a-z0-9_-]{0,62}. ERR_INVALID saying so. */
int volume_name_check(const char *name, struct err *err);

/* What an ext4 superblock says, as df would: the filesystem's size (its own metadata left out
 * when the superblock records how much that is) and the bytes in use. */
struct volume_usage {
	uint64_t size_bytes, used_bytes;
	char label[17];
};

/* Parses the 1024-byte ext4 superblock (found at byte 1024 of the filesystem). -EINVAL when
 * it is not one. */
int volume_ext4_parse(const unsigned char sb[1024], struct volume_usage *ret);

/* Reads the superblock of the ext4 file at path (never through a link). */
int volume_ext4_usage(const char *path, struct volume_usage *ret);

/* The volume's file: its path joined to the data directory, refused (ERR_INTERNAL) unless it
 * lies under volumes/ or vms/. */
int volume_file(const struct daemon *d, const struct volume_info *v, char *buf, size_t size,
		struct err *err);

/* Creates a data volume: a sparse file of size_mb formatted ext4 (label: the name's first 16
 * characters, UUID: the volume's id). name "" takes the first 8 characters of the id. */
int volume_create(struct daemon *d, const char *name, uint64_t size_mb, struct volume_info *ret,
		  struct err *err);

/* Grows a volume and its filesystem (never shrinks); its machine, if any, must be stopped. */
int volume_resize(struct daemon *d, const char *ref, uint64_t size_mb, struct volume_info *ret,
		  struct err *err);

/* Deletes a volume that is attached to no machine: its file, then its record. ret gets the
 * record as it was. */
int volume_delete(struct daemon *d, const char *ref, struct volume_info *ret, struct err *err);

/* Attaches a free volume to a stopped machine as its next data disk, or detaches one. Only
 * volumes of the store: a host path or device is refused. ret gets the volume after. */
int volume_attach(struct daemon *d, const char *volume, const char *machine,
		  struct volume_info *ret, struct err *err);
int volume_detach(struct daemon *d, const char *volume, const char *machine,
		  struct volume_info *ret, struct err *err);

/* The volumes a deploy asks for: boot (a volume to boot from, instead of an image; NULL or
 * "": none) and the data volumes to attach, in order. */
struct volume_deploy {
	const char *boot;
	const char *const *attach;
	size_t n_attach;
};

/* Checks a deploy's volumes before anything is made: each exists and is free, none twice, at
 * most VOLUME_MAX_ATTACHED, and without boot no volume NAME-root exists already.
 * *ret_boot_mb (may be NULL) gets the boot volume's size. */
int volume_deploy_check(struct daemon *d, const char *name, const struct volume_deploy *v,
			uint64_t *ret_boot_mb, struct err *err);

/* At deploy, once the machine is recorded: checks again and attaches, in one transaction, its
 * root disk (the boot volume, or a new record NAME-root for the run directory's rootfs.ext4)
 * and its data volumes. Deleting the machine's record undoes it (store_schema.c). */
int volume_deploy_claim(struct daemon *d, const struct machine_info *m,
			const struct volume_deploy *v, struct err *err);

/* At deploy from a volume: makes the run directory and injects the sistemo init and SSH key
 * into the boot volume (kit_rootfs_inject: debugfs, no mount, no link followed on the host). */
int volume_deploy_disk(struct daemon *d, const struct machine_info *m, struct op *op,
		       struct err *err);

/* A machine's disks for a boot, in order: root first (/dev/vda), then the data volumes. */
struct volume_disks {
	char root[PATH_MAX];
	char data[VOLUME_MAX_ATTACHED][PATH_MAX];
	const char *data_paths[VOLUME_MAX_ATTACHED];
	size_t n_data;
	/* "sistemo.volumes=NAME:vdb,NAME:vdc" for the sistemo init, or "" */
	char cmdline[VOLUME_MAX_ATTACHED * (VOLUME_NAME_MAX + 16) + 32];
};

/* Fills a machine's disks; each must be attached (not busy) and a regular file. A machine
 * without a root-disk record boots its run directory's rootfs.ext4. *ret: free() it. */
int volume_machine_disks(struct daemon *d, const struct machine_info *m, struct volume_disks **ret,
			 struct err *err);

/* At machine delete, its VMM stopped, before its record goes: preserve keeps the root disk as a
 * free volume (moved from the run directory to volumes/<id>.ext4), otherwise a root disk under
 * volumes/ is removed (the run directory's goes with it). Data volumes are released with the
 * record. Idempotent (a delete interrupted by a restart runs it again). */
int volume_machine_release(struct daemon *d, const struct machine_info *m, bool preserve,
			   struct err *err);

/* At daemon start: a volume left busy by a create, resize or delete that a restart interrupted
 * is in error (resize or delete it again). */
int volume_recover(struct daemon *d, struct err *err);
