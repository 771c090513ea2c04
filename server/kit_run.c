#include "kit_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

extern char **environ;

#define DEFAULT_TIMEOUT_MS 120000u

static const char *
prog_name(const struct kit_cmd *cmd)
{
	const char *slash = strrchr(cmd->argv[0], '/');

	return slash ? slash + 1 : cmd->argv[0];
}

static bool
env_named(const char *entry, const char *const *list)
{
	size_t n = strcspn(entry, "=");

	for (; list && *list; list++)
		if (strncmp(*list, entry, n) == 0 && (*list)[n] == '=')
			return true;
	return false;
}

/* The extras, LC_ALL=C, then the caller's environment minus locale settings and the names
 * the extras set. Entries are borrowed; free only the array. */
static char **
env_build(const char *const *extra)
{
	static const char *const locale[] = {"LANG=", "LANGUAGE=", "LC_ALL=", NULL};
	size_t n = 0, k = 0;

	for (char **e = environ; e && *e; e++)
		n++;
	for (const char *const *x = extra; x && *x; x++)
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (const char *const *x = extra; x && *x; x++)
		env[k++] = (char *)*x;
	env[k++] = "LC_ALL=C";
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "LC_", 3) != 0 && !env_named(*e, locale) && !env_named(*e, extra))
			env[k++] = *e;
	env[k] = NULL;
	return env;
}

/* Spawns with stdin from a file, stdout/stderr onto the given fds, every signal default and
 * unblocked (the daemon's threads may block some). Returns 0 or a positive errno. */
static int
spawn(const struct kit_cmd *cmd, int out_fd, int err_fd, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	cleanup_free char **env = env_build(cmd->env);
	int r;

	if (!env)
		return ENOMEM;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, cmd->stdin_path ? cmd->stdin_path : "/dev/null",
					 O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	if (cmd->cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cmd->cwd);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawnp(ret_pid, cmd->argv[0], &fa, &attr, (char *const *)cmd->argv, env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return r;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is there into sb (bounded). Returns 1 while open, 0 at end of file. */
static int
pump(int fd, struct strbuf *sb)
{
	char buf[16384];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : 0;
	if (n == 0)
		return 0;
	if (sb && sb->len < KIT_RUN_CAPTURE_MAX) {
		size_t room = KIT_RUN_CAPTURE_MAX - sb->len;
		strbuf_append(sb, buf, (size_t)n < room ? (size_t)n : room);
	}
	return 1;
}

struct child {
	pid_t pid;
	int pidfd;   /* -1 when the kernel has no pidfd_open: reaped after the pipes close */
	int fds[2];  /* stdout, stderr pipes; -1 once closed or not captured */
	bool exited; /* reaped; status holds the waitpid status */
	int status;
};

static void
child_reap(struct child *c)
{
	while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
		;
	c->exited = true;
}

/* One round of poll: drains the pipes, reaps the child when it is done. Returns 0 or
 * -ETIMEDOUT when the deadline passed. */
static int
child_step(struct child *c, struct strbuf *outs[2], long long deadline)
{
	struct pollfd p[3];
	int n = 0, idx[3];
	long long left = deadline - now_ms();

	if (left <= 0)
		return -ETIMEDOUT;
	for (int i = 0; i < 2; i++)
		if (c->fds[i] >= 0) {
			idx[n] = i;
			p[n++] = (struct pollfd){.fd = c->fds[i], .events = POLLIN};
		}
	if (!c->exited && c->pidfd >= 0) {
		idx[n] = 2;
		p[n++] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
	}
	if (n == 0) {
		child_reap(c); /* no pidfd: the pipes closed, the child is exiting */
		return 0;
	}
	if (poll(p, (nfds_t)n, (int)(left > 60000 ? 60000 : left)) < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++) {
		if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (idx[i] == 2) {
			child_reap(c);
		} else if (pump(c->fds[idx[i]], outs[idx[i]]) == 0) {
			close(c->fds[idx[i]]);
			c->fds[idx[i]] = -1;
		}
	}
	return 0;
}

static int
child_wait(struct child *c, struct strbuf *outs[2], unsigned timeout_ms)
{
	long long deadline = now_ms() + (timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS);
	int r = 0;

	while (r == 0 && !(c->exited && c->fds[0] < 0 && c->fds[1] < 0))
		r = child_step(c, outs, deadline);
	if (r < 0 && !c->exited) {
		kill(c->pid, SIGKILL);
		child_reap(c);
	}
	for (int i = 0; i < 2; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	if (c->pidfd >= 0)
		close(c->pidfd);
	return r;
}

static int
open_stdout(const struct kit_cmd *cmd, int pipe_out[2])
{
	if (!cmd->stdout_path)
		return pipe2(pipe_out, O_CLOEXEC) < 0 ? -errno : 0;
	pipe_out[0] = -1;
	pipe_out[1] =
		open(cmd->stdout_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return pipe_out[1] < 0 ? -errno : 0;
}

static int
run_error(const struct kit_cmd *cmd, int r, struct err *err)
{
	if (r == -ETIMEDOUT)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT, "'%s' did not finish in time",
			       prog_name(cmd));
	return err_set(err, ERR_INTERNAL, NULL, -r, "run '%s': %s", prog_name(cmd), strerror(-r));
}

int
kit_run(const struct kit_cmd *cmd, struct strbuf *out, struct strbuf *errout, struct err *err)
{
	int po[2], pe[2];
	struct child c = {.pidfd = -1};
	struct strbuf *outs[2] = {out, errout};
	int r = open_stdout(cmd, po);

	if (r < 0)
		return run_error(cmd, r, err);
	if (pipe2(pe, O_CLOEXEC) < 0) {
		r = -errno;
		close(po[1]);
		if (po[0] >= 0)
			close(po[0]);
		return run_error(cmd, r, err);
	}
	r = -spawn(cmd, po[1], pe[1], &c.pid);
	close(po[1]);
	close(pe[1]);
	c.fds[0] = po[0];
	c.fds[1] = pe[0];
	if (r < 0) {
		c.exited = true;
		child_wait(&c, outs, 1);
		return run_error(cmd, r, err);
	}
	c.pidfd = (int)syscall(SYS_pidfd_open, c.pid, 0);
	r = child_wait(&c, outs, cmd->timeout_ms);
	if (r < 0)
		return run_error(cmd, r, err);
	if (WIFSIGNALED(c.status))
		return err_set(err, ERR_INTERNAL, NULL, EINTR, "'%s' killed by signal %d",
			       prog_name(cmd), WTERMSIG(c.status));
	return WEXITSTATUS(c.status);
}

void
kit_run_last_line(const char *text, char *buf, size_t size)
{
	const char *end = text ? text + strlen(text) : NULL;

	buf[0] = '\0';
	if (!text)
		return;
	while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		end--;
	const char *start = end;
	while (start > text && start[-1] != '\n')
		start--;
	snprintf(buf, size, "%.*s", (int)(end - start), start);
}

int
kit_run_ok(const struct kit_cmd *cmd, struct strbuf *out, struct err *err)
{
	cleanup_strbuf struct strbuf errout = {0};
	char line[512];
	int r = kit_run(cmd, out, &errout, err);

	if (r <= 0)
		return r;
	kit_run_last_line(errout.data, line, sizeof(line));
	if (!line[0] && out)
		kit_run_last_line(out->data, line, sizeof(line));
	return err_set(err, ERR_INTERNAL, NULL, EIO, "'%s' failed (exit status %d)%s%s",
		       prog_name(cmd), r, line[0] ? ": " : "", line);
}
