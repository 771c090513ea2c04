/* The store's images and their tags, and the image a machine was deployed from. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "store_impl.h"

struct image_cb {
	int (*fn)(void *ud, const struct image_rec *im);
	void *ud;
};

static int
image_row(sqlite3_stmt *st, void *ud)
{
	struct image_cb *cb = ud;
	struct image_rec im = {
		.digest = col_text(st, 0),
		.size_bytes = (uint64_t)sqlite3_column_int64(st, 1),
		.source = col_text(st, 2),
		.source_ref = col_text(st, 3),
		.path = col_text(st, 4),
		.meta = col_text(st, 5),
		.created_ms = sqlite3_column_int64(st, 6),
		.tags = col_text(st, 7),
		.used_by = col_text(st, 8),
	};
	return cb->fn(cb->ud, &im);
}

/* Tags and the machines using each image, comma-separated, sorted. */
#define IMAGE_SELECT                                                                               \
	"SELECT i.digest, i.size_bytes, i.source, i.source_ref, i.path, i.meta, i.created_ms, "    \
	"  coalesce((SELECT group_concat(tag, ',') FROM (SELECT tag FROM image_tag t "             \
	"    WHERE t.digest = i.digest ORDER BY tag)), ''), "                                      \
	"  coalesce((SELECT group_concat(name, ',') FROM (SELECT name FROM machine m "             \
	"    WHERE m.image_digest = i.digest ORDER BY name)), '') "                                \
	"FROM image i "

int
store_image_list(struct store *s, int (*fn)(void *ud, const struct image_rec *im), void *ud,
		 struct err *err)
{
	struct image_cb cb = {fn, ud};

	return query(s, "list images", IMAGE_SELECT "ORDER BY i.created_ms DESC, i.digest", NULL, 0,
		     image_row, &cb, err);
}

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

static int
image_copy(void *ud, const struct image_rec *im)
{
	struct image_info *o = ud;

	COPY(o->digest, im->digest);
	COPY(o->source, im->source);
	COPY(o->source_ref, im->source_ref);
	COPY(o->path, im->path);
	COPY(o->meta, im->meta);
	COPY(o->tags, im->tags);
	COPY(o->used_by, im->used_by);
	o->size_bytes = im->size_bytes;
	o->created_ms = im->created_ms;
	return 1;
}

/* One image: by tag, by full digest or by a digest prefix that only one image has. */
int
store_image_get(struct store *s, const char *ref, struct image_info *ret, struct err *err)
{
	const struct bind b[] = {TEXT(ref)};
	struct image_cb cb = {image_copy, ret};
	unsigned n = 0;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = query(s, "find image",
		  IMAGE_SELECT "WHERE i.digest = (SELECT digest FROM image_tag WHERE tag = ?1) "
			       "OR i.digest = ?1",
		  b, ARRAY_SIZE(b), image_row, &cb, err);
	if (r < 0 || ret->digest[0] || strncmp(ref, "sha256:", 7) != 0 || strlen(ref) < 7 + 8)
		return r < 0 ? r : ret->digest[0] ? 0 : -ENOENT;
	r = query(s, "find image",
		  "SELECT count(*) FROM image WHERE substr(digest, 1, length(?1)) = ?1", b,
		  ARRAY_SIZE(b), row_count, &n, err);
	if (r < 0 || n != 1)
		return r < 0 ? r : -ENOENT;
	return query(s, "find image", IMAGE_SELECT "WHERE substr(i.digest, 1, length(?1)) = ?1", b,
		     ARRAY_SIZE(b), image_row, &cb, err);
}

int
store_image_find_url(struct store *s, const char *url, struct image_info *ret, struct err *err)
{
	const struct bind b[] = {TEXT(url)};
	struct image_cb cb = {image_copy, ret};

	memset(ret, 0, sizeof(*ret));
	int r = query(s, "find image",
		      IMAGE_SELECT "WHERE i.digest = (SELECT digest FROM image_url WHERE url = ?1)",
		      b, ARRAY_SIZE(b), image_row, &cb, err);
	return r < 0 ? r : ret->digest[0] ? 0 : -ENOENT;
}

int
store_image_set_url(struct store *s, const char *url, const char *digest, struct err *err)
{
	const struct bind b[] = {TEXT(url), TEXT(digest), INT(store_now_ms())};

	return query(s, "record image URL",
		     "INSERT INTO image_url (url, digest, fetched_ms) VALUES (?1, ?2, ?3) "
		     "ON CONFLICT (url) DO UPDATE SET digest = excluded.digest, "
		     "fetched_ms = excluded.fetched_ms",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}

int
store_image_add(struct store *s, const struct image_rec *im, const char *tag, struct err *err)
{
	const struct bind b[] = {TEXT(im->digest),   INT((int64_t)im->size_bytes),
				 TEXT(im->source),   TEXT(im->source_ref),
				 TEXT(im->path),     TEXT(im->meta),
				 INT(store_now_ms())};
	const struct bind t[] = {TEXT(tag), TEXT(im->digest)};
	int r;

	pthread_mutex_lock(&s->lock);
	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) < 0)
		goto out;
	/* the same bytes again (a second pull, an import of a file already there) keep their
	 * first record */
	r = query_locked(s, "record image",
			 "INSERT INTO image (digest, size_bytes, source, source_ref, path, meta, "
			 "created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
			 "ON CONFLICT (digest) DO NOTHING",
			 b, ARRAY_SIZE(b), NULL, NULL, err);
	if (r >= 0 && tag && *tag)
		r = query_locked(s, "tag image",
				 "INSERT INTO image_tag (tag, digest) VALUES (?1, ?2) "
				 "ON CONFLICT (tag) DO UPDATE SET digest = excluded.digest",
				 t, ARRAY_SIZE(t), NULL, NULL, err);
	if (r >= 0)
		r = exec_locked(s, "COMMIT", err);
	if (r < 0)
		exec_locked(s, "ROLLBACK", NULL);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int
first_name(sqlite3_stmt *st, void *ud)
{
	snprintf(ud, 64, "%s", col_text(st, 0));
	return 1;
}

/* The first machine (by name) deployed from digest into buf (64 bytes), "" when none. */
static int
user_locked(struct store *s, const char *digest, char *buf, unsigned *ret_n, struct err *err)
{
	const struct bind b[] = {TEXT(digest)};
	int r;

	buf[0] = '\0';
	*ret_n = 0;
	r = query_locked(s, "find image users",
			 "SELECT name FROM machine WHERE image_digest = ?1 ORDER BY name LIMIT 1",
			 b, ARRAY_SIZE(b), first_name, buf, err);
	return r < 0 ? r
		     : query_locked(s, "count image users",
				    "SELECT count(*) FROM machine WHERE image_digest = ?1", b,
				    ARRAY_SIZE(b), row_count, ret_n, err);
}

static int
remove_locked(struct store *s, const struct image_info *im, const char *tag, bool *ret_gone,
	      struct err *err)
{
	const struct bind d[] = {TEXT(im->digest)}, t[] = {TEXT(tag)};
	unsigned tags = 0, users = 0;
	char user[64];
	int r = query_locked(s, "count tags", "SELECT count(*) FROM image_tag WHERE digest = ?1", d,
			     ARRAY_SIZE(d), row_count, &tags, err);

	*ret_gone = !tag || tags <= 1;
	if (r >= 0 && *ret_gone && (r = user_locked(s, im->digest, user, &users, err)) >= 0 &&
	    users > 0)
		return err_set(err, ERR_PRECONDITION, "image", EBUSY,
			       "image '%s' is used by %u machine%s ('%s'): delete %s first",
			       tag ? tag : im->digest, users, users == 1 ? "" : "s", user,
			       users == 1 ? "it" : "them");
	if (r >= 0 && !*ret_gone)
		return query_locked(s, "untag image", "DELETE FROM image_tag WHERE tag = ?1", t,
				    ARRAY_SIZE(t), NULL, NULL, err);
	return r < 0 ? r
		     : query_locked(s, "delete image", "DELETE FROM image WHERE digest = ?1", d,
				    ARRAY_SIZE(d), NULL, NULL, err);
}

int
store_image_remove(struct store *s, const struct image_info *im, const char *tag, bool *ret_gone,
		   struct err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) >= 0) {
		r = remove_locked(s, im, tag, ret_gone, err);
		if (r >= 0)
			r = exec_locked(s, "COMMIT", err);
		if (r < 0)
			exec_locked(s, "ROLLBACK", NULL);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_machine_set_image_digest(struct store *s, const char *id, const char *digest, struct err *err)
{
	const struct bind b[] = {TEXT(id), TEXT(digest)};

	return query(s, "update machine", "UPDATE machine SET image_digest = ?2 WHERE id = ?1", b,
		     ARRAY_SIZE(b), NULL, NULL, err);
}
