#include "dispatch.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "sistemo/v1/rpc.pb-c.h"

struct resolved_service {
	const struct service *svc;
	const struct method **by_index; /* descriptor method index -> entry */
};

struct dispatch {
	struct resolved_service *services;
	size_t n;
	audit_fn audit;
};

static const struct method *
find_entry(const struct service *s, const char *name)
{
	for (size_t i = 0; i < s->n_methods; i++)
		if (streq(s->methods[i].name, name))
			return &s->methods[i];
	return NULL;
}

static int
resolve_service(const struct service *s, struct resolved_service *out, struct err *err)
{
	out->svc = s;
	out->by_index = calloc(s->desc->n_methods, sizeof(const struct method *));
	if (!out->by_index)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	for (unsigned i = 0; i < s->desc->n_methods; i++) {
		const struct method *m = find_entry(s, s->desc->methods[i].name);
		if (!m || (!m->fn && !m->later))
			return err_set(err, ERR_INTERNAL, NULL, ENOENT,
				       "service '%s': method '%s' has no handler", s->desc->name,
				       s->desc->methods[i].name);
		out->by_index[i] = m;
	}
	for (size_t i = 0; i < s->n_methods; i++)
		if (!protobuf_c_service_descriptor_get_method_by_name(s->desc, s->methods[i].name))
			return err_set(err, ERR_INTERNAL, NULL, ENOENT,
				       "service '%s': handler '%s' names no method", s->desc->name,
				       s->methods[i].name);
	return 0;
}

int
dispatch_new(const struct service *const *services, size_t n, audit_fn audit, struct dispatch **ret,
	     struct err *err)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	int r = 0;

	if (!d || !(d->services = calloc(n, sizeof(*d->services)))) {
		free(d);
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	}
	d->n = n;
	d->audit = audit;
	for (size_t i = 0; i < n && r >= 0; i++)
		r = resolve_service(services[i], &d->services[i], err);
	if (r < 0) {
		dispatch_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

void
dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->services[i].by_index);
	free(d->services);
	free(d);
}

/* The service's short name on the wire is the last component: "Machines". */
static const struct resolved_service *
find_service(struct dispatch *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (streq(d->services[i].svc->desc->short_name, name))
			return &d->services[i];
	return NULL;
}

static int
lookup(struct dispatch *d, const Sistemo__V1__Request *req, const struct resolved_service **ret_s,
       const ProtobufCMethodDescriptor **ret_md, struct err *err)
{
	const struct resolved_service *s = find_service(d, req->service);

	if (!s)
		return err_set(err, ERR_UNIMPLEMENTED, "service", ENOENT, "unknown service '%.64s'",
			       req->service);
	*ret_md = protobuf_c_service_descriptor_get_method_by_name(s->svc->desc, req->method);
	if (!*ret_md)
		return err_set(err, ERR_UNIMPLEMENTED, "method", ENOENT,
			       "service '%s' has no method '%.64s'", req->service, req->method);
	*ret_s = s;
	return 0;
}

/* "AttachVolume" -> "attach_volume" */
static void
snake_case(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; in[i] && o + 2 < size; i++) {
		if (isupper((unsigned char)in[i]) && i > 0)
			out[o++] = '_';
		out[o++] = (char)tolower((unsigned char)in[i]);
	}
	out[o] = '\0';
}

/* Without a target from the handler, the first of these request fields that is set names it. */
static const char *
request_target(const ProtobufCMessage *in)
{
	static const char *const names[] = {"machine", "name", "volume", "image",
					    "network", "id",   "from"};
	for (size_t i = 0; in && i < ARRAY_SIZE(names); i++) {
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(in->descriptor, names[i]);
		if (f && f->type == PROTOBUF_C_TYPE_STRING &&
		    f->label != PROTOBUF_C_LABEL_REPEATED) {
			const char *v = *(char *const *)((const char *)in + f->offset);
			if (v && *v)
				return v;
		}
	}
	return "";
}

struct dispatch_req {
	struct dispatch *d;
	struct arena *arena;
	Sistemo__V1__Request *req;          /* NULL when the envelope was bad */
	const struct resolved_service *svc; /* NULL when unresolved */
	const ProtobufCMethodDescriptor *md;
	const struct method *m;
	struct err err; /* a parse or lookup error, answered as is */
};

struct dispatch_req *
dispatch_parse(struct dispatch *d, const void *buf, size_t len)
{
	struct dispatch_req *r = calloc(1, sizeof(*r));

	if (!r || arena_new(&r->arena) < 0)
		abort();
	r->d = d;
	if (len > RPC_MAX_MSG)
		err_set(&r->err, ERR_EXHAUSTED, NULL, EMSGSIZE,
			"request of %zu bytes is over the %u byte limit", len, RPC_MAX_MSG);
	else if (!(r->req = sistemo__v1__request__unpack(arena_allocator(r->arena), len, buf)))
		err_set(&r->err, ERR_INVALID, NULL, EBADMSG, "malformed request envelope");
	else if (r->req->version != 1)
		err_set(&r->err, ERR_INVALID, "version", EPROTO,
			"wire version %u is not supported (this daemon speaks 1)", r->req->version);
	else if (lookup(d, r->req, &r->svc, &r->md, &r->err) >= 0)
		r->m = r->svc->by_index[r->md - r->svc->svc->desc->methods];
	return r;
}

bool
dispatch_req_blocks(const struct dispatch_req *r)
{
	return r->m && (r->m->flags & METHOD_BLOCKS);
}

static int
unimplemented(const struct dispatch_req *r, struct err *err)
{
	char words[64];

	snake_case(r->md->name, words, sizeof(words));
	for (char *u = words; (u = strchr(u, '_'));)
		*u = ' ';
	return err_set(err, ERR_UNIMPLEMENTED, NULL, ENOSYS,
		       "'%s %s' is not implemented yet: it comes with %s", r->svc->svc->noun, words,
		       r->m->later);
}

static int
invoke(const struct dispatch_req *r, struct call *c, ProtobufCMessage **ret_out, struct err *err)
{
	const ProtobufCMethodDescriptor *md = r->md;
	ProtobufCMessage *in = protobuf_c_message_unpack(md->input, arena_allocator(c->arena),
							 r->req->payload.len, r->req->payload.data);
	if (!in)
		return err_set(err, ERR_INVALID, NULL, EBADMSG, "malformed '%s' message for %s.%s",
			       md->input->short_name, r->req->service, r->req->method);
	c->target_name = request_target(in);
	if (!r->m->fn)
		return unimplemented(r, err);
	int ret = r->m->fn(c, in, ret_out, err);
	if (ret >= 0 && (!*ret_out || (*ret_out)->descriptor != md->output))
		return err_set(err, ERR_INTERNAL, NULL, EPROTO, "handler %s.%s returned no '%s'",
			       r->req->service, r->req->method, md->output->short_name);
	return ret;
}

static void
audit(const struct dispatch_req *r, struct daemon *daemon, const struct caller *caller,
      const struct call *c, const struct err *err)
{
	char action[96], method[64];

	snake_case(r->md->name, method, sizeof(method));
	snprintf(action, sizeof(action), "%s.%s", r->svc->svc->noun, method);
	r->d->audit(daemon, caller, action, c, err);
}

static void
pack_reply(const struct err *err, const ProtobufCMessage *out, void **ret, size_t *ret_len)
{
	Sistemo__V1__Reply reply = SISTEMO__V1__REPLY__INIT;
	Sistemo__V1__Status status = SISTEMO__V1__STATUS__INIT;
	void *payload = NULL;

	status.code = (Sistemo__V1__Code)err->code;
	status.message = (char *)err->msg;
	status.field = (char *)err->field;
	reply.status = &status;
	if (err->code == ERR_OK && out) {
		reply.payload.len = protobuf_c_message_get_packed_size(out);
		payload = malloc(reply.payload.len ? reply.payload.len : 1);
		if (!payload)
			abort();
		protobuf_c_message_pack(out, payload);
		reply.payload.data = payload;
	}
	*ret_len = sistemo__v1__reply__get_packed_size(&reply);
	*ret = malloc(*ret_len ? *ret_len : 1);
	if (!*ret)
		abort();
	sistemo__v1__reply__pack(&reply, *ret);
	free(payload);
}

void
dispatch_run(struct dispatch_req *r, struct daemon *daemon, const struct caller *caller,
	     void **ret_reply, size_t *ret_len)
{
	struct call c = {.d = daemon, .arena = r->arena, .caller = caller};
	ProtobufCMessage *out = NULL;

	if (r->m) {
		invoke(r, &c, &out, &r->err);
		if (r->m->flags & METHOD_MUTATES)
			audit(r, daemon, caller, &c, &r->err);
	}
	pack_reply(&r->err, out, ret_reply, ret_len);
	dispatch_req_free(r);
}

void
dispatch_req_free(struct dispatch_req *r)
{
	if (!r)
		return;
	arena_free(r->arena);
	free(r);
}

void
dispatch_handle(struct dispatch *d, struct daemon *daemon, const struct caller *caller,
		const void *req, size_t len, void **ret_reply, size_t *ret_len)
{
	dispatch_run(dispatch_parse(d, req, len), daemon, caller, ret_reply, ret_len);
}
