/* Volumes service: the adapter between the API messages and volume.c. */
#include "svc_volumes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "store.h"
#include "volume.h"
#include "sistemo/v1/volumes.pb-c.h"

#define MIB (1ull << 20)

static Sistemo__V1__VolumeState
state_from_text(const char *s)
{
	if (streq(s, "online"))
		return SISTEMO__V1__VOLUME_STATE__VOLUME_STATE_ONLINE;
	if (streq(s, "attached"))
		return SISTEMO__V1__VOLUME_STATE__VOLUME_STATE_ATTACHED;
	if (streq(s, "busy"))
		return SISTEMO__V1__VOLUME_STATE__VOLUME_STATE_BUSY;
	if (streq(s, "error"))
		return SISTEMO__V1__VOLUME_STATE__VOLUME_STATE_ERROR;
	return SISTEMO__V1__VOLUME_STATE__VOLUME_STATE_UNSPECIFIED;
}

/* The message, with the bytes in use from the file's ext4 superblock (0 when unreadable). */
static Sistemo__V1__Volume *
volume_to_msg(struct daemon *d, struct arena *a, const struct volume_rec *v)
{
	Sistemo__V1__Volume *o = arena_msg(a, &sistemo__v1__volume__descriptor);
	struct volume_info vi = {0};
	struct volume_usage u;
	char file[PATH_MAX];

	snprintf(vi.name, sizeof(vi.name), "%s", v->name);
	snprintf(vi.path, sizeof(vi.path), "%s", v->path);
	if (volume_file(d, &vi, file, sizeof(file), NULL) < 0)
		file[0] = '\0';
	o->id = arena_strdup(a, v->id);
	o->name = arena_strdup(a, v->name);
	o->size_mb = v->size_mb;
	if (*file && volume_ext4_usage(file, &u) == 0)
		o->used_mb = (u.used_bytes + MIB - 1) / MIB;
	o->role = arena_strdup(a, v->role);
	o->state = state_from_text(v->state);
	o->machine = arena_strdup(a, v->machine);
	o->machine_id = arena_strdup(a, v->machine_id);
	o->path = arena_strdup(a, file);
	o->created_unix_ms = v->created_ms;
	o->state_changed_unix_ms = v->state_changed_ms;
	return o;
}

static int
reply_volume(struct call *c, const struct volume_info *v, ProtobufCMessage **ret)
{
	const struct volume_rec r = {
		.id = v->id,
		.name = v->name,
		.path = v->path,
		.role = v->role,
		.state = v->state,
		.machine_id = v->machine_id,
		.machine = v->machine,
		.machine_state = v->machine_state,
		.attach_order = v->attach_order,
		.size_mb = v->size_mb,
		.created_ms = v->created_ms,
		.state_changed_ms = v->state_changed_ms,
	};
	Sistemo__V1__Volume *o = volume_to_msg(c->d, c->arena, &r);

	c->target_id = o->id;
	c->target_name = o->name;
	*ret = &o->base;
	return 0;
}

static int
volumes_create(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__CreateVolumeRequest *req = (const void *)in;
	struct volume_info v;

	c->target_name = arena_strdup(c->arena, req->name);
	if (volume_create(c->d, req->name, req->size_mb, &v, err) < 0)
		return -EIO;
	return reply_volume(c, &v, ret);
}

struct list_ctx {
	struct call *c;
	Sistemo__V1__ListVolumesReply *out;
};

static int
list_one(void *ud, const struct volume_rec *v)
{
	struct list_ctx *x = ud;

	arena_append(x->c->arena, &x->out->volumes, &x->out->n_volumes,
		     volume_to_msg(x->c->d, x->c->arena, v));
	return 0;
}

static int
volumes_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__ListVolumesReply *out =
		arena_msg(c->arena, &sistemo__v1__list_volumes_reply__descriptor);
	struct list_ctx x = {c, out};

	(void)in;
	if (store_volume_list(c->d->store, NULL, list_one, &x, err) < 0)
		return -EIO;
	*ret = &out->base;
	return 0;
}

static int
volumes_get(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__VolumeRef *req = (const void *)in;
	struct volume_info v;

	if (!*req->volume)
		return err_set(err, ERR_INVALID, "volume", EINVAL,
			       "a volume name or id is required");
	if (store_volume_get(c->d->store, req->volume, &v, err) < 0)
		return -EIO;
	return reply_volume(c, &v, ret);
}

static int
volumes_resize(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ResizeVolumeRequest *req = (const void *)in;
	struct volume_info v;

	c->target_name = arena_strdup(c->arena, req->volume);
	if (volume_resize(c->d, req->volume, req->size_mb, &v, err) < 0)
		return -EIO;
	return reply_volume(c, &v, ret);
}

static int
volumes_delete(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__VolumeRef *req = (const void *)in;
	struct volume_info v;

	c->target_name = arena_strdup(c->arena, req->volume);
	if (volume_delete(c->d, req->volume, &v, err) < 0)
		return -EIO;
	return reply_volume(c, &v, ret);
}

static int
attach_detach(struct call *c, const ProtobufCMessage *in, bool attach, ProtobufCMessage **ret,
	      struct err *err)
{
	const Sistemo__V1__AttachRequest *req = (const void *)in;
	struct volume_info v;
	int r;

	c->target_name = arena_strdup(c->arena, req->volume);
	r = attach ? volume_attach(c->d, req->volume, req->machine, &v, err)
		   : volume_detach(c->d, req->volume, req->machine, &v, err);
	return r < 0 ? -EIO : reply_volume(c, &v, ret);
}

static int
volumes_attach(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	return attach_detach(c, in, true, ret, err);
}

static int
volumes_detach(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	return attach_detach(c, in, false, ret, err);
}

struct machine_ctx {
	struct arena *a;
	Sistemo__V1__Machine *msg;
};

static int
attached_one(void *ud, const struct volume_rec *v)
{
	struct machine_ctx *x = ud;
	Sistemo__V1__AttachedVolume *o = arena_msg(x->a, &sistemo__v1__attached_volume__descriptor);

	o->id = arena_strdup(x->a, v->id);
	o->name = arena_strdup(x->a, v->name);
	o->role = v->attach_order ? "data" : "root";
	o->size_mb = v->size_mb;
	o->guest_path = v->attach_order ? arena_printf(x->a, "/mnt/%s", v->name) : "/";
	arena_append(x->a, &x->msg->volumes, &x->msg->n_volumes, o);
	return 0;
}

int
machine_volumes_to_msg(struct daemon *d, struct arena *a, Sistemo__V1__Machine *msg,
		       struct err *err)
{
	struct machine_ctx x = {a, msg};

	return store_volume_list(d->store, msg->id, attached_one, &x, err);
}

/* Create, resize and delete run mkfs.ext4, resize2fs and e2fsck: off the NNG callbacks. */
static const struct method volume_methods[] = {
	{"Create", volumes_create, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"List", volumes_list, METHOD_BLOCKS, NULL},
	{"Get", volumes_get, 0, NULL},
	{"Resize", volumes_resize, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Delete", volumes_delete, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Attach", volumes_attach, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Detach", volumes_detach, METHOD_MUTATES | METHOD_BLOCKS, NULL},
};

const struct service service_volumes =
	SERVICE(&sistemo__v1__volumes__descriptor, "volume", volume_methods);
