#include "kit_tree.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"

#define WALK_DEPTH_MAX 64
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

int
kit_path(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static bool
path_ok(const char *path)
{
	if (!path || !*path || *path == '/' || strlen(path) >= PATH_MAX)
		return false;
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/' && !*++p)
			return false;
	}
	return true;
}

/* The next component of *p into comp; advances *p past it and its '/'. */
static void
next_component(const char **p, char comp[NAME_MAX + 1])
{
	size_t n = strcspn(*p, "/");

	memcpy(comp, *p, n);
	comp[n] = '\0';
	*p += n + ((*p)[n] == '/');
}

/* Opens the directory holding path's last component, each component with O_NOFOLLOW.
 * Returns the fd (the caller closes it) and sets *ret_base to the last component. */
static int
open_parent(int root, const char *path, const char **ret_base)
{
	const char *base, *p = path;
	char comp[NAME_MAX + 1];
	int fd;

	if (!path_ok(path))
		return -EINVAL;
	base = strrchr(path, '/');
	fd = openat(root, ".", DIR_FLAGS);
	while (fd >= 0 && base && p <= base) {
		next_component(&p, comp);
		int next = openat(fd, comp, DIR_FLAGS);
		close(fd);
		fd = next;
	}
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	*ret_base = base ? base + 1 : path;
	return fd;
}

/* mkdir of one component under fd, then opened without following: a link there fails. */
static int
mkdir_component(int fd, const char *comp, mode_t mode)
{
	bool made = mkdirat(fd, comp, mode) == 0;

	if (!made && errno != EEXIST)
		return -errno;
	int sub = openat(fd, comp, DIR_FLAGS);
	if (sub < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	if (made && fchmod(sub, mode) < 0) {
		int r = -errno;
		close(sub);
		return r;
	}
	return sub;
}

int
kit_tree_mkdir(int root, const char *path, mode_t mode)
{
	const char *p = path;
	char comp[NAME_MAX + 1];
	int fd;

	if (!path_ok(path))
		return -EINVAL;
	fd = openat(root, ".", DIR_FLAGS);
	if (fd < 0)
		return -errno;
	while (*p) {
		next_component(&p, comp);
		int sub = mkdir_component(fd, comp, mode);
		close(fd);
		if (sub < 0)
			return sub;
		fd = sub;
	}
	close(fd);
	return 0;
}

static int
write_all(int fd, const void *data, size_t size)
{
	const char *p = data;

	while (size > 0) {
		ssize_t n = write(fd, p, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

/* Creates path as a new regular file; returns its fd. */
static int
create_file(int root, const char *path)
{
	const char *base;
	cleanup_close int dir = open_parent(root, path, &base);

	if (dir < 0)
		return dir;
	int fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int
kit_tree_write(int root, const char *path, mode_t mode, const void *data, size_t size)
{
	cleanup_close int fd = create_file(root, path);
	int r;

	if (fd < 0)
		return fd;
	r = write_all(fd, data, size);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	return r;
}

int
kit_tree_open_regular(const char *src, struct stat *st)
{
	int fd = open(src, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	int r = fstat(fd, st) < 0 ? -errno : S_ISREG(st->st_mode) ? 0 : -EINVAL;

	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

int
kit_tree_copy(int root, const char *path, mode_t mode, const char *src)
{
	struct stat st;
	cleanup_close int in = kit_tree_open_regular(src, &st);
	cleanup_close int fd = -1;
	int r;

	if (in < 0)
		return in;
	fd = create_file(root, path);
	if (fd < 0)
		return fd;
	r = kit_tree_copy_sparse(in, fd);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	return r;
}

int
kit_tree_symlink(int root, const char *path, const char *target)
{
	const char *base;
	cleanup_close int dir = open_parent(root, path, &base);

	if (dir < 0)
		return dir;
	return symlinkat(target, dir, base) < 0 ? -errno : 0;
}

int
kit_tree_relative(const char *link, const char *target, char *buf, size_t size)
{
	size_t common = 0, ups = 0, len = 0;

	if (!path_ok(link) || !path_ok(target))
		return -EINVAL;
	/* drop the leading directories both share: "usr/bin/x" and "usr/sbin/y" share "usr/" */
	for (size_t i = 0; link[i] && link[i] == target[i]; i++)
		if (link[i] == '/')
			common = i + 1;
	for (const char *p = link + common; *p; p++)
		ups += *p == '/';
	buf[0] = '\0';
	for (size_t i = 0; i < ups; i++)
		len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "../");
	len += (size_t)snprintf(buf + len, len < size ? size - len : 0, "%s", target + common);
	return len < size ? 0 : -ENAMETOOLONG;
}

struct walk {
	dev_t dev;
	uint64_t bytes;
	bool remove;
};

/* Visits the entries under dir (the fd is consumed): sums their blocks and, when removing,
 * removes them children first. Links are entries, never followed. */
static int
walk_dir(int dir, struct walk *w, int depth)
{
	DIR *d = fdopendir(dir);
	struct dirent *de;
	int r = 0;

	if (!d) {
		close(dir);
		return -errno;
	}
	while (r == 0 && (de = readdir(d))) {
		struct stat st;
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		w->bytes += (uint64_t)st.st_blocks * 512;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name, DIR_FLAGS);
			if (st.st_dev != w->dev || depth >= WALK_DEPTH_MAX || sub < 0)
				r = sub < 0 ? -errno : (depth >= WALK_DEPTH_MAX ? -ELOOP : -EXDEV);
			if (r < 0 && sub >= 0)
				close(sub);
			if (r == 0)
				r = walk_dir(sub, w, depth + 1);
		}
		if (r == 0 && w->remove &&
		    unlinkat(dirfd(d), de->d_name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
			r = -errno;
	}
	closedir(d);
	return r;
}

static int
walk(const char *path, struct walk *w)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return -errno;
	w->dev = st.st_dev;
	if (!S_ISDIR(st.st_mode)) {
		w->bytes += (uint64_t)st.st_blocks * 512;
		return w->remove && unlink(path) < 0 ? -errno : 0;
	}
	fd = open(path, DIR_FLAGS);
	if (fd < 0)
		return -errno;
	int r = walk_dir(fd, w, 0);
	if (r == 0 && w->remove && rmdir(path) < 0)
		r = -errno;
	return r;
}

int
kit_tree_usage(const char *dir, uint64_t *ret_bytes)
{
	struct walk w = {0};
	int r = walk(dir, &w);

	*ret_bytes = w.bytes;
	return r;
}

int
kit_tree_remove(const char *path)
{
	struct walk w = {.remove = true};
	int r = walk(path, &w);

	return r == -ENOENT ? 0 : r;
}

/* Copies len bytes at off from src to dst: copy_file_range, else pread/pwrite. */
static int
copy_range(int src, int dst, off_t off, off_t len)
{
	char buf[65536];
	bool plain = false;

	while (len > 0) {
		off_t in = off, out = off;
		ssize_t n = -1;
		if (!plain) {
			n = copy_file_range(src, &in, dst, &out, (size_t)len, 0);
			if (n < 0 && errno == EINTR)
				continue;
			plain = n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
					  errno == EOPNOTSUPP);
			if (n < 0 && !plain)
				return -errno;
		}
		if (plain) {
			n = pread(src, buf, len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf),
				  off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (n > 0 && pwrite(dst, buf, (size_t)n, off) != n)
				return -EIO;
		}
		if (n == 0)
			return -EIO; /* the source shrank under us */
		off += n;
		len -= n;
	}
	return 0;
}

int
kit_tree_copy_sparse(int src, int dst)
{
	struct stat st;
	off_t off = 0;

	if (fstat(src, &st) < 0)
		return -errno;
	while (off < st.st_size) {
		off_t data = lseek(src, off, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = off; /* no SEEK_DATA here: all data */
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		int r = copy_range(src, dst, data, hole - data);
		if (r < 0)
			return r;
		off = hole;
	}
	return ftruncate(dst, st.st_size) < 0 ? -errno : 0;
}

int
kit_tree_read(const char *path, size_t max, char **ret)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	cleanup_free char *buf = NULL;
	size_t len = 0;
	struct stat st;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* shrank: keep what is there */
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

bool
kit_tree_elf_static(const char *path)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr eh;
	Elf64_Phdr ph;

	if (fd < 0 || pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh))
		return false;
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(ph) || eh.e_phnum > 512)
		return false;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
		    (ssize_t)sizeof(ph))
			return false;
		if (ph.p_type == PT_INTERP)
			return false;
	}
	return eh.e_type == ET_EXEC || eh.e_type == ET_DYN;
}

bool
kit_tree_has(int root, const char *path, bool executable)
{
	struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
	cleanup_close int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	       (!executable || (st.st_mode & 0111));
}

int
kit_lock_file(const char *path, int flags, struct err *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, 0600);

	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "'%s': %s", path, strerror(errno));
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return err_set(err, ERR_INTERNAL, NULL, e, "lock '%s': %s", path,
				       strerror(e));
		}
	return fd;
}
