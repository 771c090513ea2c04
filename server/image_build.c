#include "image_build.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon.h"
#include "extract.h"
#include "kit_debian.h"
#include "kit_image.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"
#include "pbjson.h"
#include "sistemo/v1/images.pb-c.h"

#define MIB (1ull << 20)
#define HEADROOM_PERCENT 30
#define HEADROOM_MIN_MB 64
#define IMAGE_MIN_MB 64
#define COPY_DEPTH_MAX 128
#define TAR_BLOCK 512
#define TAR_SCAN_ENTRIES 100000
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

static const char *const source_names[] = {"auto", "dir", "tarball", "oci", "debian"};

struct build {
	struct daemon *d;
	const struct image_build_spec *s;
	const struct image_progress *p;
	enum image_build_source source;
	char tag[160];
	char dir[PATH_MAX - 32]; /* images/tmp/build-XXXXXX */
	char tree[PATH_MAX];     /* <dir>/tree */
	char file[PATH_MAX];     /* <dir>/image.ext4 */
	struct arena *a;
	Sistemo__V1__ImageMeta *meta;
};

/* ---- checks --------------------------------------------------------------------------- */

static bool
package_ok(const char *p)
{
	size_t n = strlen(p);

	if (n < 2 || n > 100 || !isalnum((unsigned char)p[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)p[i]) && !isdigit((unsigned char)p[i]) &&
		    !strchr("+-.", p[i]))
			return false;
	return true;
}

static int
check_debian(const struct image_build_spec *s, struct err *err)
{
	if (*s->release && !package_ok(s->release))
		return err_set(err, ERR_INVALID, "release", EINVAL, "invalid release '%.64s'",
			       s->release);
	if (s->n_packages > IMAGE_BUILD_PACKAGES_MAX)
		return err_set(err, ERR_INVALID, "packages", E2BIG, "at most %d packages",
			       IMAGE_BUILD_PACKAGES_MAX);
	for (size_t i = 0; i < s->n_packages; i++)
		if (!package_ok(s->packages[i]))
			return err_set(err, ERR_INVALID, "packages", EINVAL,
				       "invalid package name '%.100s'", s->packages[i]);
	return 0;
}

int
image_build_check(const struct image_build_spec *s, struct err *err)
{
	char tag[160];
	struct stat st;

	if (image_tag_normalize(s->name, tag, sizeof(tag), err) < 0)
		return -EINVAL;
	if ((unsigned)s->source > IMAGE_BUILD_DEBIAN)
		return err_set(err, ERR_INVALID, "source", EINVAL, "unknown build source %d",
			       (int)s->source);
	if (s->source == IMAGE_BUILD_DEBIAN)
		return check_debian(s, err);
	if (s->from[0] != '/')
		return err_set(err, ERR_INVALID, "from", EINVAL,
			       "--from '%s': the daemon needs an absolute path", s->from);
	if (stat(s->from, &st) < 0)
		return err_set(err, ERR_NOT_FOUND, "from", errno, "--from '%s': %s", s->from,
			       strerror(errno));
	if ((s->source == IMAGE_BUILD_DIR) != !!S_ISDIR(st.st_mode) &&
	    s->source != IMAGE_BUILD_AUTO)
		return err_set(err, ERR_INVALID, "from", EINVAL, "--from '%s' is %s", s->from,
			       S_ISDIR(st.st_mode) ? "a directory" : "not a directory");
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return err_set(err, ERR_INVALID, "from", EINVAL,
			       "--from '%s': not a directory or a file", s->from);
	return 0;
}

/* ---- what the source is: a directory, a compressed tarball, or a tar holding an image ---- */

/* Reads the tar header at off: 1 with the member's name and size, 0 at the end. */
static int
tar_header(int fd, off_t off, char name[101], uint64_t *ret_size)
{
	unsigned char h[TAR_BLOCK];
	char size[13];

	if (pread(fd, h, sizeof(h), off) != (ssize_t)sizeof(h) || !h[0])
		return 0;
	if (memcmp(h + 257, "ustar", 5) != 0)
		return -EINVAL;
	memcpy(name, h, 100);
	name[100] = '\0';
	memcpy(size, h + 124, 12);
	size[12] = '\0';
	*ret_size = strtoull(size, NULL, 8);
	return 1;
}

/* An uncompressed tar with manifest.json (docker save) or oci-layout at its top is an image. */
static bool
tar_is_image(const char *path)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	char name[101];
	uint64_t size;
	off_t off = 0;

	for (unsigned i = 0; fd >= 0 && i < TAR_SCAN_ENTRIES; i++) {
		if (tar_header(fd, off, name, &size) <= 0)
			return false;
		const char *n = strncmp(name, "./", 2) == 0 ? name + 2 : name;
		if (streq(n, "manifest.json") || streq(n, "oci-layout"))
			return true;
		off += TAR_BLOCK + (off_t)((size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK);
	}
	return false;
}

static enum image_build_source
detect(const struct image_build_spec *s)
{
	struct stat st;

	if (s->source != IMAGE_BUILD_AUTO)
		return s->source;
	if (stat(s->from, &st) == 0 && S_ISDIR(st.st_mode))
		return IMAGE_BUILD_DIR;
	return tar_is_image(s->from) ? IMAGE_BUILD_OCI : IMAGE_BUILD_TARBALL;
}

/* ---- a host directory copied entry by entry, never through a link ------------------------ */

static int copy_dir(int src, int dst, unsigned depth);

static int
copy_attrs(int fd, const struct stat *st)
{
	const struct timespec t[2] = {st->st_atim, st->st_mtim};

	if (fchown(fd, st->st_uid, st->st_gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0 ||
	    futimens(fd, t) < 0)
		return -errno;
	return 0;
}

static int
copy_file(int src, int dst, const char *name, const struct stat *st)
{
	cleanup_close int in = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	cleanup_close int out = -1;
	struct stat now;
	int r;

	if (in < 0 || fstat(in, &now) < 0)
		return -errno;
	if (!S_ISREG(now.st_mode))
		return -EINVAL; /* swapped for something else since it was listed */
	out = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	if ((r = kit_tree_copy_sparse(in, out)) < 0)
		return r;
	return copy_attrs(out, st);
}

static int
copy_subdir(int src, int dst, const char *name, const struct stat *st, unsigned depth)
{
	if (mkdirat(dst, name, 0700) < 0)
		return -errno;
	cleanup_close int in = openat(src, name, DIR_FLAGS);
	cleanup_close int out = openat(dst, name, DIR_FLAGS);
	if (in < 0 || out < 0)
		return -errno;
	int r = copy_dir(in, out, depth + 1);
	return r < 0 ? r : copy_attrs(out, st);
}

static int
copy_link(int src, int dst, const char *name, const struct stat *st)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);

	if (n < 0)
		return -errno;
	target[n] = '\0';
	if (symlinkat(target, dst, name) < 0 ||
	    fchownat(dst, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static int
copy_entry(int src, int dst, const char *name, unsigned depth)
{
	struct stat st;

	if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	switch (st.st_mode & S_IFMT) {
	case S_IFREG:
		return copy_file(src, dst, name, &st);
	case S_IFDIR:
		return copy_subdir(src, dst, name, &st, depth);
	case S_IFLNK:
		return copy_link(src, dst, name, &st);
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
		if (mknodat(dst, name, st.st_mode, st.st_rdev) < 0 ||
		    fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		return 0;
	default:
		return 0; /* sockets belong to a running system */
	}
}

static int
copy_dir(int src, int dst, unsigned depth)
{
	int fd = depth > COPY_DEPTH_MAX ? -1 : dup(src), r = 0;
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return depth > COPY_DEPTH_MAX ? -ELOOP : -errno;
	}
	while (r == 0 && (de = readdir(d)))
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			r = copy_entry(src, dst, de->d_name, depth);
	closedir(d);
	return r;
}

static int
stage_dir(struct build *b, struct err *err)
{
	cleanup_close int src = open(b->s->from, DIR_FLAGS);
	cleanup_close int dst = open(b->tree, DIR_FLAGS);
	int r;

	if (src < 0 || dst < 0)
		return err_set(err, ERR_NOT_FOUND, "from", errno, "'%s': %s", b->s->from,
			       strerror(errno));
	image_report(b->p, "stage", 10, "copying the tree '%s'", b->s->from);
	if ((r = copy_dir(src, dst, 0)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "copy '%s': %s", b->s->from,
			       strerror(-r));
	struct stat st;
	return fstat(src, &st) < 0 ? -errno : copy_attrs(dst, &st) < 0 ? -errno : 0;
}

/* ---- archives (extract.c) ------------------------------------------------------------------ */

static void
extract_progress(void *ud, uint64_t done, uint64_t total)
{
	const struct build *b = ud;

	image_report(b->p, "extract", 10 + (total ? (unsigned)(50 * done / total) : 0),
		     "unpacking: %.1f of %.1f MiB", (double)done / MIB, (double)total / MIB);
}

static char **
arena_strv(struct arena *a, char **v, size_t n)
{
	char **out = arena_alloc(a, (n + 1) * sizeof(*out));

	for (size_t i = 0; out && i < n; i++)
		out[i] = arena_strdup(a, v[i]);
	return out;
}

static void
meta_from_oci(struct build *b, const struct oci_meta *m)
{
	Sistemo__V1__ImageMeta *o = b->meta;

	o->entrypoint = arena_strv(b->a, m->entrypoint, m->n_entrypoint);
	o->n_entrypoint = m->n_entrypoint;
	o->cmd = arena_strv(b->a, m->cmd, m->n_cmd);
	o->n_cmd = m->n_cmd;
	o->env = arena_strv(b->a, m->env, m->n_env);
	o->n_env = m->n_env;
	o->workdir = arena_strdup(b->a, m->workdir ? m->workdir : "");
}

static int
stage_archive(struct build *b, struct err *err)
{
	struct extract_opts o = {
		.allow_devices = true, .progress = extract_progress, .progress_ud = b};
	struct extract_stats st = {0};
	struct oci_meta m = {0};
	int r;

	image_report(b->p, "extract", 10, "unpacking the %s '%s'",
		     b->source == IMAGE_BUILD_OCI ? "image archive" : "tarball", b->s->from);
	if (b->source == IMAGE_BUILD_TARBALL)
		return extract_tar(b->s->from, b->tree, &o, &st, err);
	r = extract_oci(b->s->from, NULL, b->tree, &o, &m, &st, err);
	if (r == 0) {
		meta_from_oci(b, &m);
		image_report(b->p, "extract", 60,
			     "%llu files, %llu whiteouts applied; entrypoint: %zu words, cmd: %zu",
			     (unsigned long long)st.files, (unsigned long long)st.whiteouts,
			     m.n_entrypoint, m.n_cmd);
	}
	oci_meta_free(&m);
	return r;
}

/* ---- Debian ---------------------------------------------------------------------------- */

static void
debootstrap_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	const struct build *b = ud;

	(void)step;
	image_report(b->p, "debootstrap", 5 + percent * 55 / 100, "%s", message);
}

static int
stage_debian(struct build *b, struct err *err)
{
	char mirror[512];
	struct kit_debian_opts o = {.suite = *b->s->release ? b->s->release : KIT_DEBIAN_SUITE,
				    .packages = b->s->packages,
				    .n_packages = b->s->n_packages};
	int r;

	kit_debian_mirror(mirror, sizeof(mirror));
	image_report(b->p, "debootstrap", 5, "debootstrap %s from '%s' (a few minutes)", o.suite,
		     mirror);
	if ((r = kit_debian_bootstrap_opts(b->tree, mirror, &o, debootstrap_progress, b, err)) < 0)
		return r;
	cleanup_close int root = open(b->tree, DIR_FLAGS);
	if (root < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", b->tree,
			       strerror(errno));
	image_report(b->p, "configure", 62, "setting the tree up for sistemo machines");
	return kit_debian_configure(root, err);
}

/* ---- an SSH server ------------------------------------------------------------------------ */

static const char *
ssh_found(int root)
{
	static const char *const dropbears[] = {"usr/sbin/dropbear", "usr/bin/dropbear",
						"sbin/dropbear", "bin/dropbear"};

	if (kit_tree_has(root, "usr/sbin/sshd", true))
		return "openssh";
	for (size_t i = 0; i < ARRAY_SIZE(dropbears); i++)
		if (kit_tree_has(root, dropbears[i], true))
			return "dropbear";
	return NULL;
}

static void
ssh_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	const struct build *b = ud;

	image_report(b->p, step, percent, "%s", message);
}

/* Keeps the SSH server the tree has; else, in a Debian-based tree, installs openssh-server
 * (kit_debian_add_openssh); else adds the host's dropbear (it needs no package
 * manager and runs on any glibc or musl tree); says so when neither works. */
static int
add_ssh(struct build *b, struct err *err)
{
	cleanup_close int root = open(b->tree, DIR_FLAGS);
	struct err why = {0};
	const char *found;

	if (root < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", b->tree,
			       strerror(errno));
	if (!kit_tree_has(root, "bin/sh", true))
		image_report(b->p, "ssh", 70,
			     "warning: the tree has no /bin/sh: the sistemo init cannot run in it");
	if ((found = ssh_found(root))) {
		b->meta->has_ssh = true;
		b->meta->ssh = (char *)found;
		image_report(b->p, "ssh", 70, "SSH server: %s (in the tree)", found);
		return 0;
	}
	if (kit_tree_has(root, "usr/bin/dpkg", true) &&
	    kit_tree_has(root, "var/lib/dpkg/status", false)) {
		image_report(b->p, "ssh", 64,
			     "no SSH server in the tree: adding openssh-server with apt (a "
			     "Debian-based tree)");
		if (kit_debian_add_openssh(b->tree, root, ssh_progress, b, &why) == 0 &&
		    ssh_found(root)) {
			b->meta->has_ssh = true;
			b->meta->ssh = "openssh (added by sistemo)";
			image_report(b->p, "ssh", 70, "openssh-server installed");
			return 0;
		}
		image_report(b->p, "ssh", 70, "warning: openssh-server could not be added: %s",
			     why.msg[0] ? why.msg : "no sshd after the install");
		err_clear(&why);
	}
	image_report(b->p, "ssh", 70, "no SSH server in the tree: adding the host's dropbear");
	if (kit_image_add_dropbear(root, &why) == 0 && ssh_found(root)) {
		b->meta->has_ssh = true;
		b->meta->ssh = "dropbear (added by sistemo)";
		return 0;
	}
	b->meta->ssh = arena_printf(b->a, "none: dropbear could not be added: %s", why.msg);
	image_report(b->p, "ssh", 72,
		     "warning: the image has no SSH server (%s): machines deployed from it never "
		     "become ready",
		     why.msg);
	return 0;
}

/* ---- the ext4 file ------------------------------------------------------------------------ */

static int
make_ext4(struct build *b, struct err *err)
{
	uint64_t bytes = 0, mb;
	char label[17];
	int r = kit_tree_usage(b->tree, &bytes);

	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "'%s': %s", b->tree, strerror(-r));
	mb = (bytes + MIB - 1) / MIB;
	mb += mb * HEADROOM_PERCENT / 100 > HEADROOM_MIN_MB ? mb * HEADROOM_PERCENT / 100
							    : HEADROOM_MIN_MB;
	mb = mb < IMAGE_MIN_MB ? IMAGE_MIN_MB : mb;
	if (b->s->size_mb && b->s->size_mb < mb)
		return err_set(err, ERR_INVALID, "size_mb", EFBIG,
			       "the tree needs %llu MB, more than the %llu MB asked for",
			       (unsigned long long)mb, (unsigned long long)b->s->size_mb);
	mb = b->s->size_mb ? b->s->size_mb : mb;
	snprintf(label, sizeof(label), "%.16s", b->tag);
	*strchrnul(label, ':') = '\0';
	image_report(b->p, "mkfs", 80, "mkfs.ext4 (%llu MB)", (unsigned long long)mb);
	int fd = open(b->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", b->file,
			       strerror(errno));
	close(fd);
	return kit_image_mkfs(b->tree, b->file, label, mb, err);
}

static int
store_result(struct build *b, struct image_info *ret, struct err *err)
{
	cleanup_strbuf struct strbuf json = {0};
	char ref[PATH_MAX + 64];

	if (pbjson_encode(&b->meta->base, 0, &json) < 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (b->source == IMAGE_BUILD_DEBIAN)
		snprintf(ref, sizeof(ref), "debootstrap %s",
			 *b->s->release ? b->s->release : KIT_DEBIAN_SUITE);
	else
		snprintf(ref, sizeof(ref), "%s %s", source_names[b->source], b->s->from);
	image_report(b->p, "store", 92, "computing the digest and storing the image");
	struct image_add a = {
		.source = "build", .source_ref = ref, .meta_json = json.data, .tag = b->tag};
	return image_store_add(b->d, b->file, &a, ret, err);
}

static int
build_dirs(struct build *b, struct err *err)
{
	char probe[PATH_MAX];
	int fd = image_tmp_file(b->d, "build", probe, sizeof(probe), err);

	if (fd < 0)
		return fd;
	close(fd);
	unlink(probe);
	/* the same unique name, as a directory */
	if (kit_path(b->dir, sizeof(b->dir), "%s", probe) < 0 || mkdir(b->dir, 0700) < 0 ||
	    kit_path(b->tree, sizeof(b->tree), "%s/tree", b->dir) < 0 || mkdir(b->tree, 0755) < 0 ||
	    kit_path(b->file, sizeof(b->file), "%s/image.ext4", b->dir) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", b->dir, strerror(errno));
	return 0;
}

static int
build_run(struct build *b, struct image_info *ret, struct err *err)
{
	int r;

	image_report(b->p, "stage", 2, "building '%s' from %s", b->tag, source_names[b->source]);
	if ((r = build_dirs(b, err)) < 0)
		return r;
	if (b->source == IMAGE_BUILD_DIR)
		r = stage_dir(b, err);
	else if (b->source == IMAGE_BUILD_DEBIAN)
		r = stage_debian(b, err);
	else
		r = stage_archive(b, err);
	if (r < 0 || image_cancelled(b->p, err))
		return r < 0 ? r : -ECANCELED;
	if ((r = add_ssh(b, err)) < 0 || (r = make_ext4(b, err)) < 0)
		return r;
	if (image_cancelled(b->p, err))
		return -ECANCELED;
	return store_result(b, ret, err);
}

int
image_build(struct daemon *d, const struct image_build_spec *s, const struct image_progress *p,
	    struct image_info *ret, struct err *err)
{
	struct build b = {.d = d, .s = s, .p = p};
	int r = image_build_check(s, err);

	if (r < 0 || (r = image_tag_normalize(s->name, b.tag, sizeof(b.tag), err)) < 0)
		return r;
	if (arena_new(&b.a) < 0)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	b.meta = arena_msg(b.a, &sistemo__v1__image_meta__descriptor);
	b.source = detect(s);
	r = build_run(&b, ret, err);
	if (b.dir[0]) {
		int rr = kit_tree_remove(b.dir);
		if (rr < 0)
			log_warn("image build: remove '%s': %s", b.dir, strerror(-rr));
	}
	arena_free(b.a);
	return r < 0 ? err_wrap(err, "build '%s'", b.tag) : 0;
}
