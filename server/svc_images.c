/* Images service: the adapter between the API messages and the image store (image.c), the
 * registry (image_fetch.c), builds (image_build.c) and the kernel build (kit_kernel_build). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "dispatch.h"
#include "image.h"
#include "image_build.h"
#include "image_fetch.h"
#include "kit.h"
#include "macro.h"
#include "ops.h"
#include "pbjson.h"
#include "store.h"
#include "sistemo/v1/images.pb-c.h"

#define KERNEL_KIND "kernel.build"
#define KERNEL_TARGET "bzImage-sistemo"
#define KERNEL_TAG "kernel:sistemo"
#define KERNEL_SOURCE_REF "/usr/src/linux-source-6.1.tar.xz"
#define REF_MAX 4096

/* --- the store's images as messages ----------------------------------------------------- */

/* "a,b,c" into a repeated string field. */
static void
split_list(struct arena *a, const char *list, char ***arr, size_t *n)
{
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		char *item = arena_printf(a, "%.*s", (int)len, p);
		arena_append(a, arr, n, item);
		p += len + (p[len] == ',');
	}
}

/* The metadata's fields (entrypoint, cmd, env, workdir, ssh) into the message. */
static void
meta_to_msg(struct arena *a, const char *json, Sistemo__V1__Image *o)
{
	ProtobufCMessage *msg = NULL;
	struct err err = {0};

	if (pbjson_decode(&sistemo__v1__image_meta__descriptor, json, strlen(json), a, &msg, &err) <
	    0)
		return;
	const Sistemo__V1__ImageMeta *m = (const void *)msg;
	o->entrypoint = m->entrypoint, o->n_entrypoint = m->n_entrypoint;
	o->cmd = m->cmd, o->n_cmd = m->n_cmd;
	o->env = m->env, o->n_env = m->n_env;
	o->workdir = m->workdir;
	o->has_ssh = m->has_ssh;
	o->ssh = m->ssh;
}

static Sistemo__V1__Image *
image_to_msg(struct arena *a, const struct image_info *im)
{
	Sistemo__V1__Image *o = arena_msg(a, &sistemo__v1__image__descriptor);

	o->digest = arena_strdup(a, im->digest);
	split_list(a, im->tags, &o->tags, &o->n_tags);
	o->size_bytes = im->size_bytes;
	o->source = arena_strdup(a, im->source);
	o->source_ref = arena_strdup(a, im->source_ref);
	o->created_unix_ms = im->created_ms;
	split_list(a, im->used_by, &o->used_by, &o->n_used_by);
	o->path = arena_strdup(a, im->path);
	/* built-ins carry OpenSSH (debian) or dropbear (tiny) */
	if (streq(im->source, "builtin"))
		o->has_ssh = true, o->ssh = streq(im->source_ref, "tiny") ? "dropbear" : "openssh";
	meta_to_msg(a, im->meta, o);
	return o;
}

/* Packs the image as the operation's result. */
static void
image_result(struct op *op, const struct image_info *im)
{
	struct arena *a;

	if (arena_new(&a) < 0)
		return;
	Sistemo__V1__Image *msg = image_to_msg(a, im);
	size_t len = protobuf_c_message_get_packed_size(&msg->base);
	uint8_t *buf = arena_alloc(a, len ? len : 1);
	protobuf_c_message_pack(&msg->base, buf);
	op_set_result(op, "sistemo.v1.Image", buf, len);
	arena_free(a);
}

static int
need_ref(const char *ref, struct err *err)
{
	if (!ref || !*ref)
		return err_set(err, ERR_INVALID, "image", EINVAL,
			       "an image name or digest is needed");
	if (strlen(ref) >= REF_MAX)
		return err_set(err, ERR_INVALID, "image", ENAMETOOLONG, "image reference too long");
	return 0;
}

static int
reply_image(struct call *c, const struct image_info *im, ProtobufCMessage **ret)
{
	Sistemo__V1__Image *o = image_to_msg(c->arena, im);

	c->target_name = o->n_tags ? o->tags[0] : o->digest;
	c->target_id = o->digest;
	*ret = &o->base;
	return 0;
}

static int
images_get(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ImageRef *req = (const void *)in;
	cleanup_free struct image_info *im = malloc(sizeof(*im));

	if (!im)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (need_ref(req->image, err) < 0 || image_get(c->d, req->image, im, err) < 0)
		return -EIO;
	return reply_image(c, im, ret);
}

static int
images_delete(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ImageRef *req = (const void *)in;
	cleanup_free struct image_info *im = malloc(sizeof(*im));

	c->target_name = req->image;
	if (!im)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (need_ref(req->image, err) < 0 || image_delete(c->d, req->image, im, err) < 0)
		return -EIO;
	reply_image(c, im, ret);
	c->target_name = req->image;
	return 0;
}

struct list_ctx {
	struct call *c;
	Sistemo__V1__ListImagesReply *o;
};

static int
list_one(void *ud, const struct image_rec *r)
{
	struct list_ctx *x = ud;
	cleanup_free struct image_info *im = calloc(1, sizeof(*im));

	if (!im)
		return -ENOMEM;
	snprintf(im->digest, sizeof(im->digest), "%s", r->digest);
	snprintf(im->source, sizeof(im->source), "%s", r->source);
	snprintf(im->source_ref, sizeof(im->source_ref), "%s", r->source_ref);
	snprintf(im->path, sizeof(im->path), "%s", r->path);
	snprintf(im->meta, sizeof(im->meta), "%s", r->meta);
	snprintf(im->tags, sizeof(im->tags), "%s", r->tags);
	snprintf(im->used_by, sizeof(im->used_by), "%s", r->used_by);
	im->size_bytes = r->size_bytes;
	im->created_ms = r->created_ms;
	Sistemo__V1__Image *m = image_to_msg(x->c->arena, im);
	arena_append(x->c->arena, &x->o->images, &x->o->n_images, m);
	return 0;
}

/* The registry's entries, each marked cached when its digest is in the store. */
static void
list_registry(struct call *c, Sistemo__V1__ListImagesReply *o)
{
	Sistemo__V1__RegistryIndex *idx = NULL;
	struct image_info *im = malloc(sizeof(*im));
	struct err err = {0};

	if (!im || image_registry_index(c->d, c->arena, &idx, NULL, &err) < 0) {
		o->registry_error = arena_strdup(c->arena, im ? err.msg : "out of memory");
		free(im);
		return;
	}
	for (size_t i = 0; i < idx->n_images; i++) {
		const Sistemo__V1__RegistryEntry *e = idx->images[i];
		Sistemo__V1__RegistryImage *r =
			arena_msg(c->arena, &sistemo__v1__registry_image__descriptor);
		r->name = e->name;
		r->tag = *e->tag ? e->tag : "latest";
		r->description = e->description;
		r->size_bytes = e->size;
		r->digest = arena_printf(c->arena, "sha256:%s", e->sha256);
		r->cached = store_image_get(c->d->store, r->digest, im, &err) == 0;
		arena_append(c->arena, &o->registry, &o->n_registry, r);
	}
	free(im);
}

static int
images_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ListImagesRequest *req = (const void *)in;
	Sistemo__V1__ListImagesReply *o =
		arena_msg(c->arena, &sistemo__v1__list_images_reply__descriptor);
	struct list_ctx x = {c, o};

	if (store_image_list(c->d->store, list_one, &x, err) < 0)
		return -EIO;
	if (req->registry)
		list_registry(c, o);
	*ret = &o->base;
	return 0;
}

/* --- operations: pull, import, build ---------------------------------------------------- */

enum image_job_kind { JOB_PULL, JOB_IMPORT, JOB_BUILD };

struct image_job {
	struct daemon *d;
	enum image_job_kind kind;
	char ref[REF_MAX], name[160], release[64];
	char *packages[IMAGE_BUILD_PACKAGES_MAX];
	size_t n_packages;
	enum image_build_source source;
	uint64_t size_mb;
};

static void
job_free(void *ud)
{
	struct image_job *j = ud;

	for (size_t i = 0; i < j->n_packages; i++)
		free(j->packages[i]);
	free(j);
}

static void
job_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	op_progress(ud, step, percent, "%s", message);
}

static bool
job_cancelled(void *ud)
{
	return op_cancelled(ud);
}

static int
job_work(struct op *op, void *ud, struct err *err)
{
	const struct image_job *j = ud;
	struct image_progress p = {job_progress, job_cancelled, op};
	cleanup_free struct image_info *im = malloc(sizeof(*im));
	int r;

	if (!im)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (j->kind == JOB_PULL) {
		r = image_pull(j->d, j->ref, &p, im, err);
	} else if (j->kind == JOB_IMPORT) {
		r = image_import(j->d, j->ref, j->name, &p, im, err);
	} else {
		struct image_build_spec s = {j->name,
					     j->source,
					     j->ref,
					     j->release,
					     (const char *const *)j->packages,
					     j->n_packages,
					     j->size_mb};
		r = image_build(j->d, &s, &p, im, err);
	}
	if (r >= 0) {
		op_progress(op, "done", 100, "%s", im->digest);
		image_result(op, im);
	}
	return r;
}

static int
start_job(struct call *c, struct image_job *j, const char *kind, const char *target,
	  ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__Operation *o = arena_msg(c->arena, &sistemo__v1__operation__descriptor);
	char id[40];

	j->d = c->d;
	c->target_name = arena_strdup(c->arena, target);
	if (ops_start(c->d->ops, kind, target, job_work, j, job_free, id, err) < 0) {
		job_free(j);
		return -EIO;
	}
	o->id = arena_strdup(c->arena, id);
	o->kind = (char *)kind;
	o->target = arena_strdup(c->arena, target);
	o->state = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;
	o->created_unix_ms = store_now_ms();
	*ret = &o->base;
	return 0;
}

static struct image_job *
job_new(enum image_job_kind kind, const char *ref, struct err *err)
{
	struct image_job *j;

	if (need_ref(ref, err) < 0)
		return NULL;
	if (!(j = calloc(1, sizeof(*j)))) {
		err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
		return NULL;
	}
	j->kind = kind;
	snprintf(j->ref, sizeof(j->ref), "%s", ref);
	return j;
}

static int
images_pull(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__PullImageRequest *req = (const void *)in;
	char tag[160];
	struct image_job *j;

	c->target_name = req->image;
	if (need_ref(req->image, err) < 0 ||
	    image_tag_normalize(req->image, tag, sizeof(tag), err) < 0)
		return -EINVAL;
	if (!c->d->cfg.registry_url[0])
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no registry: set registry_url in the config (docs/images.md)");
	if (!(j = job_new(JOB_PULL, tag, err)))
		return -EIO;
	return start_job(c, j, "image.pull", tag, ret, err);
}

static int
images_import(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ImportImageRequest *req = (const void *)in;
	char tag[160];
	struct image_job *j;

	c->target_name = req->path;
	if (*req->name && image_tag_normalize(req->name, tag, sizeof(tag), err) < 0)
		return -EINVAL;
	if (req->path[0] != '/')
		return err_set(err, ERR_INVALID, "path", EINVAL,
			       "'%s': the daemon needs an absolute path", req->path);
	if (!(j = job_new(JOB_IMPORT, req->path, err)))
		return -EIO;
	snprintf(j->name, sizeof(j->name), "%s", req->name);
	return start_job(c, j, "image.import", req->path, ret, err);
}

static int
build_job(const Sistemo__V1__BuildImageRequest *req, struct image_job *j, struct err *err)
{
	struct image_build_spec s = {
		req->name,    (enum image_build_source)req->source, req->from,
		req->release, (const char *const *)req->packages,   req->n_packages,
		req->size_mb};
	int r = image_build_check(&s, err);

	if (r < 0)
		return r;
	snprintf(j->name, sizeof(j->name), "%s", req->name);
	snprintf(j->release, sizeof(j->release), "%s", req->release);
	j->source = s.source;
	j->size_mb = req->size_mb;
	for (size_t i = 0; i < req->n_packages; i++)
		if (!(j->packages[j->n_packages++] = strdup(req->packages[i])))
			return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	return 0;
}

static int
images_build(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__BuildImageRequest *req = (const void *)in;
	struct image_job *j;

	c->target_name = req->name;
	if (!(j = job_new(JOB_BUILD, *req->from ? req->from : "debootstrap", err)))
		return -EIO;
	if (build_job(req, j, err) < 0) {
		job_free(j);
		return -EINVAL;
	}
	return start_job(c, j, "image.build", req->name, ret, err);
}

struct kernel_job {
	char data_dir[PATH_MAX];
	bool force;
};

static void
kernel_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	op_progress(ud, step, percent, "%s", message);
}

static bool
kernel_cancelled(void *ud)
{
	return op_cancelled(ud);
}

/* Packs the installed kernel as the operation's result: an Image tagged kernel:sistemo. */
static void
kernel_result(struct op *op, const struct kit_kernel_built *k)
{
	Sistemo__V1__Image msg = SISTEMO__V1__IMAGE__INIT;
	char digest[80], *tags[] = {KERNEL_TAG};
	uint8_t *buf;

	snprintf(digest, sizeof(digest), "sha256:%s", k->sha256);
	msg.digest = digest;
	msg.n_tags = ARRAY_SIZE(tags);
	msg.tags = tags;
	msg.size_bytes = k->size_bytes;
	msg.source = "build";
	msg.source_ref = KERNEL_SOURCE_REF;
	msg.created_unix_ms = k->mtime_ms;
	size_t len = protobuf_c_message_get_packed_size(&msg.base);
	if (!(buf = malloc(len ? len : 1)))
		return;
	protobuf_c_message_pack(&msg.base, buf);
	op_set_result(op, "sistemo.v1.Image", buf, len);
	free(buf);
}

static int
kernel_work(struct op *op, void *ud, struct err *err)
{
	const struct kernel_job *j = ud;
	struct kit_kernel_built k;
	int r = kit_kernel_build(j->data_dir, j->force, kernel_progress, kernel_cancelled, op, &k,
				 err);

	if (r >= 0)
		kernel_result(op, &k);
	return r;
}

static int
find_running_build(void *ud, const struct op_view *v)
{
	if (!streq(v->kind, KERNEL_KIND))
		return 0;
	snprintf(ud, 40, "%s", v->id);
	return 1;
}

static int
images_build_kernel(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		    struct err *err)
{
	const Sistemo__V1__KernelBuildRequest *req = (const void *)in;
	Sistemo__V1__Operation *o = arena_msg(c->arena, &sistemo__v1__operation__descriptor);
	struct kernel_job *j;
	char id[40] = "";

	c->target_name = KERNEL_TARGET;
	ops_list(c->d->ops, false, find_running_build, id);
	if (id[0])
		return err_set(err, ERR_PRECONDITION, NULL, EBUSY,
			       "a kernel build is already running (operation '%s')", id);
	if (!(j = calloc(1, sizeof(*j))))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	snprintf(j->data_dir, sizeof(j->data_dir), "%s", c->d->paths.data_dir);
	j->force = req->force;
	if (ops_start(c->d->ops, KERNEL_KIND, KERNEL_TARGET, kernel_work, j, free, id, err) < 0) {
		free(j);
		return -EIO;
	}
	o->id = arena_strdup(c->arena, id);
	o->kind = KERNEL_KIND;
	o->target = KERNEL_TARGET;
	o->state = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;
	o->created_unix_ms = store_now_ms();
	*ret = &o->base;
	return 0;
}

static const struct method image_methods[] = {
	{"List", images_list, METHOD_BLOCKS, NULL},
	{"Get", images_get, 0, NULL},
	{"Pull", images_pull, METHOD_MUTATES, NULL},
	{"Import", images_import, METHOD_MUTATES, NULL},
	{"Build", images_build, METHOD_MUTATES, NULL},
	{"Delete", images_delete, METHOD_MUTATES, NULL},
	{"BuildKernel", images_build_kernel, METHOD_MUTATES, NULL},
};

const struct service service_images =
	SERVICE(&sistemo__v1__images__descriptor, "image", image_methods);
