#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "log.h"
#include "macro.h"
#include "store_impl.h"
#include "store_schema.h"

int64_t
store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The one place SQLite's error space turns into ours. */
int
db_error(struct store *s, struct err *err, const char *what)
{
	int rc = sqlite3_extended_errcode(s->db);
	enum err_code code = ERR_INTERNAL;

	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		code = rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
			       ? ERR_EXISTS
			       : ERR_PRECONDITION;
	else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		code = ERR_UNAVAILABLE;
	else if ((rc & 0xff) == SQLITE_FULL)
		code = ERR_EXHAUSTED;
	return err_set(err, code, NULL, EIO, "database: %s: %s", what, sqlite3_errmsg(s->db));
}

int
exec_locked(struct store *s, const char *sql, struct err *err)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		err_set(err, ERR_INTERNAL, NULL, EIO, "database: %s", msg ? msg : "error");
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

int
store_exec(struct store *s, const char *sql, struct err *err)
{
	pthread_mutex_lock(&s->lock);
	int r = exec_locked(s, sql, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int
read_version(struct store *s, unsigned *ret, struct err *err)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "read schema version");
	int rc = sqlite3_step(st);
	*ret = rc == SQLITE_ROW ? (unsigned)sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, err, "read schema version");
}

static int
migrate_one(struct store *s, unsigned version, struct err *err)
{
	char pragma[64];
	int r;

	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) < 0)
		return r;
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", version);
	if ((r = exec_locked(s, store_schema_migration(version), err)) < 0 ||
	    (r = exec_locked(s, pragma, err)) < 0) {
		exec_locked(s, "ROLLBACK", NULL);
		return err_wrap(err, "migrate schema to version %u", version);
	}
	return exec_locked(s, "COMMIT", err);
}

static int
migrate(struct store *s, const char *path, struct err *err)
{
	unsigned v;
	int r;

	if ((r = read_version(s, &v, err)) < 0)
		return r;
	if (v > store_schema_count())
		return err_set(err, ERR_PRECONDITION, NULL, EPROTO,
			       "database '%s' has schema version %u, newer than this sistemo knows "
			       "(%u): upgrade sistemo",
			       path, v, store_schema_count());
	for (unsigned next = v + 1; next <= store_schema_count(); next++) {
		if ((r = migrate_one(s, next, err)) < 0)
			return r;
		log_info("database: migrated schema to version %u", next);
	}
	s->version = store_schema_count();
	return 0;
}

int
store_open(const char *path, struct store **ret, struct err *err)
{
	struct store *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	/* recursive: a list callback may read the store again (one connection runs several
	 * statements at once); transactions are never nested that way */
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
				    SQLITE_OPEN_EXRESCODE,
			    NULL) != SQLITE_OK) {
		r = err_set(err, ERR_INTERNAL, NULL, EIO, "open database '%s': %s", path,
			    s->db ? sqlite3_errmsg(s->db) : "out of memory");
		store_close(s);
		return r;
	}
	sqlite3_busy_timeout(s->db, 5000);
	sqlite3_extended_result_codes(s->db, 1);
	r = exec_locked(s,
			"PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
			"PRAGMA synchronous=NORMAL;",
			err);
	if (r >= 0)
		r = migrate(s, path, err);
	if (r < 0) {
		store_close(s);
		return r;
	}
	*ret = s;
	return 0;
}

void
store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_close_v2(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

unsigned
store_schema_version(struct store *s)
{
	return s->version;
}

unsigned
store_schema_latest(void)
{
	return store_schema_count();
}

const char *
col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	return t ? (const char *)t : "";
}

static void
bind_all(sqlite3_stmt *st, const struct bind *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i].is_int)
			sqlite3_bind_int64(st, (int)i + 1, b[i].i);
		else
			sqlite3_bind_text(st, (int)i + 1, b[i].text ? b[i].text : "", -1,
					  SQLITE_TRANSIENT);
}

int
query_locked(struct store *s, const char *what, const char *sql, const struct bind *b, size_t n,
	     int (*row)(sqlite3_stmt *st, void *ud), void *ud, struct err *err)
{
	sqlite3_stmt *st;
	int rc = SQLITE_DONE, r = 0;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, what);
	bind_all(st, b, n);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = row ? row(st, ud) : 0;
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(s, err, what);
	sqlite3_finalize(st);
	return r < 0 ? r : 0;
}

int
query(struct store *s, const char *what, const char *sql, const struct bind *b, size_t n,
      int (*row)(sqlite3_stmt *st, void *ud), void *ud, struct err *err)
{
	pthread_mutex_lock(&s->lock);
	int r = query_locked(s, what, sql, b, n, row, ud, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
row_count(sqlite3_stmt *st, void *ud)
{
	*(unsigned *)ud = (unsigned)sqlite3_column_int64(st, 0);
	return 1;
}

int
store_audit_add(struct store *s, const struct audit_entry *e, struct err *err)
{
	const struct bind b[] = {
		INT(e->time_ms ? e->time_ms : store_now_ms()),
		TEXT(e->actor),
		TEXT(e->action),
		TEXT(e->target_type),
		TEXT(e->target_id),
		TEXT(e->target_name),
		INT(e->success),
		TEXT(e->detail),
	};
	return query(s, "audit",
		     "INSERT INTO audit (time_ms, actor, action, target_type, target_id, "
		     "target_name, success, detail) VALUES (?,?,?,?,?,?,?,?)",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}

#define AUDIT_WHERE                                                                                \
	" WHERE (?1 = '' OR action = ?1) AND (?2 = '' OR target_name = ?2 OR target_id = ?2)"

struct audit_cb {
	int (*fn)(void *ud, const struct audit_entry *e);
	void *ud;
};

static int
audit_row(sqlite3_stmt *st, void *ud)
{
	struct audit_cb *cb = ud;
	struct audit_entry e = {
		.id = sqlite3_column_int64(st, 0),
		.time_ms = sqlite3_column_int64(st, 1),
		.actor = col_text(st, 2),
		.action = col_text(st, 3),
		.target_type = col_text(st, 4),
		.target_id = col_text(st, 5),
		.target_name = col_text(st, 6),
		.success = sqlite3_column_int(st, 7) != 0,
		.detail = col_text(st, 8),
	};
	return cb->fn(cb->ud, &e);
}

int
store_audit_list(struct store *s, const struct audit_filter *f,
		 int (*fn)(void *ud, const struct audit_entry *e), void *ud, unsigned *ret_total,
		 struct err *err)
{
	const struct bind b[] = {TEXT(f->action), TEXT(f->target), INT(f->limit), INT(f->offset)};
	struct audit_cb cb = {fn, ud};
	int r;

	*ret_total = 0;
	r = query(s, "audit", "SELECT count(*) FROM audit" AUDIT_WHERE, b, 2, row_count, ret_total,
		  err);
	if (r < 0)
		return r;
	return query(s, "audit",
		     "SELECT id, time_ms, actor, action, target_type, target_id, target_name, "
		     "success, detail FROM audit" AUDIT_WHERE
		     " ORDER BY id DESC LIMIT ?3 OFFSET ?4",
		     b, ARRAY_SIZE(b), audit_row, &cb, err);
}

struct machine_cb {
	int (*fn)(void *ud, const struct machine_rec *m);
	void *ud;
};

static int
machine_row(sqlite3_stmt *st, void *ud)
{
	struct machine_cb *cb = ud;
	struct machine_rec m = {
		.id = col_text(st, 0),
		.name = col_text(st, 1),
		.state = col_text(st, 2),
		.image = col_text(st, 3),
		.image_digest = col_text(st, 4),
		.network = col_text(st, 5),
		.driver = col_text(st, 6),
		.vcpus = (unsigned)sqlite3_column_int(st, 7),
		.memory_mb = (uint64_t)sqlite3_column_int64(st, 8),
		.storage_mb = (uint64_t)sqlite3_column_int64(st, 9),
		.mac = col_text(st, 10),
		.namespace = col_text(st, 11),
		.pid = sqlite3_column_int64(st, 12),
		.boot_ms = (uint64_t)sqlite3_column_int64(st, 13),
		.error = col_text(st, 14),
		.created_ms = sqlite3_column_int64(st, 15),
		.state_changed_ms = sqlite3_column_int64(st, 16),
		.ip = col_text(st, 17),
		.network_mode = col_text(st, 18),
		.allow_from = col_text(st, 19),
		.egress_allow = col_text(st, 20),
	};
	return cb->fn(cb->ud, &m);
}

#define MACHINE_SELECT                                                                             \
	"SELECT m.id, m.name, m.state, m.image, m.image_digest, coalesce(n.name, 'default'), "     \
	"  m.driver, m.vcpus, m.memory_mb, m.storage_mb, m.mac, m.namespace, m.pid, m.boot_ms, "   \
	"  m.error, m.created_ms, m.state_changed_ms, coalesce(a.ip, ''), m.network_mode, "        \
	"  m.allow_from, m.egress_allow "                                                          \
	"FROM machine m LEFT JOIN network n ON n.id = m.network_id "                               \
	"LEFT JOIN ip_allocation a ON a.machine_id = m.id "

int
store_machine_list(struct store *s, const char *network,
		   int (*fn)(void *ud, const struct machine_rec *m), void *ud, struct err *err)
{
	const struct bind b[] = {TEXT(network)};
	struct machine_cb cb = {fn, ud};

	return query(s, "list machines",
		     MACHINE_SELECT "WHERE ?1 = '' OR coalesce(n.name, 'default') = ?1 "
				    "ORDER BY m.created_ms DESC, m.name",
		     b, ARRAY_SIZE(b), machine_row, &cb, err);
}

#define COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

static int
machine_copy(void *ud, const struct machine_rec *m)
{
	struct machine_info *o = ud;

	COPY(o->id, m->id);
	COPY(o->name, m->name);
	COPY(o->state, m->state);
	COPY(o->image, m->image);
	COPY(o->image_digest, m->image_digest);
	COPY(o->network, m->network);
	COPY(o->driver, m->driver);
	COPY(o->ip, m->ip);
	COPY(o->mac, m->mac);
	COPY(o->namespace_, m->namespace);
	COPY(o->error, m->error);
	COPY(o->network_mode, m->network_mode);
	COPY(o->allow_from, m->allow_from);
	COPY(o->egress_allow, m->egress_allow);
	o->vcpus = m->vcpus;
	o->memory_mb = m->memory_mb;
	o->storage_mb = m->storage_mb;
	o->boot_ms = m->boot_ms;
	o->pid = m->pid;
	o->created_ms = m->created_ms;
	o->state_changed_ms = m->state_changed_ms;
	return 1;
}

int
store_machine_get(struct store *s, const char *ref_in, struct machine_info *ret, struct err *err)
{
	char ref[256]; /* ref may point into ret */
	const struct bind b[] = {TEXT(ref)};
	struct machine_cb cb = {machine_copy, ret};

	snprintf(ref, sizeof(ref), "%s", ref_in);
	ret->id[0] = '\0';
	int r = query(s, "find machine", MACHINE_SELECT "WHERE m.id = ?1 OR m.name = ?1", b,
		      ARRAY_SIZE(b), machine_row, &cb, err);
	if (r < 0)
		return r;
	if (!ret->id[0])
		return err_set(err, ERR_NOT_FOUND, "machine", ENOENT,
			       "machine '%s' not found (sistemo machine list shows them)", ref);
	return 0;
}

struct ip_set {
	uint32_t base;
	uint32_t *used; /* host numbers in use */
	size_t n, cap;
};

static int
ip_row(sqlite3_stmt *st, void *ud)
{
	struct ip_set *set = ud;
	struct in_addr a;

	if (inet_pton(AF_INET, col_text(st, 0), &a) != 1)
		return 0;
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 64;
		uint32_t *grown = realloc(set->used, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		set->used = grown;
		set->cap = cap;
	}
	set->used[set->n++] = ntohl(a.s_addr) - set->base;
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The lowest free host number from 2 (1 is the gateway) below the broadcast address. */
static int
ip_pick(struct store *s, const char *network, uint32_t subnet, unsigned prefix, char out[16],
	struct err *err)
{
	const struct bind b[] = {TEXT(network)};
	struct ip_set set = {.base = subnet};
	uint32_t host = 2, last = (prefix >= 31 ? 0 : (1u << (32 - prefix)) - 2);
	int r = query_locked(s, "allocate address",
			     "SELECT ip FROM ip_allocation WHERE network = ?1", b, ARRAY_SIZE(b),
			     ip_row, &set, err);

	if (r < 0) {
		free(set.used);
		return r;
	}
	if (set.n)
		qsort(set.used, set.n, sizeof(*set.used), cmp_u32);
	for (size_t i = 0; i < set.n && host <= last; i++)
		if (set.used[i] == host)
			host++;
		else if (set.used[i] > host)
			break;
	free(set.used);
	if (host > last)
		return err_set(err, ERR_EXHAUSTED, "network", ENOSPC,
			       "network '%s' has no free address left (%u in use)", network,
			       (unsigned)set.n);
	struct in_addr a = {.s_addr = htonl(subnet + host)};
	inet_ntop(AF_INET, &a, out, 16);
	return 0;
}

static int
machine_insert(struct store *s, const struct machine_rec *m, const char *ip, struct err *err)
{
	int64_t now = store_now_ms();
	const struct bind mb[] = {
		TEXT(m->id),
		TEXT(m->name),
		TEXT(m->image),
		TEXT(m->driver),
		INT(m->vcpus),
		INT((int64_t)m->memory_mb),
		INT((int64_t)m->storage_mb),
		TEXT(m->mac),
		TEXT(m->namespace),
		INT(now),
		TEXT(m->network),
		TEXT(m->network_mode && *m->network_mode ? m->network_mode : "bridge"),
		TEXT(m->allow_from),
		TEXT(m->egress_allow)};
	const struct bind ab[] = {TEXT(m->network), TEXT(ip), TEXT(m->id), INT(now)};
	int r = query_locked(
		s, "record machine",
		"INSERT INTO machine (id, name, state, image, driver, vcpus, memory_mb, "
		"storage_mb, mac, namespace, created_ms, state_changed_ms, network_id, "
		"network_mode, "
		"allow_from, egress_allow) VALUES (?1, ?2, 'creating', ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
		"?10, ?10, (SELECT id FROM network WHERE name = ?11), ?12, ?13, ?14)",
		mb, ARRAY_SIZE(mb), NULL, NULL, err);
	if (r < 0 && err->code == ERR_EXISTS) {
		err_clear(err);
		return err_set(err, ERR_EXISTS, "name", EEXIST,
			       "a machine named '%s' already exists", m->name);
	}
	if (r < 0)
		return r;
	return query_locked(s, "allocate address",
			    "INSERT INTO ip_allocation (network, ip, machine_id, allocated_ms) "
			    "VALUES (?1, ?2, ?3, ?4)",
			    ab, ARRAY_SIZE(ab), NULL, NULL, err);
}

int
store_machine_create(struct store *s, const struct machine_rec *m, uint32_t subnet, unsigned prefix,
		     char ret_ip[16], struct err *err)
{
	int r;

	pthread_mutex_lock(&s->lock);
	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) < 0)
		goto out;
	r = ip_pick(s, m->network, subnet, prefix, ret_ip, err);
	if (r >= 0)
		r = machine_insert(s, m, ret_ip, err);
	if (r >= 0)
		r = exec_locked(s, "COMMIT", err);
	if (r < 0)
		exec_locked(s, "ROLLBACK", NULL);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_machine_set_mac(struct store *s, const char *id, const char *mac, struct err *err)
{
	const struct bind b[] = {TEXT(id), TEXT(mac)};

	return query(s, "update machine", "UPDATE machine SET mac = ?2 WHERE id = ?1", b,
		     ARRAY_SIZE(b), NULL, NULL, err);
}

int
store_machine_set_state(struct store *s, const char *id, const char *state, int64_t pid,
			uint64_t boot_ms, const char *error, struct err *err)
{
	const struct bind b[] = {TEXT(id),    TEXT(state),        INT(pid), INT((int64_t)boot_ms),
				 TEXT(error), INT(store_now_ms())};

	return query(s, "update machine",
		     "UPDATE machine SET state = ?2, pid = ?3, boot_ms = CASE WHEN ?4 > 0 THEN ?4 "
		     "ELSE boot_ms END, error = ?5, state_changed_ms = ?6 WHERE id = ?1",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}

static bool
state_in(const char *state, const char *list)
{
	size_t n = strlen(state);

	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, state, n) == 0)
			return true;
		p += len + (p[len] == ',');
	}
	return false;
}

int
store_machine_transition(struct store *s, const char *ref_in, const char *from, const char *to,
			 struct machine_info *ret, struct err *err)
{
	char ref[256]; /* ref may point into ret */
	const struct bind b[] = {TEXT(ref), TEXT(to), INT(store_now_ms())};

	snprintf(ref, sizeof(ref), "%s", ref_in);
	struct machine_cb cb = {machine_copy, ret};
	int r;

	pthread_mutex_lock(&s->lock);
	ret->id[0] = '\0';
	r = query_locked(s, "find machine", MACHINE_SELECT "WHERE m.id = ?1 OR m.name = ?1", b, 1,
			 machine_row, &cb, err);
	if (r >= 0 && !ret->id[0])
		r = err_set(err, ERR_NOT_FOUND, "machine", ENOENT,
			    "machine '%s' not found (sistemo machine list shows them)", ref);
	else if (r >= 0 && !state_in(ret->state, from))
		r = err_set(err, ERR_PRECONDITION, "machine", EBUSY, "machine '%s' is %s",
			    ret->name, ret->state);
	else if (r >= 0)
		r = query_locked(s, "update machine",
				 "UPDATE machine SET state = ?2, state_changed_ms = ?3 "
				 "WHERE id = (SELECT id FROM machine WHERE id = ?1 OR name = ?1)",
				 b, ARRAY_SIZE(b), NULL, NULL, err);
	if (r >= 0)
		snprintf(ret->state, sizeof(ret->state), "%s", to);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_machine_delete(struct store *s, const char *id, struct err *err)
{
	const struct bind b[] = {TEXT(id)};

	return query(s, "delete machine", "DELETE FROM machine WHERE id = ?1", b, ARRAY_SIZE(b),
		     NULL, NULL, err);
}

int
store_machine_count(struct store *s, unsigned *ret_total, unsigned *ret_running, struct err *err)
{
	*ret_total = *ret_running = 0;
	int r = query(s, "count machines", "SELECT count(*) FROM machine", NULL, 0, row_count,
		      ret_total, err);
	return r < 0 ? r
		     : query(s, "count machines",
			     "SELECT count(*) FROM machine WHERE state = 'running'", NULL, 0,
			     row_count, ret_running, err);
}

int
store_operation_save(struct store *s, const struct store_operation *op, struct err *err)
{
	const struct bind b[] = {TEXT(op->id),        TEXT(op->kind),      TEXT(op->target),
				 TEXT(op->state),     INT(op->code),       TEXT(op->message),
				 INT(op->created_ms), INT(op->finished_ms)};

	return query(s, "record operation",
		     "INSERT OR REPLACE INTO operation (id, kind, target, state, status_code, "
		     "status_message, created_ms, finished_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}

static int
operation_row(sqlite3_stmt *st, void *ud)
{
	struct store_operation *o = ud;
	char *p = o->buf, *end = o->buf + sizeof(o->buf);
	const char **fields[] = {&o->id, &o->kind, &o->target, &o->state, &o->message};

	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		int n = snprintf(p, (size_t)(end - p), "%s", col_text(st, (int)i));
		*fields[i] = p;
		p += n < end - p ? n + 1 : end - p;
		if (p >= end)
			p = end - 1;
	}
	o->code = sqlite3_column_int(st, 5);
	o->created_ms = sqlite3_column_int64(st, 6);
	o->finished_ms = sqlite3_column_int64(st, 7);
	return 1;
}

int
store_operation_get(struct store *s, const char *id, struct store_operation *ret, struct err *err)
{
	const struct bind b[] = {TEXT(id)};

	ret->id = NULL;
	int r = query(s, "find operation",
		      "SELECT id, kind, target, state, status_message, status_code, created_ms, "
		      "finished_ms FROM operation WHERE id = ?1",
		      b, ARRAY_SIZE(b), operation_row, ret, err);
	if (r < 0)
		return r;
	if (!ret->id)
		return err_set(err, ERR_NOT_FOUND, "id", ENOENT, "operation '%s' not found", id);
	return 0;
}

int
store_operation_interrupt(struct store *s, struct err *err)
{
	const struct bind b[] = {INT(ERR_INTERNAL), INT(store_now_ms())};

	return query(s, "recover operations",
		     "UPDATE operation SET state = 'failed', status_code = ?1, status_message = "
		     "'interrupted: the daemon stopped while it ran', finished_ms = ?2 "
		     "WHERE state = 'running'",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}
