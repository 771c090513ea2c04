/* Volumes (volume.h). Every change of a volume's state is checked and made under the store's
 * lock in one transaction, so a volume is never attached twice, resized under a booting
 * machine, or deleted while attached. */
#include "volume.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "kit.h"
#include "kit_rootfs.h"
#include "kit_run.h"
#include "log.h"
#include "macro.h"
#include "ops.h"
#include "ssh.h"
#include "uuid.h"

#define MIB (1ull << 20)
#define EXT4_LABEL_MAX 16

/* ---- names and the superblock ---------------------------------------------------------- */

int
volume_name_check(const char *name, struct err *err)
{
	size_t n = strlen(name);
	bool ok = n > 0 && n <= VOLUME_NAME_MAX &&
		  (islower((unsigned char)name[0]) || isdigit((unsigned char)name[0]));

	for (size_t i = 1; ok && i < n; i++)
		ok = islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) ||
		     name[i] == '-' || name[i] == '_';
	if (!ok)
		return err_set(
			err, ERR_INVALID, "name", EINVAL,
			"invalid volume name '%.80s': use 1 to 63 lowercase letters, digits, "
			"'-' and '_', starting with a letter or digit",
			name);
	return 0;
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* struct ext4_super_block: offsets in bytes */
enum {
	SB_BLOCKS_LO = 0x04,
	SB_FREE_LO = 0x0c,
	SB_LOG_BLOCK = 0x18,
	SB_LOG_CLUSTER = 0x1c,
	SB_MAGIC = 0x38,
	SB_INCOMPAT = 0x60,
	SB_RO_COMPAT = 0x64,
	SB_LABEL = 0x78,
	SB_BLOCKS_HI = 0x150,
	SB_FREE_HI = 0x158,
	SB_OVERHEAD = 0x248, /* in clusters; 0: not recorded */
};
#define EXT4_MAGIC 0xef53
#define INCOMPAT_64BIT 0x80
#define RO_COMPAT_BIGALLOC 0x200

int
volume_ext4_parse(const unsigned char sb[1024], struct volume_usage *ret)
{
	uint32_t log_block = le32(sb + SB_LOG_BLOCK), log_cluster = le32(sb + SB_LOG_CLUSTER);
	bool wide = le32(sb + SB_INCOMPAT) & INCOMPAT_64BIT;
	uint64_t blocks = le32(sb + SB_BLOCKS_LO), free = le32(sb + SB_FREE_LO);
	uint64_t overhead = le32(sb + SB_OVERHEAD);

	if ((sb[SB_MAGIC] | sb[SB_MAGIC + 1] << 8) != EXT4_MAGIC || log_block > 6)
		return -EINVAL;
	if (wide) {
		blocks |= (uint64_t)le32(sb + SB_BLOCKS_HI) << 32;
		free |= (uint64_t)le32(sb + SB_FREE_HI) << 32;
	}
	if ((le32(sb + SB_RO_COMPAT) & RO_COMPAT_BIGALLOC) && log_cluster >= log_block &&
	    log_cluster - log_block < 32)
		overhead <<= log_cluster - log_block;
	if (free > blocks || overhead > blocks - free)
		return -EINVAL;
	uint64_t block_size = 1024ull << log_block;
	ret->size_bytes = (blocks - overhead) * block_size;
	ret->used_bytes = (blocks - overhead - free) * block_size;
	memcpy(ret->label, sb + SB_LABEL, EXT4_LABEL_MAX);
	ret->label[EXT4_LABEL_MAX] = '\0';
	return 0;
}

int
volume_ext4_usage(const char *path, struct volume_usage *ret)
{
	cleanup_close int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	unsigned char sb[1024];

	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, sb, sizeof(sb), 1024);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(sb) ? volume_ext4_parse(sb, ret) : -EINVAL;
}

static bool
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int
volume_file(const struct daemon *d, const struct volume_info *v, char *buf, size_t size,
	    struct err *err)
{
	if (v->path[0] == '/' || strstr(v->path, "..") ||
	    !(has_prefix(v->path, "volumes/") || has_prefix(v->path, "vms/")) ||
	    paths_join(&d->paths, v->path, buf, size) < 0)
		return err_set(err, ERR_INTERNAL, NULL, EINVAL,
			       "volume '%s': its file '%s' is not under the data directory",
			       v->name, v->path);
	return 0;
}

/* ---- states ------------------------------------------------------------------------------ */

static bool
machine_stopped(const struct volume_info *v)
{
	return streq(v->machine_state, "stopped") || streq(v->machine_state, "error");
}

static int
attached_error(const struct volume_info *v, struct err *err)
{
	if (v->attach_order == 0)
		return err_set(err, ERR_PRECONDITION, "volume", EBUSY,
			       "volume '%s' is the root disk of machine '%s'", v->name, v->machine);
	return err_set(err, ERR_PRECONDITION, "volume", EBUSY,
		       "volume '%s' is attached to machine '%s': detach it first (sistemo volume "
		       "detach %s %s)",
		       v->name, v->machine, v->name, v->machine);
}

/* "volume 'x' is busy" and the like, for a volume in a state other than the one wanted. */
static int
state_error(const struct volume_info *v, struct err *err)
{
	if (streq(v->state, "busy"))
		return err_set(err, ERR_PRECONDITION, "volume", EBUSY,
			       "volume '%s' is busy (being created, resized or deleted): try again "
			       "when it is done",
			       v->name);
	if (streq(v->state, "error"))
		return err_set(
			err, ERR_PRECONDITION, "volume", EIO,
			"volume '%s' is in error (a resize failed): resize it again or delete "
			"it",
			v->name);
	return attached_error(v, err);
}

/* The volume ref, refusing what is not one of ours with a word on why. */
static int
get_volume(struct daemon *d, const char *ref, struct volume_info *v, struct err *err)
{
	if (!*ref)
		return err_set(err, ERR_INVALID, "volume", EINVAL,
			       "a volume name or id is required");
	if (strchr(ref, '/'))
		return err_set(
			err, ERR_INVALID, "volume", EINVAL,
			"'%.200s' is not a sistemo volume: only volumes made by sistemo "
			"(sistemo volume create, or a kept root disk) can be attached, never "
			"a host path or device",
			ref);
	return store_volume_get(d->store, ref, v, err);
}

/* ---- create -------------------------------------------------------------------------------- */

static int
check_size(const struct daemon *d, uint64_t size_mb, struct err *err)
{
	if (size_mb < VOLUME_MIN_MB || size_mb > d->cfg.max_storage_mb)
		return err_set(err, ERR_INVALID, "size_mb", EINVAL,
			       "size %llu MB is out of range: %d to %llu MB (max_storage_mb)",
			       (unsigned long long)size_mb, VOLUME_MIN_MB,
			       (unsigned long long)d->cfg.max_storage_mb);
	return 0;
}

/* truncate -s SIZE + mkfs.ext4 -F -q -m 0 -L LABEL -U ID FILE. The journal stays: a machine
 * stopped hard (SIGKILL after the grace time, a VMM crash) finds its data volumes consistent
 * at the next mount. No blocks reserved for root: the volume holds data, not a system. */
static int
format(const char *file, const struct volume_info *v, struct err *err)
{
	cleanup_close int fd =
		open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	char label[EXT4_LABEL_MAX + 1];
	const char *argv[] = {"mkfs.ext4", "-F", "-q",  "-m", "0", "-L",
			      label,       "-U", v->id, file, NULL};
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = 300000};

	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", file,
			       strerror(errno));
	if (ftruncate(fd, (off_t)(v->size_mb * MIB)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "size '%s': %s", file,
			       strerror(errno));
	snprintf(label, sizeof(label), "%.*s", EXT4_LABEL_MAX, v->name);
	return kit_run_ok(&cmd, NULL, err);
}

static int
create_file(struct daemon *d, const struct volume_info *v, struct err *err)
{
	char file[PATH_MAX];
	int r = volume_file(d, v, file, sizeof(file), err);

	if (r < 0)
		return r;
	if ((r = format(file, v, err)) < 0) {
		unlink(file);
		return err_wrap(err, "volume '%s'", v->name);
	}
	return 0;
}

int
volume_create(struct daemon *d, const char *name, uint64_t size_mb, struct volume_info *ret,
	      struct err *err)
{
	struct volume_info v = {.size_mb = size_mb};
	int r;

	if ((*name && (r = volume_name_check(name, err)) < 0) ||
	    (r = check_size(d, size_mb, err)) < 0)
		return r;
	uuid_generate_text(v.id);
	snprintf(v.name, sizeof(v.name), "%.*s", *name ? VOLUME_NAME_MAX : 8, *name ? name : v.id);
	snprintf(v.path, sizeof(v.path), "volumes/%s.ext4", v.id);
	struct volume_rec rec = {.id = v.id,
				 .name = v.name,
				 .path = v.path,
				 .role = "data",
				 .state = "busy",
				 .machine_id = "",
				 .size_mb = size_mb};
	if ((r = store_volume_add(d->store, &rec, err)) < 0)
		return r;
	if ((r = create_file(d, &v, err)) < 0 ||
	    (r = store_volume_set_state(d->store, v.id, "online", "", 0, err)) < 0) {
		store_volume_remove(d->store, v.id, NULL);
		return r;
	}
	log_info("volume '%s': created, %llu MB", v.name, (unsigned long long)size_mb);
	return store_volume_get(d->store, v.id, ret, err);
}

/* ---- resize ---------------------------------------------------------------------------------- */

struct claim {
	struct daemon *d;
	const char *ref, *machine;
	uint64_t size_mb;
	struct volume_info *v;
	bool nothing_to_do;
};

static int
resize_claim(void *ud, struct err *err)
{
	struct claim *x = ud;
	struct volume_info *v = x->v;
	int r = get_volume(x->d, x->ref, v, err);

	if (r < 0)
		return r;
	if (x->size_mb < v->size_mb)
		return err_set(err, ERR_INVALID, "size_mb", EINVAL,
			       "volume '%s' is %llu MB: shrinking is not supported, give a size "
			       "above that",
			       v->name, (unsigned long long)v->size_mb);
	if (streq(v->state, "busy"))
		return state_error(v, err);
	if (*v->machine && !machine_stopped(v))
		return err_set(err, ERR_PRECONDITION, "volume", EBUSY,
			       "volume '%s' is attached to machine '%s', which is %s: stop machine "
			       "'%s' first: the guest cannot grow a disk online with this driver",
			       v->name, v->machine, v->machine_state, v->machine);
	x->nothing_to_do = x->size_mb == v->size_mb && !streq(v->state, "error");
	if (x->nothing_to_do)
		return 0;
	return store_volume_set_state(x->d->store, v->id, "busy", v->machine_id, v->attach_order,
				      err);
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_size : -1;
}

int
volume_resize(struct daemon *d, const char *ref, uint64_t size_mb, struct volume_info *ret,
	      struct err *err)
{
	struct claim x = {.d = d, .ref = ref, .size_mb = size_mb, .v = ret};
	char file[PATH_MAX] = "";
	/* growing only: the lower bound is the volume's size (resize_claim) */
	int r = check_size(d, size_mb < VOLUME_MIN_MB ? VOLUME_MIN_MB : size_mb, err);

	if (r < 0 || (r = store_volume_tx(d->store, resize_claim, &x, err)) < 0)
		return r;
	if (x.nothing_to_do)
		return 0;
	const char *after = *ret->machine_id ? "attached" : "online";
	off_t before = -1;
	if ((r = volume_file(d, ret, file, sizeof(file), err)) == 0) {
		before = file_size(file);
		r = kit_rootfs_grow(file, size_mb, err);
	}
	if (r < 0) {
		/* the file grew but not its filesystem (or worse): 'error' until a resize works */
		if (file_size(file) != before)
			after = "error";
		store_volume_set_state(d->store, ret->id, after, ret->machine_id, ret->attach_order,
				       NULL);
		return err_wrap(err, "resize volume '%s'", ret->name);
	}
	if ((r = store_volume_set_size(d->store, ret->id, size_mb, err)) < 0 ||
	    (r = store_volume_set_state(d->store, ret->id, after, ret->machine_id,
					ret->attach_order, err)) < 0)
		return r;
	log_info("volume '%s': grown to %llu MB", ret->name, (unsigned long long)size_mb);
	return store_volume_get(d->store, ret->id, ret, err);
}

/* ---- delete ---------------------------------------------------------------------------------- */

static int
delete_claim(void *ud, struct err *err)
{
	struct claim *x = ud;
	struct volume_info *v = x->v;
	int r = get_volume(x->d, x->ref, v, err);

	if (r < 0)
		return r;
	if (*v->machine_id && v->attach_order == 0)
		return err_set(err, ERR_PRECONDITION, "volume", EBUSY,
			       "volume '%s' is the root disk of machine '%s': delete the machine "
			       "(sistemo machine delete %s)",
			       v->name, v->machine, v->machine);
	if (*v->machine_id)
		return attached_error(v, err);
	if (streq(v->state, "busy"))
		return state_error(v, err);
	if (!has_prefix(v->path, "volumes/"))
		return err_set(err, ERR_INTERNAL, NULL, EINVAL,
			       "volume '%s': its file '%s' is not under volumes/", v->name,
			       v->path);
	return store_volume_set_state(x->d->store, v->id, "busy", "", 0, err);
}

int
volume_delete(struct daemon *d, const char *ref, struct volume_info *ret, struct err *err)
{
	struct claim x = {.d = d, .ref = ref, .v = ret};
	char file[PATH_MAX];
	int r = store_volume_tx(d->store, delete_claim, &x, err);

	if (r < 0)
		return r;
	if ((r = volume_file(d, ret, file, sizeof(file), err)) < 0 ||
	    (unlink(file) < 0 && errno != ENOENT &&
	     (r = err_set(err, ERR_INTERNAL, NULL, errno, "remove '%s': %s", file,
			  strerror(errno))) < 0)) {
		store_volume_set_state(d->store, ret->id, ret->state, "", 0, NULL);
		return err_wrap(err, "delete volume '%s'", ret->name);
	}
	log_info("volume '%s': deleted", ret->name);
	return store_volume_remove(d->store, ret->id, err);
}

/* ---- attach, detach -------------------------------------------------------------------------- */

struct attach {
	struct daemon *d;
	const char *vref, *mref;
	struct volume_info *v;
	struct machine_info m;
	unsigned n_data, last_order;
};

static int
count_data(void *ud, const struct volume_rec *v)
{
	struct attach *x = ud;

	if (v->attach_order > 0) {
		x->n_data++;
		x->last_order = v->attach_order > x->last_order ? v->attach_order : x->last_order;
	}
	return 0;
}

/* Attach and detach change the disks a VMM was started with: only while it is not running. */
static int
machine_must_be_stopped(const struct machine_info *m, const char *verb, struct err *err)
{
	const char *why = streq(m->driver, "firecracker")
				  ? "Firecracker cannot add or remove drives of a running microVM"
				  : "QEMU microvm has no hotplug of virtio-mmio devices";

	if (streq(m->state, "stopped") || streq(m->state, "error"))
		return 0;
	return err_set(
		err, ERR_PRECONDITION, "machine", EBUSY,
		"cannot %s a volume while machine '%s' is %s: stop it first (sistemo machine "
		"stop %s); %s, so disks change only while a machine is stopped",
		verb, m->name, m->state, m->name, why);
}

static int
attach_tx(void *ud, struct err *err)
{
	struct attach *x = ud;
	struct volume_info *v = x->v;
	int r = get_volume(x->d, x->vref, v, err);

	if (r < 0 || (r = store_machine_get(x->d->store, x->mref, &x->m, err)) < 0)
		return r;
	if (streq(v->machine_id, x->m.id))
		return err_set(err, ERR_EXISTS, "volume", EEXIST,
			       "volume '%s' is attached to machine '%s' already", v->name,
			       x->m.name);
	if (!streq(v->state, "online"))
		return state_error(v, err);
	if ((r = machine_must_be_stopped(&x->m, "attach", err)) < 0 ||
	    (r = store_volume_list(x->d->store, x->m.id, count_data, x, err)) < 0)
		return r;
	if (x->n_data >= VOLUME_MAX_ATTACHED)
		return err_set(err, ERR_EXHAUSTED, "volume", ENOSPC,
			       "machine '%s' has %u data volumes, the most it can have", x->m.name,
			       x->n_data);
	return store_volume_set_state(x->d->store, v->id, "attached", x->m.id, x->last_order + 1,
				      err);
}

static int
detach_tx(void *ud, struct err *err)
{
	struct attach *x = ud;
	struct volume_info *v = x->v;
	int r = get_volume(x->d, x->vref, v, err);

	if (r < 0 || (r = store_machine_get(x->d->store, x->mref, &x->m, err)) < 0)
		return r;
	if (!streq(v->machine_id, x->m.id))
		return err_set(err, ERR_PRECONDITION, "volume", EINVAL,
			       "volume '%s' is not attached to machine '%s'%s%s%s", v->name,
			       x->m.name, *v->machine ? " (it is attached to '" : "", v->machine,
			       *v->machine ? "')" : "");
	if (v->attach_order == 0)
		return err_set(
			err, ERR_PRECONDITION, "volume", EINVAL,
			"volume '%s' is the root disk of machine '%s': it cannot be detached "
			"(sistemo machine delete %s --preserve-storage keeps it as a volume)",
			v->name, x->m.name, x->m.name);
	if (streq(v->state, "busy"))
		return state_error(v, err);
	if ((r = machine_must_be_stopped(&x->m, "detach", err)) < 0)
		return r;
	return store_volume_set_state(x->d->store, v->id, "online", "", 0, err);
}

static int
attach_detach(struct daemon *d, const char *volume, const char *machine, bool attach,
	      struct volume_info *ret, struct err *err)
{
	struct attach x = {.d = d, .vref = volume, .mref = machine, .v = ret};
	int r;

	if (!*machine)
		return err_set(err, ERR_INVALID, "machine", EINVAL,
			       "a machine name or id is required");
	r = store_volume_tx(d->store, attach ? attach_tx : detach_tx, &x, err);
	if (r < 0)
		return r;
	log_info("volume '%s': %s machine '%s'", ret->name,
		 attach ? "attached to" : "detached from", x.m.name);
	return store_volume_get(d->store, ret->id, ret, err);
}

int
volume_attach(struct daemon *d, const char *volume, const char *machine, struct volume_info *ret,
	      struct err *err)
{
	return attach_detach(d, volume, machine, true, ret, err);
}

int
volume_detach(struct daemon *d, const char *volume, const char *machine, struct volume_info *ret,
	      struct err *err)
{
	return attach_detach(d, volume, machine, false, ret, err);
}

/* ---- deploy ------------------------------------------------------------------------------------
 */

/* One volume a deploy asks for: it exists and is free. */
static int
deploy_volume(struct daemon *d, const char *ref, struct volume_info *v, struct err *err)
{
	int r = get_volume(d, ref, v, err);

	if (r < 0)
		return r;
	return streq(v->state, "online") ? 0 : state_error(v, err);
}

static int
deploy_no_root_named(struct daemon *d, const char *name, struct err *err)
{
	char root[VOLUME_NAME_MAX + 16];
	struct volume_info v;

	snprintf(root, sizeof(root), "%s-root", name);
	if (store_volume_get(d->store, root, &v, NULL) < 0)
		return 0;
	return err_set(err, ERR_EXISTS, "name", EEXIST,
		       "volume '%s' exists (a root disk kept by 'machine delete "
		       "--preserve-storage'?): boot it with --volume %s, delete it, or choose "
		       "another machine name",
		       root, root);
}

/* The deploy's volumes, each checked; ids[] (n_attach + 1 entries: boot last) get their ids. */
static int
deploy_volumes(struct daemon *d, const char *name, const struct volume_deploy *vd, char (*ids)[40],
	       uint64_t *ret_boot_mb, struct err *err)
{
	struct volume_info v;
	bool boot = vd->boot && *vd->boot;
	int r;

	if (vd->n_attach > VOLUME_MAX_ATTACHED)
		return err_set(err, ERR_INVALID, "attach", E2BIG,
			       "at most %d data volumes per machine", VOLUME_MAX_ATTACHED);
	if ((r = boot ? deploy_volume(d, vd->boot, &v, err) : deploy_no_root_named(d, name, err)) <
	    0)
		return r;
	snprintf(ids[vd->n_attach], sizeof(ids[0]), "%s", boot ? v.id : "");
	if (ret_boot_mb)
		*ret_boot_mb = boot ? v.size_mb : 0;
	for (size_t i = 0; i < vd->n_attach; i++) {
		if ((r = deploy_volume(d, vd->attach[i], &v, err)) < 0)
			return r;
		for (size_t k = 0; k <= vd->n_attach; k++)
			if ((k < i || k == vd->n_attach) && streq(ids[k], v.id))
				return err_set(err, ERR_INVALID, "attach", EINVAL,
					       "volume '%s' is given twice", v.name);
		snprintf(ids[i], sizeof(ids[0]), "%s", v.id);
	}
	return 0;
}

int
volume_deploy_check(struct daemon *d, const char *name, const struct volume_deploy *v,
		    uint64_t *ret_boot_mb, struct err *err)
{
	char ids[VOLUME_MAX_ATTACHED + 1][40];

	return deploy_volumes(d, name, v, ids, ret_boot_mb, err);
}

struct deploy_claim {
	struct daemon *d;
	const struct machine_info *m;
	const struct volume_deploy *vd;
};

static int
deploy_claim_tx(void *ud, struct err *err)
{
	struct deploy_claim *x = ud;
	const struct machine_info *m = x->m;
	char ids[VOLUME_MAX_ATTACHED + 1][40], name[VOLUME_NAME_MAX + 16], path[128], id[37];
	size_t n = x->vd->n_attach;
	int r = deploy_volumes(x->d, m->name, x->vd, ids, NULL, err);

	if (r < 0)
		return r;
	if (*ids[n]) {
		r = store_volume_set_state(x->d->store, ids[n], "attached", m->id, 0, err);
		if (r == 0)
			r = store_volume_set_path(x->d->store, ids[n], "", "root", err);
	} else {
		uuid_generate_text(id);
		snprintf(name, sizeof(name), "%s-root", m->name);
		snprintf(path, sizeof(path), "vms/%s/rootfs.ext4", m->id);
		struct volume_rec root = {.id = id,
					  .name = name,
					  .path = path,
					  .role = "root",
					  .state = "attached",
					  .machine_id = m->id,
					  .size_mb = m->storage_mb};
		r = store_volume_add(x->d->store, &root, err);
	}
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = store_volume_set_state(x->d->store, ids[i], "attached", m->id, (unsigned)i + 1,
					   err);
	return r;
}

int
volume_deploy_claim(struct daemon *d, const struct machine_info *m, const struct volume_deploy *v,
		    struct err *err)
{
	struct deploy_claim x = {d, m, v};

	return store_volume_tx(d->store, deploy_claim_tx, &x, err);
}

/* The machine's disk at attach_order 0 (its root disk): -ENOENT when it has none recorded. */
static int
root_of(void *ud, const struct volume_rec *v)
{
	struct volume_info *o = ud;

	if (v->attach_order != 0)
		return 0;
	snprintf(o->id, sizeof(o->id), "%s", v->id);
	snprintf(o->name, sizeof(o->name), "%s", v->name);
	snprintf(o->path, sizeof(o->path), "%s", v->path);
	snprintf(o->state, sizeof(o->state), "%s", v->state);
	return 1;
}

static int
machine_root(struct daemon *d, const struct machine_info *m, struct volume_info *ret,
	     struct err *err)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	if ((r = store_volume_list(d->store, m->id, root_of, ret, err)) < 0)
		return r;
	return ret->id[0] ? 0 : -ENOENT;
}

int
volume_deploy_disk(struct daemon *d, const struct machine_info *m, struct op *op, struct err *err)
{
	struct volume_info root;
	char run_dir[PATH_MAX], file[PATH_MAX], key[1024];
	int r = machine_root(d, m, &root, err);

	if (r == -ENOENT)
		return err_set(err, ERR_INTERNAL, NULL, ENOENT, "machine '%s' has no root volume",
			       m->name);
	if (r < 0 || (r = volume_file(d, &root, file, sizeof(file), err)) < 0)
		return r;
	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	if (mkdir(run_dir, 0700) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", run_dir,
			       strerror(errno));
	if (op)
		op_progress(op, "disk", 50,
			    "injecting the sistemo init and SSH key into volume '%s'", root.name);
	if ((r = ssh_key_public(d->ssh_dir, key, sizeof(key), err)) < 0 ||
	    (r = kit_rootfs_inject(file, key, err)) < 0)
		return err_wrap(err, "volume '%s'", root.name);
	return 0;
}

/* ---- boot ------------------------------------------------------------------------------------ */

struct disks_ctx {
	struct daemon *d;
	struct volume_disks *out;
	struct err *err;
	size_t len;
};

/* A disk a VMM opens: a regular file, not a link to anything else. */
static int
disk_file(struct daemon *d, const struct volume_rec *rec, char *buf, size_t size, struct err *err)
{
	struct volume_info v = {0};
	struct stat st;
	int r;

	snprintf(v.name, sizeof(v.name), "%s", rec->name);
	snprintf(v.path, sizeof(v.path), "%s", rec->path);
	if (!streq(rec->state, "attached")) {
		snprintf(v.state, sizeof(v.state), "%s", rec->state);
		return state_error(&v, err);
	}
	if ((r = volume_file(d, &v, buf, size, err)) < 0)
		return r;
	if (lstat(buf, &st) < 0 || !S_ISREG(st.st_mode))
		return err_set(err, ERR_NOT_FOUND, "volume", ENOENT,
			       "volume '%s': its file '%s' is missing or not a regular file",
			       rec->name, buf);
	return 0;
}

/* Root first; data disks /dev/vdb, /dev/vdc... in attach order, named on the command line. */
static int
disk_one(void *ud, const struct volume_rec *v)
{
	struct disks_ctx *x = ud;
	struct volume_disks *o = x->out;

	if (v->attach_order == 0)
		return disk_file(x->d, v, o->root, sizeof(o->root), x->err);
	if (o->n_data >= VOLUME_MAX_ATTACHED)
		return err_set(x->err, ERR_INVALID, "volume", E2BIG,
			       "more than %d data volumes are attached", VOLUME_MAX_ATTACHED);
	int r = disk_file(x->d, v, o->data[o->n_data], sizeof(o->data[0]), x->err);
	if (r < 0)
		return r;
	o->data_paths[o->n_data] = o->data[o->n_data];
	int n = snprintf(o->cmdline + x->len, sizeof(o->cmdline) - x->len, "%s%s:vd%c",
			 o->n_data ? "," : "sistemo.volumes=", v->name, (char)('b' + o->n_data));
	if (n < 0 || (size_t)n >= sizeof(o->cmdline) - x->len)
		return err_set(x->err, ERR_INVALID, "volume", E2BIG, "volume names too long");
	x->len += (size_t)n;
	o->n_data++;
	return 0;
}

int
volume_machine_disks(struct daemon *d, const struct machine_info *m, struct volume_disks **ret,
		     struct err *err)
{
	cleanup_free struct volume_disks *o = calloc(1, sizeof(*o));
	struct disks_ctx x = {d, o, err, 0};
	int r;

	if (!o)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if ((r = store_volume_list(d->store, m->id, disk_one, &x, err)) < 0)
		return r;
	if (!o->root[0]) {
		char run_dir[PATH_MAX];
		paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
		snprintf(o->root, sizeof(o->root), "%.*s/rootfs.ext4", PATH_MAX - 16, run_dir);
	}
	*ret = TAKE_PTR(o);
	return 0;
}

/* ---- machine delete ------------------------------------------------------------------------ */

/* The run directory's root disk becomes volumes/<id>.ext4 (renamed, never copied); again after
 * an interruption, a file already moved is only recorded. */
static int
keep_root(struct daemon *d, const struct volume_info *root, struct err *err)
{
	struct volume_info moved = *root;
	char from[PATH_MAX], to[PATH_MAX];
	int r;

	snprintf(moved.path, sizeof(moved.path), "volumes/%s.ext4", root->id);
	if ((r = volume_file(d, root, from, sizeof(from), err)) < 0 ||
	    (r = volume_file(d, &moved, to, sizeof(to), err)) < 0)
		return r;
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) < 0) {
		if (errno != ENOENT)
			return err_set(err, ERR_INTERNAL, NULL, errno,
				       "keep root disk '%s' as '%s': %s", from, to,
				       strerror(errno));
		if (access(to, F_OK) < 0) {
			/* never made (a deploy that failed early): its record goes with the machine
			 */
			log_warn("volume '%s': no file to keep (%s)", root->name, from);
			return 0;
		}
	}
	log_info("volume '%s': kept as a volume (%s)", root->name, moved.path);
	return store_volume_set_path(d->store, root->id, moved.path, "root", err);
}

int
volume_machine_release(struct daemon *d, const struct machine_info *m, bool preserve,
		       struct err *err)
{
	struct volume_info root;
	char file[PATH_MAX];
	int r = machine_root(d, m, &root, err);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	bool in_run_dir = has_prefix(root.path, "vms/");
	if (preserve)
		return in_run_dir ? keep_root(d, &root, err) : 0;
	/* the run directory's goes with it, and its record with the machine's */
	if (in_run_dir)
		return 0;
	if ((r = volume_file(d, &root, file, sizeof(file), err)) < 0)
		return r;
	if (unlink(file) < 0 && errno != ENOENT)
		return err_set(err, ERR_INTERNAL, NULL, errno, "remove '%s': %s", file,
			       strerror(errno));
	log_info("volume '%s': deleted with machine '%s'", root.name, m->name);
	return store_volume_remove(d->store, root.id, err);
}

/* ---- daemon start ---------------------------------------------------------------------------- */

static int
busy_to_error(void *ud, const struct volume_rec *v)
{
	struct daemon *d = ud;

	if (!streq(v->state, "busy"))
		return 0;
	log_warn("volume '%s': a create, resize or delete was interrupted by a restart: it is in "
		 "error until resized again or deleted",
		 v->name);
	return store_volume_set_state(d->store, v->id, "error", v->machine_id, v->attach_order,
				      NULL) < 0
		       ? -EIO
		       : 0;
}

int
volume_recover(struct daemon *d, struct err *err)
{
	return store_volume_list(d->store, NULL, busy_to_error, d, err);
}
