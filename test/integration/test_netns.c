/* netns against the real kernel, inside it_isolate()'s private network and mount namespaces:
 * the host bridge, machine namespaces read back with `ip -j`, traffic across them, rollback,
 * deletion, listing, orphaned host ends, and the create/delete times. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <fcntl.h>

#include "err.h"
#include "it.h"
#include "netns.h"

#define BRIDGE "sistemo0"
#define GATEWAY 0x0ac80001u /* 10.200.0.1 */
#define PREFIX 16
#define UDP_PORT 7777
#define TIMING_RUNS 20

static const char *const ids[] = {
	"1a2b3c4d-5e6f-4a8b-9c0d-000000000001",
	"5e6f7a8b-5e6f-4a8b-9c0d-000000000002",
};
static const char *const ips[] = {"10.200.0.2", "10.200.0.3"};

/* ---- helpers ------------------------------------------------------------------------------- */

/* Runs a shell command, keeps up to size-1 bytes of its stdout (the rest is read and dropped,
 * so the command never blocks on a full pipe); returns its exit status. */

/* `ip -j -d link show` output of one link: true when its "flags" array holds flag. */
static bool
has_flag(const char *json, const char *flag)
{
	const char *start = strstr(json, "\"flags\":[");
	char quoted[32];

	if (!start)
		return false;
	const char *end = strchr(start, ']');
	snprintf(quoted, sizeof(quoted), "\"%s\"", flag);
	const char *hit = strstr(start, quoted);
	return hit && end && hit < end;
}

static void
assert_has(const char *json, const char *what)
{
	if (!strstr(json, what))
		fail_msg("expected %s in %s", what, json);
}

/* One link of a namespace (ns NULL: ours) as `ip -j -d link show dev`. */
static void
link_json(const char *ns, const char *dev, char *buf, size_t size)
{
	int rc = ns ? it_cmd_out(buf, size, "ip -n %s -j -d link show dev %s 2>/dev/null", ns, dev)
		    : it_cmd_out(buf, size, "ip -j -d link show dev %s 2>/dev/null", dev);
	if (rc != 0)
		fail_msg("link '%s' in '%s' not found", dev, ns ? ns : "host");
}

static bool
link_exists(const char *ns, const char *dev)
{
	return ns ? it_cmd("ip -n %s link show dev %s", ns, dev) == 0
		  : it_cmd("ip link show dev %s", dev) == 0;
}

/* The names of a namespace's links (ns NULL: ours), sorted, each followed by a space. */
static void
link_names(const char *ns, char *buf, size_t size)
{
	it_cmd_out(buf, size,
		   "ip %s %s -j link | grep -o '\"ifname\":\"[^\"]*\"' | cut -d'\"' -f4 | sort | "
		   "tr '\\n' ' '",
		   ns ? "-n" : "", ns ? ns : "");
}

/* Every host link there now was there at `before`: a rollback made nothing that stayed. Links
 * may have gone since (the kernel removes an earlier test's host ends asynchronously). */
static void
assert_no_new_host_links(const char *before)
{
	char after[1024], padded[1100], word[32];

	link_names(NULL, after, sizeof(after));
	snprintf(padded, sizeof(padded), " %s", before);
	for (char *name = strtok(after, " "); name; name = strtok(NULL, " ")) {
		snprintf(word, sizeof(word), " %s ", name);
		if (!strstr(padded, word))
			fail_msg("'%s' was left (before: %s)", name, before);
	}
}

/* The number after "key": in `ip -j` output (its first occurrence). */
static int
json_int(const char *json, const char *key)
{
	char quoted[64];

	snprintf(quoted, sizeof(quoted), "\"%s\":", key);
	const char *p = strstr(json, quoted);
	if (!p)
		fail_msg("no %s in %s", key, json);
	return atoi(p + strlen(quoted));
}

/* Waits until a host link is gone, at most timeout_ms: the kernel deletes a machine's host veth
 * end when the namespace dies, shortly after netns_machine_delete returns. Woken by the
 * kernel's link notifications, subscribed to before looking. */
static bool
link_gone_within(const char *dev, int timeout_ms)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	double deadline = it_now_ms() + timeout_ms;
	char buf[8192];
	bool gone;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	while (!(gone = if_nametoindex(dev) == 0)) {
		int left = (int)(deadline - it_now_ms());
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0)
			break;
		if (poll(&p, 1, left) > 0)
			while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
				;
	}
	close(fd);
	return gone;
}

static bool
netns_listed(const char *ns)
{
	char out[4096];

	it_cmd_out(out, sizeof(out), "ip netns list");
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
		if (strncmp(line, ns, strlen(ns)) == 0 &&
		    (line[strlen(ns)] == '\0' || line[strlen(ns)] == ' '))
			return true;
	return false;
}

static void
names(unsigned i, struct netns_names *n)
{
	assert_int_equal(netns_names_for(ids[i], n), 0);
}

static void
machine_create_ok(const struct netns_names *n)
{
	struct err err = {0};

	if (netns_machine_create(n, BRIDGE, &err) < 0)
		fail_msg("create '%s': %s", n->ns, err.msg);
}

static void
machine_delete_ok(const struct netns_names *n)
{
	struct err err = {0};

	if (netns_machine_delete(n, &err) < 0)
		fail_msg("delete '%s': %s", n->ns, err.msg);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static int
group_setup(void **state)
{
	struct err err = {0};

	(void)state;
	if (netns_bridge_ensure(BRIDGE, GATEWAY, PREFIX, &err) < 0) {
		fprintf(stderr, "bridge: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	struct err err = {0};

	(void)state;
	return netns_bridge_delete(BRIDGE, &err) < 0 ? -1 : 0;
}

static int
machines_up(void **state)
{
	struct netns_names n;

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		names(i, &n);
		machine_create_ok(&n);
	}
	return 0;
}

static int
machines_down(void **state)
{
	struct netns_names n;
	struct err err = {0};
	int r = 0;

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		names(i, &n);
		r |= netns_machine_delete(&n, &err);
	}
	/* whatever a failed test left behind */
	it_cmd("ip link del notabridge");
	it_cmd("ip link del vh-cafe0001");
	it_cmd("ip link del vh-cafe0009");
	it_cmd("ip link del vh-cafe000a");
	it_cmd("ip link del vh-cafe");
	it_cmd("umount /dev/net/tun");
	it_cmd("ip netns del other");
	it_cmd("ip netns del sistemo");
	return r < 0 ? -1 : 0;
}

/* ---- the host bridge ----------------------------------------------------------------------- */

static void
bridge_read_back(void)
{
	char out[8192];

	assert_int_equal(it_cmd_out(out, sizeof(out), "ip -j -d addr show dev " BRIDGE), 0);
	assert_has(out, "\"local\":\"10.200.0.1\",\"prefixlen\":16");
	assert_has(out, "\"info_kind\":\"bridge\"");
	assert_has(out, "\"address\":\"02:73:0a:c8:00:01\"");
	assert_true(has_flag(out, "UP"));
}

static void
bridge_ensure_idempotent(void **state)
{
	char before[8192], after[8192];
	struct err err = {0};

	(void)state;
	bridge_read_back();
	it_cmd_out(before, sizeof(before), "ip -j addr show dev " BRIDGE);
	assert_int_equal(netns_bridge_ensure(BRIDGE, GATEWAY, PREFIX, &err), 0);
	it_cmd_out(after, sizeof(after), "ip -j addr show dev " BRIDGE);
	assert_string_equal(before, after);

	/* repairs: a missing address comes back, a downed bridge goes up */
	assert_int_equal(it_cmd("ip addr flush dev " BRIDGE), 0);
	assert_int_equal(it_cmd("ip link set " BRIDGE " down"), 0);
	assert_int_equal(netns_bridge_ensure(BRIDGE, GATEWAY, PREFIX, &err), 0);
	bridge_read_back();
}

static void
bridge_refuses_other_link(void **state)
{
	struct err err = {0};

	(void)state;
	assert_int_equal(it_cmd("ip link add notabridge type veth peer name notabridge-p"), 0);
	assert_int_equal(netns_bridge_ensure("notabridge", GATEWAY, PREFIX, &err), -EEXIST);
	assert_int_equal(err.code, ERR_EXISTS);
	assert_string_equal(err.msg,
			    "bridge 'notabridge': a link of type 'veth' already has this name");
	err_clear(&err);
	assert_int_equal(netns_bridge_delete("notabridge", &err), -EINVAL);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_true(link_exists(NULL, "notabridge"));
	assert_int_equal(it_cmd("ip link del notabridge"), 0);
	assert_int_equal(netns_bridge_delete("notabridge", &err), 0); /* missing: success */
}

/* ---- machines ------------------------------------------------------------------------------ */

static void
machine_links_read_back(void **state)
{
	struct netns_names n;
	char out[8192];

	(void)state;
	for (unsigned i = 0; i < 2; i++) {
		names(i, &n);
		assert_true(netns_machine_exists(&n));
		link_json(n.ns, "eth0", out, sizeof(out));
		assert_has(out, "\"info_kind\":\"veth\"");
		assert_has(out, "\"master\":\"br0\"");
		assert_true(has_flag(out, "UP"));
		link_json(n.ns, "br0", out, sizeof(out));
		assert_has(out, "\"info_kind\":\"bridge\"");
		assert_true(has_flag(out, "UP"));
		link_json(n.ns, "tap0", out, sizeof(out));
		assert_has(out, "\"info_kind\":\"tun\"");
		assert_has(out, "\"type\":\"tap\"");
		assert_has(out, "\"master\":\"br0\"");
		assert_true(has_flag(out, "UP"));
		link_json(n.ns, "lo", out, sizeof(out));
		assert_true(has_flag(out, "UP"));
		link_json(NULL, n.veth_host, out, sizeof(out));
		assert_has(out, "\"master\":\"" BRIDGE "\"");
		assert_has(out, "\"info_kind\":\"veth\"");
		assert_true(has_flag(out, "UP"));
		/* nothing of the machine's leaked into the host namespace */
		assert_false(link_exists(NULL, "tap0"));
		assert_false(link_exists(NULL, "br0"));
	}
}

/* Exactly what the header promises and nothing more: the namespace holds lo, br0, eth0 and
 * tap0; the host, besides its bridge, one end per machine; eth0 and the host end are the two
 * ends of one pair, one queue each way; the namespace's links have no IPv6 address. */
static void
machine_topology_exact(void **state)
{
	struct netns_names n;
	char out[8192], got[512];

	(void)state;
	link_names(NULL, got, sizeof(got));
	assert_string_equal(got, "lo sistemo0 vh-1a2b3c4d vh-5e6f7a8b ");
	names(0, &n);
	link_names(n.ns, got, sizeof(got));
	assert_string_equal(got, "br0 eth0 lo tap0 ");
	link_json(NULL, n.veth_host, out, sizeof(out));
	int host_index = json_int(out, "ifindex"), host_peer = json_int(out, "link_index");
	assert_has(out, "\"num_tx_queues\":1,\"num_rx_queues\":1");
	link_json(n.ns, "eth0", out, sizeof(out));
	assert_int_equal(json_int(out, "ifindex"), host_peer);
	assert_int_equal(json_int(out, "link_index"), host_index);
	assert_has(out, "\"num_tx_queues\":1,\"num_rx_queues\":1");
	/* br0 is the namespace's only master; lo is up with its ::1 */
	link_json(n.ns, "br0", out, sizeof(out));
	assert_null(strstr(out, "\"master\""));
	for (unsigned i = 0; i < 3; i++) {
		static const char *const l2[] = {"br0", "eth0", "tap0"};
		it_cmd_out(out, sizeof(out), "ip -n %s -j -6 addr show dev %s", n.ns, l2[i]);
		assert_string_equal(out, "[]\n");
	}
	it_cmd_out(out, sizeof(out), "ip -n %s -j addr show dev lo", n.ns);
	assert_has(out, "\"local\":\"::1\"");
	assert_true(has_flag(out, "UP"));
}

static void
machine_exists_refused(void **state)
{
	struct netns_names n;
	struct err err = {0};

	(void)state;
	names(0, &n);
	assert_int_equal(netns_machine_create(&n, BRIDGE, &err), -EEXIST);
	assert_int_equal(err.code, ERR_EXISTS);
	assert_string_equal(err.msg,
			    "machine netns 'sistemo-1a2b3c4d': create namespace: File exists");
	/* the existing machine was not rolled back */
	assert_true(netns_machine_exists(&n));
	assert_true(link_exists(n.ns, "tap0"));
	assert_true(link_exists(NULL, n.veth_host));
}

/* QEMU opens the persistent TAP by name from inside the namespace (it adds IFF_VNET_HDR). */
static void
qemu_opens_tap(void **state)
{
	struct netns_names n;
	char out[4096];

	(void)state;
	if (it_cmd("command -v qemu-system-x86_64") != 0) {
		print_message("qemu-system-x86_64 not installed: TAP open by QEMU not checked\n");
		return;
	}
	names(0, &n);
	int rc = it_cmd_out(out, sizeof(out),
			    "echo quit | timeout 30 ip netns exec %s qemu-system-x86_64 -M none "
			    "-nodefaults -display none -monitor stdio -netdev "
			    "tap,id=n0,ifname=%s,script=no,downscript=no 2>&1",
			    n.ns, n.tap);
	if (rc != 0)
		fail_msg("qemu could not open '%s': %s", n.tap, out);
	/* it attached to ours (a missing name it would have created and removed) */
	link_json(n.ns, n.tap, out, sizeof(out));
	assert_has(out, "\"master\":\"br0\"");
}

struct udp_send {
	const char *to;
	const char *payload;
	dev_t ns_dev;
	ino_t ns_ino; /* the namespace the thread ran in */
	bool tap_seen;
};

static int
udp_send_in_ns(void *ud)
{
	struct udp_send *u = ud;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
	struct stat st;

	if (stat("/proc/thread-self/ns/net", &st) == 0) {
		u->ns_dev = st.st_dev;
		u->ns_ino = st.st_ino;
	}
	u->tap_seen = if_nametoindex("tap0") != 0;
	inet_pton(AF_INET, u->to, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ssize_t n =
		sendto(fd, u->payload, strlen(u->payload), 0, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	return n < 0 ? -errno : 42;
}

/* A datagram sent from inside machine B's namespace by netns_run_in reaches the host. */
static void
udp_from_machine(const struct netns_names *n)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(UDP_PORT)};
	struct udp_send u = {.to = "10.200.0.1", .payload = "hello from the machine"};
	struct stat self_before, self_after, ns_file;
	struct err err = {0};
	char buf[64] = "";

	sin.sin_addr.s_addr = htonl(GATEWAY);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(stat("/proc/thread-self/ns/net", &self_before), 0);
	assert_int_equal(netns_run_in(n->ns_path, udp_send_in_ns, &u, &err), 42);
	assert_int_equal(stat("/proc/thread-self/ns/net", &self_after), 0);
	assert_int_equal(stat(n->ns_path, &ns_file), 0);
	/* fn ran in the machine's namespace; the caller stayed where it was */
	assert_true(u.ns_ino == ns_file.st_ino && u.ns_dev == ns_file.st_dev);
	assert_true(u.tap_seen);
	assert_true(self_before.st_ino == self_after.st_ino);
	assert_int_equal(if_nametoindex("tap0"), 0);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_true(recv(fd, buf, sizeof(buf) - 1, 0) > 0);
	assert_string_equal(buf, "hello from the machine");
	close(fd);
}

static void
traffic_flows(void **state)
{
	struct netns_names a, b;

	(void)state;
	names(0, &a);
	names(1, &b);
	/* stand-ins for the guests behind tap0: an address on each namespace bridge */
	assert_int_equal(it_cmd("ip -n %s addr add %s/16 dev br0", a.ns, ips[0]), 0);
	assert_int_equal(it_cmd("ip -n %s addr add %s/16 dev br0", b.ns, ips[1]), 0);
	udp_from_machine(&b);
	if (it_cmd("command -v ping") != 0) {
		print_message(
			"ping (iputils-ping) not installed: ICMP checks skipped, UDP passed\n");
		return;
	}
	assert_int_equal(it_cmd("ip netns exec %s ping -c 1 -W 2 %s", a.ns, ips[1]), 0);
	assert_int_equal(it_cmd("ip netns exec %s ping -c 1 -W 2 10.200.0.1", a.ns), 0);
	assert_int_equal(it_cmd("ping -c 1 -W 2 %s", ips[0]), 0);
	assert_int_equal(it_cmd("ping -c 1 -W 2 %s", ips[1]), 0);
}

static int
collect(void *ud, const char *ns)
{
	char *out = ud;

	if (strlen(out) + strlen(ns) + 2 > 256)
		return -ENOSPC;
	strcat(out, ns);
	strcat(out, " ");
	return 0;
}

static void
list_only_ours(void **state)
{
	char got[256] = "";
	struct err err = {0};

	(void)state;
	assert_int_equal(it_cmd("ip netns add other"), 0);
	assert_int_equal(it_cmd("ip netns add sistemo"), 0);
	assert_int_equal(netns_list(collect, got, &err), 0);
	it_cmd("ip netns del other");
	it_cmd("ip netns del sistemo");
	bool ab = strcmp(got, "sistemo-1a2b3c4d sistemo-5e6f7a8b ") == 0;
	bool ba = strcmp(got, "sistemo-5e6f7a8b sistemo-1a2b3c4d ") == 0;
	if (!ab && !ba)
		fail_msg("listed '%s'", got);
}

/* ---- spare namespaces ------------------------------------------------------------------------ */

/* The names of our spare namespaces and of the host ends starting with prefix, sorted. */
static void
spare_names_now(char *ns_buf, size_t ns_size, char *links_buf, size_t links_size)
{
	it_cmd_out(ns_buf, ns_size,
		   "ip netns list | grep -o '^sistemo-spare[0-9]*' | sort | tr '\\n' ' '");
	it_cmd_out(links_buf, links_size,
		   "ip -j link | grep -o '\"ifname\":\"vs-[^\"]*\"' | cut -d'\"' -f4 | sort | "
		   "tr '\\n' ' '");
}

/* A create takes a spare: the machine's namespace holds the spare's links, its host end is
 * renamed, attached and up; the spare's names are gone, the next spare is built, and netns_list
 * never shows a spare. Stopping deletes the spares and, with them, their host ends. */
static void
spares_taken_and_rebuilt(void **state)
{
	struct netns_names n;
	struct err err = {0};
	char ns_before[256], links_before[256], ns_after[256], links_after[256], got[256] = "";
	char out[8192];

	(void)state;
	assert_int_equal(netns_spares_start(1, BRIDGE, &err), 0);
	assert_true(netns_spares_wait(1, 10000));
	spare_names_now(ns_before, sizeof(ns_before), links_before, sizeof(links_before));
	assert_int_equal(strlen(ns_before) > 0, 1);
	assert_int_equal(strncmp(links_before, "vs-", 3), 0);
	/* the spare's host end waits as a down port of the bridge, IPv6 off */
	char vs[32];
	snprintf(vs, sizeof(vs), "%.*s", (int)strcspn(links_before, " "), links_before);
	link_json(NULL, vs, out, sizeof(out));
	assert_has(out, "\"master\":\"" BRIDGE "\"");
	assert_false(has_flag(out, "UP"));
	assert_int_equal(
		it_cmd_out(got, sizeof(got), "cat /proc/sys/net/ipv6/conf/%s/disable_ipv6", vs), 0);
	assert_string_equal(got, "1\n");
	got[0] = '\0';
	assert_int_equal(netns_list(collect, got, &err), 0);
	assert_string_equal(got, "");

	names(0, &n);
	machine_create_ok(&n);
	assert_true(netns_machine_exists(&n));
	link_names(n.ns, got, sizeof(got));
	assert_string_equal(got, "br0 eth0 lo tap0 ");
	link_json(NULL, n.veth_host, out, sizeof(out));
	assert_has(out, "\"master\":\"" BRIDGE "\"");
	assert_true(has_flag(out, "UP"));
	assert_false(link_exists(NULL, vs));
	/* the next spare, under new names */
	assert_true(netns_spares_wait(1, 10000));
	spare_names_now(ns_after, sizeof(ns_after), links_after, sizeof(links_after));
	assert_int_equal(strlen(ns_after) > 0, 1);
	assert_string_not_equal(ns_after, ns_before);
	assert_string_not_equal(links_after, links_before);
	got[0] = '\0';
	assert_int_equal(netns_list(collect, got, &err), 0);
	assert_string_equal(got, "sistemo-1a2b3c4d ");

	/* stopped: no spare namespace; the host end goes with it */
	netns_spares_stop();
	snprintf(vs, sizeof(vs), "%.*s", (int)strcspn(links_after, " "), links_after);
	assert_true(link_gone_within(vs, 2000));
	spare_names_now(ns_after, sizeof(ns_after), links_after, sizeof(links_after));
	assert_string_equal(ns_after, "");
	assert_string_equal(links_after, "");
	/* without spares, a create builds the whole again */
	names(1, &n);
	machine_create_ok(&n);
	link_json(NULL, n.veth_host, out, sizeof(out));
	assert_true(has_flag(out, "UP"));
}

/* A daemon killed with spares ready: the next start deletes them before building its own. */
static void
stale_spares_cleared(void **state)
{
	struct err err = {0};
	char ns[256], links[256];

	(void)state;
	assert_int_equal(it_cmd("ip netns add sistemo-spare999"), 0);
	assert_int_equal(netns_spares_start(1, BRIDGE, &err), 0);
	assert_true(netns_spares_wait(1, 10000));
	spare_names_now(ns, sizeof(ns), links, sizeof(links));
	assert_null(strstr(ns, "sistemo-spare999 "));
	netns_spares_stop();
}

/* ---- failures roll back -------------------------------------------------------------------- */

static void
assert_nothing_left(const struct netns_names *n)
{
	char out[16384];

	assert_false(netns_machine_exists(n));
	assert_false(netns_listed(n->ns));
	assert_int_equal(access(n->ns_path, F_OK), -1);
	it_cmd_out(out, sizeof(out), "cat /proc/self/mountinfo");
	assert_null(strstr(out, n->ns_path));
	it_cmd_out(out, sizeof(out), "ip -j link");
	assert_null(strstr(out, "\"ifname\":\"eth0\""));
	assert_null(strstr(out, "\"ifname\":\"br0\""));
	assert_null(strstr(out, "\"ifname\":\"tap0\""));
}

static void
rollback_when_veth_name_taken(void **state)
{
	struct netns_names n;
	struct err err = {0};
	char before[1024];

	(void)state;
	assert_int_equal(netns_names_for("cafe0001-0000-4000-8000-000000000000", &n), 0);
	/* a link that is not a veth: not a leftover of ours */
	assert_int_equal(it_cmd("ip link add %s type bridge", n.veth_host), 0);
	link_names(NULL, before, sizeof(before));
	assert_int_equal(netns_machine_create(&n, BRIDGE, &err), -EEXIST);
	assert_int_equal(err.code, ERR_EXISTS);
	assert_string_equal(
		err.msg,
		"machine netns 'sistemo-cafe0001': create veth 'vh-cafe0001': File exists");
	assert_nothing_left(&n);
	assert_no_new_host_links(before);
	/* the link that was in the way is not ours to delete */
	assert_true(link_exists(NULL, n.veth_host));
	assert_int_equal(it_cmd("ip link del %s", n.veth_host), 0);
}

/* A veth holding the host end's name is a leftover of this machine: replaced. */
static void
leftover_host_end_reclaimed(void **state)
{
	struct netns_names n;
	char out[8192];

	(void)state;
	assert_int_equal(netns_names_for("cafe0005-0000-4000-8000-000000000000", &n), 0);
	assert_int_equal(it_cmd("ip link add %s type veth peer name vp-cafe0005", n.veth_host), 0);
	machine_create_ok(&n);
	assert_false(link_exists(NULL, "vp-cafe0005"));
	link_json(NULL, n.veth_host, out, sizeof(out));
	assert_has(out, "\"master\":\"" BRIDGE "\"");
	link_json(n.ns, "eth0", out, sizeof(out));
	assert_has(out, "\"master\":\"br0\"");
	machine_delete_ok(&n);
	assert_true(link_gone_within(n.veth_host, 2000));
}

/* The last step fails, in the host: the veth made before it goes (both ends), then the
 * namespace. */
static void
rollback_when_attach_fails(void **state)
{
	struct netns_names n;
	struct err err = {0};
	char before[1024];

	(void)state;
	assert_int_equal(netns_names_for("cafe0002-0000-4000-8000-000000000000", &n), 0);
	assert_int_equal(it_cmd("ip link add notabridge type veth peer name notabridge-p"), 0);
	link_names(NULL, before, sizeof(before));
	assert_int_equal(netns_machine_create(&n, "notabridge", &err), -EOPNOTSUPP);
	assert_string_equal(err.msg, "machine netns 'sistemo-cafe0002': attach 'vh-cafe0002' to "
				     "'notabridge': Operation not supported");
	assert_nothing_left(&n);
	assert_false(link_exists(NULL, n.veth_host));
	assert_no_new_host_links(before);
	assert_int_equal(it_cmd("ip link del notabridge"), 0);
}

/* A step inside the new namespace fails (the TAP: /dev/net/tun is /dev/null in this mount
 * namespace for the test): the namespace goes, the host's links are as they were. */
static void
rollback_when_tap_fails(void **state)
{
	struct netns_names n;
	struct err err = {0};
	char before[1024];

	(void)state;
	assert_int_equal(netns_names_for("cafe000b-0000-4000-8000-000000000000", &n), 0);
	link_names(NULL, before, sizeof(before));
	assert_int_equal(it_cmd("mount --bind /dev/null /dev/net/tun"), 0);
	int r = netns_machine_create(&n, BRIDGE, &err);
	assert_int_equal(it_cmd("umount /dev/net/tun"), 0);
	assert_int_equal(r, -ENOTTY);
	assert_string_equal(err.msg, "machine netns 'sistemo-cafe000b': create tap 'tap0': "
				     "Inappropriate ioctl for device");
	assert_nothing_left(&n);
	assert_no_new_host_links(before);
}

static void
missing_host_bridge(void **state)
{
	struct netns_names n;
	struct err err = {0};

	(void)state;
	assert_int_equal(netns_names_for("cafe0003-0000-4000-8000-000000000000", &n), 0);
	assert_int_equal(netns_machine_create(&n, "nosuchbridge", &err), -ENODEV);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_string_equal(err.msg, "machine netns 'sistemo-cafe0003': host bridge "
				     "'nosuchbridge' does not exist");
	assert_nothing_left(&n);
}

/* ---- deletion ------------------------------------------------------------------------------ */

static void
delete_removes_everything(void **state)
{
	struct netns_names n;

	(void)state;
	assert_int_equal(netns_names_for("cafe0004-0000-4000-8000-000000000000", &n), 0);
	machine_create_ok(&n);
	assert_true(netns_listed(n.ns));
	machine_delete_ok(&n);
	assert_false(netns_machine_exists(&n));
	assert_false(netns_listed(n.ns));
	assert_int_equal(access(n.ns_path, F_OK), -1);
	/* the kernel takes the host end with the dying namespace */
	assert_true(link_gone_within(n.veth_host, 2000));
	machine_delete_ok(&n); /* again: missing is success */

	/* a host end whose namespace is already gone (a crash between the two) goes at once */
	assert_int_equal(it_cmd("ip link add %s type veth peer name vp-cafe0004", n.veth_host), 0);
	machine_delete_ok(&n);
	assert_false(link_exists(NULL, n.veth_host));
	assert_false(link_exists(NULL, "vp-cafe0004"));
}

/* Deleted and created again before the kernel has finished with the old namespace. */
static void
recreate_at_once(void **state)
{
	struct netns_names n;
	char out[8192];

	(void)state;
	assert_int_equal(netns_names_for("cafe0006-0000-4000-8000-000000000000", &n), 0);
	machine_create_ok(&n);
	machine_delete_ok(&n);
	machine_create_ok(&n);
	link_json(NULL, n.veth_host, out, sizeof(out));
	assert_has(out, "\"master\":\"" BRIDGE "\"");
	assert_true(has_flag(out, "UP"));
	link_json(n.ns, "eth0", out, sizeof(out));
	assert_has(out, "\"master\":\"br0\"");
	machine_delete_ok(&n);
	assert_true(link_gone_within(n.veth_host, 2000));
}

/* Someone still holds the namespace (here an open fd; in life a VMM not stopped): its links and
 * the host end live until it lets go, then the kernel removes them. */
static void
delete_while_held(void **state)
{
	struct netns_names n;

	(void)state;
	assert_int_equal(netns_names_for("cafe0007-0000-4000-8000-000000000000", &n), 0);
	machine_create_ok(&n);
	int held = open(n.ns_path, O_RDONLY | O_CLOEXEC);
	assert_true(held >= 0);
	machine_delete_ok(&n);
	assert_false(netns_machine_exists(&n));
	assert_false(link_gone_within(n.veth_host, 200));
	close(held);
	assert_true(link_gone_within(n.veth_host, 2000));
}

/* ---- orphaned host ends ------------------------------------------------------------------ */

/* keep() for netns_orphan_links: claims sistemo-cafe0009 (a machine in the middle of an
 * operation) and notes every namespace it is asked about. */
static int
keep_cafe0009(void *ud, const char *ns)
{
	char *asked = ud;

	if (strlen(asked) + strlen(ns) + 2 <= 256) {
		strcat(asked, ns);
		strcat(asked, " ");
	}
	return strcmp(ns, "sistemo-cafe0009") == 0;
}

/* Host ends with no namespace mounted go, unless claimed; links that are not a machine's host
 * end and the ends of machines whose namespaces are mounted stay. */
static void
orphan_links_removed(void **state)
{
	struct netns_names held;
	struct err err = {0};
	char asked[256] = "";

	(void)state;
	assert_int_equal(it_cmd("ip link add vh-cafe0008 type veth peer name vp-cafe0008"), 0);
	assert_int_equal(it_cmd("ip link add vh-cafe0009 type veth peer name vp-cafe0009"), 0);
	assert_int_equal(it_cmd("ip link add vh-cafe000a type bridge"), 0);
	assert_int_equal(it_cmd("ip link add vh-cafe type veth peer name vp-cafe"), 0);
	/* a namespace unmounted while something still holds it (a VMM not stopped): its host
	 * end lives on */
	assert_int_equal(netns_names_for("cafe000c-0000-4000-8000-000000000000", &held), 0);
	machine_create_ok(&held);
	int fd = open(held.ns_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	machine_delete_ok(&held);

	assert_int_equal(netns_orphan_links(keep_cafe0009, asked, &err), 2);
	assert_false(link_exists(NULL, "vh-cafe0008"));
	assert_false(link_exists(NULL, "vp-cafe0008"));
	assert_false(link_exists(NULL, held.veth_host));
	assert_true(link_exists(NULL, "vh-cafe0009"));
	assert_true(link_exists(NULL, "vh-cafe000a"));
	assert_true(link_exists(NULL, "vh-cafe"));
	assert_true(link_exists(NULL, "vh-1a2b3c4d"));
	assert_true(link_exists(NULL, "vh-5e6f7a8b"));
	/* asked only about the ones without a namespace, in the kernel's order */
	assert_non_null(strstr(asked, "sistemo-cafe0008 "));
	assert_non_null(strstr(asked, "sistemo-cafe0009 "));
	assert_non_null(strstr(asked, "sistemo-cafe000c "));
	assert_int_equal(strlen(asked), 3 * strlen("sistemo-cafe0008 "));
	/* a second pass has nothing to do */
	asked[0] = '\0';
	assert_int_equal(netns_orphan_links(keep_cafe0009, asked, &err), 0);
	assert_string_equal(asked, "sistemo-cafe0009 ");
	close(fd);
}

static void
print_times(const char *what, double *ms)
{
	qsort(ms, TIMING_RUNS, sizeof(double), it_cmp_double);
	printf("netns timing: %-40s median %6.2f ms  min %6.2f  max %6.2f  (n=%d)\n", what,
	       ms[TIMING_RUNS / 2], ms[0], ms[TIMING_RUNS - 1], TIMING_RUNS);
}

static void
timing_names(unsigned i, struct netns_names *n)
{
	char id[40];

	snprintf(id, sizeof(id), "beef%04x-0000-4000-8000-000000000000", i);
	assert_int_equal(netns_names_for(id, n), 0);
}

/* Caller-side times: TIMING_RUNS machines created side by side then deleted, then the same
 * number created and deleted back to back (the kernel still cleaning up the previous one). */
static void
create_delete_times(void **state)
{
	double create_ms[TIMING_RUNS], delete_ms[TIMING_RUNS], churn_ms[TIMING_RUNS];
	struct netns_names n;

	(void)state;
	for (unsigned i = 0; i < TIMING_RUNS; i++) {
		timing_names(i, &n);
		double t0 = it_now_ms();
		machine_create_ok(&n);
		create_ms[i] = it_now_ms() - t0;
	}
	for (unsigned i = 0; i < TIMING_RUNS; i++) {
		timing_names(i, &n);
		double t0 = it_now_ms();
		machine_delete_ok(&n);
		delete_ms[i] = it_now_ms() - t0;
	}
	for (unsigned i = 0; i < TIMING_RUNS; i++) {
		timing_names(i, &n);
		assert_true(link_gone_within(n.veth_host, 2000));
	}
	for (unsigned i = 0; i < TIMING_RUNS; i++) {
		timing_names(TIMING_RUNS + i, &n);
		double t0 = it_now_ms();
		machine_create_ok(&n);
		machine_delete_ok(&n);
		churn_ms[i] = it_now_ms() - t0;
	}
	assert_true(link_gone_within(n.veth_host, 2000));
	print_times("create (side by side)", create_ms);
	print_times("delete", delete_ms);
	print_times("create + delete back to back", churn_ms);
}

int
main(void)
{
	it_isolate();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bridge_ensure_idempotent),
		cmocka_unit_test(bridge_refuses_other_link),
		cmocka_unit_test_setup_teardown(machine_links_read_back, machines_up,
						machines_down),
		cmocka_unit_test_setup_teardown(machine_topology_exact, machines_up, machines_down),
		cmocka_unit_test_setup_teardown(machine_exists_refused, machines_up, machines_down),
		cmocka_unit_test_setup_teardown(qemu_opens_tap, machines_up, machines_down),
		cmocka_unit_test_setup_teardown(traffic_flows, machines_up, machines_down),
		cmocka_unit_test_setup_teardown(list_only_ours, machines_up, machines_down),
		cmocka_unit_test_setup_teardown(spares_taken_and_rebuilt, NULL, machines_down),
		cmocka_unit_test_setup_teardown(stale_spares_cleared, NULL, machines_down),
		cmocka_unit_test_setup_teardown(rollback_when_veth_name_taken, NULL, machines_down),
		cmocka_unit_test_setup_teardown(rollback_when_attach_fails, NULL, machines_down),
		cmocka_unit_test_setup_teardown(rollback_when_tap_fails, NULL, machines_down),
		cmocka_unit_test(missing_host_bridge),
		cmocka_unit_test(leftover_host_end_reclaimed),
		cmocka_unit_test(delete_removes_everything),
		cmocka_unit_test(recreate_at_once),
		cmocka_unit_test(delete_while_held),
		cmocka_unit_test_setup_teardown(orphan_links_removed, machines_up, machines_down),
		cmocka_unit_test(create_delete_times),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
