/* Machines service: the adapter between the API messages and machine.c / exec.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "dispatch.h"
#include "exec.h"
#include "log.h"
#include "machine.h"
#include "macro.h"
#include "network.h"
#include "ops.h"
#include "store.h"
#include "svc_convert.h"
#include "svc_exec.h"
#include "svc_volumes.h"
#include "volume.h"
#include "sistemo/v1/rpc.pb-c.h"

#define LATER_DASHBOARD "the dashboard and its browser terminal"
#define MAX_WAIT_MS 30000
#define MAX_LOG_CHUNK (1u << 20)

struct ports_ctx {
	struct arena *a;
	Sistemo__V1__Machine *msg;
};

static int
port_one(void *ud, const struct port_rec *p)
{
	struct ports_ctx *x = ud;

	arena_append(x->a, &x->msg->ports, &x->msg->n_ports, port_rule_to_msg(x->a, p));
	return 0;
}

struct list_ctx {
	struct daemon *d;
	struct arena *a;
	Sistemo__V1__ListMachinesReply *out;
	Sistemo__V1__MachineState state;
};

static int
list_one(void *ud, const struct machine_rec *m)
{
	struct list_ctx *x = ud;

	if (x->state && machine_state_from_text(m->state) != x->state)
		return 0;
	struct ports_ctx px = {x->a, machine_to_msg(x->a, m)};
	if (store_port_list(x->d->store, m->id, NULL, port_one, &px, NULL) < 0 ||
	    machine_volumes_to_msg(x->d, x->a, px.msg, NULL) < 0)
		return -EIO;
	arena_append(x->a, &x->out->machines, &x->out->n_machines, px.msg);
	return 0;
}

static int
machines_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ListMachinesRequest *req = (const void *)in;
	Sistemo__V1__ListMachinesReply *out =
		arena_msg(c->arena, &sistemo__v1__list_machines_reply__descriptor);
	struct list_ctx x = {c->d, c->arena, out, req->state};

	if (store_machine_list(c->d->store, req->network, list_one, &x, err) < 0)
		return -EIO;
	*ret = &out->base;
	return 0;
}

/* A machine message with its exposed ports. */
static Sistemo__V1__Machine *
machine_full_msg(struct daemon *d, struct arena *a, const struct machine_info *m)
{
	struct ports_ctx x = {a, machine_info_to_msg(a, m)};

	if (store_port_list(d->store, m->id, NULL, port_one, &x, NULL) < 0)
		log_warn("machine '%s': could not read its ports", m->name);
	if (machine_volumes_to_msg(d, a, x.msg, NULL) < 0)
		log_warn("machine '%s': could not read its volumes", m->name);
	return x.msg;
}

static int
reply_machine(struct call *c, const struct machine_info *m, ProtobufCMessage **ret)
{
	Sistemo__V1__Machine *msg = machine_full_msg(c->d, c->arena, m);

	c->target_id = arena_strdup(c->arena, m->id);
	c->target_name = arena_strdup(c->arena, m->name);
	*ret = &msg->base;
	return 0;
}

static int
need_ref(const char *ref, struct err *err)
{
	if (!*ref)
		return err_set(err, ERR_INVALID, "machine", EINVAL,
			       "a machine name or id is required");
	return 0;
}

static int
machines_get(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__MachineRef *req = (const void *)in;
	struct machine_info m;

	if (need_ref(req->machine, err) < 0 ||
	    store_machine_get(c->d->store, req->machine, &m, err) < 0)
		return -EINVAL;
	return reply_machine(c, &m, ret);
}

/* --- operations: deploy, start, restart -------------------------------------------------- */

enum job_kind { JOB_DEPLOY, JOB_START, JOB_RESTART };

#define DEPLOY_PORTS_MAX 64

struct job {
	struct daemon *d;
	enum job_kind kind;
	char name[64], image[PATH_MAX], ref[256], network[32];
	unsigned vcpus, timeout_sec;
	uint64_t memory_mb, storage_mb;
	struct net_port ports[DEPLOY_PORTS_MAX];
	size_t n_ports;
	char mode[16], allow_from[1024], egress_allow[1024];
	char volume[VOLUME_NAME_MAX + 16];
	char attach[VOLUME_MAX_ATTACHED][VOLUME_NAME_MAX + 16];
	const char *attach_refs[VOLUME_MAX_ATTACHED];
	size_t n_attach;
};

/* Packs the machine as the operation's result. */
static void
set_result(struct daemon *j_daemon, struct op *op, const struct machine_info *m)
{
	struct arena *a;

	if (arena_new(&a) < 0)
		return;
	Sistemo__V1__Machine *msg = machine_full_msg(j_daemon, a, m);
	size_t len = protobuf_c_message_get_packed_size(&msg->base);
	uint8_t *buf = arena_alloc(a, len ? len : 1);
	protobuf_c_message_pack(&msg->base, buf);
	op_set_result(op, "sistemo.v1.Machine", buf, len);
	arena_free(a);
}

static int
job_work(struct op *op, void *ud, struct err *err)
{
	struct job *j = ud;
	struct machine_info m;
	struct machine_spec spec = {
		j->name,      j->image,       j->vcpus,
		j->memory_mb, j->storage_mb,  j->network,
		j->ports,     j->n_ports,     {j->mode, j->allow_from, j->egress_allow},
		j->volume,    j->attach_refs, j->n_attach};
	int r;

	if (j->kind == JOB_DEPLOY) {
		r = machine_deploy(j->d, &spec, op, &m, err);
	} else {
		/* a restart stops first; a start of a running machine fails in machine_start */
		r = j->kind == JOB_RESTART
			    ? machine_stop(j->d, j->ref, j->timeout_sec, false, &m, err)
			    : 0;
		if (r >= 0)
			r = machine_start(j->d, j->ref, op, &m, err);
	}
	if (r >= 0)
		set_result(j->d, op, &m);
	return r;
}

static int
start_job(struct call *c, struct job *j, const char *kind, const char *target,
	  ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__Operation *o = arena_msg(c->arena, &sistemo__v1__operation__descriptor);
	char id[40];

	j->d = c->d;
	if (ops_start(c->d->ops, kind, target, job_work, j, free, id, err) < 0) {
		free(j);
		return -EIO;
	}
	o->id = arena_strdup(c->arena, id);
	o->kind = (char *)kind;
	o->target = arena_strdup(c->arena, target);
	o->state = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;
	o->created_unix_ms = store_now_ms();
	*ret = &o->base;
	return 0;
}

static int
port_from_msg(const Sistemo__V1__PortRule *p, struct net_port *ret, struct err *err)
{
	memset(ret, 0, sizeof(*ret));
	if (strlen(p->host_ip) >= sizeof(ret->host_ip))
		return err_set(err, ERR_INVALID, "port", EINVAL, "host address '%.32s' is invalid",
			       p->host_ip);
	snprintf(ret->host_ip, sizeof(ret->host_ip), "%s", p->host_ip);
	ret->host_port = p->host_port;
	ret->machine_port = p->machine_port ? p->machine_port : p->host_port;
	snprintf(ret->protocol, sizeof(ret->protocol), "%s",
		 p->protocol == SISTEMO__V1__PROTOCOL__PROTOCOL_UDP ? "udp" : "tcp");
	return net_port_check(ret, err);
}

static int
port_available(struct daemon *d, const Sistemo__V1__PortRule *p, struct net_port *ret,
	       struct err *err)
{
	int r = port_from_msg(p, ret, err);

	return r < 0 ? r : net_port_available(d, ret, err);
}

/* The request's network, ports and policy into the job, checked: nothing is created when one
 * of them is wrong. */
static int
deploy_network(struct call *c, const Sistemo__V1__DeployRequest *req, struct job *j,
	       struct err *err)
{
	const Sistemo__V1__MachinePolicy *p = req->policy;
	struct net n;
	int r;

	if ((r = net_resolve(c->d, req->network, &n, err)) < 0)
		return r;
	snprintf(j->network, sizeof(j->network), "%s", n.name);
	if (req->n_ports > DEPLOY_PORTS_MAX)
		return err_set(err, ERR_INVALID, "expose", E2BIG, "at most %d ports per deploy",
			       DEPLOY_PORTS_MAX);
	for (size_t i = 0; i < req->n_ports; i++) {
		if ((r = port_available(c->d, req->ports[i], &j->ports[i], err)) < 0)
			return r;
		for (size_t k = 0; k < i; k++)
			if (j->ports[k].host_port == j->ports[i].host_port &&
			    streq(j->ports[k].protocol, j->ports[i].protocol))
				return err_set(err, ERR_INVALID, "expose", EEXIST,
					       "host port %u/%s is given twice",
					       j->ports[i].host_port, j->ports[i].protocol);
	}
	j->n_ports = req->n_ports;
	snprintf(j->mode, sizeof(j->mode), "%s", p ? network_mode_text(p->network_mode) : "bridge");
	if (p) {
		snprintf(j->allow_from, sizeof(j->allow_from), "%s",
			 join_list(c->arena, p->allow_from, p->n_allow_from));
		snprintf(j->egress_allow, sizeof(j->egress_allow), "%s",
			 join_list(c->arena, p->egress_allow, p->n_egress_allow));
	}
	struct net_policy pol = {j->mode, j->allow_from, j->egress_allow};
	return net_policy_check(c->d, &pol, err);
}

/* The request's volumes into the job, checked (volume_deploy_check); booting from a volume,
 * the machine's disk size is the volume's. */
static int
deploy_volumes(struct call *c, const Sistemo__V1__DeployRequest *req, struct machine_spec *spec,
	       struct job *j, struct err *err)
{
	struct volume_deploy vd = {req->volume, (const char *const *)req->attach, req->n_attach};
	struct volume_info boot;
	uint64_t boot_mb = 0;
	int r = volume_deploy_check(c->d, spec->name, &vd, &boot_mb, err);

	if (r < 0)
		return r;
	for (size_t i = 0; i < req->n_attach; i++) {
		snprintf(j->attach[i], sizeof(j->attach[i]), "%s", req->attach[i]);
		j->attach_refs[i] = j->attach[i];
	}
	j->n_attach = req->n_attach;
	if (!*req->volume)
		return 0;
	if (req->storage_mb && req->storage_mb != boot_mb)
		return err_set(
			err, ERR_INVALID, "storage_mb", EINVAL,
			"--storage does not apply with --volume: the volume's size (%llu MB) "
			"is the disk's (sistemo volume resize grows it)",
			(unsigned long long)boot_mb);
	if ((r = store_volume_get(c->d->store, req->volume, &boot, err)) < 0)
		return r;
	snprintf(j->volume, sizeof(j->volume), "%s", boot.name);
	spec->storage_mb = boot_mb;
	return 0;
}

static int
machines_deploy(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__DeployRequest *req = (const void *)in;
	struct machine_spec spec = {.name = req->name,
				    .image = req->image,
				    .vcpus = req->vcpus ? req->vcpus : 2,
				    .memory_mb = req->memory_mb ? req->memory_mb : 512,
				    .storage_mb = req->storage_mb ? req->storage_mb : 2048,
				    .volume = req->volume};
	struct machine_info existing;
	struct job *j;
	char name[64];

	if (machine_spec_check(c->d, &spec, name, sizeof(name), err) < 0)
		return -EINVAL;
	if (strlen(req->image) >= sizeof(j->image))
		return err_set(err, ERR_INVALID, "image", ENAMETOOLONG,
			       "image '%.64s...' is too long", req->image);
	if (store_machine_get(c->d->store, spec.name, &existing, NULL) == 0)
		return err_set(err, ERR_EXISTS, "name", EEXIST,
			       "a machine named '%s' already exists", spec.name);
	if (!(j = calloc(1, sizeof(*j))))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (deploy_network(c, req, j, err) < 0 || deploy_volumes(c, req, &spec, j, err) < 0) {
		free(j);
		return -EINVAL;
	}
	j->kind = JOB_DEPLOY;
	j->vcpus = spec.vcpus;
	j->memory_mb = spec.memory_mb;
	j->storage_mb = spec.storage_mb;
	snprintf(j->name, sizeof(j->name), "%s", spec.name);
	snprintf(j->image, sizeof(j->image), "%s%s", *j->volume ? "volume:" : "",
		 *j->volume ? j->volume : req->image);
	c->target_name = arena_strdup(c->arena, j->name);
	return start_job(c, j, "machine.deploy", j->name, ret, err);
}

static int
ref_job(struct call *c, const char *ref, enum job_kind kind, unsigned timeout_sec,
	ProtobufCMessage **ret, struct err *err)
{
	struct machine_info m;
	struct job *j;

	if (need_ref(ref, err) < 0 || store_machine_get(c->d->store, ref, &m, err) < 0)
		return -EINVAL;
	if (!(j = calloc(1, sizeof(*j))))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	*j = (struct job){.kind = kind, .timeout_sec = timeout_sec};
	snprintf(j->ref, sizeof(j->ref), "%s", m.id);
	c->target_id = arena_strdup(c->arena, m.id);
	c->target_name = arena_strdup(c->arena, m.name);
	return start_job(c, j, kind == JOB_START ? "machine.start" : "machine.restart", m.name, ret,
			 err);
}

static int
machines_start(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	return ref_job(c, ((const Sistemo__V1__MachineRef *)in)->machine, JOB_START, 0, ret, err);
}

static int
machines_restart(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		 struct err *err)
{
	const Sistemo__V1__StopRequest *req = (const void *)in;

	return ref_job(c, req->machine, JOB_RESTART, req->timeout_sec, ret, err);
}

static int
machines_stop(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__StopRequest *req = (const void *)in;
	struct machine_info m;

	if (need_ref(req->machine, err) < 0 ||
	    machine_stop(c->d, req->machine, req->timeout_sec, req->force, &m, err) < 0)
		return -EIO;
	return reply_machine(c, &m, ret);
}

static int
machines_delete(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__DeleteMachineRequest *req = (const void *)in;
	Sistemo__V1__DeleteMachineReply *out =
		arena_msg(c->arena, &sistemo__v1__delete_machine_reply__descriptor);
	struct machine_info m;

	if (need_ref(req->machine, err) < 0 ||
	    machine_delete(c->d, req->machine, req->preserve_storage, &m, err) < 0)
		return -EIO;
	out->id = arena_strdup(c->arena, m.id);
	out->name = arena_strdup(c->arena, m.name);
	c->target_id = out->id;
	c->target_name = out->name;
	*ret = &out->base;
	return 0;
}

/* The machine a call acts on, named in the call's audit entry. */
static int
target_machine(struct call *c, const char *ref, struct machine_info *m, struct err *err)
{
	if (need_ref(ref, err) < 0 || store_machine_get(c->d->store, ref, m, err) < 0)
		return -EINVAL;
	c->target_id = arena_strdup(c->arena, m->id);
	c->target_name = arena_strdup(c->arena, m->name);
	return 0;
}

static int
machines_expose(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ExposeRequest *req = (const void *)in;
	struct machine_info m;
	struct net_port p;

	if (target_machine(c, req->machine, &m, err) < 0)
		return -EINVAL;
	if (!req->port)
		return err_set(err, ERR_INVALID, "port", EINVAL, "a port rule is required");
	if (port_from_msg(req->port, &p, err) < 0 || net_expose(c->d, &m, &p, err) < 0)
		return -EIO;
	return reply_machine(c, &m, ret);
}

static int
machines_unexpose(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		  struct err *err)
{
	const Sistemo__V1__UnexposeRequest *req = (const void *)in;
	struct machine_info m;

	if (target_machine(c, req->machine, &m, err) < 0)
		return -EINVAL;
	if (net_unexpose(c->d, &m, req->host_port,
			 req->protocol == SISTEMO__V1__PROTOCOL__PROTOCOL_UDP ? "udp" : "tcp",
			 err) < 0)
		return -EIO;
	return reply_machine(c, &m, ret);
}

static int
machines_set_policy(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		    struct err *err)
{
	const Sistemo__V1__SetPolicyRequest *req = (const void *)in;
	const Sistemo__V1__MachinePolicy *p = req->policy;
	struct machine_info m;

	if (target_machine(c, req->machine, &m, err) < 0)
		return -EINVAL;
	struct net_policy pol = {
		p ? network_mode_text(p->network_mode) : "bridge",
		p ? join_list(c->arena, p->allow_from, p->n_allow_from) : "",
		p ? join_list(c->arena, p->egress_allow, p->n_egress_allow) : "",
	};
	if (net_set_policy(c->d, &m, &pol, err) < 0 ||
	    store_machine_get(c->d->store, m.id, &m, err) < 0)
		return -EIO;
	return reply_machine(c, &m, ret);
}

static int
attach_detach(struct call *c, const ProtobufCMessage *in, bool attach, ProtobufCMessage **ret,
	      struct err *err)
{
	const Sistemo__V1__VolumeAttachRequest *req = (const void *)in;
	struct volume_info v;
	struct machine_info m;
	int r;

	if (target_machine(c, req->machine, &m, err) < 0)
		return -EINVAL;
	r = attach ? volume_attach(c->d, req->volume, m.id, &v, err)
		   : volume_detach(c->d, req->volume, m.id, &v, err);
	if (r < 0 || store_machine_get(c->d->store, m.id, &m, err) < 0)
		return -EIO;
	return reply_machine(c, &m, ret);
}

static int
machines_attach_volume(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		       struct err *err)
{
	return attach_detach(c, in, true, ret, err);
}

static int
machines_detach_volume(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		       struct err *err)
{
	return attach_detach(c, in, false, ret, err);
}

static const struct method machine_methods[] = {
	{"Deploy", machines_deploy, METHOD_MUTATES, NULL},
	{"List", machines_list, 0, NULL},
	{"Get", machines_get, 0, NULL},
	{"Start", machines_start, METHOD_MUTATES, NULL},
	{"Stop", machines_stop, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Restart", machines_restart, METHOD_MUTATES, NULL},
	{"Delete", machines_delete, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Logs", machines_logs, METHOD_BLOCKS, NULL},
	{"Exec", machines_exec, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"ExecRead", machines_exec_read, METHOD_BLOCKS, NULL},
	{"ExecWrite", machines_exec_write, METHOD_BLOCKS, NULL},
	{"ExecResize", machines_exec_resize, METHOD_BLOCKS, NULL},
	{"ExecSignal", machines_exec_signal, METHOD_BLOCKS, NULL},
	{"Expose", machines_expose, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Unexpose", machines_unexpose, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"AttachVolume", machines_attach_volume, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"DetachVolume", machines_detach_volume, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"SetPolicy", machines_set_policy, METHOD_MUTATES | METHOD_BLOCKS, NULL},
	{"Terminal", NULL, 0, LATER_DASHBOARD},
};

const struct service service_machines =
	SERVICE(&sistemo__v1__machines__descriptor, "machine", machine_methods);
