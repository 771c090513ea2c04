#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "macro.h"

/* config.yml is a handful of lines; anything bigger is a mistake, not a config. */
#define CONFIG_FILE_MAX (64 * 1024)
/* How much of a bad value an error message repeats. */
#define VALUE_SHOW_MAX 120

enum key_type {
	KEY_UINT,       /* decimal, no sign; unsigned or uint64_t field */
	KEY_BOOL,       /* true/false, yes/no, on/off, 1/0 */
	KEY_IFNAME,     /* network interface name, '' = auto */
	KEY_ENUM,       /* one of .values */
	KEY_CIDR,       /* IPv4 network, prefix in [.min, .max] */
	KEY_URL,        /* starts with one of .values, '' = .empty */
	KEY_LISTEN_URL, /* .values[0] + HOST:PORT, '' = .empty */
	KEY_ADDR,       /* IPv4 or IPv6 literal */
};

enum source { SOURCE_DEFAULT, SOURCE_FILE, SOURCE_ENV };

static const char *const source_names[] = {
	[SOURCE_DEFAULT] = "default", [SOURCE_FILE] = "config.yml", [SOURCE_ENV] = "env"};

struct config_key {
	const char *key;
	const char *env;
	enum key_type type;
	size_t offset, size;
	const char *def;
	uint64_t min, max;         /* KEY_UINT: range, max 0 = the field's; KEY_CIDR: prefix */
	const char *const *values; /* KEY_ENUM: the words; KEY_URL, KEY_LISTEN_URL: the schemes */
	const char *empty;         /* what '' means, for types that allow it */
	const char *help;
};

#define KEY(name, env_name, key_type, default_text, ...)                                           \
	{                                                                                          \
		.key = #name, .env = env_name, .type = key_type,                                   \
		.offset = offsetof(struct config, name),                                           \
		.size = sizeof(((struct config *)0)->name), .def = default_text, __VA_ARGS__       \
	}

static const char *const vmm_words[] = {"auto", "qemu", "firecracker", NULL};
static const char *const log_level_words[] = {"error", "warn", "info", "debug", NULL};
static const char *const registry_schemes[] = {"http://", "https://", NULL};
static const char *const remote_schemes[] = {"tls+tcp://", NULL};

static const struct config_key keys[] = {
	KEY(port, "PORT", KEY_UINT, "7777", .min = 1, .max = 65535,
	    .help = "TCP port of the HTTP gateway"),
	KEY(host_interface, "HOST_INTERFACE", KEY_IFNAME, "",
	    .empty = "the default-route interface",
	    .help = "uplink for guest traffic; empty picks the default-route interface"),
	KEY(bridge_subnet, "BRIDGE_SUBNET", KEY_CIDR, "10.200.0.0/16", .min = 8, .max = 24,
	    .help = "IPv4 subnet of the default bridge; the gateway takes its first address"),
	KEY(max_vcpus, "MAX_VCPUS", KEY_UINT, "64", .min = 1, .max = 256,
	    .help = "most vCPUs one machine may have"),
	KEY(max_memory_mb, "MAX_MEMORY_MB", KEY_UINT, "262144", .min = 128, .max = 16777216,
	    .help = "most memory one machine may have, in MiB"),
	KEY(max_storage_mb, "MAX_STORAGE_MB", KEY_UINT, "1048576", .min = 64,
	    .help = "largest root disk one machine may have, in MiB"),
	KEY(min_disk_free_mb, "MIN_DISK_FREE_MB", KEY_UINT, "512",
	    .help = "create refuses when the data dir has less free space, in MiB"),
	KEY(default_bandwidth_mbps, "DEFAULT_BANDWIDTH_MBPS", KEY_UINT, "0",
	    .help = "default guest download limit in Mbit/s; 0 = unlimited"),
	KEY(default_upload_mbps, "DEFAULT_UPLOAD_MBPS", KEY_UINT, "0",
	    .help = "default guest upload limit in Mbit/s; 0 = unlimited"),
	KEY(default_iops, "DEFAULT_IOPS", KEY_UINT, "0",
	    .help = "default disk operations per second; 0 = unlimited"),
	KEY(default_disk_bw_mbps, "DEFAULT_DISK_BW_MBPS", KEY_UINT, "0",
	    .help = "default disk bandwidth in MiB/s; 0 = unlimited"),
	KEY(reconciler_interval_sec, "RECONCILER_INTERVAL_SEC", KEY_UINT, "30", .min = 1,
	    .max = 3600, .help = "seconds between reconciler passes"),
	KEY(ssh_timeout_sec, "SSH_TIMEOUT_SEC", KEY_UINT, "60", .min = 1, .max = 600,
	    .help = "seconds to wait for a guest's SSH port after boot"),
	KEY(block_smtp, "BLOCK_SMTP", KEY_BOOL, "true",
	    .help = "drop outgoing SMTP (tcp 25, 465, 587) from guests"),
	KEY(rate_limit_rps, "RATE_LIMIT_RPS", KEY_UINT, "100",
	    .help = "gateway requests per second per client IP; 0 disables the limit"),
	KEY(rate_limit_burst, "RATE_LIMIT_BURST", KEY_UINT, "200",
	    .help = "gateway request burst per client IP"),
	KEY(vmm, "VMM", KEY_ENUM, "auto", .values = vmm_words,
	    .help = "hypervisor driver; auto picks one that is installed"),
	KEY(registry_url, "REGISTRY_URL", KEY_URL, "", .values = registry_schemes, .empty = "none",
	    .help = "image registry base URL (docs/images.md); empty = none"),
	KEY(log_level, "LOG_LEVEL", KEY_ENUM, "info", .values = log_level_words,
	    .help = "daemon log verbosity"),
	KEY(remote_listen, "REMOTE_LISTEN", KEY_LISTEN_URL, "", .values = remote_schemes,
	    .empty = "off",
	    .help = "TLS listener for remote CLIs, tls+tcp://HOST:PORT; empty = off"),
	KEY(gateway_listen, "GATEWAY_LISTEN", KEY_ADDR, "127.0.0.1",
	    .help = "address the HTTP gateway binds, an IPv4 or IPv6 literal"),
};

static_assert(ARRAY_SIZE(keys) == CONFIG_KEY_COUNT, "CONFIG_KEY_COUNT must match the key table");

static void *
key_field(const struct config_key *k, struct config *c)
{
	return (char *)c + k->offset;
}

static const void *
key_field_const(const struct config_key *k, const struct config *c)
{
	return (const char *)c + k->offset;
}

static bool
key_is_string(const struct config_key *k)
{
	return k->type != KEY_UINT && k->type != KEY_BOOL;
}

static int
string_store(const struct config_key *k, const char *s, void *field)
{
	size_t n = strlen(s);

	if (n >= k->size)
		return -EINVAL;
	memcpy(field, s, n + 1);
	return 0;
}

/* Decimal digits only: no sign, no spaces, no 0x; overflow is an error. */
static int
number_parse(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

/* ---- per-type parse (0 or -EINVAL, field untouched on error) and "what is allowed" ---- */

static uint64_t
uint_max(const struct config_key *k)
{
	uint64_t field_max = k->size == sizeof(unsigned) ? UINT_MAX : UINT64_MAX;

	return k->max && k->max < field_max ? k->max : field_max;
}

static int
uint_parse(const struct config_key *k, const char *s, void *field)
{
	uint64_t v;

	if (number_parse(s, &v) < 0 || v < k->min || v > uint_max(k))
		return -EINVAL;
	if (k->size == sizeof(unsigned))
		*(unsigned *)field = (unsigned)v;
	else
		*(uint64_t *)field = v;
	return 0;
}

static void
uint_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	(void)s;
	snprintf(buf, size, "expected a whole number from %" PRIu64 " to %" PRIu64, k->min,
		 uint_max(k));
}

static const struct {
	const char *word;
	bool value;
} bool_words[] = {{"true", true}, {"false", false}, {"yes", true}, {"no", false},
		  {"on", true},   {"off", false},   {"1", true},   {"0", false}};

static int
bool_parse(const struct config_key *k, const char *s, void *field)
{
	(void)k;
	for (size_t i = 0; i < ARRAY_SIZE(bool_words); i++)
		if (strcasecmp(s, bool_words[i].word) == 0) {
			*(bool *)field = bool_words[i].value;
			return 0;
		}
	return -EINVAL;
}

static void
bool_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	(void)k, (void)s;
	snprintf(buf, size, "expected true or false (yes/no, on/off and 1/0 also work)");
}

/* The kernel's dev_valid_name(): at most IFNAMSIZ-1 bytes, no '/', ':' or whitespace. */
static int
ifname_parse(const struct config_key *k, const char *s, void *field)
{
	if (strlen(s) > 15 || streq(s, ".") || streq(s, ".."))
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '/' || *p == ':')
			return -EINVAL;
	return string_store(k, s, field);
}

static void
ifname_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	(void)s;
	snprintf(buf, size,
		 "expected a network interface name of 1 to 15 characters without '/', ':' or "
		 "spaces, or '' for %s",
		 k->empty);
}

static int
enum_parse(const struct config_key *k, const char *s, void *field)
{
	for (const char *const *w = k->values; *w; w++)
		if (streq(s, *w))
			return string_store(k, s, field);
	return -EINVAL;
}

/* "expected 'a', 'b' or 'c'" */
static void
enum_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "expected");

	(void)s;
	for (const char *const *w = k->values; *w && len < size; w++) {
		const char *sep = w == k->values ? " " : w[1] ? ", " : " or ";

		len += (size_t)snprintf(buf + len, size - len, "%s'%s'", sep, *w);
	}
}

static uint32_t
prefix_mask(unsigned prefix)
{
	return prefix ? UINT32_MAX << (32 - prefix) : 0;
}

/* Syntax only: dotted quad (no leading zeros, as inet_pton) '/' 0..32. */
static int
cidr_split(const char *s, uint32_t *ret_addr, unsigned *ret_prefix)
{
	const char *slash = strchr(s, '/');
	char ip[INET_ADDRSTRLEN];
	struct in_addr in;
	uint64_t prefix;
	size_t n;

	if (!slash || (size_t)(slash - s) >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	n = strlen(slash + 1);
	if (inet_pton(AF_INET, ip, &in) != 1 || n < 1 || n > 2 || (n == 2 && slash[1] == '0'))
		return -EINVAL;
	if (number_parse(slash + 1, &prefix) < 0 || prefix > 32)
		return -EINVAL;
	*ret_addr = ntohl(in.s_addr);
	*ret_prefix = (unsigned)prefix;
	return 0;
}

int
config_parse_cidr(const char *s, unsigned min_prefix, unsigned max_prefix, uint32_t *ret_addr,
		  unsigned *ret_prefix)
{
	uint32_t addr;
	unsigned prefix;

	if (!s || cidr_split(s, &addr, &prefix) < 0)
		return -EINVAL;
	if (prefix < min_prefix || prefix > max_prefix || (addr & ~prefix_mask(prefix)))
		return -EINVAL;
	if (ret_addr)
		*ret_addr = addr;
	if (ret_prefix)
		*ret_prefix = prefix;
	return 0;
}

static int
cidr_parse(const struct config_key *k, const char *s, void *field)
{
	if (config_parse_cidr(s, (unsigned)k->min, (unsigned)k->max, NULL, NULL) < 0)
		return -EINVAL;
	return string_store(k, s, field);
}

static void
cidr_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	char text[INET_ADDRSTRLEN];
	struct in_addr net;
	uint32_t addr;
	unsigned prefix;
	int len = snprintf(buf, size,
			   "expected an IPv4 network address with a prefix from /%" PRIu64
			   " to /%" PRIu64 ", such as '%s'",
			   k->min, k->max, k->def);

	if (cidr_split(s, &addr, &prefix) < 0 || !(addr & ~prefix_mask(prefix)) ||
	    (size_t)len >= size)
		return;
	net.s_addr = htonl(addr & prefix_mask(prefix));
	inet_ntop(AF_INET, &net, text, sizeof(text));
	snprintf(buf + len, size - (size_t)len, " (host bits are set: did you mean '%s/%u'?)", text,
		 prefix);
}

/* No spaces or control characters. */
static bool
text_is_plain(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* The part after one of the key's schemes, or NULL. */
static const char *
url_rest(const struct config_key *k, const char *s)
{
	for (const char *const *p = k->values; *p; p++)
		if (strncmp(s, *p, strlen(*p)) == 0)
			return s + strlen(*p);
	return NULL;
}

static int
url_parse(const struct config_key *k, const char *s, void *field)
{
	const char *rest = url_rest(k, s);

	if (*s && (!rest || !*rest || !text_is_plain(s)))
		return -EINVAL;
	return string_store(k, s, field);
}

static void
url_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "expected a URL starting with");

	(void)s;
	for (const char *const *p = k->values; *p && len < size; p++) {
		const char *sep = p == k->values ? " " : " or ";

		len += (size_t)snprintf(buf + len, size - len, "%s'%s'", sep, *p);
	}
	if (len < size)
		snprintf(buf + len, size - len, ", or '' for %s", k->empty);
}

/* SCHEME HOST:PORT, HOST may be empty (all addresses) or bracketed IPv6. */
static int
listen_url_parse(const struct config_key *k, const char *s, void *field)
{
	const char *rest = url_rest(k, s), *colon;
	uint64_t port;

	if (!*s)
		return string_store(k, s, field);
	if (!rest || !text_is_plain(s) || !(colon = strrchr(rest, ':')))
		return -EINVAL;
	if (number_parse(colon + 1, &port) < 0 || port < 1 || port > 65535)
		return -EINVAL;
	return string_store(k, s, field);
}

static void
listen_url_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	(void)s;
	snprintf(buf, size,
		 "expected '%sHOST:PORT' with a port from 1 to 65535, such as '%s0.0.0.0:7778', "
		 "or '' for %s",
		 k->values[0], k->values[0], k->empty);
}

static int
addr_parse(const struct config_key *k, const char *s, void *field)
{
	unsigned char bin[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, s, bin) != 1 && inet_pton(AF_INET6, s, bin) != 1)
		return -EINVAL;
	return string_store(k, s, field);
}

static void
addr_expect(const struct config_key *k, const char *s, char *buf, size_t size)
{
	(void)k, (void)s;
	snprintf(buf, size,
		 "expected an IPv4 or IPv6 address without port or brackets, such as "
		 "'127.0.0.1', '0.0.0.0' or '::1'");
}

static const struct {
	int (*parse)(const struct config_key *k, const char *s, void *field);
	void (*expect)(const struct config_key *k, const char *s, char *buf, size_t size);
} key_types[] = {
	[KEY_UINT] = {uint_parse, uint_expect},
	[KEY_BOOL] = {bool_parse, bool_expect},
	[KEY_IFNAME] = {ifname_parse, ifname_expect},
	[KEY_ENUM] = {enum_parse, enum_expect},
	[KEY_CIDR] = {cidr_parse, cidr_expect},
	[KEY_URL] = {url_parse, url_expect},
	[KEY_LISTEN_URL] = {listen_url_parse, listen_url_expect},
	[KEY_ADDR] = {addr_parse, addr_expect},
};

/* ---- setting a value from text, with the message a user needs when it is wrong ---- */

/* A value as messages repeat it: bounded, control bytes shown as '?'. */
static void
value_show(const char *s, size_t len, char *buf, size_t size)
{
	size_t n = len < size - 4 ? len : size - 4;

	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)s[i] < ' ' || s[i] == 0x7f ? '?' : s[i];
	strcpy(buf + n, n < len ? "..." : "");
}

static void
value_expect(const struct config_key *k, const char *s, size_t len, char *buf, size_t size)
{
	if (strlen(s) != len)
		snprintf(buf, size, "expected text without NUL bytes");
	else if (key_is_string(k) && len >= k->size)
		snprintf(buf, size, "expected at most %zu characters, not %zu", k->size - 1, len);
	else
		key_types[k->type].expect(k, s, buf, size);
}

/* Parses s (len bytes) into key i; where ("config.yml line 3", "environment variable PORT")
 * starts the message when it is wrong. */
static int
value_set(struct config *c, size_t i, const char *s, size_t len, const char *where, enum source src,
	  struct err *err)
{
	const struct config_key *k = &keys[i];
	char shown[VALUE_SHOW_MAX + 4], expect[512];

	if (strlen(s) == len && !(key_is_string(k) && len >= k->size) &&
	    key_types[k->type].parse(k, s, key_field(k, c)) == 0) {
		c->source_[i] = (unsigned char)src;
		return 0;
	}
	value_expect(k, s, len, expect, sizeof(expect));
	value_show(s, len, shown, sizeof(shown));
	return err_set(err, ERR_INVALID, k->key, EINVAL, "%s: '%s' is '%s': %s", where, k->key,
		       shown, expect);
}

static void
value_render(const struct config_key *k, const struct config *c, char *buf, size_t size)
{
	const void *field = key_field_const(k, c);

	if (k->type == KEY_BOOL)
		snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
	else if (k->type == KEY_UINT && k->size == sizeof(unsigned))
		snprintf(buf, size, "%u", *(const unsigned *)field);
	else if (k->type == KEY_UINT)
		snprintf(buf, size, "%" PRIu64, *(const uint64_t *)field);
	else
		snprintf(buf, size, "%.*s", (int)k->size, (const char *)field);
}

static int
key_index(const char *s, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (strlen(keys[i].key) == len && memcmp(keys[i].key, s, len) == 0)
			return (int)i;
	return -1;
}

static const char *
source_name(unsigned char src)
{
	return src < ARRAY_SIZE(source_names) ? source_names[src] : "default";
}

/* "config.yml line 4: unknown key 'foo' (ignored); known keys: port, ..." The last slot says
 * that more were left out. */
static void
warn_unknown_key(struct config *c, const char *name, unsigned line, const char *key)
{
	const size_t size = CONFIG_WARNING_SIZE;
	size_t len;
	char *w;

	if (c->n_warnings_ >= CONFIG_WARNINGS_MAX)
		return;
	w = c->warnings_[c->n_warnings_++];
	if (c->n_warnings_ == CONFIG_WARNINGS_MAX) {
		snprintf(w, size,
			 "%s line %u: more unknown keys (ignored); only the first %d are listed",
			 name, line, CONFIG_WARNINGS_MAX - 1);
		return;
	}
	len = (size_t)snprintf(w, size, "%s line %u: unknown key '%s' (ignored); known keys:", name,
			       line, key);
	for (size_t i = 0; i < ARRAY_SIZE(keys) && len < size; i++)
		len += (size_t)snprintf(w + len, size - len, "%s %s", i ? "," : "", keys[i].key);
}

/* ---- config.yml: one document, a mapping of scalar keys to scalar values ---- */

struct loader {
	struct config *c;
	const char *path; /* in file-level messages */
	const char *name; /* in per-key messages: the file's base name */
	yaml_parser_t parser;
	yaml_event_t event; /* the current event, owned while has_event */
	bool has_event;
	struct err *err;
};

static unsigned
loader_line(const struct loader *l)
{
	return (unsigned)l->event.start_mark.line + 1;
}

static int
loader_next(struct loader *l)
{
	const yaml_parser_t *p = &l->parser;

	if (l->has_event)
		yaml_event_delete(&l->event);
	l->has_event = yaml_parser_parse(&l->parser, &l->event);
	if (l->has_event)
		return 0;
	if (p->error == YAML_MEMORY_ERROR)
		return err_set(l->err, ERR_INTERNAL, NULL, ENOMEM, "'%s': out of memory", l->path);
	if (p->error == YAML_READER_ERROR)
		return err_set(l->err, ERR_INVALID, NULL, EINVAL, "'%s' byte %zu: %s", l->path,
			       p->problem_offset, p->problem ? p->problem : "unreadable text");
	return err_set(l->err, ERR_INVALID, NULL, EINVAL, "'%s' line %zu column %zu: %s%s%s%s",
		       l->path, p->problem_mark.line + 1, p->problem_mark.column + 1,
		       p->problem ? p->problem : "invalid YAML", p->context ? " (" : "",
		       p->context ? p->context : "", p->context ? ")" : "");
}

static const char *
event_kind(yaml_event_type_t type)
{
	switch (type) {
	case YAML_SCALAR_EVENT:
		return "a single value";
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_ALIAS_EVENT:
		return "an alias";
	default:
		return "a structure";
	}
}

/* A plain empty, '~' or 'null' value is YAML's null: the empty string here. */
static bool
scalar_is_null(const yaml_event_t *e)
{
	const char *v = (const char *)e->data.scalar.value;

	return e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*v || streq(v, "~") || streq(v, "null") || streq(v, "Null") || streq(v, "NULL"));
}

/* The value of key i (or of the unknown key shown) is a list, a mapping or an alias. */
static int
loader_not_scalar(struct loader *l, int i, const char *shown, unsigned line)
{
	char expect[512] = "expected a single value: config.yml holds 'key: value' lines only";

	if (i >= 0)
		key_types[keys[i].type].expect(&keys[i], "", expect, sizeof(expect));
	return err_set(l->err, ERR_INVALID, i >= 0 ? keys[i].key : shown, EINVAL,
		       "%s line %u: '%s' is %s: %s", l->name, line, shown,
		       event_kind(l->event.type), expect);
}

static int
loader_value(struct loader *l, size_t i, unsigned line)
{
	const yaml_event_t *e = &l->event;
	bool null = scalar_is_null(e);
	char where[320];
	int r;

	if (l->c->line_[i])
		return err_set(l->err, ERR_INVALID, keys[i].key, EINVAL,
			       "%s line %u: '%s' is set twice (first on line %u): keep one",
			       l->name, line, keys[i].key, l->c->line_[i]);
	snprintf(where, sizeof(where), "%.200s line %u", l->name, line);
	r = value_set(l->c, i, null ? "" : (const char *)e->data.scalar.value,
		      null ? 0 : e->data.scalar.length, where, SOURCE_FILE, l->err);
	if (r == 0)
		l->c->line_[i] = line;
	return r;
}

/* The current event is a key; reads its value. */
static int
loader_pair(struct loader *l)
{
	unsigned line = loader_line(l);
	char shown[64 + 4];
	int i, r;

	if (l->event.type != YAML_SCALAR_EVENT)
		return err_set(l->err, ERR_INVALID, NULL, EINVAL,
			       "%s line %u: expected a key name, found %s", l->name, line,
			       event_kind(l->event.type));
	i = key_index((const char *)l->event.data.scalar.value, l->event.data.scalar.length);
	value_show((const char *)l->event.data.scalar.value, l->event.data.scalar.length, shown,
		   sizeof(shown));
	r = loader_next(l);
	if (r < 0)
		return r;
	if (l->event.type != YAML_SCALAR_EVENT)
		return loader_not_scalar(l, i, shown, line);
	if (i < 0) {
		warn_unknown_key(l->c, l->name, line, shown);
		return 0;
	}
	return loader_value(l, (size_t)i, line);
}

static int
loader_mapping(struct loader *l)
{
	for (;;) {
		int r = loader_next(l);

		if (r < 0)
			return r;
		if (l->event.type == YAML_MAPPING_END_EVENT)
			return 0;
		r = loader_pair(l);
		if (r < 0)
			return r;
	}
}

/* The current event starts a document; reads through its end. An empty document is fine. */
static int
loader_document(struct loader *l)
{
	int r = loader_next(l);

	if (r < 0)
		return r;
	if (l->event.type == YAML_MAPPING_START_EVENT)
		r = loader_mapping(l);
	else if (l->event.type != YAML_SCALAR_EVENT || !scalar_is_null(&l->event))
		return err_set(l->err, ERR_INVALID, NULL, EINVAL,
			       "%s line %u: the top level must be a mapping of keys to values, one "
			       "'key: value' per line; found %s",
			       l->name, loader_line(l), event_kind(l->event.type));
	return r < 0 ? r : loader_next(l);
}

static int
loader_stream(struct loader *l)
{
	int r = loader_next(l);

	if (r == 0)
		r = loader_next(l);
	if (r < 0 || l->event.type == YAML_STREAM_END_EVENT)
		return r;
	r = loader_document(l);
	if (r == 0)
		r = loader_next(l);
	if (r < 0 || l->event.type == YAML_STREAM_END_EVENT)
		return r;
	return err_set(l->err, ERR_INVALID, NULL, EINVAL,
		       "%s line %u: only one YAML document is allowed", l->name, loader_line(l));
}

static int
file_parse(struct config *c, const char *path, const char *buf, size_t len, struct err *err)
{
	struct loader l = {.c = c, .path = path, .err = err};
	const char *slash = strrchr(path, '/');
	int r;

	l.name = slash ? slash + 1 : path;
	if (!yaml_parser_initialize(&l.parser))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "'%s': out of memory", path);
	yaml_parser_set_input_string(&l.parser, (const unsigned char *)buf, len);
	r = loader_stream(&l);
	if (l.has_event)
		yaml_event_delete(&l.event);
	yaml_parser_delete(&l.parser);
	return r;
}

static int
file_error(const char *path, int error, struct err *err)
{
	enum err_code code = error == EACCES || error == EPERM ? ERR_PERMISSION : ERR_INTERNAL;

	return err_set(err, code, NULL, error, "cannot read '%s': %s", path, strerror(error));
}

/* Reads at most CONFIG_FILE_MAX bytes of a regular file; a missing file gives *ret_buf NULL. */
static int
file_read(const char *path, char **ret_buf, size_t *ret_len, struct err *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	cleanup_free char *buf = NULL;
	struct stat st;
	size_t len = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : file_error(path, errno, err);
	if (fstat(fd, &st) < 0)
		return file_error(path, errno, err);
	if (!S_ISREG(st.st_mode))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "'%s' is not a regular file", path);
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "'%s': out of memory", path);
	while (len <= CONFIG_FILE_MAX) {
		ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return file_error(path, errno, err);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_FILE_MAX)
		return err_set(err, ERR_INVALID, NULL, EFBIG, "'%s' is larger than %d KiB", path,
			       CONFIG_FILE_MAX / 1024);
	*ret_buf = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

/* An empty variable counts as unset, so "PORT=" in a unit file changes nothing. */
static int
env_apply(struct config *c, struct err *err)
{
	char where[64];

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const char *v = getenv(keys[i].env);
		int r;

		if (!v || !*v)
			continue;
		snprintf(where, sizeof(where), "environment variable %s", keys[i].env);
		r = value_set(c, i, v, strlen(v), where, SOURCE_ENV, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the public functions ---- */

void
config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		int r = key_types[keys[i].type].parse(&keys[i], keys[i].def,
						      key_field(&keys[i], c));

		assert(r == 0);
		(void)r;
	}
}

int
config_load(struct config *c, const char *path, struct err *err)
{
	cleanup_free char *buf = NULL;
	size_t len = 0;
	int r = 0;

	config_defaults(c);
	if (path)
		r = file_read(path, &buf, &len, err);
	if (r == 0 && buf)
		r = file_parse(c, path, buf, len, err);
	if (r == 0)
		r = env_apply(c, err);
	return r;
}

size_t
config_warning_count(const struct config *c)
{
	return c->n_warnings_;
}

const char *
config_warning(const struct config *c, size_t i)
{
	return i < c->n_warnings_ ? c->warnings_[i] : NULL;
}

int
config_foreach(const struct config *c,
	       int (*fn)(void *userdata, const char *key, const char *value, const char *source,
			 const char *help),
	       void *userdata)
{
	char value[sizeof(c->registry_url)]; /* the largest field */

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		int r;

		value_render(&keys[i], c, value, sizeof(value));
		r = fn(userdata, keys[i].key, value, source_name(c->source_[i]), keys[i].help);
		if (r < 0)
			return r;
	}
	return 0;
}

struct out {
	char *buf;
	size_t size, len;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
	bool room = o->len < o->size;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? o->buf + o->len : NULL, room ? o->size - o->len : 0, fmt, ap);
	va_end(ap);
	o->len += n > 0 ? (size_t)n : 0;
}

/* A YAML double-quoted scalar. */
static void
out_quoted(struct out *o, const char *s)
{
	out_printf(o, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			out_printf(o, "\\%c", ch);
		else if (ch < ' ' || ch == 0x7f)
			out_printf(o, "\\x%02x", ch);
		else
			out_printf(o, "%c", ch);
	}
	out_printf(o, "\"");
}

int
config_render_yaml(const struct config *c, char *buf, size_t size)
{
	struct out o = {.buf = buf, .size = size};
	char value[sizeof(c->registry_url)]; /* the largest field */

	for (size_t i = 0; i < ARRAY_SIZE(keys) && o.len < size; i++) {
		value_render(&keys[i], c, value, sizeof(value));
		out_printf(&o, "%s: ", keys[i].key);
		if (key_is_string(&keys[i]))
			out_quoted(&o, value);
		else
			out_printf(&o, "%s", value);
		out_printf(&o, "  # %s\n", source_name(c->source_[i]));
	}
	if (o.len >= size || o.len > INT_MAX)
		return -ENOSPC;
	return (int)o.len;
}
