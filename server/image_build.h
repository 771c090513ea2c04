/* Image builds (`sistemo image build`): a root tree, a rootfs tarball, a docker-save/OCI
 * archive or a Debian release made into a staging tree (never written through a link of it),
 * given an SSH server when it has none, then an ext4 file (mkfs.ext4 -d) in the store with the
 * OCI config as its metadata (docs/images.md). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"

struct daemon;

enum image_build_source {
	IMAGE_BUILD_AUTO, /* from the path: a directory, an OCI archive or a tarball */
	IMAGE_BUILD_DIR,
	IMAGE_BUILD_TARBALL,
	IMAGE_BUILD_OCI,
	IMAGE_BUILD_DEBIAN,
};

#define IMAGE_BUILD_PACKAGES_MAX 64

struct image_build_spec {
	const char *name; /* name[:tag] */
	enum image_build_source source;
	const char *from;    /* absolute host path for DIR, TARBALL, OCI */
	const char *release; /* Debian suite, "" for bookworm */
	const char *const *packages;
	size_t n_packages;
	uint64_t size_mb; /* 0: the tree plus headroom */
};

/* The checks a build request gets before its operation starts: the name, the source path
 * (absolute, existing), release and package names (Debian's syntax). */
int image_build_check(const struct image_build_spec *s, struct err *err);

/* Builds the image in <data dir>/images/tmp and adds it to the store tagged s->name (source
 * 'build'); the staging tree is removed whatever happens. */
int image_build(struct daemon *d, const struct image_build_spec *s, const struct image_progress *p,
		struct image_info *ret, struct err *err);
