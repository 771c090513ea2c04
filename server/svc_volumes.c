/* Volumes service: arrives with volumes and images. */
#include "dispatch.h"
#include "macro.h"
#include "sistemo/v1/volumes.pb-c.h"

#define LATER "volumes and images (issue 5)"

static const struct method volume_methods[] = {
	{"Create", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER},
	{"List", NULL, 0, LATER},
	{"Get", NULL, 0, LATER},
	{"Resize", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER},
	{"Delete", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER},
	{"Attach", NULL, METHOD_MUTATES, LATER},
	{"Detach", NULL, METHOD_MUTATES, LATER},
};

const struct service service_volumes =
	SERVICE(&sistemo__v1__volumes__descriptor, "volume", volume_methods);
