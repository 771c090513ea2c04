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
		cmocka_unit_test(unopenable_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
