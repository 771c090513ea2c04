/* System service: ping, daemon info, doctor, effective config, audit history. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "dispatch.h"
#include "host.h"
#include "macro.h"
#include "ops.h"
#include "ssh.h"
#include "store.h"
#include "sistemo/v1/system.pb-c.h"

#define LATER_AUTH "the dashboard gateway and its authentication"

static int
system_ping(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__EchoRequest *req = (const void *)in;
	Sistemo__V1__EchoReply *out = arena_msg(c->arena, &sistemo__v1__echo_reply__descriptor);

	(void)err;
	out->data = req->data; /* lives in the arena with the request */
	*ret = &out->base;
	return 0;
}

static void
fill_drivers(struct call *c, Sistemo__V1__SystemInfo *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(c->d->vmms); i++) {
		const struct vmm_probe *p = &c->d->vmms[i];
		Sistemo__V1__VmmDriver *v =
			arena_msg(c->arena, &sistemo__v1__vmm_driver__descriptor);
		v->name = arena_strdup(c->arena, p->name);
		v->available = p->available;
		v->reason = arena_strdup(c->arena, p->reason);
		v->binary = arena_strdup(c->arena, p->binary);
		v->version = arena_strdup(c->arena, p->version);
		v->is_default = p->is_default;
		arena_append(c->arena, &out->drivers, &out->n_drivers, v);
	}
}

static int
system_info(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__SystemInfo *out = arena_msg(c->arena, &sistemo__v1__system_info__descriptor);
	struct daemon *d = c->d;
	char buf[256];
	unsigned total = 0, running = 0;

	(void)in;
	if (store_machine_count(d->store, &total, &running, err) < 0)
		return -EIO;
	out->version = SISTEMO_VERSION;
	out->data_dir = d->paths.data_dir;
	out->socket = d->paths.socket;
	out->pid = getpid();
	out->started_unix_ms = d->started_ms;
	out->schema_version = store_schema_version(d->store);
	fill_drivers(c, out);
	out->vmm = d->cfg.vmm;
	host_kernel_release(buf, sizeof(buf));
	out->host_kernel = arena_strdup(c->arena, buf);
	out->host_cpus = host_cpus();
	out->host_memory_mb = host_memory_mb();
	out->kvm = host_kvm_usable(buf, sizeof(buf));
	gethostname(buf, sizeof(buf) - 1);
	out->hostname = arena_strdup(c->arena, buf);
	out->machines_total = total;
	out->machines_running = running;
	out->bridge = "sistemo0";
	out->bridge_subnet = d->cfg.bridge_subnet;
	*ret = &out->base;
	return 0;
}

static void add_check(struct call *c, Sistemo__V1__DoctorReply *out, const char *name,
		      Sistemo__V1__CheckStatus st, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void
add_check(struct call *c, Sistemo__V1__DoctorReply *out, const char *name,
	  Sistemo__V1__CheckStatus st, const char *hint, const char *fmt, ...)
{
	Sistemo__V1__Check *k = arena_msg(c->arena, &sistemo__v1__check__descriptor);
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	k->name = (char *)name;
	k->status = st;
	k->detail = arena_strdup(c->arena, detail);
	k->hint = (char *)(hint ? hint : "");
	arena_append(c->arena, &out->checks, &out->n_checks, k);
}

#define OK SISTEMO__V1__CHECK_STATUS__CHECK_STATUS_OK
#define WARN SISTEMO__V1__CHECK_STATUS__CHECK_STATUS_WARN
#define FAIL SISTEMO__V1__CHECK_STATUS__CHECK_STATUS_FAIL

static void
check_data_dir(struct call *c, Sistemo__V1__DoctorReply *out)
{
	struct stat st;
	const char *dir = c->d->paths.data_dir;

	if (stat(dir, &st) < 0)
		add_check(c, out, "data-dir", FAIL, NULL, "%s: %s", dir, strerror(errno));
	else if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
		add_check(c, out, "data-dir", FAIL, "chown -R root: the daemon executes from it",
			  "%s is owned by uid %u, mode %04o", dir, (unsigned)st.st_uid,
			  (unsigned)(st.st_mode & 07777));
	else
		add_check(c, out, "data-dir", OK, NULL, "%s (root, %04o)", dir,
			  (unsigned)(st.st_mode & 07777));
}

static void
check_database(struct call *c, Sistemo__V1__DoctorReply *out)
{
	unsigned total = 0, running = 0;
	struct err err = {0};

	if (store_machine_count(c->d->store, &total, &running, &err) < 0)
		add_check(c, out, "database", FAIL, NULL, "%s", err.msg);
	else
		add_check(c, out, "database", OK, NULL,
			  "%s: schema %u of %u, %u machines (%u running)", c->d->paths.db,
			  store_schema_version(c->d->store), store_schema_latest(), total, running);
}

static void
check_config(struct call *c, Sistemo__V1__DoctorReply *out)
{
	size_t n = config_warning_count(&c->d->cfg);

	if (n == 0)
		add_check(c, out, "config", OK, NULL, "%s", c->d->paths.config);
	else
		add_check(c, out, "config", WARN, "fix or remove the key in config.yml", "%s",
			  config_warning(&c->d->cfg, 0));
}

static void
check_vmms(struct call *c, Sistemo__V1__DoctorReply *out)
{
	char why[128];
	bool kvm = host_kvm_usable(why, sizeof(why));

	add_check(c, out, "kvm", kvm ? OK : WARN,
		  kvm ? NULL : "without KVM machines run under QEMU's TCG software emulation", "%s",
		  kvm ? "/dev/kvm usable" : why);
	for (size_t i = 0; i < ARRAY_SIZE(c->d->vmms); i++) {
		const struct vmm_probe *p = &c->d->vmms[i];
		bool needed = p->is_default;
		add_check(c, out, p->name,
			  p->available ? OK
			  : needed     ? FAIL
				       : WARN,
			  NULL, "%s%s%s%s%s", p->available ? p->binary : p->reason,
			  p->available && *p->version ? " (" : "", p->available ? p->version : "",
			  p->available && *p->version ? ")" : "",
			  p->is_default ? ", the default driver" : "");
	}
	if (access("/dev/net/tun", R_OK | W_OK) == 0)
		add_check(c, out, "tun", OK, NULL, "/dev/net/tun");
	else
		add_check(c, out, "tun", FAIL, "modprobe tun", "/dev/net/tun: %s", strerror(errno));
}

static void
check_resources(struct call *c, Sistemo__V1__DoctorReply *out)
{
	uint64_t disk = host_disk_free_mb(c->d->paths.data_dir);
	uint64_t mem = host_memory_available_mb();
	uint64_t min = c->d->cfg.min_disk_free_mb;

	add_check(c, out, "disk", disk >= min ? OK : FAIL, disk >= min ? NULL : "free disk space",
		  "%llu MiB free in the data dir (min_disk_free_mb %llu)", (unsigned long long)disk,
		  (unsigned long long)min);
	add_check(c, out, "memory", mem >= 512 ? OK : WARN, NULL, "%llu MiB available",
		  (unsigned long long)mem);
}

static void
check_remote(struct call *c, Sistemo__V1__DoctorReply *out)
{
	const char *key = getenv("HOST_API_KEY");

	if (!*c->d->cfg.remote_listen)
		add_check(c, out, "remote-access", OK, NULL,
			  "off: the API is served on the local socket only");
	else
		add_check(c, out, "remote-access", key && *key ? OK : WARN,
			  key && *key ? NULL : "set HOST_API_KEY in the daemon's environment",
			  "listening on %s%s", c->d->cfg.remote_listen,
			  key && *key ? ", HOST_API_KEY set" : " without HOST_API_KEY");
}

static int
system_doctor(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__DoctorReply *out = arena_msg(c->arena, &sistemo__v1__doctor_reply__descriptor);

	(void)in, (void)err;
	add_check(c, out, "daemon", OK, NULL, "sistemo %s, pid %d, %s", SISTEMO_VERSION,
		  (int)getpid(), c->d->paths.socket);
	check_data_dir(c, out);
	check_database(c, out);
	check_config(c, out);
	check_vmms(c, out);
	check_resources(c, out);
	check_remote(c, out);
	*ret = &out->base;
	return 0;
}

struct config_ctx {
	struct call *c;
	Sistemo__V1__ConfigReply *out;
};

static int
config_entry(void *ud, const char *key, const char *value, const char *source, const char *help)
{
	struct config_ctx *x = ud;
	Sistemo__V1__ConfigEntry *e =
		arena_msg(x->c->arena, &sistemo__v1__config_entry__descriptor);

	e->key = arena_strdup(x->c->arena, key);
	e->value = arena_strdup(x->c->arena, value);
	e->source = arena_strdup(x->c->arena, source);
	e->help = arena_strdup(x->c->arena, help);
	arena_append(x->c->arena, &x->out->entries, &x->out->n_entries, e);
	return 0;
}

static int
system_config(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__ConfigReply *out = arena_msg(c->arena, &sistemo__v1__config_reply__descriptor);
	struct config_ctx x = {c, out};

	(void)in, (void)err;
	out->path = c->d->paths.config;
	config_foreach(&c->d->cfg, config_entry, &x);
	for (size_t i = 0; i < config_warning_count(&c->d->cfg); i++) {
		char *w = arena_strdup(c->arena, config_warning(&c->d->cfg, i));
		arena_append(c->arena, &out->warnings, &out->n_warnings, w);
	}
	*ret = &out->base;
	return 0;
}

struct history_ctx {
	struct call *c;
	Sistemo__V1__HistoryReply *out;
};

static int
history_entry(void *ud, const struct audit_entry *e)
{
	struct history_ctx *x = ud;
	struct arena *a = x->c->arena;
	Sistemo__V1__AuditEntry *m = arena_msg(a, &sistemo__v1__audit_entry__descriptor);

	m->id = e->id;
	m->time_unix_ms = e->time_ms;
	m->actor = arena_strdup(a, e->actor);
	m->action = arena_strdup(a, e->action);
	m->target_type = arena_strdup(a, e->target_type);
	m->target_id = arena_strdup(a, e->target_id);
	m->target_name = arena_strdup(a, e->target_name);
	m->success = e->success;
	m->detail = arena_strdup(a, e->detail);
	arena_append(a, &x->out->entries, &x->out->n_entries, m);
	return 0;
}

static int
system_history(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__HistoryRequest *req = (const void *)in;
	Sistemo__V1__HistoryReply *out =
		arena_msg(c->arena, &sistemo__v1__history_reply__descriptor);
	struct history_ctx x = {c, out};
	struct audit_filter f = {
		.limit = req->limit ? req->limit : 20,
		.offset = req->offset,
		.action = req->action,
		.target = req->target,
	};

	if (f.limit > 1000)
		return err_set(err, ERR_INVALID, "limit", EINVAL,
			       "limit %u is too large: at most 1000 entries per call", f.limit);
	if (strlen(f.action) > 128 || strlen(f.target) > 256)
		return err_set(err, ERR_INVALID, "action", EINVAL, "filter is too long");
	if (store_audit_list(c->d->store, &f, history_entry, &x, &out->total, err) < 0)
		return -EIO;
	*ret = &out->base;
	return 0;
}

static int
system_ssh_key(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	Sistemo__V1__SshKeyReply *out =
		arena_msg(c->arena, &sistemo__v1__ssh_key_reply__descriptor);
	char key[1024];

	(void)in;
	if (ssh_key_public(c->d->ssh_dir, key, sizeof(key), err) < 0)
		return -EIO;
	out->public_key = arena_strdup(c->arena, key);
	out->path = arena_printf(c->arena, "%s/sistemo_key.pub", c->d->ssh_dir);
	*ret = &out->base;
	return 0;
}

static const Sistemo__V1__OperationState op_states[] = {
	[OP_RUNNING] = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_RUNNING,
	[OP_DONE] = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_DONE,
	[OP_FAILED] = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_FAILED,
	[OP_CANCELLED] = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED,
};

static Sistemo__V1__ProgressEvent *
event_to_msg(struct arena *a, const struct op_event *e)
{
	Sistemo__V1__ProgressEvent *m = arena_msg(a, &sistemo__v1__progress_event__descriptor);

	m->seq = e->seq;
	m->step = arena_strdup(a, e->step);
	m->message = arena_strdup(a, e->message);
	m->percent = e->percent;
	m->time_unix_ms = e->time_ms;
	return m;
}

static Sistemo__V1__Operation *
op_to_msg(struct arena *a, const struct op_view *v)
{
	Sistemo__V1__Operation *m = arena_msg(a, &sistemo__v1__operation__descriptor);

	m->id = arena_strdup(a, v->id);
	m->kind = arena_strdup(a, v->kind);
	m->target = arena_strdup(a, v->target);
	m->state = op_states[v->state];
	for (size_t i = 0; i < v->n_events; i++)
		arena_append(a, &m->events, &m->n_events, event_to_msg(a, &v->events[i]));
	if (v->state == OP_FAILED || v->state == OP_CANCELLED) {
		m->status = arena_msg(a, &sistemo__v1__status__descriptor);
		m->status->code = (Sistemo__V1__Code)v->status.code;
		m->status->message = arena_strdup(a, v->status.msg);
		m->status->field = arena_strdup(a, v->status.field);
	}
	m->result_type = arena_strdup(a, v->result_type);
	m->result.len = v->result_len;
	m->result.data = v->result_len ? arena_alloc(a, v->result_len) : NULL;
	if (v->result_len)
		memcpy(m->result.data, v->result, v->result_len);
	m->created_unix_ms = v->created_ms;
	m->finished_unix_ms = v->finished_ms;
	return m;
}

static int
reply_op(struct call *c, const char *id, uint64_t after_seq, unsigned wait_ms,
	 ProtobufCMessage **ret, struct err *err)
{
	struct op_view v;

	if (!*id)
		return err_set(err, ERR_INVALID, "id", EINVAL, "an operation id is required");
	if (ops_watch(c->d->ops, id, after_seq, wait_ms, &v, err) < 0)
		return -EIO;
	*ret = &op_to_msg(c->arena, &v)->base;
	op_view_free(&v);
	return 0;
}

static int
system_get_operation(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		     struct err *err)
{
	return reply_op(c, ((const Sistemo__V1__OperationRef *)in)->id, 0, 0, ret, err);
}

static int
system_watch_operation(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		       struct err *err)
{
	const Sistemo__V1__WatchOperationRequest *req = (const void *)in;

	return reply_op(c, req->id, req->after_seq, req->wait_ms, ret, err);
}

static int
system_cancel_operation(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
			struct err *err)
{
	const Sistemo__V1__OperationRef *req = (const void *)in;

	if (ops_cancel(c->d->ops, req->id, err) < 0)
		return -EIO;
	return reply_op(c, req->id, UINT64_MAX, 0, ret, err);
}

struct ops_ctx {
	struct arena *a;
	Sistemo__V1__ListOperationsReply *out;
};

static int
list_op(void *ud, const struct op_view *v)
{
	struct ops_ctx *x = ud;

	arena_append(x->a, &x->out->operations, &x->out->n_operations, op_to_msg(x->a, v));
	return 0;
}

static int
system_list_operations(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		       struct err *err)
{
	const Sistemo__V1__ListOperationsRequest *req = (const void *)in;
	Sistemo__V1__ListOperationsReply *out =
		arena_msg(c->arena, &sistemo__v1__list_operations_reply__descriptor);
	struct ops_ctx x = {c->arena, out};

	(void)err;
	ops_list(c->d->ops, req->all, list_op, &x);
	*ret = &out->base;
	return 0;
}

static const struct method system_methods[] = {
	{"Ping", system_ping, 0, NULL},
	{"Info", system_info, 0, NULL},
	{"Doctor", system_doctor, 0, NULL},
	{"Config", system_config, 0, NULL},
	{"History", system_history, 0, NULL},
	{"SshKey", system_ssh_key, 0, NULL},
	{"AuthStatus", NULL, 0, LATER_AUTH},
	{"AuthSetup", NULL, METHOD_MUTATES, LATER_AUTH},
	{"Login", NULL, METHOD_MUTATES, LATER_AUTH},
	{"ResetPassword", NULL, METHOD_MUTATES, LATER_AUTH},
	{"GetOperation", system_get_operation, 0, NULL},
	{"WatchOperation", system_watch_operation, METHOD_BLOCKS, NULL},
	{"ListOperations", system_list_operations, 0, NULL},
	{"CancelOperation", system_cancel_operation, METHOD_MUTATES, NULL},
};

const struct service service_system =
	SERVICE(&sistemo__v1__system__descriptor, "system", system_methods);
