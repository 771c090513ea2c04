#include "ssh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libssh2.h>

#include "log.h"
#include "macro.h"

#define KEY_NAME "sistemo_key"
#define KEY_NEW ".sistemo_key.new" /* ssh-keygen writes here, then we rename */
#define KEYGEN_TIMEOUT_MS 30000
#define CONNECT_DEFAULT_MS 10000
#define WRITE_TIMEOUT_MS 10000 /* stdin writes, resizes, EOF: the guest must take them */
#define CLOSE_TIMEOUT_MS 250   /* orderly close of an ended command */
#define READ_MAX (1024 * 1024) /* bytes one ssh_exec_read call appends at most */
#define RUN_OUTPUT_MAX (64 * 1024 * 1024)
#define COMMAND_MAX 32768 /* libssh2 1.10 sends a request in one ~32 KiB packet */
#define USER_MAX 64
#define TERM_MAX 64
#define PTY_DIM_MAX 10000

extern char **environ;

struct ssh_exec {
	int fd;
	LIBSSH2_SESSION *session;
	LIBSSH2_CHANNEL *channel;
	bool pty;
	bool stdin_closed;
	bool exited; /* the guest closed the channel; code is final */
	bool dead;   /* the socket was shut down: no more I/O, only freeing */
	int code;
	unsigned limit_ms; /* the bound of the operation under way, for timeout messages */
	char peer[64];     /* "10.200.0.2:22", for messages */
};

DEFINE_CLEANUP(ssh_exec, struct ssh_exec, ssh_exec_free)

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- libssh2 global state ------------------------------------------------------------------ */

/* libssh2_init() is not thread-safe and runs once per process; its result is the one piece of
 * global state here, written once under pthread_once. */
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void
lib_init_once(void)
{
	lib_rc = libssh2_init(0);
}

static int
lib_init(struct err *err)
{
	pthread_once(&lib_once, lib_init_once);
	if (lib_rc != 0)
		return err_set(err, ERR_INTERNAL, NULL, EIO, "libssh2 initialisation failed (%d)",
			       lib_rc);
	return 0;
}

/* --- errors -------------------------------------------------------------------------------- */

static const struct {
	int rc;
	enum err_code code;
	int errno_hint;
	const char *what; /* our words, in front of libssh2's */
} rc_map[] = {
	{LIBSSH2_ERROR_EAGAIN, ERR_DEADLINE, ETIMEDOUT, NULL},
	{LIBSSH2_ERROR_TIMEOUT, ERR_DEADLINE, ETIMEDOUT, NULL},
	{LIBSSH2_ERROR_SOCKET_TIMEOUT, ERR_DEADLINE, ETIMEDOUT, NULL},
	{LIBSSH2_ERROR_AUTHENTICATION_FAILED, ERR_PERMISSION, EACCES, "refused"},
	{LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, ERR_PERMISSION, EACCES, "refused"},
	{LIBSSH2_ERROR_KEYFILE_AUTH_FAILED, ERR_PERMISSION, EACCES, "refused"},
	{LIBSSH2_ERROR_METHOD_NONE, ERR_PERMISSION, EACCES, "refused"},
	{LIBSSH2_ERROR_FILE, ERR_PRECONDITION, EINVAL, NULL},
	{LIBSSH2_ERROR_ALLOC, ERR_INTERNAL, ENOMEM, NULL},
	{LIBSSH2_ERROR_SOCKET_NONE, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_BANNER_RECV, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_BANNER_SEND, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_SOCKET_SEND, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_SOCKET_RECV, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_SOCKET_DISCONNECT, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_BAD_SOCKET, ERR_UNAVAILABLE, ECONNRESET, "connection lost"},
	{LIBSSH2_ERROR_KEX_FAILURE, ERR_UNAVAILABLE, EPROTO, "key exchange failed"},
	{LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE, ERR_UNAVAILABLE, EPROTO, "key exchange failed"},
	{LIBSSH2_ERROR_CHANNEL_FAILURE, ERR_UNAVAILABLE, ECONNREFUSED, "refused by the guest"},
	{LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED, ERR_UNAVAILABLE, ECONNREFUSED,
	 "refused by the guest"},
	{LIBSSH2_ERROR_REQUEST_DENIED, ERR_UNAVAILABLE, ECONNREFUSED, "refused by the guest"},
	{LIBSSH2_ERROR_CHANNEL_CLOSED, ERR_PRECONDITION, EPIPE, "channel closed"},
	{LIBSSH2_ERROR_CHANNEL_EOF_SENT, ERR_PRECONDITION, EPIPE, "channel closed"},
};

/* Converts a LIBSSH2_ERROR_* into our error: "<context>: <what libssh2 says>". */
static int __attribute__((format(printf, 4, 5)))
fail(struct ssh_exec *x, int rc, struct err *err, const char *fmt, ...)
{
	enum err_code code = ERR_INTERNAL;
	int errno_hint = EIO;
	const char *text = NULL, *what = NULL;
	char ctx[512];
	char *msg = NULL;
	va_list ap;

	for (size_t i = 0; i < ARRAY_SIZE(rc_map); i++)
		if (rc_map[i].rc == rc) {
			code = rc_map[i].code;
			errno_hint = rc_map[i].errno_hint;
			what = rc_map[i].what;
		}
	if (x->session && libssh2_session_last_error(x->session, &msg, NULL, 0) != 0)
		text = msg;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	if (code == ERR_DEADLINE)
		return err_set(err, code, NULL, errno_hint, "%s: timed out after %u ms", ctx,
			       x->limit_ms);
	if (!text || !*text)
		return err_set(err, code, NULL, errno_hint, "%s: %s%slibssh2 error %d", ctx,
			       what ? what : "", what ? ", " : "", rc);
	if (what)
		return err_set(err, code, NULL, errno_hint, "%s: %s (%s)", ctx, what, text);
	return err_set(err, code, NULL, errno_hint, "%s: %s", ctx, text);
}

/* --- waiting on the socket ----------------------------------------------------------------- */

/* Polls fd for events until the deadline. Returns 0 when ready, -ETIMEDOUT or -errno. */
static int
poll_until(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 0; /* POLLERR/POLLHUP too: the next call reports the error */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* Waits for the direction libssh2 last blocked on (a non-blocking call returned EAGAIN). */
static int
wait_socket(struct ssh_exec *x, int64_t deadline)
{
	int dirs = libssh2_session_block_directions(x->session);
	short events = 0;

	if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
		events |= POLLIN;
	if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		events |= POLLOUT;
	return poll_until(x->fd, events ? events : POLLIN, deadline);
}

/* Calls a non-blocking libssh2 function until it stops returning EAGAIN or the deadline
 * passes; then the result is still EAGAIN, which fail() reports as a timeout. */
#define RETRY(x, deadline, call)                                                                   \
	({                                                                                         \
		int _rc;                                                                           \
		while ((_rc = (call)) == LIBSSH2_ERROR_EAGAIN &&                                   \
		       wait_socket((x), (deadline)) == 0)                                          \
			;                                                                          \
		_rc;                                                                               \
	})

/* --- signals ------------------------------------------------------------------------------- */

/* The names RFC 4254 §6.10 uses on the wire; guests are Linux, so the numbers match ours. */
static const struct {
	const char *name;
	int signo;
} signals[] = {
	{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"FPE", SIGFPE},   {"HUP", SIGHUP},
	{"ILL", SIGILL},   {"INT", SIGINT},   {"KILL", SIGKILL}, {"PIPE", SIGPIPE},
	{"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
	{"USR2", SIGUSR2},
};

/* "TERM" or "SIGTERM" → its index in signals[], or -1. */
static int
signal_lookup(const char *name, size_t len)
{
	if (len > 3 && strncmp(name, "SIG", 3) == 0) {
		name += 3;
		len -= 3;
	}
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (strlen(signals[i].name) == len && strncmp(signals[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

/* --- connecting ---------------------------------------------------------------------------- */

static int
parse_addr(const struct ssh_target *t, unsigned port, struct sockaddr_storage *ss,
	   socklen_t *ret_len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, t->host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*ret_len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, t->host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*ret_len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/* Non-blocking TCP connect bounded by the deadline; x->fd on success. */
static int
tcp_connect(struct ssh_exec *x, const struct sockaddr_storage *ss, socklen_t len, int64_t deadline,
	    unsigned limit_ms, struct err *err)
{
	cleanup_close int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, soerr = 0;
	socklen_t soerr_len = sizeof(soerr);

	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "cannot reach %s: socket: %s",
			       x->peer, strerror(errno));
	/* interactive sessions send keystrokes one by one */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)ss, len) < 0) {
		if (errno != EINPROGRESS)
			return err_set(err, ERR_UNAVAILABLE, NULL, errno, "cannot reach %s: %s",
				       x->peer, strerror(errno));
		int r = poll_until(fd, POLLOUT, deadline);
		if (r == -ETIMEDOUT)
			return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
				       "cannot reach %s: no answer within %u ms", x->peer,
				       limit_ms);
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) < 0)
			soerr = r < 0 ? -r : errno;
		if (soerr)
			return err_set(err, ERR_UNAVAILABLE, NULL, soerr, "cannot reach %s: %s",
				       x->peer, strerror(soerr));
	}
	x->fd = TAKE_FD(fd);
	return 0;
}

/* Handshake and public key authentication. */
static int
session_open(struct ssh_exec *x, const char *user, const char *key, const char *pub,
	     int64_t deadline, struct err *err)
{
	int rc;

	x->session = libssh2_session_init();
	if (!x->session)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "ssh to %s: out of memory",
			       x->peer);
	libssh2_session_set_blocking(x->session, 0);
	rc = RETRY(x, deadline, libssh2_session_handshake(x->session, x->fd));
	if (rc)
		return fail(x, rc, err, "ssh handshake with %s", x->peer);
	/* The host key is not checked: every machine gets fresh host keys at first boot, over a
	 * bridge only the daemon reaches. The daemon could record the fingerprint
	 * (libssh2_hostkey_hash, SHA256) at first boot and pin it here. */
	rc = RETRY(x, deadline,
		   libssh2_userauth_publickey_fromfile_ex(x->session, user, (unsigned)strlen(user),
							  pub, key, NULL));
	if (rc)
		return fail(x, rc, err, "ssh key '%s' for '%s@%s'", key, user, x->peer);
	return 0;
}

static int
channel_open(struct ssh_exec *x, int64_t deadline, struct err *err)
{
	for (;;) {
		x->channel = libssh2_channel_open_session(x->session);
		if (x->channel)
			return 0;
		int rc = libssh2_session_last_errno(x->session);
		if (rc != LIBSSH2_ERROR_EAGAIN || wait_socket(x, deadline) < 0)
			return fail(x, rc, err, "open an ssh channel on %s", x->peer);
	}
}

/* Optional PTY, then exec of the command or the login shell. */
static int
channel_start(struct ssh_exec *x, const char *command, const struct ssh_pty *pty, int64_t deadline,
	      struct err *err)
{
	int rc;

	if (pty) {
		rc = RETRY(x, deadline,
			   libssh2_channel_request_pty_ex(x->channel, pty->term,
							  (unsigned)strlen(pty->term), NULL, 0,
							  (int)pty->cols, (int)pty->rows, 0, 0));
		if (rc)
			return fail(x, rc, err, "request a terminal on %s", x->peer);
		/* the guest's tty already merges stderr; this covers servers that still split */
		libssh2_channel_handle_extended_data2(x->channel,
						      LIBSSH2_CHANNEL_EXTENDED_DATA_MERGE);
		x->pty = true;
	}
	if (!command) {
		rc = RETRY(x, deadline, libssh2_channel_shell(x->channel));
		return rc ? fail(x, rc, err, "start a shell on %s", x->peer) : 0;
	}
	rc = RETRY(x, deadline, libssh2_channel_exec(x->channel, command));
	return rc ? fail(x, rc, err, "run '%.64s' on %s", command, x->peer) : 0;
}

static int
check_pty(const struct ssh_pty *pty, struct err *err)
{
	if (!pty->term || !*pty->term || strlen(pty->term) > TERM_MAX)
		return err_set(err, ERR_INVALID, "term", EINVAL,
			       "terminal type must have 1 to %d characters", TERM_MAX);
	for (const char *c = pty->term; *c; c++)
		if (*c <= ' ' || *c > '~')
			return err_set(err, ERR_INVALID, "term", EINVAL,
				       "invalid terminal type '%.64s'", pty->term);
	if (pty->cols < 1 || pty->cols > PTY_DIM_MAX || pty->rows < 1 || pty->rows > PTY_DIM_MAX)
		return err_set(err, ERR_INVALID, "size", EINVAL,
			       "terminal size %ux%u out of range (1 to %d)", pty->cols, pty->rows,
			       PTY_DIM_MAX);
	return 0;
}

static int
check_start(const struct ssh_target *t, const char *command, const struct ssh_pty *pty,
	    struct err *err)
{
	if (!t->host || !t->key_dir)
		return err_set(err, ERR_INVALID, "host", EINVAL,
			       "ssh target needs a host and keys");
	if (t->user && (!*t->user || strlen(t->user) > USER_MAX))
		return err_set(err, ERR_INVALID, "user", EINVAL,
			       "user name must have 1 to %d characters", USER_MAX);
	if (t->port > 65535)
		return err_set(err, ERR_INVALID, "port", EINVAL, "invalid port %u", t->port);
	if (!command && !pty)
		return err_set(err, ERR_INVALID, "command", EINVAL,
			       "a command or a terminal is required");
	if (command && strlen(command) > COMMAND_MAX)
		return err_set(err, ERR_INVALID, "command", EINVAL,
			       "command too long (%zu bytes, at most %d)", strlen(command),
			       COMMAND_MAX);
	return pty ? check_pty(pty, err) : 0;
}

/* <key_dir>/sistemo_key and its .pub, which must be readable before we open a connection. */
static int
key_paths(const char *key_dir, char key[static PATH_MAX], char pub[static PATH_MAX],
	  struct err *err)
{
	if ((size_t)snprintf(key, PATH_MAX, "%s/" KEY_NAME, key_dir) >= PATH_MAX ||
	    (size_t)snprintf(pub, PATH_MAX, "%s/" KEY_NAME ".pub", key_dir) >= PATH_MAX)
		return err_set(err, ERR_INVALID, "key_dir", ENAMETOOLONG,
			       "ssh key directory path too long");
	if (access(key, R_OK) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, errno, "ssh key '%s': %s", key,
			       strerror(errno));
	if (access(pub, R_OK) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, errno, "ssh key '%s': %s", pub,
			       strerror(errno));
	return 0;
}

int
ssh_exec_start(const struct ssh_target *t, const char *command, const struct ssh_pty *pty,
	       struct ssh_exec **ret, struct err *err)
{
	cleanup_(ssh_exec) struct ssh_exec *x = NULL;
	unsigned port = t->port ? t->port : 22, limit = t->connect_timeout_ms;
	const char *user = t->user ? t->user : "root";
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char key[PATH_MAX], pub[PATH_MAX];
	int r;

	if ((r = check_start(t, command, pty, err)) < 0 || (r = lib_init(err)) < 0 ||
	    (r = key_paths(t->key_dir, key, pub, err)) < 0)
		return r;
	if (parse_addr(t, port, &ss, &len) < 0)
		return err_set(err, ERR_INVALID, "host", EINVAL, "invalid guest address '%.64s'",
			       t->host);
	x = calloc(1, sizeof(*x));
	if (!x)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	x->fd = -1;
	snprintf(x->peer, sizeof(x->peer), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", t->host,
		 port);
	x->limit_ms = limit = limit ? limit : CONNECT_DEFAULT_MS;
	int64_t deadline = now_ms() + limit;
	if ((r = tcp_connect(x, &ss, len, deadline, limit, err)) < 0 ||
	    (r = session_open(x, user, key, pub, deadline, err)) < 0 ||
	    (r = channel_open(x, deadline, err)) < 0 ||
	    (r = channel_start(x, command, pty, deadline, err)) < 0)
		return r;
	*ret = TAKE_PTR(x);
	return 0;
}

/* --- reading ------------------------------------------------------------------------------- */

/* Reads one stream until libssh2 would block or the budget is spent. Returns bytes appended. */
static ssize_t
drain_stream(struct ssh_exec *x, int stream, struct strbuf *sb, size_t budget, struct err *err)
{
	char buf[16384];
	size_t total = 0;

	while (total < budget) {
		ssize_t n = libssh2_channel_read_ex(x->channel, stream, buf, sizeof(buf));
		if (n == LIBSSH2_ERROR_EAGAIN || n == 0)
			break;
		if (n < 0)
			return fail(x, (int)n, err, "read from %s", x->peer);
		if (strbuf_append(sb, buf, (size_t)n) < 0)
			return err_set(err, ERR_INTERNAL, NULL, ENOMEM,
				       "read from %s: out of memory", x->peer);
		total += (size_t)n;
	}
	return (ssize_t)total;
}

/* Both streams, alternately, until neither has anything or READ_MAX bytes came. */
static ssize_t
drain(struct ssh_exec *x, struct strbuf *out, struct strbuf *errout, struct err *err)
{
	size_t total = 0;

	for (;;) {
		ssize_t a = drain_stream(x, 0, out, READ_MAX - total, err), b = 0;
		if (a < 0)
			return a;
		total += (size_t)a;
		if (!x->pty)
			b = drain_stream(x, SSH_EXTENDED_DATA_STDERR, errout ? errout : out,
					 READ_MAX - total, err);
		if (b < 0)
			return b;
		total += (size_t)b;
		if ((a == 0 && b == 0) || total >= READ_MAX)
			return (ssize_t)total;
	}
}

/* The exit status, or 128+N when a signal ended the command (255 for an unknown signal). */
static int
exit_code(struct ssh_exec *x)
{
	char *name = NULL;
	size_t len = 0;

	libssh2_channel_get_exit_signal(x->channel, &name, &len, NULL, NULL, NULL, NULL);
	if (name) {
		int i = signal_lookup(name, len);
		log_debug("ssh %s: command ended by signal '%.*s'", x->peer, (int)len, name);
		libssh2_free(x->session, name);
		return i < 0 ? 255 : 128 + signals[i].signo;
	}
	return libssh2_channel_get_exit_status(x->channel);
}

/* After the guest's EOF: waits for its channel close, which follows the exit status. Returns 1
 * when the command has ended, 0 when that would block. */
static int
collect_exit(struct ssh_exec *x, struct err *err)
{
	int rc = libssh2_channel_wait_closed(x->channel);

	if (rc == LIBSSH2_ERROR_EAGAIN)
		return 0;
	if (rc < 0)
		return fail(x, rc, err, "wait for the command on %s to end", x->peer);
	x->code = exit_code(x);
	x->exited = true;
	return 1;
}

int
ssh_exec_read(struct ssh_exec *x, struct strbuf *out, struct strbuf *errout, int wait_ms,
	      bool *ret_exited, int *ret_code, struct err *err)
{
	int64_t deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);

	while (!x->exited && !x->dead) {
		ssize_t n = drain(x, out, errout, err);
		if (n < 0)
			return (int)n;
		int r = libssh2_channel_eof(x->channel) == 1 ? collect_exit(x, err) : 0;
		if (r < 0)
			return r;
		if (r > 0 || n > 0 || wait_socket(x, deadline) < 0)
			break;
	}
	*ret_exited = x->exited;
	*ret_code = x->exited ? x->code : 0;
	return 0;
}

/* --- writing, resizing, signals ------------------------------------------------------------ */

int
ssh_exec_write(struct ssh_exec *x, const void *data, size_t n, bool eof, struct err *err)
{
	int64_t deadline = now_ms() + (x->limit_ms = WRITE_TIMEOUT_MS);
	const char *p = data;

	if (n > 0 && (x->stdin_closed || x->exited))
		return err_set(err, ERR_PRECONDITION, NULL, EPIPE, "write to %s: %s", x->peer,
			       x->exited ? "the command has ended" : "stdin is closed");
	while (n > 0) {
		/* after EAGAIN libssh2 wants the very same arguments again: p and n stay */
		ssize_t w = libssh2_channel_write_ex(x->channel, 0, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && w != LIBSSH2_ERROR_EAGAIN) {
			return fail(x, (int)w, err, "write to %s", x->peer);
		} else if (wait_socket(x, deadline) < 0) {
			return fail(x, LIBSSH2_ERROR_EAGAIN, err, "write to %s", x->peer);
		}
	}
	if (eof && !x->stdin_closed && !x->exited) {
		int rc = RETRY(x, deadline, libssh2_channel_send_eof(x->channel));
		if (rc)
			return fail(x, rc, err, "close stdin on %s", x->peer);
		x->stdin_closed = true;
	}
	return 0;
}

int
ssh_exec_resize(struct ssh_exec *x, unsigned cols, unsigned rows, struct err *err)
{
	int64_t deadline = now_ms() + (x->limit_ms = WRITE_TIMEOUT_MS);
	int rc;

	if (!x->pty)
		return err_set(err, ERR_PRECONDITION, NULL, ENOTTY,
			       "resize on %s: the session has no terminal", x->peer);
	if (cols < 1 || cols > PTY_DIM_MAX || rows < 1 || rows > PTY_DIM_MAX)
		return err_set(err, ERR_INVALID, "size", EINVAL,
			       "terminal size %ux%u out of range (1 to %d)", cols, rows,
			       PTY_DIM_MAX);
	if (x->exited)
		return 0;
	rc = RETRY(x, deadline, libssh2_channel_request_pty_size(x->channel, (int)cols, (int)rows));
	if (rc)
		return fail(x, rc, err, "resize the terminal on %s", x->peer);
	return 0;
}

int
ssh_exec_signal(struct ssh_exec *x, const char *signal, struct err *err)
{
	int i = signal ? signal_lookup(signal, strlen(signal)) : -1;

	if (i < 0)
		return err_set(err, ERR_INVALID, "signal", EINVAL, "unknown signal '%.32s'",
			       signal ? signal : "");
#if LIBSSH2_VERSION_NUM >= 0x010b00
	int64_t deadline = now_ms() + (x->limit_ms = WRITE_TIMEOUT_MS);
	int rc = RETRY(
		x, deadline,
		libssh2_channel_signal_ex(x->channel, signals[i].name, strlen(signals[i].name)));
	return rc ? fail(x, rc, err, "send signal '%s' on %s", signals[i].name, x->peer) : 0;
#else
	/* The "signal" channel request needs libssh2_channel_signal_ex (1.11); 1.10's
	 * libssh2_channel_process_startup refuses a second request on a started channel. */
	return err_set(err, ERR_UNIMPLEMENTED, "signal", ENOTSUP,
		       "send signal '%s' on %s: libssh2 %s cannot send signals (1.11 can)",
		       signals[i].name, x->peer, LIBSSH2_VERSION);
#endif
}

/* --- closing ------------------------------------------------------------------------------- */

/* Stops all I/O: later libssh2 calls fail at once instead of waiting, so frees go through. */
static void
hang_up(struct ssh_exec *x)
{
	if (!x->dead)
		shutdown(x->fd, SHUT_RDWR);
	x->dead = true;
}

void
ssh_exec_free(struct ssh_exec *x)
{
	int64_t deadline = now_ms() + CLOSE_TIMEOUT_MS;

	if (!x)
		return;
	/* A command still running would keep its channel open as long as it runs; the guest's
	 * sshd hangs up on it when the connection drops, as it would on a channel close. */
	if (!x->exited && x->fd >= 0)
		hang_up(x);
	if (x->channel && RETRY(x, deadline, libssh2_channel_free(x->channel)) != 0) {
		hang_up(x);
		(void)RETRY(x, now_ms() + CLOSE_TIMEOUT_MS, libssh2_channel_free(x->channel));
	}
	if (x->session) {
		if (!x->dead)
			(void)RETRY(x, deadline,
				    libssh2_session_disconnect(x->session, "sistemo: done"));
		if (RETRY(x, deadline, libssh2_session_free(x->session)) != 0) {
			hang_up(x);
			(void)RETRY(x, now_ms() + CLOSE_TIMEOUT_MS,
				    libssh2_session_free(x->session));
		}
	}
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

/* --- the convenience runner ---------------------------------------------------------------- */

int
ssh_run(const struct ssh_target *t, const char *command, unsigned timeout_ms, struct strbuf *out,
	struct strbuf *errout, int *ret_code, struct err *err)
{
	cleanup_(ssh_exec) struct ssh_exec *x = NULL;
	struct ssh_target bounded = *t;
	int64_t deadline = now_ms() + timeout_ms;
	bool exited = false;
	int r;

	if (!command || timeout_ms == 0)
		return err_set(err, ERR_INVALID, "command", EINVAL,
			       "a command and a timeout are required");
	if (!bounded.connect_timeout_ms || bounded.connect_timeout_ms > timeout_ms)
		bounded.connect_timeout_ms = timeout_ms;
	if ((r = ssh_exec_start(&bounded, command, NULL, &x, err)) < 0)
		return r;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
				       "'%.64s' on %s did not finish within %u ms", command,
				       x->peer, timeout_ms);
		if ((r = ssh_exec_read(x, out, errout, (int)left, &exited, ret_code, err)) < 0)
			return r;
		if (exited)
			return 0;
		if (out->len + (errout ? errout->len : 0) > RUN_OUTPUT_MAX)
			return err_set(err, ERR_EXHAUSTED, NULL, EFBIG,
				       "'%.64s' on %s: output exceeds %d MiB", command, x->peer,
				       RUN_OUTPUT_MAX >> 20);
	}
}

/* --- quoting ------------------------------------------------------------------------------- */

int
ssh_shell_quote(struct strbuf *sb, const char *arg)
{
	size_t len0 = sb->len;
	int r = strbuf_append(sb, "'", 1);

	for (const char *p = arg; r == 0 && *p; p++)
		r = *p == '\'' ? strbuf_append(sb, "'\\''", 4) : strbuf_append(sb, p, 1);
	if (r == 0)
		r = strbuf_append(sb, "'", 1);
	if (r < 0 && sb->data) {
		sb->len = len0;
		sb->data[len0] = '\0';
	}
	return r;
}

/* --- the key pair -------------------------------------------------------------------------- */

/* Reads up to size-1 bytes (a small file) and NUL-terminates. */
static ssize_t
read_small(int fd, char *buf, size_t size)
{
	size_t n = 0;

	while (n < size - 1) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return (ssize_t)n;
}

/* Collects a child's stderr into buf (truncated) until EOF or the deadline. */
static int
collect_stderr(int fd, char *buf, size_t size, int64_t deadline)
{
	size_t n = 0;
	char scratch[512];

	for (;;) {
		int r = poll_until(fd, POLLIN, deadline);
		if (r < 0)
			return r;
		char *dst = n < size - 1 ? buf + n : scratch;
		size_t room = n < size - 1 ? size - 1 - n : sizeof(scratch);
		ssize_t got = read(fd, dst, room);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (dst == buf + n)
			n += (size_t)got;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	return 0;
}

/* Waits for pid (killing it at the deadline) and turns its status into an error. */
static int
reap(pid_t pid, bool timed_out, const char *what, const char *errtext, struct err *err)
{
	int status = 0;

	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_set(err, ERR_INTERNAL, NULL, errno, "%s: waitpid: %s", what,
				       strerror(errno));
	if (timed_out)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT, "%s: no result within %d ms",
			       what, KEYGEN_TIMEOUT_MS);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return err_set(err, ERR_INTERNAL, NULL, EIO, "%s: exit status %d%s%s", what,
			       WEXITSTATUS(status), *errtext ? ": " : "", errtext);
	return err_set(err, ERR_INTERNAL, NULL, EIO, "%s: killed by signal %d", what,
		       WTERMSIG(status));
}

/* Runs ssh-keygen with argv: stdin /dev/null, stdout to out_path (created 0644) or /dev/null,
 * stderr into the error message. Bounded by KEYGEN_TIMEOUT_MS. */
static int
keygen(char *const argv[], const char *out_path, const char *what, struct err *err)
{
	int pipefd[2], r;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	char errtext[512] = "";

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "%s: pipe: %s", what,
			       strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null",
					 out_path ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY, 0644);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (r != 0) {
		close(pipefd[0]);
		return err_set(err, ERR_PRECONDITION, NULL, r, "%s: cannot run %s: %s", what,
			       argv[0], strerror(r));
	}
	r = collect_stderr(pipefd[0], errtext, sizeof(errtext), now_ms() + KEYGEN_TIMEOUT_MS);
	close(pipefd[0]);
	return reap(pid, r < 0, what, errtext, err);
}

/* Creates dir 0700 when missing and opens it; refuses one not owned by root. */
static int
key_dir_open(const char *dir, struct err *err)
{
	cleanup_close int dfd = -1;
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create ssh key directory '%s': %s",
			       dir, strerror(errno));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open ssh key directory '%s': %s",
			       dir, strerror(errno));
	if (st.st_uid != 0)
		return err_set(err, ERR_PERMISSION, NULL, EPERM,
			       "ssh key directory '%s' is owned by uid %u, not root", dir,
			       (unsigned)st.st_uid);
	if ((st.st_mode & 07777) != 0700 && fchmod(dfd, 0700) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "chmod '%s': %s", dir,
			       strerror(errno));
	return TAKE_FD(dfd);
}

/* Checks one key file: absent (*ret_have false) or a root-owned regular file, given mode. */
static int
key_file_check(int dfd, const char *dir, const char *name, mode_t mode, bool *ret_have,
	       struct err *err)
{
	struct stat st;

	*ret_have = false;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, ERR_INTERNAL, NULL, errno, "stat '%s/%s': %s", dir, name,
			       strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return err_set(err, ERR_PRECONDITION, NULL, EINVAL, "'%s/%s' is not a regular file",
			       dir, name);
	if (st.st_uid != 0)
		return err_set(err, ERR_PERMISSION, NULL, EPERM,
			       "'%s/%s' is owned by uid %u, not root", dir, name,
			       (unsigned)st.st_uid);
	if ((st.st_mode & 07777) != mode && fchmodat(dfd, name, mode, 0) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "chmod '%s/%s': %s", dir, name,
			       strerror(errno));
	*ret_have = true;
	return 0;
}

static int
key_rename(int dfd, const char *dir, const char *from, const char *to, mode_t mode, struct err *err)
{
	if (fchmodat(dfd, from, mode, 0) < 0 || renameat(dfd, from, dfd, to) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "install '%s/%s': %s", dir, to,
			       strerror(errno));
	return 0;
}

/* ssh-keygen -q -t ed25519 -N '' -C sistemo -f <dir>/.sistemo_key.new, then renames the
 * public key and the private key into place (a crash in between is repaired next time). */
static int
key_generate(int dfd, const char *dir, struct err *err)
{
	char path[PATH_MAX], what[PATH_MAX + 32];
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/" KEY_NEW, dir) >= sizeof(path))
		return err_set(err, ERR_INVALID, "dir", ENAMETOOLONG, "ssh key path too long");
	snprintf(what, sizeof(what), "generate ssh key '%s/" KEY_NAME "'", dir);
	(void)unlinkat(dfd, KEY_NEW, 0);
	(void)unlinkat(dfd, KEY_NEW ".pub", 0);
	char *argv[] = {"ssh-keygen", "-q",      "-t", "ed25519", "-N", "",
			"-C",         "sistemo", "-f", path,      NULL};
	if ((r = keygen(argv, NULL, what, err)) < 0)
		return r;
	if ((r = key_rename(dfd, dir, KEY_NEW ".pub", KEY_NAME ".pub", 0644, err)) < 0)
		return r;
	log_info("created ssh key '%s/" KEY_NAME "'", dir);
	return key_rename(dfd, dir, KEY_NEW, KEY_NAME, 0600, err);
}

/* The private key is there but its public half is not: ssh-keygen -y -f sistemo_key. */
static int
key_derive_public(int dfd, const char *dir, struct err *err)
{
	char priv[PATH_MAX], tmp[PATH_MAX], what[PATH_MAX + 32];
	int r;

	if ((size_t)snprintf(priv, sizeof(priv), "%s/" KEY_NAME, dir) >= sizeof(priv) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/" KEY_NEW ".pub", dir) >= sizeof(tmp))
		return err_set(err, ERR_INVALID, "dir", ENAMETOOLONG, "ssh key path too long");
	snprintf(what, sizeof(what), "derive ssh public key from '%s'", priv);
	char *argv[] = {"ssh-keygen", "-y", "-f", priv, NULL};
	if ((r = keygen(argv, tmp, what, err)) < 0)
		return r;
	return key_rename(dfd, dir, KEY_NEW ".pub", KEY_NAME ".pub", 0644, err);
}

int
ssh_key_ensure(const char *dir, struct err *err)
{
	cleanup_close int dfd = key_dir_open(dir, err);
	bool have_priv, have_pub;
	int r;

	if (dfd < 0)
		return dfd;
	if ((r = key_file_check(dfd, dir, KEY_NAME, 0600, &have_priv, err)) < 0 ||
	    (r = key_file_check(dfd, dir, KEY_NAME ".pub", 0644, &have_pub, err)) < 0)
		return r;
	if (have_priv && have_pub)
		return 0;
	if (have_priv)
		return key_derive_public(dfd, dir, err);
	return key_generate(dfd, dir, err);
}

int
ssh_key_public(const char *dir, char *buf, size_t size, struct err *err)
{
	char path[PATH_MAX], line[4096];
	cleanup_close int fd = -1;

	if ((size_t)snprintf(path, sizeof(path), "%s/" KEY_NAME ".pub", dir) >= sizeof(path))
		return err_set(err, ERR_INVALID, "dir", ENAMETOOLONG, "ssh key path too long");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return err_set(err, errno == ENOENT ? ERR_NOT_FOUND : ERR_INTERNAL, NULL, errno,
			       "read ssh public key '%s': %s", path, strerror(errno));
	ssize_t n = read_small(fd, line, sizeof(line));
	if (n < 0)
		return err_set(err, ERR_INTERNAL, NULL, (int)-n, "read ssh public key '%s': %s",
			       path, strerror((int)-n));
	line[strcspn(line, "\r\n")] = '\0';
	if (!*line)
		return err_set(err, ERR_PRECONDITION, NULL, EINVAL, "ssh public key '%s' is empty",
			       path);
	if (strlen(line) >= size)
		return err_set(err, ERR_INVALID, NULL, ENOSPC,
			       "ssh public key '%s' does not fit in %zu bytes", path, size);
	memcpy(buf, line, strlen(line) + 1);
	return 0;
}
