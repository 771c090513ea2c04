#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "vmm_impl.h"

#define READY_MARKER "sistemo: ready"
#define STOP_TERM_MS 1000 /* SIGTERM to SIGKILL */
#define STOP_KILL_MS 5000 /* SIGKILL to giving up (a process stuck in D state) */
#define TAIL_BYTES 320

const struct vmm_driver *
vmm_driver_find(const char *name)
{
	static const struct vmm_driver *const drivers[] = {&vmm_qemu, &vmm_firecracker};

	for (size_t i = 0; name && i < ARRAY_SIZE(drivers); i++)
		if (streq(drivers[i]->name, name))
			return drivers[i];
	return NULL;
}

void
vmm_mac_for_ip(uint32_t ip, char out[18])
{
	/* 0x52: locally administered, unicast */
	snprintf(out, 18, "52:54:%02x:%02x:%02x:%02x", (ip >> 24) & 0xff, (ip >> 16) & 0xff,
		 (ip >> 8) & 0xff, ip & 0xff);
}

void
vmm_argv_free(struct vmm_argv *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
	a->error = 0;
	a->v[0] = NULL;
}

int
vmm_argv_add(struct vmm_argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	if (a->error)
		return a->error;
	if (a->n >= VMM_ARGV_MAX)
		return a->error = -E2BIG;
	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return a->error = -ENOMEM;
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
	return 0;
}

int
vmm_config_check(const struct vmm_config *cfg, struct err *err)
{
	/* the longest socket path we create must fit sockaddr_un */
	const size_t sock_max = sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof("/qmp.sock");

	if (!cfg->id || !*cfg->id)
		return err_set(err, ERR_INVALID, "id", EINVAL, "machine id is empty");
	if (!cfg->run_dir || !*cfg->run_dir || strlen(cfg->run_dir) > sock_max)
		return err_set(err, ERR_INVALID, "run_dir", EINVAL,
			       "run directory '%s' is empty or longer than %zu bytes",
			       cfg->run_dir ? cfg->run_dir : "", sock_max);
	if (!cfg->kernel || !*cfg->kernel)
		return err_set(err, ERR_INVALID, "kernel", EINVAL, "no kernel");
	if (cfg->vcpus < 1 || cfg->memory_mb < 1)
		return err_set(err, ERR_INVALID, "vcpus", EINVAL,
			       "a machine needs at least 1 vcpu and 1 MiB of memory");
	if (cfg->n_disks > VMM_MAX_DISKS || (cfg->n_disks && !cfg->disks))
		return err_set(err, ERR_INVALID, "disks", EINVAL, "at most %d data disks",
			       VMM_MAX_DISKS);
	for (size_t i = 0; i < cfg->n_disks; i++)
		if (!cfg->disks[i] || !*cfg->disks[i])
			return err_set(err, ERR_INVALID, "disks", EINVAL,
				       "data disk %zu has no path", i + 1);
	return 0;
}

int
vmm_logs_rotate(const char *run_dir, struct err *err)
{
	static const char *const names[] = {"console.log", "vmm.log"};
	char from[PATH_MAX], to[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(from, sizeof(from), "%s/%s", run_dir, names[i]);
		snprintf(to, sizeof(to), "%s/%s.1", run_dir, names[i]);
		if (rename(from, to) < 0 && errno != ENOENT)
			return err_set(err, ERR_INTERNAL, NULL, errno, "rotate '%s': %s", from,
				       strerror(errno));
	}
	return 0;
}

int
vmm_log_open(const char *run_dir, const char *name, struct err *err)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", run_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open '%s': %s", path,
			       strerror(errno));
	return fd;
}

/* One line of text: newlines become " | ", other control bytes '?', carriage returns go. */
static void
tail_flatten(const char *s, size_t n, char *out, size_t size)
{
	size_t o = 0;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	for (size_t i = 0; i < n && o + 4 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			continue;
		if (c == '\n') {
			memcpy(out + o, " | ", 3);
			o += 3;
		} else {
			out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
		}
	}
	out[o] = '\0';
}

void
vmm_log_tail(const char *run_dir, const char *name, size_t max_bytes, char *out, size_t size)
{
	char path[PATH_MAX], buf[4096];
	cleanup_close int fd = -1;
	struct stat st;
	ssize_t n;
	off_t off;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", run_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	if (max_bytes > sizeof(buf))
		max_bytes = sizeof(buf);
	off = st.st_size > (off_t)max_bytes ? st.st_size - (off_t)max_bytes : 0;
	n = pread(fd, buf, max_bytes, off);
	if (n <= 0)
		return;
	const char *s = buf;
	if (off > 0) { /* start at a line */
		const char *nl = memchr(buf, '\n', (size_t)n);
		if (nl && nl + 1 < buf + n)
			s = nl + 1;
	}
	tail_flatten(s, (size_t)(buf + n - s), out, size);
}

int64_t
vmm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
vmm_pidfd_open(pid_t pid)
{
	int fd;

	if (pid <= 0)
		return -ESRCH;
	fd = pidfd_open(pid, 0);
	return fd < 0 ? -errno : fd;
}

int
vmm_wait_readable(int fd, unsigned timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r;

	do
		r = poll(&p, 1, timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r > 0;
}

/* Reaps pid if it is an exited child of ours; returns its wait status or -1. */
static int
vmm_reap(pid_t pid, int pidfd)
{
	siginfo_t si = {0};
	int r;

	if (pidfd >= 0)
		r = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG);
	else
		r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
	if (r < 0 || si.si_pid == 0)
		return -1; /* not our child (ECHILD), or still running */
	if (si.si_code == CLD_EXITED)
		return si.si_status << 8;
	return si.si_status & 0x7f; /* killed: the signal, as W_TERMSIG reads it */
}

/* "exited with status 1", "killed by signal 9", or "exited" when the status is unknown. */
static void
status_describe(int status, char *out, size_t size)
{
	if (status < 0)
		snprintf(out, size, "exited");
	else if (WIFEXITED(status))
		snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
	else
		snprintf(out, size, "killed by signal %d", WTERMSIG(status));
}

/* True when the NUL-separated cmdline names dir itself or a path under it. */
static bool
cmdline_names(const char *buf, size_t n, const char *dir)
{
	size_t dl = strlen(dir);

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	for (const char *p = buf; p < buf + n; p++) {
		p = memmem(p, (size_t)(buf + n - p), dir, dl);
		if (!p)
			return false;
		char next = p + dl < buf + n ? p[dl] : '\0';
		if (next == '\0' || next == '/' || next == ',')
			return true;
	}
	return false;
}

bool
vmm_alive(pid_t pid, const char *run_dir)
{
	char path[64], buf[65536];
	cleanup_close int fd = -1;
	size_t len = 0;
	ssize_t n;

	if (pid <= 0 || !run_dir || !*run_dir || kill(pid, 0) < 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		len += (size_t)n;
	}
	return cmdline_names(buf, len, run_dir); /* a zombie's cmdline is empty */
}

int
vmm_check_stopped(const char *run_dir, struct err *err)
{
	char path[PATH_MAX];
	FILE *f;
	int pid = 0;

	snprintf(path, sizeof(path), "%s/vmm.pid", run_dir);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid > 0 && vmm_alive(pid, run_dir))
		return err_set(err, ERR_EXISTS, NULL, EEXIST,
			       "a vmm already runs for '%s' (pid %d)", run_dir, pid);
	return 0;
}

/* The console scanner: the marker may straddle two reads, so the last bytes are carried. */
struct ready_scan {
	int fd;
	size_t carry;
	char buf[sizeof(READY_MARKER) - 1 + 4096];
};

/* Reads what was appended: 1 when the marker is in it, 0 when not yet, -errno. */
static int
ready_scan(struct ready_scan *s)
{
	const size_t m = strlen(READY_MARKER);

	for (;;) {
		ssize_t n = read(s->fd, s->buf + s->carry, sizeof(s->buf) - s->carry);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		size_t len = s->carry + (size_t)n;
		if (memmem(s->buf, len, READY_MARKER, m))
			return 1;
		s->carry = len < m - 1 ? len : m - 1;
		memmove(s->buf, s->buf + len - s->carry, s->carry);
	}
}

/* The error for a VMM that died (or was never there) before the guest was ready. */
static int
ready_dead(const char *run_dir, pid_t pid, int pidfd, struct err *err)
{
	char how[64], console[TAIL_BYTES + 64], vmmlog[TAIL_BYTES + 64];

	status_describe(vmm_reap(pid, pidfd), how, sizeof(how));
	vmm_log_tail(run_dir, "console.log", TAIL_BYTES, console, sizeof(console));
	vmm_log_tail(run_dir, "vmm.log", TAIL_BYTES, vmmlog, sizeof(vmmlog));
	return err_set(err, ERR_INTERNAL, NULL, ESRCH,
		       "vmm (pid %d) %s before the guest was ready; console: '%s'; vmm.log: '%s'",
		       (int)pid, how, console, vmmlog);
}

static int
ready_deadline(const char *run_dir, unsigned timeout_ms, struct err *err)
{
	char console[TAIL_BYTES + 64];

	vmm_log_tail(run_dir, "console.log", TAIL_BYTES, console, sizeof(console));
	return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
		       "guest not ready after %u ms; console: '%s'", timeout_ms, console);
}

/* inotify on console.log (watched before the first read, so no append is missed) and a
 * timerfd armed for the deadline. */
static int
ready_open(const char *run_dir, unsigned timeout_ms, int *ino, int *log, int *tfd, struct err *err)
{
	struct itimerspec its = {.it_value = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L}};
	char path[PATH_MAX];

	if (timeout_ms == 0)
		its.it_value.tv_nsec = 1; /* zero would disarm it */
	snprintf(path, sizeof(path), "%s/console.log", run_dir);
	if ((*ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) < 0 ||
	    (*log = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640)) < 0 ||
	    inotify_add_watch(*ino, path, IN_MODIFY) < 0 ||
	    (*tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0 ||
	    timerfd_settime(*tfd, 0, &its, NULL) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "watch '%s': %s", path,
			       strerror(errno));
	return 0;
}

static void
drain(int fd)
{
	char buf[4096];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int
vmm_wait_ready(const char *run_dir, pid_t pid, unsigned timeout_ms, struct err *err)
{
	cleanup_close int pidfd = vmm_pidfd_open(pid), ino = -1, tfd = -1;
	struct ready_scan s = {.fd = -1};
	int r;

	if (pidfd < 0 || !vmm_alive(pid, run_dir))
		return ready_dead(run_dir, pid, pidfd, err);
	r = ready_open(run_dir, timeout_ms, &ino, &s.fd, &tfd, err);
	while (r == 0 && (r = ready_scan(&s)) == 0) {
		struct pollfd p[3] = {{ino, POLLIN, 0}, {pidfd, POLLIN, 0}, {tfd, POLLIN, 0}};
		if (poll(p, 3, -1) < 0) {
			r = errno == EINTR ? 0 : -errno;
			continue;
		}
		if (p[1].revents)
			r = ready_dead(run_dir, pid, pidfd, err);
		else if (p[2].revents)
			r = ready_deadline(run_dir, timeout_ms, err);
		else
			drain(ino);
	}
	if (s.fd >= 0)
		close(s.fd);
	if (r < 0 && err->code == ERR_OK)
		err_set(err, ERR_INTERNAL, NULL, -r, "read console of '%s': %s", run_dir,
			strerror(-r));
	return r < 0 ? r : 0;
}

/* Sends sig through the pidfd and waits up to timeout_ms for the exit: 1 exited, 0 not. */
static int
stop_signal(int pidfd, int sig, unsigned timeout_ms)
{
	if (pidfd_send_signal(pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
		return -errno;
	return vmm_wait_readable(pidfd, timeout_ms);
}

int
vmm_stop(const struct vmm_driver *d, const char *run_dir, pid_t pid, unsigned grace_ms,
	 bool *ret_clean, struct err *err)
{
	cleanup_close int pidfd = vmm_pidfd_open(pid);
	struct err req = {0};

	*ret_clean = true;
	if (pidfd < 0 || !vmm_alive(pid, run_dir)) {
		vmm_reap(pid, pidfd); /* a zombie child of ours, or already gone */
		return 0;
	}
	if (d && d->request_shutdown(run_dir, pid, &req) < 0)
		log_warn("%s: stop '%s': %s; sending SIGTERM", d->name, run_dir, req.msg);
	else if (vmm_wait_readable(pidfd, grace_ms) > 0)
		goto exited;
	*ret_clean = false;
	if (stop_signal(pidfd, SIGTERM, STOP_TERM_MS) > 0)
		goto exited;
	log_warn("vmm pid %d ignored SIGTERM for %d ms; sending SIGKILL", (int)pid, STOP_TERM_MS);
	if (stop_signal(pidfd, SIGKILL, STOP_KILL_MS) <= 0)
		return err_set(err, ERR_INTERNAL, NULL, ETIMEDOUT,
			       "vmm pid %d did not exit %d ms after SIGKILL", (int)pid,
			       STOP_KILL_MS);
exited:
	vmm_reap(pid, pidfd);
	return 0;
}
