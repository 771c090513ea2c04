#include "image.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <mbedtls/sha256.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"
#include "pbjson.h"
#include "sistemo/v1/images.pb-c.h"

#define NAME_MAX_LEN 63
#define EXT4_MAGIC_OFFSET 1080
#define WORD_MAX 4096

static const char *const builtins[] = {"tiny", "debian"};

void
image_report(const struct image_progress *p, const char *step, unsigned percent, const char *fmt,
	     ...)
{
	char msg[256];
	va_list ap;

	if (!p || !p->fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->fn(p->ud, step, percent > 100 ? 100 : percent, msg);
}

bool
image_cancelled(const struct image_progress *p, struct err *err)
{
	if (!p || !p->cancelled || !p->cancelled(p->ud))
		return false;
	err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	return true;
}

static bool
name_char(char c, bool tag)
{
	return islower((unsigned char)c) || isdigit((unsigned char)c) || c == '.' || c == '_' ||
	       c == '-' || (tag && isupper((unsigned char)c));
}

static bool
word_ok(const char *s, size_t n, bool tag)
{
	if (n == 0 || n > NAME_MAX_LEN || (!tag && !isalnum((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i], tag))
			return false;
	return true;
}

int
image_tag_normalize(const char *ref, char *buf, size_t size, struct err *err)
{
	const char *colon = strchr(ref, ':');
	size_t n = colon ? (size_t)(colon - ref) : strlen(ref);

	if (!word_ok(ref, n, false) || (colon && !word_ok(colon + 1, strlen(colon + 1), true)))
		return err_set(
			err, ERR_INVALID, "image", EINVAL,
			"invalid image name '%.100s': use name[:tag], the name of 1 to 63 "
			"lowercase letters, digits, '.', '_' and '-' (starting with a letter "
			"or digit), the tag of letters, digits, '.', '_' and '-'",
			ref);
	if (kit_path(buf, size, "%.*s:%s", (int)n, ref, colon ? colon + 1 : "latest") < 0)
		return err_set(err, ERR_INVALID, "image", ENAMETOOLONG, "image name too long");
	return 0;
}

void
image_store_dir(const struct daemon *d, const char *sub, char *buf, size_t size)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "images/%s", sub);
	paths_join(&d->paths, rel, buf, size);
}

int
image_tmp_file(struct daemon *d, const char *what, char *path, size_t size, struct err *err)
{
	char dir[PATH_MAX];
	int fd;

	image_store_dir(d, "tmp", dir, sizeof(dir));
	if (kit_path(path, size, "%s/%s-XXXXXX", dir, what) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", path,
			       strerror(errno));
	return fd;
}

int
image_sha256_fd(int fd, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	mbedtls_sha256_context ctx;
	unsigned char buf[1 << 16], sum[32];
	ssize_t n;
	off_t off = 0;
	int r = 0;

	mbedtls_sha256_init(&ctx);
	if (mbedtls_sha256_starts_ret(&ctx, 0) != 0)
		r = -EIO;
	while (r == 0 && (n = pread(fd, buf, sizeof(buf), off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || mbedtls_sha256_update_ret(&ctx, buf, (size_t)n) != 0)
			r = n < 0 ? -errno : -EIO;
		off += n > 0 ? n : 0;
	}
	if (r == 0 && mbedtls_sha256_finish_ret(&ctx, sum) != 0)
		r = -EIO;
	mbedtls_sha256_free(&ctx);
	for (size_t i = 0; r == 0 && i < sizeof(sum); i++) {
		hex[2 * i] = digits[sum[i] >> 4];
		hex[2 * i + 1] = digits[sum[i] & 15];
	}
	hex[64] = '\0';
	return r;
}

bool
image_is_ext4(int fd)
{
	unsigned char m[2];

	return pread(fd, m, sizeof(m), EXT4_MAGIC_OFFSET) == 2 && m[0] == 0x53 && m[1] == 0xef;
}

/* Hashes tmp and moves it to images/sha256/<hex>.ext4; final gets that path. */
static int
store_file(struct daemon *d, const char *tmp, const struct image_add *a, char hex[65], char *final,
	   size_t size, struct err *err)
{
	cleanup_close int fd = open(tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char dir[PATH_MAX];
	int r;

	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", tmp, strerror(errno));
	if (!image_is_ext4(fd))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "not an ext4 filesystem image (no ext2/3/4 superblock magic)");
	if ((r = image_sha256_fd(fd, hex)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "sha256: %s", strerror(-r));
	if (a->sha256 && *a->sha256 && strcasecmp(a->sha256, hex) != 0)
		return err_set(err, ERR_INVALID, "sha256", EBADMSG,
			       "sha256 mismatch: expected %s, got %s", a->sha256, hex);
	image_store_dir(d, "sha256", dir, sizeof(dir));
	if (kit_path(final, size, "%s/%s.ext4", dir, hex) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", dir);
	/* the same bytes may be there already: replacing them changes nothing */
	if (fchmod(fd, 0444) < 0 || rename(tmp, final) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", final, strerror(errno));
	return 0;
}

int
image_store_add(struct daemon *d, const char *tmp, const struct image_add *a,
		struct image_info *ret, struct err *err)
{
	char hex[65], final[PATH_MAX], digest[80];
	struct image_info local;
	struct stat st;
	int r = store_file(d, tmp, a, hex, final, sizeof(final), err);

	unlink(tmp);
	if (r < 0)
		return r;
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	struct image_rec rec = {.digest = digest,
				.source = a->source,
				.source_ref = a->source_ref,
				.path = final,
				.meta = a->meta_json ? a->meta_json : "{}",
				.size_bytes = stat(final, &st) == 0 ? (uint64_t)st.st_size : 0};
	if ((r = store_image_add(d->store, &rec, a->tag, err)) < 0)
		return r;
	log_info("image %s%s%s stored (%s)", digest, a->tag ? " as " : "", a->tag ? a->tag : "",
		 a->source);
	return store_image_get(d->store, digest, ret ? ret : &local, err) < 0
		       ? err_set(err, ERR_INTERNAL, NULL, EIO, "image %s vanished", digest)
		       : 0;
}

/* Old layout: images/<builtin>.ext4 moves into the store. */
static void
adopt_builtins(struct daemon *d)
{
	char rel[64], path[PATH_MAX], tmp[PATH_MAX], tag[80];
	struct err err = {0};

	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++) {
		snprintf(rel, sizeof(rel), "images/%s.ext4", builtins[i]);
		paths_join(&d->paths, rel, path, sizeof(path));
		cleanup_close int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		int t = image_tmp_file(d, builtins[i], tmp, sizeof(tmp), &err);
		if (t >= 0)
			close(t);
		snprintf(tag, sizeof(tag), "%s:latest", builtins[i]);
		struct image_add a = {.source = "builtin", .source_ref = builtins[i], .tag = tag};
		if (t < 0 || rename(path, tmp) < 0 || image_store_add(d, tmp, &a, NULL, &err) < 0)
			log_warn("image store: adopt '%s': %s", path,
				 err.msg[0] ? err.msg : strerror(errno));
		err_clear(&err);
	}
}

int
image_store_init(struct daemon *d, struct err *err)
{
	static const char *const subs[] = {"sha256", "tmp", "downloads"};
	char dir[PATH_MAX];
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		image_store_dir(d, subs[i], dir, sizeof(dir));
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return err_set(err, ERR_INTERNAL, NULL, errno, "mkdir '%s': %s", dir,
				       strerror(errno));
	}
	image_store_dir(d, "tmp", dir, sizeof(dir));
	if ((r = kit_tree_remove(dir)) < 0 || mkdir(dir, 0700) < 0)
		return err_set(err, ERR_INTERNAL, NULL, r < 0 ? -r : errno, "empty '%s': %s", dir,
			       strerror(r < 0 ? -r : errno));
	adopt_builtins(d);
	return 0;
}

bool
image_is_builtin(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
		if (streq(name, builtins[i]))
			return true;
	return false;
}

int
image_lookup_key(const char *ref, char *buf, size_t size, struct err *err)
{
	if (strncmp(ref, "sha256:", 7) == 0) {
		size_t n = strlen(ref + 7);
		if (n < 8 || n > 64 || strspn(ref + 7, "0123456789abcdef") != n)
			return err_set(err, ERR_INVALID, "image", EINVAL,
				       "invalid digest '%.80s': sha256: and 8 to 64 lowercase hex "
				       "digits",
				       ref);
		return kit_path(buf, size, "%s", ref);
	}
	return image_tag_normalize(ref, buf, size, err);
}

int
image_get(struct daemon *d, const char *ref, struct image_info *ret, struct err *err)
{
	char key[160];
	int r = image_lookup_key(ref, key, sizeof(key), err);

	if (r < 0)
		return r;
	if ((r = store_image_get(d->store, key, ret, err)) == -ENOENT)
		return err_set(err, ERR_NOT_FOUND, "image", ENOENT,
			       "image '%s' not found (sistemo image list shows them)", ref);
	return r;
}

int
image_delete(struct daemon *d, const char *ref, struct image_info *ret, struct err *err)
{
	char key[160];
	bool gone = false;
	int r = image_get(d, ref, ret, err);

	if (r < 0)
		return r;
	image_lookup_key(ref, key, sizeof(key), err);
	if ((r = store_image_remove(d->store, ret, strncmp(key, "sha256:", 7) ? key : NULL, &gone,
				    err)) < 0)
		return r;
	if (gone && unlink(ret->path) < 0 && errno != ENOENT)
		log_warn("image %s: remove '%s': %s", ret->digest, ret->path, strerror(errno));
	log_info("image '%s' %s", ref, gone ? "deleted" : "untagged");
	return 0;
}

static void
name_from_file(const char *path, char *buf, size_t size)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t o = 0;

	for (size_t i = 0; base[i] && base[i] != '.' && o + 1 < size && o < NAME_MAX_LEN; i++)
		buf[o++] = isalnum((unsigned char)base[i]) ? (char)tolower((unsigned char)base[i])
							   : '-';
	buf[o] = '\0';
	if (!o || !isalnum((unsigned char)buf[0]))
		snprintf(buf, size, "imported");
}

static int
copy_in(int src, int dst)
{
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	return kit_tree_copy_sparse(src, dst);
}

int
image_import(struct daemon *d, const char *path, const char *name, const struct image_progress *p,
	     struct image_info *ret, struct err *err)
{
	char tag[160], base[NAME_MAX_LEN + 1], tmp[PATH_MAX];
	struct stat st;
	int r;

	if (!name || !*name)
		name_from_file(path, base, sizeof(base));
	if ((r = image_tag_normalize(name && *name ? name : base, tag, sizeof(tag), err)) < 0)
		return r;
	cleanup_close int src = path[0] == '/' ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (path[0] != '/' || src < 0 || fstat(src, &st) < 0 || !S_ISREG(st.st_mode))
		return err_set(err, ERR_NOT_FOUND, "path", ENOENT,
			       "'%s': not an absolute path to a regular file", path);
	if (!image_is_ext4(src))
		return err_set(err, ERR_INVALID, "path", EINVAL,
			       "'%s' is not an ext4 filesystem image", path);
	image_report(p, "copy", 10, "copying '%s' into the store", path);
	cleanup_close int fd = image_tmp_file(d, "import", tmp, sizeof(tmp), err);
	if (fd < 0)
		return fd;
	if ((r = copy_in(src, fd)) < 0) {
		unlink(tmp);
		return err_set(err, ERR_INTERNAL, NULL, -r, "copy '%s': %s", path, strerror(-r));
	}
	image_report(p, "digest", 60, "computing the sha256 digest");
	struct image_add a = {.source = "import", .source_ref = path, .tag = tag};
	return image_store_add(d, tmp, &a, ret, err);
}

/* ---- resolution ------------------------------------------------------------------------ */

bool
image_is_url(const char *ref)
{
	return strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0;
}

int
image_check_ref(const struct daemon *d, const char *ref, struct err *err)
{
	struct image_info *im;
	char key[160];
	struct err probe = {0};
	int r;

	if (ref[0] == '/') {
		cleanup_close int fd = open(ref, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
			return err_set(err, ERR_NOT_FOUND, "image", ENOENT,
				       "image file '%s' not found", ref);
		return image_is_ext4(fd)
			       ? 0
			       : err_set(err, ERR_INVALID, "image", EINVAL,
					 "image file '%s' is not an ext4 filesystem", ref);
	}
	if (image_is_url(ref) || image_is_builtin(ref) || d->cfg.registry_url[0])
		return image_lookup_key(image_is_url(ref) ? "url" : ref, key, sizeof(key), err) < 0
			       ? -EINVAL
			       : 0;
	if (image_lookup_key(ref, key, sizeof(key), &probe) == 0 && (im = malloc(sizeof(*im)))) {
		r = store_image_get(d->store, key, im, &probe);
		free(im);
		if (r == 0)
			return 0;
	}
	return err_set(err, ERR_NOT_FOUND, "image", ENOENT,
		       "unknown image '%s': not a built-in (tiny, debian), not in the store "
		       "(sistemo image list), and no registry_url is configured; or give an "
		       "absolute path to an ext4 file or an http(s) URL",
		       ref);
}

/* ---- the entrypoint script ---------------------------------------------------------------- */

/* Appends s single-quoted for sh: ' becomes '\''. */
static int
quote(struct strbuf *out, const char *s)
{
	int r = strbuf_append(out, "'", 1);

	for (const char *q = s; r == 0 && *q; q++)
		r = *q == '\'' ? strbuf_append(out, "'\\''", 4) : strbuf_append(out, q, 1);
	return r == 0 ? strbuf_append(out, "'", 1) : r;
}

static int
script_words(struct strbuf *out, const char *prefix, char **words, size_t n)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++) {
		if (strlen(words[i]) > WORD_MAX || strchr(words[i], '\n'))
			continue;
		r = strbuf_append(out, prefix, strlen(prefix));
		if (r == 0)
			r = quote(out, words[i]);
	}
	return r;
}

static int
script_body(const Sistemo__V1__ImageMeta *m, struct strbuf *out)
{
	static const char head[] =
		"#!/bin/sh\n"
		"# Written by sistemo at deploy from the image's OCI config (docs/images.md):\n"
		"# /sbin/sistemo-init runs it once the machine is ready.";
	const char *dir = m->workdir && *m->workdir ? m->workdir : "/";
	int r = strbuf_printf(out, "%s", head);

	if (r == 0)
		r = script_words(out, "\nexport ", m->env, m->n_env);
	if (r == 0)
		r = strbuf_printf(out, "\ncd ");
	if (r == 0)
		r = quote(out, dir);
	if (r == 0)
		r = strbuf_printf(out, " || exit 1\nexec");
	if (r == 0)
		r = script_words(out, " ", m->entrypoint, m->n_entrypoint);
	if (r == 0)
		r = script_words(out, " ", m->cmd, m->n_cmd);
	return r == 0 ? strbuf_printf(out, "\n") : r;
}

int
image_entrypoint_script(const char *meta_json, struct strbuf *out)
{
	struct arena *a;
	ProtobufCMessage *msg = NULL;
	struct err err = {0};
	int r;

	if (!meta_json || !*meta_json || arena_new(&a) < 0)
		return 0;
	r = pbjson_decode(&sistemo__v1__image_meta__descriptor, meta_json, strlen(meta_json), a,
			  &msg, &err);
	const Sistemo__V1__ImageMeta *m = (const void *)msg;
	if (r == 0 && (m->n_entrypoint || m->n_cmd))
		r = script_body(m, out) < 0 ? -ENOMEM : 1;
	else
		r = 0;
	arena_free(a);
	return r;
}
