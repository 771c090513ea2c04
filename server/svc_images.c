/* Images service: the kernel build (an operation around kit_kernel_build); the built-in images
 * arrive with real machines, the store, registry and builds with volumes and images. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "dispatch.h"
#include "kit.h"
#include "macro.h"
#include "ops.h"
#include "store.h"
#include "sistemo/v1/images.pb-c.h"

#define LATER_STORE "volumes and images (issue 5)"
#define KERNEL_KIND "kernel.build"
#define KERNEL_TARGET "bzImage-sistemo"
#define KERNEL_TAG "kernel:sistemo"
#define KERNEL_SOURCE_REF "/usr/src/linux-source-6.1.tar.xz"

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
	{"List", NULL, 0, LATER_STORE},
	{"Get", NULL, 0, LATER_STORE},
	{"Pull", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Import", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Build", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Delete", NULL, METHOD_MUTATES, LATER_STORE},
	{"BuildKernel", images_build_kernel, METHOD_MUTATES, NULL},
};

const struct service service_images =
	SERVICE(&sistemo__v1__images__descriptor, "image", image_methods);
