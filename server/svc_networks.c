/* Networks service. The default network (from config) and listing work now; named networks,
 * rules and tools arrive with networking. */
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "store.h"
#include "svc_convert.h"

#define LATER_NET "networking (issue 4)"

static Sistemo__V1__Network *
default_network(struct call *c, struct err *err)
{
	Sistemo__V1__Network *n = arena_msg(c->arena, &sistemo__v1__network__descriptor);
	char gw[64] = "";
	unsigned count = 0;

	if (store_network_machine_count(c->d->store, "default", &count, err) < 0)
		return NULL;
	subnet_gateway(c->d->cfg.bridge_subnet, gw, sizeof(gw));
	n->name = "default";
	n->subnet = c->d->cfg.bridge_subnet;
	n->gateway = arena_strdup(c->arena, gw);
	n->bridge = "sistemo0";
	n->mode = SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_BRIDGE;
	n->machine_count = count;
	n->created_unix_ms = c->d->started_ms;
	n->is_default = true;
	return n;
}

struct list_ctx {
	struct call *c;
	Sistemo__V1__ListNetworksReply *out;
	struct err *err;
};

static int
list_one(void *ud, const struct network_rec *r)
{
	struct list_ctx *x = ud;
	struct arena *a = x->c->arena;
	Sistemo__V1__Network *n = arena_msg(a, &sistemo__v1__network__descriptor);
	char gw[64] = "";

	subnet_gateway(r->subnet, gw, sizeof(gw));
	n->name = arena_strdup(a, r->name);
	n->subnet = arena_strdup(a, r->subnet);
	n->gateway = arena_strdup(a, gw);
	n->bridge = arena_strdup(a, r->bridge);
	n->mode = network_mode_from_text(r->mode);
	n->created_unix_ms = r->created_ms;
	arena_append(a, &x->out->networks, &x->out->n_networks, n);
	return 0;
}

static int
networks_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__ListNetworksReply *out =
		arena_msg(c->arena, &sistemo__v1__list_networks_reply__descriptor);
	struct list_ctx x = {c, out, err};
	Sistemo__V1__Network *def = default_network(c, err);

	(void)in;
	if (!def)
		return -EIO;
	arena_append(c->arena, &out->networks, &out->n_networks, def);
	if (store_network_list(c->d->store, list_one, &x, err) < 0)
		return -EIO;
	for (size_t i = 1; i < out->n_networks; i++)
		if (store_network_machine_count(c->d->store, out->networks[i]->name,
						&out->networks[i]->machine_count, err) < 0)
			return -EIO;
	*ret = &out->base;
	return 0;
}

struct member_ctx {
	struct arena *a;
	Sistemo__V1__NetworkDetail *out;
};

static int
member_one(void *ud, const struct machine_rec *m)
{
	struct member_ctx *x = ud;
	Sistemo__V1__NetworkMember *o = arena_msg(x->a, &sistemo__v1__network_member__descriptor);

	o->machine = arena_strdup(x->a, m->name);
	o->machine_id = arena_strdup(x->a, m->id);
	o->state = machine_state_from_text(m->state);
	o->ip = arena_strdup(x->a, m->ip);
	o->dns_name = arena_printf(x->a, "%s.%s.sistemo", m->name, m->network);
	arena_append(x->a, &x->out->members, &x->out->n_members, o);
	return 0;
}

static int
networks_inspect(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		 struct err *err)
{
	const Sistemo__V1__NetworkRef *req = (const void *)in;
	ProtobufCMessage *list = NULL;
	Sistemo__V1__NetworkDetail *out =
		arena_msg(c->arena, &sistemo__v1__network_detail__descriptor);
	struct member_ctx x = {c->arena, out};

	if (networks_list(c, in, &list, err) < 0)
		return -EIO;
	Sistemo__V1__ListNetworksReply *all = (void *)list;
	for (size_t i = 0; i < all->n_networks && !out->network; i++)
		if (streq(all->networks[i]->name, req->name) ||
		    streq(all->networks[i]->bridge, req->name))
			out->network = all->networks[i];
	if (!out->network)
		return err_set(err, ERR_NOT_FOUND, "name", ENOENT,
			       "network '%s' not found (sistemo network list shows them)",
			       req->name);
	if (store_machine_list(c->d->store, out->network->name, member_one, &x, err) < 0)
		return -EIO;
	*ret = &out->base;
	return 0;
}

static const struct method network_methods[] = {
	{"Create", NULL, METHOD_MUTATES, LATER_NET},
	{"List", networks_list, 0, NULL},
	{"Inspect", networks_inspect, 0, NULL},
	{"Delete", NULL, METHOD_MUTATES, LATER_NET},
	{"SetMode", NULL, METHOD_MUTATES, LATER_NET},
	{"Rules", NULL, 0, LATER_NET},
	{"Ports", NULL, 0, LATER_NET},
	{"Ping", NULL, METHOD_BLOCKS, LATER_NET},
};

const struct service service_networks =
	SERVICE(&sistemo__v1__networks__descriptor, "network", network_methods);
