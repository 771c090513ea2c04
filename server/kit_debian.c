#include "kit_debian.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "host.h"
#include "jail.h"
#include "kit_run.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

#define BOOTSTRAP_TIMEOUT_MS (15u * 60 * 1000)
#define KEYRING "/usr/share/keyrings/debian-archive-keyring.gpg"
/* udev: without it systemd sees no device, and serial-getty@ttyS0 waits 90 s for ttyS0 */
#define INCLUDE "systemd-sysv,udev,openssh-server,iproute2,iputils-ping,ca-certificates"
#define FIELD_MAX 1024
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

struct bootstrap {
	const char *argv[16]; /* argv[0]: an absolute path */
	char include[8192];   /* --include=... */
	const char *env[16];
	struct kit_debian_progress p;
	kit_percent_fn progress;
	void *ud;
};

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

static void
bootstrap_line(void *ud, const char *line)
{
	struct bootstrap *b = ud;
	char msg[256];
	unsigned percent;

	if (starts(line, "W: "))
		log_info("kit: debootstrap: %s", line);
	if (kit_debian_progress_line(&b->p, line, &percent, msg, sizeof(msg)) && b->progress)
		b->progress(b->ud, "image", percent, msg);
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

/* The first stage: download, verify and unpack, with debootstrap's own code only. */
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
	b->argv[k++] = "--foreign";
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

/* debootstrap believes it runs in Docker where /.dockerenv exists, and then links the tree's
 * /proc to /proc: the jail and the guest's init want a directory there. */
static int
proc_dir(const char *tree)
{
	cleanup_close int root = open(tree, DIR_FLAGS);
	struct stat st;

	if (root < 0)
		return -errno;
	if (fstatat(root, "proc", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (unlinkat(root, "proc", 0) < 0 && errno != ENOENT)
		return -errno;
	return mkdirat(root, "proc", 0555) < 0 ? -errno : 0;
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
	static const char *const second[] = {"/debootstrap/debootstrap", "--second-stage", NULL};
	cleanup_free struct bootstrap *b = calloc(1, sizeof(*b));
	char prog[PATH_MAX], what[PATH_MAX + 32];
	int r;

	if (!b)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if ((r = bootstrap_argv(b, tree, mirror, o, prog, sizeof(prog), err)) < 0)
		return r;
	bootstrap_env(b);
	b->progress = progress;
	b->ud = ud;
	snprintf(what, sizeof(what), "debootstrap from '%s'", mirror);
	struct jail j = {
		.what = what,
		.argv = b->argv,
		.env = b->env,
		.allow_mounts = true, /* it makes device nodes in the tree and checks it can */
		.error_prefix = "E: ",
		.timeout_ms = BOOTSTRAP_TIMEOUT_MS,
		.line = bootstrap_line,
		.ud = b,
	};
	if ((r = jail_run(&j, err)) < 0)
		return r;
	if ((r = proc_dir(tree)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "image tree: 'proc': %s", strerror(-r));
	/* The second stage runs the packages' own scripts: inside the tree, with no network */
	j.what = "debootstrap --second-stage";
	j.argv = second;
	j.root = tree;
	j.no_network = true;
	return jail_run(&j, err);
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

/* ---- openssh-server added to a Debian-based tree ------------------------------------------ */

#define APT_TIMEOUT_MS (10u * 60 * 1000)
#define DEBS_DIR "var/cache/sistemo-debs"

/* Copies the tree's file path (links resolved inside the tree) to dst; missing is -ENOENT. */
static int
copy_out(int root, const char *path, const char *dst)
{
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
	cleanup_close int in = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	cleanup_close int out = -1;
	struct stat st;

	if (in < 0)
		return -errno;
	if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
		return -EINVAL;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	return kit_tree_copy_sparse(in, out);
}

/* The tree's apt sources (sources.list and sources.list.d/ *.list, *.sources) into dir. */
static int
copy_sources(int root, const char *dir, struct err *err)
{
	struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT};
	char src[PATH_MAX], dst[PATH_MAX];
	struct dirent *de;
	int n = 0, r;
	DIR *d;

	if (kit_path(dst, sizeof(dst), "%s/sources.list", dir) == 0 &&
	    copy_out(root, "etc/apt/sources.list", dst) == 0)
		n++;
	if (kit_path(dst, sizeof(dst), "%s/sources.list.d", dir) < 0 || mkdir(dst, 0755) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", dst, strerror(errno));
	int fd = (int)syscall(SYS_openat2, root, "etc/apt/sources.list.d", &how, sizeof(how));
	if (fd >= 0 && !(d = fdopendir(fd)))
		close(fd);
	else if (fd >= 0) {
		while ((de = readdir(d))) {
			if (!sources_file(de) ||
			    kit_path(src, sizeof(src), "etc/apt/sources.list.d/%s", de->d_name) <
				    0 ||
			    kit_path(dst, sizeof(dst), "%s/sources.list.d/%s", dir, de->d_name) < 0)
				continue;
			if ((r = copy_out(root, src, dst)) == 0)
				n++;
		}
		closedir(d);
	}
	if (n == 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "the tree has no apt sources (etc/apt/sources.list or "
			       "etc/apt/sources.list.d/)");
	return 0;
}

/* The host's apt-get, downloading what the tree lacks for openssh-server: the tree's sources
 * and dpkg status, everything else (lists, cache, lock) in dir. Only apt's own code runs. */
static int
apt_download(const char *dir, struct err *err)
{
	char o[7][PATH_MAX + 64];
	const char *argv[32];
	size_t k = 0;
	int r;

	static const char *const dirs[] = {"state", "state/lists",    "state/lists/partial",
					   "cache", "cache/archives", "cache/archives/partial"};

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (kit_path(o[0], sizeof(o[0]), "%s/%s", dir, dirs[i]) < 0 ||
		    mkdir(o[0], 0755) < 0)
			return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", o[0],
				       strerror(errno));
	snprintf(o[0], sizeof(o[0]), "Dir::State=%s/state", dir);
	snprintf(o[1], sizeof(o[1]), "Dir::State::status=%s/status", dir);
	snprintf(o[2], sizeof(o[2]), "Dir::Cache=%s/cache", dir);
	snprintf(o[3], sizeof(o[3]), "Dir::Etc::SourceList=%s/sources.list", dir);
	snprintf(o[4], sizeof(o[4]), "Dir::Etc::SourceParts=%s/sources.list.d", dir);
	snprintf(o[5], sizeof(o[5]), "Debug::NoLocking=true");
	snprintf(o[6], sizeof(o[6]), "APT::Sandbox::User=root");
	argv[k++] = "apt-get";
	argv[k++] = "-q";
	for (size_t i = 0; i < ARRAY_SIZE(o); i++) {
		argv[k++] = "-o";
		argv[k++] = o[i];
	}
	argv[k] = "update";
	argv[k + 1] = NULL;
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = APT_TIMEOUT_MS};
	if ((r = kit_run_ok(&cmd, NULL, err)) < 0)
		return r;
	argv[k++] = "install";
	argv[k++] = "--download-only";
	argv[k++] = "--yes";
	argv[k++] = "--no-install-recommends";
	argv[k++] = "openssh-server";
	argv[k] = NULL;
	return kit_run_ok(&cmd, NULL, err);
}

/* The downloaded packages into the tree's DEBS_DIR. */
static int
debs_into_tree(int root, const char *archives, unsigned *ret_n)
{
	DIR *d = opendir(archives);
	char src[PATH_MAX], dst[PATH_MAX];
	struct dirent *de;
	int r = kit_tree_mkdir(root, DEBS_DIR, 0755);

	*ret_n = 0;
	if (!d)
		return -errno;
	while (r == 0 && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 5 || !streq(de->d_name + n - 4, ".deb"))
			continue;
		r = kit_path(src, sizeof(src), "%s/%s", archives, de->d_name);
		if (r == 0)
			r = kit_path(dst, sizeof(dst), DEBS_DIR "/%s", de->d_name);
		if (r == 0 && (r = kit_tree_copy(root, dst, 0644, src)) == 0)
			(*ret_n)++;
	}
	closedir(d);
	return r;
}

/* `systemctl enable ssh`, by hand, where systemd runs the tree: the image's presets (ours says
 * "disable *") may have kept the package's scripts from enabling it. */
static int
enable_ssh_unit(int root)
{
	static const char unit[] = "/lib/systemd/system/ssh.service";
	static const char *const links[] = {
		"etc/systemd/system/multi-user.target.wants/ssh.service",
		"etc/systemd/system/sshd.service",
	};
	int r = 0;

	if (!kit_tree_has(root, unit + 1, false))
		return 0;
	if ((r = kit_tree_mkdir(root, "etc/systemd/system/multi-user.target.wants", 0755)) < 0)
		return r;
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(links); i++)
		if ((r = tree_unlink(root, links[i])) == 0)
			r = kit_tree_symlink(root, links[i], unit);
	return r;
}

/* What the install leaves: the packages, our policy-rc.d, the host keys the scripts made. */
static int
install_cleanup(int root, bool policy_ours)
{
	int r = tree_clear(root, DEBS_DIR, "", ".deb");
	cleanup_close int cache = tree_dir(root, "var/cache");

	if (cache >= 0 && unlinkat(cache, "sistemo-debs", AT_REMOVEDIR) < 0 && errno != ENOENT &&
	    r == 0)
		r = -errno;
	if (policy_ours && r == 0)
		r = tree_unlink(root, "usr/sbin/policy-rc.d");
	if (r == 0)
		r = tree_clear(root, "etc/ssh", "ssh_host_", "");
	if (r == 0)
		r = enable_ssh_unit(root);
	if (r == 0 && (r = kit_tree_mkdir(root, "etc/ssh/sshd_config.d", 0755)) == 0 &&
	    (r = tree_unlink(root, "etc/ssh/sshd_config.d/sistemo.conf")) == 0)
		r = kit_tree_write(root, "etc/ssh/sshd_config.d/sistemo.conf", 0644, sshd_conf,
				   strlen(sshd_conf));
	return r;
}

static int
dpkg_in_jail(const char *tree, struct err *err)
{
	static const char debs[] = "/" DEBS_DIR;
	static const char *const argv[] = {"/usr/bin/dpkg", "--install", "--recursive", debs, NULL};
	static const char *const env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
					  "LC_ALL=C",
					  "HOME=/root",
					  "DEBIAN_FRONTEND=noninteractive",
					  "DEBCONF_NONINTERACTIVE_SEEN=true",
					  NULL};
	const struct jail j = {
		.what = "dpkg in the image tree",
		.argv = argv,
		.env = env,
		.root = tree,
		.no_network = true,
		.error_prefix = "dpkg: error",
		.timeout_ms = APT_TIMEOUT_MS,
	};

	return jail_run(&j, err);
}

int
kit_debian_add_openssh(const char *tree, int root, kit_percent_fn progress, void *ud,
		       struct err *err)
{
	static const char policy[] = "#!/bin/sh\n# sistemo: no service starts while building\n"
				     "exit 101\n";
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;
	bool policy_ours = false;
	unsigned n = 0;
	int r;

	if (kit_path(dir, sizeof(dir), "%s.apt", tree) < 0 || mkdir(dir, 0755) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s.apt': %s", tree,
			       strerror(errno));
	r = kit_path(path, sizeof(path), "%s/status", dir);
	if (r == 0 && (r = copy_out(root, "var/lib/dpkg/status", path)) < 0)
		err_set(err, ERR_PRECONDITION, NULL, -r, "the tree's var/lib/dpkg/status: %s",
			strerror(-r));
	if (r == 0 && (r = copy_sources(root, dir, err)) == 0) {
		progress(ud, "ssh", 66, "downloading openssh-server with the host's apt-get");
		r = apt_download(dir, err);
	}
	if (r == 0 && kit_path(path, sizeof(path), "%s/cache/archives", dir) == 0 &&
	    (r = debs_into_tree(root, path, &n)) < 0)
		err_set(err, ERR_INTERNAL, NULL, -r, "image tree: '" DEBS_DIR "': %s",
			strerror(-r));
	if (r == 0 && n == 0)
		r = err_set(err, ERR_INTERNAL, NULL, ENOENT, "apt-get downloaded no package");
	if (r == 0 && fstatat(root, "usr/sbin/policy-rc.d", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		policy_ours = true;
		if ((r = kit_tree_write(root, "usr/sbin/policy-rc.d", 0755, policy,
					strlen(policy))) < 0)
			tree_error(err, "usr/sbin/policy-rc.d", r);
	}
	if (r == 0) {
		char msg[128];
		snprintf(msg, sizeof(msg),
			 "installing %u packages with the tree's dpkg (own namespaces, no network)",
			 n);
		progress(ud, "ssh", 68, msg);
		r = dpkg_in_jail(tree, err);
	}
	int c = install_cleanup(root, policy_ours);
	if (r == 0 && c < 0)
		r = tree_error(err, "etc/ssh", c);
	kit_tree_remove(dir);
	return r;
}
