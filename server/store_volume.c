/* The store's volumes (store_volume.h). */
#include "store_volume.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "store_impl.h"

struct volume_cb {
	int (*fn)(void *ud, const struct volume_rec *v);
	void *ud;
};

static int
volume_row(sqlite3_stmt *st, void *ud)
{
	struct volume_cb *cb = ud;
	struct volume_rec v = {
		.id = col_text(st, 0),
		.name = col_text(st, 1),
		.size_mb = (uint64_t)sqlite3_column_int64(st, 2),
		.path = col_text(st, 3),
		.role = col_text(st, 4),
		.state = col_text(st, 5),
		.machine_id = col_text(st, 6),
		.machine = col_text(st, 7),
		.machine_state = col_text(st, 8),
		.attach_order = (unsigned)sqlite3_column_int(st, 9),
		.created_ms = sqlite3_column_int64(st, 10),
		.state_changed_ms = sqlite3_column_int64(st, 11),
	};
	return cb->fn(cb->ud, &v);
}

#define VOLUME_SELECT                                                                              \
	"SELECT v.id, v.name, v.size_mb, v.path, v.role, v.state, coalesce(v.machine_id, ''), "    \
	"  coalesce(m.name, ''), coalesce(m.state, ''), v.attach_order, v.created_ms, "            \
	"  v.state_changed_ms "                                                                    \
	"FROM volume v LEFT JOIN machine m ON m.id = v.machine_id "

int
store_volume_list(struct store *s, const char *machine_id,
		  int (*fn)(void *ud, const struct volume_rec *v), void *ud, struct err *err)
{
	const struct bind b[] = {TEXT(machine_id)};
	struct volume_cb cb = {fn, ud};

	if (!machine_id)
		return query(s, "list volumes", VOLUME_SELECT "ORDER BY v.name", NULL, 0,
			     volume_row, &cb, err);
	return query(s, "list volumes",
		     VOLUME_SELECT "WHERE v.machine_id = ?1 ORDER BY v.attach_order, v.name", b,
		     ARRAY_SIZE(b), volume_row, &cb, err);
}

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

static int
volume_copy(void *ud, const struct volume_rec *v)
{
	struct volume_info *o = ud;

	COPY(o->id, v->id);
	COPY(o->name, v->name);
	COPY(o->path, v->path);
	COPY(o->role, v->role);
	COPY(o->state, v->state);
	COPY(o->machine_id, v->machine_id);
	COPY(o->machine, v->machine);
	COPY(o->machine_state, v->machine_state);
	o->attach_order = v->attach_order;
	o->size_mb = v->size_mb;
	o->created_ms = v->created_ms;
	o->state_changed_ms = v->state_changed_ms;
	return 1;
}

int
store_volume_get(struct store *s, const char *ref_in, struct volume_info *ret, struct err *err)
{
	char ref[256]; /* ref may point into ret */
	const struct bind b[] = {TEXT(ref)};
	struct volume_cb cb = {volume_copy, ret};

	snprintf(ref, sizeof(ref), "%s", ref_in);
	memset(ret, 0, sizeof(*ret));
	int r = query(s, "find volume", VOLUME_SELECT "WHERE v.id = ?1 OR v.name = ?1", b,
		      ARRAY_SIZE(b), volume_row, &cb, err);
	if (r < 0)
		return r;
	if (!ret->id[0])
		return err_set(err, ERR_NOT_FOUND, "volume", ENOENT,
			       "volume '%s' not found (sistemo volume list shows them)", ref);
	return 0;
}

int
store_volume_add(struct store *s, const struct volume_rec *v, struct err *err)
{
	int64_t now = store_now_ms();
	const struct bind b[] = {
		TEXT(v->id),         TEXT(v->name),        INT((int64_t)v->size_mb),
		TEXT(v->path),       TEXT(v->role),        TEXT(v->state),
		TEXT(v->machine_id), INT(v->attach_order), INT(now)};
	int r = query(s, "record volume",
		      "INSERT INTO volume (id, name, size_mb, path, role, state, machine_id, "
		      "attach_order, created_ms, state_changed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
		      "nullif(?7, ''), ?8, ?9, ?9)",
		      b, ARRAY_SIZE(b), NULL, NULL, err);

	if (r < 0 && err->code == ERR_EXISTS && strstr(err->msg, "volume.name")) {
		err_clear(err);
		return err_set(err, ERR_EXISTS, "name", EEXIST,
			       "a volume named '%s' already exists", v->name);
	}
	return r;
}

int
store_volume_set_state(struct store *s, const char *id, const char *state, const char *machine_id,
		       unsigned attach_order, struct err *err)
{
	const struct bind b[] = {TEXT(id), TEXT(state), TEXT(machine_id), INT(attach_order),
				 INT(store_now_ms())};

	return query(
		s, "update volume",
		"UPDATE volume SET state = ?2, machine_id = nullif(?3, ''), attach_order = ?4, "
		"state_changed_ms = ?5 WHERE id = ?1",
		b, ARRAY_SIZE(b), NULL, NULL, err);
}

int
store_volume_set_size(struct store *s, const char *id, uint64_t size_mb, struct err *err)
{
	const struct bind b[] = {TEXT(id), INT((int64_t)size_mb)};
	int r = query(s, "update volume", "UPDATE volume SET size_mb = ?2 WHERE id = ?1", b,
		      ARRAY_SIZE(b), NULL, NULL, err);

	return r < 0 ? r
		     : query(s, "update machine",
			     "UPDATE machine SET storage_mb = ?2 WHERE id = (SELECT machine_id "
			     "FROM "
			     "volume WHERE id = ?1 AND attach_order = 0)",
			     b, ARRAY_SIZE(b), NULL, NULL, err);
}

int
store_volume_set_path(struct store *s, const char *id, const char *path, const char *role,
		      struct err *err)
{
	const struct bind b[] = {TEXT(id), TEXT(path), TEXT(role)};

	return query(
		s, "update volume",
		"UPDATE volume SET path = coalesce(nullif(?2, ''), path), role = ?3 WHERE id = ?1",
		b, ARRAY_SIZE(b), NULL, NULL, err);
}

int
store_volume_remove(struct store *s, const char *id, struct err *err)
{
	const struct bind b[] = {TEXT(id)};

	return query(s, "delete volume", "DELETE FROM volume WHERE id = ?1", b, ARRAY_SIZE(b), NULL,
		     NULL, err);
}

int
store_volume_tx(struct store *s, int (*fn)(void *ud, struct err *err), void *ud, struct err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) < 0)
		goto out;
	r = fn(ud, err);
	if (r >= 0)
		r = exec_locked(s, "COMMIT", err);
	if (r < 0)
		exec_locked(s, "ROLLBACK", NULL);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}
