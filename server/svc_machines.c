/* Machines service. Listing and lookup work now; the lifecycle arrives with real machines. */
#include <errno.h>
#include <string.h>

#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "store.h"
#include "svc_convert.h"

#define LATER_MACHINES "real machines (issue 3)"
#define LATER_NET "networking (issue 4)"
#define LATER_VOLUMES "volumes and images (issue 5)"
#define LATER_DASHBOARD "the dashboard and its browser terminal"

struct list_ctx {
	struct arena *a;
	Sistemo__V1__ListMachinesReply *out;
	Sistemo__V1__MachineState state;
};

static int
list_one(void *ud, const struct machine_rec *m)
{
	struct list_ctx *x = ud;
	Sistemo__V1__Machine *o;

	if (x->state && machine_state_from_text(m->state) != x->state)
		return 0;
	o = machine_to_msg(x->a, m);
	arena_append(x->a, &x->out->machines, &x->out->n_machines, o);
	return 0;
}

static int
machines_list(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ListMachinesRequest *req = (const void *)in;
	Sistemo__V1__ListMachinesReply *out =
		arena_msg(c->arena, &sistemo__v1__list_machines_reply__descriptor);
	struct list_ctx x = {c->arena, out, req->state};

	if (store_machine_list(c->d->store, req->network, list_one, &x, err) < 0)
		return -EIO;
	*ret = &out->base;
	return 0;
}

struct find_ctx {
	struct arena *a;
	const char *ref;
	Sistemo__V1__Machine *found;
};

static int
find_one(void *ud, const struct machine_rec *m)
{
	struct find_ctx *x = ud;

	if (!streq(m->name, x->ref) && !streq(m->id, x->ref))
		return 0;
	x->found = machine_to_msg(x->a, m);
	return 1; /* stop */
}

static int
machines_get(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__MachineRef *req = (const void *)in;
	struct find_ctx x = {c->arena, req->machine, NULL};

	if (!*req->machine)
		return err_set(err, ERR_INVALID, "machine", EINVAL,
			       "a machine name or id is required");
	if (store_machine_list(c->d->store, NULL, find_one, &x, err) < 0)
		return -EIO;
	if (!x.found)
		return err_set(err, ERR_NOT_FOUND, "machine", ENOENT,
			       "machine '%s' not found (sistemo machine list shows them)",
			       req->machine);
	*ret = &x.found->base;
	return 0;
}

static const struct method machine_methods[] = {
	{"Deploy", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"List", machines_list, 0, NULL},
	{"Get", machines_get, 0, NULL},
	{"Start", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"Stop", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"Restart", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"Delete", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"Logs", NULL, METHOD_BLOCKS, LATER_MACHINES},
	{"Exec", NULL, METHOD_MUTATES | METHOD_BLOCKS, LATER_MACHINES},
	{"ExecRead", NULL, METHOD_BLOCKS, LATER_MACHINES},
	{"ExecWrite", NULL, METHOD_BLOCKS, LATER_MACHINES},
	{"ExecResize", NULL, 0, LATER_MACHINES},
	{"ExecSignal", NULL, 0, LATER_MACHINES},
	{"Expose", NULL, METHOD_MUTATES, LATER_NET},
	{"Unexpose", NULL, METHOD_MUTATES, LATER_NET},
	{"AttachVolume", NULL, METHOD_MUTATES, LATER_VOLUMES},
	{"DetachVolume", NULL, METHOD_MUTATES, LATER_VOLUMES},
	{"SetPolicy", NULL, METHOD_MUTATES, LATER_NET},
	{"Terminal", NULL, 0, LATER_DASHBOARD},
};

const struct service service_machines =
	SERVICE(&sistemo__v1__machines__descriptor, "machine", machine_methods);
