/* Images service: the built-in images and the kernel build arrive with real machines, the
 * store, registry and builds with volumes and images. */
#include "dispatch.h"
#include "macro.h"
#include "sistemo/v1/images.pb-c.h"

#define LATER_STORE "volumes and images (issue 5)"
#define LATER_KERNEL "real machines (issue 3)"

static const struct method image_methods[] = {
	{"List", NULL, 0, LATER_STORE},
	{"Get", NULL, 0, LATER_STORE},
	{"Pull", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Import", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Build", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_STORE},
	{"Delete", NULL, METHOD_MUTATES, LATER_STORE},
	{"BuildKernel", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_KERNEL},
};

const struct service service_images =
	SERVICE(&sistemo__v1__images__descriptor, "image", image_methods);
