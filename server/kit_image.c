#include "kit_image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"
#include "kit.h"
#include "kit_debian.h"
#include "kit_run.h"
#include "kit_scripts.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

#define IMAGE_MIN_MB 64
#define IMAGE_HEADROOM_MB 56
#define DEBIAN_MIN_MB 1024
#define DEBIAN_HEADROOM_PERCENT 30

static const struct {
	const char *path;
	mode_t mode;
} tiny_dirs[] = {
	{"bin", 0755},      {"sbin", 0755},  {"usr/bin", 0755},      {"usr/sbin", 0755},
	{"lib", 0755},      {"lib64", 0755}, {"etc/dropbear", 0755}, {"etc/init.d", 0755},
	{"etc/acpi", 0755}, {"proc", 0555},  {"sys", 0555},          {"dev", 0755},
	{"run", 0755},      {"tmp", 01777},  {"var/log", 0755},      {"mnt", 0755},
	{"home", 0755},     {"root", 0700},  {"root/.ssh", 0700},
};

static const struct {
	const char *path, *target;
} tiny_links[] = {
	{"var/run", "../run"},
	{"etc/mtab", "../proc/self/mounts"},
};

/* The host programs copied into the tiny image, and where they go. */
static const struct {
	const char *name, *dest;
} tiny_programs[] = {
	{"dropbear", "usr/sbin/dropbear"},
	{"dropbearkey", "usr/bin/dropbearkey"},
};

static int
tree_error(struct err *err, const char *path, int r)
{
	return err_set(err, ERR_INTERNAL, NULL, -r, "image tree: '%s': %s", path, strerror(-r));
}

int
kit_image_busybox_applets(struct strbuf *out, struct err *err)
{
	const char *argv[] = {KIT_BUSYBOX, "--list-full", NULL};
	struct kit_cmd cmd = {.argv = argv};

	if (!kit_tree_elf_static(KIT_BUSYBOX))
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no static '" KIT_BUSYBOX "' (apt-get install busybox-static)");
	return kit_run_ok(&cmd, out, err);
}

/* Makes the parent directories of a relative path (0755). */
static int
tree_parents(int root, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return 0;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	return kit_tree_mkdir(root, dir, 0755);
}

/* bin/busybox and every applet as a relative link to it (sbin/init -> ../bin/busybox). */
static int
tree_busybox(int root, struct err *err)
{
	cleanup_strbuf struct strbuf list = {0};
	char *save = NULL, target[PATH_MAX];
	int r = kit_image_busybox_applets(&list, err);

	if (r < 0)
		return r;
	if ((r = kit_tree_copy(root, "bin/busybox", 0755, KIT_BUSYBOX)) < 0)
		return tree_error(err, "bin/busybox", r);
	for (char *l = strtok_r(list.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (streq(l, "bin/busybox") || streq(l, "linuxrc"))
			continue;
		r = kit_tree_relative(l, "bin/busybox", target, sizeof(target));
		if (r == 0)
			r = tree_parents(root, l);
		if (r == 0)
			r = kit_tree_symlink(root, l, target);
		if (r < 0)
			return tree_error(err, l, r);
	}
	return 0;
}

/* The absolute library path on one ldd line, or NULL (the vDSO): "\tlibz.so.1 =>
 * /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "\t/lib64/ld-linux-x86-64.so.2 (0x...)". */
static char *
ldd_path(char *line, bool *ret_missing)
{
	char *arrow = strstr(line, "=> "), *p = arrow ? arrow + 3 : line;

	*ret_missing = strstr(line, "not found") != NULL;
	p += strspn(p, " \t");
	if (*p != '/')
		return NULL;
	p[strcspn(p, " \t(")] = '\0';
	return p;
}

/* The shared libraries (and the loader) a program needs, copied to the same paths. */
static int
tree_libraries(int root, const char *program, struct err *err)
{
	const char *argv[] = {"ldd", program, NULL};
	struct kit_cmd cmd = {.argv = argv};
	cleanup_strbuf struct strbuf out = {0};
	char *save = NULL;
	bool missing;
	int r = kit_run_ok(&cmd, &out, err);

	if (r < 0)
		return r;
	for (char *l = strtok_r(out.data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		const char *lib = ldd_path(l, &missing);
		if (missing)
			return err_set(err, ERR_PRECONDITION, NULL, ENOENT, "'%s': library %s",
				       program, l + strspn(l, " \t"));
		if (!lib)
			continue;
		r = tree_parents(root, lib + 1);
		if (r == 0)
			r = kit_tree_copy(root, lib + 1, 0755, lib);
		if (r < 0 && r != -EEXIST)
			return tree_error(err, lib + 1, r);
	}
	return 0;
}

int
kit_image_add_dropbear(int root, struct err *err)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(tiny_programs); i++) {
		if (host_find_binary(tiny_programs[i].name, NULL, path, sizeof(path)) < 0)
			return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
				       "'%s' not found (apt-get install dropbear-bin)",
				       tiny_programs[i].name);
		int r = kit_tree_copy(root, tiny_programs[i].dest, 0755, path);
		if (r < 0)
			return tree_error(err, tiny_programs[i].dest, r);
		if ((r = tree_libraries(root, path, err)) < 0)
			return r;
	}
	return 0;
}

static int
tree_skeleton(int root, struct err *err)
{
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(tiny_dirs); i++)
		if ((r = kit_tree_mkdir(root, tiny_dirs[i].path, tiny_dirs[i].mode)) < 0)
			return tree_error(err, tiny_dirs[i].path, r);
	for (size_t i = 0; i < ARRAY_SIZE(tiny_links); i++)
		if ((r = kit_tree_symlink(root, tiny_links[i].path, tiny_links[i].target)) < 0)
			return tree_error(err, tiny_links[i].path, r);
	for (size_t i = 0; i < kit_tiny_files_count; i++) {
		const struct kit_file *f = &kit_tiny_files[i];
		r = tree_parents(root, f->path);
		if (r == 0)
			r = kit_tree_write(root, f->path, f->mode, f->data, strlen(f->data));
		if (r < 0)
			return tree_error(err, f->path, r);
	}
	return 0;
}

int
kit_image_tiny_tree(int root, struct err *err)
{
	int r = tree_skeleton(root, err);

	if (r == 0)
		r = tree_busybox(root, err);
	if (r == 0)
		r = kit_image_add_dropbear(root, err);
	return r;
}

struct build {
	char tmp[PATH_MAX - 32]; /* <dir of out_path>/.image-<name>-XXXXXX */
	char tree[PATH_MAX];
	char file[PATH_MAX];
	kit_percent_fn progress;
	void *ud;
};

static void report(const struct build *b, unsigned percent, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(const struct build *b, unsigned percent, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_debug("kit: image: %s", msg);
	if (b->progress)
		b->progress(b->ud, "image", percent, msg);
}

/* mkfs.ext4 -d: no mount, no loop device. 4 KiB blocks and 256-byte inodes whatever the size,
 * so a disk grown later by resize2fs is an ordinary ext4. */
int
kit_image_mkfs(const char *tree, const char *file, const char *label, uint64_t size_mb,
	       struct err *err)
{
	char size[32];
	const char *argv[] = {"mkfs.ext4", "-q", "-F",    "-L", label, "-b", "4096", "-I",
			      "256",       "-i", "16384", "-d", tree,  file, size,   NULL};
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = 300000};

	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mb);
	return kit_run_ok(&cmd, NULL, err);
}

/* Creates the staging directory; returns an fd on it (O_NOFOLLOW) or an error. */
static int
tree_open(const struct build *b, struct err *err)
{
	int root;

	if (mkdir(b->tree, 0755) < 0 ||
	    (root = open(b->tree, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", b->tree,
			       strerror(errno));
	return root;
}

/* The tree's size in MiB, headroom added: percent of it, at least extra_mb, and min_mb in all. */
static int
image_size(const struct build *b, unsigned percent, uint64_t extra_mb, uint64_t min_mb,
	   uint64_t *ret_mb, struct err *err)
{
	uint64_t bytes = 0, mb;
	int r = kit_tree_usage(b->tree, &bytes);

	if (r < 0)
		return tree_error(err, b->tree, r);
	mb = (bytes + (1u << 20) - 1) / (1u << 20);
	mb += mb * percent / 100 > extra_mb ? mb * percent / 100 : extra_mb;
	*ret_mb = mb < min_mb ? min_mb : mb;
	return 0;
}

/* mkfs.ext4 of the tree into the temporary file, then renamed to out_path. */
static int
image_finish(const struct build *b, const char *out_path, const char *name, uint64_t size_mb,
	     struct err *err)
{
	char label[32];
	int r;

	snprintf(label, sizeof(label), "sistemo-%s", name);
	report(b, 90, "mkfs.ext4 (%llu MB)", (unsigned long long)size_mb);
	if ((r = kit_image_mkfs(b->tree, b->file, label, size_mb, err)) < 0)
		return r;
	if (chmod(b->file, 0644) < 0 || rename(b->file, out_path) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "install '%s': %s", out_path,
			       strerror(errno));
	report(b, 100, "built '%s' (%llu MB)", name, (unsigned long long)size_mb);
	return 0;
}

static int
build_tiny(struct build *b, const char *out_path, struct err *err)
{
	cleanup_close int root = -1;
	uint64_t size_mb = 0;
	int r;

	report(b, 10, "staging busybox and dropbear");
	if ((root = tree_open(b, err)) < 0)
		return root;
	if ((r = kit_image_tiny_tree(root, err)) < 0 ||
	    (r = image_size(b, 0, IMAGE_HEADROOM_MB, IMAGE_MIN_MB, &size_mb, err)) < 0)
		return r;
	return image_finish(b, out_path, "tiny", size_mb, err);
}

/* debootstrap's share of the debian build: 1% to 85%. */
static void
debootstrap_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	const struct build *b = ud;

	(void)step;
	report(b, 1 + percent * 84 / 100, "%s", message);
}

static int
build_debian(struct build *b, const char *out_path, struct err *err)
{
	cleanup_close int root = -1;
	char mirror[512];
	uint64_t size_mb = 0;
	int r;

	kit_debian_mirror(mirror, sizeof(mirror));
	report(b, 1, "debootstrap %s from '%s' (a few minutes)", KIT_DEBIAN_SUITE, mirror);
	if ((root = tree_open(b, err)) < 0)
		return root;
	if ((r = kit_debian_bootstrap(b->tree, mirror, debootstrap_progress, b, err)) < 0)
		return r;
	report(b, 86, "setting the tree up for sistemo machines");
	if ((r = kit_debian_configure(root, err)) < 0 ||
	    (r = image_size(b, DEBIAN_HEADROOM_PERCENT, 0, DEBIAN_MIN_MB, &size_mb, err)) < 0)
		return r;
	return image_finish(b, out_path, "debian", size_mb, err);
}

static const struct {
	const char *name;
	int (*build)(struct build *b, const char *out_path, struct err *err);
} builders[] = {
	{"tiny", build_tiny},
	{"debian", build_debian},
};

/* Where a build works: out_path's folder (made in a fresh data dir) and its file name. */
struct place {
	char dir[PATH_MAX];
	const char *base;
};

static int
place_of(const char *out_path, struct place *p, struct err *err)
{
	const char *slash = strrchr(out_path, '/');

	p->base = slash ? slash + 1 : out_path;
	if (!*p->base || kit_path(p->dir, sizeof(p->dir), "%.*s",
				  slash ? (int)(slash - out_path) + (slash == out_path) : 1,
				  slash ? out_path : ".") < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "bad image path '%s'",
			       out_path);
	if (mkdir(p->dir, 0755) < 0 && errno != EEXIST)
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdir '%s': %s", p->dir,
			       strerror(errno));
	return 0;
}

/* One build of an image file at a time: flock on <dir>/.<base>.lock, held while building. */
static int
build_lock(const struct place *p, struct err *err)
{
	char path[PATH_MAX];

	if (kit_path(path, sizeof(path), "%s/.%s.lock", p->dir, p->base) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", p->dir);
	return kit_lock_file(path, 0, err);
}

/* Staging directories of this image left by a build that died (the lock is ours). */
static void
remove_stale(const struct place *p)
{
	char prefix[NAME_MAX + 16], path[PATH_MAX];
	DIR *d = opendir(p->dir);
	struct dirent *de;

	snprintf(prefix, sizeof(prefix), ".image-%s-", p->base);
	while (d && (de = readdir(d)))
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
		    kit_path(path, sizeof(path), "%s/%s", p->dir, de->d_name) == 0) {
			log_info("kit: removing '%s' left by an interrupted build", path);
			int r = kit_tree_remove(path);
			if (r < 0)
				log_warn("kit: remove '%s': %s", path, strerror(-r));
		}
	if (d)
		closedir(d);
}

/* <dir>/.image-<base>-XXXXXX with tree/ and image.ext4 inside. */
static int
build_dirs(struct build *b, const struct place *p, struct err *err)
{
	if (kit_path(b->tmp, sizeof(b->tmp), "%s/.image-%s-XXXXXX", p->dir, p->base) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", p->dir);
	if (!mkdtemp(b->tmp))
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdtemp '%s': %s", b->tmp,
			       strerror(errno));
	snprintf(b->tree, sizeof(b->tree), "%s/tree", b->tmp);
	snprintf(b->file, sizeof(b->file), "%s/image.ext4", b->tmp);
	return 0;
}

static int
build_locked(size_t i, const char *out_path, kit_percent_fn progress, void *ud, struct err *err)
{
	struct build b = {.progress = progress, .ud = ud};
	struct place p;
	struct stat st;
	bool existed = stat(out_path, &st) == 0;
	int r = place_of(out_path, &p, err);

	if (r < 0)
		return r;
	cleanup_close int lock = build_lock(&p, err);
	if (lock < 0)
		return lock;
	/* another build finished it while this one waited for the lock */
	if (!existed && stat(out_path, &st) == 0)
		return 0;
	remove_stale(&p);
	if ((r = build_dirs(&b, &p, err)) < 0)
		return r;
	r = builders[i].build(&b, out_path, err);
	int rr = kit_tree_remove(b.tmp);
	if (rr < 0)
		log_warn("kit: remove '%s': %s", b.tmp, strerror(-rr));
	return r;
}

int
kit_image_build_percent(const char *name, const char *out_path, kit_percent_fn progress, void *ud,
			struct err *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(builders); i++)
		if (streq(name, builders[i].name))
			return build_locked(i, out_path, progress, ud, err) < 0
				       ? err_wrap(err, "image '%s'", name)
				       : 0;
	return err_set(err, ERR_NOT_FOUND, "name", ENOENT,
		       "no built-in image '%s' (built-in: tiny, debian)", name);
}

struct message_only {
	kit_progress_fn progress;
	void *ud;
};

static void
message_only(void *ud, const char *step, unsigned percent, const char *message)
{
	const struct message_only *m = ud;

	(void)percent;
	m->progress(m->ud, step, message);
}

int
kit_image_build(const char *name, const char *out_path, kit_progress_fn progress, void *ud,
		struct err *err)
{
	struct message_only m = {progress, ud};

	return kit_image_build_percent(name, out_path, progress ? message_only : NULL, &m, err);
}
