/* No-op RPC round trip: sistemo's System.Ping through the CLI's client code (generated stub
 * over rpc_client) against the real daemon, versus a bare NNG REQ/REP echo (the canonical
 * ctx+aio REP server) and a raw AF_UNIX ping-pong, all measured in the same run with the
 * same 64-byte payload. Prints p50/p99 and the ratios. Target: sistemo <= 1.2x bare NNG at p50.
 *
 * Usage: bench_rpc SISTEMO_BINARY [ROUNDS]   (as root: it starts a daemon in a temporary
 * data dir; run it inside a private network + mount namespace, as ci/bench.sh does) */
#include <errno.h>
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

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct result {
	double p50, p99;
};

static struct result
summarize(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return (struct result){v[n / 2], v[(int)(n * 0.99)]};
}

static struct result
bench_unix(int rounds, double *samples)
{
	int sv[2];
	char buf[PAYLOAD] = {0};

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
	for (int i = -WARMUP; i < rounds; i++) {
		double t = now_us();
		if (write(sv[0], buf, sizeof(buf)) != sizeof(buf) ||
		    read(sv[0], buf, sizeof(buf)) != sizeof(buf))
			exit(1);
		if (i >= 0)
			samples[i] = now_us() - t;
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	return summarize(samples, rounds);
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
	if (e->sending) {
		e->sending = 0;
		nng_ctx_recv(e->ctx, e->aio);
		return;
	}
	e->sending = 1;
	nng_ctx_send(e->ctx, e->aio);
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

static struct result
bench_nng(const char *url, int rounds, double *samples)
{
	int p[2];
	char c, buf[PAYLOAD] = {0};
	nng_socket s;

	if (pipe(p) < 0)
		exit(1);
	pid_t pid = fork(); /* before the parent starts any NNG thread */
	if (pid == 0)
		echo_server(url, p[1]);
	if (read(p[0], &c, 1) != 1 || nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0)
		exit(1);
	for (int i = -WARMUP; i < rounds; i++) {
		nng_msg *m;
		double t = now_us();
		nng_msg_alloc(&m, 0);
		nng_msg_append(m, buf, sizeof(buf));
		if (nng_sendmsg(s, m, 0) != 0 || nng_recvmsg(s, &m, 0) != 0)
			exit(1);
		nng_msg_free(m);
		if (i >= 0)
			samples[i] = now_us() - t;
	}
	nng_close(s);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return summarize(samples, rounds);
}

static struct result
bench_sistemo(const char *url, int rounds, double *samples)
{
	struct rpc_client *c;
	struct err err = {0};
	uint8_t buf[PAYLOAD] = {0};
	Sistemo__V1__EchoRequest req = SISTEMO__V1__ECHO_REQUEST__INIT;

	if (rpc_client_open(url, &c, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	ProtobufCService *svc = rpc_client_service(c, &sistemo__v1__system__descriptor);
	req.data.data = buf;
	req.data.len = sizeof(buf);
	for (int i = -WARMUP; i < rounds; i++) {
		Sistemo__V1__EchoReply *out = NULL;
		double t = now_us();
		sistemo__v1__system__ping(svc, &req, (Sistemo__V1__EchoReply_Closure)rpc_take, &out);
		if (!out) {
			fprintf(stderr, "ping: %s\n", rpc_client_error(c)->msg);
			exit(1);
		}
		protobuf_c_message_free_unpacked(&out->base, NULL);
		if (i >= 0)
			samples[i] = now_us() - t;
	}
	rpc_client_close(c);
	return summarize(samples, rounds);
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

	if (argc < 2 || rounds < 100 || !mkdtemp(dir)) {
		fprintf(stderr, "usage: bench_rpc SISTEMO_BINARY [ROUNDS >= 100]\n");
		return 2;
	}
	double *samples = calloc((size_t)rounds, sizeof(double));
	snprintf(echo_url, sizeof(echo_url), "ipc://%s/echo.sock", dir);
	snprintf(url, sizeof(url), "ipc://%s/data/run/sistemo.sock", dir);
	snprintf(dd, sizeof(dd), "%s/data", dir);
	snprintf(lock, sizeof(lock), "%s/data/run/daemon.lock", dir);
	struct result ux = bench_unix(rounds, samples);
	struct result ng = bench_nng(echo_url, rounds, samples);
	char *up[] = {argv[1], "up", "--detach", "--data-dir", dd, NULL};
	run_cmd(up);
	struct result si = bench_sistemo(url, rounds, samples);
	FILE *f = fopen(lock, "r");
	int pid = 0;
	if (f && fscanf(f, "%d", &pid) == 1 && pid > 0)
		kill(pid, SIGTERM);
	if (f) {
		flock(fileno(f), LOCK_EX); /* released when the daemon has exited */
		fclose(f);
	}
	printf("no-op RPC round trip, %d-byte payload, %d rounds each (after %d warm-up)\n",
	       PAYLOAD, rounds, WARMUP);
	printf("%-28s %10s %10s\n", "", "p50 us", "p99 us");
	printf("%-28s %10.1f %10.1f\n", "raw AF_UNIX ping-pong", ux.p50, ux.p99);
	printf("%-28s %10.1f %10.1f\n", "bare NNG REQ/REP echo", ng.p50, ng.p99);
	printf("%-28s %10.1f %10.1f\n", "sistemo System.Ping", si.p50, si.p99);
	printf("ratio sistemo / bare NNG:  p50 %.2fx  p99 %.2fx  (target p50 <= 1.20x)\n",
	       si.p50 / ng.p50, si.p99 / ng.p99);
	printf("ratio sistemo / AF_UNIX:   p50 %.2fx  p99 %.2fx\n", si.p50 / ux.p50,
	       si.p99 / ux.p99);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	free(samples);
	return system(cmd) == 0 ? 0 : 1;
}
