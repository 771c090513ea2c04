/* What a deploy names, resolved to an image file: above the store (image.h), the downloads
 * and the registry (image_fetch.h) and the built-in images (kit.h). */
#pragma once

#include "image.h"

/* What a deploy names, as a file to clone (docs/images.md, resolution order): an absolute path
 * to an ext4 file (used in place; its digest computed), an http(s) URL (downloaded once,
 * cached by URL), a name, tag or digest of the store, a built-in (built on first use), then
 * the registry (pulled). */
int image_resolve(struct daemon *d, const char *ref, const struct image_progress *p,
		  struct image_info *ret, struct err *err);
