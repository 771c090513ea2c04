/* dns against real sockets, inside it_isolate()'s private network and mount namespaces: the
 * responder on 127.0.0.1 and on gateway addresses of a dummy link, machines from a table that
 * changes under it, forwarding to a fake upstream on 127.0.0.2 (UDP and TCP), failover, TCP,
 * malformed and random input, unlisten and listen again, an address that comes up later. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "dns.h"
#include "err.h"
#include "it.h"

#define GW_DEFAULT "10.200.0.1"
#define GW_BACKEND "10.201.0.1"
#define GW_LATE "10.202.0.1"
#define IN_DEFAULT "10.200.0.3" /* the client's address: machine "api" */
#define IN_BACKEND "10.201.0.3" /* machine "cache" */
#define IN_LATE "10.202.0.3"
#define UPSTREAM "127.0.0.2"
#define DEAD_UPSTREAM "127.0.0.3"   /* nothing listens there */
#define UPSTREAM_ANSWER 0xc0000201u /* 192.0.2.1 */
#define WAIT_MS 2000

struct machine {
	char name[32], network[32], ip[16];
};

static struct {
	pthread_mutex_t lock; /* the table changes while the server reads it */
	struct machine m[8];
	size_t n;
} table = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.m = {{"web", "default", "10.200.0.2"},
	      {"api", "default", "10.200.0.3"},
	      {"db", "backend", "10.201.0.2"},
	      {"cache", "backend", "10.201.0.3"}},
	.n = 4,
};

static struct dns_server *server;

static uint32_t
ip4(const char *text)
{
	struct in_addr a;

	assert_int_equal(inet_pton(AF_INET, text, &a), 1);
	return ntohl(a.s_addr);
}

/* On the server's thread: no cmocka assertion there. */
static uint32_t
ip4_raw(const char *text)
{
	return ntohl(inet_addr(text));
}

static const char *
network_of(uint32_t client)
{
	if ((client >> 16) == (ip4_raw(GW_DEFAULT) >> 16))
		return "default"; /* a /16 */
	if ((client >> 8) == (ip4_raw(GW_BACKEND) >> 8))
		return "backend"; /* a /24 */
	return NULL;
}

/* What the daemon's lookup does, over the table: <machine>.<network>.sistemo anywhere,
 * <machine> within the client's network; another network's machine by short name is ours but
 * unknown; any other name is not ours. */
static int
table_lookup(void *ud, const char *name, uint32_t client, uint32_t *ret)
{
	const char *net = network_of(client);
	int r = -1;

	(void)ud;
	pthread_mutex_lock(&table.lock);
	for (size_t i = 0; i < table.n && r != 1; i++) {
		const struct machine *m = &table.m[i];
		char fqdn[128];
		snprintf(fqdn, sizeof(fqdn), "%s.%s.sistemo", m->name, m->network);
		if (strcmp(name, fqdn) == 0 ||
		    (net && strcmp(net, m->network) == 0 && strcmp(name, m->name) == 0)) {
			*ret = ip4_raw(m->ip);
			r = 1;
		} else if (strcmp(name, m->name) == 0) {
			r = 0;
		}
	}
	pthread_mutex_unlock(&table.lock);
	return r;
}

/* ---- shell, time --------------------------------------------------------------------------- */

static int cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
cmd(const char *fmt, ...)
{
	char c[512], full[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c, sizeof(c), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "%s >/dev/null 2>&1", c);
	int status = system(full);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- packets ------------------------------------------------------------------------------- */

static uint16_t
u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static size_t
query_build(uint8_t *buf, uint16_t id, const char *name, uint16_t type)
{
	size_t n = 12;

	memset(buf, 0, 12);
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[2] = 0x01; /* RD */
	buf[5] = 1;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);
		buf[n++] = (uint8_t)len;
		memcpy(buf + n, name, len);
		n += len;
		name += len + (dot ? 1 : 0);
	}
	buf[n++] = 0;
	buf[n++] = (uint8_t)(type >> 8);
	buf[n++] = (uint8_t)type;
	buf[n++] = 0;
	buf[n++] = DNS_CLASS_IN;
	return n;
}

/* Skips a name at off (labels, ending at a zero or a pointer); returns the offset after it. */
static size_t
name_skip(const uint8_t *p, size_t len, size_t off)
{
	while (off < len && p[off] && (p[off] & 0xc0) != 0xc0)
		off += 1 + (size_t)p[off];
	return off + (off < len && p[off] ? 2 : 1);
}

struct reply {
	uint16_t id;
	int rcode, ancount;
	bool aa;
	uint32_t a, ttl; /* of the first answer */
};

static void
reply_decode(const uint8_t *p, int len, struct reply *r)
{
	size_t off;

	assert_true(len >= 12);
	memset(r, 0, sizeof(*r));
	r->id = u16(p);
	assert_true(p[2] & 0x80);
	r->aa = p[2] & 0x04;
	r->rcode = p[3] & 0xf;
	r->ancount = u16(p + 6);
	if (!r->ancount)
		return;
	off = name_skip(p, (size_t)len, 12) + 4;
	off = name_skip(p, (size_t)len, off);
	assert_true(off + 14 <= (size_t)len);
	assert_int_equal(u16(p + off), DNS_TYPE_A);
	r->ttl = (uint32_t)u16(p + off + 4) << 16 | u16(p + off + 6);
	assert_int_equal(u16(p + off + 8), 4);
	r->a = (uint32_t)u16(p + off + 10) << 16 | u16(p + off + 12);
}

/* ---- a client ------------------------------------------------------------------------------ */

static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left = deadline - now_ms();

	if (left <= 0 || poll(&p, 1, (int)left) <= 0)
		return -ETIMEDOUT;
	return 0;
}

static int
sock_from(int type, const char *src)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip4(src))};
	int fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int
connect_to(int fd, const char *dst, int64_t deadline)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = htonl(ip4(dst))};
	int e = 0;
	socklen_t e_len = sizeof(e);

	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		return -errno;
	if (wait_fd(fd, POLLOUT, deadline) < 0)
		return -ETIMEDOUT;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &e_len);
	return -e;
}

static int
udp_ask_raw(const char *src, const char *dst, const uint8_t *q, size_t n, uint8_t *out, size_t size,
	    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd = sock_from(SOCK_DGRAM, src);
	int r = connect_to(fd, dst, deadline);

	if (r == 0 && send(fd, q, n, 0) != (ssize_t)n)
		r = -errno;
	if (r == 0 && (r = wait_fd(fd, POLLIN, deadline)) == 0) {
		ssize_t got = recv(fd, out, size, 0);
		r = got < 0 ? -errno : (int)got;
	}
	close(fd);
	return r;
}

static int
read_full(int fd, uint8_t *buf, size_t n, int64_t deadline)
{
	size_t have = 0;

	while (have < n) {
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -ETIMEDOUT;
		ssize_t got = recv(fd, buf + have, n - have, 0);
		if (got <= 0)
			return got == 0 ? -EPIPE : -errno;
		have += (size_t)got;
	}
	return 0;
}

static int
tcp_ask_raw(const char *src, const char *dst, const uint8_t *q, size_t n, uint8_t *out, size_t size,
	    int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	int fd = sock_from(SOCK_STREAM, src);
	uint8_t msg[600], len[2];
	int r = connect_to(fd, dst, deadline);

	assert_true(n + 2 <= sizeof(msg));
	msg[0] = (uint8_t)(n >> 8);
	msg[1] = (uint8_t)n;
	memcpy(msg + 2, q, n);
	if (r == 0 && send(fd, msg, n + 2, MSG_NOSIGNAL) != (ssize_t)(n + 2))
		r = -errno;
	if (r == 0)
		r = read_full(fd, len, 2, deadline);
	if (r == 0 && u16(len) > size)
		r = -EMSGSIZE;
	if (r == 0 && (r = read_full(fd, out, u16(len), deadline)) == 0)
		r = u16(len);
	close(fd);
	return r;
}

/* Asks dst:53 from src; returns the reply's length or a negative errno (-ETIMEDOUT). */
static int
ask(bool tcp, const char *src, const char *dst, const char *name, uint16_t type, uint16_t id,
    struct reply *ret)
{
	uint8_t q[300], out[4096];
	size_t n = query_build(q, id, name, type);
	int r = tcp ? tcp_ask_raw(src, dst, q, n, out, sizeof(out), WAIT_MS)
		    : udp_ask_raw(src, dst, q, n, out, sizeof(out), WAIT_MS);

	if (r > 0) {
		reply_decode(out, r, ret);
		assert_int_equal(ret->id, id);
		assert_memory_equal(out + 12, q + 12, n - 12); /* the question echoed */
	}
	return r;
}

static void
expect_a(bool tcp, const char *src, const char *dst, const char *name, const char *ip)
{
	struct reply r;

	if (ask(tcp, src, dst, name, DNS_TYPE_A, 0x5151, &r) <= 0)
		fail_msg("no answer for '%s' from %s at %s", name, src, dst);
	assert_int_equal(r.rcode, DNS_NOERROR);
	assert_int_equal(r.ancount, 1);
	assert_int_equal(r.a, ip4(ip));
}

static void
expect_rcode(const char *src, const char *dst, const char *name, uint16_t type, int rcode,
	     int ancount)
{
	struct reply r;

	if (ask(false, src, dst, name, type, 0x7a7a, &r) <= 0)
		fail_msg("no answer for '%s' from %s at %s", name, src, dst);
	assert_int_equal(r.rcode, rcode);
	assert_int_equal(r.ancount, ancount);
}

/* ---- a fake upstream: answers every name with 192.0.2.1, over UDP and TCP ------------------ */

static struct {
	pthread_t thread;
	int udp, tcp, stop;
	atomic_uint udp_queries, tcp_queries;
	atomic_uint last_id; /* the id it saw last */
} up = {.udp = -1, .tcp = -1, .stop = -1};

/* The reply to query q (n bytes): the question, then one A record; 0 for an odd query (this
 * runs on its own thread: no cmocka assertion). */
static size_t
upstream_reply(const uint8_t *q, size_t n, uint8_t *out)
{
	static const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
	size_t qend = name_skip(q, n, 12) + 4;

	if (qend > n || qend + sizeof(rr) > 600)
		return 0;
	memcpy(out, q, qend);
	out[2] |= 0x80;
	out[3] = 0x80;
	memset(out + 6, 0, 6);
	out[7] = 1;
	memcpy(out + qend, rr, sizeof(rr));
	return qend + sizeof(rr);
}

static void
upstream_udp(void)
{
	struct sockaddr_in from;
	socklen_t from_len = sizeof(from);
	uint8_t q[600], out[600];
	ssize_t n = recvfrom(up.udp, q, sizeof(q), 0, (struct sockaddr *)&from, &from_len);

	if (n < 12)
		return;
	atomic_fetch_add(&up.udp_queries, 1);
	atomic_store(&up.last_id, u16(q));
	size_t len = upstream_reply(q, (size_t)n, out);
	if (len)
		sendto(up.udp, out, len, 0, (struct sockaddr *)&from, from_len);
}

static void
upstream_tcp(void)
{
	int64_t deadline = now_ms() + WAIT_MS;
	uint8_t len[2], q[600], out[602];
	int fd = accept4(up.tcp, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (read_full(fd, len, 2, deadline) == 0 && u16(len) >= 12 && u16(len) <= sizeof(q) &&
	    read_full(fd, q, u16(len), deadline) == 0) {
		atomic_fetch_add(&up.tcp_queries, 1);
		size_t n = upstream_reply(q, u16(len), out + 2);
		out[0] = (uint8_t)(n >> 8);
		out[1] = (uint8_t)n;
		if (n)
			send(fd, out, n + 2, MSG_NOSIGNAL);
	}
	close(fd);
}

static void *
upstream_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[3] = {{.fd = up.stop, .events = POLLIN},
				      {.fd = up.udp, .events = POLLIN},
				      {.fd = up.tcp, .events = POLLIN}};
		if (poll(p, 3, -1) < 0 || p[0].revents)
			return NULL;
		if (p[1].revents)
			upstream_udp();
		if (p[2].revents)
			upstream_tcp();
	}
}

static void
upstream_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(53),
				 .sin_addr.s_addr = htonl(ip4(UPSTREAM))};
	int one = 1;

	up.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	up.tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	up.stop = eventfd(0, EFD_CLOEXEC);
	assert_true(up.udp >= 0 && up.tcp >= 0 && up.stop >= 0);
	setsockopt(up.tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(up.udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(bind(up.tcp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(up.tcp, 16), 0);
	assert_int_equal(pthread_create(&up.thread, NULL, upstream_thread, NULL), 0);
}

static void
upstream_stop(void)
{
	uint64_t one = 1;

	if (up.stop < 0)
		return;
	assert_int_equal(write(up.stop, &one, sizeof(one)), sizeof(one));
	pthread_join(up.thread, NULL);
	close(up.udp);
	close(up.tcp);
	close(up.stop);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static void
upstreams(const char *a, const char *b)
{
	uint32_t addrs[2] = {a ? ip4(a) : 0, b ? ip4(b) : 0};

	dns_server_set_upstreams(server, addrs, (a ? 1 : 0) + (b ? 1 : 0));
}

static int
listen_on(const char *addr)
{
	struct err err = {0};
	int r = dns_server_listen(server, ip4(addr), 53, &err);

	if (r < 0)
		fprintf(stderr, "listen: %s\n", err.msg);
	return r;
}

static int
group_setup(void **state)
{
	struct err err = {0};

	(void)state;
	/* a dummy link where the kernel has the driver; else a bridge, as the daemon's are */
	if ((cmd("ip link add d0 type dummy") && cmd("ip link add d0 type bridge")) ||
	    cmd("ip link set d0 up") || cmd("ip addr add " GW_DEFAULT "/16 dev d0") ||
	    cmd("ip addr add " IN_DEFAULT "/16 dev d0") ||
	    cmd("ip addr add " GW_BACKEND "/24 dev d0") ||
	    cmd("ip addr add " IN_BACKEND "/24 dev d0"))
		return -1;
	upstream_start();
	if (dns_server_new(table_lookup, NULL, &server, &err) < 0) {
		fprintf(stderr, "dns: %s\n", err.msg);
		return -1;
	}
	if (listen_on("127.0.0.1") != 53 || listen_on(GW_DEFAULT) != 53 ||
	    listen_on(GW_BACKEND) != 53)
		return -1;
	upstreams(UPSTREAM, NULL);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	dns_server_free(server);
	upstream_stop();
	cmd("ip link del d0");
	return 0;
}

/* ---- our names ----------------------------------------------------------------------------- */

static void
a_records(void **state)
{
	struct reply r;

	(void)state;
	assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "web.default.sistemo", DNS_TYPE_A, 1, &r) >
		    0);
	assert_int_equal(r.rcode, DNS_NOERROR);
	assert_true(r.aa);
	assert_int_equal(r.ancount, 1);
	assert_int_equal(r.a, ip4("10.200.0.2"));
	assert_int_equal(r.ttl, DNS_TTL_S);
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "DB.Backend.Sistemo", "10.201.0.2");
	expect_a(false, "127.0.0.1", "127.0.0.1", "cache.backend.sistemo", "10.201.0.3");
	expect_a(false, IN_BACKEND, GW_BACKEND, "web.default.sistemo", "10.200.0.2");
}

static void
nxdomain(void **state)
{
	(void)state;
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "x.default.sistemo", DNS_TYPE_A, DNS_NXDOMAIN, 0);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "web.backend.sistemo", DNS_TYPE_A, DNS_NXDOMAIN, 0);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "x.sistemo", DNS_TYPE_A, DNS_NXDOMAIN, 0);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "x.default.sistemo", DNS_TYPE_AAAA, DNS_NXDOMAIN, 0);
}

static void
short_names(void **state)
{
	(void)state;
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "WEB", "10.200.0.2");
	expect_a(false, IN_BACKEND, GW_BACKEND, "db", "10.201.0.2");
	/* another network's machine: ours, but not for this client */
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "db", DNS_TYPE_A, DNS_NXDOMAIN, 0);
	expect_rcode(IN_BACKEND, GW_BACKEND, "web", DNS_TYPE_A, DNS_NXDOMAIN, 0);
}

static void
aaaa_nodata(void **state)
{
	(void)state;
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "web.default.sistemo", DNS_TYPE_AAAA, DNS_NOERROR, 0);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "web", DNS_TYPE_AAAA, DNS_NOERROR, 0);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "web", 16 /* TXT */, DNS_NOERROR, 0);
}

static void
live_updates(void **state)
{
	(void)state;
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "late.default.sistemo", DNS_TYPE_A, DNS_NXDOMAIN, 0);
	pthread_mutex_lock(&table.lock);
	table.m[table.n++] = (struct machine){"late", "default", "10.200.0.9"};
	pthread_mutex_unlock(&table.lock);
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "late.default.sistemo", "10.200.0.9");
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "late", "10.200.0.9");
	pthread_mutex_lock(&table.lock);
	table.n--;
	pthread_mutex_unlock(&table.lock);
	expect_rcode(IN_DEFAULT, GW_DEFAULT, "late.default.sistemo", DNS_TYPE_A, DNS_NXDOMAIN, 0);
}

static void
tcp_ours(void **state)
{
	struct reply r;

	(void)state;
	expect_a(true, IN_DEFAULT, GW_DEFAULT, "web.default.sistemo", "10.200.0.2");
	expect_a(true, IN_BACKEND, GW_BACKEND, "db", "10.201.0.2");
	assert_true(ask(true, IN_DEFAULT, GW_DEFAULT, "nope.default.sistemo", DNS_TYPE_A, 9, &r) >
		    0);
	assert_int_equal(r.rcode, DNS_NXDOMAIN);
}

/* ---- forwarding ---------------------------------------------------------------------------- */

static void
forwarded(void **state)
{
	unsigned before = atomic_load(&up.udp_queries);
	struct reply r;

	(void)state;
	assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "example.org", DNS_TYPE_A, 0x4242, &r) > 0);
	assert_int_equal(r.rcode, DNS_NOERROR);
	assert_int_equal(r.ancount, 1);
	assert_int_equal(r.a, UPSTREAM_ANSWER);
	assert_int_equal(atomic_load(&up.udp_queries), before + 1);
	/* a single label nobody claims goes out too */
	expect_a(false, IN_BACKEND, GW_BACKEND, "intranet", "192.0.2.1");
	expect_a(false, "127.0.0.1", "127.0.0.1", "www.example.com", "192.0.2.1");
	assert_int_equal(atomic_load(&up.udp_queries), before + 3);
}

static void
forwarded_ids_remapped(void **state)
{
	unsigned same = 0;

	(void)state;
	/* the upstream sees ids of ours: the client's id 0x0101 reaching it 8 times is 2^-128 */
	for (unsigned i = 0; i < 8; i++) {
		struct reply r;
		assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "example.net", DNS_TYPE_A, 0x0101,
				&r) > 0);
		same += atomic_load(&up.last_id) == 0x0101;
	}
	assert_true(same < 8);
}

static void
forwarded_tcp(void **state)
{
	unsigned before = atomic_load(&up.tcp_queries);

	(void)state;
	expect_a(true, IN_DEFAULT, GW_DEFAULT, "example.org", "192.0.2.1");
	assert_int_equal(atomic_load(&up.tcp_queries), before + 1);
}

static void
no_upstream_servfail(void **state)
{
	struct reply r;

	(void)state;
	upstreams(NULL, NULL);
	assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "example.org", DNS_TYPE_A, 3, &r) > 0);
	assert_int_equal(r.rcode, DNS_SERVFAIL);
	assert_true(ask(true, IN_DEFAULT, GW_DEFAULT, "example.org", DNS_TYPE_A, 4, &r) > 0);
	assert_int_equal(r.rcode, DNS_SERVFAIL);
	/* ours still answer */
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
	/* an upstream that is one of our own addresses is skipped, never looped to */
	upstreams(GW_BACKEND, NULL);
	assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "example.org", DNS_TYPE_A, 5, &r) > 0);
	assert_int_equal(r.rcode, DNS_SERVFAIL);
	upstreams(UPSTREAM, NULL);
}

static void
failover(void **state)
{
	struct reply r;

	(void)state;
	upstreams(DEAD_UPSTREAM, UPSTREAM);
	/* the first goes to the dead one, then after a second to the next */
	int64_t t0 = now_ms();
	assert_true(ask(false, IN_DEFAULT, GW_DEFAULT, "example.org", DNS_TYPE_A, 6, &r) > 0);
	int64_t took = now_ms() - t0;
	assert_int_equal(r.a, UPSTREAM_ANSWER);
	if (took < 900 || took >= WAIT_MS)
		fail_msg("answered after %lld ms, expected about 1000", (long long)took);
	/* the one that answered is asked first from now on */
	t0 = now_ms();
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "example.org", "192.0.2.1");
	assert_true(now_ms() - t0 < 500);
	/* a new list starts from its first; over TCP the dead one refuses the connection at once */
	unsigned before = atomic_load(&up.tcp_queries);
	upstreams(UPSTREAM, DEAD_UPSTREAM);
	upstreams(DEAD_UPSTREAM, UPSTREAM);
	t0 = now_ms();
	expect_a(true, IN_DEFAULT, GW_DEFAULT, "example.org", "192.0.2.1");
	assert_true(now_ms() - t0 < 500);
	assert_int_equal(atomic_load(&up.tcp_queries), before + 1);
	upstreams(UPSTREAM, NULL);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static void
malformed(void **state)
{
	uint8_t q[300], out[600];
	size_t n = query_build(q, 0x3333, "web", DNS_TYPE_A);

	(void)state;
	q[5] = 2; /* two questions */
	assert_int_equal(udp_ask_raw(IN_DEFAULT, GW_DEFAULT, q, n, out, sizeof(out), WAIT_MS), 12);
	assert_int_equal(u16(out), 0x3333);
	assert_int_equal(out[3] & 0xf, DNS_FORMERR);
	q[5] = 1;
	q[2] = 0x28; /* UPDATE */
	assert_int_equal(udp_ask_raw(IN_DEFAULT, GW_DEFAULT, q, n, out, sizeof(out), WAIT_MS), 12);
	assert_int_equal(out[3] & 0xf, DNS_NOTIMP);
	assert_int_equal(tcp_ask_raw(IN_DEFAULT, GW_DEFAULT, q, n, out, sizeof(out), WAIT_MS), 12);
	assert_int_equal(out[3] & 0xf, DNS_NOTIMP);
	q[2] = 0x81; /* a response: never answered */
	assert_int_equal(udp_ask_raw(IN_DEFAULT, GW_DEFAULT, q, n, out, sizeof(out), 300),
			 -ETIMEDOUT);
	assert_int_equal(udp_ask_raw(IN_DEFAULT, GW_DEFAULT, q, 5, out, sizeof(out), 300),
			 -ETIMEDOUT);
}

/* Random datagrams and TCP streams, then it still answers. */
static void
random_input(void **state)
{
	uint64_t x = 0x2545f4914f6cdd1dull;
	uint8_t pkt[700];
	int udp = sock_from(SOCK_DGRAM, IN_DEFAULT);
	struct sockaddr_in gw = {.sin_family = AF_INET,
				 .sin_port = htons(53),
				 .sin_addr.s_addr = htonl(ip4(GW_DEFAULT))};

	(void)state;
	for (unsigned i = 0; i < 3000; i++) {
		size_t len = (x >> 40) % sizeof(pkt);
		for (size_t k = 0; k < len; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			pkt[k] = (uint8_t)(x >> 24);
		}
		if (len > 5 && i % 2) {
			pkt[2] &= 0x07; /* mostly well-formed headers: the name parser gets it */
			pkt[4] = 0;
			pkt[5] = 1;
		}
		sendto(udp, pkt, len, 0, (struct sockaddr *)&gw, sizeof(gw));
		/* no datagram lost to a full socket buffer: see flood() */
		if (i % 32 == 31)
			expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
		if (i % 300 == 0) {
			int t = sock_from(SOCK_STREAM, IN_DEFAULT);
			if (connect_to(t, GW_DEFAULT, now_ms() + WAIT_MS) == 0)
				send(t, pkt, len, MSG_NOSIGNAL);
			close(t);
		}
	}
	close(udp);
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
	expect_a(true, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
}

/* ---- addresses come and go ----------------------------------------------------------------- */

static void
unlisten_listen(void **state)
{
	struct err err = {0};
	struct reply r;

	(void)state;
	assert_int_equal(dns_server_unlisten(server, ip4(GW_DEFAULT)), 0);
	int u = ask(false, IN_DEFAULT, GW_DEFAULT, "web", DNS_TYPE_A, 7, &r);
	assert_true(u == -ECONNREFUSED || u == -ETIMEDOUT);
	assert_int_equal(ask(true, IN_DEFAULT, GW_DEFAULT, "web", DNS_TYPE_A, 7, &r),
			 -ECONNREFUSED);
	assert_int_equal(dns_server_unlisten(server, ip4(GW_DEFAULT)), -ENOENT);
	/* the others are untouched */
	expect_a(false, IN_BACKEND, GW_BACKEND, "db", "10.201.0.2");
	assert_int_equal(listen_on(GW_DEFAULT), 53);
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
	expect_a(true, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
	/* again on the same port: nothing changes; another port: refused */
	assert_int_equal(listen_on(GW_DEFAULT), 53);
	assert_int_equal(dns_server_listen(server, ip4(GW_DEFAULT), 5353, &err), -EADDRINUSE);
	assert_int_equal(err.code, ERR_EXISTS);
}

static void
address_up_later(void **state)
{
	(void)state;
	/* IP_FREEBIND: listening works before the bridge has its address */
	assert_int_equal(listen_on(GW_LATE), 53);
	assert_int_equal(cmd("ip addr add " GW_LATE "/24 dev d0"), 0);
	assert_int_equal(cmd("ip addr add " IN_LATE "/24 dev d0"), 0);
	expect_a(false, IN_LATE, GW_LATE, "web.default.sistemo", "10.200.0.2");
	expect_a(true, IN_LATE, GW_LATE, "db.backend.sistemo", "10.201.0.2");
	assert_int_equal(dns_server_unlisten(server, ip4(GW_LATE)), 0);
}

/* Sends count forwarded queries from src to dst (where nothing answers them); returns how
 * many got SERVFAIL at once. Paced by barriers: a listener's socket is read in order, so once
 * the answer to one of our own names comes back, everything sent before it was taken (none
 * lost to a full socket buffer) and its SERVFAILs are already queued here. */
static unsigned
flood(const char *src, const char *dst, unsigned count)
{
	uint8_t q[300], out[600];
	unsigned servfail = 0;
	int fd = sock_from(SOCK_DGRAM, src);

	assert_int_equal(connect_to(fd, dst, now_ms() + WAIT_MS), 0);
	for (unsigned i = 0; i < count; i++) {
		size_t n = query_build(q, (uint16_t)i, "example.org", DNS_TYPE_A);
		assert_int_equal(send(fd, q, n, 0), (ssize_t)n);
		if (i % 32 == 31 || i == count - 1)
			expect_a(false, src, dst, "web.default.sistemo", "10.200.0.2");
	}
	while (wait_fd(fd, POLLIN, now_ms() + 100) == 0) {
		ssize_t got = recv(fd, out, sizeof(out), 0);
		if (got >= 12 && (out[3] & 0xf) == DNS_SERVFAIL)
			servfail++;
	}
	close(fd);
	return servfail;
}

/* Forwarded queries to an upstream that never answers, on a server of their own (an empty
 * table): 256 wait per client, 1024 in all; the rest get SERVFAIL at once. */
static void
pending_bounded(void **state)
{
	struct dns_server *main_server = server;
	struct err err = {0};
	char src[16];

	(void)state;
	assert_int_equal(dns_server_new(table_lookup, NULL, &server, &err), 0);
	assert_int_equal(listen_on(GW_LATE), 53);
	upstreams(DEAD_UPSTREAM, NULL);
	assert_int_equal(flood(IN_LATE, GW_LATE, 300), 300 - 256);
	for (unsigned i = 4; i <= 7; i++) {
		snprintf(src, sizeof(src), "10.202.0.%u", i);
		assert_int_equal(cmd("ip addr add %s/24 dev d0", src), 0);
		assert_int_equal(flood(src, GW_LATE, i < 7 ? 256 : 10), i < 7 ? 0 : 10);
	}
	dns_server_free(server); /* with 1024 queries pending */
	server = main_server;
	/* the main server is still there */
	expect_a(false, IN_DEFAULT, GW_DEFAULT, "web", "10.200.0.2");
}

int
main(void)
{
	it_isolate();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_records),        cmocka_unit_test(nxdomain),
		cmocka_unit_test(short_names),      cmocka_unit_test(aaaa_nodata),
		cmocka_unit_test(live_updates),     cmocka_unit_test(tcp_ours),
		cmocka_unit_test(forwarded),        cmocka_unit_test(forwarded_ids_remapped),
		cmocka_unit_test(forwarded_tcp),    cmocka_unit_test(no_upstream_servfail),
		cmocka_unit_test(failover),         cmocka_unit_test(malformed),
		cmocka_unit_test(random_input),     cmocka_unit_test(unlisten_listen),
		cmocka_unit_test(address_up_later), cmocka_unit_test(pending_bounded),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
