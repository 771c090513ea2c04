/* The SQLite store: migrations, pragmas, refusal of newer schemas, the audit history. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct fixture {
	char dir[64];
	char db[128];
	struct store *s;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err err = {0};

	snprintf(f->dir, sizeof(f->dir), "/tmp/sistemo-st.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/sistemo.db", f->dir);
	assert_int_equal(store_open(f->db, &f->s, &err), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int
pragma_int(const char *db, const char *sql)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	int v = -1;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static void
fresh_db_is_migrated(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	assert_true(store_schema_latest() >= 1);
	assert_int_equal(pragma_int(f->db, "PRAGMA user_version"), (int)store_schema_latest());
	assert_int_equal(pragma_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type='table' "
					   "AND name IN ('machine','network','ip_allocation',"
					   "'port_rule','volume','image','image_tag','user',"
					   "'audit','operation')"),
			 10);
}

static void
reopen_is_idempotent(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	struct audit_entry e = {.actor = "uid:0", .action = "x.y", .success = true};

	assert_int_equal(store_audit_add(f->s, &e, &err), 0);
	store_close(f->s);
	assert_int_equal(store_open(f->db, &f->s, &err), 0);
	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	assert_int_equal(pragma_int(f->db, "SELECT count(*) FROM audit"), 1);
}

static void
wal_and_foreign_keys(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};

	assert_int_equal(pragma_int(f->db, "PRAGMA journal_mode='wal'") >= 0, 1);
	/* a port rule for a machine that does not exist violates the foreign key */
	int r = store_exec(f->s,
			   "INSERT INTO port_rule (machine_id, host_port, machine_port, "
			   "protocol, created_ms) VALUES ('nope', 80, 80, 'tcp', 0)",
			   &err);
	assert_true(r < 0);
	assert_non_null(strstr(err.msg, "FOREIGN KEY"));
}

static void
newer_schema_refused(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA user_version = %u", store_schema_latest() + 1);
	assert_int_equal(store_exec(f->s, sql, &err), 0);
	store_close(f->s);
	f->s = NULL;
	assert_true(store_open(f->db, &f->s, &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_non_null(strstr(err.msg, "newer than this sistemo knows"));
}

struct collect {
	int n;
	char actions[8][32];
};

static int
collect(void *ud, const struct audit_entry *e)
{
	struct collect *c = ud;

	snprintf(c->actions[c->n++], sizeof(c->actions[0]), "%s", e->action);
	return 0;
}

static void
audit_filters_and_order(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	const char *actions[] = {"machine.deploy", "network.create", "machine.deploy"};
	const char *targets[] = {"web", "backend", "db"};
	struct collect c = {0};
	unsigned total = 0;

	for (int i = 0; i < 3; i++) {
		struct audit_entry e = {.actor = "uid:0",
					.action = actions[i],
					.target_name = targets[i],
					.success = i != 1};
		assert_int_equal(store_audit_add(f->s, &e, &err), 0);
	}
	struct audit_filter all = {.limit = 10};
	assert_int_equal(store_audit_list(f->s, &all, collect, &c, &total, &err), 0);
	assert_int_equal(total, 3);
	assert_string_equal(c.actions[1], "network.create"); /* newest first */
	struct audit_filter by_action = {.limit = 10, .action = "machine.deploy"};
	c.n = 0;
	assert_int_equal(store_audit_list(f->s, &by_action, collect, &c, &total, &err), 0);
	assert_int_equal(total, 2);
	struct audit_filter by_target = {.limit = 10, .target = "backend"};
	c.n = 0;
	assert_int_equal(store_audit_list(f->s, &by_target, collect, &c, &total, &err), 0);
	assert_int_equal(c.n, 1);
	struct audit_filter paged = {.limit = 1, .offset = 1};
	c.n = 0;
	assert_int_equal(store_audit_list(f->s, &paged, collect, &c, &total, &err), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(total, 3);
}

static void
machine_counts_empty(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	unsigned total = 9, running = 9, on_default = 9;

	assert_int_equal(store_machine_count(f->s, &total, &running, &err), 0);
	assert_int_equal(total, 0);
	assert_int_equal(running, 0);
	assert_int_equal(store_network_machine_count(f->s, "default", &on_default, &err), 0);
	assert_int_equal(on_default, 0);
}

static void
create(struct fixture *f, const char *id, const char *name, uint32_t subnet, unsigned prefix,
       char ip[16], int expect)
{
	struct machine_rec m = {.id = id,
				.name = name,
				.image = "tiny",
				.driver = "qemu",
				.vcpus = 1,
				.memory_mb = 256,
				.storage_mb = 512,
				.network = "default"};
	struct err err = {0};

	int r = store_machine_create(f->s, &m, subnet, prefix, ip, &err);
	if (expect == ERR_OK)
		assert_int_equal(r, 0);
	else
		assert_int_equal(err.code, expect);
}

#define NET_10_200 ((10u << 24) | (200u << 16))

static void
addresses_in_order_and_reused(void **state)
{
	struct fixture *f = *state;
	struct machine_info mi;
	struct err err = {0};
	char ip[16];

	create(f, "id-a", "a", NET_10_200, 16, ip, ERR_OK);
	assert_string_equal(ip, "10.200.0.2");
	create(f, "id-b", "b", NET_10_200, 16, ip, ERR_OK);
	assert_string_equal(ip, "10.200.0.3");
	create(f, "id-c", "c", NET_10_200, 16, ip, ERR_OK);
	assert_string_equal(ip, "10.200.0.4");
	assert_int_equal(store_machine_get(f->s, "b", &mi, &err), 0);
	assert_string_equal(mi.id, "id-b");
	assert_string_equal(mi.state, "creating");
	assert_string_equal(mi.ip, "10.200.0.3");
	assert_int_equal(store_machine_delete(f->s, "id-b", &err), 0);
	create(f, "id-d", "d", NET_10_200, 16, ip, ERR_OK);
	assert_string_equal(ip, "10.200.0.3"); /* a released address is reused */
	assert_true(store_machine_get(f->s, "b", &mi, &err) < 0);
	assert_int_equal(err.code, ERR_NOT_FOUND);
}

static void
duplicate_name_and_full_subnet(void **state)
{
	struct fixture *f = *state;
	uint32_t net30 = (10u << 24) | (201u << 16) | 4; /* 10.201.0.4/30: one machine */
	char ip[16] = "";

	create(f, "id-a", "a", NET_10_200, 16, ip, ERR_OK);
	create(f, "id-a2", "a", NET_10_200, 16, ip, ERR_EXISTS);
	create(f, "id-x", "x", net30, 30, ip, ERR_OK);
	assert_string_equal(ip, "10.201.0.6");
	create(f, "id-y", "y", net30, 30, ip, ERR_EXHAUSTED);
	/* nothing half-created: the failed ones left no row and no address */
	assert_int_equal(pragma_int(f->db, "SELECT count(*) FROM machine"), 2);
	assert_int_equal(pragma_int(f->db, "SELECT count(*) FROM ip_allocation"), 2);
}

static void
state_changes(void **state)
{
	struct fixture *f = *state;
	struct machine_info mi;
	struct err err = {0};
	char ip[16];

	create(f, "id-a", "a", NET_10_200, 16, ip, ERR_OK);
	assert_int_equal(store_machine_set_state(f->s, "id-a", "running", 1234, 850, "", &err), 0);
	assert_int_equal(store_machine_set_state(f->s, "id-a", "stopped", 0, 0, "", &err), 0);
	assert_int_equal(store_machine_get(f->s, "id-a", &mi, &err), 0);
	assert_string_equal(mi.state, "stopped");
	assert_int_equal(mi.pid, 0);
	assert_int_equal(mi.boot_ms, 850); /* kept */
	assert_true(store_machine_set_state(f->s, "id-a", "sleeping", 0, 0, "", &err) < 0);
}

static void
unopenable_path(void **state)
{
	struct store *s = NULL;
	struct err err = {0};

	(void)state;
	assert_true(store_open("/nonexistent/dir/sistemo.db", &s, &err) < 0);
	assert_null(s);
	assert_non_null(strstr(err.msg, "/nonexistent/dir/sistemo.db"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(fresh_db_is_migrated, setup, teardown),
		cmocka_unit_test_setup_teardown(reopen_is_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(wal_and_foreign_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(newer_schema_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(audit_filters_and_order, setup, teardown),
		cmocka_unit_test_setup_teardown(machine_counts_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(addresses_in_order_and_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(duplicate_name_and_full_subnet, setup, teardown),
		cmocka_unit_test_setup_teardown(state_changes, setup, teardown),
		cmocka_unit_test(unopenable_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
