#include "kit_rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kit.h"
#include "kit_run.h"
#include "kit_scripts.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

#define MIB (1ull << 20)
#define PUBLIC_KEY_MAX 8192
#define SYSTEMD_DIR "/etc/systemd/system"
#define WANTS_DIR SYSTEMD_DIR "/multi-user.target.wants"

static const char *const debugfs_env[] = {"DEBUGFS_PAGER=__none__", NULL};

/* ---- clone ---------------------------------------------------------------------------- */

/* A reflink shares the blocks (btrfs, xfs); elsewhere a copy that keeps the holes. */
static int
copy_image(int src, int dst)
{
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	return kit_tree_copy_sparse(src, dst);
}

static bool
mentions(const struct strbuf *a, const struct strbuf *b, const char *what)
{
	return (a->data && strstr(a->data, what)) || (b->data && strstr(b->data, what));
}

/* e2fsck -fy: exit status 0-3 means the filesystem is consistent now. */
static int
fsck(const char *path, struct err *err)
{
	const char *argv[] = {"e2fsck", "-f", "-y", path, NULL};
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = 600000};
	int r = kit_run(&cmd, NULL, NULL, err);

	if (r >= 4)
		return err_set(err, ERR_INTERNAL, NULL, EIO,
			       "'e2fsck' left errors (exit status %d)", r);
	return r < 0 ? r : 0;
}

/* resize2fs to the file's new size; once e2fsck first when resize2fs asks for it (an image
 * mounted since its last check). */
static int
grow(const char *path, uint64_t size_mb, struct err *err)
{
	char size[32], line[512];
	const char *argv[] = {"resize2fs", path, size, NULL};
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = 600000};
	cleanup_strbuf struct strbuf out = {0}, errout = {0};
	int r;

	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mb);
	r = kit_run(&cmd, &out, &errout, err);
	if (r > 0 && mentions(&out, &errout, "e2fsck -f")) {
		if ((r = fsck(path, err)) < 0)
			return r;
		return kit_run_ok(&cmd, NULL, err);
	}
	if (r <= 0)
		return r;
	kit_run_last_line(errout.len ? errout.data : out.data, line, sizeof(line));
	return err_set(err, ERR_INTERNAL, NULL, EIO, "'resize2fs' failed (exit status %d): %s", r,
		       line);
}

static int
clone_into(int src, const char *tmp, int fd, uint64_t image_size, uint64_t size_mb, struct err *err)
{
	int r = copy_image(src, fd);

	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "copy: %s", strerror(-r));
	if (size_mb * MIB == image_size)
		return 0;
	if (ftruncate(fd, (off_t)(size_mb * MIB)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "grow: %s", strerror(errno));
	return grow(tmp, size_mb, err);
}

int
kit_rootfs_clone(const char *image, const char *dest, uint64_t size_mb, struct err *err)
{
	cleanup_close int src = open(image, O_RDONLY | O_CLOEXEC), fd = -1;
	char tmp[PATH_MAX];
	struct stat st;
	int r;

	if (src < 0 || fstat(src, &st) < 0)
		return err_set(err, ERR_NOT_FOUND, NULL, errno, "image '%s': %s", image,
			       strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "image '%s': not a file", image);
	if (size_mb > UINT64_MAX / MIB / 2 || size_mb * MIB < (uint64_t)st.st_size)
		return err_set(err, ERR_INVALID, "storage_mb", EINVAL,
			       "%llu MB is less than the image's %llu MB",
			       (unsigned long long)size_mb,
			       (unsigned long long)((uint64_t)st.st_size + MIB - 1) / MIB);
	if (access(dest, F_OK) == 0)
		return err_set(err, ERR_EXISTS, NULL, EEXIST, "root disk '%s' exists", dest);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dest) >= (int)sizeof(tmp))
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path '%s' too long", dest);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", tmp,
			       strerror(errno));
	r = clone_into(src, tmp, fd, (uint64_t)st.st_size, size_mb, err);
	if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) < 0)
		r = err_set(err, errno == EEXIST ? ERR_EXISTS : ERR_INTERNAL, NULL, errno,
			    "'%s': %s", dest, strerror(errno));
	if (r < 0) {
		unlink(tmp);
		return err_wrap(err, "root disk '%s'", dest);
	}
	return 0;
}

int
kit_rootfs_grow(const char *path, uint64_t size_mb, struct err *err)
{
	cleanup_close int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return err_set(err, ERR_NOT_FOUND, NULL, errno, "'%s': %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || size_mb > UINT64_MAX / MIB / 2 ||
	    size_mb * MIB < (uint64_t)st.st_size)
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "'%s': not a file, or larger than %llu MB", path,
			       (unsigned long long)size_mb);
	if (ftruncate(fd, (off_t)(size_mb * MIB)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "grow '%s': %s", path,
			       strerror(errno));
	return grow(path, size_mb, err);
}

/* ---- inject --------------------------------------------------------------------------- */

/* "Inode: 12   Type: directory    Mode:  0755 ..." -> the type word. */
static enum kit_rootfs_type
stat_type(const char *out)
{
	static const struct {
		const char *word;
		enum kit_rootfs_type type;
	} types[] = {{"directory", KIT_ROOTFS_DIR},
		     {"regular", KIT_ROOTFS_FILE},
		     {"symlink", KIT_ROOTFS_LINK}};
	const char *t = strstr(out, "Type: ");
	size_t n;

	if (!t || memchr(out, '\n', (size_t)(t - out)))
		return KIT_ROOTFS_OTHER;
	t += strlen("Type: ");
	n = strcspn(t, " \n");
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (strlen(types[i].word) == n && strncmp(t, types[i].word, n) == 0)
			return types[i].type;
	return KIT_ROOTFS_OTHER;
}

int
kit_rootfs_type(const char *rootfs, const char *path, enum kit_rootfs_type *ret, struct err *err)
{
	char req[PATH_MAX + 8], line[512];
	const char *argv[] = {"debugfs", "-R", req, rootfs, NULL};
	struct kit_cmd cmd = {.argv = argv, .env = debugfs_env};
	cleanup_strbuf struct strbuf out = {0}, errout = {0};
	int r;

	snprintf(req, sizeof(req), "stat %s", path);
	if ((r = kit_run(&cmd, &out, &errout, err)) < 0)
		return r;
	if (out.data && strncmp(out.data, "Inode: ", 7) == 0) {
		*ret = stat_type(out.data);
		return 0;
	}
	if (errout.data && strstr(errout.data, "File not found by ext2_lookup")) {
		*ret = KIT_ROOTFS_NONE;
		return 0;
	}
	kit_run_last_line(errout.data, line, sizeof(line));
	return err_set(err, ERR_INVALID, NULL, EINVAL, "'%s' is not an ext4 filesystem: %s", rootfs,
		       line);
}

struct inject {
	const char *rootfs;
	char tmp[PATH_MAX - 64]; /* host directory holding the files debugfs copies in */
	struct strbuf script;
	struct err *err;
};

static int
probe(struct inject *in, const char *path, enum kit_rootfs_type *ret)
{
	return kit_rootfs_type(in->rootfs, path, ret, in->err);
}

static int emit(struct inject *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends one debugfs command. */
static int
emit(struct inject *in, const char *fmt, ...)
{
	char line[PATH_MAX * 2];
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	r = n < 0 || n >= (int)sizeof(line) ? -ENAMETOOLONG
					    : strbuf_append(&in->script, line, (size_t)n);
	return r < 0 ? err_set(in->err, ERR_INTERNAL, NULL, -r, "debugfs script: %s", strerror(-r))
		     : 0;
}

/* "/sbin/sistemo-init" -> "/sbin/./sistemo-init": debugfs resolves a command's parent
 * directory without following a link in its last component (merged /usr: /sbin -> usr/sbin);
 * with "/." after it, the link is followed, inside the image. */
static const char *
dotted(const char *path, char buf[PATH_MAX])
{
	const char *slash = strrchr(path, '/');

	if (!slash || kit_path(buf, PATH_MAX, "%.*s/.%s", (int)(slash - path), path, slash) < 0)
		return path;
	return buf;
}

/* Root-owned with mode (type bits included). */
static int
emit_owner(struct inject *in, const char *image_path, mode_t mode)
{
	char buf[PATH_MAX];
	const char *path = dotted(image_path, buf);
	int r = emit(in, "sif %s mode 0%lo\n", path, (unsigned long)mode);

	if (r == 0)
		r = emit(in, "sif %s uid 0\n", path);
	if (r == 0)
		r = emit(in, "sif %s gid 0\n", path);
	return r;
}

/* A directory at path. private: whatever else is there (a link, a file) is replaced and the
 * mode enforced; otherwise a link is followed inside the image. Returns 1 when the directory
 * is new (nothing below it exists), 0 when kept. */
static int
ensure_dir(struct inject *in, const char *path, mode_t mode, bool private)
{
	char buf[PATH_MAX];
	enum kit_rootfs_type t;
	int r = probe(in, path, &t);

	if (r < 0)
		return r;
	if (t == KIT_ROOTFS_DIR || (t == KIT_ROOTFS_LINK && !private))
		return t == KIT_ROOTFS_DIR && private ? emit_owner(in, path, S_IFDIR | mode) : 0;
	if (t != KIT_ROOTFS_NONE && !private)
		return err_set(in->err, ERR_PRECONDITION, NULL, ENOTDIR,
			       "'%s' in the image is not a directory", path);
	if (t != KIT_ROOTFS_NONE && (r = emit(in, "rm %s\n", dotted(path, buf))) < 0)
		return r;
	if ((r = emit(in, "mkdir %s\n", dotted(path, buf))) < 0 ||
	    (r = emit_owner(in, path, S_IFDIR | mode)))
		return r;
	return 1;
}

/* Removes what is at path unless it is a directory (an error) or the parent is new. */
static int
clear_path(struct inject *in, const char *path, bool parent_new)
{
	enum kit_rootfs_type t = KIT_ROOTFS_NONE;
	char buf[PATH_MAX];
	int r = parent_new ? 0 : probe(in, path, &t);

	if (r < 0)
		return r;
	if (t == KIT_ROOTFS_DIR)
		return err_set(in->err, ERR_PRECONDITION, NULL, EISDIR,
			       "'%s' in the image is a directory", path);
	return t == KIT_ROOTFS_NONE ? 0 : emit(in, "rm %s\n", dotted(path, buf));
}

/* Writes data to the host temp file `name`, then scripts rm + write + owner for path. */
static int
put_file(struct inject *in, const char *path, const char *name, const char *data, mode_t mode,
	 bool parent_new)
{
	char host[PATH_MAX], buf[PATH_MAX];
	cleanup_close int dir = open(in->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = dir < 0 ? -errno : kit_tree_write(dir, name, 0600, data, strlen(data));

	if (r < 0)
		return err_set(in->err, ERR_INTERNAL, NULL, -r, "'%s/%s': %s", in->tmp, name,
			       strerror(-r));
	snprintf(host, sizeof(host), "%s/%s", in->tmp, name);
	if ((r = clear_path(in, path, parent_new)) < 0)
		return r;
	if ((r = emit(in, "write \"%s\" %s\n", host, dotted(path, buf))) < 0)
		return r;
	return emit_owner(in, path, S_IFREG | mode);
}

static int
script_ssh(struct inject *in, const char *public_key)
{
	cleanup_free char *keys = NULL;
	int r, fresh;

	if ((r = ensure_dir(in, "/sbin", 0755, false)) < 0)
		return r;
	if ((r = put_file(in, "/sbin/sistemo-init", "sistemo-init", kit_script_sistemo_init, 0755,
			  r == 1)) < 0)
		return r;
	if ((r = ensure_dir(in, "/root", 0700, false)) < 0)
		return r;
	if ((fresh = ensure_dir(in, "/root/.ssh", 0700, true)) < 0)
		return fresh;
	if (asprintf(&keys, "%s\n", public_key) < 0)
		return err_set(in->err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	return put_file(in, "/root/.ssh/authorized_keys", "authorized_keys", keys, 0600,
			r == 1 || fresh == 1);
}

/* A unit file in /etc/systemd/system and its multi-user.target.wants link. */
static int
script_unit(struct inject *in, const char *name, const char *text, bool wants_new)
{
	char unit[PATH_MAX], link[PATH_MAX], buf[PATH_MAX];
	int r;

	kit_path(unit, sizeof(unit), SYSTEMD_DIR "/%s", name);
	kit_path(link, sizeof(link), WANTS_DIR "/%s", name);
	r = put_file(in, unit, name, text, 0644, false);
	if (r == 0)
		r = clear_path(in, link, wants_new);
	if (r == 0)
		r = emit(in, "symlink %s %s\n", dotted(link, buf), unit);
	return r;
}

static int
script_systemd(struct inject *in)
{
	static const char *const dirs[] = {"/etc", "/etc/systemd", SYSTEMD_DIR, WANTS_DIR};
	char buf[PATH_MAX];
	bool fresh = false;
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(dirs) && r >= 0; i++) {
		r = fresh ? emit(in, "mkdir %s\n", dotted(dirs[i], buf))
			  : ensure_dir(in, dirs[i], 0755, false);
		fresh = fresh || r == 1;
	}
	if (r >= 0)
		r = script_unit(in, "sistemo-ready.service", kit_systemd_ready_unit, fresh);
	if (r == 0)
		r = script_unit(in, "sistemo-power-button.service", kit_systemd_power_unit, fresh);
	return r < 0 ? r : 0;
}

/* debugfs exits 0 whatever failed: every line on stderr but its banner is an error. */
static int
run_script(struct inject *in)
{
	char path[PATH_MAX], line[512];
	const char *argv[] = {"debugfs", "-w", "-f", path, in->rootfs, NULL};
	struct kit_cmd cmd = {.argv = argv, .env = debugfs_env};
	cleanup_strbuf struct strbuf errout = {0};
	cleanup_close int dir = open(in->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = dir < 0 ? -errno
			: kit_tree_write(dir, "script", 0600, in->script.data, in->script.len);

	if (r < 0)
		return err_set(in->err, ERR_INTERNAL, NULL, -r, "debugfs script: %s", strerror(-r));
	snprintf(path, sizeof(path), "%s/script", in->tmp);
	if ((r = kit_run(&cmd, NULL, &errout, in->err)) < 0)
		return r;
	for (const char *p = errout.data; p && *p;) {
		size_t n = strcspn(p, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		if (line[strspn(line, " \t")] && strncmp(line, "debugfs ", 8) != 0)
			return err_set(in->err, ERR_INTERNAL, NULL, EIO, "debugfs: %s", line);
		p += n + (p[n] == '\n');
	}
	return r == 0 ? 0 : err_set(in->err, ERR_INTERNAL, NULL, EIO, "debugfs: exit status %d", r);
}

static bool
key_ok(const char *key)
{
	size_t n = strnlen(key, PUBLIC_KEY_MAX);

	if (n == 0 || n >= PUBLIC_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
			return false;
	return true;
}

/* The host directory for debugfs' source files: next to rootfs, quoted in the script. */
static int
inject_tmp(struct inject *in, const char *rootfs)
{
	const char *slash = strrchr(rootfs, '/');

	snprintf(in->tmp, sizeof(in->tmp), "%.*s.inject-XXXXXX",
		 slash ? (int)(slash - rootfs) + 1 : 0, rootfs);
	if (strpbrk(in->tmp, "\"\n\\"))
		return err_set(in->err, ERR_INVALID, NULL, EINVAL,
			       "path '%s': unsupported characters", rootfs);
	if (!mkdtemp(in->tmp))
		return err_set(in->err, ERR_INTERNAL, NULL, errno, "mkdtemp '%s': %s", in->tmp,
			       strerror(errno));
	return 0;
}

static int
inject_run(struct inject *in, const char *public_key)
{
	enum kit_rootfs_type systemd;
	int r = script_ssh(in, public_key);

	if (r == 0)
		r = probe(in, "/lib/systemd/systemd", &systemd);
	if (r == 0 && systemd != KIT_ROOTFS_NONE)
		r = script_systemd(in);
	return r;
}

typedef int (*inject_fn)(struct inject *in, const void *arg);

static int
inject_with(const char *rootfs, inject_fn fn, const void *arg, struct err *err)
{
	struct inject in = {.rootfs = rootfs, .err = err};
	struct stat st;
	int r;

	if (stat(rootfs, &st) < 0 || !S_ISREG(st.st_mode))
		return err_set(err, ERR_NOT_FOUND, NULL, ENOENT, "root disk '%s': not a file",
			       rootfs);
	if ((r = inject_tmp(&in, rootfs)) < 0)
		return r;
	r = fn(&in, arg);
	if (r == 0)
		r = run_script(&in);
	strbuf_free(&in.script);
	int rr = kit_tree_remove(in.tmp);
	if (rr < 0)
		log_warn("kit: remove '%s': %s", in.tmp, strerror(-rr));
	return r < 0 ? err_wrap(err, "inject into '%s'", rootfs) : 0;
}

static int
inject_init_key(struct inject *in, const void *public_key)
{
	return inject_run(in, public_key);
}

int
kit_rootfs_inject(const char *rootfs, const char *public_key, struct err *err)
{
	if (!key_ok(public_key))
		return err_set(err, ERR_INVALID, "public_key", EINVAL,
			       "the public key must be one line of printable text");
	return inject_with(rootfs, inject_init_key, public_key, err);
}

/* /etc/sistemo/entrypoint: a link or file where /etc/sistemo should be is replaced. */
static int
inject_entrypoint(struct inject *in, const void *script)
{
	int r = ensure_dir(in, "/etc", 0755, false), fresh;

	if (r < 0)
		return r;
	if ((fresh = ensure_dir(in, "/etc/sistemo", 0755, true)) < 0)
		return fresh;
	return put_file(in, "/etc/sistemo/entrypoint", "entrypoint", script, 0755,
			r == 1 || fresh == 1);
}

int
kit_rootfs_inject_entrypoint(const char *rootfs, const char *script, struct err *err)
{
	return inject_with(rootfs, inject_entrypoint, script, err);
}
