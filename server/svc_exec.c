#include "svc_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "exec.h"
#include "machine.h"
#include "macro.h"
#include "network.h"
#include "store.h"
#include "strbuf.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/rpc.pb-c.h"

#define MAX_WAIT_MS 30000
#define MAX_LOG_CHUNK (1u << 20)
#define MAX_COMMAND (64u << 10)

/* Waits up to wait_ms for path to change (inotify), without polling. */
static void
wait_for_change(const char *path, unsigned wait_ms)
{
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	if (fd < 0)
		return;
	if (inotify_add_watch(fd, path, IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF) >= 0) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, (int)wait_ms);
	}
	close(fd);
}

static int
read_log(const char *path, uint64_t start, struct arena *a, ProtobufCBinaryData *ret,
	 uint64_t *ret_next)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;

	ret->len = 0;
	*ret_next = start;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > start) {
		size_t want = (uint64_t)st.st_size - start > MAX_LOG_CHUNK
				      ? MAX_LOG_CHUNK
				      : (size_t)((uint64_t)st.st_size - start);
		ret->data = arena_alloc(a, want);
		ssize_t n = pread(fd, ret->data, want, (off_t)start);
		ret->len = n > 0 ? (size_t)n : 0;
		*ret_next = start + ret->len;
	}
	close(fd);
	return 0;
}

static uint64_t
log_start(const char *path, const Sistemo__V1__LogsRequest *req)
{
	struct stat st;

	if (!req->tail_bytes || stat(path, &st) < 0)
		return req->offset;
	return (uint64_t)st.st_size > req->tail_bytes ? (uint64_t)st.st_size - req->tail_bytes : 0;
}

int
machines_logs(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__LogsRequest *req = (const void *)in;
	Sistemo__V1__LogsReply *out = arena_msg(c->arena, &sistemo__v1__logs_reply__descriptor);
	struct machine_info m;
	char path[PATH_MAX];

	if (store_machine_get(c->d->store, req->machine, &m, err) < 0)
		return -ENOENT;
	paths_machine_dir(&c->d->paths, m.id, path, sizeof(path) - 16);
	strcat(path, "/console.log");
	uint64_t start = log_start(path, req);
	if (read_log(path, start, c->arena, &out->data, &out->next_offset) < 0)
		return err_set(err, ERR_INTERNAL, NULL, EIO, "read the log of '%s'", m.name);
	if (!out->data.len && req->wait_ms && streq(m.state, "running")) {
		wait_for_change(path, req->wait_ms > MAX_WAIT_MS ? MAX_WAIT_MS : req->wait_ms);
		read_log(path, start, c->arena, &out->data, &out->next_offset);
	}
	out->eof = !out->data.len && !streq(m.state, "running") && !streq(m.state, "starting");
	*ret = &out->base;
	return 0;
}

/* 'it'\''s' quoting, so every argument reaches the guest's shell as one word. */
static int
quote_argv(char **argv, size_t n, struct strbuf *sb)
{
	for (size_t i = 0; i < n; i++) {
		if (i && strbuf_append(sb, " ", 1) < 0)
			return -ENOMEM;
		if (strbuf_append(sb, "'", 1) < 0)
			return -ENOMEM;
		for (const char *p = argv[i]; *p; p++)
			if ((*p == '\'' ? strbuf_append(sb, "'\\''", 4) : strbuf_append(sb, p, 1)) <
			    0)
				return -ENOMEM;
		if (strbuf_append(sb, "'", 1) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* One argument is a shell string ("echo $HOME > x"); several are an exact argv. */
static int
command_of(const Sistemo__V1__ExecRequest *req, struct strbuf *sb, struct err *err)
{
	int r = 0;

	if (req->n_argv == 1)
		r = strbuf_append(sb, req->argv[0], strlen(req->argv[0]));
	else if (req->n_argv > 1)
		r = quote_argv(req->argv, req->n_argv, sb);
	else if (*req->command)
		r = strbuf_append(sb, req->command, strlen(req->command));
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (sb->len > MAX_COMMAND)
		return err_set(err, ERR_INVALID, "argv", E2BIG, "command of %zu bytes is over %u",
			       sb->len, MAX_COMMAND);
	if (!sb->len && !req->tty)
		return err_set(err, ERR_INVALID, "argv", EINVAL, "a command is required");
	return 0;
}

int
machines_exec(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret, struct err *err)
{
	const Sistemo__V1__ExecRequest *req = (const void *)in;
	Sistemo__V1__ExecStarted *out = arena_msg(c->arena, &sistemo__v1__exec_started__descriptor);
	struct strbuf cmd = {0};
	struct machine_info m;
	char id[40];

	if (store_machine_get(c->d->store, req->machine, &m, err) < 0 ||
	    command_of(req, &cmd, err) < 0) {
		strbuf_free(&cmd);
		return -EINVAL;
	}
	if (!streq(m.state, "running")) {
		strbuf_free(&cmd);
		return err_set(err, ERR_PRECONDITION, "machine", EBUSY,
			       "machine '%s' is %s: start it first (sistemo machine start %s)",
			       m.name, m.state, m.name);
	}
	if (!net_machine_has_nic(c->d, &m)) {
		strbuf_free(&cmd);
		return err_set(err, ERR_PRECONDITION, "machine", ENETUNREACH,
			       "machine '%s' has no network (mode none): exec and ssh go over it; "
			       "its console is in 'sistemo machine logs %s'",
			       m.name, m.name);
	}
	/* connect, handshake, auth: slow under TCG on a busy host, bounded all the same */
	struct ssh_target t = {m.ip, 22, "root", c->d->ssh_dir, 30000};
	struct ssh_pty pty = {*req->term ? req->term : "xterm-256color", req->cols ? req->cols : 80,
			      req->rows ? req->rows : 24};
	unsigned timeout = req->timeout_sec ? req->timeout_sec : req->tty ? 0 : 120;
	int r = execs_start(c->d->execs, &t, cmd.len ? cmd.data : NULL, req->tty ? &pty : NULL,
			    timeout, id, err);
	strbuf_free(&cmd);
	if (r < 0)
		return err_wrap(err, "exec in '%s'", m.name);
	c->target_id = arena_strdup(c->arena, m.id);
	c->target_name = arena_strdup(c->arena, m.name);
	out->exec_id = arena_strdup(c->arena, id);
	*ret = &out->base;
	return 0;
}

static void
copy_bytes(struct arena *a, const struct strbuf *sb, ProtobufCBinaryData *out)
{
	out->len = sb->len;
	out->data = sb->len ? arena_alloc(a, sb->len) : NULL;
	if (sb->len)
		memcpy(out->data, sb->data, sb->len);
}

int
machines_exec_read(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		   struct err *err)
{
	const Sistemo__V1__ExecReadRequest *req = (const void *)in;
	Sistemo__V1__ExecReadReply *out =
		arena_msg(c->arena, &sistemo__v1__exec_read_reply__descriptor);
	struct strbuf o = {0}, e = {0};
	bool exited = false;
	int code = 0;
	int r = execs_read(c->d->execs, req->exec_id,
			   req->wait_ms > MAX_WAIT_MS ? MAX_WAIT_MS : req->wait_ms, &o, &e, &exited,
			   &code, err);

	copy_bytes(c->arena, &o, &out->stdout);
	copy_bytes(c->arena, &e, &out->stderr);
	strbuf_free(&o);
	strbuf_free(&e);
	if (r < 0)
		return r;
	out->exited = exited;
	out->exit_code = code;
	*ret = &out->base;
	return 0;
}

static int
empty_reply(struct call *c, ProtobufCMessage **ret)
{
	Sistemo__V1__Empty *out = arena_msg(c->arena, &sistemo__v1__empty__descriptor);

	*ret = &out->base;
	return 0;
}

int
machines_exec_write(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		    struct err *err)
{
	const Sistemo__V1__ExecWriteRequest *req = (const void *)in;

	if (execs_write(c->d->execs, req->exec_id, req->data.data, req->data.len, req->close_stdin,
			err) < 0)
		return -EIO;
	return empty_reply(c, ret);
}

int
machines_exec_resize(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		     struct err *err)
{
	const Sistemo__V1__ExecResizeRequest *req = (const void *)in;

	if (req->cols < 1 || req->cols > 1000 || req->rows < 1 || req->rows > 1000)
		return err_set(err, ERR_INVALID, "cols", EINVAL,
			       "terminal size %ux%u is out of range: 1 to 1000 each", req->cols,
			       req->rows);
	if (execs_resize(c->d->execs, req->exec_id, req->cols, req->rows, err) < 0)
		return -EIO;
	return empty_reply(c, ret);
}

int
machines_exec_signal(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		     struct err *err)
{
	const Sistemo__V1__ExecSignalRequest *req = (const void *)in;
	static const char *const allowed[] = {"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2"};
	bool ok = false;

	for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
		ok = ok || streq(req->signal, allowed[i]);
	if (!ok)
		return err_set(
			err, ERR_INVALID, "signal", EINVAL,
			"signal '%.16s' is not one of TERM, KILL, INT, HUP, QUIT, USR1, USR2",
			req->signal);
	if (execs_signal(c->d->execs, req->exec_id, req->signal, err) < 0)
		return -EIO;
	return empty_reply(c, ret);
}
