/* nft against the real kernel, inside it_isolate()'s private network and mount namespaces: a
 * topology without VMs (host bridges sistemo0 and br-prod, "machines" that are network
 * namespaces on a veth whose host end is a bridge port, a LAN namespace and an "internet"
 * namespace), the ruleset applied by nft_apply, and real TCP/UDP connections through it. The
 * traffic checks run twice: with br_netfilter's bridge-nf-call-iptables on (this kernel's
 * default: bridged frames also cross the inet hooks) and off (a host without br_netfilter).
 * Then compat with a foreign drop-policy forward chain, idempotence, the 10 000th port,
 * rendering and removal. Every wait is bounded (2 s per connect and per reply). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "err.h"
#include "it.h"
#include "macro.h"
#include "nft.h"
#include "strbuf.h"

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((c) << 8) | (d))
#define WAIT_MS 2000
#define MAX_SERVERS 32
#define SYNTH_PORTS 9999 /* with the 10 000th added by nft_port_add */
#define SYNTH_BASE 20000
#define PORT_10K 30000

/* ---- the topology --------------------------------------------------------------------------- */

struct node {
	const char *ns, *veth, *bridge, *addr, *gw; /* addr with prefix */
};

static const struct node machines_ns[] = {
	{"web", "vh-00000002", "sistemo0", "10.200.0.2/16", "10.200.0.1"},
	{"client", "vh-00000003", "sistemo0", "10.200.0.3/16", "10.200.0.1"},
	{"iso", "vh-00000004", "sistemo0", "10.200.0.4/16", "10.200.0.1"},
	{"egr", "vh-00000005", "sistemo0", "10.200.0.5/16", "10.200.0.1"},
	{"pol", "vh-00000006", "sistemo0", "10.200.0.6/16", "10.200.0.1"},
	{"prod", "vh-00000007", "br-prod", "10.201.0.2/24", "10.201.0.1"},
};

static const struct nft_network networks[] = {
	{"default", "sistemo0", IP4(10, 200, 0, 0), 16, IP4(10, 200, 0, 1)},
	{"prod", "br-prod", IP4(10, 201, 0, 0), 24, IP4(10, 201, 0, 1)},
};
static const struct nft_cidr egr_allow[] = {{IP4(198, 51, 100, 1), 32, 80}};
static const struct nft_cidr pol_allow[] = {{IP4(10, 200, 0, 3), 32, 0},
					    {IP4(10, 201, 0, 2), 32, 0}};
static const struct nft_machine machines[] = {
	{"web", "vh-00000002", "sistemo0", IP4(10, 200, 0, 2), NFT_MODE_BRIDGE, NULL, 0, NULL, 0},
	{"client", "vh-00000003", "sistemo0", IP4(10, 200, 0, 3), NFT_MODE_BRIDGE, NULL, 0, NULL,
	 0},
	{"iso", "vh-00000004", "sistemo0", IP4(10, 200, 0, 4), NFT_MODE_ISOLATED, NULL, 0, NULL, 0},
	{"egr", "vh-00000005", "sistemo0", IP4(10, 200, 0, 5), NFT_MODE_BRIDGE, NULL, 0, egr_allow,
	 1},
	{"pol", "vh-00000006", "sistemo0", IP4(10, 200, 0, 6), NFT_MODE_BRIDGE, pol_allow, 2, NULL,
	 0},
	{"prod", "vh-00000007", "br-prod", IP4(10, 201, 0, 2), NFT_MODE_BRIDGE, NULL, 0, NULL, 0},
};
static const struct nft_port base_ports[] = {
	{0, 8080, IPPROTO_TCP, IP4(10, 200, 0, 2), 80},
	{0, 80, IPPROTO_TCP, IP4(10, 200, 0, 2), 80},
	{IP4(127, 0, 0, 1), 8443, IPPROTO_TCP, IP4(10, 200, 0, 2), 443},
	{0, 5353, IPPROTO_UDP, IP4(10, 200, 0, 2), 5353},
	{0, 8086, IPPROTO_TCP, IP4(10, 200, 0, 6), 80},
};
static const uint16_t guarded[] = {7777, 7778};
static const struct nft_port the_10k_port = {0, PORT_10K, IPPROTO_TCP, IP4(10, 200, 0, 2), 80};
static const struct nft_port local_port = {IP4(127, 0, 0, 1), 9443, IPPROTO_TCP, IP4(10, 200, 0, 2),
					   443};

static struct nft_port all_ports[ARRAY_SIZE(base_ports) + SYNTH_PORTS];

static struct nft_model
model(size_t n_ports)
{
	return (struct nft_model){.networks = networks,
				  .n_networks = ARRAY_SIZE(networks),
				  .machines = machines,
				  .n_machines = ARRAY_SIZE(machines),
				  .ports = all_ports,
				  .n_ports = n_ports,
				  .guarded_ports = guarded,
				  .n_guarded = ARRAY_SIZE(guarded)};
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void
write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	assert_int_equal(write(fd, value, strlen(value)), (ssize_t)strlen(value));
	close(fd);
}

static void
apply_ok(size_t n_ports)
{
	struct nft_model m = model(n_ports);
	struct err err = {0};

	if (nft_apply(&m, &err) < 0)
		fail_msg("nft_apply: %s", err.msg);
}

/* ---- sockets in namespaces ------------------------------------------------------------------ */

static int host_ns = -1;

/* A socket of the named namespace (NULL: the test's own, "the host"): the calling thread
 * enters the namespace for the socket() call only. */
static int
ns_socket(const char *ns, int type)
{
	char path[128];
	int fd, s;

	if (!ns)
		return socket(AF_INET, type | SOCK_CLOEXEC, 0);
	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(setns(fd, CLONE_NEWNET), 0);
	s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	assert_int_equal(setns(host_ns, CLONE_NEWNET), 0);
	close(fd);
	return s;
}

static struct sockaddr_in
sin_of(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};

	assert_int_equal(inet_pton(AF_INET, addr, &sa.sin_addr), 1);
	return sa;
}

/* ---- servers: TCP answers "<tag> <peer address>" and closes; UDP echoes the same ------------ */

struct server {
	int fd, type;
	char tag[16];
};

static struct server servers[MAX_SERVERS];
static size_t n_servers;
static int stop_pipe[2] = {-1, -1};
static pthread_t server_thread;

static void
server_add(const char *ns, int type, const char *addr, uint16_t port, const char *tag)
{
	struct sockaddr_in sa = sin_of(addr, port);
	int one = 1, fd = ns_socket(ns, type | SOCK_NONBLOCK);

	assert_true(fd >= 0 && n_servers < MAX_SERVERS);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail_msg("bind %s:%u in %s: %s", addr, port, ns ? ns : "host", strerror(errno));
	if (type == SOCK_STREAM)
		assert_int_equal(listen(fd, 16), 0);
	servers[n_servers].fd = fd;
	servers[n_servers].type = type;
	snprintf(servers[n_servers].tag, sizeof(servers[n_servers].tag), "%s", tag);
	n_servers++;
}

static void
serve_one(const struct server *s)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	char buf[64], addr[INET_ADDRSTRLEN];

	if (s->type == SOCK_STREAM) {
		int c = accept4(s->fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (c < 0)
			return;
		inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr));
		int n = snprintf(buf, sizeof(buf), "%s %s\n", s->tag, addr);
		(void)!write(c, buf, (size_t)n);
		close(c);
		return;
	}
	if (recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len) < 0)
		return;
	inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr));
	int n = snprintf(buf, sizeof(buf), "%s %s\n", s->tag, addr);
	sendto(s->fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
}

static void *
serve(void *unused)
{
	struct pollfd pfd[MAX_SERVERS + 1];

	(void)unused;
	for (size_t i = 0; i < n_servers; i++)
		pfd[i] = (struct pollfd){.fd = servers[i].fd, .events = POLLIN};
	pfd[n_servers] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
	for (;;) {
		if (poll(pfd, n_servers + 1, 1000) < 0 && errno != EINTR)
			return NULL;
		if (pfd[n_servers].revents)
			return NULL;
		for (size_t i = 0; i < n_servers; i++)
			if (pfd[i].revents & POLLIN)
				serve_one(&servers[i]);
	}
}

/* ---- clients ----------------------------------------------------------------------------------
 */

static bool
wait_fd(int fd, short events)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	return poll(&pfd, 1, WAIT_MS) == 1 && (pfd.revents & events);
}

/* Connects from ns (src: a source address or NULL) to dst:port and reads the answer into
 * reply. False when nothing answered within WAIT_MS. */
static bool
ask(const char *ns, int type, const char *src, const char *dst, uint16_t port, char *reply,
    size_t size)
{
	struct sockaddr_in to = sin_of(dst, port);
	int fd = ns_socket(ns, type | SOCK_NONBLOCK), soerr = 0;
	socklen_t len = sizeof(soerr);
	bool ok = false;

	assert_true(fd >= 0);
	reply[0] = '\0';
	if (src) {
		struct sockaddr_in from = sin_of(src, 0);
		assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
	}
	int r = connect(fd, (struct sockaddr *)&to, sizeof(to));
	if (r < 0 && errno == EINPROGRESS && wait_fd(fd, POLLOUT))
		r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0 ? 0 : -1;
	if (r == 0 && type == SOCK_DGRAM)
		r = send(fd, "ping", 4, 0) == 4 ? 0 : -1;
	if (r == 0 && wait_fd(fd, POLLIN)) {
		ssize_t n = recv(fd, reply, size - 1, 0);
		ok = n > 0;
		reply[n > 0 ? n : 0] = '\0';
		reply[strcspn(reply, "\n")] = '\0';
	}
	close(fd);
	return ok;
}

/* The answer from ns to dst:port starts with want ("web", "web 10.200.0.1"). */
static void
reach(const char *ns, int type, const char *src, const char *dst, uint16_t port, const char *want)
{
	char reply[64];
	bool ok = ask(ns, type, src, dst, port, reply, sizeof(reply));

	printf("  %-7s %-6s -> %s:%u/%s: %s\n", ok ? "ok" : "FAILED", ns ? ns : "host", dst, port,
	       type == SOCK_STREAM ? "tcp" : "udp", ok ? reply : "no answer");
	if (!ok || strncmp(reply, want, strlen(want)) != 0)
		fail_msg("%s -> %s:%u: want '%s', got '%s'", ns ? ns : "host", dst, port, want,
			 ok ? reply : "no answer");
}

static void
blocked(const char *ns, int type, const char *src, const char *dst, uint16_t port)
{
	char reply[64];
	bool ok = ask(ns, type, src, dst, port, reply, sizeof(reply));

	printf("  %-7s %-6s -> %s:%u/%s%s%s: %s\n", ok ? "LEAKED" : "blocked", ns ? ns : "host",
	       dst, port, type == SOCK_STREAM ? "tcp" : "udp", src ? " from " : "", src ? src : "",
	       ok ? reply : "no answer");
	if (ok)
		fail_msg("%s -> %s:%u should be blocked, got '%s'", ns ? ns : "host", dst, port,
			 reply);
}

/* ---- setup ------------------------------------------------------------------------------------
 */

static void
machine_up(const struct node *n)
{
	assert_int_equal(it_cmd("ip netns add %s", n->ns), 0);
	assert_int_equal(it_cmd("ip link add %s type veth peer name eth0 netns %s", n->veth, n->ns),
			 0);
	assert_int_equal(it_cmd("ip link set %s master %s up", n->veth, n->bridge), 0);
	assert_int_equal(it_cmd("ip -n %s addr add %s dev eth0", n->ns, n->addr), 0);
	assert_int_equal(it_cmd("ip -n %s link set eth0 up", n->ns), 0);
	assert_int_equal(it_cmd("ip -n %s link set lo up", n->ns), 0);
	assert_int_equal(it_cmd("ip -n %s route add default via %s", n->ns, n->gw), 0);
}

static void
topology_up(void)
{
	assert_int_equal(it_cmd("ip link add sistemo0 type bridge"), 0);
	assert_int_equal(it_cmd("ip addr add 10.200.0.1/16 dev sistemo0"), 0);
	assert_int_equal(it_cmd("ip link set sistemo0 up"), 0);
	assert_int_equal(it_cmd("ip link add br-prod type bridge"), 0);
	assert_int_equal(it_cmd("ip addr add 10.201.0.1/24 dev br-prod"), 0);
	assert_int_equal(it_cmd("ip link set br-prod up"), 0);
	for (size_t i = 0; i < ARRAY_SIZE(machines_ns); i++)
		machine_up(&machines_ns[i]);
	/* a second address on client, to send from an address that is not its own */
	assert_int_equal(it_cmd("ip -n client addr add 10.200.0.99/16 dev eth0"), 0);
	/* the LAN: 192.0.2.2, which routes the machines' subnets through the host */
	assert_int_equal(it_cmd("ip netns add lan"), 0);
	assert_int_equal(it_cmd("ip link add lan0 type veth peer name eth0 netns lan"), 0);
	assert_int_equal(it_cmd("ip addr add 192.0.2.1/24 dev lan0"), 0);
	assert_int_equal(it_cmd("ip link set lan0 up"), 0);
	assert_int_equal(it_cmd("ip -n lan addr add 192.0.2.2/24 dev eth0"), 0);
	assert_int_equal(it_cmd("ip -n lan link set eth0 up"), 0);
	assert_int_equal(it_cmd("ip -n lan route add 10.200.0.0/16 via 192.0.2.1"), 0);
	assert_int_equal(it_cmd("ip -n lan route add 10.201.0.0/24 via 192.0.2.1"), 0);
	/* the internet: 198.51.100.1 behind 203.0.113.2, with no route back to the machines:
	 * only masqueraded traffic gets an answer */
	assert_int_equal(it_cmd("ip netns add inet"), 0);
	assert_int_equal(it_cmd("ip link add wan0 type veth peer name eth0 netns inet"), 0);
	assert_int_equal(it_cmd("ip addr add 203.0.113.1/30 dev wan0"), 0);
	assert_int_equal(it_cmd("ip link set wan0 up"), 0);
	assert_int_equal(it_cmd("ip -n inet addr add 203.0.113.2/30 dev eth0"), 0);
	assert_int_equal(it_cmd("ip -n inet addr add 198.51.100.1/24 dev eth0"), 0);
	assert_int_equal(it_cmd("ip -n inet link set eth0 up"), 0);
	assert_int_equal(it_cmd("ip -n inet link set lo up"), 0);
	assert_int_equal(it_cmd("ip route add 198.51.100.0/24 via 203.0.113.2"), 0);
	write_file("/proc/sys/net/ipv4/ip_forward", "1");
	write_file("/proc/sys/net/ipv4/conf/sistemo0/route_localnet", "1");
	write_file("/proc/sys/net/ipv4/conf/br-prod/route_localnet", "1");
}

static void
servers_up(void)
{
	server_add("web", SOCK_STREAM, "0.0.0.0", 80, "web");
	server_add("web", SOCK_STREAM, "0.0.0.0", 443, "web443");
	server_add("web", SOCK_DGRAM, "0.0.0.0", 5353, "webudp");
	server_add("pol", SOCK_STREAM, "0.0.0.0", 80, "pol");
	server_add("pol", SOCK_DGRAM, "0.0.0.0", 5353, "poludp");
	server_add("iso", SOCK_DGRAM, "0.0.0.0", 5353, "isoudp");
	server_add("prod", SOCK_STREAM, "0.0.0.0", 80, "prod");
	server_add("inet", SOCK_STREAM, "0.0.0.0", 80, "inet80");
	server_add("inet", SOCK_STREAM, "0.0.0.0", 25, "inet25");
	server_add("inet", SOCK_STREAM, "0.0.0.0", 8081, "inet8081");
	server_add(NULL, SOCK_STREAM, "0.0.0.0", 7777, "api");
	assert_int_equal(pipe2(stop_pipe, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&server_thread, NULL, serve, NULL), 0);
}

static int
group_setup(void **state)
{
	(void)state;
	host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(host_ns >= 0);
	memcpy(all_ports, base_ports, sizeof(base_ports));
	for (size_t i = 0; i < SYNTH_PORTS; i++)
		all_ports[ARRAY_SIZE(base_ports) + i] = (struct nft_port){
			0, (uint16_t)(SYNTH_BASE + i), IPPROTO_TCP, IP4(10, 200, 0, 2), 80};
	topology_up();
	servers_up();
	apply_ok(ARRAY_SIZE(base_ports));
	return 0;
}

static int
group_teardown(void **state)
{
	struct err err = {0};

	(void)state;
	if (stop_pipe[1] >= 0) {
		(void)!write(stop_pipe[1], "x", 1);
		pthread_join(server_thread, NULL);
	}
	for (size_t i = 0; i < n_servers; i++)
		close(servers[i].fd);
	nft_remove(&err);
	return 0;
}

/* ---- traffic, run once per br_netfilter mode ------------------------------------------------- */

static void
set_br_netfilter(bool on)
{
	write_file("/proc/sys/net/bridge/bridge-nf-call-iptables", on ? "1" : "0");
	printf("bridge-nf-call-iptables=%d (%s)\n", on,
	       on ? "bridged frames cross inet hooks" : "bridged frames stay in bridge hooks");
}

/* Bridged frames cross the inet hooks (this kernel's default), or stay in the bridge's. */
static void
br_netfilter_on(void **state)
{
	(void)state;
	set_br_netfilter(true);
}

static void
br_netfilter_off(void **state)
{
	(void)state;
	set_br_netfilter(false);
}

/* The exposed ports: from 127.0.0.1, from the host's other address, from the LAN; a port
 * bound to 127.0.0.1 is not reachable from the LAN. */
static void
expose_from_host_and_lan(void **state)
{
	(void)state;
	reach(NULL, SOCK_STREAM, NULL, "127.0.0.1", 8080, "web");
	reach(NULL, SOCK_STREAM, NULL, "127.0.0.1", 8443, "web443");
	reach(NULL, SOCK_STREAM, NULL, "192.0.2.1", 8080, "web");
	reach("lan", SOCK_STREAM, NULL, "192.0.2.1", 8080, "web 192.0.2.2");
	blocked("lan", SOCK_STREAM, NULL, "192.0.2.1", 8443);
}

/* A machine reaching an exposed port through a host address (hairpin), from its own network
 * and from another one: masqueraded, so the server sees the gateway. */
static void
expose_hairpin(void **state)
{
	(void)state;
	reach("client", SOCK_STREAM, NULL, "192.0.2.1", 8080, "web 10.200.0.1");
	reach("client", SOCK_STREAM, NULL, "10.200.0.1", 8080, "web 10.200.0.1");
	reach("prod", SOCK_STREAM, NULL, "192.0.2.1", 8080, "web");
}

static void
expose_udp(void **state)
{
	(void)state;
	reach("lan", SOCK_DGRAM, NULL, "192.0.2.1", 5353, "webudp 192.0.2.2");
	reach(NULL, SOCK_DGRAM, NULL, "127.0.0.1", 5353, "webudp");
}

/* Host port 80 is exposed, yet a machine's own connection to another host's port 80 goes
 * there, masqueraded behind the host's address on that link. SMTP is dropped. */
static void
egress_not_hijacked_masqueraded_no_smtp(void **state)
{
	(void)state;
	reach("client", SOCK_STREAM, NULL, "198.51.100.1", 80, "inet80 203.0.113.1");
	blocked("client", SOCK_STREAM, NULL, "198.51.100.1", 25);
}

static void
isolation_between_bridges(void **state)
{
	(void)state;
	reach("client", SOCK_STREAM, NULL, "10.200.0.2", 80, "web 10.200.0.3");
	blocked("prod", SOCK_STREAM, NULL, "10.200.0.2", 80);
}

static void
guarded_ports(void **state)
{
	(void)state;
	reach("lan", SOCK_STREAM, NULL, "192.0.2.1", 7777, "api");
	blocked("client", SOCK_STREAM, NULL, "10.200.0.1", 7777);
	blocked("client", SOCK_STREAM, NULL, "192.0.2.1", 7777);
}

static void
isolated_mode(void **state)
{
	(void)state;
	blocked("iso", SOCK_STREAM, NULL, "198.51.100.1", 80);
	reach("iso", SOCK_STREAM, NULL, "10.200.0.2", 80, "web 10.200.0.4");
}

static void
egress_allow_list(void **state)
{
	(void)state;
	reach("egr", SOCK_STREAM, NULL, "198.51.100.1", 80, "inet80");
	blocked("egr", SOCK_STREAM, NULL, "198.51.100.1", 8081);
	reach("egr", SOCK_STREAM, NULL, "10.200.0.2", 80, "web");
	reach("client", SOCK_STREAM, NULL, "198.51.100.1", 8081, "inet8081");
}

/* pol allows client and prod only; its exposed port stays open to everyone; its own UDP
 * flows get their answers. */
static void
allow_from(void **state)
{
	(void)state;
	reach("client", SOCK_STREAM, NULL, "10.200.0.6", 80, "pol 10.200.0.3");
	reach("prod", SOCK_STREAM, NULL, "10.200.0.6", 80, "pol 10.201.0.2");
	blocked("iso", SOCK_STREAM, NULL, "10.200.0.6", 80);
	blocked("lan", SOCK_STREAM, NULL, "10.200.0.6", 80);
	reach("iso", SOCK_STREAM, NULL, "192.0.2.1", 8086, "pol");
	reach("pol", SOCK_DGRAM, NULL, "10.200.0.4", 5353, "isoudp 10.200.0.6");
	blocked("iso", SOCK_DGRAM, NULL, "10.200.0.6", 5353);
	reach("client", SOCK_DGRAM, NULL, "10.200.0.6", 5353, "poludp");
}

static void
spoofed_source_dropped(void **state)
{
	(void)state;
	blocked("client", SOCK_STREAM, "10.200.0.99", "10.200.0.2", 80);
}

/* ---- compat, idempotence, scale, render, remove --------------------------------------------- */

static const char foreign_table[] = "table ip filter {\n"
				    "\tchain FORWARD {\n"
				    "\t\ttype filter hook forward priority 0; policy drop;\n"
				    "\t\tip saddr 192.0.2.99 accept\n"
				    "\t}\n"
				    "}\n";

static char foreign_before[4096];

static void
compat_foreign_drop_chain(void **state)
{
	char path[] = "/tmp/sistemo-nft-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_true(write(fd, foreign_table, strlen(foreign_table)) ==
		    (ssize_t)strlen(foreign_table));
	close(fd);
	assert_int_equal(it_cmd("nft -f %s", path), 0);
	unlink(path);
	assert_int_equal(
		it_cmd_out(foreign_before, sizeof(foreign_before), "nft -a list table ip filter"),
		0);
	printf("  foreign chain loaded, ruleset not re-applied yet:\n");
	blocked("client", SOCK_STREAM, NULL, "198.51.100.1", 80);
	apply_ok(ARRAY_SIZE(base_ports));
	printf("  re-applied:\n");
	reach("client", SOCK_STREAM, NULL, "198.51.100.1", 80, "inet80");
	reach("lan", SOCK_STREAM, NULL, "192.0.2.1", 8080, "web");
	reach("client", SOCK_STREAM, NULL, "10.200.0.6", 80, "pol");
	blocked("iso", SOCK_STREAM, NULL, "198.51.100.1", 80);
}

static void
apply_idempotent(void **state)
{
	static char first[65536], second[65536], chain1[4096], chain2[4096];

	(void)state;
	assert_int_equal(it_cmd_out(first, sizeof(first), "nft list ruleset"), 0);
	assert_int_equal(it_cmd_out(chain1, sizeof(chain1), "nft -a list chain ip filter FORWARD"),
			 0);
	apply_ok(ARRAY_SIZE(base_ports));
	assert_int_equal(it_cmd_out(second, sizeof(second), "nft list ruleset"), 0);
	assert_int_equal(it_cmd_out(chain2, sizeof(chain2), "nft -a list chain ip filter FORWARD"),
			 0);
	assert_string_equal(first, second);
	assert_string_equal(chain1, chain2); /* the compat rule kept, same handle */
	const char *hit = strstr(chain2, "comment \"sistemo\"");
	assert_non_null(hit);
	assert_null(strstr(hit + 1, "comment \"sistemo\""));
}

/* The 10 000th port costs what the first did: one map element. */
static void
port_10k(void **state)
{
	struct nft_port taken = the_10k_port;
	struct err err = {0};
	double t0, t_apply, t_add, t_del;

	(void)state;
	t0 = it_now_ms();
	apply_ok(ARRAY_SIZE(all_ports));
	t_apply = it_now_ms() - t0;
	t0 = it_now_ms();
	if (nft_port_add(&the_10k_port, &err) < 0)
		fail_msg("nft_port_add: %s", err.msg);
	t_add = it_now_ms() - t0;
	reach("lan", SOCK_STREAM, NULL, "192.0.2.1", PORT_10K, "web");
	reach("lan", SOCK_STREAM, NULL, "192.0.2.1", SYNTH_BASE + 1234, "web");
	assert_int_equal(nft_port_add(&the_10k_port, &err), 0); /* same mapping again */
	taken.machine_ip = IP4(10, 200, 0, 6);
	assert_int_equal(nft_port_add(&taken, &err), -EEXIST);
	assert_int_equal(err.code, ERR_EXISTS);
	printf("  same port elsewhere: %s\n", err.msg);
	t0 = it_now_ms();
	assert_int_equal(nft_port_del(&the_10k_port, &err), 0);
	t_del = it_now_ms() - t0;
	blocked("lan", SOCK_STREAM, NULL, "192.0.2.1", PORT_10K);
	assert_int_equal(nft_port_del(&the_10k_port, &err), 0); /* missing: fine */
	assert_int_equal(nft_port_add(&local_port, &err), 0);
	reach(NULL, SOCK_STREAM, NULL, "127.0.0.1", 9443, "web443");
	assert_int_equal(nft_port_del(&local_port, &err), 0);
	printf("  nft_apply with %zu ports: %.2f ms; nft_port_add of the 10 000th: %.3f ms; "
	       "nft_port_del: %.3f ms\n",
	       ARRAY_SIZE(all_ports), t_apply, t_add, t_del);
	apply_ok(ARRAY_SIZE(base_ports));
}

static void
render_readable(void **state)
{
	struct strbuf sb = {0};
	struct err err = {0};
	static const char *const want[] = {
		"table inet sistemo",
		"map ports {",
		"tcp . 8080 : 10.200.0.2 . 80",
		"127.0.0.1 . tcp . 8443 : 10.200.0.2 . 443",
		"meta nfproto ipv4 fib daddr type local jump expose",
		"dnat ip to meta l4proto . th dport map @ports",
		"ip saddr @subnets oifname != @bridges masquerade",
		"iifname @bridges meta l4proto { tcp, udp } th dport @guarded drop",
		"tcp dport { 25, 465, 587 } drop",
		"meta nfproto ipv6 iifname @bridges oifname != @bridges drop",
		"jump SISTEMO-ISOLATION",
		"iifname \"br-prod\" oifname @bridges oifname != \"br-prod\" drop",
		"table bridge sistemo",
		"oifname \"vh-00000006\" jump allow-vh-00000006",
		"ip saddr 10.200.0.3 accept",
		"# at the head of chain ip filter FORWARD (policy drop)",
	};

	(void)state;
	if (nft_render(&sb, &err) < 0)
		fail_msg("nft_render: %s", err.msg);
	printf("%s", sb.data);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!strstr(sb.data, want[i]))
			fail_msg("render lacks '%s'", want[i]);
	strbuf_free(&sb);
}

static void
bad_model_refused(void **state)
{
	struct nft_machine bad = machines[0];
	struct nft_model m = model(ARRAY_SIZE(base_ports));
	struct err err = {0};

	(void)state;
	bad.bridge = "br-nowhere";
	m.machines = &bad;
	m.n_machines = 1;
	assert_int_equal(nft_apply(&m, &err), -EINVAL);
	assert_int_equal(err.code, ERR_INVALID);
	printf("  %s\n", err.msg);
}

static void
remove_everything(void **state)
{
	char tables[4096], after[4096];
	struct err err = {0};

	(void)state;
	assert_int_equal(nft_remove(&err), 0);
	assert_int_equal(it_cmd_out(tables, sizeof(tables), "nft list tables"), 0);
	assert_null(strstr(tables, "sistemo"));
	assert_int_equal(it_cmd_out(after, sizeof(after), "nft -a list table ip filter"), 0);
	assert_string_equal(foreign_before, after);
	assert_int_equal(nft_remove(&err), 0); /* nothing left: fine */
	assert_int_equal(nft_port_add(&the_10k_port, &err), -ENOENT);
	assert_int_equal(err.code, ERR_NOT_FOUND);
	printf("  after removal: %s\n", err.msg);
	err_clear(&err);
	assert_int_equal(nft_render(&(struct strbuf){0}, &err), -ENOENT);
	assert_int_equal(it_cmd("nft delete table ip filter"), 0);
}

#define TRAFFIC_TESTS                                                                              \
	cmocka_unit_test(expose_from_host_and_lan), cmocka_unit_test(expose_hairpin),              \
		cmocka_unit_test(expose_udp),                                                      \
		cmocka_unit_test(egress_not_hijacked_masqueraded_no_smtp),                         \
		cmocka_unit_test(isolation_between_bridges), cmocka_unit_test(guarded_ports),      \
		cmocka_unit_test(isolated_mode), cmocka_unit_test(egress_allow_list),              \
		cmocka_unit_test(allow_from), cmocka_unit_test(spoofed_source_dropped)

int
main(void)
{
	it_isolate();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(br_netfilter_on),
		TRAFFIC_TESTS,
		cmocka_unit_test(br_netfilter_off),
		TRAFFIC_TESTS,
		cmocka_unit_test(compat_foreign_drop_chain),
		cmocka_unit_test(apply_idempotent),
		cmocka_unit_test(port_10k),
		cmocka_unit_test(render_readable),
		cmocka_unit_test(bad_model_refused),
		cmocka_unit_test(remove_everything),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
