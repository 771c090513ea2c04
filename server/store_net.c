/* The store's networks, exposed ports and machine policies. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "store_impl.h"

int
store_network_machine_count(struct store *s, const char *network, unsigned *ret, struct err *err)
{
	const struct bind b[] = {TEXT(network)};

	*ret = 0;
	return query(s, "count machines",
		     "SELECT count(*) FROM machine m LEFT JOIN network n ON n.id = m.network_id "
		     "WHERE coalesce(n.name, 'default') = ?1",
		     b, ARRAY_SIZE(b), row_count, ret, err);
}

struct network_cb {
	int (*fn)(void *ud, const struct network_rec *n);
	void *ud;
};

static int
network_row(sqlite3_stmt *st, void *ud)
{
	struct network_cb *cb = ud;
	struct network_rec n = {
		.id = col_text(st, 0),
		.name = col_text(st, 1),
		.subnet = col_text(st, 2),
		.bridge = col_text(st, 3),
		.mode = col_text(st, 4),
		.created_ms = sqlite3_column_int64(st, 5),
	};
	return cb->fn(cb->ud, &n);
}

#define NETWORK_SELECT "SELECT id, name, subnet, bridge, mode, created_ms FROM network "

int
store_network_list(struct store *s, int (*fn)(void *ud, const struct network_rec *n), void *ud,
		   struct err *err)
{
	struct network_cb cb = {fn, ud};

	return query(s, "list networks", NETWORK_SELECT "ORDER BY name", NULL, 0, network_row, &cb,
		     err);
}

int
store_network_create(struct store *s, const struct network_rec *n, struct err *err)
{
	const struct bind b[] = {TEXT(n->id),     TEXT(n->name), TEXT(n->subnet),
				 TEXT(n->bridge), TEXT(n->mode), INT(store_now_ms())};
	int r = query(s, "record network",
		      "INSERT INTO network (id, name, subnet, bridge, mode, created_ms) "
		      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		      b, ARRAY_SIZE(b), NULL, NULL, err);

	if (r < 0 && err->code == ERR_EXISTS) {
		bool subnet = strstr(err->msg, "network.subnet") != NULL;
		err_clear(err);
		return subnet ? err_set(err, ERR_EXISTS, "subnet", EEXIST,
					"subnet %s is already used by another network", n->subnet)
			      : err_set(err, ERR_EXISTS, "name", EEXIST,
					"a network named '%s' already exists", n->name);
	}
	return r;
}

static int
network_copy(void *ud, const struct network_rec *n)
{
	struct network_info *o = ud;

	snprintf(o->id, sizeof(o->id), "%s", n->id);
	snprintf(o->name, sizeof(o->name), "%s", n->name);
	snprintf(o->subnet, sizeof(o->subnet), "%s", n->subnet);
	snprintf(o->bridge, sizeof(o->bridge), "%s", n->bridge);
	snprintf(o->mode, sizeof(o->mode), "%s", n->mode);
	o->created_ms = n->created_ms;
	return 1;
}

int
store_network_get(struct store *s, const char *ref, struct network_info *ret, struct err *err)
{
	const struct bind b[] = {TEXT(ref)};
	struct network_cb cb = {network_copy, ret};

	memset(ret, 0, sizeof(*ret));
	int r = query(s, "find network", NETWORK_SELECT "WHERE name = ?1 OR bridge = ?1", b,
		      ARRAY_SIZE(b), network_row, &cb, err);
	if (r < 0)
		return r;
	if (!ret->id[0])
		return err_set(err, ERR_NOT_FOUND, "network", ENOENT,
			       "network '%s' not found (sistemo network list shows them)", ref);
	return 0;
}

static int
first_text(sqlite3_stmt *st, void *ud)
{
	snprintf(ud, 64, "%s", col_text(st, 0));
	return 1;
}

int
store_network_delete(struct store *s, const char *name, struct err *err)
{
	const struct bind b[] = {TEXT(name)};
	unsigned count = 0, gone = 0;
	char first[64] = "";
	int r;

	pthread_mutex_lock(&s->lock);
	if ((r = exec_locked(s, "BEGIN IMMEDIATE", err)) < 0)
		goto out;
	r = query_locked(s, "count machines",
			 "SELECT count(*) FROM machine m JOIN network n ON n.id = m.network_id "
			 "WHERE n.name = ?1",
			 b, 1, row_count, &count, err);
	if (r >= 0 && count)
		r = query_locked(
			s, "count machines",
			"SELECT m.name FROM machine m JOIN network n ON n.id = m.network_id "
			"WHERE n.name = ?1 ORDER BY m.name LIMIT 1",
			b, 1, first_text, first, err);
	if (r >= 0 && count)
		r = err_set(err, ERR_PRECONDITION, "name", EBUSY,
			    "network '%s' is used by %u machine%s ('%s'%s): delete or move them "
			    "first",
			    name, count, count == 1 ? "" : "s", first, count > 1 ? ", …" : "");
	if (r >= 0)
		r = query_locked(s, "delete network", "DELETE FROM network WHERE name = ?1", b, 1,
				 NULL, NULL, err);
	if (r >= 0 && (gone = (unsigned)sqlite3_changes(s->db)) == 0)
		r = err_set(err, ERR_NOT_FOUND, "name", ENOENT, "network '%s' not found", name);
	r = r < 0 ? r : exec_locked(s, "COMMIT", err);
	if (r < 0)
		exec_locked(s, "ROLLBACK", NULL);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_network_set_mode(struct store *s, const char *name, const char *mode, struct err *err)
{
	const struct bind b[] = {TEXT(name), TEXT(mode)};
	int r;

	pthread_mutex_lock(&s->lock);
	r = query_locked(s, "update network", "UPDATE network SET mode = ?2 WHERE name = ?1", b,
			 ARRAY_SIZE(b), NULL, NULL, err);
	if (r >= 0 && sqlite3_changes(s->db) == 0)
		r = err_set(err, ERR_NOT_FOUND, "name", ENOENT, "network '%s' not found", name);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ---- exposed ports ------------------------------------------------------------------------ */

struct port_cb {
	int (*fn)(void *ud, const struct port_rec *p);
	void *ud;
};

static int
port_row(sqlite3_stmt *st, void *ud)
{
	struct port_cb *cb = ud;
	struct port_rec p = {
		.machine_id = col_text(st, 0),
		.machine = col_text(st, 1),
		.machine_ip = col_text(st, 2),
		.network = col_text(st, 3),
		.state = col_text(st, 4),
		.host_ip = col_text(st, 5),
		.host_port = (unsigned)sqlite3_column_int(st, 6),
		.machine_port = (unsigned)sqlite3_column_int(st, 7),
		.protocol = col_text(st, 8),
	};
	return cb->fn(cb->ud, &p);
}

#define PORT_SELECT                                                                                \
	"SELECT m.id, m.name, coalesce(a.ip, ''), coalesce(n.name, 'default'), m.state, "          \
	"  p.host_ip, p.host_port, p.machine_port, p.protocol "                                    \
	"FROM port_rule p JOIN machine m ON m.id = p.machine_id "                                  \
	"LEFT JOIN network n ON n.id = m.network_id "                                              \
	"LEFT JOIN ip_allocation a ON a.machine_id = m.id "

int
store_port_add(struct store *s, const char *machine_id, const char *host_ip, unsigned host_port,
	       unsigned machine_port, const char *protocol, struct err *err)
{
	const struct bind b[] = {TEXT(machine_id),  TEXT(host_ip),  INT(host_port),
				 INT(machine_port), TEXT(protocol), INT(store_now_ms())};
	const struct bind hb[] = {INT(host_port), TEXT(protocol)};
	char holder[64] = "";
	int r;

	pthread_mutex_lock(&s->lock);
	r = query_locked(s, "expose port",
			 "SELECT m.name FROM port_rule p JOIN machine m ON m.id = p.machine_id "
			 "WHERE p.host_port = ?1 AND p.protocol = ?2",
			 hb, ARRAY_SIZE(hb), first_text, holder, err);
	if (r >= 0 && holder[0])
		r = err_set(err, ERR_EXISTS, "port", EEXIST,
			    "host port %u/%s is already exposed by machine '%s'", host_port,
			    protocol, holder);
	if (r >= 0)
		r = query_locked(s, "expose port",
				 "INSERT INTO port_rule (machine_id, host_ip, host_port, "
				 "machine_port, protocol, created_ms) VALUES (?1,?2,?3,?4,?5,?6)",
				 b, ARRAY_SIZE(b), NULL, NULL, err);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_port_del(struct store *s, const char *machine_id, unsigned host_port, const char *protocol,
	       struct err *err)
{
	const struct bind b[] = {TEXT(machine_id), INT(host_port), TEXT(protocol)};
	int r;

	pthread_mutex_lock(&s->lock);
	r = query_locked(s, "unexpose port",
			 "DELETE FROM port_rule WHERE machine_id = ?1 AND host_port = ?2 AND "
			 "protocol = ?3",
			 b, ARRAY_SIZE(b), NULL, NULL, err);
	if (r >= 0 && sqlite3_changes(s->db) == 0)
		r = err_set(err, ERR_NOT_FOUND, "port", ENOENT,
			    "the machine does not expose host port %u/%s", host_port, protocol);
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
store_port_list(struct store *s, const char *machine_id, const char *network,
		int (*fn)(void *ud, const struct port_rec *p), void *ud, struct err *err)
{
	const struct bind b[] = {TEXT(machine_id), TEXT(network)};
	struct port_cb cb = {fn, ud};

	return query(s, "list ports",
		     PORT_SELECT "WHERE (?1 = '' OR m.id = ?1) AND "
				 "(?2 = '' OR coalesce(n.name, 'default') = ?2) "
				 "ORDER BY p.host_port, p.protocol",
		     b, ARRAY_SIZE(b), port_row, &cb, err);
}

int
store_machine_set_policy(struct store *s, const char *id, const char *mode, const char *allow_from,
			 const char *egress_allow, struct err *err)
{
	const struct bind b[] = {TEXT(id), TEXT(mode), TEXT(allow_from), TEXT(egress_allow)};

	return query(s, "set policy",
		     "UPDATE machine SET network_mode = ?2, allow_from = ?3, egress_allow = ?4 "
		     "WHERE id = ?1",
		     b, ARRAY_SIZE(b), NULL, NULL, err);
}
