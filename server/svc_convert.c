#include "svc_convert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "config.h"
#include "macro.h"

static const char *const machine_states[] = {
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_CREATING] = "creating",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_STARTING] = "starting",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_RUNNING] = "running",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_STOPPING] = "stopping",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_STOPPED] = "stopped",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_DELETING] = "deleting",
	[SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_ERROR] = "error",
};

Sistemo__V1__MachineState
machine_state_from_text(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(machine_states); i++)
		if (machine_states[i] && streq(machine_states[i], s))
			return (Sistemo__V1__MachineState)i;
	return SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_UNSPECIFIED;
}

Sistemo__V1__NetworkMode
network_mode_from_text(const char *s)
{
	if (streq(s, "isolated"))
		return SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_ISOLATED;
	if (streq(s, "none"))
		return SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_NONE;
	return SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_BRIDGE;
}

/* "a,b" -> {"a", "b"}; empty items are dropped. */
static void
split_list(struct arena *a, const char *list, char ***ret, size_t *ret_n)
{
	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len)
			arena_append(a, (void *)ret, ret_n, arena_printf(a, "%.*s", (int)len, p));
		p += len + (p[len] == ',');
	}
}

char *
join_list(struct arena *a, char *const *items, size_t n)
{
	char *out = arena_strdup(a, "");

	for (size_t i = 0; i < n; i++)
		if (items[i] && *items[i])
			out = arena_printf(a, "%s%s%s", out, *out ? "," : "", items[i]);
	return out;
}

const char *
network_mode_text(Sistemo__V1__NetworkMode m)
{
	switch (m) {
	case SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_ISOLATED:
		return "isolated";
	case SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_NONE:
		return "none";
	default:
		return "bridge";
	}
}

Sistemo__V1__PortRule *
port_rule_to_msg(struct arena *a, const struct port_rec *p)
{
	Sistemo__V1__PortRule *o = arena_msg(a, &sistemo__v1__port_rule__descriptor);

	o->host_ip = arena_strdup(a, p->host_ip);
	o->host_port = p->host_port;
	o->machine_port = p->machine_port;
	o->protocol = streq(p->protocol, "udp") ? SISTEMO__V1__PROTOCOL__PROTOCOL_UDP
						: SISTEMO__V1__PROTOCOL__PROTOCOL_TCP;
	return o;
}

Sistemo__V1__Machine *
machine_to_msg(struct arena *a, const struct machine_rec *m)
{
	Sistemo__V1__Machine *o = arena_msg(a, &sistemo__v1__machine__descriptor);

	o->id = arena_strdup(a, m->id);
	o->name = arena_strdup(a, m->name);
	o->state = machine_state_from_text(m->state);
	o->image = arena_strdup(a, m->image);
	o->image_digest = arena_strdup(a, m->image_digest);
	o->ip = arena_strdup(a, m->ip);
	o->mac = arena_strdup(a, m->mac);
	o->network = arena_strdup(a, m->network);
	o->namespace_ = arena_strdup(a, m->namespace);
	o->driver = arena_strdup(a, m->driver);
	o->vcpus = m->vcpus;
	o->memory_mb = m->memory_mb;
	o->storage_mb = m->storage_mb;
	o->pid = m->pid;
	o->created_unix_ms = m->created_ms;
	o->state_changed_unix_ms = m->state_changed_ms;
	o->boot_ms = m->boot_ms;
	o->error = arena_strdup(a, m->error);
	o->policy = arena_msg(a, &sistemo__v1__machine_policy__descriptor);
	o->policy->network_mode = network_mode_from_text(m->network_mode ? m->network_mode : "");
	split_list(a, m->allow_from, &o->policy->allow_from, &o->policy->n_allow_from);
	split_list(a, m->egress_allow, &o->policy->egress_allow, &o->policy->n_egress_allow);
	return o;
}

Sistemo__V1__Machine *
machine_info_to_msg(struct arena *a, const struct machine_info *m)
{
	struct machine_rec r = {
		.id = m->id,
		.name = m->name,
		.state = m->state,
		.image = m->image,
		.image_digest = m->image_digest,
		.network = m->network,
		.driver = m->driver,
		.ip = m->ip,
		.mac = m->mac,
		.namespace = m->namespace_,
		.error = m->error,
		.vcpus = m->vcpus,
		.memory_mb = m->memory_mb,
		.storage_mb = m->storage_mb,
		.boot_ms = m->boot_ms,
		.pid = m->pid,
		.created_ms = m->created_ms,
		.state_changed_ms = m->state_changed_ms,
		.network_mode = m->network_mode,
		.allow_from = m->allow_from,
		.egress_allow = m->egress_allow,
	};
	return machine_to_msg(a, &r);
}

int
subnet_gateway(const char *cidr, char *out, size_t size)
{
	uint32_t addr;
	unsigned prefix;
	struct in_addr in;

	if (config_parse_cidr(cidr, 1, 30, &addr, &prefix) < 0)
		return -EINVAL;
	in.s_addr = htonl(addr + 1);
	return inet_ntop(AF_INET, &in, out, (socklen_t)size) ? 0 : -EINVAL;
}
