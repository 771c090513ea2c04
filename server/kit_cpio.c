#include "kit_cpio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kit_tree.h"

#include "macro.h"

#define NEWC_HEADER_SIZE 110

struct kit_cpio {
	int fd;
	uint32_t ino;
	uint64_t off;
};

struct entry {
	const char *name;
	uint32_t mode; /* type and permissions */
	uint32_t nlink;
	uint32_t size;
	unsigned rdev_major, rdev_minor;
};

int
kit_cpio_new(int fd, struct kit_cpio **ret)
{
	struct kit_cpio *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->ino = 1;
	*ret = c;
	return 0;
}

void
kit_cpio_free(struct kit_cpio *c)
{
	free(c);
}

static int
put(struct kit_cpio *c, const void *data, size_t size)
{
	const char *p = data;

	while (size > 0) {
		ssize_t n = write(c->fd, p, size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		size -= (size_t)n;
		c->off += (uint64_t)n;
	}
	return 0;
}

static int
pad(struct kit_cpio *c, unsigned align)
{
	static const char zeros[512];
	size_t n = (align - c->off % align) % align;

	return put(c, zeros, n);
}

/* "070701", then 13 fields of 8 hex digits, the NUL-terminated name, padding to 4 bytes. */
static int
header(struct kit_cpio *c, const struct entry *e, uint32_t ino)
{
	char h[NEWC_HEADER_SIZE + 1];
	size_t namesize = strlen(e->name) + 1;
	int r;

	if (namesize > PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(h, sizeof(h), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino,
		 e->mode, 0u, 0u, e->nlink, 0u, e->size, 0u, 0u, e->rdev_major, e->rdev_minor,
		 (unsigned)namesize, 0u);
	if ((r = put(c, h, NEWC_HEADER_SIZE)) < 0 || (r = put(c, e->name, namesize)) < 0)
		return r;
	return pad(c, 4);
}

static bool
name_ok(const char *name)
{
	return name && *name && *name != '/' && !strstr(name, "..") && !streq(name, "TRAILER!!!");
}

static int
add(struct kit_cpio *c, const struct entry *e, const void *data)
{
	int r;

	if (!name_ok(e->name))
		return -EINVAL;
	if ((r = header(c, e, c->ino++)) < 0 || (r = put(c, data, e->size)) < 0)
		return r;
	return pad(c, 4);
}

int
kit_cpio_add_dir(struct kit_cpio *c, const char *name, mode_t mode)
{
	struct entry e = {.name = name, .mode = S_IFDIR | (mode & 07777), .nlink = 2};

	return add(c, &e, NULL);
}

int
kit_cpio_add_data(struct kit_cpio *c, const char *name, mode_t mode, const void *data, size_t size)
{
	struct entry e = {.name = name, .mode = S_IFREG | (mode & 07777), .nlink = 1};

	if (size > UINT32_MAX)
		return -EFBIG;
	e.size = (uint32_t)size;
	return add(c, &e, data);
}

int
kit_cpio_add_symlink(struct kit_cpio *c, const char *name, const char *target)
{
	struct entry e = {.name = name, .mode = S_IFLNK | 0777, .nlink = 1};

	e.size = (uint32_t)strnlen(target, PATH_MAX);
	if (e.size == 0 || e.size >= PATH_MAX)
		return -EINVAL;
	return add(c, &e, target);
}

int
kit_cpio_add_chardev(struct kit_cpio *c, const char *name, mode_t mode, unsigned major,
		     unsigned minor)
{
	struct entry e = {.name = name,
			  .mode = S_IFCHR | (mode & 07777),
			  .nlink = 1,
			  .rdev_major = major,
			  .rdev_minor = minor};

	return add(c, &e, NULL);
}

/* Copies exactly size bytes from fd into the archive. */
static int
copy_body(struct kit_cpio *c, int fd, uint64_t size)
{
	char buf[65536];

	while (size > 0) {
		ssize_t n = read(fd, buf, size < sizeof(buf) ? (size_t)size : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO; /* the file shrank while we read it */
		int r = put(c, buf, (size_t)n);
		if (r < 0)
			return r;
		size -= (uint64_t)n;
	}
	return pad(c, 4);
}

int
kit_cpio_add_file(struct kit_cpio *c, const char *name, mode_t mode, const char *src)
{
	struct stat st;
	cleanup_close int fd = kit_tree_open_regular(src, &st);
	struct entry e = {.name = name, .mode = S_IFREG | (mode & 07777), .nlink = 1};
	int r;

	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size > UINT32_MAX)
		return -EFBIG;
	if (!name_ok(name))
		return -EINVAL;
	e.size = (uint32_t)st.st_size;
	if ((r = header(c, &e, c->ino++)) < 0)
		return r;
	return copy_body(c, fd, e.size);
}

int
kit_cpio_finish(struct kit_cpio *c)
{
	struct entry e = {.name = "TRAILER!!!", .nlink = 1};
	int r = header(c, &e, 0);

	return r < 0 ? r : pad(c, 512);
}
