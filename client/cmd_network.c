/* network commands. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "macro.h"
#include "pbjson.h"
#include "units.h"

static const char *
mode_name(Sistemo__V1__NetworkMode m)
{
	return output_enum(&sistemo__v1__network_mode__descriptor, m);
}

static void
list_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__ListNetworksReply *r = (const void *)m;
	static const char *const headers[] = {"NAME", "SUBNET",   "GATEWAY", "BRIDGE",
					      "MODE", "MACHINES", NULL};
	struct table *t = table_new(headers);
	char count[16];

	(void)cli;
	for (size_t i = 0; i < r->n_networks; i++) {
		const Sistemo__V1__Network *n = r->networks[i];
		snprintf(count, sizeof(count), "%u", n->machine_count);
		const char *cells[] = {n->name,   n->subnet,          n->gateway,
				       n->bridge, mode_name(n->mode), count};
		table_add(t, cells);
	}
	table_print(t, stdout, NULL);
	table_free(t);
}

static int
run_list(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ListNetworksRequest req = SISTEMO__V1__LIST_NETWORKS_REQUEST__INIT;
	Sistemo__V1__ListNetworksReply *r = NULL;

	(void)a;
	STUB(c, sistemo__v1__networks__list, SVC_NETWORKS, Sistemo__V1__ListNetworksReply, &req,
	     &r);
	return cmd_finish(cli, c, r, list_text);
}

static void
inspect_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__NetworkDetail *d = (const void *)m;
	static const char *const headers[] = {"MACHINE", "STATUS", "IP", "DNS NAME", "PORTS", NULL};
	struct table *t = table_new(headers);

	(void)cli;
	output_kv(stdout, 10, "Name:", "%s", d->network->name);
	output_kv(stdout, 10, "Subnet:", "%s (gateway %s)", d->network->subnet,
		  d->network->gateway);
	output_kv(stdout, 10, "Bridge:", "%s", d->network->bridge);
	output_kv(stdout, 10, "Mode:", "%s", mode_name(d->network->mode));
	printf("\n");
	for (size_t i = 0; i < d->n_members; i++) {
		const Sistemo__V1__NetworkMember *x = d->members[i];
		char ports[256] = "";
		size_t len = 0;
		for (size_t k = 0; k < x->n_ports && len < sizeof(ports); k++)
			len += (size_t)snprintf(ports + len, sizeof(ports) - len, "%s%u→%u/%s",
						k ? ", " : "", x->ports[k]->host_port,
						x->ports[k]->machine_port,
						output_enum(&sistemo__v1__protocol__descriptor,
							    x->ports[k]->protocol));
		const char *cells[] = {
			x->machine, output_enum(&sistemo__v1__machine_state__descriptor, x->state),
			x->ip, x->dns_name, ports};
		table_add(t, cells);
	}
	table_print(t, stdout, "no machines on this network");
	table_free(t);
}

static int
run_inspect(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__NetworkRef req = SISTEMO__V1__NETWORK_REF__INIT;
	Sistemo__V1__NetworkDetail *r = NULL;

	req.name = a->pos[0];
	STUB(c, sistemo__v1__networks__inspect, SVC_NETWORKS, Sistemo__V1__NetworkDetail, &req, &r);
	return cmd_finish(cli, c, r, inspect_text);
}

static int
parse_mode(const char *s, Sistemo__V1__NetworkMode *ret, struct err *err)
{
	int v;

	if (!s)
		return 0;
	if (pbjson_enum_parse(&sistemo__v1__network_mode__descriptor, s, &v) < 0)
		return err_set(err, ERR_INVALID, "mode", EINVAL,
			       "--mode: unknown mode '%s': use bridge, isolated or none", s);
	*ret = (Sistemo__V1__NetworkMode)v;
	return 0;
}

static void
created_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Network *n = (const void *)m;

	(void)cli;
	printf("Network '%s' created: %s (gateway %s) on bridge %s\n", n->name, n->subnet,
	       n->gateway, n->bridge);
}

static void
deleted_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Network *n = (const void *)m;

	(void)cli;
	printf("Network '%s' deleted (%s, bridge %s)\n", n->name, n->subnet, n->bridge);
}

static int
run_create(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__CreateNetworkRequest req = SISTEMO__V1__CREATE_NETWORK_REQUEST__INIT;
	Sistemo__V1__Network *r = NULL;

	req.name = a->pos[0];
	req.subnet = (char *)(cli_flag(a, "subnet") ?: "");
	if (parse_mode(cli_flag(a, "mode"), &req.mode, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__networks__create, SVC_NETWORKS, Sistemo__V1__Network, &req, &r);
	return cmd_finish(cli, c, r, created_text);
}

static void
mode_text_out(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Network *n = (const void *)m;

	(void)cli;
	printf("Network '%s' is now in mode %s\n", n->name, mode_name(n->mode));
}

static int
run_mode(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__SetNetworkModeRequest req = SISTEMO__V1__SET_NETWORK_MODE_REQUEST__INIT;
	Sistemo__V1__Network *r = NULL;

	req.name = a->pos[0];
	if (parse_mode(a->pos[1], &req.mode, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__networks__set_mode, SVC_NETWORKS, Sistemo__V1__Network, &req, &r);
	return cmd_finish(cli, c, r, mode_text_out);
}

static int
run_delete(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__NetworkRef req = SISTEMO__V1__NETWORK_REF__INIT;
	Sistemo__V1__Network *r = NULL;

	req.name = a->pos[0];
	STUB(c, sistemo__v1__networks__delete, SVC_NETWORKS, Sistemo__V1__Network, &req, &r);
	return cmd_finish(cli, c, r, deleted_text);
}

static int
run_rules(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__RulesRequest req = SISTEMO__V1__RULES_REQUEST__INIT;
	Sistemo__V1__RulesReply *r = NULL;

	req.network = (char *)(a->n_pos ? a->pos[0] : "");
	STUB(c, sistemo__v1__networks__rules, SVC_NETWORKS, Sistemo__V1__RulesReply, &req, &r);
	if (r && cli->output == OUTPUT_TEXT) {
		fputs(r->text, stdout);
		cmd_free(r);
		return 0;
	}
	return cmd_finish(cli, c, r, NULL);
}

static void
ports_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__PortsReply *r = (const void *)m;
	static const char *const headers[] = {"MACHINE", "NETWORK", "HOST", "MACHINE PORT",
					      "PROTO",   "ACTIVE",  NULL};
	struct table *t = table_new(headers);
	char host[40], guest[40];

	(void)cli;
	for (size_t i = 0; i < r->n_ports; i++) {
		const Sistemo__V1__ExposedPort *x = r->ports[i];
		snprintf(host, sizeof(host), "%s:%u", *x->port->host_ip ? x->port->host_ip : "*",
			 x->port->host_port);
		snprintf(guest, sizeof(guest), "%s:%u", x->machine_ip, x->port->machine_port);
		const char *cells[] = {
			x->machine,
			x->network,
			host,
			guest,
			output_enum(&sistemo__v1__protocol__descriptor, x->port->protocol),
			x->active ? "yes" : "no (stopped)"};
		table_add(t, cells);
	}
	table_print(t, stdout, "no exposed ports");
	table_free(t);
}

static int
run_ports(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__PortsRequest req = SISTEMO__V1__PORTS_REQUEST__INIT;
	Sistemo__V1__PortsReply *r = NULL;

	req.network = (char *)(a->n_pos ? a->pos[0] : "");
	STUB(c, sistemo__v1__networks__ports, SVC_NETWORKS, Sistemo__V1__PortsReply, &req, &r);
	return cmd_finish(cli, c, r, ports_text);
}

static void
ping_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__PingReply *r = (const void *)m;

	(void)cli;
	if (r->reachable)
		printf("reachable: %u/%u replies, rtt min/avg/max %.3f/%.3f/%.3f ms\n", r->received,
		       r->sent, r->rtt_min_ms, r->rtt_avg_ms, r->rtt_max_ms);
	else
		printf("unreachable: 0/%u replies (100%% loss)\n", r->sent);
}

static int
run_ping(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__PingRequest req = SISTEMO__V1__PING_REQUEST__INIT;
	Sistemo__V1__PingReply *r = NULL;
	unsigned count = 3;

	req.from = a->pos[0];
	req.to = a->pos[1];
	if (cli_flag(a, "count") &&
	    units_parse_uint("count", cli_flag(a, "count"), 1, 20, &count, &err) < 0)
		return cli_fail(cli, &err);
	req.count = count;
	STUB(c, sistemo__v1__networks__ping, SVC_NETWORKS, Sistemo__V1__PingReply, &req, &r);
	bool reachable = r && r->reachable;
	int rc = cmd_finish(cli, c, r, ping_text);
	/* like ping(8): 1 when no reply came back */
	return rc == 0 && !reachable ? 1 : rc;
}

static const char *const a_ls[] = {"ls", NULL};
static const char *const a_rm[] = {"rm", "remove", NULL};
static const char *const a_inspect[] = {"show", "info", NULL};

static const struct flag create_flags[] = {
	{"subnet", 0, FLAG_STRING, "CIDR", "its subnet", "the first free 10.201-254.0.0/24"},
	{"mode", 0, FLAG_STRING, "MODE", "bridge or isolated (no egress beyond it)", "bridge"},
	{0},
};
static const struct flag ping_flags[] = {
	{"count", 'c', FLAG_STRING, "N", "packets to send (1-20)", "3"},
	{0},
};

const struct cmd network_cmds[] = {
	{.name = "create",
	 .usage = "<name>",
	 .min_args = 1,
	 .max_args = 1,
	 .flags = create_flags,
	 .summary = "Create a named network with its own bridge and subnet",
	 .run = run_create,
	 .examples = "  sistemo network create backend\n"
		     "  sistemo network create prod --subnet 10.210.0.0/24\n"},
	{.name = "list",
	 .examples = "  sistemo network list\n  sistemo network ls -o json\n",
	 .aliases = a_ls,
	 .summary = "List networks",
	 .run = run_list},
	{.name = "inspect",
	 .examples = "  sistemo network inspect backend\n",
	 .aliases = a_inspect,
	 .usage = "<name>",
	 .min_args = 1,
	 .max_args = 1,
	 .complete = "networks",
	 .summary = "Show a network and its machines",
	 .run = run_inspect},
	{.name = "delete",
	 .examples = "  sistemo network delete backend\n",
	 .aliases = a_rm,
	 .usage = "<name>",
	 .min_args = 1,
	 .max_args = 1,
	 .complete = "networks",
	 .summary = "Delete a network (refused while machines use it)",
	 .run = run_delete},
	{.name = "mode",
	 .examples =
		 "  sistemo network mode staging isolated\n  sistemo network mode staging bridge\n",
	 .usage = "<name> <bridge|isolated|none>",
	 .min_args = 2,
	 .max_args = 2,
	 .complete = "networks",
	 .summary = "Set a network's mode: its machines get the stricter of it and their own",
	 .run = run_mode},
	{.name = "rules",
	 .examples = "  sistemo network rules\n  sistemo network rules backend\n",
	 .usage = "[network]",
	 .max_args = 1,
	 .complete = "networks",
	 .summary = "Print the firewall and NAT rules sistemo owns",
	 .run = run_rules},
	{.name = "ports",
	 .examples = "  sistemo network ports\n",
	 .usage = "[network]",
	 .max_args = 1,
	 .complete = "networks",
	 .summary = "List every exposed port",
	 .run = run_ports},
	{.name = "ping",
	 .examples = "  sistemo network ping app db\n  sistemo network ping app db -c 5\n",
	 .usage = "<from-machine> <to-machine>",
	 .min_args = 2,
	 .max_args = 2,
	 .flags = ping_flags,
	 .complete = "machines",
	 .summary = "Ping from inside one machine to another",
	 .run = run_ping},
	{0},
};
