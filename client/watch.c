#include "watch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cmd.h"
#include "macro.h"
#include "strbuf.h"
#include "units.h"

#define WAIT_MS 10000

static void
draw_event(struct cli *cli, const Sistemo__V1__ProgressEvent *e, bool tty)
{
	if (cli->output == OUTPUT_JSON)
		return;
	if (tty)
		fprintf(stderr, "\r\033[K[%3u%%] %s", e->percent, e->message);
	else
		fprintf(stderr, "%s: %s\n", e->step, e->message);
}

Sistemo__V1__Operation *
watch_operation(struct cli *cli, const Sistemo__V1__Operation *op, struct err *err)
{
	Sistemo__V1__WatchOperationRequest req = SISTEMO__V1__WATCH_OPERATION_REQUEST__INIT;
	bool tty = isatty(2);
	char id[64];

	snprintf(id, sizeof(id), "%s", op->id);
	req.id = id;
	req.wait_ms = WAIT_MS;
	for (;;) {
		Sistemo__V1__Operation *now = NULL;
		STUB(cli->client, sistemo__v1__system__watch_operation, SVC_SYSTEM,
		     Sistemo__V1__Operation, &req, &now);
		if (!now) {
			*err = *rpc_client_error(cli->client);
			return NULL;
		}
		for (size_t i = 0; i < now->n_events; i++) {
			draw_event(cli, now->events[i], tty);
			req.after_seq = now->events[i]->seq;
		}
		if (now->state != SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_RUNNING) {
			if (tty && cli->output != OUTPUT_JSON)
				fprintf(stderr, "\r\033[K");
			return now;
		}
		cmd_free(now);
	}
}

int
watch_machine_result(struct cli *cli, Sistemo__V1__Operation *op, const char *verb)
{
	struct err err = {0};

	if (op->state != SISTEMO__V1__OPERATION_STATE__OPERATION_STATE_DONE) {
		const Sistemo__V1__Status *st = op->status;
		err_set(&err, st ? (enum err_code)st->code : ERR_INTERNAL, NULL, EIO, "%s '%s': %s",
			op->kind, op->target, st ? st->message : "failed");
		return cli_fail(cli, &err);
	}
	Sistemo__V1__Machine *m =
		sistemo__v1__machine__unpack(NULL, op->result.len, op->result.data);
	if (!m)
		return err_set(&err, ERR_INTERNAL, NULL, EBADMSG, "no machine in the result"),
		       cli_fail(cli, &err);
	if (cli->output == OUTPUT_JSON)
		output_json(&m->base);
	else
		printf("Machine '%s' %s: IP %s, boot %.1f s (%s)\n", m->name, verb, m->ip,
		       (double)m->boot_ms / 1000.0, m->driver);
	cmd_free(m);
	return 0;
}

/* Sends stdin to the command when it is a pipe or file; closes the command's stdin. */
static int
send_stdin(struct cli *cli, const char *exec_id, struct err *err)
{
	Sistemo__V1__ExecWriteRequest req = SISTEMO__V1__EXEC_WRITE_REQUEST__INIT;
	static uint8_t buf[1 << 20];
	ssize_t n = 0;

	req.exec_id = (char *)exec_id;
	do {
		Sistemo__V1__Empty *r = NULL;
		n = isatty(0) ? 0 : read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		req.data.data = buf;
		req.data.len = n > 0 ? (size_t)n : 0;
		req.close_stdin = n <= 0;
		STUB(cli->client, sistemo__v1__machines__exec_write, SVC_MACHINES,
		     Sistemo__V1__Empty, &req, &r);
		if (!r) {
			*err = *rpc_client_error(cli->client);
			return -EIO;
		}
		cmd_free(r);
	} while (n > 0);
	return 0;
}

static void
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* One ExecRead: output to the fds or, with -o json, into the buffers. */
static Sistemo__V1__ExecReadReply *
read_once(struct cli *cli, const char *exec_id, unsigned wait_ms, struct strbuf *out,
	  struct strbuf *errout, struct err *err)
{
	Sistemo__V1__ExecReadRequest req = SISTEMO__V1__EXEC_READ_REQUEST__INIT;
	Sistemo__V1__ExecReadReply *r = NULL;

	req.exec_id = (char *)exec_id;
	req.wait_ms = wait_ms;
	STUB(cli->client, sistemo__v1__machines__exec_read, SVC_MACHINES,
	     Sistemo__V1__ExecReadReply, &req, &r);
	if (!r) {
		*err = *rpc_client_error(cli->client);
		return NULL;
	}
	if (cli->output == OUTPUT_JSON) {
		strbuf_append(out, (const char *)r->stdout.data, r->stdout.len);
		strbuf_append(errout, (const char *)r->stderr.data, r->stderr.len);
	} else {
		write_all(1, r->stdout.data, r->stdout.len);
		write_all(2, r->stderr.data, r->stderr.len);
	}
	return r;
}

static void
print_exec_json(const struct strbuf *out, const struct strbuf *errout, int code)
{
	Sistemo__V1__ExecReadReply j = SISTEMO__V1__EXEC_READ_REPLY__INIT;

	j.stdout.data = (uint8_t *)out->data;
	j.stdout.len = out->len;
	j.stderr.data = (uint8_t *)errout->data;
	j.stderr.len = errout->len;
	j.exited = true;
	j.exit_code = code;
	output_json(&j.base);
}

int
watch_exec(struct cli *cli, const char *exec_id)
{
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	int code = -1;

	if (send_stdin(cli, exec_id, &err) < 0)
		return cli_fail(cli, &err);
	while (code < 0) {
		Sistemo__V1__ExecReadReply *r =
			read_once(cli, exec_id, WAIT_MS, &out, &errout, &err);
		if (!r) {
			strbuf_free(&out);
			strbuf_free(&errout);
			return cli_fail(cli, &err);
		}
		if (r->exited)
			code = r->exit_code;
		cmd_free(r);
	}
	if (cli->output == OUTPUT_JSON)
		print_exec_json(&out, &errout, code);
	strbuf_free(&out);
	strbuf_free(&errout);
	return code;
}

int
watch_logs(struct cli *cli, const char *machine, bool follow)
{
	Sistemo__V1__LogsRequest req = SISTEMO__V1__LOGS_REQUEST__INIT;
	struct err err = {0};

	req.machine = (char *)machine;
	req.tail_bytes = 1 << 20;
	for (;;) {
		Sistemo__V1__LogsReply *r = NULL;
		req.wait_ms = follow ? WAIT_MS : 0;
		STUB(cli->client, sistemo__v1__machines__logs, SVC_MACHINES, Sistemo__V1__LogsReply,
		     &req, &r);
		if (!r)
			return err = *rpc_client_error(cli->client), cli_fail(cli, &err);
		write_all(1, r->data.data, r->data.len);
		req.tail_bytes = 0;
		req.offset = r->next_offset;
		bool done = !follow || r->eof;
		cmd_free(r);
		if (done)
			return 0;
	}
}

static volatile sig_atomic_t resized;

static void
on_winch(int sig)
{
	(void)sig;
	resized = 1;
}

struct term_input {
	struct rpc_client *writer; /* a second connection: the main one long-polls output */
	const char *exec_id;
};

/* Keystrokes to the session, as they come. */
static void *
input_main(void *arg)
{
	struct term_input *t = arg;
	Sistemo__V1__ExecWriteRequest req = SISTEMO__V1__EXEC_WRITE_REQUEST__INIT;
	uint8_t buf[4096];

	req.exec_id = (char *)t->exec_id;
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		Sistemo__V1__Empty *r = NULL;
		req.data.data = buf;
		req.data.len = n > 0 ? (size_t)n : 0;
		req.close_stdin = n <= 0;
		STUB(t->writer, sistemo__v1__machines__exec_write, SVC_MACHINES, Sistemo__V1__Empty,
		     &req, &r);
		cmd_free(r);
		if (n <= 0 || !r)
			return NULL;
	}
}

static void
send_size(struct cli *cli, const char *exec_id)
{
	Sistemo__V1__ExecResizeRequest req = SISTEMO__V1__EXEC_RESIZE_REQUEST__INIT;
	Sistemo__V1__Empty *r = NULL;
	struct winsize ws;

	if (ioctl(1, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row)
		return;
	req.exec_id = (char *)exec_id;
	req.cols = ws.ws_col;
	req.rows = ws.ws_row;
	STUB(cli->client, sistemo__v1__machines__exec_resize, SVC_MACHINES, Sistemo__V1__Empty,
	     &req, &r);
	cmd_free(r);
}

int
watch_terminal(struct cli *cli, const char *exec_id)
{
	struct term_input in = {.exec_id = exec_id};
	struct termios saved, raw;
	struct err err = {0};
	bool tty = tcgetattr(0, &saved) == 0;
	pthread_t thread;
	int code = -1;

	cli->output = OUTPUT_TEXT; /* a terminal session has no JSON form */
	if (rpc_client_open(cli->paths.url, &in.writer, &err) < 0)
		return cli_fail(cli, &err);
	if (tty) {
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
	}
	signal(SIGWINCH, on_winch);
	send_size(cli, exec_id);
	pthread_create(&thread, NULL, input_main, &in);
	pthread_detach(thread); /* it ends with the process: read(0) cannot be interrupted */
	while (code < 0) {
		if (resized && !(resized = 0))
			send_size(cli, exec_id);
		Sistemo__V1__ExecReadReply *r = read_once(cli, exec_id, 200, NULL, NULL, &err);
		if (!r)
			break;
		code = r->exited ? r->exit_code : -1;
		cmd_free(r);
	}
	if (tty)
		tcsetattr(0, TCSANOW, &saved);
	return code < 0 ? cli_fail(cli, &err) : code;
}
