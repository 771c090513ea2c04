/* pbjson: exact JSON text for our messages, escaping, base64, enum names, oneofs, and decoding
 * (round trips, accepted forms, every error with its field path, limits). */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "arena.h"
#include "err.h"
#include "pbjson.h"
#include "strbuf.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/networks.pb-c.h"
#include "sistemo/v1/rpc.pb-c.h"
#include "sistemo/v1/system.pb-c.h"
#include "sistemo/v1/images.pb-c.h"
#include "sistemo/v1/volumes.pb-c.h"

/* ---- a message declared by hand: our protos have no oneof, no recursion, no float, no
 * sint32 and no proto2 optional yet. Equivalent to (proto2 for the optional):
 *   message Node {
 *     Node child = 1;
 *     oneof value { string label = 2; int64 count = 3; }
 *     double ratio = 4; float scale = 5; sint32 delta = 6;
 *     optional uint32 maybe = 7;
 *     repeated Node children = 8;
 *     bytes blob = 9;
 *   } */
typedef struct node Node;
struct node {
	ProtobufCMessage base;
	Node *child;
	uint32_t value_case;
	union {
		char *label;
		int64_t count;
	};
	double ratio;
	float scale;
	int32_t delta;
	protobuf_c_boolean has_maybe;
	uint32_t maybe;
	size_t n_children;
	Node **children;
	ProtobufCBinaryData blob;
};

static const ProtobufCMessageDescriptor node_descriptor;

static const ProtobufCFieldDescriptor node_fields[] = {
	{"child", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0, offsetof(Node, child),
	 &node_descriptor, NULL, 0, 0, NULL, NULL},
	{"label", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, offsetof(Node, value_case),
	 offsetof(Node, label), NULL, &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF, 0,
	 NULL, NULL},
	{"count", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT64, offsetof(Node, value_case),
	 offsetof(Node, count), NULL, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
	{"ratio", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_DOUBLE, 0, offsetof(Node, ratio), NULL,
	 NULL, 0, 0, NULL, NULL},
	{"scale", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_FLOAT, 0, offsetof(Node, scale), NULL,
	 NULL, 0, 0, NULL, NULL},
	{"delta", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_SINT32, 0, offsetof(Node, delta), NULL,
	 NULL, 0, 0, NULL, NULL},
	{"maybe", 7, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_UINT32, offsetof(Node, has_maybe),
	 offsetof(Node, maybe), NULL, NULL, 0, 0, NULL, NULL},
	{"children", 8, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE,
	 offsetof(Node, n_children), offsetof(Node, children), &node_descriptor, NULL, 0, 0, NULL,
	 NULL},
	{"blob", 9, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BYTES, 0, offsetof(Node, blob), NULL,
	 NULL, 0, 0, NULL, NULL},
};
/* blob, child, children, count, delta, label, maybe, ratio, scale */
static const unsigned node_by_name[] = {8, 0, 7, 2, 5, 1, 6, 3, 4};
static const ProtobufCIntRange node_ranges[] = {{1, 0}, {0, 9}};

static void
node_init(ProtobufCMessage *m)
{
	memset(m, 0, sizeof(Node));
	m->descriptor = &node_descriptor;
}

static const ProtobufCMessageDescriptor node_descriptor = {
	PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
	"test.Node",
	"Node",
	"Node",
	"test",
	sizeof(Node),
	9,
	node_fields,
	node_by_name,
	1,
	node_ranges,
	node_init,
	NULL,
	NULL,
	NULL,
};

/* ---- fixture ------------------------------------------------------------------------------ */

struct fx {
	struct arena *arena;
	struct strbuf out, again;
	struct err err;
	char *big;
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || arena_new(&fx->arena) < 0) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	strbuf_free(&fx->out);
	strbuf_free(&fx->again);
	free(fx->big);
	arena_free(fx->arena);
	free(fx);
	return 0;
}

/* Encodes msg alone into fx->out. */
static const char *
encode(struct fx *fx, const void *msg, unsigned flags)
{
	strbuf_free(&fx->out);
	assert_int_equal(pbjson_encode(msg, flags, &fx->out), 0);
	assert_non_null(fx->out.data);
	assert_int_equal(strlen(fx->out.data), fx->out.len);
	return fx->out.data;
}

static void *
decode_ok(struct fx *fx, const ProtobufCMessageDescriptor *desc, const char *json)
{
	ProtobufCMessage *msg = NULL;

	err_clear(&fx->err);
	if (pbjson_decode(desc, json, strlen(json), fx->arena, &msg, &fx->err) < 0)
		fail_msg("decoding %s: %s", json, fx->err.msg);
	assert_non_null(msg);
	assert_ptr_equal(msg->descriptor, desc);
	return msg;
}

/* Decodes json expecting an error on field (NULL: any) with a message containing msg; returns
 * the negative errno. */
static int
decode_fails(struct fx *fx, const ProtobufCMessageDescriptor *desc, const char *json,
	     const char *field, const char *msg)
{
	ProtobufCMessage *ret = NULL;
	int r;

	err_clear(&fx->err);
	r = pbjson_decode(desc, json, strlen(json), fx->arena, &ret, &fx->err);
	if (r >= 0)
		fail_msg("decoding %s succeeded", json);
	assert_null(ret);
	assert_int_equal(fx->err.code, ERR_INVALID);
	if ((field && strcmp(fx->err.field, field) != 0) || !strstr(fx->err.msg, msg))
		fail_msg("decoding %s: field '%s' message '%s'; want field '%s' message '%s'", json,
			 fx->err.field, fx->err.msg, field, msg);
	return r;
}

/* Encode, decode, encode: the two texts are equal and so are the packed forms. */
static void
round_trip(struct fx *fx, const ProtobufCMessage *msg)
{
	const ProtobufCMessage *back;
	size_t n;
	uint8_t *a, *b;

	encode(fx, msg, 0);
	back = decode_ok(fx, msg->descriptor, fx->out.data);
	assert_true(protobuf_c_message_check(back));
	strbuf_free(&fx->again);
	assert_int_equal(pbjson_encode(back, 0, &fx->again), 0);
	assert_string_equal(fx->again.data, fx->out.data);
	n = protobuf_c_message_get_packed_size(msg);
	assert_int_equal(protobuf_c_message_get_packed_size(back), n);
	a = arena_alloc(fx->arena, n + 1);
	b = arena_alloc(fx->arena, n + 1);
	protobuf_c_message_pack(msg, a);
	protobuf_c_message_pack(back, b);
	assert_memory_equal(a, b, n);
}

/* ---- messages under test ------------------------------------------------------------------ */

static Sistemo__V1__PortRule *
port_new(struct arena *a, const char *ip, uint32_t host, uint32_t guest, int udp)
{
	Sistemo__V1__PortRule *p = arena_msg(a, &sistemo__v1__port_rule__descriptor);

	p->host_ip = arena_strdup(a, ip);
	p->host_port = host;
	p->machine_port = guest;
	p->protocol =
		udp ? SISTEMO__V1__PROTOCOL__PROTOCOL_UDP : SISTEMO__V1__PROTOCOL__PROTOCOL_TCP;
	return p;
}

static Sistemo__V1__MachinePolicy *
policy_new(struct arena *a)
{
	Sistemo__V1__MachinePolicy *p = arena_msg(a, &sistemo__v1__machine_policy__descriptor);

	p->n_allow_from = 2;
	p->allow_from = arena_alloc(a, 2 * sizeof(char *));
	p->allow_from[0] = "db";
	p->allow_from[1] = "backend";
	p->network_mode = SISTEMO__V1__NETWORK_MODE__NETWORK_MODE_ISOLATED;
	return p;
}

static Sistemo__V1__Machine *
machine_new(struct arena *a)
{
	Sistemo__V1__Machine *m = arena_msg(a, &sistemo__v1__machine__descriptor);

	m->id = "0b6f1c2e-1111-4222-8333-444455556666";
	m->name = "web";
	m->state = SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_RUNNING;
	m->image = "debian:bookworm";
	m->image_digest = "sha256:ab12";
	m->ip = "10.200.0.5";
	m->mac = "02:00:0a:c8:00:05";
	m->network = "default";
	m->namespace_ = "sistemo-web";
	m->driver = "qemu";
	m->vcpus = 2;
	m->memory_mb = 512;
	m->storage_mb = 2048;
	m->pid = 4242;
	m->created_unix_ms = 1700000000123;
	m->state_changed_unix_ms = -1;
	m->n_ports = 2;
	m->ports = arena_alloc(a, 2 * sizeof(Sistemo__V1__PortRule *));
	m->ports[0] = port_new(a, "", 8080, 80, 0);
	m->ports[1] = port_new(a, "127.0.0.1", 5353, 53, 1);
	m->policy = policy_new(a);
	m->boot_ms = 9007199254740993u; /* 2^53 + 1: written exactly */
	return m;
}

static const char machine_json[] =
	"{\"id\":\"0b6f1c2e-1111-4222-8333-444455556666\",\"name\":\"web\",\"state\":\"running\","
	"\"image\":\"debian:bookworm\",\"image_digest\":\"sha256:ab12\",\"ip\":\"10.200.0.5\","
	"\"mac\":\"02:00:0a:c8:00:05\",\"network\":\"default\",\"namespace\":\"sistemo-web\","
	"\"driver\":\"qemu\",\"vcpus\":2,\"memory_mb\":512,\"storage_mb\":2048,\"pid\":4242,"
	"\"created_unix_ms\":1700000000123,\"state_changed_unix_ms\":-1,"
	"\"ports\":[{\"host_ip\":\"\",\"host_port\":8080,\"machine_port\":80,\"protocol\":\"tcp\"},"
	"{\"host_ip\":\"127.0.0.1\",\"host_port\":5353,\"machine_port\":53,\"protocol\":\"udp\"}],"
	"\"volumes\":[],\"policy\":{\"allow_from\":[\"db\",\"backend\"],\"egress_allow\":[],"
	"\"network_mode\":\"isolated\"},\"boot_ms\":9007199254740993,\"error\":\"\"}";

/* ---- encoding ----------------------------------------------------------------------------- */

static void
test_encode_machine(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Machine *m = machine_new(fx->arena);

	assert_string_equal(encode(fx, m, 0), machine_json);
	m->state = 42; /* no name: the number */
	m->policy = NULL;
	encode(fx, m, 0);
	assert_non_null(strstr(fx->out.data, "\"state\":42,"));
	assert_non_null(strstr(fx->out.data, "\"policy\":null,"));
}

static void
test_encode_appends(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Empty *e = arena_msg(fx->arena, &sistemo__v1__empty__descriptor);

	assert_int_equal(strbuf_append(&fx->out, "x=", 2), 0);
	assert_int_equal(pbjson_encode(&e->base, 0, &fx->out), 0);
	assert_int_equal(pbjson_encode(&e->base, PBJSON_PRETTY, &fx->out), 0);
	assert_string_equal(fx->out.data, "x={}{}\n");
}

static void
test_encode_pretty(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__NetworkDetail *d =
		arena_msg(fx->arena, &sistemo__v1__network_detail__descriptor);
	Sistemo__V1__Network *n = arena_msg(fx->arena, &sistemo__v1__network__descriptor);
	Sistemo__V1__ExposeRequest *x =
		arena_msg(fx->arena, &sistemo__v1__expose_request__descriptor);

	n->name = "default";
	n->subnet = "10.200.0.0/16";
	n->is_default = 1;
	d->network = n;
	assert_string_equal(encode(fx, d, PBJSON_PRETTY), "{\n"
							  "  \"network\": {\n"
							  "    \"name\": \"default\",\n"
							  "    \"subnet\": \"10.200.0.0/16\",\n"
							  "    \"gateway\": \"\",\n"
							  "    \"bridge\": \"\",\n"
							  "    \"mode\": \"bridge\",\n"
							  "    \"machine_count\": 0,\n"
							  "    \"created_unix_ms\": 0,\n"
							  "    \"is_default\": true\n"
							  "  },\n"
							  "  \"members\": []\n"
							  "}\n");
	assert_string_equal(encode(fx, policy_new(fx->arena), PBJSON_PRETTY),
			    "{\n"
			    "  \"allow_from\": [\n"
			    "    \"db\",\n"
			    "    \"backend\"\n"
			    "  ],\n"
			    "  \"egress_allow\": [],\n"
			    "  \"network_mode\": \"isolated\"\n"
			    "}\n");
	x->machine = "web";
	assert_string_equal(encode(fx, x, PBJSON_PRETTY),
			    "{\n  \"machine\": \"web\",\n  \"port\": null\n}\n");
	assert_string_equal(encode(fx, x, 0), "{\"machine\":\"web\",\"port\":null}");
}

static void
test_encode_escaping(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Status *s = arena_msg(fx->arena, &sistemo__v1__status__descriptor);

	s->code = SISTEMO__V1__CODE__INTERNAL;
	s->message = "q\"b\\ \n\t\r\b\f \x01\x1f\x7f"
		     " \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" /* valid: passed through */
		     " \xff"                                   /* never valid */
		     " \xc3 "                                  /* truncated */
		     " \xc0\xaf"                               /* overlong '/' */
		     " \xed\xa0\x80"                           /* a surrogate */
		     " \xf4\x90\x80\x80"                       /* past U+10FFFF */
		     " \xe2\x82";                              /* truncated at the end */
	s->field = "ports.0";
	assert_string_equal(encode(fx, s, 0),
			    "{\"code\":\"internal\",\"message\":\"q\\\"b\\\\ \\n\\t\\r\\b\\f "
			    "\\u0001\\u001f\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\ufffd "
			    "\\ufffd  \\ufffd\\ufffd \\ufffd\\ufffd\\ufffd "
			    "\\ufffd\\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\",\"field\":\"ports.0\"}");
}

static void
test_encode_reals(void **state)
{
	struct fx *fx = *state;
	Node *n = arena_msg(fx->arena, &node_descriptor);

	n->ratio = 0.1;
	n->scale = 0.1f;
	n->delta = -5;
	assert_string_equal(encode(fx, n, 0), "{\"child\":null,\"ratio\":0.1,\"scale\":0.1,"
					      "\"delta\":-5,\"children\":[],\"blob\":\"\"}");
	n->ratio = 1e300;
	n->scale = FLT_MAX;
	assert_non_null(strstr(encode(fx, n, 0), "\"ratio\":1e+300,\"scale\":3.4028235e+38,"));
	n->ratio = NAN;
	n->scale = -INFINITY;
	assert_non_null(strstr(encode(fx, n, 0), "\"ratio\":null,\"scale\":null,"));
	n->ratio = -0.0;
	n->scale = 1.0f / 3;
	assert_non_null(strstr(encode(fx, n, 0), "\"ratio\":-0,\"scale\":0.33333334,"));
	n->ratio = 2.5e-3;
	n->scale = 0;
	round_trip(fx, &n->base);
}

static void
test_base64(void **state)
{
	static const char *const want[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
					   "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	struct fx *fx = *state;
	Sistemo__V1__LogsReply *l = arena_msg(fx->arena, &sistemo__v1__logs_reply__descriptor);
	Sistemo__V1__LogsReply *back;
	char json[64];
	uint8_t all[256];

	for (size_t i = 0; i < 7; i++) {
		l->data.data = (uint8_t *)"foobar";
		l->data.len = i;
		snprintf(json, sizeof(json), "{\"data\":\"%s\",\"next_offset\":0,\"eof\":false}",
			 want[i]);
		assert_string_equal(encode(fx, l, 0), json);
		back = decode_ok(fx, &sistemo__v1__logs_reply__descriptor, json);
		assert_int_equal(back->data.len, i);
		assert_memory_equal(back->data.data ? back->data.data : (uint8_t *)"", "foobar", i);
	}
	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t)(255 - i);
	l->data.data = all;
	l->data.len = sizeof(all);
	l->next_offset = UINT64_MAX;
	l->eof = 1;
	round_trip(fx, &l->base);
}

static void
test_enum_names(void **state)
{
	(void)state;
	assert_string_equal(pbjson_enum_name(&sistemo__v1__machine_state__descriptor, 3),
			    "running");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__machine_state__descriptor, 0),
			    "unspecified");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__protocol__descriptor, 1), "udp");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__network_mode__descriptor, 2), "none");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__check_status__descriptor, 0), "ok");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__operation_state__descriptor, 2), "done");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__volume_state__descriptor, 2),
			    "attached");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__build_source__descriptor, 3), "oci");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__code__descriptor, 0), "ok");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__code__descriptor, 1),
			    "invalid_argument");
	assert_string_equal(pbjson_enum_name(&sistemo__v1__code__descriptor, 12),
			    "deadline_exceeded");
	assert_null(pbjson_enum_name(&sistemo__v1__code__descriptor, 13));
	assert_null(pbjson_enum_name(&sistemo__v1__protocol__descriptor, -1));
	/* memoised: the same string every time */
	assert_ptr_equal(pbjson_enum_name(&sistemo__v1__protocol__descriptor, 1),
			 pbjson_enum_name(&sistemo__v1__protocol__descriptor, 1));
}

static void
test_enum_parse(void **state)
{
	int v = -1;

	(void)state;
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__machine_state__descriptor, "stopped", &v),
			 0);
	assert_int_equal(v, 5);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__machine_state__descriptor,
					   "MACHINE_STATE_ERROR", &v),
			 0);
	assert_int_equal(v, 7);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__code__descriptor, "not_found", &v), 0);
	assert_int_equal(v, 2);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__code__descriptor, "NOT_FOUND", &v), 0);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__machine_state__descriptor, "Stopped", &v),
			 -EINVAL);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__machine_state__descriptor, "STOPPED", &v),
			 -EINVAL);
	assert_int_equal(pbjson_enum_parse(&sistemo__v1__machine_state__descriptor, "", &v),
			 -EINVAL);
}

static void
test_oneof(void **state)
{
	struct fx *fx = *state;
	Node *n = arena_msg(fx->arena, &node_descriptor);

	/* not set: neither member is written; the unset optional neither */
	assert_string_equal(encode(fx, n, 0), "{\"child\":null,\"ratio\":0,\"scale\":0,\"delta\":0,"
					      "\"children\":[],\"blob\":\"\"}");
	n->value_case = 2;
	n->label = "x";
	n->has_maybe = 1;
	assert_string_equal(encode(fx, n, 0),
			    "{\"child\":null,\"label\":\"x\",\"ratio\":0,\"scale\":0,\"delta\":0,"
			    "\"maybe\":0,\"children\":[],\"blob\":\"\"}");
	n->value_case = 3;
	n->count = -7;
	assert_non_null(strstr(encode(fx, n, 0), "\"child\":null,\"count\":-7,\"ratio\":0,"));
	round_trip(fx, &n->base);

	n = decode_ok(fx, &node_descriptor, "{\"label\":null,\"count\":2}");
	assert_int_equal(n->value_case, 3);
	assert_int_equal(n->count, 2);
	assert_false(n->has_maybe);
	n = decode_ok(fx, &node_descriptor, "{\"label\":\"\",\"maybe\":0}");
	assert_int_equal(n->value_case, 2);
	assert_string_equal(n->label, "");
	assert_true(n->has_maybe);
	decode_fails(fx, &node_descriptor, "{\"label\":\"a\",\"count\":1}", "count",
		     "count: another field of the same oneof is already set");
}

/* ---- decoding ----------------------------------------------------------------------------- */

static void
test_decode_round_trips(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Machine *m = machine_new(fx->arena);
	Sistemo__V1__Operation *op = arena_msg(fx->arena, &sistemo__v1__operation__descriptor);
	Sistemo__V1__AuditEntry *a = arena_msg(fx->arena, &sistemo__v1__audit_entry__descriptor);
	Sistemo__V1__PingReply *p = arena_msg(fx->arena, &sistemo__v1__ping_reply__descriptor);

	round_trip(fx, &m->base);
	/* the pretty form reads back the same */
	encode(fx, m, PBJSON_PRETTY);
	m = decode_ok(fx, &sistemo__v1__machine__descriptor, fx->out.data);
	assert_string_equal(encode(fx, m, 0), machine_json);

	op->state = SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_FAILED;
	op->status = arena_msg(fx->arena, &sistemo__v1__status__descriptor);
	op->status->code = SISTEMO__V1__CODE__RESOURCE_EXHAUSTED;
	op->status->message = "no free ip in '10.200.0.0/16'\n\"\\\x01 \xc3\xa9\xf0\x9f\x98\x80";
	op->n_events = 1;
	op->events = arena_alloc(fx->arena, sizeof(Sistemo__V1__ProgressEvent *));
	op->events[0] = arena_msg(fx->arena, &sistemo__v1__progress_event__descriptor);
	op->events[0]->seq = 1;
	op->events[0]->percent = 100;
	op->result.data = (uint8_t *)"\0\1\2";
	op->result.len = 3;
	round_trip(fx, &op->base);

	a->id = INT64_MIN;
	a->time_unix_ms = INT64_MAX;
	a->success = 1;
	round_trip(fx, &a->base);
	p->rtt_avg_ms = 0.1 + 0.2;
	p->rtt_min_ms = 5e-324;
	p->rtt_max_ms = DBL_MAX;
	round_trip(fx, &p->base);
}

static void
test_decode_numbers_enums(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Machine *m;
	Sistemo__V1__PortRule *p;

	m = decode_ok(fx, &sistemo__v1__machine__descriptor,
		      " \t\r\n{ \"name\" : \"x\" , \"vcpus\" : 4294967295 ,\"state\":\"stopping\","
		      "\"pid\":-9223372036854775808,\"memory_mb\":18446744073709551615 }\n");
	assert_string_equal(m->name, "x");
	assert_int_equal(m->vcpus, UINT32_MAX);
	assert_int_equal(m->state, SISTEMO__V1__MACHINE_STATE__MACHINE_STATE_STOPPING);
	assert_true(m->pid == INT64_MIN);
	assert_true(m->memory_mb == UINT64_MAX);
	assert_string_equal(m->id, ""); /* absent: the default */
	assert_null(m->policy);

	p = decode_ok(fx, &sistemo__v1__port_rule__descriptor, "{\"protocol\":\"udp\"}");
	assert_int_equal(p->protocol, 1);
	p = decode_ok(fx, &sistemo__v1__port_rule__descriptor, "{\"protocol\":\"PROTOCOL_UDP\"}");
	assert_int_equal(p->protocol, 1);
	p = decode_ok(fx, &sistemo__v1__port_rule__descriptor, "{\"protocol\":1}");
	assert_int_equal(p->protocol, 1);
	p = decode_ok(fx, &sistemo__v1__port_rule__descriptor,
		      "{\"protocol\":7,\"host_port\":1e3,\"machine_port\":2.0}");
	assert_int_equal(p->protocol, 7); /* open enum: kept, and written back as 7 */
	assert_int_equal(p->host_port, 1000);
	assert_int_equal(p->machine_port, 2);
	assert_non_null(strstr(encode(fx, p, 0), "\"protocol\":7}"));
	p = decode_ok(fx, &sistemo__v1__port_rule__descriptor, "{\"host_port\":-0}");
	assert_int_equal(p->host_port, 0);
}

static void
test_decode_strings(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Status *s;

	s = decode_ok(fx, &sistemo__v1__status__descriptor,
		      "{\"code\":\"invalid_argument\",\"message\":\"\\u00e9\\ud83d\\ude00\\\"\\\\"
		      "\\/\\b\\f\\n\\r\\t\\u001F\"}");
	assert_int_equal(s->code, SISTEMO__V1__CODE__INVALID_ARGUMENT);
	assert_string_equal(s->message, "\xc3\xa9\xf0\x9f\x98\x80\"\\/\b\f\n\r\t\x1f");
	s = decode_ok(fx, &sistemo__v1__status__descriptor, "{\"code\":\"INVALID_ARGUMENT\"}");
	assert_int_equal(s->code, SISTEMO__V1__CODE__INVALID_ARGUMENT);
	s = decode_ok(fx, &sistemo__v1__status__descriptor, "{\"message\":\"\"}");
	assert_string_equal(s->message, "");
}

/* null: the default, for fields and for elements */
static void
test_decode_nulls(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__Machine *m;
	Sistemo__V1__DeployRequest *d;

	m = decode_ok(fx, &sistemo__v1__machine__descriptor,
		      "{\"name\":null,\"policy\":null,\"ports\":null,\"vcpus\":null,"
		      "\"volumes\":[null]}");
	assert_string_equal(m->name, "");
	assert_null(m->policy);
	assert_int_equal(m->n_ports, 0);
	assert_int_equal(m->n_volumes, 1);
	assert_string_equal(m->volumes[0]->name, "");
	assert_true(protobuf_c_message_check(&m->base));
	d = decode_ok(fx, &sistemo__v1__deploy_request__descriptor,
		      "{\"attach\":[\"a\",null,\"c\"],\"ports\":[]}");
	assert_int_equal(d->n_attach, 3);
	assert_string_equal(d->attach[1], "");
	assert_string_equal(d->attach[2], "c");
	m = decode_ok(fx, &sistemo__v1__machine__descriptor, "null");
	encode(fx, arena_msg(fx->arena, &sistemo__v1__machine__descriptor), 0);
	assert_int_equal(pbjson_encode(&m->base, 0, &fx->again), 0);
	assert_string_equal(fx->again.data, fx->out.data);
}

/* Many elements: arrays grow without quadratic copying. */
static void
test_decode_long_array(void **state)
{
	struct fx *fx = *state;
	struct strbuf *sb = &fx->again;
	Sistemo__V1__Image *img;

	assert_int_equal(strbuf_printf(sb, "{\"tags\":["), 0);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(strbuf_printf(sb, "%s\"t%d\"", i ? "," : "", i), 0);
	assert_int_equal(strbuf_printf(sb, "]}"), 0);
	img = decode_ok(fx, &sistemo__v1__image__descriptor, sb->data);
	assert_int_equal(img->n_tags, 100000);
	assert_string_equal(img->tags[99999], "t99999");
}

static void
test_decode_field_errors(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *md = &sistemo__v1__machine__descriptor;

	decode_fails(fx, md, "{\"ports\":[{\"host_port\":1},{\"host_prot\":2}]}",
		     "ports.1.host_prot", "ports[1].host_prot: unknown field");
	decode_fails(fx, md, "{\"bogus\":1}", "bogus", "bogus: unknown field");
	decode_fails(fx, md, "{\"policy\":{\"network_mode\":\"none\",\"x\":[]}}", "policy.x",
		     "policy.x: unknown field");
	decode_fails(fx, md, "{\"vcpus\":\"2\"}", "vcpus", "vcpus: expected uint32, got string");
	decode_fails(fx, md, "{\"name\":2}", "name", "name: expected string, got number");
	decode_fails(fx, md, "{\"state\":true}", "state",
		     "state: expected MachineState name or number, got boolean");
	decode_fails(fx, md, "{\"ports\":{}}", "ports", "ports: expected array, got object");
	decode_fails(fx, md, "{\"policy\":[]}", "policy", "policy: expected object, got array");
	decode_fails(fx, md, "{\"ports\":[{},1]}", "ports.1",
		     "ports[1]: expected object, got number");
	decode_fails(fx, md, "{\"policy\":{\"allow_from\":[\"a\",false]}}", "policy.allow_from.1",
		     "policy.allow_from[1]: expected string, got boolean");
	decode_fails(fx, &sistemo__v1__image__descriptor, "{\"has_ssh\":1}", "has_ssh",
		     "has_ssh: expected boolean, got number");
	decode_fails(fx, &sistemo__v1__logs_reply__descriptor, "{\"data\":[]}", "data",
		     "data: expected base64 string, got array");
	decode_fails(fx, md, "[]", "", "expected object, got array");
	decode_fails(fx, md, "\"x\"", "", "expected object, got string");
	decode_fails(fx, md, "{\"name\":\"a\",\"name\":\"b\"}", "name", "name: duplicate field");
	decode_fails(fx, md, "{\"state\":\"bogus\"}", "state",
		     "state: unknown MachineState value 'bogus'");
	decode_fails(fx, md, "{\"state\":\"RUNNING\"}", "state", "unknown MachineState value");
	decode_fails(fx, md, "{\"state\":2147483648}", "state",
		     "state: 2147483648 is out of range for an enum");
}

static void
test_decode_range_errors(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *md = &sistemo__v1__machine__descriptor;

	decode_fails(fx, md, "{\"vcpus\":4294967296}", "vcpus",
		     "vcpus: 4294967296 is out of range for uint32");
	decode_fails(fx, md, "{\"vcpus\":-1}", "vcpus", "vcpus: -1 is out of range for uint32");
	decode_fails(fx, md, "{\"vcpus\":1e10}", "vcpus", "1e10 is out of range for uint32");
	decode_fails(fx, md, "{\"vcpus\":1.5}", "vcpus",
		     "vcpus: expected uint32, got a fractional number");
	decode_fails(fx, md, "{\"pid\":9223372036854775808}", "pid",
		     "9223372036854775808 is out of range for int64");
	decode_fails(fx, md, "{\"pid\":-9223372036854775809}", "pid", "is out of range for int64");
	decode_fails(fx, md, "{\"memory_mb\":18446744073709551616}", "memory_mb",
		     "18446744073709551616 is out of range for uint64");
	decode_fails(fx, md, "{\"memory_mb\":1e20}", "memory_mb", "is out of range for uint64");
	decode_fails(fx, md, "{\"memory_mb\":-5}", "memory_mb", "-5 is out of range for uint64");
	decode_fails(fx, &sistemo__v1__exec_read_reply__descriptor, "{\"exit_code\":2147483648}",
		     "exit_code", "2147483648 is out of range for int32");
	decode_fails(fx, &sistemo__v1__exec_read_reply__descriptor, "{\"exit_code\":-2147483649}",
		     "exit_code", "-2147483649 is out of range for int32");
	decode_fails(fx, &sistemo__v1__ping_reply__descriptor, "{\"rtt_avg_ms\":1e400}",
		     "rtt_avg_ms", "1e400 is out of range for double");
	decode_fails(fx, &node_descriptor, "{\"scale\":1e39}", "scale", "out of range for float");
	decode_fails(fx, &node_descriptor, "{\"delta\":-2147483649}", "delta",
		     "out of range for int32");
}

static void
test_decode_bad_base64(void **state)
{
	static const char *const bad[] = {
		"Zm9v!A==", "Zm9", "Z===", "Zg==Zg==", "Zm=v", "Zg=", "Zm9v\\n", "Zg=\\u003d="};
	struct fx *fx = *state;
	char json[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(json, sizeof(json), "{\"data\":\"%s\"}", bad[i]);
		decode_fails(fx, &sistemo__v1__logs_reply__descriptor, json, "data",
			     "data: invalid base64");
	}
	/* an escaped '=' is still an '=' */
	decode_ok(fx, &sistemo__v1__logs_reply__descriptor, "{\"data\":\"Zg=\\u003d\"}");
}

static void
test_decode_truncated(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *md = &sistemo__v1__machine__descriptor;
	const char *eoi = "invalid json: unexpected end of input";

	decode_fails(fx, md, "", "", eoi);
	decode_fails(fx, md, "{", "", eoi);
	decode_fails(fx, md, "{\"na", "", eoi);
	decode_fails(fx, md, "{\"name\"", "", eoi);
	decode_fails(fx, md, "{\"name\":", "name", eoi);
	decode_fails(fx, md, "{\"name\":\"x", "name", eoi);
	decode_fails(fx, md, "{\"name\":\"x\\", "name", eoi);
	decode_fails(fx, md, "{\"name\":\"x\"", "", eoi);
	decode_fails(fx, md, "{\"name\":\"x\",", "", eoi);
	decode_fails(fx, md, "{\"ports\":[", "ports.0", eoi);
	decode_fails(fx, md, "{\"ports\":[{}", "ports", eoi);
	decode_fails(fx, md, "{\"vcpus\":1", "", eoi);
	decode_fails(fx, md, "{\"ports\":[{\"protocol\":\"udp\"},{\"protocol\":\"ud",
		     "ports.1.protocol", eoi);
	decode_fails(fx, md, "nul", "", eoi);
}

static void
test_decode_syntax_errors(void **state)
{
	struct fx *fx = *state;
	const ProtobufCMessageDescriptor *md = &sistemo__v1__machine__descriptor;

	/* trailing garbage */
	decode_fails(fx, md, "{} x", "", "invalid json at byte 3: trailing data after the value");
	decode_fails(fx, md, "{}{}", "", "invalid json at byte 2: trailing data");
	/* malformed */
	decode_fails(fx, md, "{\"name\":\"a\",}", "", "at byte 12: expected a field name");
	decode_fails(fx, md, "{\"name\" \"a\"}", "", "at byte 8: expected ':'");
	decode_fails(fx, md, "{\"name\":\"a\" \"vcpus\":1}", "", "expected ',' or '}'");
	decode_fails(fx, md, "{\"ports\":[{} {}]}", "ports", "expected ',' or ']'");
	decode_fails(fx, md, "{\"ports\":[{},]}", "ports.1", "unexpected character");
	decode_fails(fx, md, "{\"name\":'a'}", "name", "at byte 8: unexpected character");
	decode_fails(fx, md, "{\"vcpus\":01}", "vcpus", "at byte 9: invalid number");
	decode_fails(fx, md, "{\"vcpus\":-}", "vcpus", "invalid number");
	decode_fails(fx, md, "{\"vcpus\":1.}", "vcpus", "invalid number");
	decode_fails(fx, md, "{\"vcpus\":1e}", "vcpus", "invalid number");
	decode_fails(fx, md, "{\"vcpus\":+1}", "vcpus", "unexpected character");
	decode_fails(fx, md, "{\"vcpus\":nul}", "vcpus", "invalid literal");
	decode_fails(fx, md, "{\"vcpus\":NaN}", "vcpus", "unexpected character");
	decode_fails(fx, md, "{\"name\":\"a\\x\"}", "name", "at byte 10: invalid escape");
	decode_fails(fx, md, "{\"name\":\"\\u12G4\"}", "name", "invalid \\u escape");
	decode_fails(fx, md, "{\"name\":\"\\ud800\"}", "name", "lone surrogate");
	decode_fails(fx, md, "{\"name\":\"\\ud800\\u0041\"}", "name", "lone surrogate");
	decode_fails(fx, md, "{\"name\":\"\\udc00\"}", "name", "lone surrogate");
	decode_fails(fx, md, "{\"name\":\"a\\u0000b\"}", "name", "\\u0000 is not allowed");
	decode_fails(fx, md, "{\"name\":\"a\nb\"}", "name", "at byte 10: control character");
	decode_fails(fx, md, "{\"name\":\"\xff\"}", "name", "at byte 9: invalid utf-8");
	decode_fails(fx, md, "{\"name\":\"\xed\xa0\x80\"}", "name", "invalid utf-8");
	decode_fails(fx, md, "{\"n\xc3\"", "", "invalid utf-8");
	decode_fails(fx, md, "{name:1}", "", "expected a field name");
}

static void
test_decode_depth(void **state)
{
	struct fx *fx = *state;
	struct strbuf *sb = &fx->again;
	Node *n;
	int r;

	/* 32 nested objects are fine */
	for (int i = 0; i < 31; i++)
		assert_int_equal(strbuf_printf(sb, "{\"child\":"), 0);
	assert_int_equal(strbuf_printf(sb, "{\"count\":7}"), 0);
	for (int i = 0; i < 31; i++)
		assert_int_equal(strbuf_printf(sb, "}"), 0);
	n = decode_ok(fx, &node_descriptor, sb->data);
	for (int i = 0; i < 31; i++)
		n = n->child;
	assert_int_equal(n->count, 7);

	strbuf_free(sb);
	for (int i = 0; i < 40; i++)
		assert_int_equal(strbuf_printf(sb, "{\"child\":"), 0);
	r = decode_fails(fx, &node_descriptor, sb->data,
			 "child.child.child.child.child.child.child.child.child.child.chi",
			 "nesting deeper than 32");
	assert_int_equal(r, -EMSGSIZE);

	/* arrays count too: 16 objects and 16 arrays, then one more */
	strbuf_free(sb);
	for (int i = 0; i < 16; i++)
		assert_int_equal(strbuf_printf(sb, "{\"children\":["), 0);
	decode_fails(fx, &node_descriptor, sb->data, NULL, "unexpected end of input");
	assert_int_equal(strbuf_printf(sb, "{"), 0);
	r = decode_fails(fx, &node_descriptor, sb->data, NULL, "nesting deeper than 32");
	assert_int_equal(r, -EMSGSIZE);
	assert_int_equal(strncmp(fx->err.field, "children.0.children.0.", 22), 0);
}

static void
test_decode_limits(void **state)
{
	struct fx *fx = *state;
	const size_t big = PBJSON_MAX_INPUT;
	ProtobufCMessage *msg;
	Sistemo__V1__Machine *m;
	int r;

	fx->big = malloc(big + 2);
	assert_non_null(fx->big);
	/* 4 MiB of input are fine, one byte more is not */
	memset(fx->big, ' ', big + 1);
	memcpy(fx->big, "{}", 2);
	err_clear(&fx->err);
	assert_int_equal(pbjson_decode(&sistemo__v1__machine__descriptor, fx->big, big, fx->arena,
				       &msg, &fx->err),
			 0);
	r = pbjson_decode(&sistemo__v1__machine__descriptor, fx->big, big + 1, fx->arena, &msg,
			  &fx->err);
	assert_int_equal(r, -EMSGSIZE);
	assert_int_equal(fx->err.code, ERR_INVALID);
	assert_non_null(strstr(fx->err.msg, "larger than 4 MiB"));

	/* a 1 MiB string is fine, one byte more is not */
	memcpy(fx->big, "{\"name\":\"", 9);
	memset(fx->big + 9, 'a', PBJSON_MAX_STRING);
	memcpy(fx->big + 9 + PBJSON_MAX_STRING, "\"}", 3);
	m = decode_ok(fx, &sistemo__v1__machine__descriptor, fx->big);
	assert_int_equal(strlen(m->name), PBJSON_MAX_STRING);
	memcpy(fx->big + 9 + PBJSON_MAX_STRING, "a\"}", 4);
	r = decode_fails(fx, &sistemo__v1__machine__descriptor, fx->big, "name",
			 "name: string longer than 1 MiB");
	assert_int_equal(r, -EMSGSIZE);
	/* a long unknown name is refused before it is copied */
	memcpy(fx->big, "{\"", 2);
	memset(fx->big + 2, 'k', 300);
	memcpy(fx->big + 302, "\":1}", 5);
	decode_fails(fx, &sistemo__v1__machine__descriptor, fx->big, "",
		     "field name longer than 255 bytes");
}

/* The CLI may call setlocale(): numbers keep their '.' anyway. */
static void
test_locale(void **state)
{
	struct fx *fx = *state;
	Sistemo__V1__PingReply *p = arena_msg(fx->arena, &sistemo__v1__ping_reply__descriptor);

	if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
		print_message("no locale with a ',' decimal point installed: skipped\n");
		skip();
	}
	p->rtt_avg_ms = 1.5;
	assert_non_null(strstr(encode(fx, p, 0), "\"rtt_avg_ms\":1.5,"));
	p = decode_ok(fx, &sistemo__v1__ping_reply__descriptor, "{\"rtt_min_ms\":2.25}");
	assert_true(p->rtt_min_ms == 2.25);
}

static int
teardown_locale(void **state)
{
	setlocale(LC_NUMERIC, "C");
	return teardown(state);
}

static void
test_strbuf(void **state)
{
	struct fx *fx = *state;
	struct strbuf *sb = &fx->again;

	assert_int_equal(strbuf_append(sb, "", 0), 0);
	assert_string_equal(sb->data, "");
	for (int i = 0; i < 100; i++)
		assert_int_equal(strbuf_append(sb, "abc", 3), 0);
	assert_int_equal(sb->len, 300);
	assert_int_equal(strbuf_printf(sb, "%d-%s", 42, "x"), 0);
	assert_int_equal(sb->len, 304);
	assert_string_equal(sb->data + 297, "abc42-x");
	assert_true(sb->cap > sb->len);
	strbuf_free(sb);
	assert_null(sb->data);
	assert_int_equal(sb->len, 0);
	strbuf_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_encode_machine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_pretty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_escaping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode_reals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_base64, setup, teardown),
		cmocka_unit_test(test_enum_names),
		cmocka_unit_test(test_enum_parse),
		cmocka_unit_test_setup_teardown(test_oneof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_round_trips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_numbers_enums, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_strings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_nulls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_long_array, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_field_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_range_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_bad_base64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_syntax_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locale, setup, teardown_locale),
		cmocka_unit_test_setup_teardown(test_strbuf, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
