#include "kit_kernel.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <mbedtls/sha256.h>

#include "kit.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

extern char **environ;

#define SOURCE_TARBALL "/usr/src/linux-source-6.1.tar.xz"
#define SOURCE_DIR "linux-source-6.1"
#define PACKAGES "linux-source-6.1 flex bison libelf-dev bc"
#define BUILT_KERNEL "bzImage-sistemo"
#define BUILT_VMLINUX "vmlinux-sistemo"
#define BUILT_CONFIG "config-sistemo"
#define BUILD_LOCK ".build.lock"
#define BUILD_PREFIX "kernel-build-"
#define NICE "10"
#define ARGV_MAX 256
#define CANCEL_CHECK_MS 500
#define STOP_GRACE_MS 10000
#define TAIL_MAX 4096
#define OUT_LINE_MAX 1024
#define CONFIG_MAX (1u << 20)

const char *const kit_kernel_options_on[] = {
	/* devices: virtio-mmio, also from the command line (Firecracker), and the serial console */
	"VIRTIO", "VIRTIO_MENU", "VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES", "VIRTIO_BLK",
	"VIRTIO_NET", "HW_RANDOM", "HW_RANDOM_VIRTIO", "VSOCKETS", "VIRTIO_VSOCKETS", "BLK_DEV",
	"NETDEVICES", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE",
	/* the root disk without an initramfs, and eth0 from ip= */
	"EXT4_FS", "DEVTMPFS", "DEVTMPFS_MOUNT", "NET", "INET", "UNIX", "IP_PNP",
	/* the power button as /dev/input/event* for acpid */
	"ACPI", "ACPI_BUTTON", "INPUT", "INPUT_EVDEV",
	/* busybox, dropbear and systemd */
	"POSIX_TIMERS", "FUTEX", "CGROUPS", "INOTIFY_USER", "SIGNALFD", "TIMERFD", "EPOLL",
	"FHANDLE", "AUTOFS_FS", "TMPFS", "TMPFS_POSIX_ACL", "TMPFS_XATTR", "SECCOMP",
	"SECCOMP_FILTER", "PROC_FS", "SYSFS", "UNIX98_PTYS", "BINFMT_ELF", "BINFMT_SCRIPT", NULL};

/* No modules: nothing to load without an initramfs. The rest only saves compile time. WERROR:
 * a new compiler warning must not fail the build. */
const char *const kit_kernel_options_off[] = {"MODULES", "DRM",      "SOUND",  "USB_SUPPORT",
					      "WLAN",    "WIRELESS", "WERROR", NULL};

struct build {
	char kdir[PATH_MAX];  /* <data_dir>/kernel */
	char tmp[PATH_MAX];   /* <data_dir>/tmp/kernel-build-XXXXXX */
	char src[PATH_MAX];   /* <tmp>/linux-source-6.1 */
	char stale[PATH_MAX]; /* <data_dir>/tmp */
	kit_percent_fn progress;
	bool (*cancelled)(void *ud);
	void *ud;
	unsigned n_cc, percent;
	char tail[TAIL_MAX]; /* the last lines the running program printed */
	size_t tail_len;
};

typedef void (*line_fn)(struct build *b, const char *line);

/* A program of the build: its process group, output pipe (stdout and stderr) and exit. */
struct proc {
	pid_t pid;
	int pidfd; /* -1 without pidfd_open */
	int fd;    /* -1 at end of file */
	bool exited;
	char line[OUT_LINE_MAX];
	size_t len;
	line_fn on_line;
};

static void report(struct build *b, const char *step, unsigned percent, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
report(struct build *b, const char *step, unsigned percent, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	b->percent = percent;
	log_debug("kit: kernel %s: %s", step, msg);
	if (b->progress)
		b->progress(b->ud, step, percent, msg);
}

/* --- the pure pieces ---------------------------------------------------------------------- */

int
kit_kernel_config_argv(const char **argv, size_t n, size_t max)
{
	size_t on = 0, off = 0;

	while (kit_kernel_options_on[on])
		on++;
	while (kit_kernel_options_off[off])
		off++;
	if (n + 2 * (on + off) + 3 + 1 > max)
		return -E2BIG;
	for (size_t i = 0; i < on; i++) {
		argv[n++] = "-e";
		argv[n++] = kit_kernel_options_on[i];
	}
	for (size_t i = 0; i < off; i++) {
		argv[n++] = "-d";
		argv[n++] = kit_kernel_options_off[i];
	}
	argv[n++] = "--set-str";
	argv[n++] = "LOCALVERSION";
	argv[n++] = KIT_KERNEL_LOCALVERSION;
	argv[n] = NULL;
	return (int)n;
}

/* The value of CONFIG_<name> in a .config ("y", "m", "\"str\"" up to the line end), or NULL
 * when the option is absent or "is not set". */
static const char *
config_value(const char *config, const char *name)
{
	size_t len = strlen(name);

	for (const char *l = config; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (strncmp(l, "CONFIG_", 7) == 0 && strncmp(l + 7, name, len) == 0 &&
		    l[7 + len] == '=')
			return l + 8 + len;
	return NULL;
}

static void
missing_add(char *buf, size_t size, size_t *n, const char *name, char want)
{
	size_t used = strlen(buf);

	if (used < size)
		snprintf(buf + used, size - used, "%s%s=%c", *n ? ", " : "", name, want);
	(*n)++;
}

size_t
kit_kernel_config_missing(const char *config, char *buf, size_t size)
{
	size_t n = 0;

	if (size)
		buf[0] = '\0';
	for (size_t i = 0; kit_kernel_options_on[i]; i++) {
		const char *v = config_value(config, kit_kernel_options_on[i]);
		if (!v || v[0] != 'y' || (v[1] != '\n' && v[1] != '\0'))
			missing_add(buf, size, &n, kit_kernel_options_on[i], 'y');
	}
	for (size_t i = 0; kit_kernel_options_off[i]; i++) {
		const char *v = config_value(config, kit_kernel_options_off[i]);
		if (v && (v[0] == 'y' || v[0] == 'm'))
			missing_add(buf, size, &n, kit_kernel_options_off[i], 'n');
	}
	return n;
}

const char *
kit_kernel_cc_object(const char *line)
{
	if (strncmp(line, "  CC ", 5) != 0)
		return NULL;
	line += 5 + strspn(line + 5, " ");
	return *line ? line : NULL;
}

unsigned
kit_kernel_compile_percent(unsigned n)
{
	unsigned long long p = 8 + 87ull * n / KIT_KERNEL_CC_EXPECTED;

	return p > 95 ? 95 : (unsigned)p;
}

void
kit_kernel_error_line(const char *output, char *buf, size_t size)
{
	const char *best = NULL, *last = NULL;
	size_t best_len = 0, last_len = 0;

	buf[0] = '\0';
	for (const char *l = output; l && *l;) {
		size_t len = strcspn(l, "\n");
		if (len) {
			last = l, last_len = len;
			if (memmem(l, len, "error", 5) || memmem(l, len, "Error", 5))
				best = l, best_len = len;
		}
		l += len + (l[len] == '\n');
	}
	if (!best)
		best = last, best_len = last_len;
	if (best)
		snprintf(buf, size, "%.*s", (int)best_len, best);
}

/* --- running the build's programs ----------------------------------------------------------- */

/* Keeps the last lines of output (about TAIL_MAX / 2 bytes at least) for the error message. */
static void
tail_add(struct build *b, const char *line)
{
	size_t n = strnlen(line, TAIL_MAX / 4);

	if (b->tail_len + n + 2 > TAIL_MAX) {
		size_t half = b->tail_len / 2;
		const char *cut = memchr(b->tail + half, '\n', b->tail_len - half);
		size_t from = cut ? (size_t)(cut - b->tail) + 1 : b->tail_len;
		memmove(b->tail, b->tail + from, b->tail_len - from);
		b->tail_len -= from;
	}
	memcpy(b->tail + b->tail_len, line, n);
	b->tail_len += n;
	b->tail[b->tail_len++] = '\n';
	b->tail[b->tail_len] = '\0';
}

static void
proc_line(struct build *b, struct proc *p)
{
	p->line[p->len] = '\0';
	tail_add(b, p->line);
	if (p->on_line)
		p->on_line(b, p->line);
	p->len = 0;
}

static void
proc_feed(struct build *b, struct proc *p, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (data[i] == '\n')
			proc_line(b, p);
		else if (p->len < sizeof(p->line) - 1)
			p->line[p->len++] = data[i];
}

/* posix_spawn in a process group of its own (make and every compiler it runs are stopped
 * together), stdin /dev/null, stdout and stderr on one pipe, signals default and unblocked. */
static int
proc_spawn(struct proc *p, const char *const *argv, const char *cwd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int pfd[2], r;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	r = posix_spawnp(&p->pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (r != 0) {
		close(pfd[0]);
		return -r;
	}
	p->fd = pfd[0];
	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	return 0;
}

/* Waits until the leader exits without reaping it: a zombie leader keeps the process group
 * ours to signal. */
static void
proc_wait_exit(struct proc *p)
{
	siginfo_t si;

	while (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
		;
	p->exited = true;
}

static void
proc_read(struct build *b, struct proc *p)
{
	char buf[16384];
	ssize_t n = read(p->fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		proc_feed(b, p, buf, (size_t)n);
		return;
	}
	if (p->len)
		proc_line(b, p);
	close(p->fd);
	p->fd = -1;
}

/* One round: output into lines, the leader's exit noticed. Once it exited, what is left of
 * its group is killed so the pipe closes. */
static int
proc_step(struct build *b, struct proc *p, int timeout_ms)
{
	struct pollfd fds[2];
	nfds_t n = 0;

	if (p->fd >= 0)
		fds[n++] = (struct pollfd){.fd = p->fd, .events = POLLIN};
	if (!p->exited && p->pidfd >= 0)
		fds[n++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
	if (n == 0) {
		proc_wait_exit(p); /* no pidfd: the pipe closed, the leader is exiting */
		return 0;
	}
	if (poll(fds, n, timeout_ms) < 0)
		return errno == EINTR ? 0 : -errno;
	for (nfds_t i = 0; i < n; i++) {
		if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (fds[i].fd == p->pidfd) {
			p->exited = true;
			kill(-p->pid, SIGKILL);
		} else {
			proc_read(b, p);
		}
	}
	return 0;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
build_cancelled(const struct build *b)
{
	return b->cancelled && b->cancelled(b->ud);
}

/* Until the program exits and its output ends, the deadline passes (-ETIMEDOUT) or the build
 * is cancelled (-ECANCELED). */
static int
proc_run(struct build *b, struct proc *p, unsigned timeout_s)
{
	long long deadline = now_ms() + timeout_s * 1000ll;

	while (!p->exited || p->fd >= 0) {
		long long left = deadline - now_ms();
		if (build_cancelled(b))
			return -ECANCELED;
		if (left <= 0)
			return -ETIMEDOUT;
		/* the cancel request is a flag with no fd to wait on: looked at twice a second */
		int r = proc_step(b, p, left < CANCEL_CHECK_MS ? (int)left : CANCEL_CHECK_MS);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Ends the process group and reaps the leader; `stop`: TERM first (make removes its partial
 * targets), KILL after STOP_GRACE_MS. Returns the leader's wait status. */
static int
proc_end(struct proc *p, bool stop)
{
	struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
	int status = 0;

	if (stop && !p->exited) {
		kill(-p->pid, SIGTERM);
		if (p->pidfd >= 0)
			while (poll(&pfd, 1, STOP_GRACE_MS) < 0 && errno == EINTR)
				;
	}
	kill(-p->pid, SIGKILL); /* the leader is not reaped yet: the group is still ours */
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (p->fd >= 0)
		close(p->fd);
	if (p->pidfd >= 0)
		close(p->pidfd);
	return status;
}

static int
step_failed(struct build *b, const char *prog, int status, struct err *err)
{
	char line[400];

	log_warn("kit: kernel build: '%s' failed; its last output:\n%s", prog, b->tail);
	if (WIFSIGNALED(status))
		return err_set(err, ERR_INTERNAL, NULL, EINTR, "'%s' killed by signal %d", prog,
			       WTERMSIG(status));
	kit_kernel_error_line(b->tail, line, sizeof(line));
	return err_set(err, ERR_INTERNAL, NULL, EIO, "'%s' failed (exit status %d)%s%s", prog,
		       WEXITSTATUS(status), line[0] ? ": " : "", line);
}

/* Runs cmd at nice 10 in the C locale:
 * nice -n 10 env LC_ALL=C KBUILD_BUILD_USER=sistemo KBUILD_BUILD_HOST=sistemo <cmd...> */
static int
run_step(struct build *b, const char *const *cmd, const char *cwd, line_fn on_line,
	 unsigned timeout_s, struct err *err)
{
	const char *argv[ARGV_MAX + 8] = {"nice",
					  "-n",
					  NICE,
					  "env",
					  "LC_ALL=C",
					  "KBUILD_BUILD_USER=sistemo",
					  "KBUILD_BUILD_HOST=sistemo"};
	struct proc p = {.pidfd = -1, .fd = -1, .on_line = on_line};
	size_t n = 7;
	int r;

	for (size_t i = 0; cmd[i] && n < ARGV_MAX; i++)
		argv[n++] = cmd[i];
	if (build_cancelled(b))
		return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	b->tail_len = 0;
	b->tail[0] = '\0';
	if ((r = proc_spawn(&p, argv, cwd)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "run '%s': %s", cmd[0], strerror(-r));
	r = proc_run(b, &p, timeout_s);
	int status = proc_end(&p, r < 0);
	if (r == -ECANCELED)
		return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	if (r == -ETIMEDOUT)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT, "'%s' did not finish in %u min",
			       cmd[0], timeout_s / 60);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "run '%s': %s", cmd[0], strerror(-r));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return step_failed(b, cmd[0], status, err);
	return 0;
}

/* --- the steps ------------------------------------------------------------------------------ */

static bool
on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char full[PATH_MAX];

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		if (n && kit_path(full, sizeof(full), "%.*s/%s", (int)n, p, prog) == 0 &&
		    access(full, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

static int
preflight(struct err *err)
{
	static const char *const progs[] = {"tar",   "xz", "make", "gcc", "flex",
					    "bison", "bc", "nice", "env", NULL};

	if (access(SOURCE_TARBALL, R_OK) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, errno,
			       "no '" SOURCE_TARBALL "' (apt-get install " PACKAGES ")");
	for (size_t i = 0; progs[i]; i++)
		if (!on_path(progs[i]))
			return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
				       "no '%s' on PATH (apt-get install " PACKAGES
				       " build-essential)",
				       progs[i]);
	if (access("/usr/include/libelf.h", R_OK) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no libelf headers (apt-get install " PACKAGES ")");
	return 0;
}

static int
mkdir_p(const char *dir, mode_t mode, struct err *err)
{
	if (mkdir(dir, mode) < 0 && errno != EEXIST)
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdir '%s': %s", dir,
			       strerror(errno));
	return 0;
}

/* One build per data dir: flock on <kdir>/.build.lock, held until *ret_fd is closed. */
static int
build_lock(const struct build *b, int *ret_fd, struct err *err)
{
	char path[PATH_MAX + 16];
	int fd;

	kit_path(path, sizeof(path), "%s/" BUILD_LOCK, b->kdir);
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open '%s': %s", path,
			       strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return err_set(err, ERR_PRECONDITION, NULL, e,
				       "a kernel build is already running in '%s'", b->kdir);
		return err_set(err, ERR_INTERNAL, NULL, e, "lock '%s': %s", path, strerror(e));
	}
	*ret_fd = fd;
	return 0;
}

/* Trees a killed daemon left behind; safe under the build lock. */
static void
remove_stale(const struct build *b)
{
	DIR *d = opendir(b->stale);
	struct dirent *de;
	char path[PATH_MAX];

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, BUILD_PREFIX, strlen(BUILD_PREFIX)) == 0 &&
		    kit_path(path, sizeof(path), "%s/%s", b->stale, de->d_name) == 0) {
			log_info("kit: removing the stale kernel build tree '%s'", path);
			kit_tree_remove(path);
		}
	closedir(d);
}

static int
unpack(struct build *b, struct err *err)
{
	const char *tar[] = {"tar", "-xf", SOURCE_TARBALL, "-C", b->tmp, "--no-same-owner", NULL};
	int r;

	report(b, "source", 1, "unpacking " SOURCE_TARBALL);
	if ((r = run_step(b, tar, NULL, NULL, 1800, err)) < 0)
		return r;
	if (access(b->src, R_OK | X_OK) < 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOENT,
			       "'" SOURCE_TARBALL "' holds no '" SOURCE_DIR "'");
	return 0;
}

static int
config_check(const struct build *b, struct err *err)
{
	char path[PATH_MAX + 16], missing[512];
	cleanup_free char *text = NULL;
	int r;

	kit_path(path, sizeof(path), "%s/.config", b->src);
	if ((r = kit_tree_read(path, CONFIG_MAX, &text)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "read '%s': %s", path, strerror(-r));
	if (kit_kernel_config_missing(text, missing, sizeof(missing)) > 0)
		return err_set(err, ERR_INTERNAL, NULL, EINVAL,
			       "the kernel configuration does not have %s", missing);
	return 0;
}

/* make x86_64_defconfig; make kvm_guest.config; scripts/config --file .config -e ... -d ...;
 * make olddefconfig; then the result is checked. */
static int
configure(struct build *b, struct err *err)
{
	const char *defconfig[] = {"make", "x86_64_defconfig", NULL};
	const char *guest[] = {"make", "kvm_guest.config", NULL};
	const char *olddefconfig[] = {"make", "olddefconfig", NULL};
	const char *options[ARGV_MAX] = {"scripts/config", "--file", ".config"};
	int r;

	report(b, "config", 5,
	       "x86_64_defconfig + kvm_guest.config + virtio-mmio, ext4, IP_PNP, "
	       "ACPI button, no modules");
	if (kit_kernel_config_argv(options, 3, ARRAY_SIZE(options)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, E2BIG, "too many kernel options");
	if ((r = run_step(b, defconfig, b->src, NULL, 600, err)) < 0 ||
	    (r = run_step(b, guest, b->src, NULL, 600, err)) < 0 ||
	    (r = run_step(b, options, b->src, NULL, 600, err)) < 0 ||
	    (r = run_step(b, olddefconfig, b->src, NULL, 600, err)) < 0)
		return r;
	return config_check(b, err);
}

static void
compile_line(struct build *b, const char *line)
{
	const char *obj = kit_kernel_cc_object(line);

	if (!obj)
		return;
	unsigned percent = kit_kernel_compile_percent(++b->n_cc);
	if (percent != b->percent)
		report(b, "compile", percent, "compiling: %u of about %u files (%.120s)", b->n_cc,
		       KIT_KERNEL_CC_EXPECTED, obj);
}

static unsigned
cpus(void)
{
	cpu_set_t set;
	long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
							      : sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

static int
compile(struct build *b, struct err *err)
{
	char jobs[16];
	const char *make[] = {"make", "-j", jobs, "bzImage", NULL};
	unsigned n = cpus();

	snprintf(jobs, sizeof(jobs), "%u", n);
	report(b, "compile", 8, "make -j%u bzImage at nice " NICE " (about %u min)", n,
	       n >= 8 ? 4 : 30 / n);
	b->n_cc = 0;
	int r = run_step(b, make, b->src, compile_line, 4 * 3600, err);
	if (r == 0)
		log_info("kit: kernel: compiled %u files", b->n_cc);
	return r;
}

/* Moves a file of the tree into <kdir>/name: a rename (atomic), or when the tree is on another
 * filesystem a copy to .name.new renamed over name. */
static int
install_one(const struct build *b, int kdir, const char *from_rel, const char *name,
	    struct err *err)
{
	char from[PATH_MAX * 2], tmp[NAME_MAX];
	int r;

	kit_path(from, sizeof(from), "%s/%s", b->src, from_rel);
	kit_path(tmp, sizeof(tmp), ".%s.new", name);
	if (chmod(from, 0644) == 0 && renameat(AT_FDCWD, from, kdir, name) == 0)
		return 0;
	r = -errno;
	if (r == -EXDEV) {
		unlinkat(kdir, tmp, 0);
		r = kit_tree_copy(kdir, tmp, 0644, from);
		if (r == 0 && renameat(kdir, tmp, kdir, name) < 0)
			r = -errno;
		if (r < 0)
			unlinkat(kdir, tmp, 0);
	}
	return r < 0 ? err_set(err, ERR_INTERNAL, NULL, -r, "install '%s/%s': %s", b->kdir, name,
			       strerror(-r))
		     : 0;
}

/* The bzImage last: its presence is what makes kit_kernel_find choose the built kernel. */
static int
install(struct build *b, struct err *err)
{
	cleanup_close int kdir = open(b->kdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	report(b, "install", 96,
	       "installing " BUILT_KERNEL ", " BUILT_VMLINUX " and " BUILT_CONFIG);
	if (kdir < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open '%s': %s", b->kdir,
			       strerror(errno));
	if ((r = install_one(b, kdir, "vmlinux", BUILT_VMLINUX, err)) < 0 ||
	    (r = install_one(b, kdir, ".config", BUILT_CONFIG, err)) < 0 ||
	    (r = install_one(b, kdir, "arch/x86/boot/bzImage", BUILT_KERNEL, err)) < 0)
		return r;
	return 0;
}

static int
build_steps(struct build *b, struct err *err)
{
	int r;

	if ((r = unpack(b, err)) < 0 || (r = configure(b, err)) < 0 || (r = compile(b, err)) < 0)
		return r;
	if (build_cancelled(b))
		return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	return install(b, err);
}

static int
file_sha256(const char *path, char hex[65])
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	mbedtls_sha256_context ctx;
	unsigned char buf[16384], sum[32];
	ssize_t n;
	int r;

	if (fd < 0)
		return -errno;
	mbedtls_sha256_init(&ctx);
	r = mbedtls_sha256_starts_ret(&ctx, 0) != 0 ? -EIO : 0;
	while (r == 0 && (n = read(fd, buf, sizeof(buf))) != 0)
		if (n < 0)
			r = errno == EINTR ? 0 : -errno;
		else if (mbedtls_sha256_update_ret(&ctx, buf, (size_t)n) != 0)
			r = -EIO;
	if (r == 0 && mbedtls_sha256_finish_ret(&ctx, sum) != 0)
		r = -EIO;
	mbedtls_sha256_free(&ctx);
	for (size_t i = 0; r == 0 && i < sizeof(sum); i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
	return r;
}

/* What is installed: path, version (from the bzImage header), size, time and digest. */
static int
describe(const char *data_dir, uint64_t build_ms, struct kit_kernel_built *ret, struct err *err)
{
	struct kit_kernel k;
	struct stat st;
	int r;

	if (!ret)
		return 0;
	memset(ret, 0, sizeof(*ret));
	if ((r = kit_kernel_find(data_dir, &k, err)) < 0)
		return r;
	if (!k.built)
		return err_set(err, ERR_INTERNAL, NULL, ENOENT, "no built kernel after the build");
	snprintf(ret->path, sizeof(ret->path), "%s", k.kernel);
	snprintf(ret->version, sizeof(ret->version), "%s", k.version);
	if (stat(k.kernel, &st) < 0 || (r = file_sha256(k.kernel, ret->sha256)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "read '%s': %s", k.kernel,
			       strerror(errno));
	ret->size_bytes = (uint64_t)st.st_size;
	ret->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	ret->build_ms = build_ms;
	return 0;
}

static int
build_paths(struct build *b, const char *data_dir, struct err *err)
{
	if (strlen(data_dir) > PATH_MAX - 256)
		return err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG, "data dir '%s' too long",
			       data_dir);
	kit_path(b->kdir, sizeof(b->kdir), "%s/kernel", data_dir);
	kit_path(b->stale, sizeof(b->stale), "%s/tmp", data_dir);
	kit_path(b->tmp, sizeof(b->tmp), "%s/tmp/" BUILD_PREFIX "XXXXXX", data_dir);
	return 0;
}

static bool
built_present(const struct build *b)
{
	char path[PATH_MAX + 32];

	kit_path(path, sizeof(path), "%s/" BUILT_KERNEL, b->kdir);
	if (access(path, R_OK) < 0)
		return false;
	kit_path(path, sizeof(path), "%s/" BUILT_VMLINUX, b->kdir);
	return access(path, R_OK) == 0;
}

/* Under the lock: the stale trees go, a fresh one is made, built, and removed. */
static int
build_locked(struct build *b, struct err *err)
{
	int r;

	remove_stale(b);
	if (!mkdtemp(b->tmp))
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdtemp '%s': %s", b->tmp,
			       strerror(errno));
	kit_path(b->src, sizeof(b->src), "%s/" SOURCE_DIR, b->tmp);
	r = build_steps(b, err);
	report(b, "cleanup", r < 0 ? b->percent : 98, "removing the build tree");
	int rr = kit_tree_remove(b->tmp);
	if (rr < 0)
		log_warn("kit: remove '%s': %s", b->tmp, strerror(-rr));
	return r;
}

int
kit_kernel_build(const char *data_dir, bool force, kit_percent_fn progress,
		 bool (*cancelled)(void *ud), void *ud, struct kit_kernel_built *ret,
		 struct err *err)
{
	struct build b = {.progress = progress, .cancelled = cancelled, .ud = ud};
	cleanup_close int lock = -1;
	int r;

	if ((r = build_paths(&b, data_dir, err)) < 0)
		return r;
	if (!force && built_present(&b)) {
		report(&b, "done", 100, "the built kernel is present (--force rebuilds it)");
		return describe(data_dir, 0, ret, err);
	}
	long long t0 = now_ms();
	if ((r = preflight(err)) < 0 || (r = mkdir_p(b.kdir, 0755, err)) < 0 ||
	    (r = mkdir_p(b.stale, 0700, err)) < 0 || (r = build_lock(&b, &lock, err)) < 0 ||
	    (r = build_locked(&b, err)) < 0)
		return err_wrap(err, "build the guest kernel");
	uint64_t ms = (uint64_t)(now_ms() - t0);
	if ((r = describe(data_dir, ms ? ms : 1, ret, err)) < 0)
		return err_wrap(err, "build the guest kernel");
	report(&b, "done", 100, "built the guest kernel in %llum%02llus (%u files compiled)",
	       (unsigned long long)ms / 60000, (unsigned long long)ms / 1000 % 60, b.n_cc);
	return 0;
}
