/* Per-machine host plumbing (netns + veth + bridge + TAP): the daemon's netns_machine_create and
 * netns_machine_delete (netlink in-process) versus the same topology built by spawning `ip`, as
 * Sistemo's VMNetwork.Create/Cleanup does (13 `ip` commands, 8 of them through `ip netns exec`),
 * measured in the same run, interleaved in blocks, with the kernel's floor (a bare
 * unshare(CLONE_NEWNET) on a thread) beside them. The daemon's way twice: building the whole
 * (no spare), and taking a spare namespace built ahead (netns_spares_start, as the daemon
 * runs): what a deploy waits for; the next spare is built, untimed, before the next create.
 * Prints median/p90/min per machine and the ratios. Targets: create <= 2 ms and >= 50x faster
 * than `ip`; delete <= 1 ms on the caller's side (the kernel then removes the links
 * asynchronously).
 *
 * Usage: bench_plumbing [MACHINES [BLOCKS]]   (as root; it moves itself into fresh network and
 * mount namespaces first, so nothing it makes is visible to the host) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../integration/it.h"
#include "err.h"
#include "netns.h"

#define HOST_BRIDGE "sistemo0"
#define GATEWAY 0x0ac80001u /* 10.200.0.1/16, the daemon's default */
#define MAX_MACHINES 500
#define WARMUP 2
#define DEADLINE_SEC 900 /* the whole run: SIGALRM ends it, the namespaces die with it */
#define MAX_ARGS 16

enum { LIB, SPARE, IP, FLOOR, NSIDES };

extern char **environ;

/* ---- the `ip` way: Sistemo's internal/agent/network/namespace.go ---------------------------- */

/* Runs `ip ARGS...` with stdout and stderr in one pipe that is read to the end, as Go's
 * exec.Command(...).CombinedOutput() does. Returns the exit status (-1: not run). */
static int
ip_argv(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	char buf[4096];
	int p[2], st = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	int r = posix_spawnp(&pid, "ip", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	while (r == 0 && read(p[0], buf, sizeof(buf)) > 0)
		;
	close(p[0]);
	if (r != 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ip ARGS... (NULL-terminated); with ns, `ip netns exec <ns> ip ARGS...` (runInNamespace). */
static int
ip(const char *ns, ...)
{
	char *argv[MAX_ARGS] = {"ip"};
	int n = 1;
	va_list ap;

	if (ns) {
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = (char *)ns;
		argv[n++] = "ip";
	}
	va_start(ap, ns);
	for (char *a; n < MAX_ARGS - 1 && (a = va_arg(ap, char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return ip_argv(argv);
}

struct ip_names {
	char ns[32], vo[16], vi[16], nb[16], tap[16];
};

static struct ip_names
ip_names_for(unsigned id)
{
	struct ip_names n;

	snprintf(n.ns, sizeof(n.ns), "ns-%08x", id);
	snprintf(n.vo, sizeof(n.vo), "vo-%08x", id);
	snprintf(n.vi, sizeof(n.vi), "vi-%08x", id);
	snprintf(n.nb, sizeof(n.nb), "nb-%08x", id);
	snprintf(n.tap, sizeof(n.tap), "tap-%08x", id);
	return n;
}

/* VMNetwork.Create, step for step (lo up's status is ignored there too). */
static int
ip_create(unsigned id)
{
	struct ip_names n = ip_names_for(id);
	const char *ns = n.ns;

	if (ip(NULL, "netns", "add", ns, NULL) ||
	    ip(NULL, "link", "add", n.vo, "type", "veth", "peer", "name", n.vi, NULL) ||
	    ip(NULL, "link", "set", n.vo, "master", HOST_BRIDGE, NULL) ||
	    ip(NULL, "link", "set", n.vo, "up", NULL) ||
	    ip(NULL, "link", "set", n.vi, "netns", ns, NULL))
		return -1;
	ip(ns, "link", "set", "lo", "up", NULL);
	if (ip(ns, "link", "add", n.nb, "type", "bridge", NULL) ||
	    ip(ns, "link", "set", n.nb, "up", NULL) ||
	    ip(ns, "link", "set", n.vi, "master", n.nb, NULL) ||
	    ip(ns, "link", "set", n.vi, "up", NULL) ||
	    ip(ns, "tuntap", "add", n.tap, "mode", "tap", NULL) ||
	    ip(ns, "link", "set", n.tap, "master", n.nb, NULL) ||
	    ip(ns, "link", "set", n.tap, "up", NULL))
		return -1;
	return 0;
}

/* VMNetwork.Cleanup: ip netns delete, then ip link delete of the host end, whose status is
 * ignored (the dying namespace may have taken it already). */
static int
ip_delete(unsigned id)
{
	struct ip_names n = ip_names_for(id);
	int r = ip(NULL, "netns", "delete", n.ns, NULL);

	ip(NULL, "link", "delete", n.vo, NULL);
	return r ? -1 : 0;
}

/* ---- the daemon's way ------------------------------------------------------------------- */

static int
lib_create(unsigned id)
{
	struct netns_names n;
	struct err err = {0};
	char mid[16];

	snprintf(mid, sizeof(mid), "%08x", id);
	netns_names_for(mid, &n);
	if (netns_machine_create(&n, HOST_BRIDGE, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
lib_delete(unsigned id)
{
	struct netns_names n;
	struct err err = {0};
	char mid[16];

	snprintf(mid, sizeof(mid), "%08x", id);
	netns_names_for(mid, &n);
	if (netns_machine_delete(&n, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

/* A spare kept ready (netns_spares_start): the create a deploy waits for takes it. Between
 * two creates (untimed) the spare thread builds the next; the other sides run without spares. */
static void
spares_begin(void)
{
	struct err err = {0};

	if (netns_spares_start(1, HOST_BRIDGE, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
}

static int
spare_ready(void)
{
	return netns_spares_wait(1, 10000) ? 0 : -1;
}

/* ---- the kernel's floor: one bare namespace, on a thread as ns_add makes it ------------------ */

static void *
unshare_thread(void *arg)
{
	int *r = arg;

	*r = unshare(CLONE_NEWNET) < 0 ? -errno : 0;
	return NULL;
}

/* The namespace dies with the thread, like the ones the other sides delete. */
static int
floor_create(unsigned id)
{
	pthread_t t;
	int r = 0;

	(void)id;
	if (pthread_create(&t, NULL, unshare_thread, &r) != 0)
		return -1;
	pthread_join(t, NULL);
	return r;
}

/* ---- measuring ---------------------------------------------------------------------------- */

struct side {
	const char *name;
	unsigned id_base; /* machine i has id id_base + i: names never repeat within a run */
	int (*create)(unsigned id);
	int (*delete)(unsigned id); /* NULL: not measured */
	void (*begin)(void);        /* before a block of creates, untimed (NULL: nothing) */
	int (*ready)(void);         /* before each create, untimed (NULL: nothing) */
	void (*end)(void);          /* after a block of creates */
	double create_ms[MAX_MACHINES], delete_ms[MAX_MACHINES];
};

/* Machines [from, to) of one side, created (or deleted) one after the other, each timed. */
static void
run_block(struct side *s, bool create, int from, int to)
{
	if (create && s->begin)
		s->begin();
	for (int i = from; i < to; i++) {
		if (create && s->ready && s->ready() < 0) {
			fprintf(stderr, "%s: no spare namespace ready\n", s->name);
			exit(1);
		}
		double t = it_now_ms();
		if ((create ? s->create : s->delete)(s->id_base + (unsigned)i) < 0) {
			fprintf(stderr, "%s: %s of machine %d failed\n", s->name,
				create ? "create" : "delete", i);
			exit(1);
		}
		(create ? s->create_ms : s->delete_ms)[i] = it_now_ms() - t;
	}
	if (create && s->end)
		s->end();
}

/* Every side, block by block; the side that goes first rotates so that the kernel's
 * asynchronous work left by one (namespace cleanup) falls on all alike. */
static void
run_phase(struct side s[NSIDES], bool create, int machines, int blocks)
{
	for (int b = 0; b < blocks; b++) {
		int from = machines * b / blocks, to = machines * (b + 1) / blocks;
		for (int k = 0; k < NSIDES; k++) {
			struct side *x = &s[(b + k) % NSIDES];
			if (create || x->delete)
				run_block(x, create, from, to);
		}
	}
}

static void
warm_up(struct side s[NSIDES])
{
	for (int k = 0; k < NSIDES; k++) {
		s[k].id_base += MAX_MACHINES;
		run_block(&s[k], true, 0, WARMUP);
		if (s[k].delete)
			run_block(&s[k], false, 0, WARMUP);
		s[k].id_base -= MAX_MACHINES;
	}
}

struct stats {
	double median, p90, min;
};

static struct stats
stats_of(const double *v, int n)
{
	double sorted[MAX_MACHINES];

	memcpy(sorted, v, (size_t)n * sizeof(*v));
	qsort(sorted, (size_t)n, sizeof(*sorted), it_cmp_double);
	return (struct stats){(sorted[(n - 1) / 2] + sorted[n / 2]) / 2, sorted[(n * 9) / 10],
			      sorted[0]};
}

static void
row(const char *what, const char *name, struct stats st)
{
	printf("%-6s  %-42s %10.3f %10.3f %10.3f\n", what, name, st.median, st.p90, st.min);
}

static void
target(const char *what, double value, const char *unit, bool met)
{
	printf("target %-44s %8.2f %-3s %s\n", what, value, unit, met ? "PASS" : "MISS");
}

static void
report(struct side s[NSIDES], int machines, int blocks)
{
	struct stats c[NSIDES], d[NSIDES];

	for (int k = 0; k < NSIDES; k++) {
		c[k] = stats_of(s[k].create_ms, machines);
		d[k] = s[k].delete ? stats_of(s[k].delete_ms, machines) : (struct stats){0};
	}
	printf("per-machine host plumbing (netns + veth + bridge + tap), %d machines each way in "
	       "%d "
	       "interleaved blocks (after %d warm-up)\n",
	       machines, blocks, WARMUP);
	printf("%-50s %10s %10s %10s\n", "", "median ms", "p90 ms", "min ms");
	for (int k = 0; k < NSIDES; k++)
		row("create", s[k].name, c[k]);
	for (int k = 0; k < NSIDES; k++)
		if (s[k].delete)
			row("delete", s[k].name, d[k]);
	printf("ratio create `ip` / in-process:  median %.1fx  p90 %.1fx\n",
	       c[IP].median / c[LIB].median, c[IP].p90 / c[LIB].p90);
	printf("ratio create `ip` / spare taken: median %.1fx  p90 %.1fx\n",
	       c[IP].median / c[SPARE].median, c[IP].p90 / c[SPARE].p90);
	printf("ratio delete `ip` / in-process:  median %.1fx  p90 %.1fx\n",
	       d[IP].median / d[LIB].median, d[IP].p90 / d[LIB].p90);
	target("create, deploy path (spare taken) <= 2 ms", c[SPARE].median, "ms",
	       c[SPARE].median <= 2.0);
	target("create, deploy path >= 50x faster than `ip`", c[IP].median / c[SPARE].median, "x",
	       c[IP].median / c[SPARE].median >= 50.0);
	target("create, whole build (no spare) <= 2 ms", c[LIB].median, "ms", c[LIB].median <= 2.0);
	target("create, whole build >= 50x faster than `ip`", c[IP].median / c[LIB].median, "x",
	       c[IP].median / c[LIB].median >= 50.0);
	target("delete in-process <= 1 ms caller side (median)", d[LIB].median, "ms",
	       d[LIB].median <= 1.0);
}

int
main(int argc, char **argv)
{
	static struct side s[NSIDES] = {
		[LIB] = {.name = "in-process (netns_machine_create/delete)",
			 .id_base = 0x10000000u,
			 .create = lib_create,
			 .delete = lib_delete},
		[SPARE] = {.name = "in-process, a spare taken (deploy path)",
			   .id_base = 0x30000000u,
			   .create = lib_create,
			   .delete = lib_delete,
			   .begin = spares_begin,
			   .ready = spare_ready,
			   .end = netns_spares_stop},
		[IP] = {.name = "`ip` spawns, as Sistemo",
			.id_base = 0x20000000u,
			.create = ip_create,
			.delete = ip_delete},
		[FLOOR] = {.name = "floor: bare unshare(CLONE_NEWNET), thread",
			   .create = floor_create},
	};
	int machines = argc > 1 ? atoi(argv[1]) : 50;
	int blocks = argc > 2 ? atoi(argv[2]) : machines < 10 ? machines : 10;
	struct err err = {0};

	if (machines < 2 || machines > MAX_MACHINES || blocks < 1 || blocks > machines) {
		fprintf(stderr, "usage: bench_plumbing [MACHINES 2..%d [BLOCKS 1..MACHINES]]\n",
			MAX_MACHINES);
		return 2;
	}
	it_isolate();
	alarm(DEADLINE_SEC);
	if (netns_bridge_ensure(HOST_BRIDGE, GATEWAY, 16, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	warm_up(s);
	run_phase(s, true, machines, blocks);
	run_phase(s, false, machines, blocks);
	report(s, machines, blocks);
	return 0;
}
