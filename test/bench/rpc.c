/* No-op RPC round trip: sistemo's System.Ping through the CLI's client code (generated stub
 * over rpc_client) against the real daemon, versus a bare NNG REQ/REP echo (the canonical
 * ctx+aio REP server) and a raw AF_UNIX ping-pong, all measured in the same run with the
 * same 64-byte payload. Prints p50/p99 and the ratios. Target: sistemo <= 1.2x bare NNG at p50.
 *
 * Usage: bench_rpc SISTEMO_BINARY [ROUNDS]   (as root: it starts a daemon in a temporary
 * data dir; run it inside a private network + mount namespace, as ci/bench.sh does) */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "../integration/it.h"
#include "rpc_client.h"
#include "sistemo/v1/system.pb-c.h"

#define PAYLOAD 64
#define WARMUP 500

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct result {
	double p50, p99;
};

static struct result
summarize(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), it_cmp_double);
	return (struct result){v[n / 2], v[(int)(n * 0.99)]};
}

/* The bare echo server: N contexts, each an aio state machine that sends back what came. */
struct echo_ctx {
	nng_ctx ctx;
	nng_aio *aio;
	int sending;
};

static void
echo_cb(void *arg)
{
	struct echo_ctx *e = arg;

	if (nng_aio_result(e->aio) != 0) {
		if (e->sending)
			nng_msg_free(nng_aio_get_msg(e->aio));
		e->sending = 0;
		nng_ctx_recv(e->ctx, e->aio);
		return;
	}
	e->sending = !e->sending;
	if (e->sending)
		nng_ctx_send(e->ctx, e->aio);
	else
		nng_ctx_recv(e->ctx, e->aio);
}

static void
echo_server(const char *url, int ready_fd)
{
	static struct echo_ctx ctxs[16];
	nng_socket s;

	if (nng_rep0_open(&s) != 0 || nng_listen(s, url, NULL, 0) != 0)
		_exit(1);
	for (int i = 0; i < 16; i++) {
		nng_aio_alloc(&ctxs[i].aio, echo_cb, &ctxs[i]);
		nng_ctx_open(&ctxs[i].ctx, s);
		nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
	}
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);
	pause();
	_exit(0);
}

/* Three peers, each a client handle and a round-trip function, measured in interleaved
 * blocks so that machine noise falls on all of them alike. */
struct peer {
	const char *name;
	void (*roundtrip)(struct peer *p);
	int fd;                /* AF_UNIX */
	nng_socket sock;       /* bare NNG */
	ProtobufCService *svc; /* sistemo */
	struct rpc_client *client;
	double *samples;
	int n;
};

static void
unix_roundtrip(struct peer *p)
{
	char buf[PAYLOAD] = {0};

	if (write(p->fd, buf, sizeof(buf)) != sizeof(buf) ||
	    read(p->fd, buf, sizeof(buf)) != sizeof(buf))
		exit(1);
}

static void
nng_roundtrip(struct peer *p)
{
	char buf[PAYLOAD] = {0};
	nng_msg *m;

	nng_msg_alloc(&m, 0);
	nng_msg_append(m, buf, sizeof(buf));
	if (nng_sendmsg(p->sock, m, 0) != 0 || nng_recvmsg(p->sock, &m, 0) != 0)
		exit(1);
	nng_msg_free(m);
}

static void
sistemo_roundtrip(struct peer *p)
{
	uint8_t buf[PAYLOAD] = {0};
	Sistemo__V1__EchoRequest req = SISTEMO__V1__ECHO_REQUEST__INIT;
	Sistemo__V1__EchoReply *out = NULL;

	req.data.data = buf;
	req.data.len = sizeof(buf);
	sistemo__v1__system__ping(p->svc, &req, (Sistemo__V1__EchoReply_Closure)rpc_take, &out);
	if (!out) {
		fprintf(stderr, "ping: %s\n", rpc_client_error(p->client)->msg);
		exit(1);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void
run_block(struct peer *p, int rounds, bool record)
{
	for (int i = 0; i < rounds; i++) {
		double t = now_us();
		p->roundtrip(p);
		if (record)
			p->samples[p->n++] = now_us() - t;
	}
}

static pid_t
start_unix_echo(struct peer *p)
{
	int sv[2];
	char buf[PAYLOAD];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		while (read(sv[1], buf, sizeof(buf)) == sizeof(buf))
			if (write(sv[1], buf, sizeof(buf)) != sizeof(buf))
				break;
		_exit(0);
	}
	close(sv[1]);
	p->fd = sv[0];
	return pid;
}

/* Forks the bare echo server; must run before this process starts any NNG thread. */
static pid_t
start_nng_echo(const char *url)
{
	int p[2];
	char c;

	if (pipe(p) < 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0)
		echo_server(url, p[1]);
	if (read(p[0], &c, 1) != 1)
		exit(1);
	close(p[0]);
	close(p[1]);
	return pid;
}

/* SIGTERM to the daemon, then wait on its lock, which it releases as it exits. */
static void
stop_daemon(const char *lock)
{
	FILE *f = fopen(lock, "r");
	int pid = 0;

	if (!f)
		return;
	if (fscanf(f, "%d", &pid) == 1 && pid > 0)
		kill(pid, SIGTERM);
	flock(fileno(f), LOCK_EX);
	fclose(f);
}

static void
run_cmd(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "%s failed\n", argv[0]);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/sistemo-bench.XXXXXX", url[256], echo_url[256], dd[300], lock[300];
	int rounds = argc > 2 ? atoi(argv[2]) : 20000;
	const int blocks = 20;
	struct err err = {0};

	if (argc < 2 || rounds < 100 || !mkdtemp(dir)) {
		fprintf(stderr, "usage: bench_rpc SISTEMO_BINARY [ROUNDS >= 100]\n");
		return 2;
	}
	snprintf(echo_url, sizeof(echo_url), "ipc://%s/echo.sock", dir);
	snprintf(url, sizeof(url), "ipc://%s/data/run/sistemo.sock", dir);
	snprintf(dd, sizeof(dd), "%s/data", dir);
	snprintf(lock, sizeof(lock), "%s/data/run/daemon.lock", dir);
	struct peer peers[3] = {
		{.name = "raw AF_UNIX ping-pong", .roundtrip = unix_roundtrip},
		{.name = "bare NNG REQ/REP echo", .roundtrip = nng_roundtrip},
		{.name = "sistemo System.Ping", .roundtrip = sistemo_roundtrip},
	};
	pid_t unix_pid = start_unix_echo(&peers[0]);
	pid_t echo_pid = start_nng_echo(echo_url);
	char *up[] = {argv[1], "up", "--detach", "--data-dir", dd, NULL};
	run_cmd(up);
	if (nng_req0_open(&peers[1].sock) != 0 || nng_dial(peers[1].sock, echo_url, NULL, 0) != 0 ||
	    rpc_client_open(url, &peers[2].client, &err) < 0) {
		fprintf(stderr, "connect: %s\n", err.msg);
		return 1;
	}
	peers[2].svc = rpc_client_service(peers[2].client, &sistemo__v1__system__descriptor);
	for (int k = 0; k < 3; k++) {
		peers[k].samples = calloc((size_t)rounds, sizeof(double));
		run_block(&peers[k], WARMUP, false);
	}
	for (int b = 0; b < blocks; b++)
		for (int k = 0; k < 3; k++)
			run_block(&peers[k], rounds / blocks, true);
	struct result r[3];
	for (int k = 0; k < 3; k++)
		r[k] = summarize(peers[k].samples, peers[k].n);
	printf("no-op RPC round trip, %d-byte payload, %d rounds each in %d interleaved blocks "
	       "(after %d warm-up)\n",
	       PAYLOAD, peers[0].n, blocks, WARMUP);
	printf("%-28s %10s %10s\n", "", "p50 us", "p99 us");
	for (int k = 0; k < 3; k++)
		printf("%-28s %10.1f %10.1f\n", peers[k].name, r[k].p50, r[k].p99);
	printf("ratio sistemo / bare NNG:  p50 %.2fx  p99 %.2fx  (target p50 <= 1.20x)\n",
	       r[2].p50 / r[1].p50, r[2].p99 / r[1].p99);
	printf("ratio sistemo / AF_UNIX:   p50 %.2fx  p99 %.2fx\n", r[2].p50 / r[0].p50,
	       r[2].p99 / r[0].p99);
	rpc_client_close(peers[2].client);
	nng_close(peers[1].sock);
	close(peers[0].fd);
	kill(echo_pid, SIGTERM);
	waitpid(echo_pid, NULL, 0);
	waitpid(unix_pid, NULL, 0);
	stop_daemon(lock);
	for (int k = 0; k < 3; k++)
		free(peers[k].samples);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 1;
}
