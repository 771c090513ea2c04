/* Unpacking untrusted root filesystems: archives are made here with libarchive's writer, hostile
 * ones included, and every refusal is checked to have written nothing outside the destination
 * (planted links point at a directory of ours standing for the host, which must stay empty).
 * Then image archives: `docker save` and OCI layouts, layers in order, whiteouts, the config. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "err.h"
#include "extract.h"
#include "kit_tree.h"
#include "strbuf.h"

#if defined(__x86_64__)
#define HOST_ARCH "amd64"
#define OTHER_ARCH "arm64"
#else
#define HOST_ARCH "arm64"
#define OTHER_ARCH "amd64"
#endif

#define T_MTIME 1000000000 /* 2001-09-09 */

struct state {
	char dir[64];  /* scratch, removed in teardown: archives and dest live here */
	char host[64]; /* stands for "somewhere on the host" a planted link points at */
	char dest[96];
	char tar[96];
	struct err err;
	struct extract_stats stats;
};

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "/tmp/test_extract.XXXXXX");
	snprintf(st->host, sizeof(st->host), "/tmp/test_extract_host.XXXXXX");
	if (!mkdtemp(st->dir) || !mkdtemp(st->host)) {
		free(st);
		return -1;
	}
	snprintf(st->dest, sizeof(st->dest), "%s/dest", st->dir);
	snprintf(st->tar, sizeof(st->tar), "%s/a.tar", st->dir);
	if (mkdir(st->dest, 0755) < 0)
		return -1;
	*ts = st;
	return 0;
}

static int
teardown(void **ts)
{
	struct state *st = *ts;

	kit_tree_remove(st->dir);
	kit_tree_remove(st->host);
	free(st);
	return 0;
}

/* ---- making archives ------------------------------------------------------------------- */

/* One member. type: 'f' file, 'd' directory, 'l' symlink, 'h' hard link, 'c' character device,
 * 'p' FIFO. data: a file's bytes (size, or strlen when 0), a link's target. */
struct ent {
	const char *path;
	char type;
	const char *data;
	mode_t perm; /* 0: 0644, directories 0755 */
	size_t size;
	int64_t uid, gid;
	const char *xattr; /* a user. xattr name, its value "v" */
};

static void
write_ent(struct archive *a, const struct ent *e)
{
	struct archive_entry *ae = archive_entry_new();
	size_t size = e->type == 'f' && e->data ? (e->size ? e->size : strlen(e->data)) : 0;
	static const struct {
		char type;
		unsigned ae;
	} types[] = {{'f', AE_IFREG}, {'h', AE_IFREG}, {'d', AE_IFDIR},
		     {'l', AE_IFLNK}, {'c', AE_IFCHR}, {'p', AE_IFIFO}};

	assert_non_null(ae);
	archive_entry_set_pathname(ae, e->path);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == e->type)
			archive_entry_set_filetype(ae, types[i].ae);
	archive_entry_set_perm(ae, e->perm ? e->perm : e->type == 'd' ? 0755 : 0644);
	archive_entry_set_uid(ae, e->uid);
	archive_entry_set_gid(ae, e->gid);
	archive_entry_set_mtime(ae, T_MTIME, 0);
	archive_entry_set_size(ae, (la_int64_t)size);
	if (e->type == 'l')
		archive_entry_set_symlink(ae, e->data);
	if (e->type == 'h')
		archive_entry_set_hardlink(ae, e->data);
	if (e->type == 'c')
		archive_entry_set_rdev(ae, makedev(5, 1));
	if (e->xattr)
		archive_entry_xattr_add_entry(ae, e->xattr, "v", 1);
	assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
	if (size)
		assert_int_equal(archive_write_data(a, e->data, size), (la_ssize_t)size);
	archive_entry_free(ae);
}

/* Writes a pax tar at path, compressed with filter ("gzip", "zstd"...) unless NULL. Names are
 * written in UTF-8, as GNU tar does under a UTF-8 locale; the daemon reads them in "C". */
static void
write_tar(const char *path, const char *filter, const struct ent *ents, size_t n)
{
	struct archive *a = archive_write_new();

	assert_non_null(a);
	assert_non_null(setlocale(LC_CTYPE, "C.UTF-8"));
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	if (filter)
		assert_int_equal(archive_write_add_filter_by_name(a, filter), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++)
		write_ent(a, &ents[i]);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	setlocale(LC_CTYPE, "C");
}

#define WRITE_TAR(path, filter, ...)                                                               \
	do {                                                                                       \
		const struct ent ents_[] = {__VA_ARGS__};                                          \
		write_tar(path, filter, ents_, sizeof(ents_) / sizeof(ents_[0]));                  \
	} while (0)

/* A whole file, for embedding one archive in another; the caller frees *ret. */
static size_t
slurp(const char *path, char **ret)
{
	struct stat sb;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &sb), 0);
	*ret = malloc((size_t)sb.st_size + 1);
	assert_non_null(*ret);
	assert_int_equal(fread(*ret, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
	fclose(f);
	return (size_t)sb.st_size;
}

/* ---- looking at the result ------------------------------------------------------------- */

static void
at(const struct state *st, const char *name, char path[PATH_MAX])
{
	assert_int_equal(kit_path(path, PATH_MAX, "%s/%s", st->dest, name), 0);
}

static bool
exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

static bool
in_dest(const struct state *st, const char *name)
{
	char path[PATH_MAX];

	at(st, name, path);
	return exists(path);
}

static struct stat
lstat_in(const struct state *st, const char *name)
{
	char path[PATH_MAX];
	struct stat sb;

	at(st, name, path);
	if (lstat(path, &sb) < 0)
		fail_msg("'%s' is missing: %s", name, strerror(errno));
	return sb;
}

static void
assert_content(const struct state *st, const char *name, const char *want)
{
	char path[PATH_MAX], *got = NULL;

	at(st, name, path);
	assert_int_equal(kit_tree_read(path, 1 << 20, &got), 0);
	assert_string_equal(got, want);
	free(got);
}

/* Entries in a directory, "." and ".." aside. */
static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (!strstr(haystack, needle))
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

static int
extract(struct state *st, const struct extract_opts *o)
{
	err_clear(&st->err);
	return extract_tar(st->tar, st->dest, o, &st->stats, &st->err);
}

/* The archive is refused with an error naming entry, and the host stands untouched. */
static void
assert_refused(struct state *st, const char *entry, const char *why)
{
	char want[PATH_MAX];

	assert_true(extract(st, NULL) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	snprintf(want, sizeof(want), "entry '%s'", entry);
	assert_contains(st->err.msg, want);
	assert_contains(st->err.msg, why);
	assert_int_equal(count_entries(st->host), 0);
}

/* ---- tarballs -------------------------------------------------------------------------- */

static void
test_tree(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX], target[PATH_MAX] = "", value[8] = "";
	struct stat sb;

	WRITE_TAR(
		st->tar, "gzip", {.path = "./", .type = 'd', .perm = 0755},
		{.path = "etc/", .type = 'd', .perm = 0755},
		{.path = "etc/hostname", .type = 'f', .data = "vm\n"},
		{.path = "etc/shadow", .type = 'f', .data = "root:*:1::::::\n", .perm = 0640},
		{.path = "bin/", .type = 'd'},
		{.path = "bin/busybox", .type = 'f', .data = "\177ELF", .perm = 04755},
		{.path = "bin/sh", .type = 'l', .data = "/bin/busybox"},
		{.path = "bin/ls", .type = 'h', .data = "bin/busybox"},
		{.path = "lib", .type = 'l', .data = "usr/lib"},
		{.path = "usr/lib/libc.so", .type = 'f', .data = "libc"},
		{.path = "home/user/", .type = 'd', .perm = 0700, .uid = 1000, .gid = 1000},
		{.path = "home/user/.profile", .type = 'f', .data = "x", .uid = 1000, .gid = 1000},
		{.path = "/abs/path", .type = 'f', .data = "abs"},
		{.path = "a/./b/../c", .type = 'f', .data = "c"},
		{.path = "opt/ro/", .type = 'd', .perm = 0555},
		{.path = "opt/ro/f", .type = 'f', .data = "ro"},
		{.path = "caf\xc3\xa9", .type = 'f', .data = "utf-8"},
		{.path = "tagged", .type = 'f', .data = "x", .xattr = "user.test"});
	assert_int_equal(extract(st, NULL), 0);

	assert_content(st, "etc/hostname", "vm\n");
	assert_content(st, "abs/path", "abs");         /* "/abs/path" made relative */
	assert_content(st, "a/c", "c");                /* "a/./b/../c" taken lexically */
	assert_content(st, "usr/lib/libc.so", "libc"); /* parents made when missing */
	assert_content(st, "caf\xc3\xa9", "utf-8");
	assert_false(in_dest(st, "a/b"));
	sb = lstat_in(st, "etc/shadow");
	assert_int_equal(sb.st_mode & 07777, 0640);
	sb = lstat_in(st, "bin/busybox");
	assert_int_equal(sb.st_mode & 07777, 04755); /* setuid kept */
	assert_int_equal(sb.st_nlink, 2);            /* bin/ls */
	assert_int_equal(sb.st_mtim.tv_sec, T_MTIME);
	assert_int_equal(lstat_in(st, "bin/ls").st_ino, sb.st_ino);
	at(st, "bin/sh", path);
	assert_int_equal(readlink(path, target, sizeof(target) - 1), strlen("/bin/busybox"));
	assert_string_equal(target, "/bin/busybox"); /* stored, not followed */
	assert_true(S_ISLNK(lstat_in(st, "lib").st_mode));
	sb = lstat_in(st, "home/user");
	assert_int_equal(sb.st_mode & 07777, 0700);
	if (geteuid() == 0) {
		assert_int_equal(sb.st_uid, 1000);
		assert_int_equal(lstat_in(st, "home/user/.profile").st_gid, 1000);
	}
	/* directory modes and mtimes are set last: files made in them later change neither */
	assert_int_equal(lstat_in(st, "opt/ro").st_mode & 07777, 0555);
	assert_int_equal(lstat_in(st, "etc").st_mtim.tv_sec, T_MTIME);
	assert_int_equal(lstat_in(st, ".").st_mtim.tv_sec, T_MTIME);
	at(st, "tagged", path);
	if (getxattr(path, "user.test", value, sizeof(value)) >= 0 || errno != EOPNOTSUPP)
		assert_string_equal(value, "v");

	assert_int_equal(st->stats.files, 10);
	assert_int_equal(st->stats.dirs, 5);
	assert_int_equal(st->stats.symlinks, 2);
	assert_int_equal(st->stats.hardlinks, 1);
	assert_int_equal(st->stats.skipped, 0);
}

/* Every compression Debian's libarchive reads in-process. */
static void
test_compressions(void **ts)
{
	struct state *st = *ts;
	const char *filters[] = {NULL, "gzip", "bzip2", "xz", "lzma", "zstd", "lz4"};

	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
		assert_int_equal(kit_tree_remove(st->dest), 0);
		assert_int_equal(mkdir(st->dest, 0755), 0);
		WRITE_TAR(st->tar, filters[i],
			  {.path = "etc/os-release", .type = 'f', .data = "ID=test\n"});
		if (extract(st, NULL) < 0)
			fail_msg("%s: %s", filters[i] ? filters[i] : "plain", st->err.msg);
		assert_content(st, "etc/os-release", "ID=test\n");
	}
}

static void
test_dotdot_refused(void **ts)
{
	struct state *st = *ts;
	char outside[PATH_MAX];

	WRITE_TAR(st->tar, NULL,
		  {.path = "../etc/passwd", .type = 'f', .data = "root::0:0::/:/bin/sh\n"});
	assert_refused(st, "../etc/passwd", "'..' leaves the destination");
	snprintf(outside, sizeof(outside), "%s/etc", st->dir);
	assert_false(exists(outside));

	WRITE_TAR(st->tar, NULL, {.path = "a/../../x", .type = 'f', .data = "x"});
	assert_refused(st, "a/../../x", "leaves the destination");
	snprintf(outside, sizeof(outside), "%s/x", st->dir);
	assert_false(exists(outside));

	/* a hard link to a file outside the tree */
	WRITE_TAR(st->tar, NULL, {.path = "passwd", .type = 'h', .data = "../../../etc/passwd"});
	assert_refused(st, "passwd", "leaves the destination");
	assert_false(in_dest(st, "passwd"));
}

/* A symlink planted by one entry is never a way out for the next. */
static void
test_symlink_parent_refused(void **ts)
{
	struct state *st = *ts;

	WRITE_TAR(st->tar, NULL, {.path = "evil", .type = 'l', .data = st->host},
		  {.path = "evil/passwd", .type = 'f', .data = "pwned"});
	assert_refused(st, "evil/passwd", "'evil' is a symbolic link");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	WRITE_TAR(st->tar, NULL, {.path = "etc", .type = 'l', .data = "/etc"},
		  {.path = "etc/passwd", .type = 'f', .data = "pwned"});
	assert_refused(st, "etc/passwd", "'etc' is a symbolic link");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	/* deeper, and directories made on the way would have been made through the link */
	WRITE_TAR(st->tar, NULL, {.path = "usr/", .type = 'd'},
		  {.path = "usr/evil", .type = 'l', .data = st->host},
		  {.path = "usr/evil/sub/dir/file", .type = 'f', .data = "pwned"});
	assert_refused(st, "usr/evil/sub/dir/file", "'usr/evil' is a symbolic link");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	/* a directory replaced by a link after entries went into it: the next one is refused,
	 * not written into the directory that was there (or through the link) */
	WRITE_TAR(st->tar, NULL, {.path = "x/y/", .type = 'd'},
		  {.path = "x/y/f", .type = 'f', .data = "f"},
		  {.path = "x", .type = 'l', .data = st->host},
		  {.path = "x/y/g", .type = 'f', .data = "pwned"});
	assert_refused(st, "x/y/g", "'x' is a symbolic link");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = "a/b/", .type = 'd'},
		  {.path = "a/b/f", .type = 'f', .data = "f"},
		  {.path = "a", .type = 'f', .data = "a file now"},
		  {.path = "a/b/g", .type = 'f', .data = "g"});
	assert_refused(st, "a/b/g", "'a' is not a directory");
	assert_content(st, "a", "a file now");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	/* a directory entry through the link: the same */
	WRITE_TAR(st->tar, NULL, {.path = "evil", .type = 'l', .data = st->host},
		  {.path = "evil/d/", .type = 'd'});
	assert_refused(st, "evil/d/", "is a symbolic link");
}

/* A relative link climbing out of dest: "up -> ..", then "up/x". */
static void
test_symlink_dotdot_refused(void **ts)
{
	struct state *st = *ts;
	char outside[PATH_MAX];

	WRITE_TAR(st->tar, NULL, {.path = "up", .type = 'l', .data = ".."},
		  {.path = "up/x", .type = 'f', .data = "pwned"});
	assert_refused(st, "up/x", "'up' is a symbolic link");
	snprintf(outside, sizeof(outside), "%s/x", st->dir);
	assert_false(exists(outside));
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	WRITE_TAR(st->tar, NULL, {.path = "d/", .type = 'd'},
		  {.path = "d/up", .type = 'l', .data = "../.."},
		  {.path = "d/up/x", .type = 'f', .data = "pwned"});
	assert_refused(st, "d/up/x", "'d/up' is a symbolic link");
	assert_false(exists(outside));
}

/* An entry replaces a link at its own name: the link is never written through. */
static void
test_replaces_links(void **ts)
{
	struct state *st = *ts;
	char host_file[PATH_MAX], *got = NULL;
	struct stat sb;

	int fd = open(st->host, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(kit_tree_write(fd, "f", 0644, "host", 4), 0);
	close(fd);
	snprintf(host_file, sizeof(host_file), "%s/f", st->host);
	WRITE_TAR(st->tar, NULL, {.path = "file", .type = 'l', .data = host_file},
		  {.path = "file", .type = 'f', .data = "guest"},
		  {.path = "dir", .type = 'l', .data = st->host}, {.path = "dir/", .type = 'd'},
		  {.path = "dir/f", .type = 'f', .data = "guest"},
		  {.path = "node", .type = 'l', .data = host_file},
		  {.path = "node", .type = 'l', .data = "elsewhere"}, {.path = "d2/", .type = 'd'},
		  {.path = "d2/x", .type = 'f', .data = "x"},
		  {.path = "d2", .type = 'f', .data = "a file now"});
	assert_int_equal(extract(st, NULL), 0);
	assert_content(st, "file", "guest");
	assert_true(S_ISDIR(lstat_in(st, "dir").st_mode));
	assert_content(st, "dir/f", "guest");
	assert_true(S_ISLNK(lstat_in(st, "node").st_mode));
	assert_content(st, "d2", "a file now");
	assert_int_equal(kit_tree_read(host_file, 64, &got), 0);
	assert_string_equal(got, "host");
	free(got);
	assert_int_equal(lstat(host_file, &sb), 0);
	assert_int_equal(sb.st_nlink, 1);
	assert_int_equal(count_entries(st->host), 1);
}

static void
test_hardlinks_refused(void **ts)
{
	struct state *st = *ts;
	char host_file[PATH_MAX];
	struct stat sb;

	snprintf(host_file, sizeof(host_file), "%s/f", st->host);
	int fd = open(host_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);

	/* "/etc/passwd" is taken inside dest, where there is none */
	WRITE_TAR(st->tar, NULL, {.path = "x", .type = 'h', .data = "/etc/passwd"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "entry 'x': hard link target 'etc/passwd'");
	assert_false(in_dest(st, "x"));

	/* through a planted link to a host file */
	WRITE_TAR(st->tar, NULL, {.path = "h", .type = 'l', .data = st->host},
		  {.path = "x", .type = 'h', .data = "h/f"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "'h' is a symbolic link");
	assert_int_equal(lstat(host_file, &sb), 0);
	assert_int_equal(sb.st_nlink, 1); /* no second name for the host's file */
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);

	/* to a symlink (naming a host file), a directory, itself */
	WRITE_TAR(st->tar, NULL, {.path = "l", .type = 'l', .data = host_file},
		  {.path = "x", .type = 'h', .data = "l"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "is not a regular file");
	assert_int_equal(lstat(host_file, &sb), 0);
	assert_int_equal(sb.st_nlink, 1);
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = "d/", .type = 'd'},
		  {.path = "x", .type = 'h', .data = "d"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "is not a regular file");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = "x", .type = 'h', .data = "x"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "hard link to itself");
}

static bool
can_mknod(const struct state *st)
{
	char path[PATH_MAX];
	bool ok;

	snprintf(path, sizeof(path), "%s/probe", st->dir);
	ok = mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0;
	unlink(path);
	return ok;
}

static void
test_devices(void **ts)
{
	struct state *st = *ts;
	struct extract_opts o = {.allow_devices = true};

	WRITE_TAR(st->tar, NULL, {.path = "dev/", .type = 'd'},
		  {.path = "dev/console", .type = 'c', .perm = 0600},
		  {.path = "run/fifo", .type = 'p', .perm = 0620});
	assert_int_equal(extract(st, NULL), 0);
	assert_int_equal(st->stats.skipped, 2);
	assert_int_equal(st->stats.nodes, 0);
	assert_false(in_dest(st, "dev/console"));
	assert_false(in_dest(st, "run/fifo"));

	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = "run/fifo", .type = 'p', .perm = 0620});
	assert_int_equal(extract(st, &o), 0);
	assert_true(S_ISFIFO(lstat_in(st, "run/fifo").st_mode));
	assert_int_equal(lstat_in(st, "run/fifo").st_mode & 07777, 0620);
	if (!can_mknod(st)) {
		print_message("no CAP_MKNOD here: device node creation not checked\n");
		return;
	}
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = "dev/console", .type = 'c', .perm = 0600});
	assert_int_equal(extract(st, &o), 0);
	struct stat sb = lstat_in(st, "dev/console");
	assert_true(S_ISCHR(sb.st_mode));
	assert_int_equal(major(sb.st_rdev), 5);
	assert_int_equal(minor(sb.st_rdev), 1);
	assert_int_equal(st->stats.nodes, 1);
}

static void
test_bounds(void **ts)
{
	struct state *st = *ts;
	struct extract_opts o = {.max_entries = 3};
	static char big[4096];

	memset(big, 'x', sizeof(big));
	WRITE_TAR(st->tar, NULL, {.path = "a", .type = 'f', .data = "a"},
		  {.path = "b", .type = 'f', .data = "b"}, {.path = "c", .type = 'f', .data = "c"},
		  {.path = "d", .type = 'f', .data = "d"});
	assert_true(extract(st, &o) < 0);
	assert_int_equal(st->err.code, ERR_EXHAUSTED);
	assert_contains(st->err.msg, "entry 'd': more than 3 entries");

	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	o = (struct extract_opts){.max_bytes = 5000};
	WRITE_TAR(st->tar, "gzip", {.path = "small", .type = 'f', .data = "x"},
		  {.path = "big1", .type = 'f', .data = big, .size = sizeof(big)},
		  {.path = "big2", .type = 'f', .data = big, .size = sizeof(big)});
	assert_true(extract(st, &o) < 0);
	assert_int_equal(st->err.code, ERR_EXHAUSTED);
	assert_contains(st->err.msg, "entry 'big2': more than 5000 bytes");
	assert_int_equal(st->stats.bytes, 1 + sizeof(big));

	/* deeper than 128 components */
	char deep[PATH_MAX] = "";
	for (int i = 0; i < 130; i++)
		strcat(deep, "d/");
	strcat(deep, "f");
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	WRITE_TAR(st->tar, NULL, {.path = deep, .type = 'f', .data = "x"});
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "more than 128 path components");
}

static void
test_bad_input(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX];

	/* not an archive */
	FILE *f = fopen(st->tar, "w");
	assert_non_null(f);
	fputs("this is not a tarball, just text long enough to be looked at by the readers\n", f);
	fclose(f);
	assert_true(extract(st, NULL) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_contains(st->err.msg, "archive '");

	/* an empty file */
	assert_int_equal(truncate(st->tar, 0), 0);
	err_clear(&st->err);
	assert_true(extract(st, NULL) < 0);
	assert_contains(st->err.msg, "no entries");

	/* a missing archive, a directory */
	err_clear(&st->err);
	assert_int_equal(extract_tar("/nonexistent.tar", st->dest, NULL, NULL, &st->err), -ENOENT);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	err_clear(&st->err);
	assert_true(extract_tar(st->dir, st->dest, NULL, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "is not a file");

	/* a truncated one: what came before stays, the error says why */
	static char big[100000];
	WRITE_TAR(st->tar, NULL, {.path = "a", .type = 'f', .data = big, .size = sizeof(big)});
	assert_int_equal(truncate(st->tar, 50000), 0);
	assert_true(extract(st, NULL) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_contains(st->err.msg, "entry 'a'");

	/* dest must be empty */
	at(st, "a", path);
	assert_true(exists(path));
	WRITE_TAR(st->tar, NULL, {.path = "b", .type = 'f', .data = "b"});
	assert_true(extract(st, NULL) < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_contains(st->err.msg, "is not empty");
}

struct progress_log {
	int calls;
	uint64_t done, total;
	bool backwards;
};

static void
on_progress(void *ud, uint64_t done, uint64_t total)
{
	struct progress_log *p = ud;

	p->backwards |= done < p->done || done > total;
	p->calls++;
	p->done = done;
	p->total = total;
}

static void
test_progress(void **ts)
{
	struct state *st = *ts;
	struct progress_log log = {0};
	struct extract_opts o = {.progress = on_progress, .progress_ud = &log};
	static char big[1 << 20];
	struct stat sb;

	WRITE_TAR(st->tar, NULL, {.path = "big", .type = 'f', .data = big, .size = sizeof(big)},
		  {.path = "small", .type = 'f', .data = "x"});
	assert_int_equal(extract(st, &o), 0);
	assert_int_equal(stat(st->tar, &sb), 0);
	assert_true(log.calls >= 1);
	assert_true(log.calls <= 4); /* it takes far less than 300 ms */
	assert_false(log.backwards);
	assert_int_equal(log.total, (uint64_t)sb.st_size);
	assert_int_equal(log.done, log.total);
}

/* ---- image archives -------------------------------------------------------------------- */

/* A digest's 64 hex digits, all c. */
#define HEX8(c) c c c c c c c c
#define HEX(c) HEX8(c) HEX8(c) HEX8(c) HEX8(c) HEX8(c) HEX8(c) HEX8(c) HEX8(c)

static const char config_json[] =
	"{\"architecture\":\"" HOST_ARCH "\",\"os\":\"linux\",\"config\":{"
	"\"Entrypoint\":[\"/bin/tool\"],\"Cmd\":[\"--serve\",\"x\"],"
	"\"Env\":[\"PATH=/usr/bin\",\"A=b\"],\"WorkingDir\":\"/srv\",\"User\":\"1000:1000\","
	"\"ExposedPorts\":{\"80/tcp\":{},\"53/udp\":{}}},"
	"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";

/* Two layers: the second deletes, empties a directory and overwrites; gzip-compressed. */
static void
write_layers(const struct state *st, char **l1, size_t *n1, char **l2, size_t *n2)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/layer1.tar", st->dir);
	WRITE_TAR(path, NULL, {.path = "etc/", .type = 'd'},
		  {.path = "etc/keep", .type = 'f', .data = "v1"},
		  {.path = "removed", .type = 'f', .data = "r"}, {.path = "olddir/", .type = 'd'},
		  {.path = "olddir/f", .type = 'f', .data = "f"}, {.path = "opq/", .type = 'd'},
		  {.path = "opq/old", .type = 'f', .data = "o"}, {.path = "opq/sub/", .type = 'd'},
		  {.path = "opq/sub/deep", .type = 'f', .data = "d"}, {.path = "bin/", .type = 'd'},
		  {.path = "bin/tool", .type = 'f', .data = "#!/bin/sh\n", .perm = 0755});
	*n1 = slurp(path, l1);
	snprintf(path, sizeof(path), "%s/layer2.tar.gz", st->dir);
	WRITE_TAR(path, "gzip", {.path = ".wh.removed", .type = 'f', .data = ""},
		  {.path = ".wh.olddir", .type = 'f', .data = ""}, {.path = "opq/", .type = 'd'},
		  {.path = "opq/-early", .type = 'f', .data = "before the marker"},
		  {.path = "opq/.wh..wh..opq", .type = 'f', .data = ""},
		  {.path = "opq/new", .type = 'f', .data = "n"},
		  {.path = "etc/keep", .type = 'f', .data = "v2"},
		  {.path = "fresh", .type = 'f', .data = "f"},
		  {.path = ".wh.fresh", .type = 'f', .data = ""}, /* the same layer's: stays */
		  {.path = ".wh.nothere", .type = 'f', .data = ""});
	*n2 = slurp(path, l2);
}

static void
assert_layers_applied(const struct state *st)
{
	assert_content(st, "etc/keep", "v2");
	assert_false(in_dest(st, "removed"));
	assert_false(in_dest(st, "olddir"));
	assert_content(st, "opq/-early", "before the marker");
	assert_content(st, "opq/new", "n");
	assert_false(in_dest(st, "opq/old"));
	assert_false(in_dest(st, "opq/sub"));
	assert_content(st, "fresh", "f");
	assert_content(st, "bin/tool", "#!/bin/sh\n");
	assert_false(in_dest(st, ".wh.removed"));
	assert_false(in_dest(st, "opq/.wh..wh..opq"));
}

static void
assert_meta(const struct oci_meta *m)
{
	assert_int_equal(m->n_entrypoint, 1);
	assert_string_equal(m->entrypoint[0], "/bin/tool");
	assert_null(m->entrypoint[1]);
	assert_int_equal(m->n_cmd, 2);
	assert_string_equal(m->cmd[1], "x");
	assert_int_equal(m->n_env, 2);
	assert_string_equal(m->env[0], "PATH=/usr/bin");
	assert_int_equal(m->n_ports, 2);
	assert_string_equal(m->ports[0], "80/tcp");
	assert_string_equal(m->ports[1], "53/udp");
	assert_string_equal(m->workdir, "/srv");
	assert_string_equal(m->user, "1000:1000");
}

/* `docker save`: manifest.json last, layers out of order, one layer reached through a link. */
static void
test_docker_save(void **ts)
{
	struct state *st = *ts;
	char *l1, *l2;
	size_t n1, n2;
	struct oci_meta meta;
	struct progress_log log = {0};
	struct extract_opts o = {.progress = on_progress, .progress_ud = &log};
	const char manifest[] = "[{\"Config\":\"cfg.json\",\"RepoTags\":[\"test/app:1\"],"
				"\"Layers\":[\"l1/layer.tar\",\"l2/layer.tar\"]}]";

	write_layers(st, &l1, &n1, &l2, &n2);
	WRITE_TAR(st->tar, NULL,
		  {.path = "blobs/sha256/" HEX("b"), .type = 'f', .data = l2, .size = n2},
		  {.path = "l2/layer.tar", .type = 'l', .data = "../blobs/sha256/" HEX("b")},
		  {.path = "l1/", .type = 'd'},
		  {.path = "l1/layer.tar", .type = 'f', .data = l1, .size = n1},
		  {.path = "cfg.json", .type = 'f', .data = config_json},
		  {.path = "repositories", .type = 'f', .data = "{}"},
		  {.path = "manifest.json", .type = 'f', .data = manifest});
	free(l1);
	free(l2);

	assert_int_equal(extract_oci(st->tar, NULL, st->dest, &o, &meta, &st->stats, &st->err), 0);
	assert_layers_applied(st);
	assert_meta(&meta);
	assert_int_equal(st->stats.whiteouts, 3); /* removed, olddir, opq */
	assert_false(in_dest(st, ".sistemo-extract-stash"));
	assert_false(log.backwards);
	assert_int_equal(log.done, log.total);
	oci_meta_free(&meta);
	assert_null(meta.cmd);

	/* by tag, short or long */
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	assert_int_equal(
		extract_oci(st->tar, "docker.io/test/app:1", st->dest, NULL, &meta, NULL, &st->err),
		0);
	oci_meta_free(&meta);
	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	assert_int_equal(extract_oci(st->tar, "test/app", st->dest, NULL, &meta, NULL, &st->err),
			 -ENOENT);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	assert_contains(st->err.msg, "no image tagged 'test/app'");
	oci_meta_free(&meta);
}

static void
test_docker_save_two_images(void **ts)
{
	struct state *st = *ts;
	char layer[PATH_MAX], *l;
	size_t n;
	struct oci_meta meta;
	const char manifest[] =
		"[{\"Config\":\"a.json\",\"RepoTags\":[\"a:latest\"],\"Layers\":[\"la.tar\"]},"
		"{\"Config\":\"b.json\",\"RepoTags\":[\"b:2\"],\"Layers\":[\"lb.tar\"]}]";

	snprintf(layer, sizeof(layer), "%s/l.tar", st->dir);
	WRITE_TAR(layer, NULL, {.path = "which", .type = 'f', .data = "b"});
	n = slurp(layer, &l);
	WRITE_TAR(st->tar, "xz", {.path = "manifest.json", .type = 'f', .data = manifest},
		  {.path = "a.json", .type = 'f', .data = "{}"},
		  {.path = "b.json",
		   .type = 'f',
		   .data = "{\"config\":{\"Cmd\":null,\"WorkingDir\":\"\"}}"},
		  {.path = "la.tar", .type = 'f', .data = l, .size = n},
		  {.path = "lb.tar", .type = 'f', .data = l, .size = n});
	free(l);

	assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "2 images in the archive: name one by its tag");
	oci_meta_free(&meta);
	err_clear(&st->err);
	assert_int_equal(extract_oci(st->tar, "b:2", st->dest, NULL, &meta, NULL, &st->err), 0);
	assert_content(st, "which", "b");
	assert_int_equal(meta.n_cmd, 0);
	assert_null(meta.workdir);
	oci_meta_free(&meta);
}

/* An OCI layout: index.json -> an image index -> this host's manifest; no manifest.json. */
static void
test_oci_layout(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX], *l1, *l2, *other;
	size_t n1, n2, n_other;
	struct oci_meta meta;
	const char index[] =
		"{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
		"\"application/vnd.oci.image.index.v1+json\",\"digest\":\"sha256:" HEX(
			"1") "\",\"size\":1,\"annotations\":{\"io.containerd.image.name\":"
			     "\"docker.io/library/"
			     "app:2\",\"org.opencontainers.image.ref.name\":\"2\"}}]}";
	const char nested[] =
		"{\"schemaVersion\":2,\"manifests\":["
		"{\"digest\":\"sha256:" HEX(
			"2") "\",\"platform\":{\"architecture\":\"" OTHER_ARCH
			     "\",\"os\":\"linux\"}},"
			     "{\"digest\":\"sha256:" HEX(
				     "3") "\",\"platform\":{\"architecture\":\"" HOST_ARCH
					  "\",\"os\":\"linux\"}},"
					  "{\"digest\":\"sha256:" HEX(
						  "4") "\",\"platform\":{\"architecture\":"
						       "\"unknown\","
						       "\"os\":\"unknown\"}}]}";
	const char manifest[] = "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:" HEX(
		"5") "\"},\"layers\":[{\"digest\":\"sha256:" HEX("6") "\"},{\"digest\":"
								      "\"sha256:" HEX("7") "\"}]}";
	const char manifest_other[] = "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:" HEX(
		"5") "\"},\"layers\":[{\"digest\":\"sha256:" HEX("8") "\"}]}";

	write_layers(st, &l1, &n1, &l2, &n2);
	snprintf(path, sizeof(path), "%s/other.tar", st->dir);
	WRITE_TAR(path, NULL, {.path = "arch", .type = 'f', .data = OTHER_ARCH});
	n_other = slurp(path, &other);
	WRITE_TAR(st->tar, "zstd",
		  {.path = "oci-layout", .type = 'f', .data = "{\"imageLayoutVersion\":\"1.0.0\"}"},
		  {.path = "index.json", .type = 'f', .data = index},
		  {.path = "blobs/", .type = 'd'}, {.path = "blobs/sha256/", .type = 'd'},
		  {.path = "blobs/sha256/" HEX("1"), .type = 'f', .data = nested},
		  {.path = "blobs/sha256/" HEX("2"), .type = 'f', .data = manifest_other},
		  {.path = "blobs/sha256/" HEX("3"), .type = 'f', .data = manifest},
		  {.path = "blobs/sha256/" HEX("5"), .type = 'f', .data = config_json},
		  {.path = "blobs/sha256/" HEX("6"), .type = 'f', .data = l1, .size = n1},
		  {.path = "blobs/sha256/" HEX("7"), .type = 'f', .data = l2, .size = n2},
		  {.path = "blobs/sha256/" HEX("8"), .type = 'f', .data = other, .size = n_other});
	free(l1);
	free(l2);
	free(other);

	assert_int_equal(extract_oci(st->tar, "app:2", st->dest, NULL, &meta, &st->stats, &st->err),
			 0);
	assert_layers_applied(st);
	assert_false(in_dest(st, "arch"));
	assert_meta(&meta);
	oci_meta_free(&meta);

	assert_int_equal(kit_tree_remove(st->dest), 0);
	assert_int_equal(mkdir(st->dest, 0755), 0);
	assert_int_equal(extract_oci(st->tar, "app:3", st->dest, NULL, &meta, NULL, &st->err),
			 -ENOENT);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	oci_meta_free(&meta);
}

/* Whiteouts and opaque markers go through the same walk: a planted link is no way out. */
static void
test_oci_whiteout_through_link(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX], *l1, *l2;
	size_t n1, n2;
	struct oci_meta meta;
	const char manifest[] = "[{\"Config\":\"c.json\",\"Layers\":[\"1.tar\",\"2.tar\"]}]";
	int fd = open(st->host, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_int_equal(kit_tree_write(fd, "victim", 0644, "host", 4), 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/1.tar", st->dir);
	WRITE_TAR(path, NULL, {.path = "evil", .type = 'l', .data = st->host});
	n1 = slurp(path, &l1);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/2.tar", st->dir);
		if (i == 0)
			WRITE_TAR(path, NULL, {.path = "evil/.wh.victim", .type = 'f', .data = ""});
		else
			WRITE_TAR(path, NULL,
				  {.path = "evil/.wh..wh..opq", .type = 'f', .data = ""});
		n2 = slurp(path, &l2);
		WRITE_TAR(st->tar, NULL, {.path = "manifest.json", .type = 'f', .data = manifest},
			  {.path = "c.json", .type = 'f', .data = "{}"},
			  {.path = "1.tar", .type = 'f', .data = l1, .size = n1},
			  {.path = "2.tar", .type = 'f', .data = l2, .size = n2});
		free(l2);
		assert_int_equal(kit_tree_remove(st->dest), 0);
		assert_int_equal(mkdir(st->dest, 0755), 0);
		err_clear(&st->err);
		assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
		assert_contains(st->err.msg, "layer 2 of 2 ('2.tar'): entry 'evil/.wh.");
		assert_contains(st->err.msg, "'evil' is a symbolic link");
		oci_meta_free(&meta);
		snprintf(path, sizeof(path), "%s/victim", st->host);
		assert_true(exists(path));
	}
	free(l1);
}

static void
test_oci_bad_archives(void **ts)
{
	struct state *st = *ts;
	struct oci_meta meta;

	WRITE_TAR(st->tar, NULL, {.path = "etc/passwd", .type = 'f', .data = "x"});
	assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "neither manifest.json nor index.json");
	oci_meta_free(&meta);

	err_clear(&st->err);
	WRITE_TAR(st->tar, NULL,
		  {.path = "manifest.json",
		   .type = 'f',
		   .data = "[{\"Config\":\"c.json\",\"Layers\":[\"x\"]}]"},
		  {.path = "c.json", .type = 'f', .data = "{}"});
	assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "layer 'x' is not in the archive");
	oci_meta_free(&meta);

	err_clear(&st->err);
	WRITE_TAR(st->tar, NULL,
		  {.path = "manifest.json",
		   .type = 'f',
		   .data = "[{\"Config\":\"c.json\",\"Layers\":[]}]"},
		  {.path = "c.json", .type = 'f', .data = "{\"config\":{\"Cmd\":\"not a list\"}}"});
	assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "'Cmd' is not a list");
	oci_meta_free(&meta);

	err_clear(&st->err);
	WRITE_TAR(st->tar, NULL,
		  {.path = "manifest.json", .type = 'f', .data = "[{\"Config\": tru"});
	assert_true(extract_oci(st->tar, NULL, st->dest, NULL, &meta, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "'manifest.json': line 1");
	oci_meta_free(&meta);
	assert_int_equal(count_entries(st->dest), 0);
}

/* ---- meta as JSON ---------------------------------------------------------------------- */

static void
test_meta_json(void **ts)
{
	struct state *st = *ts;
	char *entrypoint[] = {"/bin/tool", NULL}, *cmd[] = {"--serve", "x \"y\"", NULL};
	char *env[] = {"A=b", NULL}, *ports[] = {"80/tcp", NULL};
	struct oci_meta m = {.entrypoint = entrypoint,
			     .n_entrypoint = 1,
			     .cmd = cmd,
			     .n_cmd = 2,
			     .env = env,
			     .n_env = 1,
			     .ports = ports,
			     .n_ports = 1,
			     .workdir = "/srv"};
	struct oci_meta back;
	struct strbuf out = {0};

	assert_int_equal(oci_meta_to_json(&m, &out), 0);
	assert_string_equal(out.data, "{\"entrypoint\":[\"/bin/tool\"],\"cmd\":[\"--serve\","
				      "\"x \\\"y\\\"\"],\"env\":[\"A=b\"],\"ports\":[\"80/tcp\"],"
				      "\"workdir\":\"/srv\",\"user\":null}");
	assert_int_equal(oci_meta_from_json(out.data, &back, &st->err), 0);
	assert_int_equal(back.n_cmd, 2);
	assert_string_equal(back.cmd[1], "x \"y\"");
	assert_null(back.cmd[2]);
	assert_string_equal(back.ports[0], "80/tcp");
	assert_string_equal(back.workdir, "/srv");
	assert_null(back.user);
	oci_meta_free(&back);
	strbuf_free(&out);

	struct oci_meta empty = {0};
	assert_int_equal(oci_meta_to_json(&empty, &out), 0);
	assert_string_equal(out.data, "{\"entrypoint\":[],\"cmd\":[],\"env\":[],\"ports\":[],"
				      "\"workdir\":null,\"user\":null}");
	assert_int_equal(oci_meta_from_json(out.data, &back, &st->err), 0);
	assert_int_equal(back.n_env, 0);
	oci_meta_free(&back);
	assert_int_equal(oci_meta_from_json("{}", &back, &st->err), 0);
	oci_meta_free(&back);
	strbuf_free(&out);
}

static void
test_meta_json_strict(void **ts)
{
	struct state *st = *ts;
	struct oci_meta m;
	const char *bad[] = {
		"[]",
		"not json",
		"{\"cmd\":\"x\"}",
		"{\"cmd\":[1]}",
		"{\"cmd\":[\"a\",null]}",
		"{\"ports\":{\"80/tcp\":{}}}",
		"{\"workdir\":[]}",
		"{\"bogus\":[]}",
		"{\"cmd\":[],\"cmd\":[]}",
		"{\"cmd\":[\"a\\u0000b\"]}",
		"{\"env\":[]} trailing",
	};
	static char huge[(1 << 20) + 64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err_clear(&st->err);
		if (oci_meta_from_json(bad[i], &m, &st->err) == 0)
			fail_msg("accepted '%s'", bad[i]);
		assert_int_equal(st->err.code, ERR_INVALID);
		assert_null(m.cmd);
		assert_null(m.workdir);
	}
	memset(huge, ' ', sizeof(huge) - 1);
	memcpy(huge, "{\"env\":[]}", 10);
	err_clear(&st->err);
	assert_true(oci_meta_from_json(huge, &m, &st->err) < 0);
	assert_contains(st->err.msg, "more than");
	oci_meta_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dotdot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_parent_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_dotdot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaces_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hardlinks_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_docker_save, setup, teardown),
		cmocka_unit_test_setup_teardown(test_docker_save_two_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oci_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oci_whiteout_through_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oci_bad_archives, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_json_strict, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
