/* The NNG REP server: a pool of contexts driven by aio callbacks; quick requests are answered
 * on the callback, blocking ones on a small worker pool. Transport only: it knows no methods. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "dispatch.h"
#include "err.h"

struct rpc_server;

struct rpc_handler {
	/* True when the request may block: it then runs on a worker thread. */
	bool (*blocks)(void *ud, const void *req, size_t len);
	/* Answers one request; *ret_reply is malloc'd and freed by the server. */
	void (*handle)(void *ud, const struct caller *caller, const void *req, size_t len,
		       void **ret_reply, size_t *ret_len);
	void *ud;
};

/* Listens on url (ipc:// sockets get mode 0660) and starts serving. */
int rpc_server_start(const char *url, const struct rpc_handler *h, unsigned n_contexts,
		     unsigned n_workers, struct rpc_server **ret, struct err *err);

/* Stops listening, waits for calls in progress, frees everything. Accepts NULL. */
void rpc_server_stop(struct rpc_server *s);
