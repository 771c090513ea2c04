/* Long operations: progress events, long-poll watching, results, cancellation, and the
 * outcome kept in SQLite across a daemon restart. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"
#include "store.h"

struct fixture {
	char dir[64], db[128];
	struct store *s;
	struct ops *o;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err err = {0};

	snprintf(f->dir, sizeof(f->dir), "/tmp/sistemo-ops.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/sistemo.db", f->dir);
	assert_int_equal(store_open(f->db, &f->s, &err), 0);
	assert_int_equal(ops_new(f->s, &f->o, &err), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	ops_free(f->o);
	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Work that waits for the test's go between steps, so the test controls the timing. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int go;
	bool fail;
};

static void
gate_wait(struct gate *g, int step)
{
	pthread_mutex_lock(&g->lock);
	while (g->go < step)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void
gate_open(struct gate *g, int step)
{
	pthread_mutex_lock(&g->lock);
	g->go = step;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static int
stepped_work(struct op *op, void *ud, struct err *err)
{
	struct gate *g = ud;

	op_progress(op, "one", 10, "first step");
	gate_wait(g, 1);
	op_progress(op, "two", 50, "second step of %d", 2);
	gate_wait(g, 2);
	if (g->fail)
		return err_set(err, ERR_PRECONDITION, NULL, EBUSY, "the work failed");
	op_set_result(op, "test.Result", "abc", 3);
	return 0;
}

static void
events_results_and_watching(void **state)
{
	struct fixture *f = *state;
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};
	struct err err = {0};
	struct op_view v;
	char id[40];

	assert_int_equal(ops_start(f->o, "test.run", "t1", stepped_work, &g, NULL, id, &err), 0);
	assert_int_equal(ops_watch(f->o, id, 0, 5000, &v, &err), 0);
	assert_int_equal(v.state, OP_RUNNING);
	assert_true(v.n_events >= 1);
	assert_string_equal(v.events[0].step, "one");
	assert_int_equal(v.events[0].seq, 1);
	op_view_free(&v);
	/* nothing new yet: a short watch returns empty and still running */
	assert_int_equal(ops_watch(f->o, id, 1, 50, &v, &err), 0);
	assert_int_equal(v.n_events, 0);
	op_view_free(&v);
	gate_open(&g, 1);
	assert_int_equal(ops_watch(f->o, id, 1, 5000, &v, &err), 0);
	assert_int_equal(v.n_events, 1);
	assert_string_equal(v.events[0].message, "second step of 2");
	op_view_free(&v);
	gate_open(&g, 2);
	do {
		assert_int_equal(ops_watch(f->o, id, 2, 5000, &v, &err), 0);
		if (v.state == OP_RUNNING)
			op_view_free(&v);
	} while (v.state == OP_RUNNING);
	assert_int_equal(v.state, OP_DONE);
	assert_string_equal(v.result_type, "test.Result");
	assert_int_equal(v.result_len, 3);
	assert_memory_equal(v.result, "abc", 3);
	op_view_free(&v);
}

static void
failure_is_kept_across_restart(void **state)
{
	struct fixture *f = *state;
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 2, true};
	struct err err = {0};
	struct op_view v;
	char id[40];

	assert_int_equal(ops_start(f->o, "test.run", "t2", stepped_work, &g, NULL, id, &err), 0);
	do {
		assert_int_equal(ops_watch(f->o, id, 0, 5000, &v, &err), 0);
		if (v.state == OP_RUNNING)
			op_view_free(&v);
	} while (v.state == OP_RUNNING);
	assert_int_equal(v.state, OP_FAILED);
	assert_int_equal(v.status.code, ERR_PRECONDITION);
	op_view_free(&v);
	/* a new registry (daemon restart) finds the outcome in SQLite */
	ops_free(f->o);
	assert_int_equal(ops_new(f->s, &f->o, &err), 0);
	assert_int_equal(ops_watch(f->o, id, 0, 0, &v, &err), 0);
	assert_int_equal(v.state, OP_FAILED);
	assert_string_equal(v.status.msg, "the work failed");
	op_view_free(&v);
	assert_true(ops_watch(f->o, "no-such-id", 0, 0, &v, &err) < 0);
	assert_int_equal(err.code, ERR_NOT_FOUND);
}

static int
until_cancelled(struct op *op, void *ud, struct err *err)
{
	(void)ud;
	op_progress(op, "loop", 0, "waiting to be cancelled");
	for (int i = 0; i < 5000 && !op_cancelled(op); i++)
		usleep(1000);
	return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled, rolled back");
}

static void
cancel(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	struct op_view v;
	char id[40];

	assert_int_equal(ops_start(f->o, "test.loop", "t3", until_cancelled, NULL, NULL, id, &err),
			 0);
	assert_int_equal(ops_cancel(f->o, id, &err), 0);
	do {
		assert_int_equal(ops_watch(f->o, id, 0, 5000, &v, &err), 0);
		if (v.state == OP_RUNNING)
			op_view_free(&v);
	} while (v.state == OP_RUNNING);
	assert_int_equal(v.state, OP_CANCELLED);
	op_view_free(&v);
	assert_true(ops_cancel(f->o, id, &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
}

/* A row left 'running' by a crashed daemon is marked failed at the next start. */
static void
interrupted_by_crash(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	struct store_operation rec = {.id = "crashed-op",
				      .kind = "machine.deploy",
				      .target = "web",
				      .state = "running",
				      .message = ""};
	struct op_view v;

	assert_int_equal(store_operation_save(f->s, &rec, &err), 0);
	ops_free(f->o);
	assert_int_equal(ops_new(f->s, &f->o, &err), 0);
	assert_int_equal(ops_watch(f->o, "crashed-op", 0, 0, &v, &err), 0);
	assert_int_equal(v.state, OP_FAILED);
	assert_non_null(strstr(v.status.msg, "interrupted"));
	op_view_free(&v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(events_results_and_watching, setup, teardown),
		cmocka_unit_test_setup_teardown(failure_is_kept_across_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(interrupted_by_crash, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
