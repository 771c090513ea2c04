#include "kit_debian.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

#define BOOTSTRAP_TIMEOUT_MS (15u * 60 * 1000)
#define KEYRING "/usr/share/keyrings/debian-archive-keyring.gpg"
/* udev: without it systemd sees no device, and serial-getty@ttyS0 waits 90 s for ttyS0 */
#define INCLUDE "systemd-sysv,udev,openssh-server,iproute2,iputils-ping,ca-certificates"
#define LINE_MAX_BYTES 1024
#define FIELD_MAX 1024
#define CLONE_STACK (256 * 1024)
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

extern char **environ;

/* ---- the mirror from apt's sources ------------------------------------------------------- */

/* True when the whitespace-separated list holds word. */
static bool
has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (len == n && strncmp(p, word, n) == 0)
			return true;
		p += len;
	}
	return false;
}

/* Copies the first http(s) URI of the list into buf, without a trailing '/'. */
static int
pick_uri(const char *list, char *buf, size_t size)
{
	for (const char *p = list; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (len > 0 && (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0)) {
			while (len > 0 && p[len - 1] == '/')
				len--;
			return kit_path(buf, size, "%.*s", (int)len, p);
		}
		p += len;
	}
	return -ENOENT;
}

/* "deb [opts] URI SUITE COMPONENTS..." */
static int
one_line(const char *line, char *buf, size_t size)
{
	char uri[FIELD_MAX], suite[64];
	const char *p = line + 3;

	p += strspn(p, " \t");
	if (*p == '[') {
		const char *close = strchr(p, ']');
		if (!close)
			return -ENOENT;
		p = close + 1;
	}
	if (sscanf(p, "%1023s %63s", uri, suite) != 2 || !streq(suite, KIT_DEBIAN_SUITE))
		return -ENOENT;
	return pick_uri(uri, buf, size);
}

/* One deb822 stanza's fields, those that matter. */
struct stanza {
	char types[FIELD_MAX], uris[FIELD_MAX], suites[FIELD_MAX], enabled[16];
	char *last; /* the field a continuation line extends */
};

static int
stanza_end(struct stanza *s, char *buf, size_t size)
{
	int r = -ENOENT;

	if (has_word(s->types, "deb") && has_word(s->suites, KIT_DEBIAN_SUITE) &&
	    !has_word(s->enabled, "no"))
		r = pick_uri(s->uris, buf, size);
	*s = (struct stanza){0};
	return r;
}

/* Appends value (trimmed) to the field, space separated, bounded. */
static void
field_add(char *field, const char *value)
{
	size_t len = strlen(field), n = strlen(value);

	while (n > 0 && isspace((unsigned char)value[n - 1]))
		n--;
	snprintf(field + len, FIELD_MAX - len, "%s%.*s", len ? " " : "", (int)n, value);
}

static void
stanza_line(struct stanza *s, const char *line)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {{"Types:", offsetof(struct stanza, types)},
		      {"URIs:", offsetof(struct stanza, uris)},
		      {"Suites:", offsetof(struct stanza, suites)},
		      {"Enabled:", offsetof(struct stanza, enabled)}};

	if ((line[0] == ' ' || line[0] == '\t') && s->last) {
		field_add(s->last, line + strspn(line, " \t"));
		return;
	}
	s->last = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		size_t n = strlen(fields[i].name);
		if (strncasecmp(line, fields[i].name, n) == 0) {
			s->last = (char *)s + fields[i].off;
			if (i == 3)
				s->last[0] = '\0'; /* Enabled: one value */
			field_add(s->last, line + n + strspn(line + n, " \t"));
		}
	}
	if (streq(s->enabled, "No") || streq(s->enabled, "NO"))
		snprintf(s->enabled, sizeof(s->enabled), "no");
}

int
kit_debian_mirror_parse(const char *text, char *buf, size_t size)
{
	cleanup_free struct stanza *s = calloc(1, sizeof(*s));
	char line[FIELD_MAX];
	int r = -ENOENT;

	if (!s)
		return -ENOMEM;
	for (const char *p = text; r == -ENOENT && p && *p;) {
		size_t n = strcspn(p, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p += n + (p[n] == '\n');
		if (line[0] == '#')
			continue;
		if (strncmp(line, "deb ", 4) == 0 || strncmp(line, "deb\t", 4) == 0)
			r = one_line(line, buf, size);
		else if (!line[strspn(line, " \t\r")])
			r = stanza_end(s, buf, size);
		else
			stanza_line(s, line);
	}
	return r == -ENOENT ? stanza_end(s, buf, size) : r;
}

static int
mirror_from_file(const char *path, char *buf, size_t size)
{
	cleanup_free char *text = NULL;
	int r = kit_tree_read(path, 1 << 20, &text);

	return r < 0 ? r : kit_debian_mirror_parse(text, buf, size);
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int
sources_file(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && ((n > 5 && streq(de->d_name + n - 5, ".list")) ||
					(n > 8 && streq(de->d_name + n - 8, ".sources")));
}

void
kit_debian_mirror(char *buf, size_t size)
{
	static const char dir[] = "/etc/apt/sources.list.d";
	struct dirent **names = NULL;
	char path[PATH_MAX];
	int n, r = mirror_from_file("/etc/apt/sources.list", buf, size);

	n = r == 0 ? 0 : scandir(dir, &names, sources_file, by_name);
	for (int i = 0; i < n; i++) {
		if (r < 0 && kit_path(path, sizeof(path), "%s/%s", dir, names[i]->d_name) == 0)
			r = mirror_from_file(path, buf, size);
		free(names[i]);
	}
	free(names);
	if (r < 0)
		snprintf(buf, size, "%s", KIT_DEBIAN_MIRROR);
}

/* ---- progress from debootstrap's output -------------------------------------------------- */

/* debootstrap's phases in order: a line starting with `header` opens one; lines starting with
 * `item` are its packages, moving the percent from `from` towards `to`. */
static const struct phase {
	const char *header, *item;
	unsigned from, to;
	const char *what;
} phases[] = {
	{"", NULL, 0, 0, "starting"},
	{"I: Retrieving InRelease", NULL, 1, 1, "fetching the release file"},
	{"I: Retrieving Packages", NULL, 3, 3, "fetching the package lists"},
	{"I: Resolving dependencies", NULL, 5, 5, "resolving dependencies"},
	{"I: Retrieving ", "I: Retrieving ", 6, 45, "downloading packages"},
	{"I: Extracting ", "I: Extracting ", 45, 50, "extracting the essential packages"},
	{"I: Installing core packages", NULL, 50, 50, "installing the core packages"},
	{"I: Unpacking required packages", "I: Unpacking ", 51, 60,
	 "unpacking the required packages"},
	{"I: Configuring required packages", "I: Configuring ", 60, 70,
	 "configuring the required packages"},
	{"I: Unpacking the base system", "I: Unpacking ", 70, 78, "unpacking the base system"},
	{"I: Configuring the base system", "I: Configuring ", 78, 98,
	 "configuring the base system"},
	{"I: Base system installed successfully", NULL, 100, 100, "base system installed"},
};

static bool
starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool
kit_debian_progress_line(struct kit_debian_progress *p, const char *line, unsigned *ret_percent,
			 char *msg, size_t size)
{
	const struct phase *ph;

	for (unsigned i = p->phase + 1; i < ARRAY_SIZE(phases); i++)
		if (starts(line, phases[i].header)) {
			p->phase = i;
			p->items = phases[i].item && starts(line, phases[i].item);
			*ret_percent = phases[i].from;
			snprintf(msg, size, "%s", phases[i].what);
			return true;
		}
	ph = &phases[p->phase];
	if (!ph->item || !starts(line, ph->item) || ++p->items % 10 != 0)
		return false;
	/* the package count is not known ahead: approach `to` without reaching it */
	*ret_percent = ph->from + (ph->to - ph->from) * p->items / (p->items + 40);
	snprintf(msg, size, "%s (%u)", ph->what, p->items);
	return true;
}

/* ---- debootstrap in its own namespaces --------------------------------------------------- */

/* Capabilities debootstrap and the maintainer scripts it runs never need, dropped from the
 * bounding set: it keeps what it uses (chroot, mount, mknod, chown, setcap...). */
static const int dropped_caps[] = {
	CAP_SYS_MODULE, CAP_SYS_RAWIO,     CAP_SYS_TIME,   CAP_SYS_BOOT,
	CAP_NET_ADMIN,  CAP_SYS_PTRACE,    CAP_MAC_ADMIN,  CAP_MAC_OVERRIDE,
	CAP_SYSLOG,     CAP_AUDIT_CONTROL, CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND,
	CAP_SYS_PACCT,  CAP_BPF,           CAP_PERFMON,    CAP_LINUX_IMMUTABLE,
};

#define EXIT_NAMESPACES 125 /* the child could not set up its namespaces */

struct bootstrap {
	const char *argv[16]; /* argv[0]: an absolute path */
	char include[8192];   /* --include=... */
	char *env[16];
	int out; /* write end of the output pipe: debootstrap's stdout and stderr */
};

/* PID 1 of the new PID and mount namespaces, then debootstrap. A copy of the daemon made by
 * clone() without its threads: async-signal-safe calls only. */
static int
ns_child(void *arg)
{
	const struct bootstrap *b = arg;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;
	int null;

	for (int s = 1; s < NSIG; s++)
		sigaction(s, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* mount --make-rprivate /; mount -t proc proc /proc: nothing mounted here reaches the
	 * host, and /proc shows this namespace's processes only */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		_exit(EXIT_NAMESPACES);
	for (size_t i = 0; i < ARRAY_SIZE(dropped_caps); i++)
		prctl(PR_CAPBSET_DROP, dropped_caps[i], 0, 0, 0);
	/* the daemon gone (killed), the namespace goes too */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0 || dup2(b->out, 1) < 0 || dup2(b->out, 2) < 0)
		_exit(EXIT_NAMESPACES);
	execve(b->argv[0], (char *const *)b->argv, b->env);
	_exit(127);
}

/* clone(CLONE_NEWNS | CLONE_NEWPID): the child is PID 1 of its namespace, so killing it ends
 * everything debootstrap started, and the last process leaving takes the mounts along. */
static int
bootstrap_spawn(struct bootstrap *b, pid_t *ret_pid)
{
	cleanup_free char *stack = malloc(CLONE_STACK);

	if (!stack)
		return -ENOMEM;
	*ret_pid = clone(ns_child, stack + CLONE_STACK, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, b);
	return *ret_pid < 0 ? -errno : 0;
}

/* Proxy settings pass through; the rest of the daemon's environment does not. */
static void
bootstrap_env(struct bootstrap *b)
{
	static const char *const pass[] = {"http_proxy=", "https_proxy=", "no_proxy=",
					   "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="};
	size_t k = 0;

	b->env[k++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
	b->env[k++] = "LC_ALL=C";
	b->env[k++] = "HOME=/root";
	b->env[k++] = "DEBIAN_FRONTEND=noninteractive";
	for (char **e = environ; e && *e; e++)
		for (size_t i = 0; i < ARRAY_SIZE(pass) && k + 1 < ARRAY_SIZE(b->env); i++)
			if (starts(*e, pass[i]))
				b->env[k++] = *e;
	b->env[k] = NULL;
}

struct reader {
	char line[LINE_MAX_BYTES];
	size_t len;
	char error[LINE_MAX_BYTES]; /* the last "E: " line, else the last line */
	struct kit_debian_progress p;
	kit_percent_fn progress;
	void *ud;
};

static void
reader_line(struct reader *rd)
{
	char msg[256];
	unsigned percent;

	rd->line[rd->len] = '\0';
	rd->len = 0;
	if (!rd->line[0])
		return;
	log_debug("kit: debootstrap: %s", rd->line);
	if (starts(rd->line, "E: ") || !starts(rd->error, "E: "))
		snprintf(rd->error, sizeof(rd->error), "%s", rd->line);
	if (starts(rd->line, "W: "))
		log_info("kit: debootstrap: %s", rd->line);
	if (kit_debian_progress_line(&rd->p, rd->line, &percent, msg, sizeof(msg)) && rd->progress)
		rd->progress(rd->ud, "image", percent, msg);
}

static void
reader_feed(struct reader *rd, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n')
			reader_line(rd);
		else if (rd->len + 1 < sizeof(rd->line))
			rd->line[rd->len++] = buf[i];
	}
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the output to its end (every process of the namespace gone) or the deadline. */
static int
bootstrap_read(int out, struct reader *rd, long long deadline)
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
		reader_feed(rd, buf, (size_t)n);
	}
	if (rd->len)
		reader_line(rd);
	return 0;
}

/* Reaps the child; past the deadline (or when its output ended but it lingers 10 s) it is
 * killed first, and with it its PID namespace. */
static int
bootstrap_reap(pid_t pid, bool late, int *ret_status)
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

/* --include=INCLUDE,<extra packages> */
static int
bootstrap_include(struct bootstrap *b, const struct kit_debian_opts *o, struct err *err)
{
	size_t n = (size_t)snprintf(b->include, sizeof(b->include), "--include=" INCLUDE);

	for (size_t i = 0; i < o->n_packages; i++) {
		if (strspn(o->packages[i], "abcdefghijklmnopqrstuvwxyz0123456789+-.") !=
			    strlen(o->packages[i]) ||
		    n + strlen(o->packages[i]) + 2 > sizeof(b->include))
			return err_set(err, ERR_INVALID, "packages", EINVAL,
				       "invalid package name '%.100s'", o->packages[i]);
		n += (size_t)snprintf(b->include + n, sizeof(b->include) - n, ",%s",
				      o->packages[i]);
	}
	return 0;
}

static int
bootstrap_argv(struct bootstrap *b, const char *tree, const char *mirror,
	       const struct kit_debian_opts *o, char *prog, size_t size, struct err *err)
{
	size_t k = 0;

	if (access("/usr/sbin/debootstrap", X_OK) == 0)
		snprintf(prog, size, "/usr/sbin/debootstrap");
	else if (host_find_binary("debootstrap", NULL, prog, size) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "'debootstrap' not found (apt-get install debootstrap)");
	if (access(KEYRING, R_OK) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no '" KEYRING "' to check the release with (apt-get install "
			       "debian-archive-keyring)");
	if (bootstrap_include(b, o, err) < 0)
		return -EINVAL;
	b->argv[k++] = prog;
	b->argv[k++] = "--variant=minbase";
	b->argv[k++] = b->include;
	b->argv[k++] = "--components=main";
	b->argv[k++] = "--keyring=" KEYRING;
	b->argv[k++] = o->suite && *o->suite ? o->suite : KIT_DEBIAN_SUITE;
	b->argv[k++] = tree;
	b->argv[k++] = mirror;
	b->argv[k] = NULL;
	return 0;
}

static int
bootstrap_result(int read_r, int status, const struct reader *rd, const char *mirror,
		 struct err *err)
{
	if (read_r == -ETIMEDOUT)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
			       "debootstrap did not finish in %u minutes",
			       BOOTSTRAP_TIMEOUT_MS / 60000);
	if (read_r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -read_r, "debootstrap: %s",
			       strerror(-read_r));
	if (WIFSIGNALED(status))
		return err_set(err, ERR_INTERNAL, NULL, EINTR, "debootstrap killed by signal %d",
			       WTERMSIG(status));
	if (WEXITSTATUS(status) == EXIT_NAMESPACES)
		return err_set(err, ERR_PRECONDITION, NULL, EPERM,
			       "cannot give debootstrap its own mount and PID namespaces");
	if (WEXITSTATUS(status) != 0)
		return err_set(err, ERR_INTERNAL, NULL, EIO,
			       "debootstrap from '%s' failed (exit status %d)%s%s", mirror,
			       WEXITSTATUS(status), rd->error[0] ? ": " : "", rd->error);
	return 0;
}

int
kit_debian_bootstrap(const char *tree, const char *mirror, kit_percent_fn progress, void *ud,
		     struct err *err)
{
	const struct kit_debian_opts o = {.suite = KIT_DEBIAN_SUITE};

	return kit_debian_bootstrap_opts(tree, mirror, &o, progress, ud, err);
}

int
kit_debian_bootstrap_opts(const char *tree, const char *mirror, const struct kit_debian_opts *o,
			  kit_percent_fn progress, void *ud, struct err *err)
{
	cleanup_free struct reader *rd = calloc(1, sizeof(*rd));
	cleanup_free struct bootstrap *bp = calloc(1, sizeof(*bp));
	struct bootstrap *b = bp;
	char prog[PATH_MAX];
	int pipefd[2], status = 0, r;
	pid_t pid;

	if (!rd || !b)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if ((r = bootstrap_argv(b, tree, mirror, o, prog, sizeof(prog), err)) < 0)
		return r;
	bootstrap_env(b);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "pipe: %s", strerror(errno));
	b->out = pipefd[1];
	r = bootstrap_spawn(b, &pid);
	close(pipefd[1]);
	if (r < 0) {
		close(pipefd[0]);
		return err_set(err, ERR_INTERNAL, NULL, -r,
			       "start debootstrap in new mount and PID namespaces: %s",
			       strerror(-r));
	}
	*rd = (struct reader){.progress = progress, .ud = ud};
	int read_r = bootstrap_read(pipefd[0], rd, now_ms() + BOOTSTRAP_TIMEOUT_MS);
	close(pipefd[0]);
	if ((r = bootstrap_reap(pid, read_r < 0, &status)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "wait for debootstrap: %s",
			       strerror(-r));
	return bootstrap_result(read_r, status, rd, mirror, err);
}

/* ---- the tree made fit for sistemo ------------------------------------------------------- */

static const char sshd_conf[] =
	"# sistemo (docs/guest.md): root logs in with the daemon's key only. The image carries no\n"
	"# host keys: /sbin/sistemo-init makes these for each machine before systemd starts.\n"
	"PermitRootLogin prohibit-password\n"
	"PubkeyAuthentication yes\n"
	"PasswordAuthentication no\n"
	"KbdInteractiveAuthentication no\n"
	"HostKey /etc/ssh/ssh_host_ed25519_key\n"
	"HostKey /etc/ssh/ssh_host_ecdsa_key\n";

/* Files written into the tree, replacing what debootstrap left (its copies of the host's
 * hostname and resolv.conf among them). */
static const struct {
	const char *path, *text;
	mode_t mode;
} debian_files[] = {
	{"etc/hostname", "sistemo\n", 0644},
	{"etc/fstab", "# sistemo: the machine's root disk\n/dev/vda / ext4 defaults 0 1\n", 0644},
	{"etc/ssh/sshd_config.d/sistemo.conf", sshd_conf, 0644},
	/* empty: systemd makes one per machine at its first boot */
	{"etc/machine-id", "", 0444},
	/* that first boot would enable every unit Debian's presets do not name */
	{"etc/systemd/system-preset/00-sistemo.preset",
	 "# sistemo: the image is set up when built; a first boot enables nothing more\n"
	 "disable *\n",
	 0644},
};

/* Removed: sistemo-init writes resolv.conf for each machine. */
static const char *const debian_removed[] = {"etc/resolv.conf"};

/* Files removed by name in a directory: what must differ per machine, and what only takes
 * room (downloaded packages, package lists: `apt-get update` fetches fresh ones). */
static const struct {
	const char *dir, *prefix, *suffix;
} debian_cleared[] = {
	{"etc/ssh", "ssh_host_", ""},           {"var/cache/apt/archives", "", ".deb"},
	{"var/cache/apt", "", ".bin"},          {"var/lib/apt/lists", "", "_InRelease"},
	{"var/lib/apt/lists", "", "_Packages"},
};

/* Masked (linked to /dev/null): timers that would wake a machine for host chores, a clock
 * daemon, the first-boot wizard (it would ask for a locale on the serial console), and the
 * gettys on virtual terminals nobody sees (the serial console keeps its own). */
static const char *const debian_masked[] = {
	"apt-daily.timer",           "apt-daily-upgrade.timer",   "fstrim.timer",
	"e2scrub_all.timer",         "e2scrub_reap.service",      "dpkg-db-backup.timer",
	"systemd-timesyncd.service", "systemd-firstboot.service", "getty-static.service",
	"getty@tty1.service",
};

static int
tree_error(struct err *err, const char *path, int r)
{
	return err_set(err, ERR_INTERNAL, NULL, -r, "image tree: '%s': %s", path, strerror(-r));
}

/* Opens the directory path of the tree; a link on the way fails (-ENOTDIR). */
static int
tree_dir(int root, const char *path)
{
	char comp[NAME_MAX + 1];
	int fd = openat(root, ".", DIR_FLAGS), saved;

	for (const char *p = path; fd >= 0 && *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n > NAME_MAX || (n <= 2 && strncmp(p, "..", n) == 0)) {
			close(fd);
			return -EINVAL;
		}
		snprintf(comp, sizeof(comp), "%.*s", (int)n, p);
		p += n + (p[n] == '/');
		int sub = openat(fd, comp, DIR_FLAGS);
		saved = errno;
		close(fd);
		errno = saved;
		fd = sub;
	}
	return fd >= 0 ? fd : errno == ELOOP ? -ENOTDIR : -errno;
}

/* Removes the file or link path (never what a link points at); missing is fine. */
static int
tree_unlink(int root, const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	if (!slash || kit_path(dir, sizeof(dir), "%.*s", (int)(slash - path), path) < 0)
		return -EINVAL;
	cleanup_close int fd = tree_dir(root, dir);
	if (fd < 0)
		return fd;
	return unlinkat(fd, slash + 1, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Removes the files and links of dir whose names have prefix and suffix. */
static int
tree_clear(int root, const char *dir, const char *prefix, const char *suffix)
{
	int fd = tree_dir(root, dir), r = 0;
	size_t ns = strlen(suffix);
	struct dirent *de;
	DIR *d;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0 || !(d = fdopendir(fd)))
		return fd < 0 ? fd : (close(fd), -errno);
	while (r == 0 && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (de->d_type == DT_DIR || !starts(de->d_name, prefix) || n < ns ||
		    !streq(de->d_name + n - ns, suffix))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && errno != EISDIR)
			r = -errno;
	}
	closedir(d);
	return r;
}

/* root's password field: '*' or '!...' (locked), never a usable or empty password. */
static int
check_root_locked(int root, struct err *err)
{
	cleanup_close int dir = tree_dir(root, "etc");
	cleanup_close int fd =
		dir < 0 ? -1 : openat(dir, "shadow", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	char buf[65536];
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (n < 0)
		return tree_error(err, "etc/shadow", dir < 0 ? dir : -errno);
	buf[n] = '\0';
	const char *line = starts(buf, "root:") ? buf : strstr(buf, "\nroot:");
	const char *pw = line ? strchr(line, ':') + 1 : NULL;
	if (pw && (*pw == '*' || *pw == '!'))
		return 0;
	return err_set(err, ERR_INTERNAL, NULL, EPERM,
		       "image tree: root has a password in etc/shadow: refusing to make an image "
		       "from it");
}

static int
configure_files(int root, struct err *err)
{
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(debian_removed); i++)
		if ((r = tree_unlink(root, debian_removed[i])) < 0)
			return tree_error(err, debian_removed[i], r);
	for (size_t i = 0; i < ARRAY_SIZE(debian_cleared); i++)
		if ((r = tree_clear(root, debian_cleared[i].dir, debian_cleared[i].prefix,
				    debian_cleared[i].suffix)) < 0)
			return tree_error(err, debian_cleared[i].dir, r);
	for (size_t i = 0; i < ARRAY_SIZE(debian_files); i++) {
		const char *path = debian_files[i].path, *slash = strrchr(path, '/');
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		r = kit_tree_mkdir(root, dir, 0755);
		if (r == 0)
			r = tree_unlink(root, path);
		if (r == 0)
			r = kit_tree_write(root, path, debian_files[i].mode, debian_files[i].text,
					   strlen(debian_files[i].text));
		if (r < 0)
			return tree_error(err, path, r);
	}
	return 0;
}

/* systemctl mask, by hand: etc/systemd/system/<unit> -> /dev/null, stored, never followed. */
static int
configure_masks(int root, struct err *err)
{
	char path[PATH_MAX];
	int r = kit_tree_mkdir(root, "etc/systemd/system", 0755);

	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(debian_masked); i++) {
		snprintf(path, sizeof(path), "etc/systemd/system/%s", debian_masked[i]);
		r = tree_unlink(root, path);
		if (r == 0)
			r = kit_tree_symlink(root, path, "/dev/null");
	}
	return r < 0 ? tree_error(err, "etc/systemd/system", r) : 0;
}

int
kit_debian_configure(int root, struct err *err)
{
	int r = configure_files(root, err);

	if (r == 0)
		r = configure_masks(root, err);
	if (r == 0)
		r = check_root_locked(root, err);
	return r;
}
