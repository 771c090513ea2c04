#include "rpc_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/transport/ipc/ipc.h>

#include "log.h"

enum ctx_state { CTX_RECV, CTX_SEND };

struct rpc_ctx {
	struct rpc_server *srv;
	nng_ctx ctx;
	nng_aio *aio;
	enum ctx_state state;
	nng_msg *msg;         /* the request while a worker handles it */
	void *prepared;       /* its prepared form */
	struct rpc_ctx *next; /* worker queue link */
};

struct rpc_server {
	nng_socket sock;
	struct rpc_handler h;
	struct rpc_ctx *ctxs;
	unsigned n_ctxs;
	pthread_t *workers;
	unsigned n_workers;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rpc_ctx *queue_head, *queue_tail;
	bool stopping;
};

/* The one place NNG's error space turns into ours. */
static int
nng_fail(struct err *err, int rv, const char *what, const char *url)
{
	enum err_code code = rv == NNG_EADDRINUSE ? ERR_EXISTS
			     : rv == NNG_EPERM    ? ERR_PERMISSION
						  : ERR_INTERNAL;
	return err_set(err, code, NULL, EIO, "%s '%s': %s", what, url, nng_strerror(rv));
}

static void
caller_of(nng_msg *msg, struct caller *c)
{
	nng_pipe p = nng_msg_get_pipe(msg);
	uint64_t uid;

	memset(c, 0, sizeof(*c));
	if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) == 0) {
		c->local = true;
		c->uid = uid;
		snprintf(c->actor, sizeof(c->actor), "uid:%llu", (unsigned long long)uid);
	} else {
		snprintf(c->actor, sizeof(c->actor), "remote");
	}
}

/* Runs the handler on the prepared request and sends the reply in msg on the context. */
static void
answer(struct rpc_ctx *x, nng_msg *msg, void *prepared)
{
	struct caller caller;
	void *reply = NULL;
	size_t reply_len = 0;

	caller_of(msg, &caller);
	x->srv->h.handle(x->srv->h.ud, &caller, prepared, &reply, &reply_len);
	nng_msg_clear(msg);
	if (nng_msg_append(msg, reply, reply_len) != 0) {
		log_error("rpc: out of memory building a reply of %zu bytes", reply_len);
		nng_msg_clear(msg);
	}
	free(reply);
	x->state = CTX_SEND;
	nng_aio_set_msg(x->aio, msg);
	nng_ctx_send(x->ctx, x->aio);
}

static void
enqueue(struct rpc_ctx *x, nng_msg *msg, void *prepared)
{
	struct rpc_server *s = x->srv;

	pthread_mutex_lock(&s->lock);
	x->msg = msg;
	x->prepared = prepared;
	x->next = NULL;
	if (s->queue_tail)
		s->queue_tail->next = x;
	else
		s->queue_head = x;
	s->queue_tail = x;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void
ctx_cb(void *arg)
{
	struct rpc_ctx *x = arg;
	int rv = nng_aio_result(x->aio);

	if (x->state == CTX_SEND) {
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(x->aio));
		x->state = CTX_RECV;
		nng_ctx_recv(x->ctx, x->aio);
		return;
	}
	if (rv != 0) {
		if (rv != NNG_ECLOSED && rv != NNG_ECANCELED)
			log_warn("rpc: receive failed: %s", nng_strerror(rv));
		if (rv != NNG_ECLOSED && rv != NNG_ECANCELED)
			nng_ctx_recv(x->ctx, x->aio);
		return;
	}
	nng_msg *msg = nng_aio_get_msg(x->aio);
	bool blocks = false;
	void *prepared =
		x->srv->h.prepare(x->srv->h.ud, nng_msg_body(msg), nng_msg_len(msg), &blocks);
	if (blocks)
		enqueue(x, msg, prepared);
	else
		answer(x, msg, prepared);
}

static void *
worker_main(void *arg)
{
	struct rpc_server *s = arg;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (!s->queue_head && !s->stopping)
			pthread_cond_wait(&s->cond, &s->lock);
		struct rpc_ctx *x = s->queue_head;
		if (!x) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		s->queue_head = x->next;
		if (!s->queue_head)
			s->queue_tail = NULL;
		pthread_mutex_unlock(&s->lock);
		answer(x, x->msg, x->prepared);
	}
}

static int
listen_on(struct rpc_server *s, const char *url, struct err *err)
{
	nng_listener l;
	int rv;

	if ((rv = nng_listener_create(&l, s->sock, url)) != 0)
		return nng_fail(err, rv, "listen on", url);
	if (strncmp(url, "ipc://", 6) == 0 &&
	    (rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0660)) != 0)
		return nng_fail(err, rv, "set permissions of", url);
	if ((rv = nng_listener_start(l, 0)) != 0)
		return nng_fail(err, rv, "listen on", url);
	return 0;
}

static int
start_contexts(struct rpc_server *s, struct err *err)
{
	for (unsigned i = 0; i < s->n_ctxs; i++) {
		struct rpc_ctx *x = &s->ctxs[i];
		int rv;
		x->srv = s;
		if ((rv = nng_aio_alloc(&x->aio, ctx_cb, x)) != 0 ||
		    (rv = nng_ctx_open(&x->ctx, s->sock)) != 0)
			return err_set(err, ERR_INTERNAL, NULL, EIO, "rpc context: %s",
				       nng_strerror(rv));
		x->state = CTX_RECV;
		nng_ctx_recv(x->ctx, x->aio);
	}
	return 0;
}

static int
start_workers(struct rpc_server *s, struct err *err)
{
	for (unsigned i = 0; i < s->n_workers; i++) {
		int r = pthread_create(&s->workers[i], NULL, worker_main, s);
		if (r != 0) {
			s->n_workers = i;
			return err_set(err, ERR_INTERNAL, NULL, r, "start rpc worker: %s",
				       strerror(r));
		}
	}
	return 0;
}

int
rpc_server_start(const char *url, const struct rpc_handler *h, unsigned n_contexts,
		 unsigned n_workers, struct rpc_server **ret, struct err *err)
{
	struct rpc_server *s = calloc(1, sizeof(*s));
	int rv, r;

	if (!s)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	s->h = *h;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->ctxs = calloc(n_contexts, sizeof(*s->ctxs));
	s->workers = calloc(n_workers, sizeof(*s->workers));
	s->n_ctxs = n_contexts;
	s->n_workers = n_workers;
	if (!s->ctxs || !s->workers) {
		rpc_server_stop(s);
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	}
	if ((rv = nng_rep0_open(&s->sock)) != 0) {
		free(s->ctxs), free(s->workers), free(s);
		return err_set(err, ERR_INTERNAL, NULL, EIO, "rpc socket: %s", nng_strerror(rv));
	}
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, RPC_MAX_MSG);
	if ((r = start_workers(s, err)) < 0 || (r = start_contexts(s, err)) < 0 ||
	    (r = listen_on(s, url, err)) < 0) {
		rpc_server_stop(s);
		return r;
	}
	*ret = s;
	return 0;
}

void
rpc_server_stop(struct rpc_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	/* Workers finish the calls they hold; their replies fail once the socket closes. */
	for (unsigned i = 0; i < s->n_workers; i++)
		if (s->workers[i])
			pthread_join(s->workers[i], NULL);
	if (nng_socket_id(s->sock) > 0)
		nng_close(s->sock);
	for (unsigned i = 0; i < s->n_ctxs; i++)
		if (s->ctxs[i].aio) {
			nng_aio_stop(s->ctxs[i].aio);
			nng_aio_free(s->ctxs[i].aio);
		}
	for (struct rpc_ctx *x = s->queue_head; x; x = x->next) {
		nng_msg_free(x->msg);
		s->h.discard(s->h.ud, x->prepared);
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->ctxs);
	free(s->workers);
	free(s);
}
