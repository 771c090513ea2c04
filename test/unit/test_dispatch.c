/* The dispatcher: every method of every service has a handler, errors come back as statuses,
 * and mutating calls are audited. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "dispatch.h"
#include "macro.h"
#include "store.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/rpc.pb-c.h"
#include "sistemo/v1/system.pb-c.h"

static const struct service *const services[] = {
	&service_machines, &service_networks, &service_volumes, &service_images, &service_system,
};

/* The daemon's audit hook, as the daemon writes it: into the store. */
static void
audit_to_store(struct daemon *d, const struct caller *caller, const char *action,
	       const struct call *c, const struct err *err)
{
	struct err aerr = {0};
	struct audit_entry e = {
		.actor = caller->actor,
		.action = action,
		.target_name = c->target_name,
		.success = err->code == ERR_OK,
		.detail = err->msg,
	};
	assert_int_equal(store_audit_add(d->store, &e, &aerr), 0);
}

struct fixture {
	char dir[64];
	struct daemon d;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err err = {0};
	char db[128];

	snprintf(f->dir, sizeof(f->dir), "/tmp/sistemo-ut.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(db, sizeof(db), "%s/sistemo.db", f->dir);
	assert_int_equal(paths_init(&f->d.paths, f->dir, &err), 0);
	config_defaults(&f->d.cfg);
	assert_int_equal(store_open(db, &f->d.store, &err), 0);
	assert_int_equal(
		dispatch_new(services, ARRAY_SIZE(services), audit_to_store, &f->d.dispatch, &err),
		0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	dispatch_free(f->d.dispatch);
	store_close(f->d.store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Every method of every service descriptor resolves to a handler or a "later" note. */
static void
every_method_has_a_handler(void **state)
{
	(void)state;
	for (size_t s = 0; s < ARRAY_SIZE(services); s++) {
		const ProtobufCServiceDescriptor *d = services[s]->desc;
		for (unsigned m = 0; m < d->n_methods; m++) {
			const struct method *e = NULL;
			for (size_t i = 0; i < services[s]->n_methods; i++)
				if (streq(services[s]->methods[i].name, d->methods[m].name))
					e = &services[s]->methods[i];
			if (!e)
				fail_msg("%s.%s has no handler entry", d->name, d->methods[m].name);
			assert_true(e->fn != NULL || e->later != NULL);
		}
		assert_int_equal(services[s]->n_methods, d->n_methods);
	}
}

/* A table missing a method is refused, naming it. */
static void
missing_handler_refused(void **state)
{
	static const struct method partial[] = {{"Ping", NULL, 0, "x"}};
	static const struct service broken =
		SERVICE(&sistemo__v1__system__descriptor, "system", partial);
	const struct service *const list[] = {&broken};
	struct dispatch *d = NULL;
	struct err err = {0};

	(void)state;
	assert_true(dispatch_new(list, 1, audit_to_store, &d, &err) < 0);
	assert_null(d);
	assert_non_null(strstr(err.msg, "has no handler"));
}

static Sistemo__V1__Reply *
call(struct fixture *f, const char *svc, const char *method, const ProtobufCMessage *in)
{
	Sistemo__V1__Request req = SISTEMO__V1__REQUEST__INIT;
	struct caller caller = {.local = true, .uid = 0, .actor = "uid:0"};
	uint8_t payload[4096], buf[8192];
	void *reply;
	size_t len;

	req.version = 1;
	req.service = (char *)svc;
	req.method = (char *)method;
	req.payload.len = in ? protobuf_c_message_pack(in, payload) : 0;
	req.payload.data = payload;
	size_t n = sistemo__v1__request__pack(&req, buf);
	dispatch_handle(f->d.dispatch, &f->d, &caller, buf, n, &reply, &len);
	Sistemo__V1__Reply *r = sistemo__v1__reply__unpack(NULL, len, reply);
	free(reply);
	assert_non_null(r);
	return r;
}

static void
ping_echoes(void **state)
{
	Sistemo__V1__EchoRequest in = SISTEMO__V1__ECHO_REQUEST__INIT;

	in.data.data = (uint8_t *)"hello";
	in.data.len = 5;
	Sistemo__V1__Reply *r = call(*state, "System", "Ping", &in.base);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__OK);
	Sistemo__V1__EchoReply *out =
		sistemo__v1__echo_reply__unpack(NULL, r->payload.len, r->payload.data);
	assert_non_null(out);
	assert_int_equal(out->data.len, 5);
	assert_memory_equal(out->data.data, "hello", 5);
	sistemo__v1__echo_reply__free_unpacked(out, NULL);
	sistemo__v1__reply__free_unpacked(r, NULL);
}

static void
unknown_service_and_method(void **state)
{
	Sistemo__V1__Reply *r = call(*state, "Nope", "Ping", NULL);

	assert_int_equal(r->status->code, SISTEMO__V1__CODE__UNIMPLEMENTED);
	assert_non_null(strstr(r->status->message, "unknown service 'Nope'"));
	sistemo__v1__reply__free_unpacked(r, NULL);
	r = call(*state, "System", "Reboot", NULL);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__UNIMPLEMENTED);
	assert_string_equal(r->status->field, "method");
	sistemo__v1__reply__free_unpacked(r, NULL);
}

static void
garbage_and_oversize(void **state)
{
	struct fixture *f = *state;
	struct caller caller = {.local = true};
	uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	void *reply;
	size_t len;

	dispatch_handle(f->d.dispatch, &f->d, &caller, garbage, sizeof(garbage), &reply, &len);
	Sistemo__V1__Reply *r = sistemo__v1__reply__unpack(NULL, len, reply);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__INVALID_ARGUMENT);
	sistemo__v1__reply__free_unpacked(r, NULL);
	free(reply);
	dispatch_handle(f->d.dispatch, &f->d, &caller, garbage, RPC_MAX_MSG + 1, &reply, &len);
	r = sistemo__v1__reply__unpack(NULL, len, reply);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__RESOURCE_EXHAUSTED);
	sistemo__v1__reply__free_unpacked(r, NULL);
	free(reply);
}

static int
count_entry(void *ud, const struct audit_entry *e)
{
	struct audit_entry *last = ud;

	if (!last->action) {
		last->action = strdup(e->action);
		last->target_name = strdup(e->target_name);
		last->success = e->success;
	}
	return 0;
}

/* A later capability answers UNIMPLEMENTED naming it, and the attempt is audited. */
static void
unimplemented_is_audited(void **state)
{
	struct fixture *f = *state;
	Sistemo__V1__Credentials in = SISTEMO__V1__CREDENTIALS__INIT;
	struct audit_filter filter = {.limit = 10};
	struct audit_entry last = {0};
	struct err err = {0};
	unsigned total = 0;

	in.username = "admin";
	Sistemo__V1__Reply *r = call(f, "System", "Login", &in.base);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__UNIMPLEMENTED);
	assert_non_null(strstr(r->status->message, "is not implemented yet"));
	sistemo__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(store_audit_list(f->d.store, &filter, count_entry, &last, &total, &err),
			 0);
	assert_int_equal(total, 1);
	assert_string_equal(last.action, "system.login");
	assert_string_equal(last.target_name, "");
	assert_false(last.success);
	free((char *)last.action);
	free((char *)last.target_name);
}

/* Reads are not audited. */
static void
reads_are_not_audited(void **state)
{
	struct fixture *f = *state;
	Sistemo__V1__ListMachinesRequest in = SISTEMO__V1__LIST_MACHINES_REQUEST__INIT;
	struct audit_filter filter = {.limit = 10};
	struct audit_entry last = {0};
	struct err err = {0};
	unsigned total = 0;

	Sistemo__V1__Reply *r = call(f, "Machines", "List", &in.base);
	assert_int_equal(r->status->code, SISTEMO__V1__CODE__OK);
	sistemo__v1__reply__free_unpacked(r, NULL);
	assert_int_equal(store_audit_list(f->d.store, &filter, count_entry, &last, &total, &err),
			 0);
	assert_int_equal(total, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_method_has_a_handler),
		cmocka_unit_test(missing_handler_refused),
		cmocka_unit_test_setup_teardown(ping_echoes, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_service_and_method, setup, teardown),
		cmocka_unit_test_setup_teardown(garbage_and_oversize, setup, teardown),
		cmocka_unit_test_setup_teardown(unimplemented_is_audited, setup, teardown),
		cmocka_unit_test_setup_teardown(reads_are_not_audited, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
