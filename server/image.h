/* The image store: ext4 files named by the sha256 of their bytes under
 * <data dir>/images/sha256/, tags ("name:tag") pointing at digests, metadata as JSON in SQLite;
 * and the resolution of what a deploy names (docs/images.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "kit.h"
#include "store.h"
#include "strbuf.h"

struct daemon;

/* Progress and cancellation of a long image step (both may be NULL). */
struct image_progress {
	kit_percent_fn fn;
	bool (*cancelled)(void *ud);
	void *ud;
};

/* Reports through p (may be NULL). */
void image_report(const struct image_progress *p, const char *step, unsigned percent,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* True when p asks to stop; err is then ERR_CANCELLED. */
bool image_cancelled(const struct image_progress *p, struct err *err);

/* "web" -> "web:latest", "web:v2" as it is. Names: [a-z0-9][a-z0-9._-]*, tags
 * [A-Za-z0-9._-]+, each at most 63. ERR_INVALID naming the rule otherwise. */
int image_tag_normalize(const char *ref, char *buf, size_t size, struct err *err);

/* Makes images/sha256 and images/tmp, empties images/tmp (what an interrupted import, pull
 * or build left) and moves built-ins of the old layout (images/tiny.ext4) into the store. */
int image_store_init(struct daemon *d, struct err *err);

/* Creates an empty file in images/tmp (0600); path gets its name. Returns the fd. */
int image_tmp_file(struct daemon *d, const char *what, char *path, size_t size, struct err *err);

/* A new image's record. */
struct image_add {
	const char *source;     /* builtin, registry, url, import, build */
	const char *source_ref; /* the URL, registry name, build input... */
	const char *meta_json;  /* NULL: "{}" */
	const char *tag;        /* "name:tag", or NULL */
	const char *sha256;     /* the expected hex digest, or NULL */
};

/* Adds tmp (a file of images/tmp; it is gone afterwards, success or not) to the store: checks
 * the ext4 magic, hashes it (a mismatch with a->sha256 is ERR_INVALID), renames it to
 * images/sha256/<hex>.ext4 (read-only) and records it. ret (may be NULL) gets the record. */
int image_store_add(struct daemon *d, const char *tmp, const struct image_add *a,
		    struct image_info *ret, struct err *err);

/* Copies the ext4 file path (reflink, else keeping holes) into the store, tagged name
 * ("" or NULL: from the file name). */
int image_import(struct daemon *d, const char *path, const char *name,
		 const struct image_progress *p, struct image_info *ret, struct err *err);

/* An image of the store by name[:tag] or digest (sha256:..., a unique prefix of 8+ digits).
 * ERR_NOT_FOUND naming ref. */
int image_get(struct daemon *d, const char *ref, struct image_info *ret, struct err *err);

/* Removes a tag, or the image when ref is its digest or its last tag: refused while machines
 * were deployed from it (ERR_PRECONDITION naming one). ret gets the image as it was. */
int image_delete(struct daemon *d, const char *ref, struct image_info *ret, struct err *err);

/* The quick check a deploy request gets before anything is created: an absolute path must be
 * an ext4 file, a URL http(s), a name a built-in, in the store, or left to a configured
 * registry. ERR_NOT_FOUND ("unknown image 'x'...") otherwise. */
int image_check_ref(const struct daemon *d, const char *ref, struct err *err);

/* images/<sub> of the data dir into buf. */
void image_store_dir(const struct daemon *d, const char *sub, char *buf, size_t size);

/* True for the names of the built-in images (tiny, debian). */
bool image_is_builtin(const char *name);

/* True when ref is an http:// or https:// URL. */
bool image_is_url(const char *ref);

/* The store's lookup key for ref: digests as they are (sha256: and 8 to 64 lowercase hex
 * digits, else ERR_INVALID), names as name:tag. */
int image_lookup_key(const char *ref, char *buf, size_t size, struct err *err);

/* The sh script /etc/sistemo/entrypoint for an image's metadata (entrypoint + cmd, env,
 * workdir, each word single-quoted) into out: 1, or 0 when the image has no command. */
int image_entrypoint_script(const char *meta_json, struct strbuf *out);

/* sha256 of an open file from offset 0, as hex. */
int image_sha256_fd(int fd, char hex[65]);

/* True when the open file holds an ext2/3/4 superblock (magic 0xEF53 at byte 1080). */
bool image_is_ext4(int fd);
