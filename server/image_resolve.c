#include "image_resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "image_fetch.h"
#include "kit.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

/* A local ext4 file, used where it is: only its digest is taken. */
static int
resolve_path(const char *path, const struct image_progress *p, struct image_info *ret,
	     struct err *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char hex[65];
	int r;

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return err_set(err, ERR_NOT_FOUND, "image", ENOENT, "image file '%s' not found",
			       path);
	if (!image_is_ext4(fd))
		return err_set(err, ERR_INVALID, "image", EINVAL,
			       "image file '%s' is not an ext4 filesystem", path);
	image_report(p, "image", 20, "computing the digest of '%s'", path);
	if ((r = image_sha256_fd(fd, hex)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "sha256 of '%s': %s", path,
			       strerror(-r));
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->digest, sizeof(ret->digest), "sha256:%s", hex);
	snprintf(ret->path, sizeof(ret->path), "%s", path);
	snprintf(ret->source, sizeof(ret->source), "path");
	snprintf(ret->meta, sizeof(ret->meta), "{}");
	ret->size_bytes = (uint64_t)st.st_size;
	return 0;
}

/* One build of a built-in at a time: flock on images/.builtin-<name>.lock. */
static int
builtin_lock(struct daemon *d, const char *name, struct err *err)
{
	char rel[64], path[PATH_MAX];

	snprintf(rel, sizeof(rel), "images/.builtin-%s.lock", name);
	paths_join(&d->paths, rel, path, sizeof(path));
	return kit_lock_file(path, 0, err);
}

static int
build_builtin(struct daemon *d, const char *name, const struct image_progress *p,
	      struct image_info *ret, struct err *err)
{
	char tag[80], dir[PATH_MAX], out[PATH_MAX];
	int r;

	snprintf(tag, sizeof(tag), "%s:latest", name);
	cleanup_close int lock = builtin_lock(d, name, err);
	if (lock < 0)
		return lock;
	/* built by another deploy while this one waited */
	if (store_image_get(d->store, tag, ret, err) == 0 && access(ret->path, R_OK) == 0)
		return 0;
	image_store_dir(d, "tmp", dir, sizeof(dir));
	if (kit_path(out, sizeof(out), "%s/builtin-%s.ext4", dir, name) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", dir);
	unlink(out);
	image_report(p, "image", 0, "building the built-in image '%s'", name);
	if ((r = kit_image_build_percent(name, out, p ? p->fn : NULL, p ? p->ud : NULL, err)) < 0)
		return r;
	struct image_add a = {.source = "builtin", .source_ref = name, .tag = tag};
	return image_store_add(d, out, &a, ret, err);
}

int
image_resolve(struct daemon *d, const char *ref, const struct image_progress *p,
	      struct image_info *ret, struct err *err)
{
	char key[160];
	int r;

	if (ref[0] == '/')
		return resolve_path(ref, p, ret, err);
	if (image_is_url(ref))
		return image_fetch_url(d, ref, p, ret, err);
	if ((r = image_lookup_key(ref, key, sizeof(key), err)) < 0)
		return r;
	if ((r = store_image_get(d->store, key, ret, err)) == 0) {
		if (access(ret->path, R_OK) == 0)
			return 0;
		log_warn("image %s: its file '%s' is gone", ret->digest, ret->path);
	} else if (r != -ENOENT) {
		return r;
	}
	if (strchr(ref, ':') == NULL && image_is_builtin(ref))
		return build_builtin(d, ref, p, ret, err);
	if (strncmp(ref, "sha256:", 7) == 0 || !d->cfg.registry_url[0])
		return err_set(err, ERR_NOT_FOUND, "image", ENOENT,
			       "unknown image '%s': not in the store and no registry_url is "
			       "configured",
			       ref);
	return image_pull(d, ref, p, ret, err);
}
