/* The generic RPC dispatcher: one table of handlers per protobuf service, resolved against the
 * protobuf-c service descriptors; unpacks, calls, packs, and audits every mutating call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "err.h"

struct daemon;

/* Who is calling: the local peer's uid on the ipc socket, or a remote identity. */
struct caller {
	bool local;
	uint64_t uid;
	char actor[64]; /* "uid:0", "user:admin" */
};

/* One call in progress. Handlers build their reply in `arena` and may name their target for
 * the audit entry; otherwise the dispatcher takes it from the request. */
struct call {
	struct daemon *d;
	struct arena *arena;
	const struct caller *caller;
	const char *target_type, *target_id, *target_name;
};

typedef int (*method_fn)(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret_out,
			 struct err *err);

enum {
	METHOD_MUTATES = 1 << 0, /* written to the audit history */
	METHOD_BLOCKS = 1 << 1,  /* may take long: runs on a worker thread, not an NNG callback */
};

struct method {
	const char *name; /* as in the .proto */
	method_fn fn;     /* NULL: not built yet, see `later` */
	unsigned flags;
	const char *later; /* the capability that brings it, for the UNIMPLEMENTED message */
};

struct service {
	const ProtobufCServiceDescriptor *desc;
	const char *noun; /* audit action prefix: "machine", "network", ... */
	const struct method *methods;
	size_t n_methods;
};

#define SERVICE(d, n, m)                                                                           \
	{                                                                                          \
		.desc = (d), .noun = (n), .methods = (m), .n_methods = ARRAY_SIZE(m)               \
	}

/* The services this daemon serves (svc_*.c). */
extern const struct service service_machines, service_networks, service_volumes, service_images,
	service_system;

struct dispatch;

/* Writes one mutating call to the audit history (the daemon's store). */
typedef void (*audit_fn)(struct daemon *d, const struct caller *caller, const char *action,
			 const struct call *c, const struct err *err);

/* Resolves every service table against its descriptor. Fails, naming it, when a method of the
 * descriptor has no entry or an entry names no method. `audit` is called after every
 * METHOD_MUTATES call, successful or not. */
int dispatch_new(const struct service *const *services, size_t n, audit_fn audit,
		 struct dispatch **ret, struct err *err);
void dispatch_free(struct dispatch *d);

/* One request unpacked once: its envelope, resolved method and the call's arena. */
struct dispatch_req;

/* Unpacks and resolves a packed Request (the bytes are copied). Never fails: a bad request
 * is kept with its error, answered by dispatch_run. */
struct dispatch_req *dispatch_parse(struct dispatch *d, const void *req, size_t len);

/* True when the request names a METHOD_BLOCKS method: run it off the NNG callback. */
bool dispatch_req_blocks(const struct dispatch_req *r);

/* Runs the request and frees it; *ret_reply (malloc'd, caller frees) gets the packed Reply.
 * Never fails: every error becomes a Status in the reply. */
void dispatch_run(struct dispatch_req *r, struct daemon *daemon, const struct caller *caller,
		  void **ret_reply, size_t *ret_len);

/* Frees a parsed request without running it. Accepts NULL. */
void dispatch_req_free(struct dispatch_req *r);

/* dispatch_parse + dispatch_run in one call (tests, inline use). */
void dispatch_handle(struct dispatch *d, struct daemon *daemon, const struct caller *caller,
		     const void *req, size_t len, void **ret_reply, size_t *ret_len);

/* Largest request accepted, in bytes (also the NNG receive limit). */
#define RPC_MAX_MSG (4u << 20)
