/* machine (vm) commands. Every command sends its full request; what the daemon does not do
 * yet it answers with a clear "not implemented yet" status. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "cmd.h"
#include "macro.h"
#include "pbjson.h"
#include "units.h"
#include "watch.h"

#define MACHINE_ARG(a) ((char *)(a)->pos[0])

static const char *
state_name(Sistemo__V1__MachineState s)
{
	return output_enum(&sistemo__v1__machine_state__descriptor, s);
}

static void
list_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__ListMachinesReply *r = (const void *)m;
	static const char *const headers[] = {"ID", "NAME",    "STATUS",  "IMAGE",
					      "IP", "NETWORK", "VOLUMES", NULL};
	struct table *t = table_new(headers);
	char color[64], id[9], vols[16];

	for (size_t i = 0; i < r->n_machines; i++) {
		const Sistemo__V1__Machine *x = r->machines[i];
		snprintf(id, sizeof(id), "%.8s", x->id);
		snprintf(vols, sizeof(vols), "%zu", x->n_volumes);
		const char *cells[] = {
			id,
			x->name,
			output_state_color(state_name(x->state), cli->stdout_tty, color, sizeof(color)),
			x->image,
			x->ip,
			x->network,
			vols};
		table_add(t, cells);
	}
	table_print(t, stdout, "no machines (deploy one: sistemo machine deploy debian)");
	table_free(t);
}

static int
run_list(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ListMachinesRequest req = SISTEMO__V1__LIST_MACHINES_REQUEST__INIT;
	Sistemo__V1__ListMachinesReply *r = NULL;

	req.network = (char *)(cli_flag(a, "network") ?: "");
	STUB(c, sistemo__v1__machines__list, SVC_MACHINES, Sistemo__V1__ListMachinesReply, &req,
	     &r);
	return cmd_finish(cli, c, r, list_text);
}

static void
status_ports(const Sistemo__V1__Machine *x)
{
	for (size_t i = 0; i < x->n_ports; i++) {
		const Sistemo__V1__PortRule *p = x->ports[i];
		output_kv(stdout, 12, i ? "" : "Ports:", "%s:%u → machine:%u (%s)",
			  *p->host_ip ? p->host_ip : "host", p->host_port, p->machine_port,
			  output_enum(&sistemo__v1__protocol__descriptor, p->protocol));
	}
	for (size_t i = 0; i < x->n_volumes; i++) {
		const Sistemo__V1__AttachedVolume *v = x->volumes[i];
		char size[32];
		units_format_mb(v->size_mb, size, sizeof(size));
		output_kv(stdout, 12, i ? "" : "Volumes:", "%s (%s, %s) %s", v->name, v->role, size,
			  v->guest_path);
	}
}

static void
status_list(const char *key, char *const *items, size_t n)
{
	char buf[1024] = "";
	size_t len = 0;

	for (size_t i = 0; i < n && len < sizeof(buf); i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? ", " : "",
					items[i]);
	if (n)
		output_kv(stdout, 12, key, "%s", buf);
}

static void
status_policy(const Sistemo__V1__MachinePolicy *p)
{
	if (!p)
		return;
	output_kv(stdout, 12, "Mode:", "%s",
		  output_enum(&sistemo__v1__network_mode__descriptor, p->network_mode));
	status_list("Allow from:", p->allow_from, p->n_allow_from);
	status_list("Egress to:", p->egress_allow, p->n_egress_allow);
}

static void
status_text(struct cli *cli, const ProtobufCMessage *m)
{
	const Sistemo__V1__Machine *x = (const void *)m;
	char color[64], created[32], mem[32], disk[32];

	cmd_time(x->created_unix_ms, created, sizeof(created));
	units_format_mb(x->memory_mb, mem, sizeof(mem));
	units_format_mb(x->storage_mb, disk, sizeof(disk));
	output_kv(stdout, 12, "ID:", "%s", x->id);
	output_kv(stdout, 12, "Name:", "%s", x->name);
	output_kv(stdout, 12, "Status:", "%s%s%s",
		  output_state_color(state_name(x->state), cli->stdout_tty, color, sizeof(color)),
		  *x->error ? ": " : "", x->error);
	output_kv(stdout, 12, "IP:", "%s", x->ip);
	output_kv(stdout, 12, "Network:", "%s", x->network);
	output_kv(stdout, 12, "Driver:", "%s", x->driver);
	output_kv(stdout, 12, "Resources:", "%u vCPU, %s memory, %s disk", x->vcpus, mem, disk);
	output_kv(stdout, 12, "Image:", "%s", x->image);
	output_kv(stdout, 12, "Created:", "%s", created);
	output_kv(stdout, 12, "PID:", "%lld", (long long)x->pid);
	output_kv(stdout, 12, "Namespace:", "%s", x->namespace_);
	status_ports(x);
	status_policy(x->policy);
}

static int
run_status(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__MachineRef req = SISTEMO__V1__MACHINE_REF__INIT;
	Sistemo__V1__Machine *r = NULL;

	req.machine = MACHINE_ARG(a);
	STUB(c, sistemo__v1__machines__get, SVC_MACHINES, Sistemo__V1__Machine, &req, &r);
	return cmd_finish(cli, c, r, status_text);
}

static int
parse_ports(struct cli *cli, const struct cmd_args *a, const char *flag,
	    Sistemo__V1__PortRule ***ret, size_t *ret_n, struct err *err)
{
	const char *const *specs;
	size_t n = cli_flag_list(a, flag, &specs);
	Sistemo__V1__PortRule **rules =
		arena_alloc(cli->arena, (n + 1) * sizeof(Sistemo__V1__PortRule *));

	*ret = rules;
	for (size_t i = 0; i < n; i++) {
		struct port_spec ps;
		if (units_parse_port_spec(flag, specs[i], &ps, err) < 0)
			return -EINVAL;
		Sistemo__V1__PortRule *p =
			arena_msg(cli->arena, &sistemo__v1__port_rule__descriptor);
		p->host_ip = arena_strdup(cli->arena, ps.host_ip);
		p->host_port = ps.host_port;
		p->machine_port = ps.machine_port;
		p->protocol = ps.udp ? SISTEMO__V1__PROTOCOL__PROTOCOL_UDP
				     : SISTEMO__V1__PROTOCOL__PROTOCOL_TCP;
		rules[i] = p;
	}
	*ret_n = n;
	return 0;
}

static int
parse_mode(const char *s, Sistemo__V1__NetworkMode *ret, struct err *err)
{
	int v;

	if (!s)
		return 0;
	if (pbjson_enum_parse(&sistemo__v1__network_mode__descriptor, s, &v) < 0)
		return err_set(err, ERR_INVALID, "network-mode", EINVAL,
			       "--network-mode: unknown mode '%s': use bridge, isolated or none",
			       s);
	*ret = (Sistemo__V1__NetworkMode)v;
	return 0;
}

static int
parse_policy(const struct cmd_args *a, Sistemo__V1__MachinePolicy *p, struct err *err)
{
	const char *const *v;

	p->n_allow_from = cli_flag_list(a, "allow-from", &v);
	p->allow_from = (char **)v;
	p->n_egress_allow = cli_flag_list(a, "egress-allow", &v);
	p->egress_allow = (char **)v;
	return parse_mode(cli_flag(a, "network-mode"), &p->network_mode, err);
}

static int
parse_sizes(const struct cmd_args *a, Sistemo__V1__DeployRequest *req, struct err *err)
{
	unsigned vcpus = 2;

	if (cli_flag(a, "vcpus") &&
	    units_parse_uint("vcpus", cli_flag(a, "vcpus"), 1, 64, &vcpus, err) < 0)
		return -EINVAL;
	req->vcpus = vcpus;
	req->memory_mb = 512;
	req->storage_mb = *req->volume ? 0 : 2048; /* booting a volume: its size */
	if (cli_flag(a, "memory") &&
	    units_parse_size_mb("memory", cli_flag(a, "memory"), &req->memory_mb, err) < 0)
		return -EINVAL;
	if (cli_flag(a, "storage") &&
	    units_parse_size_mb("storage", cli_flag(a, "storage"), &req->storage_mb, err) < 0)
		return -EINVAL;
	if (req->memory_mb < 128)
		return err_set(err, ERR_INVALID, "memory", EINVAL,
			       "--memory: %llu MB is too small: at least 128M",
			       (unsigned long long)req->memory_mb);
	return 0;
}

/* Follows a machine operation to its end and prints the machine. */
static int
finish_operation(struct cli *cli, Sistemo__V1__Operation *op, const char *verb)
{
	struct err err = {0};

	if (!op)
		return cli_fail(cli, rpc_client_error(cli->client));
	Sistemo__V1__Operation *end = watch_operation(cli, op, &err);
	cmd_free(op);
	if (!end)
		return cli_fail(cli, &err);
	int status = watch_machine_result(cli, end, verb);
	cmd_free(end);
	return status;
}

/* A local image file is sent as an absolute path: the daemon shares this host. */
static const char *
image_arg(struct cli *cli, const char *image)
{
	char *abs;

	if (!strchr(image, '/') && !strstr(image, ".ext4"))
		return image;
	abs = realpath(image, NULL);
	if (!abs)
		return image; /* the daemon says it does not exist */
	char *copy = arena_strdup(cli->arena, abs);
	free(abs);
	return copy;
}

static int
run_deploy(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__DeployRequest req = SISTEMO__V1__DEPLOY_REQUEST__INIT;
	Sistemo__V1__MachinePolicy policy = SISTEMO__V1__MACHINE_POLICY__INIT;
	Sistemo__V1__Operation *op = NULL;
	const char *const *v;

	req.image = (char *)(a->n_pos ? image_arg(cli, a->pos[0]) : "");
	req.name = (char *)(cli_flag(a, "name") ?: "");
	req.network = (char *)(cli_flag(a, "network") ?: "");
	req.volume = (char *)(cli_flag(a, "volume") ?: "");
	req.n_attach = cli_flag_list(a, "attach", &v);
	req.attach = (char **)v;
	req.policy = &policy;
	if (!*req.image && !*req.volume)
		return err_set(&err, ERR_INVALID, "image", EINVAL,
			       "deploy needs an image (e.g. 'sistemo machine deploy debian') or "
			       "--volume VOL"),
		       cli_fail(cli, &err);
	if (parse_sizes(a, &req, &err) < 0 ||
	    parse_ports(cli, a, "expose", &req.ports, &req.n_ports, &err) < 0 ||
	    parse_policy(a, &policy, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__machines__deploy, SVC_MACHINES, Sistemo__V1__Operation, &req, &op);
	return finish_operation(cli, op, "is running");
}

/* start, restart: an operation on one machine. */
static int
run_start(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__MachineRef req = SISTEMO__V1__MACHINE_REF__INIT;
	Sistemo__V1__Operation *op = NULL;

	req.machine = MACHINE_ARG(a);
	STUB(c, sistemo__v1__machines__start, SVC_MACHINES, Sistemo__V1__Operation, &req, &op);
	return finish_operation(cli, op, "is running");
}

static int
stop_request(const struct cmd_args *a, Sistemo__V1__StopRequest *req, struct err *err)
{
	unsigned timeout = 0;

	req->machine = MACHINE_ARG(a);
	req->force = cli_flag_set(a, "force");
	if (cli_flag(a, "timeout") &&
	    units_parse_uint("timeout", cli_flag(a, "timeout"), 1, 3600, &timeout, err) < 0)
		return -EINVAL;
	req->timeout_sec = timeout;
	return 0;
}

static int
run_stop(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__StopRequest req = SISTEMO__V1__STOP_REQUEST__INIT;
	Sistemo__V1__Machine *r = NULL;

	if (stop_request(a, &req, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__machines__stop, SVC_MACHINES, Sistemo__V1__Machine, &req, &r);
	return cmd_finish(cli, c, r, status_text);
}

static int
run_restart(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__StopRequest req = SISTEMO__V1__STOP_REQUEST__INIT;
	Sistemo__V1__Operation *op = NULL;

	if (stop_request(a, &req, &err) < 0)
		return cli_fail(cli, &err);
	STUB(c, sistemo__v1__machines__restart, SVC_MACHINES, Sistemo__V1__Operation, &req, &op);
	return finish_operation(cli, op, "restarted");
}

static int
run_delete(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__DeleteMachineRequest req = SISTEMO__V1__DELETE_MACHINE_REQUEST__INIT;
	Sistemo__V1__DeleteMachineReply *r = NULL;

	req.machine = MACHINE_ARG(a);
	req.preserve_storage = cli_flag_set(a, "preserve-storage");
	if (!cmd_confirm(cli, cli_flag_set(a, "yes"), "delete machine '%s'%s?", req.machine,
			 req.preserve_storage ? " (keeping its root disk as a volume)"
					      : " and its root disk"))
		return 6;
	STUB(c, sistemo__v1__machines__delete, SVC_MACHINES, Sistemo__V1__DeleteMachineReply, &req,
	     &r);
	return cmd_finish(cli, c, r, NULL);
}

static int
run_logs(struct cli *cli, const struct cmd_args *a)
{
	return watch_logs(cli, MACHINE_ARG(a), cli_flag_set(a, "follow"));
}

static int
run_exec(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__ExecRequest req = SISTEMO__V1__EXEC_REQUEST__INIT;
	Sistemo__V1__ExecStarted *r = NULL;
	unsigned timeout = 120;

	req.machine = MACHINE_ARG(a);
	req.argv = (char **)a->pos + 1;
	req.n_argv = a->n_pos - 1;
	if (cli_flag(a, "timeout") &&
	    units_parse_uint("timeout", cli_flag(a, "timeout"), 1, 86400, &timeout, &err) < 0)
		return cli_fail(cli, &err);
	req.timeout_sec = timeout;
	STUB(c, sistemo__v1__machines__exec, SVC_MACHINES, Sistemo__V1__ExecStarted, &req, &r);
	if (!r)
		return cli_fail(cli, rpc_client_error(c));
	int status = watch_exec(cli, r->exec_id);
	cmd_free(r);
	return status;
}

static int
run_ssh(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__ExecRequest req = SISTEMO__V1__EXEC_REQUEST__INIT;
	Sistemo__V1__ExecStarted *r = NULL;

	req.machine = MACHINE_ARG(a);
	req.tty = true;
	req.term = getenv("TERM") ?: "xterm-256color";
	STUB(c, sistemo__v1__machines__exec, SVC_MACHINES, Sistemo__V1__ExecStarted, &req, &r);
	if (!r)
		return cli_fail(cli, rpc_client_error(c));
	int status = watch_terminal(cli, r->exec_id);
	cmd_free(r);
	return status;
}

static int
run_terminal(struct cli *cli, const struct cmd_args *a)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__TerminalRequest req = SISTEMO__V1__TERMINAL_REQUEST__INIT;
	Sistemo__V1__TerminalReply *r = NULL;

	req.machine = MACHINE_ARG(a);
	STUB(c, sistemo__v1__machines__terminal, SVC_MACHINES, Sistemo__V1__TerminalReply, &req,
	     &r);
	return cmd_finish(cli, c, r, NULL);
}

static int
run_expose(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__ExposeRequest req = SISTEMO__V1__EXPOSE_REQUEST__INIT;
	Sistemo__V1__Machine *r = NULL;
	Sistemo__V1__PortRule **ports = NULL;
	size_t n = 0;

	req.machine = MACHINE_ARG(a);
	if (parse_ports(cli, a, "port", &ports, &n, &err) < 0)
		return cli_fail(cli, &err);
	if (n != 1)
		return err_set(&err, ERR_INVALID, "port", EINVAL,
			       "expose needs exactly one --port SPEC (e.g. --port 8080:80)"),
		       cli_fail(cli, &err);
	req.port = ports[0];
	STUB(c, sistemo__v1__machines__expose, SVC_MACHINES, Sistemo__V1__Machine, &req, &r);
	return cmd_finish(cli, c, r, status_text);
}

static int
run_unexpose(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__UnexposeRequest req = SISTEMO__V1__UNEXPOSE_REQUEST__INIT;
	Sistemo__V1__Machine *r = NULL;
	bool udp = false;

	req.machine = MACHINE_ARG(a);
	if (!cli_flag(a, "port"))
		return err_set(&err, ERR_INVALID, "port", EINVAL,
			       "unexpose needs --port HOSTPORT[/udp]"),
		       cli_fail(cli, &err);
	if (units_parse_host_port("port", cli_flag(a, "port"), &req.host_port, &udp, &err) < 0)
		return cli_fail(cli, &err);
	req.protocol =
		udp ? SISTEMO__V1__PROTOCOL__PROTOCOL_UDP : SISTEMO__V1__PROTOCOL__PROTOCOL_TCP;
	STUB(c, sistemo__v1__machines__unexpose, SVC_MACHINES, Sistemo__V1__Machine, &req, &r);
	return cmd_finish(cli, c, r, status_text);
}

static int
run_policy(struct cli *cli, const struct cmd_args *a)
{
	struct err err = {0};
	struct rpc_client *c = cli->client;
	Sistemo__V1__SetPolicyRequest req = SISTEMO__V1__SET_POLICY_REQUEST__INIT;
	Sistemo__V1__MachinePolicy policy = SISTEMO__V1__MACHINE_POLICY__INIT;
	Sistemo__V1__Machine *r = NULL;

	req.machine = MACHINE_ARG(a);
	req.policy = &policy;
	if (parse_policy(a, &policy, &err) < 0)
		return cli_fail(cli, &err);
	/* the parts of the policy not given on the command line are kept */
	Sistemo__V1__MachineRef ref = SISTEMO__V1__MACHINE_REF__INIT;
	Sistemo__V1__Machine *now = NULL;
	ref.machine = req.machine;
	STUB(c, sistemo__v1__machines__get, SVC_MACHINES, Sistemo__V1__Machine, &ref, &now);
	if (!now)
		return cmd_finish(cli, c, NULL, NULL);
	if (now->policy && !cli_flag(a, "allow-from")) {
		policy.allow_from = now->policy->allow_from;
		policy.n_allow_from = now->policy->n_allow_from;
	}
	if (now->policy && !cli_flag(a, "egress-allow")) {
		policy.egress_allow = now->policy->egress_allow;
		policy.n_egress_allow = now->policy->n_egress_allow;
	}
	if (now->policy && !cli_flag(a, "network-mode"))
		policy.network_mode = now->policy->network_mode;
	STUB(c, sistemo__v1__machines__set_policy, SVC_MACHINES, Sistemo__V1__Machine, &req, &r);
	cmd_free(now);
	return cmd_finish(cli, c, r, status_text);
}

static int
run_volume_attach(struct cli *cli, const struct cmd_args *a, bool attach)
{
	struct rpc_client *c = cli->client;
	Sistemo__V1__VolumeAttachRequest req = SISTEMO__V1__VOLUME_ATTACH_REQUEST__INIT;
	Sistemo__V1__Machine *r = NULL;

	req.machine = MACHINE_ARG(a);
	req.volume = a->pos[1];
	if (attach)
		STUB(c, sistemo__v1__machines__attach_volume, SVC_MACHINES, Sistemo__V1__Machine,
		     &req, &r);
	else
		STUB(c, sistemo__v1__machines__detach_volume, SVC_MACHINES, Sistemo__V1__Machine,
		     &req, &r);
	return cmd_finish(cli, c, r, status_text);
}

static int
run_mvol_attach(struct cli *cli, const struct cmd_args *a)
{
	return run_volume_attach(cli, a, true);
}

static int
run_mvol_detach(struct cli *cli, const struct cmd_args *a)
{
	return run_volume_attach(cli, a, false);
}

static const char *const a_ls[] = {"ls", NULL};
static const char *const a_status[] = {"show", "info", NULL};
static const char *const a_delete[] = {"rm", "remove", "destroy", NULL};

static const struct flag deploy_flags[] = {
	{"name", 0, FLAG_STRING, "NAME", "machine name", "derived from the image"},
	{"vcpus", 0, FLAG_STRING, "N", "virtual CPUs (1-64)", "2"},
	{"memory", 0, FLAG_STRING, "SIZE", "memory: MB, or with M/G (at least 128M)", "512M"},
	{"storage", 0, FLAG_STRING, "SIZE", "root disk: MB, or with M/G/T",
	 "2G; with --volume, its size"},
	{"attach", 0, FLAG_LIST, "VOL,...", "data volumes to attach, by name or id", NULL},
	{"expose", 'p', FLAG_LIST, "SPEC",
	 "publish a port: 80, 8080:80, 53:53/udp, 127.0.0.1:8443:443", NULL},
	{"network", 0, FLAG_STRING, "NAME", "named network to join", "the default network"},
	{"volume", 0, FLAG_STRING, "VOL", "boot from this existing volume instead of an image",
	 NULL},
	{"allow-from", 0, FLAG_LIST, "NAME,...", "only these machines or networks may connect in",
	 NULL},
	{"egress-allow", 0, FLAG_LIST, "HOST:PORT,...", "only these outbound destinations", NULL},
	{"network-mode", 0, FLAG_STRING, "MODE", "bridge, isolated or none", "bridge"},
	{0},
};
static const struct flag network_filter_flags[] = {
	{"network", 0, FLAG_STRING, "NAME", "only machines on this network", NULL},
	{0},
};
static const struct flag stop_flags[] = {
	{"timeout", 't', FLAG_STRING, "SEC", "graceful shutdown budget before signals", "30"},
	{"force", 'f', FLAG_BOOL, NULL, "skip the guest shutdown", NULL},
	{0},
};
static const struct flag delete_flags[] = {
	{"preserve-storage", 0, FLAG_BOOL, NULL,
	 "keep the root disk as volume NAME-root (data volumes are always kept)", NULL},
	{"yes", 'y', FLAG_BOOL, NULL, "do not ask for confirmation", NULL},
	{0},
};
static const struct flag logs_flags[] = {
	{"follow", 'f', FLAG_BOOL, NULL, "keep printing new output", NULL},
	{0},
};
static const struct flag exec_flags[] = {
	{"timeout", 't', FLAG_STRING, "SEC", "kill the command after this long", "120"},
	{0},
};
static const struct flag port_flags[] = {
	{"port", 'p', FLAG_LIST, "SPEC", "80, 8080:80, 53:53/udp, 127.0.0.1:8443:443", NULL},
	{0},
};
static const struct flag unexpose_flags[] = {
	{"port", 'p', FLAG_STRING, "HOSTPORT", "host port to release: 8080 or 53/udp", NULL},
	{0},
};
static const struct flag policy_flags[] = {
	{"allow-from", 0, FLAG_LIST, "NAME,...", "only these machines or networks may connect in",
	 NULL},
	{"egress-allow", 0, FLAG_LIST, "HOST:PORT,...", "only these outbound destinations", NULL},
	{"network-mode", 0, FLAG_STRING, "MODE", "bridge, isolated or none", NULL},
	{0},
};

const struct cmd machine_volume_cmds[] = {
	{.name = "attach",
	 .examples = "  sistemo machine volume attach db data\n",
	 .usage = "<machine> <volume>",
	 .min_args = 2,
	 .max_args = 2,
	 .summary = "Attach a data volume to a machine",
	 .run = run_mvol_attach,
	 .complete = "machines,volumes"},
	{.name = "detach",
	 .examples = "  sistemo machine volume detach db data\n",
	 .usage = "<machine> <volume>",
	 .min_args = 2,
	 .max_args = 2,
	 .summary = "Detach a data volume from a machine",
	 .run = run_mvol_detach,
	 .complete = "machines,volumes"},
	{0},
};

#define ONE_MACHINE .usage = "<machine>", .min_args = 1, .max_args = 1, .complete = "machines"

const struct cmd machine_cmds[] = {
	{.name = "deploy",
	 .usage = "[image]",
	 .max_args = 1,
	 .flags = deploy_flags,
	 .summary = "Create and boot a machine from an image",
	 .run = run_deploy,
	 .complete = "images",
	 .description = "The image is a name from the local store or the registry (tiny, debian),\n"
			"a local .ext4 file or an http(s) URL. Sizes take M, G or T.",
	 .examples = "  sistemo machine deploy debian --name web --expose 80\n"
		     "  sistemo machine deploy tiny --name db --network backend --memory 1G\n"
		     "  sistemo machine deploy --volume data-root --name restored\n"},
	{.name = "list",
	 .aliases = a_ls,
	 .flags = network_filter_flags,
	 .summary = "List machines",
	 .run = run_list,
	 .examples = "  sistemo machine list\n  sistemo vm ls -o json\n"},
	{.name = "status",
	 .aliases = a_status,
	 ONE_MACHINE,
	 .summary = "Show a machine: state, IP, driver, resources, ports, volumes",
	 .run = run_status,
	 .examples = "  sistemo machine status web\n"},
	{.name = "start",
	 .examples = "  sistemo machine start web\n",
	 ONE_MACHINE,
	 .summary = "Boot a stopped machine (same IP and ports)",
	 .run = run_start},
	{.name = "stop",
	 .examples = "  sistemo machine stop web\n  sistemo machine stop web --timeout 60\n",
	 ONE_MACHINE,
	 .flags = stop_flags,
	 .summary = "Shut a machine down (its disk is kept)",
	 .run = run_stop},
	{.name = "restart",
	 .examples = "  sistemo machine restart web\n",
	 ONE_MACHINE,
	 .flags = stop_flags,
	 .summary = "Stop and start a machine",
	 .run = run_restart},
	{.name = "delete",
	 .aliases = a_delete,
	 ONE_MACHINE,
	 .flags = delete_flags,
	 .summary = "Delete a machine and its root disk (its data volumes stay)",
	 .run = run_delete,
	 .examples = "  sistemo machine delete web -y\n"
		     "  sistemo machine rm web --preserve-storage\n"},
	{.name = "logs",
	 .examples = "  sistemo machine logs web\n  sistemo machine logs web -f\n",
	 ONE_MACHINE,
	 .flags = logs_flags,
	 .summary = "Print the console and VMM log of a machine",
	 .run = run_logs},
	{.name = "exec",
	 .usage = "<machine> [--] <command> [args...]",
	 .min_args = 2,
	 .max_args = 64,
	 .raw_args = true,
	 .flags = exec_flags,
	 .complete = "machines",
	 .summary = "Run a command in a machine; exits with its exit code",
	 .run = run_exec,
	 .examples = "  sistemo machine exec web uname -a\n"
		     "  sistemo machine exec web -- ls -la /\n"
		     "  sistemo machine exec web 'echo $HOSTNAME > /tmp/x'\n"},
	{.name = "ssh",
	 .examples = "  sistemo machine ssh web\n",
	 ONE_MACHINE,
	 .summary = "Open an interactive shell in a machine",
	 .run = run_ssh},
	{.name = "terminal",
	 .examples = "  sistemo machine terminal web\n",
	 ONE_MACHINE,
	 .summary = "Print the dashboard terminal URL",
	 .run = run_terminal},
	{.name = "expose",
	 ONE_MACHINE,
	 .flags = port_flags,
	 .summary = "Publish a port",
	 .run = run_expose,
	 .examples = "  sistemo machine expose web --port 8080:80\n"
		     "  sistemo machine expose dns --port 53:53/udp\n"},
	{.name = "unexpose",
	 ONE_MACHINE,
	 .flags = unexpose_flags,
	 .summary = "Stop publishing a port",
	 .run = run_unexpose,
	 .examples = "  sistemo machine unexpose web --port 8080\n"},
	{.name = "policy",
	 ONE_MACHINE,
	 .flags = policy_flags,
	 .summary = "Set who may connect to a machine and where it may connect",
	 .run = run_policy,
	 .examples = "  sistemo machine policy db --allow-from app\n"
		     "  sistemo machine policy app --egress-allow 198.51.100.1:443\n"},
	{.name = "volume", .summary = "Attach or detach data volumes", .subs = machine_volume_cmds},
	{0},
};
