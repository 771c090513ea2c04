/* Exposed ports: the daemon's nft_port_add (one map element, one small batch) timed for the
 * 1st, the 1 000th and the 10 000th port, a whole nft_apply holding 10 000 ports, and as the
 * peer Sistemo's way, which spawns `nft` for each change (three rules per port: prerouting
 * DNAT, output DNAT, forward accept): `nft -f` adding one DNAT rule, into an empty chain and
 * into one that already holds 10 000 rules. Prints medians and ratios; asserts nothing.
 *
 * Usage: bench_nft [REPEATS]   (as root; it moves itself into fresh network and mount
 * namespaces first, so nothing it loads is visible to the host) */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include "../integration/it.h"
#include "err.h"
#include "nft.h"

#define PORTS 10000
#define MAX_REPEATS 200
#define DEADLINE_SEC 600 /* the whole run: SIGALRM ends it, the namespaces die with it */
#define FIRST_PORT 20000
#define MACHINE_IP 0x0ac80002u /* 10.200.0.2 */

extern char **environ;

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), it_cmp_double);
	return v[n / 2];
}

static struct nft_port
port_n(unsigned i)
{
	return (struct nft_port){0, (uint16_t)(FIRST_PORT + i), IPPROTO_TCP, MACHINE_IP, 80};
}

static void
die(const char *what, const struct err *err)
{
	fprintf(stderr, "bench_nft: %s: %s\n", what, err->msg);
	exit(1);
}

static void
apply(size_t n_ports, const struct nft_port *ports)
{
	static const struct nft_network net = {"default", "sistemo0", 0x0ac80000u, 16, 0x0ac80001u};
	static const struct nft_machine mc = {
		"web", "vh-00000002", "sistemo0", MACHINE_IP, NFT_MODE_BRIDGE, NULL, 0, NULL, 0};
	static const uint16_t guarded[] = {7777, 7778};
	struct nft_model m = {&net, 1, &mc, 1, ports, n_ports, guarded, 2, false};
	struct err err = {0};

	if (nft_apply(&m, &err) < 0)
		die("nft_apply", &err);
}

/* Median times of adding port i to a map holding i-1 ports and of removing it again. */
static double
port_add_ms(unsigned i, int repeats, double *ret_del_ms)
{
	double t[MAX_REPEATS], d[MAX_REPEATS];
	struct nft_port p = port_n(i - 1);
	struct err err = {0};

	for (int k = 0; k < repeats; k++) {
		double t0 = it_now_ms();
		if (nft_port_add(&p, &err) < 0)
			die("nft_port_add", &err);
		t[k] = it_now_ms() - t0;
		t0 = it_now_ms();
		if (nft_port_del(&p, &err) < 0)
			die("nft_port_del", &err);
		d[k] = it_now_ms() - t0;
	}
	*ret_del_ms = median(d, repeats);
	return median(t, repeats);
}

/* Fills the map from `from` ports to `to` ports, one nft_port_add each. */
static void
fill(unsigned from, unsigned to)
{
	struct err err = {0};

	for (unsigned i = from; i < to; i++) {
		struct nft_port p = port_n(i);
		if (nft_port_add(&p, &err) < 0)
			die("nft_port_add", &err);
	}
}

/* `nft -f path` with its output read to the end, as Go's CombinedOutput() does. */
static int
nft_file(const char *path)
{
	posix_spawn_file_actions_t fa;
	char *argv[] = {"nft", "-f", (char *)path, NULL};
	char buf[4096];
	int p[2], st = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	int r = posix_spawnp(&pid, "nft", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	while (r == 0 && read(p[0], buf, sizeof(buf)) > 0)
		;
	close(p[0]);
	if (r != 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -1;
	int r = fputs(text, f) < 0 ? -1 : 0;
	return fclose(f) == 0 ? r : -1;
}

/* A table like Sistemo's, its prerouting chain holding `existing` DNAT rules. */
static int
peer_setup(const char *path, unsigned existing)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -1;
	fprintf(f, "table ip peer\ndelete table ip peer\ntable ip peer {\n"
		   "chain prerouting { type nat hook prerouting priority dstnat; policy accept; "
		   "}\n}\n");
	for (unsigned i = 0; i < existing; i++)
		fprintf(f,
			"add rule ip peer prerouting ip daddr 192.0.2.1 tcp dport %u dnat to "
			"10.200.0.2:80\n",
			FIRST_PORT + i);
	if (fclose(f) != 0)
		return -1;
	return nft_file(path);
}

/* Median time of one `nft -f` adding one DNAT rule to a chain of `existing` rules. */
static double
peer_add_ms(unsigned existing, int repeats)
{
	char setup[] = "/tmp/bench-nft-setup-XXXXXX", one[] = "/tmp/bench-nft-one-XXXXXX";
	double t[MAX_REPEATS];
	char rule[256];
	int fd1 = mkstemp(setup), fd2 = mkstemp(one);

	if (fd1 < 0 || fd2 < 0)
		return -1;
	close(fd1);
	close(fd2);
	if (peer_setup(setup, existing) < 0)
		return -1;
	for (int k = 0; k < repeats; k++) {
		snprintf(rule, sizeof(rule),
			 "add rule ip peer prerouting ip daddr 192.0.2.1 tcp dport %u dnat to "
			 "10.200.0.2:80\n",
			 FIRST_PORT + PORTS + (unsigned)k);
		if (write_text(one, rule) < 0)
			return -1;
		double t0 = it_now_ms();
		if (nft_file(one) < 0)
			return -1;
		t[k] = it_now_ms() - t0;
	}
	unlink(setup);
	unlink(one);
	return median(t, repeats);
}

int
main(int argc, char **argv)
{
	int repeats = argc > 1 ? atoi(argv[1]) : 20;
	static struct nft_port ports[PORTS];
	double t0, add1, add1k, add10k, del1, del1k, del10k, fill_ms, apply_ms, peer0, peer10k;
	struct err err = {0};

	if (repeats < 1 || repeats > MAX_REPEATS)
		repeats = 20;
	it_isolate();
	alarm(DEADLINE_SEC);
	apply(0, NULL);
	add1 = port_add_ms(1, repeats, &del1);
	t0 = it_now_ms();
	fill(0, 999);
	add1k = port_add_ms(1000, repeats, &del1k);
	fill(999, PORTS - 1);
	fill_ms = it_now_ms() - t0;
	add10k = port_add_ms(PORTS, repeats, &del10k);
	for (unsigned i = 0; i < PORTS; i++)
		ports[i] = port_n(i);
	double t[MAX_REPEATS];
	for (int k = 0; k < repeats; k++) {
		t0 = it_now_ms();
		apply(PORTS, ports);
		t[k] = it_now_ms() - t0;
	}
	apply_ms = median(t, repeats);
	nft_remove(&err);
	peer0 = peer_add_ms(0, repeats);
	peer10k = peer_add_ms(PORTS, repeats);

	printf("nft: median of %d runs, ms\n", repeats);
	printf("  nft_port_add, 1st port              %8.3f\n", add1);
	printf("  nft_port_add, 1 000th port          %8.3f\n", add1k);
	printf("  nft_port_add, 10 000th port         %8.3f   (x%.2f the 1st)\n", add10k,
	       add10k / add1);
	printf("  nft_port_del, 1st / 1 000th / 10 000th port %.3f / %.3f / %.3f\n", del1, del1k,
	       del10k);
	printf("  %u nft_port_add calls, one by one   %8.1f   (%.3f per port)\n", PORTS - 2,
	       fill_ms, fill_ms / (PORTS - 2));
	printf("  nft_apply, whole ruleset + 10 000 ports %4.2f\n", apply_ms);
	if (peer0 < 0 || peer10k < 0) {
		printf("  peer `nft -f`: could not run nft\n");
		return 0;
	}
	printf("  peer: nft -f, one DNAT rule, empty chain        %8.3f   (x%.0f nft_port_add)\n",
	       peer0, peer0 / add1);
	printf("  peer: nft -f, one DNAT rule, 10 000-rule chain  %8.3f   (x%.0f nft_port_add)\n",
	       peer10k, peer10k / add10k);
	printf("  peer per exposed port (3 spawns, as Sistemo)    %8.3f   (x%.0f)\n", 3 * peer10k,
	       3 * peer10k / add10k);
	return 0;
}
