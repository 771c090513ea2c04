/* dns: the packet parser and builders (valid queries, truncation, label and name limits,
 * compression pointers and loops, counts), the answer rules, resolv.conf, and a short random
 * loop over the parser. No sockets: the server is exercised by the integration test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"

#define WEB 0x0ac80002u /* 10.200.0.2 */
#define DB 0x0ac90002u  /* 10.201.0.2, network "backend" */

/* ---- helpers ------------------------------------------------------------------------------- */

static size_t
put_name(uint8_t *p, const char *dotted)
{
	size_t n = 0;

	while (*dotted) {
		const char *dot = strchr(dotted, '.');
		size_t len = dot ? (size_t)(dot - dotted) : strlen(dotted);
		p[n++] = (uint8_t)len;
		memcpy(p + n, dotted, len);
		n += len;
		dotted += len + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

/* A query for name (dotted) with the given header flags and question count. */
static size_t
query(uint8_t *buf, uint16_t flags, uint16_t qdcount, const char *name, uint16_t type)
{
	uint8_t h[12] = {0x12, 0x34, (uint8_t)(flags >> 8), (uint8_t)flags, 0, 0};
	size_t n;

	h[4] = (uint8_t)(qdcount >> 8);
	h[5] = (uint8_t)qdcount;
	memcpy(buf, h, sizeof(h));
	n = 12 + put_name(buf + 12, name);
	buf[n++] = (uint8_t)(type >> 8);
	buf[n++] = (uint8_t)type;
	buf[n++] = 0;
	buf[n++] = DNS_CLASS_IN;
	return n;
}

static uint16_t
u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* "web.default.sistemo" and "web" from default, "db.backend.sistemo" and "db" from backend;
 * other single labels are not ours. */
static int
table_lookup(void *ud, const char *name, uint32_t client, uint32_t *ret)
{
	bool backend = (client >> 8) == (DB >> 8);

	(void)ud;
	if (strcmp(name, "web.default.sistemo") == 0 || (!backend && strcmp(name, "web") == 0)) {
		*ret = WEB;
		return 1;
	}
	if (strcmp(name, "db.backend.sistemo") == 0 || (backend && strcmp(name, "db") == 0)) {
		*ret = DB;
		return 1;
	}
	if (strcmp(name, "db") == 0 || strcmp(name, "web") == 0)
		return 0;
	return -1;
}

/* Parses and answers pkt as the server would; returns the reply's length, 0 to forward. */
static int
answer(const uint8_t *pkt, size_t len, uint32_t client, uint8_t *out, size_t size)
{
	struct dns_query q;

	assert_int_equal(dns_query_parse(pkt, len, &q), 0);
	return dns_answer(&q, table_lookup, NULL, client, out, size);
}

/* ---- parsing ------------------------------------------------------------------------------- */

static void
parse_valid(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n = query(buf, 0x0100, 1, "Web.DEFAULT.sistemo", DNS_TYPE_A);

	(void)state;
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_int_equal(q.id, 0x1234);
	assert_true(q.rd);
	assert_string_equal(q.name, "web.default.sistemo");
	assert_true(q.plain);
	assert_int_equal(q.qtype, DNS_TYPE_A);
	assert_int_equal(q.qclass, DNS_CLASS_IN);
	assert_int_equal(q.qname_len, n - 12 - 4);
	assert_memory_equal(q.qname, buf + 12, q.qname_len); /* case kept for the echo */

	n = query(buf, 0, 1, "", DNS_TYPE_A); /* the root */
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_string_equal(q.name, "");
	assert_false(q.rd);
}

static void
parse_drops_and_refuses(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n = query(buf, 0x8180, 1, "web", DNS_TYPE_A); /* a response */

	(void)state;
	assert_int_equal(dns_query_parse(buf, n, &q), -EINVAL);
	assert_int_equal(dns_query_parse(buf, 11, &q), -EINVAL);
	assert_int_equal(dns_query_parse(buf, 0, &q), -EINVAL);
	n = query(buf, 0x1000, 1, "web", DNS_TYPE_A); /* opcode 2: STATUS */
	assert_int_equal(dns_query_parse(buf, n, &q), -EOPNOTSUPP);
	n = query(buf, 0x2800, 1, "web", DNS_TYPE_A); /* opcode 5: UPDATE */
	assert_int_equal(dns_query_parse(buf, n, &q), -EOPNOTSUPP);
}

static void
parse_truncated(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n = query(buf, 0x0100, 1, "web.default.sistemo", DNS_TYPE_A);

	(void)state;
	for (size_t len = 0; len < n; len++) {
		uint8_t *exact = malloc(len ? len : 1); /* ASan sees any read past len */
		assert_non_null(exact);
		memcpy(exact, buf, len);
		int r = dns_query_parse(exact, len, &q);
		assert_int_equal(r, len < 12 ? -EINVAL : -EBADMSG);
		free(exact);
	}
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
}

static void
parse_counts(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n;

	(void)state;
	n = query(buf, 0, 0, "web", DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), -EBADMSG);
	n = query(buf, 0, 2, "web", DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), -EBADMSG);
	n = query(buf, 0, 0xffff, "web", DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), -EBADMSG);
	/* huge answer/authority/additional counts: those sections are not read */
	n = query(buf, 0, 1, "web", DNS_TYPE_A);
	memset(buf + 6, 0xff, 6);
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_string_equal(q.name, "web");
}

static void
parse_label_limits(void **state)
{
	uint8_t buf[1024];
	struct dns_query q;
	char name[400], l63[64];
	size_t n;

	(void)state;
	memset(l63, 'a', 63);
	l63[63] = '\0';
	/* 63,63,63,61: 255 bytes in wire form, 253 dotted: the limit */
	snprintf(name, sizeof(name), "%s.%s.%s.%.61s", l63, l63, l63, l63);
	n = query(buf, 0, 1, name, DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_int_equal(strlen(q.name), 253);
	assert_int_equal(q.qname_len, 255);
	/* one byte more */
	snprintf(name, sizeof(name), "%s.%s.%s.%.62s", l63, l63, l63, l63);
	n = query(buf, 0, 1, name, DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), -EBADMSG);
	/* a label of 64 reads as the reserved 0x40 type */
	n = query(buf, 0, 1, "x", DNS_TYPE_A);
	buf[12] = 64;
	memset(buf + 13, 'a', 64);
	buf[77] = 0;
	assert_int_equal(dns_query_parse(buf, 82, &q), -EBADMSG);
	buf[12] = 0x80;
	assert_int_equal(dns_query_parse(buf, 82, &q), -EBADMSG);
	/* a label running past the end */
	n = query(buf, 0, 1, "web", DNS_TYPE_A);
	buf[12] = 40;
	assert_int_equal(dns_query_parse(buf, n, &q), -EBADMSG);
}

static void
parse_odd_bytes(void **state)
{
	uint8_t buf[512];
	struct dns_query q;
	size_t n = query(buf, 0, 1, "a.b.sistemo", DNS_TYPE_A);
	uint8_t out[512];

	(void)state;
	buf[13] = '.'; /* the label "." */
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_false(q.plain);
	assert_int_equal(dns_answer(&q, table_lookup, NULL, WEB, out, sizeof(out)) > 0, 1);
	assert_int_equal(out[3] & 0xf, DNS_NXDOMAIN); /* under sistemo: ours, never looked up */
	buf[13] = 0;
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_false(q.plain);
	assert_string_equal(q.name, "?.b.sistemo");
	n = query(buf, 0, 1, "w b.example", DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_false(q.plain);
	assert_int_equal(dns_answer(&q, table_lookup, NULL, WEB, out, sizeof(out)), 0);
}

static void
parse_compression(void **state)
{
	uint8_t buf[512], out[512];
	struct dns_query q;

	(void)state;
	/* a pointer to itself */
	query(buf, 0, 1, "", DNS_TYPE_A);
	buf[12] = 0xc0;
	buf[13] = 12;
	memset(buf + 14, 0, 4);
	assert_int_equal(dns_query_parse(buf, 18, &q), -EBADMSG);
	/* two pointers at each other, after a label */
	uint8_t loop[] = {0x12, 0x34, 0, 0,   0,    1,  0, 0, 0,    0,
			  0,    0,    1, 'a', 0xc0, 18, 0, 1, 0xc0, 14};
	assert_int_equal(dns_query_parse(loop, sizeof(loop), &q), -EBADMSG);
	/* into the header, out of the packet, cut in half */
	buf[13] = 2;
	assert_int_equal(dns_query_parse(buf, 18, &q), -EBADMSG);
	buf[12] = 0xc1;
	buf[13] = 0xff;
	assert_int_equal(dns_query_parse(buf, 18, &q), -EBADMSG);
	assert_int_equal(dns_query_parse(buf, 13, &q), -EBADMSG);
	/* loosely accepted: a pointer forward to a name after the question */
	uint8_t fwd[64] = {0x12, 0x34, 1,   0,   0,   1,    0,  0, 0, 0, 0,
			   0,    3,    'w', 'e', 'b', 0xc0, 22, 0, 1, 0, 1};
	size_t n = 22 + put_name(fwd + 22, "default.sistemo");
	assert_int_equal(dns_query_parse(fwd, n, &q), 0);
	assert_string_equal(q.name, "web.default.sistemo");
	assert_int_equal(q.qtype, DNS_TYPE_A);
	/* and echoed uncompressed */
	int len = dns_answer(&q, table_lookup, NULL, WEB, out, sizeof(out));
	assert_int_equal(len, 12 + 21 + 4 + 16);
	assert_memory_equal(out + 12, "\3web\7default\7sistemo\0", 21);
}

/* ---- replies ------------------------------------------------------------------------------- */

static void
reply_a(void **state)
{
	uint8_t buf[512], out[512];
	size_t n = query(buf, 0x0100, 1, "WEB.default.sistemo", DNS_TYPE_A);
	int len = answer(buf, n, WEB, out, sizeof(out));
	static const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, DNS_TTL_S, 0, 4, 10, 200, 0, 2};

	(void)state;
	assert_int_equal(len, (int)n + 16);
	assert_int_equal(u16(out), 0x1234);
	assert_int_equal(u16(out + 2), 0x8580); /* QR AA RD RA, NOERROR */
	assert_int_equal(u16(out + 4), 1);
	assert_int_equal(u16(out + 6), 1);
	assert_int_equal(u16(out + 8), 0);
	assert_int_equal(u16(out + 10), 0);
	assert_memory_equal(out + 12, buf + 12, n - 12); /* the question, case kept */
	assert_memory_equal(out + n, rr, sizeof(rr));
	/* ANY gets the A record too */
	n = query(buf, 0, 1, "web", 255);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), (int)n + 16);
	/* too small a buffer */
	n = query(buf, 0, 1, "web", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, n + 15), -ENOSPC);
}

static void
reply_nodata_nxdomain(void **state)
{
	uint8_t buf[512], out[512];
	size_t n;

	(void)state;
	n = query(buf, 0x0100, 1, "web.default.sistemo", DNS_TYPE_AAAA);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), (int)n);
	assert_int_equal(u16(out + 2), 0x8580); /* NOERROR, no answer: NODATA */
	assert_int_equal(u16(out + 6), 0);
	n = query(buf, 0x0100, 1, "x.default.sistemo", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), (int)n);
	assert_int_equal(u16(out + 2), 0x8583); /* NXDOMAIN */
	assert_int_equal(u16(out + 6) + u16(out + 8) + u16(out + 10), 0);
	n = query(buf, 0, 1, "x.default.sistemo", DNS_TYPE_AAAA);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), (int)n);
	assert_int_equal(out[3] & 0xf, DNS_NXDOMAIN);
	n = query(buf, 0, 1, "sistemo", DNS_TYPE_A); /* the apex exists */
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), (int)n);
	assert_int_equal(out[3] & 0xf, DNS_NOERROR);
}

static void
reply_short_names(void **state)
{
	uint8_t buf[512], out[512];
	size_t n = query(buf, 0, 1, "db", DNS_TYPE_A);

	(void)state;
	/* relative to the client's network */
	assert_int_equal(answer(buf, n, DB + 1, out, sizeof(out)), (int)n + 16);
	assert_memory_equal(out + n + 12, "\x0a\xc9\x00\x02", 4);
	assert_int_equal(answer(buf, n, WEB + 1, out, sizeof(out)), (int)n);
	assert_int_equal(out[3] & 0xf, DNS_NXDOMAIN);
	/* not ours: forwarded */
	n = query(buf, 0, 1, "intranet", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), 0);
	n = query(buf, 0, 1, "example.org", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), 0);
	n = query(buf, 0, 1, "", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), 0);
	n = query(buf, 0, 1, "notsistemo", DNS_TYPE_A);
	assert_int_equal(answer(buf, n, WEB, out, sizeof(out)), 0);
}

static void
reply_errors(void **state)
{
	uint8_t buf[512], out[512];
	struct dns_query q;
	size_t n = query(buf, 0x2900, 1, "web", DNS_TYPE_A); /* UPDATE, RD */

	(void)state;
	assert_int_equal(dns_reply_error(buf, n, DNS_NOTIMP, out, sizeof(out)), 12);
	assert_int_equal(u16(out), 0x1234);
	assert_int_equal(u16(out + 2), 0xa984); /* QR, opcode kept, RD RA, NOTIMP */
	assert_int_equal(u16(out + 4) + u16(out + 6) + u16(out + 8) + u16(out + 10), 0);
	assert_int_equal(dns_reply_error(buf, 11, DNS_FORMERR, out, sizeof(out)), -EINVAL);
	assert_int_equal(dns_reply_error(buf, n, DNS_FORMERR, out, 11), -ENOSPC);
	n = query(buf, 0x0100, 1, "example.org", DNS_TYPE_A);
	assert_int_equal(dns_query_parse(buf, n, &q), 0);
	assert_int_equal(dns_reply_build(&q, DNS_SERVFAIL, NULL, out, sizeof(out)), (int)n);
	assert_int_equal(u16(out + 2), 0x8182); /* not authoritative */
}

/* ---- resolv.conf --------------------------------------------------------------------------- */

static void
resolv_conf(void **state)
{
	char path[] = "/tmp/test_dns_resolv_XXXXXX";
	int fd = mkstemp(path);
	uint32_t ns[DNS_MAX_UPSTREAMS];
	char long_line[600];

	(void)state;
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	memset(long_line, 'x', sizeof(long_line));
	fprintf(f,
		"# generated\n; nameserver 1.1.1.1\nsearch example.org\n"
		"nameserver 127.0.0.53\nnameserver   10.0.0.1 # office\n"
		"nameserver fe80::1%%eth0\nnameserver 127.0.0.53\noptions edns0\n"
		"nameserver 0.0.0.0\nnameserver 300.1.1.1\nnameserver\n"
		"%.255s nameserver 9.9.9.9 %.300s\n" /* a line read in pieces */
		"\tnameserver\t192.168.1.1\nnameserver 8.8.8.8\n",
		long_line, long_line);
	fclose(f);
	assert_int_equal(dns_upstreams_from_resolv_conf(path, ns, DNS_MAX_UPSTREAMS), 4);
	assert_int_equal(ns[0], 0x7f000035);
	assert_int_equal(ns[1], 0x0a000001);
	assert_int_equal(ns[2], 0xc0a80101);
	assert_int_equal(ns[3], 0x08080808);
	assert_int_equal(dns_upstreams_from_resolv_conf(path, ns, 2), 2);
	assert_int_equal(dns_upstreams_from_resolv_conf(path, ns, 0), 0);
	unlink(path);
	assert_int_equal(dns_upstreams_from_resolv_conf(path, ns, 2), -ENOENT);
}

/* ---- random input -------------------------------------------------------------------------- */

static uint32_t
rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (uint32_t)(*x >> 32);
}

/* Checks what must hold for any parsed input, and answers it. */
static void
check_any(const uint8_t *pkt, size_t len)
{
	struct dns_query q;
	uint8_t out[512];

	if (dns_query_parse(pkt, len, &q) != 0)
		return;
	assert_true(q.qname_len >= 1 && q.qname_len <= 255);
	assert_true(strlen(q.name) <= DNS_NAME_MAX);
	int n = dns_answer(&q, table_lookup, NULL, WEB, out, sizeof(out));
	assert_true(n >= 0 && n <= 287);
}

/* Random bytes and mutations of valid queries for ~0.5 s (longer fuzzing is done by hand). */
static void
random_input(void **state)
{
	uint8_t seed[512], pkt[600];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t seed_len = query(seed, 0x0100, 1, "web.default.sistemo", DNS_TYPE_A);
	clock_t end = clock() + CLOCKS_PER_SEC / 2;

	(void)state;
	for (unsigned i = 0; i < 2000000 && clock() < end; i++) {
		size_t len;
		if (i & 1) {
			len = rnd(&x) % sizeof(pkt);
			for (size_t k = 0; k < len; k++)
				pkt[k] = (uint8_t)rnd(&x);
			pkt[2] &= 0x07; /* a query, opcode 0, most of the time */
			pkt[4] = 0;
			pkt[5] = 1;
		} else {
			len = seed_len;
			memcpy(pkt, seed, len);
			for (unsigned k = rnd(&x) % 6; k > 0; k--)
				pkt[12 + rnd(&x) % (len - 12)] =
					(uint8_t)(rnd(&x) % 4 ? rnd(&x) : 0xc0);
			len -= rnd(&x) % 3 == 0 ? rnd(&x) % (len - 11) : 0;
		}
		check_any(pkt, len);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_valid),           cmocka_unit_test(parse_drops_and_refuses),
		cmocka_unit_test(parse_truncated),       cmocka_unit_test(parse_counts),
		cmocka_unit_test(parse_label_limits),    cmocka_unit_test(parse_odd_bytes),
		cmocka_unit_test(parse_compression),     cmocka_unit_test(reply_a),
		cmocka_unit_test(reply_nodata_nxdomain), cmocka_unit_test(reply_short_names),
		cmocka_unit_test(reply_errors),          cmocka_unit_test(resolv_conf),
		cmocka_unit_test(random_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
