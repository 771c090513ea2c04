#include "jail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"

#define CLONE_STACK (256 * 1024)
#define EXIT_NAMESPACES 125 /* the child could not set up its namespaces */

/* Never needed by a package manager or its scripts. */
static const int dropped_caps[] = {
	CAP_SYS_MODULE, CAP_SYS_RAWIO,     CAP_SYS_TIME,   CAP_SYS_BOOT,
	CAP_NET_ADMIN,  CAP_SYS_PTRACE,    CAP_MAC_ADMIN,  CAP_MAC_OVERRIDE,
	CAP_SYSLOG,     CAP_AUDIT_CONTROL, CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND,
	CAP_SYS_PACCT,  CAP_BPF,           CAP_PERFMON,    CAP_LINUX_IMMUTABLE,
};

/* Dropped too unless allow_mounts: with them, code in the jail could mount a device node it
 * made, or chroot its way around. */
static const int mount_caps[] = {CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_CHROOT};

static const struct {
	const char *path;
	unsigned major, minor;
} devices[] = {
	{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
	{"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

struct child {
	const struct jail *j;
	int out;  /* write end of the output pipe */
	int exec; /* write end of a close-on-exec pipe: execve's errno when it fails */
};

/* Says which step failed on stderr (the output pipe), then exits. Async-signal-safe. */
static _Noreturn void
die(const char *step)
{
	char num[16];
	int e = errno, n = sizeof(num);
	const char *prefix = "jail: cannot ";

	num[--n] = '\n';
	do
		num[--n] = (char)('0' + e % 10);
	while ((e /= 10) && n > 0);
	if (write(2, prefix, strlen(prefix)) < 0 || write(2, step, strlen(step)) < 0 ||
	    write(2, ": errno ", 8) < 0 || write(2, num + n, sizeof(num) - (size_t)n) < 0)
		_exit(EXIT_NAMESPACES);
	_exit(EXIT_NAMESPACES);
}

/* A directory to mount on, inside the new root: made when missing, refused when a link or
 * anything but a directory is there. */
static bool
mount_point(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT && mkdir(path, 0755) == 0;
	return S_ISDIR(st.st_mode);
}

/* Bind the tree onto itself (pivot_root wants a mount point), pivot into it, detach the old
 * root, then its own /proc and /dev. Async-signal-safe calls only. */
static void
enter_root(const char *root)
{
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		die("bind the tree onto itself");
	if (chdir(root) < 0)
		die("enter the tree");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root into the tree");
	if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		die("detach the host's tree");
	if (!mount_point("/proc") ||
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount /proc in the tree");
	if (!mount_point("/dev") ||
	    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m") < 0)
		die("mount /dev in the tree");
	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		const char *path = devices[i].path;
		if (mknod(path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) < 0 ||
		    chmod(path, 0666) < 0)
			die(path);
	}
	if (symlink("/proc/self/fd", "/dev/fd") < 0 ||
	    symlink("/proc/self/fd/0", "/dev/stdin") < 0 ||
	    symlink("/proc/self/fd/1", "/dev/stdout") < 0 ||
	    symlink("/proc/self/fd/2", "/dev/stderr") < 0)
		die("link /dev/fd");
	if (!mount_point("/tmp"))
		die("find /tmp in the tree");
}

/* PID 1 of the new namespaces. A copy of the daemon made by clone() without its threads:
 * async-signal-safe calls only. */
static int
child_main(void *arg)
{
	const struct child *c = arg;
	const struct jail *j = c->j;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;
	int null;

	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* the daemon gone (killed), the namespaces go too */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(c->out, 1) < 0 || dup2(c->out, 2) < 0)
		_exit(EXIT_NAMESPACES);
	/* mount --make-rprivate /: nothing mounted here reaches the host */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make the mounts private");
	if (j->root)
		enter_root(j->root);
	else if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount /proc");
	for (size_t i = 0; i < ARRAY_SIZE(dropped_caps); i++)
		prctl(PR_CAPBSET_DROP, dropped_caps[i], 0, 0, 0);
	for (size_t i = 0; !j->allow_mounts && i < ARRAY_SIZE(mount_caps); i++)
		prctl(PR_CAPBSET_DROP, mount_caps[i], 0, 0, 0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("set no_new_privs");
	execve(j->argv[0], (char *const *)j->argv, (char *const *)j->env);
	int e = errno;
	if (write(c->exec, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct reader {
	const struct jail *j;
	char line[JAIL_LINE_MAX];
	size_t len;
	char error[JAIL_LINE_MAX]; /* the last error_prefix line, else the last line */
};

static bool
starts(const char *s, const char *prefix)
{
	return prefix && strncmp(s, prefix, strlen(prefix)) == 0;
}

static void
reader_line(struct reader *rd)
{
	const char *prefix = rd->j->error_prefix;

	rd->line[rd->len] = '\0';
	rd->len = 0;
	if (!rd->line[0])
		return;
	log_debug("%s: %s", rd->j->what, rd->line);
	if (starts(rd->line, prefix) || !starts(rd->error, prefix))
		snprintf(rd->error, sizeof(rd->error), "%s", rd->line);
	if (rd->j->line)
		rd->j->line(rd->j->ud, rd->line);
}

/* Reads the output to its end (every process of the namespace gone) or the deadline. */
static int
read_output(int out, struct reader *rd, long long deadline)
{
	char buf[4096];

	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = out, .events = POLLIN};
		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		ssize_t n = read(out, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n')
				reader_line(rd);
			else if (rd->len + 1 < sizeof(rd->line))
				rd->line[rd->len++] = buf[i];
		}
	}
	if (rd->len)
		reader_line(rd);
	return 0;
}

/* Reaps the child; past the deadline (or when its output ended but it lingers 10 s) it is
 * killed first, and with it its PID namespace. */
static int
reap(pid_t pid, bool late, int *ret_status)
{
	cleanup_close int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	if (late || (pidfd >= 0 && poll(&p, 1, 10000) == 0))
		kill(pid, SIGKILL);
	while (waitpid(pid, ret_status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static int
result(const struct jail *j, int read_r, int status, int exec_errno, const struct reader *rd,
       struct err *err)
{
	if (read_r == -ETIMEDOUT)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
			       "%s did not finish in %u minutes", j->what, j->timeout_ms / 60000);
	if (read_r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -read_r, "%s: %s", j->what,
			       strerror(-read_r));
	if (WIFSIGNALED(status))
		return err_set(err, ERR_INTERNAL, NULL, EINTR, "%s killed by signal %d", j->what,
			       WTERMSIG(status));
	if (WEXITSTATUS(status) == EXIT_NAMESPACES)
		return err_set(err, ERR_PRECONDITION, NULL, EPERM,
			       "cannot give %s its own namespaces%s%s%s", j->what,
			       j->root ? " and root tree" : "", rd->error[0] ? ": " : "",
			       rd->error);
	if (exec_errno)
		return err_set(err, ERR_INTERNAL, NULL, exec_errno, "cannot run '%s'%s: %s",
			       j->argv[0], j->root ? " in the tree" : "", strerror(exec_errno));
	if (WEXITSTATUS(status) != 0)
		return err_set(err, ERR_INTERNAL, NULL, EIO, "%s failed (exit status %d)%s%s",
			       j->what, WEXITSTATUS(status), rd->error[0] ? ": " : "", rd->error);
	return 0;
}

int
jail_run(const struct jail *j, struct err *err)
{
	cleanup_free struct reader *rd = calloc(1, sizeof(*rd));
	cleanup_free char *stack = malloc(CLONE_STACK);
	int flags = CLONE_NEWNS | CLONE_NEWPID | (j->no_network ? CLONE_NEWNET : 0) | SIGCHLD;
	int pipefd[2], execfd[2], status = 0, exec_errno = 0, r;
	pid_t pid;

	if (!rd || !stack)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "pipe: %s", strerror(errno));
	if (pipe2(execfd, O_CLOEXEC) < 0) {
		r = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return err_set(err, ERR_INTERNAL, NULL, r, "pipe: %s", strerror(r));
	}
	struct child c = {.j = j, .out = pipefd[1], .exec = execfd[1]};
	pid = clone(child_main, stack + CLONE_STACK, flags, &c);
	r = pid < 0 ? -errno : 0;
	close(pipefd[1]);
	close(execfd[1]);
	if (r < 0) {
		close(pipefd[0]);
		close(execfd[0]);
		return err_set(err, ERR_INTERNAL, NULL, -r, "start %s in new namespaces: %s",
			       j->what, strerror(-r));
	}
	rd->j = j;
	int read_r = read_output(pipefd[0], rd, now_ms() + j->timeout_ms);
	close(pipefd[0]);
	r = reap(pid, read_r < 0, &status);
	/* the child has exited: its end of execfd is closed, so this read does not block */
	if (read(execfd[0], &exec_errno, sizeof(exec_errno)) != (ssize_t)sizeof(exec_errno))
		exec_errno = 0;
	close(execfd[0]);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "wait for %s: %s", j->what,
			       strerror(-r));
	return result(j, read_r, status, exec_errno, rd, err);
}
