/* The data path through the DNAT of exposed ports (server/nft.h), network namespaces standing
 * in for guests: a "guest" namespace on the bridge sistemo0 (10.200.0.2) runs an echo server and
 * a sink, a "lan" namespace (192.0.2.2) is a client beyond the host's veth (192.0.2.1). It times
 *  - nft_port_add and nft_port_del of one port with 1 and with 10 000 ports exposed;
 *  - a new TCP connection from the LAN, one byte echoed, close: through DNAT (192.0.2.1:PORT)
 *    with 1 and with 10 000 ports exposed, and routed straight to the guest (no DNAT);
 *  - bulk TCP throughput from the LAN with 10 000 ports exposed: routed straight to the guest,
 *    through DNAT, and through socat (TCP-LISTEN,fork → TCP:guest) on the host.
 * The two port counts alternate in blocks (the side that goes first rotates), the throughput
 * sides rotate per run. Prints medians, ratios and PASS/MISS per target; asserts nothing.
 *
 * Usage: bench_dnat [CONNECTIONS [RUNS [MIB]]]   (defaults 200 per port count, 9 runs of
 * 1024 MiB per path; as root; it moves itself into fresh network and mount namespaces first:
 * every link, namespace, rule and process it makes lives there) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../integration/it.h"
#include "err.h"
#include "nft.h"

#define PORTS 10000
#define BLOCKS 40
#define OPS_PER_BLOCK 4 /* nft_port_add + nft_port_del pairs per port count and block */
#define SETTLE_US 50000 /* after a whole ruleset load: the old one is freed asynchronously */
#define MAX_CONNECTIONS 2000
#define MAX_RUNS 20
#define MAX_MIB 4096
#define DEADLINE_SEC 300    /* the whole run: SIGALRM ends it, socat and the namespaces too */
#define IO_TIMEOUT_SEC 20   /* any one connect, send or receive */
#define MAX_ACCEPTS 1000000 /* per server thread */
#define BUF_SIZE (256 * 1024)
#define WARMUP_MIB 64

#define SUBNET 0x0ac80000u   /* 10.200.0.0/16 */
#define GW_IP 0x0ac80001u    /* 10.200.0.1, sistemo0 */
#define GUEST_IP 0x0ac80002u /* 10.200.0.2 */
#define HOST_IP 0xc0000201u  /* 192.0.2.1, the host's address on the LAN */
#define ECHO_PORT 7000       /* the guest's */
#define SINK_PORT 5001
#define HOST_ECHO 8000 /* exposed: -> ECHO_PORT */
#define HOST_SINK 8001 /* exposed: -> SINK_PORT */
#define HOST_SOCAT 8002
#define HOST_PROBE 40000 /* added and removed */
#define FILLER_PORT 20000

extern char **environ;

/* One port count: its model's ports and what was measured with it loaded. */
struct side {
	const char *name;
	size_t n_ports;
	double add_ms[BLOCKS * OPS_PER_BLOCK], del_ms[BLOCKS * OPS_PER_BLOCK];
	double conn_ms[MAX_CONNECTIONS];
	int n_ops, n_conns;
};

struct bench {
	int guest_ns, lan_ns;
	int connections, runs, mib;
	struct nft_port ports[PORTS];
	struct side sides[2];
	double direct_ms[2 * MAX_CONNECTIONS];
	int n_direct;
	char *buf;
};

static const char *const SETUP[] = {
	"ip link add sistemo0 type bridge",
	"ip addr add 10.200.0.1/16 dev sistemo0",
	"ip link set sistemo0 up",
	"ip netns add guest",
	"ip link add vh-00000002 type veth peer name eth0 netns guest",
	"ip link set vh-00000002 master sistemo0 up",
	"ip -n guest link set lo up",
	"ip -n guest addr add 10.200.0.2/16 dev eth0",
	"ip -n guest link set eth0 up",
	"ip -n guest route add default via 10.200.0.1",
	"ip netns add lan",
	"ip link add vl-lan type veth peer name eth0 netns lan",
	"ip addr add 192.0.2.1/24 dev vl-lan",
	"ip link set vl-lan up",
	"ip -n lan link set lo up",
	"ip -n lan addr add 192.0.2.2/24 dev eth0",
	"ip -n lan link set eth0 up",
	"ip -n lan route add default via 192.0.2.1",
};

/* Sorts v in place. */
static double
percentile(double *v, int n, int pct)
{
	qsort(v, (size_t)n, sizeof(*v), it_cmp_double);
	if (pct == 50)
		return (v[(n - 1) / 2] + v[n / 2]) / 2;
	return v[(n * pct) / 100 < n ? (n * pct) / 100 : n - 1];
}

static double
median(double *v, int n)
{
	return percentile(v, n, 50);
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "bench_dnat: %s: %s\n", what, why);
	exit(1);
}

static struct sockaddr_in
sin_of(uint32_t ip, uint16_t port)
{
	return (struct sockaddr_in){
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip)};
}

/* ---- the topology: links by `ip`, sockets made inside the namespaces ------------------------ */

static void
topology_create(struct bench *b)
{
	for (size_t i = 0; i < sizeof(SETUP) / sizeof(SETUP[0]); i++)
		if (it_cmd("%s", SETUP[i]) != 0)
			die(SETUP[i], "failed");
	int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1\n", 2) != 2)
		die("ip_forward", strerror(errno));
	close(fd);
	b->guest_ns = open("/run/netns/guest", O_RDONLY | O_CLOEXEC);
	b->lan_ns = open("/run/netns/lan", O_RDONLY | O_CLOEXEC);
	if (b->guest_ns < 0 || b->lan_ns < 0)
		die("/run/netns", strerror(errno));
}

struct ns_job {
	int nsfd, fd, error;
};

static void *
ns_socket_thread(void *arg)
{
	struct ns_job *j = arg;

	if (setns(j->nsfd, CLONE_NEWNET) == 0)
		j->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (j->fd < 0)
		j->error = errno;
	return NULL;
}

/* A TCP socket of the namespace nsfd, made on a thread that enters it and exits: the socket
 * stays in that namespace, the caller in its own. Dies on failure. */
static int
ns_socket(int nsfd)
{
	struct ns_job j = {nsfd, -1, 0};
	pthread_t t;

	if (pthread_create(&t, NULL, ns_socket_thread, &j) != 0)
		die("ns_socket", "cannot start a thread");
	pthread_join(t, NULL);
	if (j.fd < 0)
		die("ns_socket", strerror(j.error));
	struct timeval tv = {IO_TIMEOUT_SEC, 0};
	setsockopt(j.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(j.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return j.fd;
}

static int
ns_listen(int nsfd, uint32_t ip, uint16_t port)
{
	struct sockaddr_in a = sin_of(ip, port);
	int fd = ns_socket(nsfd), one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0)
		die("listen in the guest", strerror(errno));
	return fd;
}

/* ---- the guest's servers: one connection at a time ------------------------------------------ */

/* Sends back every byte it reads. */
static void *
echo_serve(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	char c[64];
	ssize_t n;

	for (int i = 0; i < MAX_ACCEPTS; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		while ((n = read(fd, c, sizeof(c))) > 0 &&
		       send(fd, c, (size_t)n, MSG_NOSIGNAL) == n)
			;
		close(fd);
	}
	return NULL;
}

/* Pins the calling thread to one CPU (when there are two or more): the sender on one, the
 * receiver on the other, so that runs do not differ by where the scheduler put them. */
static void
pin_to_cpu(int cpu)
{
	cpu_set_t set;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Reads to the end, then answers with the count of bytes it got (8 bytes, host order). */
static void *
sink_serve(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	char *buf = malloc(BUF_SIZE);
	ssize_t n;

	pin_to_cpu(1);
	for (int i = 0; buf && i < MAX_ACCEPTS; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t total = 0;
		while ((n = read(fd, buf, BUF_SIZE)) > 0)
			total += (uint64_t)n;
		send(fd, &total, sizeof(total), MSG_NOSIGNAL);
		close(fd);
	}
	free(buf);
	return NULL;
}

static void
servers_start(struct bench *b)
{
	int echo = ns_listen(b->guest_ns, GUEST_IP, ECHO_PORT);
	int sink = ns_listen(b->guest_ns, GUEST_IP, SINK_PORT);
	pthread_t t;

	if (pthread_create(&t, NULL, echo_serve, (void *)(intptr_t)echo) != 0 ||
	    pthread_detach(t) != 0 ||
	    pthread_create(&t, NULL, sink_serve, (void *)(intptr_t)sink) != 0 ||
	    pthread_detach(t) != 0)
		die("servers", "cannot start a thread");
}

/* ---- the LAN client ------------------------------------------------------------------------- */

/* A new connection from the LAN to ip:port, one byte there and back, closed: its time in ms. */
static double
echo_once(const struct bench *b, uint32_t ip, uint16_t port)
{
	struct sockaddr_in a = sin_of(ip, port);
	int fd = ns_socket(b->lan_ns);
	char c = 'x';

	errno = 0;
	double t0 = it_now_ms();
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  send(fd, &c, 1, MSG_NOSIGNAL) == 1 && recv(fd, &c, 1, 0) == 1;
	int e = errno;
	close(fd);
	double t = it_now_ms() - t0;
	if (!ok)
		die(ip == GUEST_IP ? "echo, direct" : "echo, through DNAT",
		    e ? strerror(e) : "connection closed");
	return t;
}

/* Sends mib MiB from the LAN to ip:port on a new connection, then waits for the receiver's
 * count of what arrived: Gbit/s from connect to that answer. < 0 on failure. */
static double
bulk_once(const struct bench *b, uint32_t ip, uint16_t port, int mib)
{
	struct sockaddr_in a = sin_of(ip, port);
	uint64_t bytes = (uint64_t)mib << 20, sent = 0, got = 0;
	int fd = ns_socket(b->lan_ns);
	ssize_t n = 0;

	double t0 = it_now_ms();
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	while (sent < bytes && n >= 0) {
		size_t len = bytes - sent < BUF_SIZE ? (size_t)(bytes - sent) : BUF_SIZE;
		if ((n = send(fd, b->buf, len, MSG_NOSIGNAL)) > 0)
			sent += (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	bool ok = sent == bytes && recv(fd, &got, sizeof(got), MSG_WAITALL) == sizeof(got) &&
		  got == bytes;
	double t = it_now_ms() - t0;
	close(fd);
	return ok ? (double)bytes * 8 / (t * 1e6) : -1;
}

/* ---- the ruleset -------------------------------------------------------------------------- */

static struct nft_port
port_of(uint16_t host_port, uint16_t machine_port)
{
	return (struct nft_port){0, host_port, IPPROTO_TCP, GUEST_IP, machine_port};
}

/* ports: the echo port first, then the sink's, then fillers up to PORTS. */
static void
ports_fill(struct nft_port *ports)
{
	ports[0] = port_of(HOST_ECHO, ECHO_PORT);
	ports[1] = port_of(HOST_SINK, SINK_PORT);
	for (unsigned i = 2; i < PORTS; i++)
		ports[i] = port_of((uint16_t)(FILLER_PORT + i), 80);
}

/* The daemon's ruleset for one network, one machine on it and the first n of ports. */
static void
expose(const struct bench *b, size_t n)
{
	static const struct nft_network net = {"default", "sistemo0", SUBNET, 16, GW_IP};
	static const struct nft_machine mc = {
		"guest", "vh-00000002", "sistemo0", GUEST_IP, NFT_MODE_BRIDGE, NULL, 0, NULL, 0};
	static const uint16_t guarded[] = {7777, 7778};
	struct nft_model m = {&net, 1, &mc, 1, b->ports, n, guarded, 2, false};
	struct err err = {0};

	if (nft_apply(&m, &err) < 0)
		die("nft_apply", err.msg);
}

/* One more port added and removed again, each timed. */
static void
port_add_del(struct side *s)
{
	struct nft_port p = port_of(HOST_PROBE, 80);
	struct err err = {0};

	double t0 = it_now_ms();
	if (nft_port_add(&p, &err) < 0)
		die("nft_port_add", err.msg);
	s->add_ms[s->n_ops] = it_now_ms() - t0;
	t0 = it_now_ms();
	if (nft_port_del(&p, &err) < 0)
		die("nft_port_del", err.msg);
	s->del_ms[s->n_ops++] = it_now_ms() - t0;
}

/* ---- the phases ----------------------------------------------------------------------------- */

/* With s's ports loaded: port add/del, then new connections through DNAT alternating with
 * direct ones (which of the two goes first alternates too). */
static void
block_run(struct bench *b, struct side *s, int conns)
{
	expose(b, s->n_ports);
	/* the kernel frees the replaced ruleset (10 000 elements) in RCU callbacks and a work
	 * queue after nft_apply returns: that is the load's cost, not the next expose's */
	usleep(SETTLE_US);
	for (int i = 0; i < OPS_PER_BLOCK; i++)
		port_add_del(s);
	/* untimed: a connection right after the ruleset changed is slower (~0.2 ms against 0.12) */
	echo_once(b, HOST_IP, HOST_ECHO);
	echo_once(b, GUEST_IP, ECHO_PORT);
	for (int i = 0; i < conns; i++) {
		if (i % 2)
			b->direct_ms[b->n_direct++] = echo_once(b, GUEST_IP, ECHO_PORT);
		s->conn_ms[s->n_conns++] = echo_once(b, HOST_IP, HOST_ECHO);
		if (i % 2 == 0)
			b->direct_ms[b->n_direct++] = echo_once(b, GUEST_IP, ECHO_PORT);
	}
}

static void
latency_phase(struct bench *b)
{
	int per_block = b->connections / BLOCKS;

	b->sides[0] = (struct side){.name = "1 port exposed", .n_ports = 1};
	b->sides[1] = (struct side){.name = "10 000 ports exposed", .n_ports = PORTS};
	for (int k = 0; k < BLOCKS; k++)
		for (int j = 0; j < 2; j++)
			block_run(b, &b->sides[(k + j) % 2], per_block);
}

/* Where socat is in PATH, or NULL. */
static char *
socat_find(void)
{
	static char path[512];
	const char *p = getenv("PATH");

	while (p && *p) {
		size_t len = strcspn(p, ":");
		snprintf(path, sizeof(path), "%.*s/socat", (int)len, p);
		if (len > 0 && access(path, X_OK) == 0)
			return path;
		p += len + (p[len] == ':');
	}
	return NULL;
}

static void *
drain(void *arg)
{
	char buf[4096];
	int fd = (int)(intptr_t)arg;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	return NULL;
}

/* Reads socat's stderr up to its "listening on" notice; a thread drains the rest. */
static int
socat_wait_listening(int fd)
{
	char buf[4096] = "";
	size_t len = 0;
	ssize_t n;
	pthread_t t;

	while (len + 1 < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "listening on"))
			break;
	}
	if (!strstr(buf, "listening on") || pthread_create(&t, NULL, drain, (void *)(intptr_t)fd)) {
		close(fd);
		return -1;
	}
	pthread_detach(t);
	return 0;
}

/* Stops socat's process group (socat and any child of `fork` still serving a connection)
 * while socat is not yet reaped, so that its pid cannot have been reused; then reaps it. */
static void
socat_stop(pid_t pid)
{
	kill(-pid, SIGTERM);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/*   socat -d -d TCP-LISTEN:8002,bind=192.0.2.1,fork,reuseaddr TCP:10.200.0.2:5001
 * in the host namespace, its own process group, killed when this process dies. Returns its
 * pid once it listens, -1 when it could not start. */
static pid_t
socat_start(const char *path)
{
	char *argv[] = {"socat",
			"-d",
			"-d",
			"TCP-LISTEN:8002,bind=192.0.2.1,fork,reuseaddr",
			"TCP:10.200.0.2:5001",
			NULL};
	pid_t parent = getpid(), pid;
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0)
		return -1;
	if (pid == 0) { /* async-signal-safe calls only: the guest's servers are threads */
		setpgid(0, 0);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent ||
		    dup2(p[1], STDERR_FILENO) < 0)
			_exit(127);
		execve(path, argv, environ);
		_exit(127);
	}
	close(p[1]);
	if (socat_wait_listening(p[0]) < 0) {
		socat_stop(pid);
		return -1;
	}
	return pid;
}

/* ---- throughput ----------------------------------------------------------------------------- */

struct path {
	const char *name;
	uint32_t ip;
	uint16_t port;
	double gbps[MAX_RUNS];
};

/* With every port exposed: a warm-up transfer per path, then runs rotating the paths' order. */
static void
throughput_phase(struct bench *b, struct path *paths, int n_paths)
{
	expose(b, PORTS);
	pin_to_cpu(0);
	for (int k = 0; k < n_paths; k++)
		if (bulk_once(b, paths[k].ip, paths[k].port, WARMUP_MIB) < 0)
			die(paths[k].name, "transfer failed");
	for (int r = 0; r < b->runs; r++)
		for (int j = 0; j < n_paths; j++) {
			struct path *p = &paths[(r + j) % n_paths];
			if ((p->gbps[r] = bulk_once(b, p->ip, p->port, b->mib)) < 0)
				die(p->name, "transfer failed");
		}
}

/* ---- the report ----------------------------------------------------------------------------- */

static void
target(const char *what, double value, const char *unit, bool met)
{
	printf("target %-52s %7.2f %-2s %s\n", what, value, unit, met ? "PASS" : "MISS");
}

static const char *
br_nf_call_iptables(void)
{
	static char v[16] = "absent";
	FILE *f = fopen("/proc/sys/net/bridge/bridge-nf-call-iptables", "re");

	if (f && fgets(v, sizeof(v), f))
		v[strcspn(v, "\n")] = '\0';
	if (f)
		fclose(f);
	return v;
}

static void
report_expose(struct bench *b)
{
	struct side *one = &b->sides[0], *many = &b->sides[1];
	double a1 = median(one->add_ms, one->n_ops), a2 = median(many->add_ms, many->n_ops);
	double d1 = median(one->del_ms, one->n_ops), d2 = median(many->del_ms, many->n_ops);

	printf("expose one more port, median of %d (ms)    1 port  10 000 ports   ratio\n",
	       one->n_ops);
	printf("  nft_port_add                            %8.3f      %8.3f   %5.2fx\n", a1, a2,
	       a2 / a1);
	printf("  nft_port_del                            %8.3f      %8.3f   %5.2fx\n", d1, d2,
	       d2 / d1);
	target("nft_port_add, 10 000 / 1 port <= 1.2x (median)", a2 / a1, "x", a2 / a1 <= 1.2);
	target("nft_port_del, 10 000 / 1 port <= 1.2x (median)", d2 / d1, "x", d2 / d1 <= 1.2);
}

static void
report_connections(struct bench *b)
{
	struct side *one = &b->sides[0], *many = &b->sides[1];
	double m1 = median(one->conn_ms, one->n_conns),
	       p1 = percentile(one->conn_ms, one->n_conns, 90);
	double m2 = median(many->conn_ms, many->n_conns);
	double p2 = percentile(many->conn_ms, many->n_conns, 90);
	double md = median(b->direct_ms, b->n_direct),
	       pd = percentile(b->direct_ms, b->n_direct, 90);

	printf("new connection from the LAN, 1 byte echoed, close (ms)    n   median      p90\n");
	printf("  through DNAT, 1 port exposed                     %5d %8.3f %8.3f\n", one->n_conns,
	       m1, p1);
	printf("  through DNAT, 10 000 ports exposed               %5d %8.3f %8.3f\n",
	       many->n_conns, m2, p2);
	printf("  routed straight to the guest, no DNAT            %5d %8.3f %8.3f\n", b->n_direct,
	       md, pd);
	printf("  ratio 10 000 / 1 port: median %.3fx, p90 %.3fx; DNAT (10 000) / direct %.3fx\n",
	       m2 / m1, p2 / p1, m2 / md);
	target("first connection, 10 000 / 1 port ~1.0x (0.9..1.1)", m2 / m1, "x",
	       m2 / m1 >= 0.9 && m2 / m1 <= 1.1);
}

/* The targets use the median of the per-run ratios: the paths of one run follow each other
 * within seconds, so the machine's load drifts less between them than across runs. */
static void
report_throughput(struct bench *b, struct path *paths, int n_paths, const char *no_socat)
{
	double med[3], paired[3] = {1, 0, 0}, ratio[MAX_RUNS];

	for (int k = 0; k < n_paths; k++) { /* before the medians sort the runs */
		for (int r = 0; r < b->runs; r++)
			ratio[r] = paths[1].gbps[r] / paths[k].gbps[r];
		paired[k] = median(ratio, b->runs);
	}
	printf("bulk TCP from the LAN to the guest, %d runs of %d MiB (Gbit/s)   median     min    "
	       " "
	       "max\n",
	       b->runs, b->mib);
	for (int k = 0; k < n_paths; k++) {
		double *v = paths[k].gbps;
		med[k] = median(v, b->runs);
		printf("  %-58s %7.2f %7.2f %7.2f\n", paths[k].name, med[k], v[0], v[b->runs - 1]);
	}
	printf("  DNAT / direct: per run %.3fx, of the medians %.3fx\n", paired[0],
	       med[1] / med[0]);
	if (n_paths == 3)
		printf("  DNAT / socat:  per run %.2fx, of the medians %.2fx\n", paired[2],
		       med[1] / med[2]);
	target("DNAT throughput >= 0.95x direct (median per run)", paired[0], "x",
	       paired[0] >= 0.95);
	if (n_paths < 3) {
		printf("target DNAT throughput >= 2x socat: skipped, %s\n", no_socat);
		return;
	}
	target("DNAT throughput >= 2x socat (median per run)", paired[2], "x", paired[2] >= 2.0);
}

static void
args_parse(struct bench *b, int argc, char **argv)
{
	b->connections = argc > 1 ? atoi(argv[1]) : 200;
	b->runs = argc > 2 ? atoi(argv[2]) : 9;
	b->mib = argc > 3 ? atoi(argv[3]) : 1024;
	if (b->connections < BLOCKS || b->connections > MAX_CONNECTIONS || b->runs < 1 ||
	    b->runs > MAX_RUNS || b->mib < 1 || b->mib > MAX_MIB) {
		fprintf(stderr, "usage: bench_dnat [CONNECTIONS %d..%d [RUNS 1..%d [MIB 1..%d]]]\n",
			BLOCKS, MAX_CONNECTIONS, MAX_RUNS, MAX_MIB);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	static struct bench b;
	struct path paths[3] = {
		{"direct: 10.200.0.2:5001, routed through the host", GUEST_IP, SINK_PORT, {0}},
		{"DNAT: 192.0.2.1:8001 -> 10.200.0.2:5001", HOST_IP, HOST_SINK, {0}},
		{"socat on the host: 192.0.2.1:8002 -> 10.200.0.2:5001", HOST_IP, HOST_SOCAT, {0}},
	};
	const char *no_socat = NULL;

	args_parse(&b, argc, argv);
	it_isolate();
	alarm(DEADLINE_SEC);
	if (!(b.buf = calloc(1, BUF_SIZE)))
		die("buffer", strerror(ENOMEM));
	topology_create(&b);
	ports_fill(b.ports);
	servers_start(&b);
	expose(&b, 1);
	echo_once(&b, GUEST_IP, ECHO_PORT); /* untimed: neighbours resolved, paths warm */
	latency_phase(&b);

	const char *socat = socat_find();
	pid_t pid = socat ? socat_start(socat) : -1;
	if (!socat)
		no_socat = "socat is not installed (Debian package socat)";
	else if (pid < 0)
		no_socat = "socat did not start listening";
	throughput_phase(&b, paths, pid > 0 ? 3 : 2);
	if (pid > 0)
		socat_stop(pid);

	printf("dnat: the data path through sistemo's DNAT; guest and LAN are network namespaces; "
	       "bridge-nf-call-iptables=%s\n",
	       br_nf_call_iptables());
	report_expose(&b);
	report_connections(&b);
	report_throughput(&b, paths, pid > 0 ? 3 : 2, no_socat);
	return 0;
}
