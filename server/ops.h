/* Long operations (deploy, start, restart, image pulls and builds): each runs on its own thread,
 * reports progress events, and ends with a result or an error; watchers long-poll for new
 * events. Finished operations stay watchable for 10 minutes; their outcome stays in SQLite. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct store;
struct ops;
struct op;

enum op_state { OP_RUNNING = 1, OP_DONE, OP_FAILED, OP_CANCELLED };

struct op_event {
	uint64_t seq; /* 1, 2, 3... */
	char step[32];
	char message[256];
	unsigned percent;
	int64_t time_ms;
};

/* A copy of an operation as a watcher sees it; free with op_view_free. */
struct op_view {
	char id[40], kind[32], target[128];
	enum op_state state;
	struct err status;    /* why it failed or was cancelled */
	char result_type[64]; /* "sistemo.v1.Machine" */
	void *result;         /* packed result message */
	size_t result_len;
	struct op_event *events; /* those after the watcher's cursor */
	size_t n_events;
	int64_t created_ms, finished_ms;
};

/* The work of an operation: returns 0 or a negative errno with err set. */
typedef int (*op_fn)(struct op *op, void *ud, struct err *err);

int ops_new(struct store *store, struct ops **ret, struct err *err);

/* Asks running operations to cancel, waits for them (up to 60 s), frees everything. */
void ops_free(struct ops *o);

/* Starts fn(op, ud) on a thread of its own; ud_free(ud) runs when it ends (ud_free may be
 * NULL). The operation is recorded in SQLite first. */
int ops_start(struct ops *o, const char *kind, const char *target, op_fn fn, void *ud,
	      void (*ud_free)(void *ud), char ret_id[40], struct err *err);

/* For the work: adds a progress event. */
void op_progress(struct op *op, const char *step, unsigned percent, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* For the work: sets the packed result message (copied). */
void op_set_result(struct op *op, const char *type, const void *data, size_t len);

/* For the work: true once someone asked to cancel; the work rolls back and returns
 * ERR_CANCELLED. */
bool op_cancelled(const struct op *op);

const char *op_id(const struct op *op);

/* Fills ret with the operation and its events after after_seq, waiting up to wait_ms (at most
 * 30000) for a new event or the end when there is none yet. An operation no longer in memory
 * comes from SQLite, without events. ERR_NOT_FOUND for an unknown id. */
int ops_watch(struct ops *o, const char *id, uint64_t after_seq, unsigned wait_ms,
	      struct op_view *ret, struct err *err);

/* Asks a running operation to cancel. ERR_PRECONDITION when it already ended. */
int ops_cancel(struct ops *o, const char *id, struct err *err);

/* Calls fn for each operation in memory (running ones only unless all), newest first. */
int ops_list(struct ops *o, bool all, int (*fn)(void *ud, const struct op_view *v), void *ud);

void op_view_free(struct op_view *v);
