/* The NNG REP server: a pool of contexts driven by aio callbacks; quick requests are answered
 * on the callback, blocking ones on a small worker pool. Transport only: it knows no methods. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "dispatch.h"
#include "err.h"

struct rpc_server;

struct rpc_handler {
	/* Takes one request's bytes (copying what it keeps) and returns it prepared, with
	 * *ret_blocks true when answering may block: it then runs on a worker thread. */
	void *(*prepare)(void *ud, const void *req, size_t len, bool *ret_blocks);
	/* Answers a prepared request and frees it; *ret_reply is malloc'd, freed by the server. */
	void (*handle)(void *ud, const struct caller *caller, void *prepared, void **ret_reply,
		       size_t *ret_len);
	/* Frees a prepared request that will not be answered (shutdown). */
	void (*discard)(void *ud, void *prepared);
	void *ud;
};

/* Listens on url (ipc:// sockets get mode 0660) and starts serving. */
int rpc_server_start(const char *url, const struct rpc_handler *h, unsigned n_contexts,
		     unsigned n_workers, struct rpc_server **ret, struct err *err);

/* Stops listening, waits for calls in progress, frees everything. Accepts NULL. */
void rpc_server_stop(struct rpc_server *s);
