#include "rpc_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "dispatch.h"
#include "macro.h"
#include "sistemo/v1/rpc.pb-c.h"

#define MAX_SERVICES 8

struct client_service {
	ProtobufCService base; /* first: the stubs hand us &base */
	struct rpc_client *c;
};

struct rpc_client {
	nng_socket sock;
	char url[4200];
	char *token;
	struct err last;
	struct client_service services[MAX_SERVICES];
	size_t n_services;
};

static int
unreachable(struct rpc_client *c, int rv, struct err *err)
{
	const char *where = strncmp(c->url, "ipc://", 6) == 0 ? c->url + 6 : c->url;

	return err_set(err, ERR_UNAVAILABLE, NULL, ECONNREFUSED,
		       "cannot reach the sistemo daemon at %s: is it running? (sistemo up)%s%s",
		       where, rv == NNG_EPERM ? ": " : "",
		       rv == NNG_EPERM ? "permission denied" : "");
}

int
rpc_client_open(const char *url, struct rpc_client **ret, struct err *err)
{
	struct rpc_client *c = calloc(1, sizeof(*c));
	int rv;

	if (!c)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	snprintf(c->url, sizeof(c->url), "%s", url);
	if ((rv = nng_req0_open(&c->sock)) != 0) {
		free(c);
		return err_set(err, ERR_INTERNAL, NULL, EIO, "rpc socket: %s", nng_strerror(rv));
	}
	/* A request is never sent twice: resending would repeat a mutation. */
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, 15 * 60 * 1000);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 64u << 20);
	if ((rv = nng_dial(c->sock, url, NULL, 0)) != 0) {
		int r = unreachable(c, rv, err);
		rpc_client_close(c);
		return r;
	}
	*ret = c;
	return 0;
}

void
rpc_client_close(struct rpc_client *c)
{
	if (!c)
		return;
	nng_close(c->sock);
	free(c->token);
	free(c);
}

void
rpc_client_set_token(struct rpc_client *c, const char *token)
{
	free(c->token);
	c->token = token ? strdup(token) : NULL;
}

void
rpc_client_set_timeout_ms(struct rpc_client *c, int timeout_ms)
{
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
}

const struct err *
rpc_client_error(struct rpc_client *c)
{
	return &c->last;
}

void
rpc_take(const ProtobufCMessage *msg, void *data)
{
	*(const ProtobufCMessage **)data = msg;
}

static int
roundtrip(struct rpc_client *c, const Sistemo__V1__Request *req, nng_msg **ret, struct err *err)
{
	nng_msg *msg;
	size_t len = sistemo__v1__request__get_packed_size(req);
	int rv;

	if (len > RPC_MAX_MSG)
		return err_set(err, ERR_EXHAUSTED, NULL, EMSGSIZE,
			       "request of %zu bytes is over the %u byte limit", len, RPC_MAX_MSG);
	if ((rv = nng_msg_alloc(&msg, len)) != 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	sistemo__v1__request__pack(req, nng_msg_body(msg));
	if ((rv = nng_sendmsg(c->sock, msg, 0)) != 0) {
		nng_msg_free(msg);
		return unreachable(c, rv, err);
	}
	if ((rv = nng_recvmsg(c->sock, ret, 0)) != 0)
		return rv == NNG_ETIMEDOUT ? err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
						     "the daemon did not answer %s.%s in time",
						     req->service, req->method)
					   : unreachable(c, rv, err);
	return 0;
}

static int
unpack_reply(nng_msg *msg, const ProtobufCMessageDescriptor *out_desc, ProtobufCMessage **ret,
	     struct err *err)
{
	Sistemo__V1__Reply *reply =
		sistemo__v1__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	int r = 0;

	if (!reply)
		return err_set(err, ERR_INTERNAL, NULL, EBADMSG, "malformed reply from the daemon");
	if (reply->status && reply->status->code != SISTEMO__V1__CODE__OK) {
		r = err_set(err, (enum err_code)reply->status->code, reply->status->field, EIO,
			    "%s", reply->status->message);
	} else {
		*ret = protobuf_c_message_unpack(out_desc, NULL, reply->payload.len,
						 reply->payload.data);
		if (!*ret)
			r = err_set(err, ERR_INTERNAL, NULL, EBADMSG,
				    "malformed '%s' in the daemon's reply", out_desc->short_name);
	}
	sistemo__v1__reply__free_unpacked(reply, NULL);
	return r;
}

int
rpc_client_call(struct rpc_client *c, const ProtobufCServiceDescriptor *svc, unsigned method_index,
		const ProtobufCMessage *in, ProtobufCMessage **ret_out, struct err *err)
{
	const ProtobufCMethodDescriptor *md = &svc->methods[method_index];
	Sistemo__V1__Request req = SISTEMO__V1__REQUEST__INIT;
	cleanup_free uint8_t *payload = NULL;
	nng_msg *msg = NULL;

	req.version = 1;
	req.service = (char *)svc->short_name;
	req.method = (char *)md->name;
	req.token = c->token ? c->token : "";
	req.payload.len = protobuf_c_message_get_packed_size(in);
	payload = malloc(req.payload.len ? req.payload.len : 1);
	if (!payload)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	protobuf_c_message_pack(in, payload);
	req.payload.data = payload;
	int r = roundtrip(c, &req, &msg, err);
	if (r < 0)
		return r;
	r = unpack_reply(msg, md->output, ret_out, err);
	nng_msg_free(msg);
	return r;
}

static void
service_invoke(ProtobufCService *service, unsigned method_index, const ProtobufCMessage *input,
	       ProtobufCClosure closure, void *closure_data)
{
	struct client_service *cs = (struct client_service *)service;
	ProtobufCMessage *out = NULL;

	err_clear(&cs->c->last);
	if (rpc_client_call(cs->c, service->descriptor, method_index, input, &out, &cs->c->last) <
	    0)
		out = NULL;
	closure(out, closure_data);
}

static void
service_destroy(ProtobufCService *service)
{
	(void)service; /* owned by the client */
}

ProtobufCService *
rpc_client_service(struct rpc_client *c, const ProtobufCServiceDescriptor *d)
{
	for (size_t i = 0; i < c->n_services; i++)
		if (c->services[i].base.descriptor == d)
			return &c->services[i].base;
	if (c->n_services == MAX_SERVICES)
		abort(); /* programmer error: there are five services */
	struct client_service *cs = &c->services[c->n_services++];
	cs->base.descriptor = d;
	cs->base.invoke = service_invoke;
	cs->base.destroy = service_destroy;
	cs->c = c;
	return &cs->base;
}
