/* Inside the store: the connection and the statement helpers its files share (store.c,
 * store_net.c). Not for the rest of the daemon, which goes through store.h. */
#pragma once

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

struct store {
	sqlite3 *db;
	pthread_mutex_t lock;
	unsigned version;
};

/* A value bound to ?N: text (NULL binds "") or an integer. */
struct bind {
	const char *text;
	int64_t i;
	bool is_int;
};
#define TEXT(v) ((struct bind){.text = (v)})
#define INT(v) ((struct bind){.i = (v), .is_int = true})

/* SQLite's last error as ours: constraint violations are ERR_EXISTS (unique) or
 * ERR_PRECONDITION, busy is ERR_UNAVAILABLE, full is ERR_EXHAUSTED. */
int db_error(struct store *s, struct err *err, const char *what);

/* Runs SQL text (several statements) with the lock held. */
int exec_locked(struct store *s, const char *sql, struct err *err);

/* Runs one statement (the caller holds the lock), calling row(st, ud) for each result row
 * until it returns non-zero (1 stops, negative fails). `what` names the work in errors. */
int query_locked(struct store *s, const char *what, const char *sql, const struct bind *b, size_t n,
		 int (*row)(sqlite3_stmt *st, void *ud), void *ud, struct err *err);

/* query_locked under the lock. */
int query(struct store *s, const char *what, const char *sql, const struct bind *b, size_t n,
	  int (*row)(sqlite3_stmt *st, void *ud), void *ud, struct err *err);

/* Column i as text, "" for NULL. */
const char *col_text(sqlite3_stmt *st, int i);

/* A row callback storing column 0 as an unsigned in *(unsigned *)ud. */
int row_count(sqlite3_stmt *st, void *ud);
