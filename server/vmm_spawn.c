/* Starting a VMM process from the multithreaded daemon: fork+exec where the child only makes
 * async-signal-safe calls, and the parent learns through a close-on-exec pipe whether the exec
 * happened or which step failed. */
#include "vmm_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

extern char **environ;

#define SPAWN_GRACE_MS 1000 /* a VMM that failed to start gets this long to exit by itself */

enum spawn_step { STEP_SETSID = 1, STEP_CGROUP, STEP_NETNS, STEP_FDS, STEP_EXEC };

struct spawn_failure {
	int step;
	int errnum;
};

struct spawn_fds {
	int null, out, err, pass; /* become 0, 1, 2 and VMM_QMP_FD */
	int cgroup, netns, report;
};

static void __attribute__((noreturn)) child_fail(int report, int step)
{
	struct spawn_failure f = {step, errno};
	ssize_t n = write(report, &f, sizeof(f));

	(void)n;
	_exit(127);
}

/* Exec keeps ignored signals and the mask: a daemon blocking SIGTERM for its signalfd would
 * hand QEMU a SIGTERM it never sees. */
static void
child_reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t none;

	for (int sig = 1; sig < _NSIG; sig++)
		sigaction(sig, &sa, NULL); /* SIGKILL, SIGSTOP and libc's own refuse: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Puts the fds in place as 0..3; sources are first copied above 10 so that none is
 * overwritten before it is copied. */
static int
child_move_fds(const struct spawn_fds *f)
{
	int src[4] = {f->null, f->out >= 0 ? f->out : f->null, f->err >= 0 ? f->err : f->null,
		      f->pass};
	int tmp[4];

	for (int i = 0; i < 4; i++) {
		tmp[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, 10) : -1;
		if (src[i] >= 0 && tmp[i] < 0)
			return -1;
	}
	for (int i = 0; i < 4; i++)
		if (tmp[i] >= 0 && dup2(tmp[i], i) < 0)
			return -1;
	/* everything else closes at exec (the report pipe must stay open until then) */
	close_range(f->pass >= 0 ? 4 : 3, ~0U, CLOSE_RANGE_CLOEXEC);
	return 0;
}

/* Runs in the forked child: async-signal-safe calls only. */
static void __attribute__((noreturn))
spawn_child(const struct spawn_fds *f, char *const *argv, char *const *envp)
{
	child_reset_signals();
	if (setsid() < 0)
		child_fail(f->report, STEP_SETSID);
	/* "0" moves the writing process (cgroup v1 tasks and cgroup.procs, v2 cgroup.procs) */
	if (f->cgroup >= 0 && write(f->cgroup, "0", 1) != 1)
		child_fail(f->report, STEP_CGROUP);
	if (f->netns >= 0 && setns(f->netns, CLONE_NEWNET) < 0)
		child_fail(f->report, STEP_NETNS);
	if (child_move_fds(f) < 0)
		child_fail(f->report, STEP_FDS);
	execve(argv[0], argv, envp);
	child_fail(f->report, STEP_EXEC);
}

/* cgroup.procs (v2, and v1's thread-group file), else v1's tasks. */
static int
open_cgroup(const char *dir, struct err *err)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		snprintf(path, sizeof(path), "%s/tasks", dir);
		fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return err_set(err, ERR_PRECONDITION, NULL, errno, "cgroup '%s': %s", dir,
			       strerror(errno));
	return fd;
}

static int
spawn_open(const struct vmm_spawn *s, struct spawn_fds *f, struct err *err)
{
	f->null = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (f->null < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open /dev/null: %s",
			       strerror(errno));
	if (s->cgroup && (f->cgroup = open_cgroup(s->cgroup, err)) < 0)
		return f->cgroup;
	if (s->netns_path && (f->netns = open(s->netns_path, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set(err, errno == ENOENT ? ERR_PRECONDITION : ERR_INTERNAL, NULL, errno,
			       "network namespace '%s': %s", s->netns_path, strerror(errno));
	return 0;
}

static int
spawn_failed(const struct vmm_spawn *s, pid_t pid, const struct spawn_failure *f, struct err *err)
{
	const char *what = f->step == STEP_SETSID   ? "start a session"
			   : f->step == STEP_CGROUP ? "join cgroup"
			   : f->step == STEP_NETNS  ? "enter network namespace"
			   : f->step == STEP_FDS    ? "set up its files"
						    : "exec";
	const char *arg = f->step == STEP_CGROUP  ? s->cgroup
			  : f->step == STEP_NETNS ? s->netns_path
						  : s->argv[0];

	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return err_set(err, f->errnum == ENOENT ? ERR_PRECONDITION : ERR_INTERNAL, NULL, f->errnum,
		       "spawn '%s': %s '%s': %s", s->argv[0], what, arg, strerror(f->errnum));
}

static void
close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

int
vmm_spawn(const struct vmm_spawn *s, pid_t *ret_pid, struct err *err)
{
	struct spawn_fds f = {-1, s->stdout_fd, s->stderr_fd, s->pass_fd, -1, -1, -1};
	struct spawn_failure failure;
	int pipefd[2] = {-1, -1}, r;
	ssize_t n = 0;
	pid_t pid = -1;

	r = spawn_open(s, &f, err);
	if (r == 0 && pipe2(pipefd, O_CLOEXEC) < 0)
		r = err_set(err, ERR_INTERNAL, NULL, errno, "pipe: %s", strerror(errno));
	f.report = pipefd[1];
	if (r == 0 && (pid = fork()) < 0)
		r = err_set(err, ERR_INTERNAL, NULL, errno, "fork: %s", strerror(errno));
	if (pid == 0)
		spawn_child(&f, s->argv, environ);
	close_all((int[]){f.null, f.cgroup, f.netns, pipefd[1]}, 4);
	/* EOF: the exec happened (the pipe closed on it); a record: the step that failed */
	while (r == 0 && (n = read(pipefd[0], &failure, sizeof(failure))) < 0 && errno == EINTR)
		;
	close_all(&pipefd[0], 1);
	if (r == 0 && n == (ssize_t)sizeof(failure))
		r = spawn_failed(s, pid, &failure, err);
	if (r == 0)
		*ret_pid = pid;
	return r;
}

int
vmm_spawn_abort(pid_t pid, const char *run_dir, const char *what, const char *why, struct err *err)
{
	int pidfd = vmm_pidfd_open(pid), status = 0;
	char tail[900], how[600];
	bool killed;

	/* it may be exiting by itself (its monitor closed): its status then tells more */
	killed = pidfd < 0 || vmm_wait_readable(pidfd, SPAWN_GRACE_MS) <= 0;
	if (killed)
		kill(pid, SIGKILL);
	if (pidfd >= 0)
		close(pidfd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (killed)
		snprintf(how, sizeof(how), "did not start (%s)", why ? why : "no answer");
	else if (WIFEXITED(status))
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
	vmm_log_tail(run_dir, "vmm.log", 800, tail, sizeof(tail));
	return err_set(err, ERR_INTERNAL, NULL, EIO, "%s %s: %s", what, how,
		       tail[0] ? tail : "vmm.log is empty");
}
