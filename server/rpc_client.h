/* The client side of the RPC: a REQ socket to the daemon, and a ProtobufCService per API
 * service so callers use the protoc-c generated stubs (sistemo__v1__system__info(...)). */
#pragma once

#include <protobuf-c/protobuf-c.h>

#include "err.h"

struct rpc_client;

/* Connects to the daemon at url ("ipc:///root/.sistemo/run/sistemo.sock"). When nobody
 * listens: ERR_UNAVAILABLE "cannot reach the sistemo daemon at <socket>: is it running?". */
int rpc_client_open(const char *url, struct rpc_client **ret, struct err *err);
void rpc_client_close(struct rpc_client *c);

/* Sets the token sent with every request (remote clients). */
void rpc_client_set_token(struct rpc_client *c, const char *token);

/* How long one call may wait for its reply; default 15 minutes. */
void rpc_client_set_timeout_ms(struct rpc_client *c, int timeout_ms);

/* The service object for the generated stubs. The closure passed to a stub receives the reply
 * message, owned by the closure (free it with protobuf_c_message_free_unpacked(m, NULL)), or
 * NULL on failure: then rpc_client_error() says why. */
ProtobufCService *rpc_client_service(struct rpc_client *c, const ProtobufCServiceDescriptor *d);

/* The status of the last failed call. */
const struct err *rpc_client_error(struct rpc_client *c);

/* A closure for the stubs that stores the reply into *(ProtobufCMessage **)data. */
void rpc_take(const ProtobufCMessage *msg, void *data);

/* Calls service.method with `in` directly and returns the packed reply payload's message
 * unpacked as out_desc in *ret_out (caller frees); 0 or negative errno with err set. */
int rpc_client_call(struct rpc_client *c, const ProtobufCServiceDescriptor *svc,
		    unsigned method_index, const ProtobufCMessage *in, ProtobufCMessage **ret_out,
		    struct err *err);
