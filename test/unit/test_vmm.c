/* VMM drivers up to the process boundary: the Firecracker config checked against Firecracker's
 * own swagger schema (loaded with libyaml, which also parses our JSON), the QEMU and
 * Firecracker command lines, the HTTP and QMP requests against fake servers, and the
 * process helpers (alive, wait_ready, stop) against shell stand-ins for a VMM. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "err.h"
#include "qmp.h"
#include "vmm.h"
#include "vmm_impl.h"

/* ---- the swagger checker ------------------------------------------------------------------ */

struct schema {
	yaml_document_t doc;
	yaml_node_t *defs;
};

static yaml_node_t *
map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(d, p->key);
		if (k && k->type == YAML_SCALAR_NODE &&
		    strcmp((char *)k->data.scalar.value, key) == 0)
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

static const char *
scalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool
yaml_load(const char *text, size_t len, yaml_document_t *doc)
{
	yaml_parser_t p;
	bool ok;

	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	ok = yaml_parser_load(&p, doc) && yaml_document_get_root_node(doc);
	if (!ok)
		fprintf(stderr, "yaml: %s at line %zu column %zu\n", p.problem ? p.problem : "?",
			p.problem_mark.line + 1, p.problem_mark.column + 1);
	yaml_parser_delete(&p);
	return ok;
}

/* The swagger file: test/data/ in the tree, else the shared reference next to the tree. */
static bool
schema_path(char *out, size_t size)
{
	const char *src = getenv("SISTEMO_SOURCE_DIR");
	char here[PATH_MAX];

	if (!src) { /* run by hand: derive the tree from this file's path */
		snprintf(here, sizeof(here), "%s", __FILE__);
		char *p = strstr(here, "/test/unit/");
		if (p)
			*p = '\0';
		src = here;
	}
	if (snprintf(out, size, "%s/test/data/firecracker-swagger.yaml", src) < (int)size &&
	    access(out, R_OK) == 0)
		return true;
	return snprintf(out, size, "%s/../shared/reference/firecracker-swagger.yaml", src) <
		       (int)size &&
	       access(out, R_OK) == 0;
}

static bool
schema_load(struct schema *s)
{
	char path[PATH_MAX];
	FILE *f;
	static char text[256 * 1024];
	size_t n;

	if (!schema_path(path, sizeof(path)))
		return false;
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(text, 1, sizeof(text), f);
	fclose(f);
	if (!yaml_load(text, n, &s->doc))
		return false;
	s->defs = map_get(&s->doc, yaml_document_get_root_node(&s->doc), "definitions");
	return s->defs != NULL;
}

/* Follows "$ref: #/definitions/X". */
static yaml_node_t *
schema_resolve(struct schema *s, yaml_node_t *sch)
{
	const char *ref = scalar(map_get(&s->doc, sch, "$ref"));

	if (!ref || strncmp(ref, "#/definitions/", 14) != 0)
		return sch;
	return map_get(&s->doc, s->defs, ref + 14);
}

struct check {
	struct schema *s;
	yaml_document_t *jd;
	char why[512];
};

static bool check_value(struct check *c, yaml_node_t *sch, yaml_node_t *val, const char *path);

static bool __attribute__((format(printf, 2, 3))) reject(struct check *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return false;
}

static bool
check_enum(struct check *c, yaml_node_t *sch, const char *v, const char *path)
{
	yaml_node_t *en = map_get(&c->s->doc, sch, "enum");

	if (!en || en->type != YAML_SEQUENCE_NODE)
		return true;
	for (yaml_node_item_t *i = en->data.sequence.items.start; i < en->data.sequence.items.top;
	     i++)
		if (strcmp(scalar(yaml_document_get_node(&c->s->doc, *i)) ?: "", v) == 0)
			return true;
	return reject(c, "%s: '%s' is not an allowed value", path, v);
}

static bool
check_scalar(struct check *c, yaml_node_t *sch, yaml_node_t *val, const char *type,
	     const char *path)
{
	const char *v = scalar(val), *min, *max;
	bool quoted = val->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	char *end;

	if (!v)
		return reject(c, "%s: expected a %s", path, type);
	if (strcmp(type, "string") == 0 && !quoted)
		return reject(c, "%s: expected a string, got %s", path, v);
	if (strcmp(type, "boolean") == 0 &&
	    (quoted || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)))
		return reject(c, "%s: expected a boolean, got %s", path, v);
	if (strcmp(type, "integer") == 0) {
		long long n = strtoll(v, &end, 10);
		if (quoted || !*v || *end)
			return reject(c, "%s: expected an integer, got %s", path, v);
		min = scalar(map_get(&c->s->doc, sch, "minimum"));
		max = scalar(map_get(&c->s->doc, sch, "maximum"));
		if ((min && n < atoll(min)) || (max && n > atoll(max)))
			return reject(c, "%s: %lld is out of range", path, n);
	}
	return check_enum(c, sch, v, path);
}

static bool
check_object(struct check *c, yaml_node_t *sch, yaml_node_t *val, const char *path)
{
	yaml_node_t *props = map_get(&c->s->doc, sch, "properties");
	yaml_node_t *req = map_get(&c->s->doc, sch, "required");
	char sub[256];

	if (val->type != YAML_MAPPING_NODE)
		return reject(c, "%s: expected an object", path);
	for (yaml_node_pair_t *p = val->data.mapping.pairs.start; p < val->data.mapping.pairs.top;
	     p++) {
		const char *key = scalar(yaml_document_get_node(c->jd, p->key));
		yaml_node_t *prop = map_get(&c->s->doc, props, key);
		snprintf(sub, sizeof(sub), "%s.%s", path, key);
		if (!prop)
			return reject(c, "%s: unknown key", sub);
		if (!check_value(c, prop, yaml_document_get_node(c->jd, p->value), sub))
			return false;
	}
	for (yaml_node_item_t *i = req ? req->data.sequence.items.start : NULL;
	     req && i < req->data.sequence.items.top; i++) {
		const char *key = scalar(yaml_document_get_node(&c->s->doc, *i));
		if (!map_get(c->jd, val, key))
			return reject(c, "%s: required key '%s' missing", path, key);
	}
	return true;
}

static bool
check_value(struct check *c, yaml_node_t *sch, yaml_node_t *val, const char *path)
{
	const char *type;
	char sub[256];
	int n = 0;

	sch = schema_resolve(c->s, sch);
	if (!sch)
		return reject(c, "%s: unresolved $ref", path);
	type = scalar(map_get(&c->s->doc, sch, "type"));
	if (!type || strcmp(type, "object") == 0)
		return check_object(c, sch, val, path);
	if (strcmp(type, "array") != 0)
		return check_scalar(c, sch, val, type, path);
	if (val->type != YAML_SEQUENCE_NODE)
		return reject(c, "%s: expected an array", path);
	for (yaml_node_item_t *i = val->data.sequence.items.start; i < val->data.sequence.items.top;
	     i++) {
		snprintf(sub, sizeof(sub), "%s[%d]", path, n++);
		if (!check_value(c, map_get(&c->s->doc, sch, "items"),
				 yaml_document_get_node(c->jd, *i), sub))
			return false;
	}
	return true;
}

/* Checks json against definitions/<def>; on failure why says where. */
static bool
schema_check(struct schema *s, const char *def, const char *json, char *why, size_t size)
{
	struct check c = {.s = s};
	yaml_document_t jd;
	bool ok;

	if (!yaml_load(json, strlen(json), &jd)) {
		snprintf(why, size, "not parseable: %s", json);
		return false;
	}
	c.jd = &jd;
	ok = check_value(&c, map_get(&s->doc, s->defs, def), yaml_document_get_root_node(&jd), def);
	snprintf(why, size, "%s", ok ? "" : c.why);
	yaml_document_delete(&jd);
	return ok;
}

/* ---- fixtures ------------------------------------------------------------------------------ */

struct state {
	char dir[64]; /* scratch run_dir */
	struct schema schema;
	bool have_schema;
	pid_t pids[8]; /* stand-in VMMs, killed with their process group in teardown */
	size_t n_pids;
	struct err err;
	char buf[16384];
};

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	snprintf(st->dir, sizeof(st->dir), "/tmp/test_vmm.XXXXXX");
	assert_non_null(mkdtemp(st->dir));
	st->have_schema = schema_load(&st->schema);
	*ts = st;
	return 0;
}

static int
teardown(void **ts)
{
	struct state *st = *ts;
	char cmd[128];

	for (size_t i = 0; i < st->n_pids; i++) {
		kill(-st->pids[i], SIGKILL);
		waitpid(st->pids[i], NULL, WNOHANG);
	}
	if (st->have_schema)
		yaml_document_delete(&st->schema.doc);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", st->dir);
	assert_int_equal(system(cmd), 0);
	free(st);
	return 0;
}

static struct vmm_config
base_config(const struct state *st)
{
	return (struct vmm_config){
		.id = "0c6f0b5e-5d4c-4f0e-9a39-1c2b3d4e5f60",
		.name = "web",
		.vcpus = 2,
		.memory_mb = 256,
		.kernel = "/var/lib/sistemo/kernel/vmlinux",
		.cmdline = "console=ttyS0 reboot=k panic=-1 root=/dev/vda rw",
		.rootfs = "/var/lib/sistemo/vms/x/rootfs.ext4",
		.run_dir = st->dir,
	};
}

/* ---- Firecracker config ----------------------------------------------------------------- */

static void
need_schema(struct state *st)
{
	if (!st->have_schema) {
		print_message("firecracker-swagger.yaml not found (test/data or "
			      "../shared/reference): schema checks skipped\n");
		skip();
	}
}

static void
test_fc_config_minimal(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	char why[512];
	int n;

	need_schema(st);
	n = vmm_firecracker_config(&cfg, "1.14.2", st->buf, sizeof(st->buf));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(st->buf));
	if (!schema_check(&st->schema, "FullVmConfiguration", st->buf, why, sizeof(why)))
		fail_msg("%s\n%s", why, st->buf);
	assert_non_null(strstr(st->buf, "\"is_root_device\":true"));
	assert_non_null(strstr(st->buf, "\"vcpu_count\":2"));
	assert_non_null(strstr(st->buf, "\"mem_size_mib\":256"));
	assert_null(strstr(st->buf, "network-interfaces")); /* no tap: no NIC */
	assert_null(strstr(st->buf, "initrd_path"));
}

static void
test_fc_config_full(void **ts)
{
	struct state *st = *ts;
	const char *disks[] = {"/data/a.ext4", "/data/b \"quoted\\.ext4"};
	struct vmm_config cfg = base_config(st);
	char why[512];

	need_schema(st);
	cfg.initrd = "/var/lib/sistemo/kernel/initrd.gz";
	cfg.disks = disks;
	cfg.n_disks = 2;
	cfg.tap = "tap0";
	cfg.mac = "52:54:0a:c8:00:0a";
	cfg.mtu = 1400;
	cfg.cmdline = "console=ttyS0 ip=10.200.0.10::10.200.0.1:255.255.255.0:web:eth0:off";
	assert_true(vmm_firecracker_config(&cfg, "Firecracker v1.16.1", st->buf, sizeof(st->buf)) >
		    0);
	if (!schema_check(&st->schema, "FullVmConfiguration", st->buf, why, sizeof(why)))
		fail_msg("%s\n%s", why, st->buf);
	assert_non_null(strstr(st->buf, "\"initrd_path\":\"/var/lib/sistemo/kernel/initrd.gz\""));
	assert_non_null(strstr(st->buf, "\"drive_id\":\"d2\""));
	assert_non_null(strstr(st->buf, "b \\\"quoted\\\\.ext4")); /* escaped */
	assert_non_null(strstr(st->buf, "\"host_dev_name\":\"tap0\""));
	assert_non_null(strstr(st->buf, "\"guest_mac\":\"52:54:0a:c8:00:0a\""));
	assert_non_null(strstr(st->buf, "\"mtu\":1400"));
}

/* A machine with two data volumes: the root drive first and the only root device, then the
 * volumes in attach order (the guest's /dev/vdb, /dev/vdc). */
static void
test_fc_config_two_drives(void **ts)
{
	struct state *st = *ts;
	const char *disks[] = {"/var/lib/sistemo/volumes/a.ext4",
			       "/var/lib/sistemo/volumes/b.ext4"};
	struct vmm_config cfg = base_config(st);
	char why[512];

	need_schema(st);
	cfg.disks = disks;
	cfg.n_disks = 2;
	assert_true(vmm_firecracker_config(&cfg, "1.14.2", st->buf, sizeof(st->buf)) > 0);
	if (!schema_check(&st->schema, "FullVmConfiguration", st->buf, why, sizeof(why)))
		fail_msg("%s\n%s", why, st->buf);
	const char *root = strstr(st->buf, "\"drive_id\":\"root\"");
	const char *a = strstr(st->buf, "volumes/a.ext4"), *b = strstr(st->buf, "volumes/b.ext4");
	assert_non_null(root);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(root < a && a < b);
	const char *first = strstr(st->buf, "\"is_root_device\":true");
	assert_non_null(first);
	assert_null(strstr(first + 1, "\"is_root_device\":true"));
	assert_true(first < a);
}

/* mtu is a v1.16 field: older Firecracker rejects the whole config with it. */
static void
test_fc_config_mtu_gate(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	static const struct {
		const char *version;
		bool mtu;
	} cases[] = {{"1.16.0", true},  {"v1.17.2", true},
		     {"2.0.0", true},   {"Firecracker v1.16.1", true},
		     {"1.15.9", false}, {"Firecracker v1.14.2", false},
		     {NULL, false},     {"unknown", false}};
	char why[512];

	need_schema(st);
	cfg.tap = "tap0";
	cfg.mtu = 9000;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(vmm_firecracker_config(&cfg, cases[i].version, st->buf,
						   sizeof(st->buf)) > 0);
		assert_int_equal(strstr(st->buf, "\"mtu\"") != NULL, cases[i].mtu);
		if (!schema_check(&st->schema, "FullVmConfiguration", st->buf, why, sizeof(why)))
			fail_msg("%s: %s", cases[i].version ? cases[i].version : "NULL", why);
	}
	cfg.mtu = 0; /* no mtu asked: never sent */
	assert_true(vmm_firecracker_config(&cfg, "1.16.0", st->buf, sizeof(st->buf)) > 0);
	assert_null(strstr(st->buf, "\"mtu\""));
}

static void
test_fc_config_invalid(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	char small[64];

	cfg.vcpus = 3; /* 1 or even */
	assert_int_equal(vmm_firecracker_config(&cfg, NULL, st->buf, sizeof(st->buf)), -EINVAL);
	cfg.vcpus = 34;
	assert_int_equal(vmm_firecracker_config(&cfg, NULL, st->buf, sizeof(st->buf)), -EINVAL);
	cfg.vcpus = 1;
	assert_true(vmm_firecracker_config(&cfg, NULL, st->buf, sizeof(st->buf)) > 0);
	assert_int_equal(vmm_firecracker_config(&cfg, NULL, small, sizeof(small)), -ENOSPC);
}

/* The checker must catch what it is there to catch. */
static void
test_schema_checker_rejects(void **ts)
{
	struct state *st = *ts;
	static const char *const bad[] = {
		"{\"boot-source\":{\"kernel_image_path\":\"/k\",\"kernel_args\":\"x\"}}",
		"{\"boot-source\":{\"boot_args\":\"x\"}}",
		"{\"drives\":[{\"drive_id\":\"a\",\"is_root_device\":\"yes\"}]}",
		"{\"drives\":[{\"drive_id\":\"a\",\"is_root_device\":true,\"cache_type\":\"None\"}]"
		"}",
		"{\"machine-config\":{\"vcpu_count\":64,\"mem_size_mib\":128}}",
		"{\"machine-config\":{\"vcpu_count\":\"2\",\"mem_size_mib\":128}}",
		"{\"network-interfaces\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"t\",\"mtu\":"
		"40}]}",
		"{\"logger\":{\"level\":\"Loud\"}}",
		"{\"boot_source\":{}}",
	};
	char why[512];

	need_schema(st);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (schema_check(&st->schema, "FullVmConfiguration", bad[i], why, sizeof(why)))
			fail_msg("accepted: %s", bad[i]);
	assert_true(schema_check(&st->schema, "InstanceActionInfo",
				 "{\"action_type\":\"SendCtrlAltDel\"}", why, sizeof(why)));
	assert_false(schema_check(&st->schema, "InstanceActionInfo", "{\"action_type\":\"Reboot\"}",
				  why, sizeof(why)));
}

static void
test_fc_argv(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	struct vmm_argv a = {0};
	char path[128];

	assert_int_equal(vmm_firecracker_argv(&cfg, "/opt/fc/firecracker", &a), 0);
	assert_int_equal(a.n, 5);
	assert_string_equal(a.v[0], "/opt/fc/firecracker");
	assert_string_equal(a.v[1], "--api-sock");
	snprintf(path, sizeof(path), "%s/api.sock", st->dir);
	assert_string_equal(a.v[2], path);
	assert_string_equal(a.v[3], "--config-file");
	snprintf(path, sizeof(path), "%s/config.json", st->dir);
	assert_string_equal(a.v[4], path);
	assert_null(a.v[5]);
	vmm_argv_free(&a);
}

/* ---- Firecracker API: a one-shot HTTP server on run_dir/api.sock ------------------------- */

struct fake_api {
	int listen_fd;
	const char *response;
	char request[2048];
	size_t len;
};

static void *
fake_api_serve(void *arg)
{
	struct fake_api *f = arg;
	int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	/* the request is small: read until its body (Content-Length) is in */
	while (f->len < sizeof(f->request) - 1 &&
	       (n = read(fd, f->request + f->len, sizeof(f->request) - 1 - f->len)) > 0) {
		f->len += (size_t)n;
		f->request[f->len] = '\0';
		char *body = strstr(f->request, "\r\n\r\n");
		char *cl = strstr(f->request, "Content-Length: ");
		if (body && cl && strlen(body + 4) >= strtoul(cl + 16, NULL, 10))
			break;
	}
	n = write(fd, f->response, strlen(f->response));
	(void)n;
	close(fd);
	return NULL;
}

static int
unix_listen(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void
run_fake_api(struct state *st, struct fake_api *f, int *ret)
{
	char path[128];
	pthread_t t;

	snprintf(path, sizeof(path), "%s/api.sock", st->dir);
	f->listen_fd = unix_listen(path);
	assert_int_equal(pthread_create(&t, NULL, fake_api_serve, f), 0);
	err_clear(&st->err);
	*ret = vmm_firecracker.request_shutdown(st->dir, 1, &st->err);
	pthread_join(t, NULL);
	close(f->listen_fd);
}

static void
test_fc_request_shutdown(void **ts)
{
	struct state *st = *ts;
	struct fake_api f = {.response = "HTTP/1.1 204 \r\nServer: Firecracker API\r\n"
					 "Connection: keep-alive\r\nContent-Length: 0\r\n\r\n"};
	const char *body;
	char why[512];
	int r;

	run_fake_api(st, &f, &r);
	assert_int_equal(r, 0);
	assert_true(strncmp(f.request, "PUT /actions HTTP/1.1\r\n", 23) == 0);
	assert_non_null(strstr(f.request, "\r\nContent-Type: application/json\r\n"));
	assert_non_null(strstr(f.request, "\r\nHost: "));
	body = strstr(f.request, "\r\n\r\n") + 4;
	assert_string_equal(body, "{\"action_type\":\"SendCtrlAltDel\"}");
	char cl[64];
	snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(body));
	assert_non_null(strstr(f.request, cl));
	if (st->have_schema &&
	    !schema_check(&st->schema, "InstanceActionInfo", body, why, sizeof(why)))
		fail_msg("%s", why);
}

static void
test_fc_request_shutdown_fault(void **ts)
{
	struct state *st = *ts;
	struct fake_api f = {.response = "HTTP/1.1 400 \r\nContent-Type: application/json\r\n"
					 "Content-Length: 47\r\n\r\n"
					 "{\"fault_message\":\"Guest is not running yet.\"}\r\n"};
	int r;

	run_fake_api(st, &f, &r);
	assert_true(r < 0);
	assert_int_equal(st->err.code, ERR_INTERNAL);
	assert_non_null(strstr(st->err.msg, "400"));
	assert_non_null(strstr(st->err.msg, "Guest is not running yet."));

	err_clear(&st->err); /* nothing listening */
	assert_true(vmm_firecracker.request_shutdown(st->dir, 1, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_UNAVAILABLE);
}

/* ---- QEMU argv ---------------------------------------------------------------------------- */

/* The argument after flag (its nth occurrence, from 0), or NULL. */
static const char *
arg_after(const struct vmm_argv *a, const char *flag, int nth)
{
	for (size_t i = 0; i + 1 < a->n; i++)
		if (strcmp(a->v[i], flag) == 0 && nth-- == 0)
			return a->v[i + 1];
	return NULL;
}

static int
count_args(const struct vmm_argv *a, const char *flag)
{
	int n = 0;

	for (size_t i = 0; i < a->n; i++)
		n += strcmp(a->v[i], flag) == 0;
	return n;
}

static void
test_qemu_argv_tcg(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	struct vmm_argv a = {0};
	char path[128];

	cfg.initrd = "/k/initrd.gz";
	assert_int_equal(vmm_qemu_argv(&cfg, "/usr/bin/qemu-system-x86_64", &a), 0);
	assert_string_equal(a.v[0], "/usr/bin/qemu-system-x86_64");
	assert_string_equal(arg_after(&a, "-M", 0),
			    "microvm,x-option-roms=off,rtc=on,isa-serial=on");
	assert_string_equal(arg_after(&a, "-accel", 0), "tcg,tb-size=32");
	assert_string_equal(arg_after(&a, "-cpu", 0), "max");
	assert_string_equal(arg_after(&a, "-m", 0), "256M");
	assert_string_equal(arg_after(&a, "-smp", 0), "2");
	assert_string_equal(arg_after(&a, "-display", 0), "none");
	for (const char *const *f =
		     (const char *const[]){"-nodefaults", "-no-user-config", "-no-reboot", NULL};
	     *f; f++)
		assert_int_equal(count_args(&a, *f), 1);
	assert_string_equal(arg_after(&a, "-kernel", 0), cfg.kernel);
	assert_string_equal(arg_after(&a, "-initrd", 0), "/k/initrd.gz");
	assert_string_equal(arg_after(&a, "-append", 0), cfg.cmdline);
	assert_string_equal(arg_after(&a, "-drive", 0),
			    "id=root,file=/var/lib/sistemo/vms/x/rootfs.ext4,format=raw,if=none,"
			    "discard=unmap,detect-zeroes=unmap");
	assert_string_equal(arg_after(&a, "-device", 0), "virtio-blk-device,drive=root");
	assert_int_equal(count_args(&a, "-netdev"), 0); /* no tap: no NIC */
	assert_int_equal(count_args(&a, "-device"), 1);
	snprintf(path, sizeof(path), "file,id=con,path=%s/console.log,append=on", st->dir);
	assert_string_equal(arg_after(&a, "-chardev", 0), path);
	assert_string_equal(arg_after(&a, "-serial", 0), "chardev:con");
	assert_string_equal(arg_after(&a, "-chardev", 1), "socket,id=qmp,fd=3,server=on,wait=off");
	assert_string_equal(arg_after(&a, "-mon", 0), "chardev=qmp,mode=control");
	snprintf(path, sizeof(path), "%s/vmm.pid", st->dir);
	assert_string_equal(arg_after(&a, "-pidfile", 0), path);
	assert_string_equal(arg_after(&a, "-name", 0),
			    "sistemo-0c6f0b5e-5d4c-4f0e-9a39-1c2b3d4e5f60");
	assert_null(a.v[a.n]);
	vmm_argv_free(&a);
}

static void
test_qemu_argv_kvm_nic_disks(void **ts)
{
	struct state *st = *ts;
	const char *disks[] = {"/data/a.raw", "/data/odd,name.raw"};
	struct vmm_config cfg = base_config(st);
	struct vmm_argv a = {0};

	cfg.kvm = true;
	cfg.initrd = ""; /* none */
	cfg.disks = disks;
	cfg.n_disks = 2;
	cfg.tap = "tap0";
	cfg.mac = "52:54:0a:c8:00:0a";
	cfg.mtu = 1400;
	assert_int_equal(vmm_qemu_argv(&cfg, "qemu", &a), 0);
	assert_string_equal(arg_after(&a, "-accel", 0), "kvm");
	assert_string_equal(arg_after(&a, "-cpu", 0), "host");
	assert_int_equal(count_args(&a, "-initrd"), 0);
	/* root first (/dev/vda), then the data disks in order; commas doubled */
	assert_string_equal(arg_after(&a, "-device", 0), "virtio-blk-device,drive=root");
	assert_string_equal(arg_after(&a, "-drive", 1),
			    "id=d1,file=/data/a.raw,format=raw,if=none,discard=unmap,"
			    "detect-zeroes=unmap");
	assert_string_equal(arg_after(&a, "-device", 1), "virtio-blk-device,drive=d1");
	assert_string_equal(arg_after(&a, "-drive", 2),
			    "id=d2,file=/data/odd,,name.raw,format=raw,if=none,discard=unmap,"
			    "detect-zeroes=unmap");
	assert_string_equal(arg_after(&a, "-device", 2), "virtio-blk-device,drive=d2");
	assert_string_equal(arg_after(&a, "-netdev", 0),
			    "tap,id=n0,ifname=tap0,script=no,downscript=no");
	assert_string_equal(arg_after(&a, "-device", 3),
			    "virtio-net-device,netdev=n0,mac=52:54:0a:c8:00:0a,host_mtu=1400");
	vmm_argv_free(&a);

	cfg.rootfs = NULL; /* initramfs-only guest */
	cfg.n_disks = 0;
	cfg.mac = NULL;
	cfg.mtu = 0;
	assert_int_equal(vmm_qemu_argv(&cfg, "qemu", &a), 0);
	assert_int_equal(count_args(&a, "-drive"), 0);
	assert_string_equal(arg_after(&a, "-device", 0), "virtio-net-device,netdev=n0");
	vmm_argv_free(&a);
}

static void
test_qemu_argv_limits(void **ts)
{
	struct state *st = *ts;
	const char *disks[VMM_MAX_DISKS + 1];
	struct vmm_config cfg = base_config(st);
	struct vmm_argv a = {0};

	for (size_t i = 0; i <= VMM_MAX_DISKS; i++)
		disks[i] = "/data/disk.raw";
	cfg.disks = disks;
	cfg.tap = "tap0";
	cfg.mac = "52:54:00:00:00:01";
	cfg.n_disks = VMM_MAX_DISKS;
	assert_int_equal(vmm_qemu_argv(&cfg, "qemu", &a), 0);
	assert_int_equal(count_args(&a, "-drive"), VMM_MAX_DISKS + 1);
	vmm_argv_free(&a);
	cfg.n_disks = VMM_MAX_DISKS + 1;
	assert_int_equal(vmm_qemu_argv(&cfg, "qemu", &a), -EINVAL);
	cfg.n_disks = 0;
	cfg.kernel = NULL;
	assert_int_equal(vmm_qemu_argv(&cfg, "qemu", &a), -EINVAL);

	cfg = base_config(st); /* the checks start() makes before anything runs */
	assert_int_equal(vmm_config_check(&cfg, &st->err), 0);
	cfg.vcpus = 0;
	assert_true(vmm_config_check(&cfg, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	err_clear(&st->err);
	cfg = base_config(st);
	cfg.run_dir = "/a/very/long/run/directory/that/cannot/hold/a/unix/socket/because/"
		      "sockaddr_un/is/only/one/hundred/and/eight/bytes";
	assert_true(vmm_config_check(&cfg, &st->err) < 0);
	assert_string_equal(st->err.field, "run_dir");
}

/* ---- QMP against a fake monitor ---------------------------------------------------------- */

struct fake_qmp {
	int listen_fd;
	const char *command_reply; /* after the command line; NULL: never greet */
	char got[512];
};

static void *
fake_qmp_serve(void *arg)
{
	struct fake_qmp *f = arg;
	int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	FILE *io;
	char line[256];

	if (fd < 0)
		return NULL;
	io = fdopen(fd, "r+");
	if (!f->command_reply) { /* hold the connection until the client gives up */
		while (fgets(line, sizeof(line), io))
			;
		fclose(io);
		return NULL;
	}
	setvbuf(io, NULL, _IONBF, 0);
	fputs("{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\r\n", io);
	if (fgets(line, sizeof(line), io))
		strncat(f->got, line, sizeof(f->got) - strlen(f->got) - 1);
	fputs("{\"return\": {}}\r\n", io);
	if (fgets(line, sizeof(line), io))
		strncat(f->got, line, sizeof(f->got) - strlen(f->got) - 1);
	fputs(f->command_reply, io);
	fclose(io);
	return NULL;
}

static int
run_fake_qmp(struct state *st, struct fake_qmp *f, const char *command, unsigned timeout_ms)
{
	char path[128];
	pthread_t t;
	int r;

	snprintf(path, sizeof(path), "%s/qmp.sock", st->dir);
	assert_int_equal(qmp_listen(path, &f->listen_fd, &st->err), 0);
	assert_int_equal(pthread_create(&t, NULL, fake_qmp_serve, f), 0);
	err_clear(&st->err);
	r = qmp_execute(path, command, timeout_ms, &st->err);
	shutdown(f->listen_fd, SHUT_RDWR);
	pthread_join(t, NULL);
	close(f->listen_fd);
	return r;
}

static void
test_qmp(void **ts)
{
	struct state *st = *ts;
	struct fake_qmp ok = {.command_reply = "{\"timestamp\": {\"seconds\": 1}, \"event\": "
					       "\"POWERDOWN\"}\r\n{\"return\": {}}\r\n"};
	struct fake_qmp bad = {.command_reply = "{\"error\": {\"class\": \"GenericError\", "
						"\"desc\": \"no \\\"power\\\" here\"}}\r\n"};
	struct fake_qmp mute = {0};
	char path[128];

	assert_int_equal(run_fake_qmp(st, &ok, "system_powerdown", 2000), 0);
	assert_string_equal(ok.got, "{\"execute\":\"qmp_capabilities\"}\n"
				    "{\"execute\":\"system_powerdown\"}\n");
	assert_true(run_fake_qmp(st, &bad, "system_powerdown", 2000) < 0);
	assert_int_equal(st->err.code, ERR_INTERNAL);
	assert_string_equal(st->err.msg, "qmp: system_powerdown: no \\\"power\\\" here");
	assert_true(run_fake_qmp(st, &mute, "system_powerdown", 200) < 0);
	assert_int_equal(st->err.code, ERR_DEADLINE);

	snprintf(path, sizeof(path), "%s/nothing.sock", st->dir);
	err_clear(&st->err);
	assert_true(qmp_execute(path, NULL, 200, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_UNAVAILABLE);
}

/* ---- processes: shell stand-ins whose command line names the run_dir --------------------- */

/* Starts `sh -c script <run_dir>` through vmm_spawn: $0 is the run_dir, so vmm_alive sees it. */
static pid_t
start_fake_vmm(struct state *st, const char *script)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, st->dir, NULL};
	struct vmm_spawn s = {argv, NULL, NULL, -1, -1, -1};
	pid_t pid = 0;

	err_clear(&st->err);
	if (vmm_spawn(&s, &pid, &st->err) < 0)
		fail_msg("%s", st->err.msg);
	st->pids[st->n_pids++] = pid;
	return pid;
}

static int64_t
since_ms(int64_t start)
{
	return vmm_now_ms() - start;
}

static void
test_alive(void **ts)
{
	struct state *st = *ts;
	pid_t pid = start_fake_vmm(st, "sleep 30");
	char other[96];

	assert_true(vmm_alive(pid, st->dir));
	snprintf(other, sizeof(other), "%s/", st->dir);
	assert_true(vmm_alive(pid, other));
	assert_false(vmm_alive(pid, "/nonexistent/vms/1"));
	snprintf(other, sizeof(other), "%.*s", (int)strlen(st->dir) - 1, st->dir); /* a prefix */
	assert_false(vmm_alive(pid, other));
	assert_false(vmm_alive(getpid(), st->dir));
	assert_false(vmm_alive(0, st->dir));
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_false(vmm_alive(pid, st->dir));
}

static void
test_spawn_errors(void **ts)
{
	struct state *st = *ts;
	char *argv[] = {"/nonexistent/qemu", NULL};
	struct vmm_spawn s = {argv, NULL, NULL, -1, -1, -1};
	pid_t pid = 0;

	assert_true(vmm_spawn(&s, &pid, &st->err) < 0);
	assert_string_equal(st->err.msg,
			    "spawn '/nonexistent/qemu': exec '/nonexistent/qemu': No such file or "
			    "directory");
	err_clear(&st->err);
	s.netns_path = "/nonexistent/netns";
	assert_true(vmm_spawn(&s, &pid, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(st->err.msg, "network namespace '/nonexistent/netns'"));
}

static void
append(struct state *st, const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", st->dir, name);
	f = fopen(path, "a");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_wait_ready(void **ts)
{
	struct state *st = *ts;
	int64_t t0;
	pid_t pid;

	append(st, "console.log", "old boot\n");
	/* the marker arrives in two writes, so it straddles two reads */
	pid = start_fake_vmm(st, "sleep 0.2; printf 'booting\\nsistemo: re' >>\"$0/console.log\"; "
				 "sleep 0.2; printf 'ady\\r\\n' >>\"$0/console.log\"; sleep 30");
	t0 = vmm_now_ms();
	assert_int_equal(vmm_wait_ready(st->dir, pid, 5000, &st->err), 0);
	assert_in_range(since_ms(t0), 300, 3000);
	/* already there: returns at once */
	assert_int_equal(vmm_wait_ready(st->dir, pid, 0, &st->err), 0);
}

static void
test_wait_ready_deadline(void **ts)
{
	struct state *st = *ts;
	pid_t pid = start_fake_vmm(st, "echo 'Probing EDD' >>\"$0/console.log\"; sleep 30");
	int64_t t0 = vmm_now_ms();

	assert_true(vmm_wait_ready(st->dir, pid, 300, &st->err) < 0);
	assert_in_range(since_ms(t0), 290, 2000);
	assert_int_equal(st->err.code, ERR_DEADLINE);
	assert_non_null(strstr(st->err.msg, "guest not ready after 300 ms"));
}

static void
test_wait_ready_exit(void **ts)
{
	struct state *st = *ts;
	pid_t pid = start_fake_vmm(st, "sleep 0.2; echo 'Kernel panic' >>\"$0/console.log\"; "
				       "echo 'qemu: fatal: bad thing' >>\"$0/vmm.log\"; exit 3");

	assert_true(vmm_wait_ready(st->dir, pid, 5000, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INTERNAL);
	assert_non_null(strstr(st->err.msg, "exited with status 3 before the guest was ready"));
	assert_non_null(strstr(st->err.msg, "Kernel panic"));
	assert_non_null(strstr(st->err.msg, "qemu: fatal: bad thing"));
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped */
	err_clear(&st->err);
	assert_true(vmm_wait_ready(st->dir, pid, 100, &st->err) < 0); /* gone */
}

static int
fake_shutdown_signal(const char *run_dir, pid_t pid, struct err *err)
{
	(void)run_dir;
	(void)err;
	return kill(pid, SIGUSR1);
}

static int
fake_shutdown_ignored(const char *run_dir, pid_t pid, struct err *err)
{
	(void)run_dir;
	(void)pid;
	(void)err;
	return 0;
}

static int
fake_shutdown_fails(const char *run_dir, pid_t pid, struct err *err)
{
	(void)run_dir;
	(void)pid;
	return err_set(err, ERR_UNAVAILABLE, NULL, ECONNREFUSED, "no monitor");
}

static void
test_stop_clean_and_grace(void **ts)
{
	struct state *st = *ts;
	const struct vmm_driver clean = {"fake", NULL, fake_shutdown_signal};
	const struct vmm_driver deaf = {"fake", NULL, fake_shutdown_ignored};
	bool was_clean = false;
	int64_t t0;
	pid_t pid;

	/* the guest powers off when asked */
	pid = start_fake_vmm(st, "trap 'exit 0' USR1; sleep 30 & wait");
	t0 = vmm_now_ms();
	assert_int_equal(vmm_stop(&clean, st->dir, pid, 5000, &was_clean, &st->err), 0);
	assert_true(was_clean);
	assert_in_range(since_ms(t0), 0, 2000);
	assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped */

	/* ignores the request: SIGTERM after the grace */
	pid = start_fake_vmm(st, "sleep 30");
	t0 = vmm_now_ms();
	assert_int_equal(vmm_stop(&deaf, st->dir, pid, 300, &was_clean, &st->err), 0);
	assert_false(was_clean);
	assert_in_range(since_ms(t0), 290, 1200);
}

static void
test_stop_escalation(void **ts)
{
	struct state *st = *ts;
	const struct vmm_driver deaf = {"fake", NULL, fake_shutdown_ignored};
	const struct vmm_driver broken = {"fake", NULL, fake_shutdown_fails};
	bool was_clean = false;
	int64_t t0;
	pid_t pid;

	/* ignores SIGTERM too: SIGKILL a second later */
	pid = start_fake_vmm(st, "trap '' TERM; sleep 30");
	t0 = vmm_now_ms();
	assert_int_equal(vmm_stop(&deaf, st->dir, pid, 300, &was_clean, &st->err), 0);
	assert_false(was_clean);
	assert_in_range(since_ms(t0), 1290, 2300);
	assert_false(vmm_alive(pid, st->dir));

	/* the request cannot be sent: no grace to wait for */
	pid = start_fake_vmm(st, "sleep 30");
	t0 = vmm_now_ms();
	assert_int_equal(vmm_stop(&broken, st->dir, pid, 5000, &was_clean, &st->err), 0);
	assert_false(was_clean);
	assert_in_range(since_ms(t0), 0, 1000);

	/* gone already, or a pid that is not this machine's: nothing is signalled */
	assert_int_equal(vmm_stop(&deaf, st->dir, pid, 5000, &was_clean, &st->err), 0);
	assert_true(was_clean);
	pid = start_fake_vmm(st, "sleep 30");
	assert_int_equal(vmm_stop(&deaf, "/nonexistent/vms/2", pid, 5000, &was_clean, &st->err), 0);
	assert_true(vmm_alive(pid, st->dir));
}

/* vmm.pid naming a live VMM of this run_dir: a second start would share its disks. */
static void
test_start_refuses_second_vmm(void **ts)
{
	struct state *st = *ts;
	struct vmm_config cfg = base_config(st);
	char text[32];
	pid_t pid, other = 0;

	pid = start_fake_vmm(st, "sleep 30");
	snprintf(text, sizeof(text), "%d\n", (int)pid);
	append(st, "vmm.pid", text);
	cfg.binary = "/nonexistent/qemu-system-x86_64";
	err_clear(&st->err);
	assert_true(vmm_qemu.start(&cfg, &other, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_EXISTS);

	kill(pid, SIGKILL); /* once it is gone, start goes on (and fails at the exec) */
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	err_clear(&st->err);
	assert_true(vmm_qemu.start(&cfg, &other, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(st->err.msg, "exec '/nonexistent/qemu-system-x86_64'"));
}

static void
test_mac_and_drivers(void **ts)
{
	char mac[18];

	(void)ts;
	vmm_mac_for_ip(0x0ac8000a, mac); /* 10.200.0.10 */
	assert_string_equal(mac, "52:54:0a:c8:00:0a");
	vmm_mac_for_ip(0xffffffff, mac);
	assert_string_equal(mac, "52:54:ff:ff:ff:ff");
	vmm_mac_for_ip(0, mac);
	assert_string_equal(mac, "52:54:00:00:00:00");
	assert_ptr_equal(vmm_driver_find("qemu"), &vmm_qemu);
	assert_ptr_equal(vmm_driver_find("firecracker"), &vmm_firecracker);
	assert_null(vmm_driver_find("cloud-hypervisor"));
	assert_null(vmm_driver_find(NULL));
}

static void
test_log_tail(void **ts)
{
	struct state *st = *ts;
	char out[128];
	char big[600];

	vmm_log_tail(st->dir, "missing.log", 100, out, sizeof(out));
	assert_string_equal(out, "");
	append(st, "t.log", "first\r\nsecond\tline\nthird\n\n");
	vmm_log_tail(st->dir, "t.log", 100, out, sizeof(out));
	assert_string_equal(out, "first | second?line | third");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	append(st, "t.log", big);
	append(st, "t.log", "\nlast words\n");
	vmm_log_tail(st->dir, "t.log", 20, out, sizeof(out));
	assert_string_equal(out, "last words"); /* starts at a line */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fc_config_minimal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_config_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_config_two_drives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_config_mtu_gate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_config_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_checker_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_argv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_request_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fc_request_shutdown_fault, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_argv_tcg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_argv_kvm_nic_disks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_argv_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_ready_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_ready_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_clean_and_grace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_escalation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_refuses_second_vmm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac_and_drivers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_tail, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
