#include "ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "store.h"
#include "uuid.h"

#define KEEP_MS (10 * 60 * 1000)
#define MAX_EVENTS 1024
#define MAX_WAIT_MS 30000

struct op {
	struct ops *ops;
	struct op *next;
	char id[40], kind[32], target[128];
	enum op_state state;
	struct err status;
	char result_type[64];
	void *result;
	size_t result_len;
	struct op_event *events;
	size_t n_events;
	uint64_t seq;
	bool cancel;
	int64_t created_ms, finished_ms;
	op_fn fn;
	void *ud;
	void (*ud_free)(void *ud);
};

struct ops {
	struct store *store;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct op *head; /* newest first */
	unsigned running;
};

static const char *const state_names[] = {[OP_RUNNING] = "running",
					  [OP_DONE] = "done",
					  [OP_FAILED] = "failed",
					  [OP_CANCELLED] = "cancelled"};

int
ops_new(struct store *store, struct ops **ret, struct err *err)
{
	struct ops *o = calloc(1, sizeof(*o));

	if (!o)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	o->store = store;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->changed, NULL);
	*ret = o;
	return store_operation_interrupt(store, err);
}

static void
op_destroy(struct op *op)
{
	free(op->events);
	free(op->result);
	free(op);
}

void
ops_free(struct ops *o)
{
	struct timespec deadline;

	if (!o)
		return;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 60;
	pthread_mutex_lock(&o->lock);
	for (struct op *op = o->head; op; op = op->next)
		op->cancel = true;
	while (o->running > 0)
		if (pthread_cond_timedwait(&o->changed, &o->lock, &deadline) == ETIMEDOUT) {
			log_error("operations: %u still running at shutdown", o->running);
			pthread_mutex_unlock(&o->lock);
			return; /* leak rather than free memory a thread still uses */
		}
	pthread_mutex_unlock(&o->lock);
	for (struct op *op = o->head, *n; op; op = n) {
		n = op->next;
		op_destroy(op);
	}
	pthread_cond_destroy(&o->changed);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* Drops finished operations older than KEEP_MS; the lock is held. */
static void
sweep_locked(struct ops *o)
{
	int64_t now = store_now_ms();

	for (struct op **p = &o->head; *p;) {
		struct op *op = *p;
		if (op->state != OP_RUNNING && now - op->finished_ms > KEEP_MS) {
			*p = op->next;
			op_destroy(op);
		} else {
			p = &op->next;
		}
	}
}

static void
save(struct op *op)
{
	struct err err = {0};
	struct store_operation rec = {
		.id = op->id,
		.kind = op->kind,
		.target = op->target,
		.state = state_names[op->state],
		.code = op->status.code,
		.message = op->status.msg,
		.created_ms = op->created_ms,
		.finished_ms = op->finished_ms,
	};
	if (store_operation_save(op->ops->store, &rec, &err) < 0)
		log_error("operation %s: %s", op->id, err.msg);
}

static void *
op_thread(void *arg)
{
	struct op *op = arg;
	struct ops *o = op->ops;
	struct err err = {0};

	int r = op->fn(op, op->ud, &err);
	if (op->ud_free)
		op->ud_free(op->ud);
	pthread_mutex_lock(&o->lock);
	op->state = r >= 0 ? OP_DONE : err.code == ERR_CANCELLED ? OP_CANCELLED : OP_FAILED;
	op->status = r >= 0 ? (struct err){0} : err;
	op->finished_ms = store_now_ms();
	save(op);
	o->running--;
	pthread_cond_broadcast(&o->changed);
	pthread_mutex_unlock(&o->lock);
	if (r < 0)
		log_warn("%s '%s' %s: %s", op->kind, op->target, state_names[op->state], err.msg);
	return NULL;
}

static int
spawn(struct op *op, struct err *err)
{
	pthread_attr_t attr;
	pthread_t t;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&t, &attr, op_thread, op);
	pthread_attr_destroy(&attr);
	return r == 0 ? 0 : err_set(err, ERR_INTERNAL, NULL, r, "start operation: %s", strerror(r));
}

int
ops_start(struct ops *o, const char *kind, const char *target, op_fn fn, void *ud,
	  void (*ud_free)(void *ud), char ret_id[40], struct err *err)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	*op = (struct op){.ops = o,
			  .state = OP_RUNNING,
			  .fn = fn,
			  .ud = ud,
			  .ud_free = ud_free,
			  .created_ms = store_now_ms()};
	uuid_generate_text(op->id);
	snprintf(op->kind, sizeof(op->kind), "%s", kind);
	snprintf(op->target, sizeof(op->target), "%s", target);
	pthread_mutex_lock(&o->lock);
	sweep_locked(o);
	save(op);
	op->next = o->head;
	o->head = op;
	o->running++;
	int r = spawn(op, err);
	if (r < 0) {
		o->running--;
		o->head = op->next;
	}
	pthread_mutex_unlock(&o->lock);
	if (r < 0) {
		free(op);
		return r;
	}
	snprintf(ret_id, 40, "%s", op->id);
	return 0;
}

void
op_progress(struct op *op, const char *step, unsigned percent, const char *fmt, ...)
{
	struct ops *o = op->ops;
	va_list ap;

	pthread_mutex_lock(&o->lock);
	if (op->n_events < MAX_EVENTS) {
		struct op_event *grown =
			realloc(op->events, (op->n_events + 1) * sizeof(*op->events));
		if (grown) {
			op->events = grown;
			struct op_event *e = &op->events[op->n_events++];
			*e = (struct op_event){
				.seq = ++op->seq, .percent = percent, .time_ms = store_now_ms()};
			snprintf(e->step, sizeof(e->step), "%s", step);
			va_start(ap, fmt);
			vsnprintf(e->message, sizeof(e->message), fmt, ap);
			va_end(ap);
			log_info("%s '%s': %s", op->kind, op->target, e->message);
		}
	}
	pthread_cond_broadcast(&o->changed);
	pthread_mutex_unlock(&o->lock);
}

void
op_set_result(struct op *op, const char *type, const void *data, size_t len)
{
	void *copy = malloc(len ? len : 1);

	if (!copy)
		return;
	memcpy(copy, data, len);
	pthread_mutex_lock(&op->ops->lock);
	free(op->result);
	op->result = copy;
	op->result_len = len;
	snprintf(op->result_type, sizeof(op->result_type), "%s", type);
	pthread_mutex_unlock(&op->ops->lock);
}

bool
op_cancelled(const struct op *op)
{
	pthread_mutex_lock(&op->ops->lock);
	bool c = op->cancel;
	pthread_mutex_unlock(&op->ops->lock);
	return c;
}

const char *
op_id(const struct op *op)
{
	return op->id;
}

static struct op *
find_locked(struct ops *o, const char *id)
{
	for (struct op *op = o->head; op; op = op->next)
		if (streq(op->id, id))
			return op;
	return NULL;
}

/* Copies op into v with the events after after_seq; the lock is held. */
static int
view_locked(const struct op *op, uint64_t after_seq, struct op_view *v)
{
	size_t first = 0;

	memset(v, 0, sizeof(*v));
	memcpy(v->id, op->id, sizeof(v->id));
	memcpy(v->kind, op->kind, sizeof(v->kind));
	memcpy(v->target, op->target, sizeof(v->target));
	memcpy(v->result_type, op->result_type, sizeof(v->result_type));
	v->state = op->state;
	v->status = op->status;
	v->created_ms = op->created_ms;
	v->finished_ms = op->finished_ms;
	while (first < op->n_events && op->events[first].seq <= after_seq)
		first++;
	v->n_events = op->n_events - first;
	v->events = malloc((v->n_events ? v->n_events : 1) * sizeof(*v->events));
	v->result = op->result_len ? malloc(op->result_len) : NULL;
	if (!v->events || (op->result_len && !v->result))
		return -ENOMEM;
	if (v->n_events)
		memcpy(v->events, op->events + first, v->n_events * sizeof(*v->events));
	if (op->result_len)
		memcpy(v->result, op->result, op->result_len);
	v->result_len = op->result_len;
	return 0;
}

static bool
has_news(const struct op *op, uint64_t after_seq)
{
	return op->state != OP_RUNNING || op->seq > after_seq;
}

static int
view_from_store(struct ops *o, const char *id, struct op_view *ret, struct err *err)
{
	struct store_operation rec;
	static const enum op_state states[] = {OP_RUNNING, OP_DONE, OP_FAILED, OP_CANCELLED};
	int r = store_operation_get(o->store, id, &rec, err);

	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", rec.id);
	snprintf(ret->kind, sizeof(ret->kind), "%s", rec.kind);
	snprintf(ret->target, sizeof(ret->target), "%s", rec.target);
	ret->state = OP_FAILED;
	for (size_t i = 0; i < ARRAY_SIZE(states); i++)
		if (streq(rec.state, state_names[states[i]]))
			ret->state = states[i];
	ret->status.code = (enum err_code)rec.code;
	snprintf(ret->status.msg, sizeof(ret->status.msg), "%s", rec.message);
	ret->created_ms = rec.created_ms;
	ret->finished_ms = rec.finished_ms;
	return 0;
}

static void
deadline_in(unsigned ms, struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

int
ops_watch(struct ops *o, const char *id, uint64_t after_seq, unsigned wait_ms, struct op_view *ret,
	  struct err *err)
{
	struct timespec deadline;
	struct op *op;
	int r;

	deadline_in(wait_ms > MAX_WAIT_MS ? MAX_WAIT_MS : wait_ms, &deadline);
	pthread_mutex_lock(&o->lock);
	sweep_locked(o);
	if (!(op = find_locked(o, id))) {
		pthread_mutex_unlock(&o->lock);
		return view_from_store(o, id, ret, err);
	}
	while (!has_news(op, after_seq) &&
	       pthread_cond_timedwait(&o->changed, &o->lock, &deadline) != ETIMEDOUT)
		;
	r = view_locked(op, after_seq, ret);
	pthread_mutex_unlock(&o->lock);
	if (r < 0) {
		op_view_free(ret);
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	}
	return 0;
}

int
ops_cancel(struct ops *o, const char *id, struct err *err)
{
	struct op *op;
	int r = 0;

	pthread_mutex_lock(&o->lock);
	if (!(op = find_locked(o, id)))
		r = err_set(err, ERR_NOT_FOUND, "id", ENOENT, "operation '%s' not found", id);
	else if (op->state != OP_RUNNING)
		r = err_set(err, ERR_PRECONDITION, "id", EALREADY, "operation '%s' already %s", id,
			    state_names[op->state]);
	else
		op->cancel = true;
	pthread_mutex_unlock(&o->lock);
	return r;
}

int
ops_list(struct ops *o, bool all, int (*fn)(void *ud, const struct op_view *v), void *ud)
{
	int r = 0;

	pthread_mutex_lock(&o->lock);
	for (struct op *op = o->head; op && r >= 0; op = op->next) {
		struct op_view v;
		if (!all && op->state != OP_RUNNING)
			continue;
		if (view_locked(op, UINT64_MAX, &v) == 0)
			r = fn(ud, &v);
		op_view_free(&v);
	}
	pthread_mutex_unlock(&o->lock);
	return r;
}

void
op_view_free(struct op_view *v)
{
	free(v->events);
	free(v->result);
	v->events = NULL;
	v->result = NULL;
}
