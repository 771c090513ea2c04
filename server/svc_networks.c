/* Networks service: the adapter between the API messages and network.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "network.h"
#include "ssh.h"
#include "store.h"
#include "strbuf.h"
#include "svc_convert.h"

static Sistemo__V1__Network *
net_to_msg(struct call *c, const struct net *n, struct err *err)
{
	Sistemo__V1__Network *o = arena_msg(c->arena, &sistemo__v1__network__descriptor);
	char gw[16];
	struct in_addr a = {.s_addr = htonl(n->gateway)};

	if (store_network_machine_count(c->d->store, n->name, &o->machine_count, err) < 0)
		return NULL;
	inet_ntop(AF_INET, &a, gw, sizeof(gw));
	o->name = arena_strdup(c->arena, n->name);
	o->subnet = arena_strdup(c->arena, n->subnet_text);
	o->gateway = arena_strdup(c->arena, gw);
	o->bridge = arena_strdup(c->arena, n->bridge);
	o->mode = network_mode_from_text(n->mode);
	o->created_unix_ms = n->created_ms;
	o->is_default = n->is_default;
	c->target_name = o->name;
	return o;
}

static int
reply_net(struct call *c, const struct net *n, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__Network *o = net_to_msg(c, n, err);

	if (!o)
		return -EIO;
	*ret = &o->base;
	return 0;
}

static int
networks_create(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__CreateNetworkRequest *req = (const void *)in;
	struct net n;

	c->target_name = arena_strdup(c->arena, req->name);
	if (net_create(c->d, req->name, req->subnet, network_mode_text(req->mode), &n, err) < 0)
		return -EIO;
	return reply_net(c, &n, ret, err);
}

static int
networks_delete(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__NetworkRef *req = (const void *)in;
	struct net n;
	Sistemo__V1__Network *o;

	c->target_name = arena_strdup(c->arena, req->name);
	if (net_resolve(c->d, req->name, &n, err) < 0 || !(o = net_to_msg(c, &n, err)) ||
	    net_delete(c->d, req->name, &n, err) < 0)
		return -EIO;
	o->machine_count = 0;
	*ret = &o->base;
	return 0;
}

static int
networks_set_mode(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		  struct err *err)
{
	const Sistemo__V1__SetNetworkModeRequest *req = (const void *)in;
	struct net n;

	c->target_name = arena_strdup(c->arena, req->name);
	if (net_set_mode(c->d, req->name, network_mode_text(req->mode), &n, err) < 0 ||
	    net_apply(c->d, err) < 0)
		return -EIO;
	return reply_net(c, &n, ret, err);
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
	struct net n;
	Sistemo__V1__Network *o;

	if (net_resolve(x->c->d, r->name, &n, x->err) < 0 || !(o = net_to_msg(x->c, &n, x->err)))
		return -EIO;
	arena_append(x->c->arena, &x->out->networks, &x->out->n_networks, o);
	return 0;
}

static int
networks_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__ListNetworksReply *out =
		arena_msg(c->arena, &sistemo__v1__list_networks_reply__descriptor);
	struct list_ctx x = {c, out, err};
	struct net def;
	Sistemo__V1__Network *o;

	(void)in;
	net_resolve(c->d, "default", &def, NULL);
	if (!(o = net_to_msg(c, &def, err)))
		return -EIO;
	arena_append(c->arena, &out->networks, &out->n_networks, o);
	if (store_network_list(c->d->store, list_one, &x, err) < 0)
		return -EIO;
	c->target_name = NULL;
	*ret = &out->base;
	return 0;
}

/* ---- ports -------------------------------------------------------------------------------- */

struct ports_ctx {
	struct arena *a;
	Sistemo__V1__PortsReply *out;
	Sistemo__V1__NetworkDetail *detail;
};

static int
ports_one(void *ud, const struct port_rec *p)
{
	struct ports_ctx *x = ud;

	if (x->detail) {
		for (size_t i = 0; i < x->detail->n_members; i++) {
			Sistemo__V1__NetworkMember *m = x->detail->members[i];
			if (streq(m->machine_id, p->machine_id))
				arena_append(x->a, &m->ports, &m->n_ports,
					     port_rule_to_msg(x->a, p));
		}
		return 0;
	}
	Sistemo__V1__ExposedPort *o = arena_msg(x->a, &sistemo__v1__exposed_port__descriptor);
	o->machine = arena_strdup(x->a, p->machine);
	o->machine_id = arena_strdup(x->a, p->machine_id);
	o->network = arena_strdup(x->a, p->network);
	o->machine_ip = arena_strdup(x->a, p->machine_ip);
	o->port = port_rule_to_msg(x->a, p);
	o->active = streq(p->state, "running");
	arena_append(x->a, &x->out->ports, &x->out->n_ports, o);
	return 0;
}

static int
networks_ports(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__PortsRequest *req = (const void *)in;
	Sistemo__V1__PortsReply *out = arena_msg(c->arena, &sistemo__v1__ports_reply__descriptor);
	struct ports_ctx x = {c->arena, out, NULL};
	struct net n;

	if (*req->network && net_resolve(c->d, req->network, &n, err) < 0)
		return -EIO;
	if (store_port_list(c->d->store, NULL, *req->network ? n.name : NULL, ports_one, &x, err) <
	    0)
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
	Sistemo__V1__NetworkDetail *out =
		arena_msg(c->arena, &sistemo__v1__network_detail__descriptor);
	struct member_ctx x = {c->arena, out};
	struct ports_ctx px = {c->arena, NULL, out};
	struct net n;

	if (net_resolve(c->d, req->name, &n, err) < 0 || !(out->network = net_to_msg(c, &n, err)))
		return -EIO;
	if (store_machine_list(c->d->store, n.name, member_one, &x, err) < 0 ||
	    store_port_list(c->d->store, NULL, n.name, ports_one, &px, err) < 0)
		return -EIO;
	c->target_name = NULL;
	*ret = &out->base;
	return 0;
}

static int
networks_rules(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__RulesReply *out = arena_msg(c->arena, &sistemo__v1__rules_reply__descriptor);
	struct strbuf sb = {0};

	(void)in;
	if (net_rules_text(c->d, &sb, err) < 0) {
		strbuf_free(&sb);
		return -EIO;
	}
	out->text = arena_strdup(c->arena, sb.len ? sb.data : "");
	strbuf_free(&sb);
	*ret = &out->base;
	return 0;
}

/* ---- ping --------------------------------------------------------------------------------- */

/* busybox and iputils both print "N packets transmitted, M (packets )?received" and
 * "min/avg/max(/mdev)? = a/b/c". */
static void
ping_parse(const char *text, Sistemo__V1__PingReply *o)
{
	const char *p = strstr(text, "packets transmitted");
	const char *eq = strstr(text, "min/avg/max");

	if (p) {
		const char *line = p;
		while (line > text && line[-1] != '\n')
			line--;
		sscanf(line, "%u packets transmitted, %u", &o->sent, &o->received);
	}
	if (eq && (eq = strchr(eq, '=')))
		sscanf(eq + 1, " %lf/%lf/%lf", &o->rtt_min_ms, &o->rtt_avg_ms, &o->rtt_max_ms);
	o->reachable = o->received > 0;
}

static int
networks_ping(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__PingRequest *req = (const void *)in;
	Sistemo__V1__PingReply *out = arena_msg(c->arena, &sistemo__v1__ping_reply__descriptor);
	struct machine_info *from = arena_alloc(c->arena, sizeof(*from));
	struct machine_info *to = arena_alloc(c->arena, sizeof(*to));
	unsigned count = req->count ? req->count : 3;
	struct strbuf cmd = {0}, output = {0};
	int code = 0, r;

	if (count > 20)
		return err_set(err, ERR_INVALID, "count", EINVAL, "count %u: at most 20", count);
	if (store_machine_get(c->d->store, req->from, from, err) < 0)
		return -EIO;
	if (!streq(from->state, "running"))
		return err_set(err, ERR_PRECONDITION, "from", EBUSY,
			       "machine '%s' is %s: ping runs inside it", from->name, from->state);
	const char *target = req->to;
	if (store_machine_get(c->d->store, req->to, to, NULL) == 0)
		target = to->ip;
	c->target_id = arena_strdup(c->arena, from->id);
	c->target_name = arena_strdup(c->arena, from->name);
	strbuf_printf(&cmd, "ping -c %u -W 1 ", count);
	ssh_shell_quote(&cmd, target);
	struct ssh_target t = {from->ip, 22, "root", c->d->ssh_dir, 30000};
	r = ssh_run(&t, cmd.data, 30000 + count * 2000, &output, NULL, &code, err);
	strbuf_free(&cmd);
	if (r < 0) {
		strbuf_free(&output);
		return err_wrap(err, "ping from '%s'", from->name);
	}
	out->output = arena_strdup(c->arena, output.len ? output.data : "");
	strbuf_free(&output);
	out->sent = count;
	ping_parse(out->output, out);
	*ret = &out->base;
	return 0;
}

static const struct method network_methods[] = {
	{"Create", networks_create, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"List", networks_list, 0, NULL},
	{"Inspect", networks_inspect, 0, NULL},
	{"Delete", networks_delete, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"SetMode", networks_set_mode, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Rules", networks_rules, METHOD_BLOCKS, NULL},
	{"Ports", networks_ports, 0, NULL},
	{"Ping", networks_ping, METHOD_BLOCKS, NULL},
};

const struct service service_networks =
	SERVICE(&sistemo__v1__networks__descriptor, "network", network_methods);
