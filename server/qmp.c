#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

#define QMP_LINE_MAX 8192

struct qmp {
	int fd;
	const char *path;
	int64_t deadline_ms; /* CLOCK_MONOTONIC */
	unsigned timeout_ms;
	size_t len;
	char buf[QMP_LINE_MAX];
	char line[QMP_LINE_MAX];
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
qmp_sockaddr(const char *path, struct sockaddr_un *sa, struct err *err)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG,
			       "qmp socket path '%s' is too long", path);
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

int
qmp_listen(const char *path, int *ret_fd, struct err *err)
{
	struct sockaddr_un sa;
	cleanup_close int fd = -1;
	int r = qmp_sockaddr(path, &sa, err);

	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "qmp socket: %s", strerror(errno));
	if (unlink(path) < 0 && errno != ENOENT)
		return err_set(err, ERR_INTERNAL, NULL, errno, "remove stale '%s': %s", path,
			       strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "listen on '%s': %s", path,
			       strerror(errno));
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* Waits for events on the socket until the deadline. */
static int
qmp_poll(struct qmp *q, short events, struct err *err)
{
	struct pollfd p = {.fd = q->fd, .events = events};
	int64_t left = q->deadline_ms - now_ms();
	int r;

	do
		r = poll(&p, 1, left > 0 ? (int)left : 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "qmp: poll: %s", strerror(errno));
	if (r == 0)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT, "qmp: no answer within %u ms",
			       q->timeout_ms);
	return 0;
}

/* Moves the next complete line (without "\r\n") into q->line. */
static bool
qmp_take_line(struct qmp *q)
{
	char *nl = memchr(q->buf, '\n', q->len);
	size_t n;

	if (!nl)
		return false;
	n = (size_t)(nl - q->buf);
	memcpy(q->line, q->buf, n);
	q->line[n] = '\0';
	if (n > 0 && q->line[n - 1] == '\r')
		q->line[n - 1] = '\0';
	q->len -= n + 1;
	memmove(q->buf, nl + 1, q->len);
	return true;
}

static int
qmp_read_line(struct qmp *q, struct err *err)
{
	while (!qmp_take_line(q)) {
		ssize_t n;
		int r;

		if (q->len == sizeof(q->buf))
			return err_set(err, ERR_INTERNAL, NULL, EMSGSIZE,
				       "qmp: message longer than %d bytes", QMP_LINE_MAX);
		r = qmp_poll(q, POLLIN, err);
		if (r < 0)
			return r;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return err_set(err, ERR_UNAVAILABLE, NULL, errno, "qmp: read: %s",
				       strerror(errno));
		if (n == 0)
			return err_set(err, ERR_UNAVAILABLE, NULL, ECONNRESET,
				       "qmp: qemu closed the connection");
		q->len += (size_t)n;
	}
	return 0;
}

static int
qmp_send(struct qmp *q, const char *msg, struct err *err)
{
	size_t off = 0, len = strlen(msg);

	while (off < len) {
		ssize_t n = send(q->fd, msg + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			int r = qmp_poll(q, POLLOUT, err);
			if (r < 0)
				return r;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(err, ERR_UNAVAILABLE, NULL, errno, "qmp: send: %s",
				       strerror(errno));
		off += (size_t)n;
	}
	return 0;
}

/* Copies the "desc" string of an error reply (escapes kept as they are). */
static void
qmp_error_desc(const char *line, char *out, size_t size)
{
	const char *d = strstr(line, "\"desc\": \"");
	size_t n = 0;

	if (!d) {
		snprintf(out, size, "%.*s", (int)(size - 1), line);
		return;
	}
	d += strlen("\"desc\": \"");
	while (d[n] && d[n] != '"' && n + 2 < size)
		n += d[n] == '\\' && d[n + 1] ? 2 : 1;
	snprintf(out, size, "%.*s", (int)n, d);
}

/* Waits for the reply to the last command; events arriving meanwhile are skipped. */
static int
qmp_reply(struct qmp *q, const char *command, struct err *err)
{
	char desc[512];

	for (;;) {
		int r = qmp_read_line(q, err);
		if (r < 0)
			return r;
		if (strncmp(q->line, "{\"return\"", 9) == 0)
			return 0;
		if (strncmp(q->line, "{\"error\"", 8) == 0) {
			qmp_error_desc(q->line, desc, sizeof(desc));
			return err_set(err, ERR_INTERNAL, NULL, EIO, "qmp: %s: %s", command, desc);
		}
	}
}

static int
qmp_connect(struct qmp *q, struct err *err)
{
	struct sockaddr_un sa;
	int r = qmp_sockaddr(q->path, &sa, err);

	if (r < 0)
		return r;
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (q->fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "qmp socket: %s", strerror(errno));
	/* AF_UNIX connects at once or fails (EAGAIN: backlog full); it never blocks here */
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return err_set(err, ERR_UNAVAILABLE, NULL, errno, "qmp: connect to '%s': %s",
			       q->path, strerror(errno));
	r = qmp_read_line(q, err);
	if (r < 0)
		return r;
	if (strncmp(q->line, "{\"QMP\"", 6) != 0)
		return err_set(err, ERR_INTERNAL, NULL, EPROTO, "qmp: unexpected greeting '%.64s'",
			       q->line);
	r = qmp_send(q, "{\"execute\":\"qmp_capabilities\"}\n", err);
	return r < 0 ? r : qmp_reply(q, "qmp_capabilities", err);
}

int
qmp_execute(const char *path, const char *command, unsigned timeout_ms, struct err *err)
{
	struct qmp *q = calloc(1, sizeof(*q));
	char msg[128];
	int r;

	if (!q)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "qmp: out of memory");
	q->fd = -1;
	q->path = path;
	q->timeout_ms = timeout_ms;
	q->deadline_ms = now_ms() + timeout_ms;
	r = qmp_connect(q, err);
	if (r == 0 && command) {
		snprintf(msg, sizeof(msg), "{\"execute\":\"%s\"}\n", command);
		r = qmp_send(q, msg, err);
		if (r == 0)
			r = qmp_reply(q, command, err);
	}
	if (q->fd >= 0)
		close(q->fd);
	free(q);
	return r;
}
