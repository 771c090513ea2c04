#include "units.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

#define SIZE_HINT "use a whole number of MB or a number with M, G or T (e.g. 512M, 2G)"
#define PORT_FORMS                                                                                 \
	"use PORT, HOST:MACHINE or IP:HOST:MACHINE, optionally with /tcp or /udp (e.g. 80, "       \
	"8080:3000, 53/udp, 127.0.0.1:8443:443, [::1]:8443:443)"

/* Longest argument echoed back in a message: the rest of it is not worth a screen. */
#define ECHO_MAX 80

static const struct {
	const char *suffix;
	uint64_t mb;
} size_units[] = {
	{"", 1},      {"m", 1},      {"mb", 1},          {"mib", 1},          {"g", 1024},
	{"gb", 1024}, {"gib", 1024}, {"t", 1024 * 1024}, {"tb", 1024 * 1024}, {"tib", 1024 * 1024},
};

/* ERR_INVALID for the flag `field`, the message prefixed by "--field: ". */
static int __attribute__((format(printf, 3, 4)))
fail(struct err *err, const char *field, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (field && *field)
		return err_set(err, ERR_INVALID, field, EINVAL, "--%s: %s", field, msg);
	return err_set(err, ERR_INVALID, NULL, EINVAL, "%s", msg);
}

/* The leading decimal digits of s: 0, -EINVAL when there are none, -ERANGE past UINT64_MAX. */
static int
digits_parse(const char *s, uint64_t *ret, size_t *ret_len)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; s[n] >= '0' && s[n] <= '9'; n++) {
		unsigned d = (unsigned)(s[n] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (n == 0)
		return -EINVAL;
	*ret = v;
	*ret_len = n;
	return 0;
}

/* MB per unit for a size suffix ("" is MB), or 0 when unknown. */
static uint64_t
size_unit_mb(const char *suffix)
{
	for (size_t i = 0; i < ARRAY_SIZE(size_units); i++)
		if (strcasecmp(suffix, size_units[i].suffix) == 0)
			return size_units[i].mb;
	return 0;
}

int
units_parse_size_mb(const char *field, const char *s, uint64_t *ret_mb, struct err *err)
{
	uint64_t v, unit;
	size_t n;
	int r = digits_parse(s, &v, &n);

	if (r == -ERANGE)
		return fail(err, field, "size '%.*s' is too large", ECHO_MAX, s);
	if (r < 0 || v == 0 || (unit = size_unit_mb(s + n)) == 0)
		return fail(err, field, "invalid size '%.*s': " SIZE_HINT, ECHO_MAX, s);
	if (v > UINT64_MAX / unit)
		return fail(err, field, "size '%.*s' is too large", ECHO_MAX, s);
	*ret_mb = v * unit;
	return 0;
}

/* A whole string of digits from 1 to 65535: 0, -EINVAL (not a number) or -ERANGE. */
static int
port_parse(const char *s, unsigned *ret)
{
	uint64_t v;
	size_t n;
	int r = digits_parse(s, &v, &n);

	if (r == -EINVAL || (r == 0 && s[n] != '\0'))
		return -EINVAL;
	if (r < 0 || v < 1 || v > 65535)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

/* "tcp" or "udp", in any case. */
static int
proto_parse(const char *s, bool *ret_udp)
{
	if (strcasecmp(s, "tcp") != 0 && strcasecmp(s, "udp") != 0)
		return -EINVAL;
	*ret_udp = strcasecmp(s, "udp") == 0;
	return 0;
}

struct spec_parts {
	const char *ip; /* "" when absent */
	const char *host;
	const char *machine; /* NULL when absent */
	bool ip6;
};

/* Splits "[IP6]:H:M", "IP4:H:M", "H:M" or "P" in place; -EINVAL for any other shape (an IPv6
 * address must be in brackets, so a third colon is an error). */
static int
spec_split(char *body, struct spec_parts *p)
{
	*p = (struct spec_parts){.ip = ""};
	if (body[0] == '[') {
		char *end = strchr(body, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		*end = '\0';
		p->ip = body + 1;
		p->ip6 = true;
		body = end + 2;
	}
	char *c1 = strchr(body, ':');
	char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if ((p->ip6 && (!c1 || c2)) || (c2 && (strchr(c2 + 1, ':') || c1 == body)))
		return -EINVAL;
	p->host = body;
	if (c1) {
		*c1 = '\0';
		p->machine = c1 + 1;
	}
	if (c2) {
		*c2 = '\0';
		p->ip = body;
		p->host = c1 + 1;
		p->machine = c2 + 1;
	}
	return 0;
}

/* Checks the host ip of a spec and stores it in canonical form. */
static int
spec_ip_parse(const char *field, const char *s, const struct spec_parts *p, char *ret, size_t size,
	      struct err *err)
{
	unsigned char addr[16];
	int af = p->ip6 ? AF_INET6 : AF_INET;

	if (!*p->ip) {
		ret[0] = '\0';
		return 0;
	}
	if (inet_pton(af, p->ip, addr) != 1 || !inet_ntop(af, addr, ret, (socklen_t)size))
		return fail(err, field,
			    "invalid host ip '%.*s' in '%.*s': use an IPv4 address or an IPv6 "
			    "address in brackets",
			    ECHO_MAX, p->ip, ECHO_MAX, s);
	return 0;
}

/* Parses the host and machine ports of a split spec into ret. */
static int
spec_ports_parse(const char *field, const char *s, const struct spec_parts *p,
		 struct port_spec *ret, struct err *err)
{
	const char *bad = p->host;
	int r = port_parse(p->host, &ret->host_port);

	if (r == 0 && p->machine) {
		bad = p->machine;
		r = port_parse(p->machine, &ret->machine_port);
	} else if (r == 0) {
		ret->machine_port = ret->host_port;
	}
	if (r == -ERANGE)
		return fail(err, field, "port '%.*s' in '%.*s' is out of range: use 1 to 65535",
			    ECHO_MAX, bad, ECHO_MAX, s);
	if (r < 0)
		return fail(err, field, "invalid port spec '%.*s': " PORT_FORMS, ECHO_MAX, s);
	return 0;
}

int
units_parse_port_spec(const char *field, const char *s, struct port_spec *ret, struct err *err)
{
	char body[128];
	const char *slash = strrchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	struct port_spec spec = {0};
	struct spec_parts parts;

	if (slash && proto_parse(slash + 1, &spec.udp) < 0)
		return fail(err, field, "unknown protocol '%.*s' in '%.*s': use tcp or udp",
			    ECHO_MAX, slash + 1, ECHO_MAX, s);
	if (n >= sizeof(body))
		return fail(err, field, "invalid port spec '%.*s': " PORT_FORMS, ECHO_MAX, s);
	memcpy(body, s, n);
	body[n] = '\0';
	if (spec_split(body, &parts) < 0)
		return fail(err, field, "invalid port spec '%.*s': " PORT_FORMS, ECHO_MAX, s);
	if (spec_ports_parse(field, s, &parts, &spec, err) < 0 ||
	    spec_ip_parse(field, s, &parts, spec.host_ip, sizeof(spec.host_ip), err) < 0)
		return -EINVAL;
	*ret = spec;
	return 0;
}

int
units_parse_uint(const char *field, const char *s, unsigned min, unsigned max, unsigned *ret,
		 struct err *err)
{
	uint64_t v;
	size_t n;

	if (digits_parse(s, &v, &n) < 0 || s[n] != '\0' || v < min || v > max)
		return fail(err, field, "invalid value '%.*s': use a whole number from %u to %u",
			    ECHO_MAX, s, min, max);
	*ret = (unsigned)v;
	return 0;
}

int
units_parse_host_port(const char *field, const char *s, unsigned *ret_port, bool *ret_udp,
		      struct err *err)
{
	char port[16];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	bool udp = false;
	unsigned v;
	int r;

	if (slash && proto_parse(slash + 1, &udp) < 0)
		return fail(err, field, "unknown protocol '%.*s' in '%.*s': use tcp or udp",
			    ECHO_MAX, slash + 1, ECHO_MAX, s);
	snprintf(port, sizeof(port), "%.*s", (int)(n < sizeof(port) ? n : sizeof(port) - 1), s);
	r = n < sizeof(port) ? port_parse(port, &v) : -EINVAL;
	if (r == -ERANGE)
		return fail(err, field, "port '%s' is out of range: use 1 to 65535", port);
	if (r < 0)
		return fail(err, field, "invalid port '%.*s': use PORT or PORT/udp (e.g. 8080)",
			    ECHO_MAX, s);
	*ret_port = v;
	*ret_udp = udp;
	return 0;
}

void
units_format_mb(uint64_t mb, char *buf, size_t size)
{
	static const struct {
		uint64_t mb;
		char unit;
	} scale[] = {{1024 * 1024, 'T'}, {1024, 'G'}};

	for (size_t i = 0; i < ARRAY_SIZE(scale); i++) {
		uint64_t u = scale[i].mb, whole = mb / u, tenths = ((mb % u) * 10 + u / 2) / u;
		if (whole == 0)
			continue;
		if (tenths == 10) {
			whole++;
			tenths = 0;
		}
		if (whole == 1024 && i > 0) /* 1023.96G rounds to 1T, not 1024G */
			snprintf(buf, size, "1%c", scale[i - 1].unit);
		else if (tenths == 0)
			snprintf(buf, size, "%" PRIu64 "%c", whole, scale[i].unit);
		else
			snprintf(buf, size, "%" PRIu64 ".%" PRIu64 "%c", whole, tenths,
				 scale[i].unit);
		return;
	}
	snprintf(buf, size, "%" PRIu64 "M", mb);
}

void
units_format_age(int64_t unix_ms, int64_t now_ms, char *buf, size_t size)
{
	/* Unsigned subtraction: exact for any now_ms >= unix_ms, even across the int64 range. */
	uint64_t s = now_ms >= unix_ms ? ((uint64_t)now_ms - (uint64_t)unix_ms) / 1000 : 0;

	if (unix_ms == 0)
		snprintf(buf, size, "-");
	else if (s == 0)
		snprintf(buf, size, "just now");
	else if (s < 60)
		snprintf(buf, size, "%" PRIu64 "s ago", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRIu64 "m ago", s / 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRIu64 "h ago", s / 3600);
	else
		snprintf(buf, size, "%" PRIu64 "d ago", s / 86400);
}
