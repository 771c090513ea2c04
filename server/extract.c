#include "extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"

#define DEPTH_MAX 128 /* path components of one entry */
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define FILE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define BLOCK_SIZE 65536
#define PROGRESS_NS 100000000ll
#define XATTRS_MAX 256           /* per entry */
#define JSON_MAX (4u << 20)      /* manifest.json, index.json, a manifest, a config */
#define META_JSON_MAX (1u << 20) /* oci_meta_from_json */
#define LIST_MAX 4096            /* items of an entrypoint, cmd, env, ports */
#define MEMBERS_MAX 65536        /* members of an image archive */
#define LAYERS_MAX 512
#define ALIAS_HOPS_MAX 8      /* symlinked members in an image archive: <id>/layer.tar -> ... */
#define INDEX_DEPTH_MAX 4     /* image indexes inside image indexes */
#define WHITEOUT ".wh."       /* ".wh.NAME" deletes NAME from lower layers */
#define OPAQUE ".wh..wh..opq" /* empties its directory of what lower layers put there */
#define STASH_NAME ".sistemo-extract-stash"

#if defined(__x86_64__)
#define HOST_ARCH "amd64"
#elif defined(__aarch64__)
#define HOST_ARCH "arm64"
#else
#define HOST_ARCH "unknown"
#endif

DEFINE_CLEANUP(reader, struct archive, archive_read_free)
DEFINE_CLEANUP(jsonv, json_t, json_decref)

/* ---- paths one layer wrote ------------------------------------------------------------- */

/* Whiteouts hide what lower layers put there, never what their own layer wrote: the paths the
 * current layer wrote, in an open-addressing hash set at most half full. */
struct pathset {
	char **slot;
	size_t cap, n; /* cap is 0 or a power of two */
};

static uint64_t
path_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot holding path, or the empty slot where it would go. */
static size_t
pathset_slot(const struct pathset *s, const char *path)
{
	size_t i = (size_t)path_hash(path) & (s->cap - 1);

	while (s->slot[i] && !streq(s->slot[i], path))
		i = (i + 1) & (s->cap - 1);
	return i;
}

static bool
pathset_has(const struct pathset *s, const char *path)
{
	return s && s->cap && s->slot[pathset_slot(s, path)];
}

static int
pathset_grow(struct pathset *s)
{
	struct pathset bigger = {.cap = s->cap ? s->cap * 2 : 1024, .n = s->n};

	bigger.slot = calloc(bigger.cap, sizeof(char *));
	if (!bigger.slot)
		return -ENOMEM;
	for (size_t i = 0; i < s->cap; i++)
		if (s->slot[i])
			bigger.slot[pathset_slot(&bigger, s->slot[i])] = s->slot[i];
	free(s->slot);
	*s = bigger;
	return 0;
}

static int
pathset_add(struct pathset *s, const char *path)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap && pathset_grow(s) < 0)
		return -ENOMEM;
	i = pathset_slot(s, path);
	if (s->slot[i])
		return 0;
	s->slot[i] = strdup(path);
	if (!s->slot[i])
		return -ENOMEM;
	s->n++;
	return 0;
}

static void
pathset_clear(struct pathset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	*s = (struct pathset){0};
}

/* ---- the extraction context ------------------------------------------------------------ */

struct progress {
	void (*fn)(void *ud, uint64_t done, uint64_t total);
	void *ud;
	uint64_t base, total; /* bytes before the current stream; all of them */
	int64_t last_ns;
};

/* A directory's mode and mtime, set once everything is in: entries made in it later would
 * change its mtime, and a read-only mode would stand in the way (when not root). */
struct fixup {
	char *path;
	mode_t mode;
	struct timespec mtime;
};

/* The directories along the last path walked, kept open: consecutive entries share most of
 * their way, and walking it again from dest was half the system time. Every one was reached
 * with O_NOFOLLOW. What is removed is always below the walk's deepest directory, never on it;
 * all are dropped whenever a directory is removed all the same. */
struct walk {
	int fd[DEPTH_MAX];
	size_t len[DEPTH_MAX]; /* fd[i] is the directory at path[0..len[i]) */
	size_t depth;
	char path[PATH_MAX];
};

struct ctx {
	struct archive *a; /* the stream being applied */
	int root;          /* dest */
	bool devices, owners;
	uint64_t max_bytes, max_entries, entries;
	struct extract_stats st;
	struct fixup *fix;
	size_t n_fix, cap_fix;
	struct pathset *layer; /* image layers: what the current one wrote; NULL for a tarball */
	struct progress prog;
	struct err *err;
	const char *name;    /* the entry being applied, as the archive spells it */
	char path[PATH_MAX]; /* the same, relative to dest ("" for dest itself) */
	struct walk walk;
};

static int entry_fail(struct ctx *x, enum err_code code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "entry 'NAME': message" */
static int
entry_fail(struct ctx *x, enum err_code code, int errnum, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!x->name)
		return err_set(x->err, code, NULL, errnum, "%s", msg);
	return err_set(x->err, code, NULL, errnum, "entry '%s': %s", x->name, msg);
}

static int
entry_errno(struct ctx *x, int r, const char *what)
{
	return entry_fail(x, err_code_for_errno(-r), -r, "%s: %s", what, strerror(-r));
}

/* libarchive's error: the input is bad (truncated, corrupt) unless memory ran out. */
static int
reader_fail(struct ctx *x)
{
	const char *msg = archive_error_string(x->a);
	int errnum = archive_errno(x->a);

	return entry_fail(x, errnum == ENOMEM ? ERR_EXHAUSTED : ERR_INVALID,
			  errnum > 0 ? errnum : EIO, "%s", msg ? msg : "read error");
}

static void
progress_tick(struct ctx *x, bool final)
{
	struct progress *p = &x->prog;
	struct timespec ts;
	uint64_t done;
	int64_t now;

	if (!p->fn)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
	if (!final && p->last_ns && now - p->last_ns < PROGRESS_NS)
		return;
	p->last_ns = now;
	done = final ? p->total : p->base + (x->a ? (uint64_t)archive_filter_bytes(x->a, -1) : 0);
	p->fn(p->ud, done < p->total ? done : p->total, p->total);
}

/* 1 when the directory fd holds nothing, 0 when it does, or a negative errno. */
static int
dir_empty(int fd)
{
	struct dirent *de;
	DIR *d;
	int sub = openat(fd, ".", DIR_FLAGS), r = 1;

	if (sub < 0)
		return -errno;
	d = fdopendir(sub);
	if (!d) {
		r = -errno;
		close(sub);
		return r;
	}
	while (r == 1 && (de = readdir(d))) /* stops at the third entry at the latest */
		r = streq(de->d_name, ".") || streq(de->d_name, "..");
	closedir(d);
	return r;
}

static int
ctx_init(struct ctx *x, const char *dest, const struct extract_opts *o, struct err *err)
{
	static const struct extract_opts defaults = {0};
	int r;

	o = o ? o : &defaults;
	*x = (struct ctx){
		.root = -1,
		.devices = o->allow_devices,
		.owners = geteuid() == 0,
		.max_bytes = o->max_bytes ? o->max_bytes : EXTRACT_BYTES_MAX_DEFAULT,
		.max_entries = o->max_entries ? o->max_entries : EXTRACT_ENTRIES_MAX_DEFAULT,
		.prog = {.fn = o->progress, .ud = o->progress_ud},
		.err = err,
	};
	x->root = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (x->root < 0)
		return err_errno(err, -errno, "destination '%s'", dest);
	r = dir_empty(x->root);
	if (r < 0)
		return err_errno(err, r, "destination '%s'", dest);
	if (r == 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOTEMPTY,
			       "destination '%s' is not empty", dest);
	return 0;
}

/* Closes the walk's directories past the first keep. */
static void
walk_drop(struct ctx *x, size_t keep)
{
	while (x->walk.depth > keep)
		close(x->walk.fd[--x->walk.depth]);
}

static void
ctx_done(struct ctx *x, struct extract_stats *st)
{
	for (size_t i = 0; i < x->n_fix; i++)
		free(x->fix[i].path);
	free(x->fix);
	if (x->root >= 0)
		close(x->root);
	walk_drop(x, 0);
	if (st)
		*st = x->st;
}

/* ---- paths inside dest ----------------------------------------------------------------- */

/* A member name as a path relative to dest, into out: leading '/', empty and "." components
 * dropped, ".." taken lexically. 0 ("" names dest itself), -EXDEV when ".." leaves dest,
 * -ENAMETOOLONG, or -ELOOP past DEPTH_MAX components. */
static int
path_norm(const char *name, char out[PATH_MAX])
{
	size_t start[DEPTH_MAX], len = 0, depth = 0;

	out[0] = '\0';
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/"), sep = len > 0;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (depth == 0)
				return -EXDEV;
			len = start[--depth];
			out[len] = '\0';
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (n > NAME_MAX || len + sep + n >= PATH_MAX)
				return -ENAMETOOLONG;
			if (depth == DEPTH_MAX)
				return -ELOOP;
			start[depth++] = len;
			if (sep)
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
			out[len] = '\0';
		}
		p += n + (p[n] == '/');
	}
	return 0;
}

static int
path_fail(struct ctx *x, int r, const char *what)
{
	if (r == -EXDEV)
		return entry_fail(x, ERR_INVALID, EXDEV, "%s'..' leaves the destination", what);
	if (r == -ELOOP)
		return entry_fail(x, ERR_INVALID, ELOOP, "%smore than %d path components", what,
				  DEPTH_MAX);
	return entry_fail(x, ERR_INVALID, -r, "%sname too long", what);
}

/* Why openat(dir, name, DIR_FLAGS) failed: a symlink there is -ELOOP (the kernel says ENOTDIR
 * or ELOOP), anything else not a directory -ENOTDIR. */
static int
open_errno(int dir, const char *name, int errnum)
{
	struct stat st;

	if (errnum != ENOTDIR && errnum != ELOOP)
		return -errnum;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return -ELOOP;
	return -ENOTDIR;
}

/* Opens the directory comp under fd without following a link; makes it (0755) when missing
 * and create. A symlink there: -ELOOP; a file: -ENOTDIR. */
static int
open_component(int fd, const char *comp, bool create)
{
	int sub = openat(fd, comp, DIR_FLAGS);

	if (sub >= 0 || errno != ENOENT || !create)
		return sub >= 0 ? sub : open_errno(fd, comp, errno);
	if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST)
		return -errno;
	sub = openat(fd, comp, DIR_FLAGS);
	if (sub < 0)
		return open_errno(fd, comp, errno);
	if (fchmod(sub, 0755) < 0) { /* whatever the umask */
		int r = -errno;
		close(sub);
		return r;
	}
	return sub;
}

/* How many of the walk's directories lead to dir (n bytes of a path). */
static size_t
walk_common(const struct walk *w, const char *dir, size_t n)
{
	size_t k = 0;

	while (k < w->depth && w->len[k] <= n && (w->len[k] == n || dir[w->len[k]] == '/') &&
	       memcmp(w->path, dir, w->len[k]) == 0)
		k++;
	return k;
}

/* Opens the directory at the first n bytes of path ("" is dest) one component at a time,
 * each with O_NOFOLLOW, from the deepest directory of the last walk on its way; makes the
 * missing ones when create. Returns a new fd; on failure *ret_bad is the length of the path up
 * to the component at fault. */
static int
walk_open(struct ctx *x, const char *path, size_t n, bool create, size_t *ret_bad)
{
	struct walk *w = &x->walk;
	size_t k = walk_common(w, path, n), at = k ? w->len[k - 1] + 1 : 0;
	char comp[NAME_MAX + 1];
	int fd;

	walk_drop(x, k);
	memcpy(w->path, path, n); /* the kept directories are a prefix of it */
	w->path[n] = '\0';
	while (at < n && w->depth < DEPTH_MAX) { /* path_norm bounds the components */
		size_t len = strcspn(w->path + at, "/");
		memcpy(comp, w->path + at, len);
		comp[len] = '\0';
		fd = open_component(w->depth ? w->fd[w->depth - 1] : x->root, comp, create);
		if (fd < 0) {
			*ret_bad = at + len;
			return fd;
		}
		w->fd[w->depth] = fd;
		w->len[w->depth++] = at + len;
		at += len + 1;
	}
	fd = fcntl(w->depth ? w->fd[w->depth - 1] : x->root, F_DUPFD_CLOEXEC, 3);
	return fd < 0 ? -errno : fd;
}

/* Opens the directory holding path's last component (walk_open) and sets *ret_base to it. */
static int
open_parent(struct ctx *x, const char *path, bool create, const char **ret_base, size_t *ret_bad)
{
	const char *slash = strrchr(path, '/');

	*ret_base = slash ? slash + 1 : path;
	return walk_open(x, path, slash ? (size_t)(slash - path) : 0, create, ret_bad);
}

/* Opens the directory at path ("" is dest) without following links. */
static int
open_dir(struct ctx *x, const char *path, size_t *ret_bad)
{
	return walk_open(x, path, strlen(path), false, ret_bad);
}

/* Why walk_open failed, to follow the component's name. */
static const char *
walk_why(int r, char *buf, size_t size)
{
	if (r == -ELOOP)
		return " is a symbolic link";
	if (r == -ENOTDIR)
		return " is not a directory";
	snprintf(buf, size, ": %s", strerror(-r));
	return buf;
}

static int
walk_fail(struct ctx *x, int r, const char *path, size_t bad)
{
	char why[128];
	bool refused = r == -ELOOP || r == -ENOTDIR;

	return entry_fail(x, refused ? ERR_INVALID : err_code_for_errno(-r), -r, "'%.*s'%s",
			  (int)bad, path, walk_why(r, why, sizeof(why)));
}

/* open_parent for the current entry, making missing directories; failures reported. */
static int
entry_parent(struct ctx *x, const char **ret_base)
{
	size_t bad = 0;
	int fd = open_parent(x, x->path, true, ret_base, &bad);

	return fd < 0 ? walk_fail(x, fd, x->path, bad) : fd;
}

/* ---- removal that never leaves the tree ------------------------------------------------ */

static int tree_clear(int fd, const struct pathset *keep, char *path, size_t len, int depth);

/* Removes name from the directory d (recursively), unless keep has its path: then only what
 * under it keep lacks goes. A directory keep lacks but that still holds kept entries stays. */
static int
clear_one(DIR *d, const char *name, const struct pathset *keep, char *path, size_t len, int depth)
{
	struct stat st;
	bool kept = false;
	int r = 0;

	if (keep) {
		if (len + 1 + strlen(name) >= PATH_MAX)
			return -ENAMETOOLONG;
		snprintf(path + len, PATH_MAX - len, "%s%s", len ? "/" : "", name);
		kept = pathset_has(keep, path);
	}
	r = fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (r == 0 && S_ISDIR(st.st_mode)) {
		int sub = openat(dirfd(d), name, DIR_FLAGS);
		r = sub < 0 ? -errno
			    : tree_clear(sub, keep, path, path ? strlen(path) : 0, depth + 1);
		if (r == 0 && !kept && unlinkat(dirfd(d), name, AT_REMOVEDIR) < 0 &&
		    !(keep && errno == ENOTEMPTY))
			r = -errno;
	} else if (r == 0 && !kept && unlinkat(dirfd(d), name, 0) < 0) {
		r = -errno;
	}
	if (path)
		path[len] = '\0';
	return r;
}

/* Empties the directory fd (consumed), links removed and never followed; with keep, only of
 * what keep lacks. path (PATH_MAX bytes, len long) is the directory's path from root, for keep;
 * NULL without it. */
static int
tree_clear(int fd, const struct pathset *keep, char *path, size_t len, int depth)
{
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (depth >= DEPTH_MAX) {
		close(fd);
		return -ELOOP;
	}
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while (r == 0 && (de = readdir(d)))
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			r = clear_one(d, de->d_name, keep, path, len, depth);
	closedir(d);
	return r;
}

/* Clears the way for a new entry base in dir: removes whatever is there, a directory with all
 * it holds. 1 when that was a directory, 0 when something else or nothing. */
static int
tree_replace(int dir, const char *base)
{
	int sub;

	if (unlinkat(dir, base, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR)
		return -errno;
	sub = openat(dir, base, DIR_FLAGS);
	if (sub < 0)
		return -errno;
	int r = tree_clear(sub, NULL, NULL, 0, 0);
	if (r == 0 && unlinkat(dir, base, AT_REMOVEDIR) < 0)
		r = -errno;
	return r < 0 ? r : 1;
}

/* ---- metadata -------------------------------------------------------------------------- */

struct meta {
	uid_t uid;
	gid_t gid;
	mode_t mode;              /* permissions with setuid, setgid, sticky */
	struct timespec times[2]; /* atime, mtime: UTIME_OMIT when the archive has none */
};

static struct timespec
timespec_of(int64_t sec, long nsec, bool set)
{
	if (!set)
		return (struct timespec){.tv_nsec = UTIME_OMIT};
	return (struct timespec){.tv_sec = (time_t)sec,
				 .tv_nsec = nsec >= 0 && nsec < 1000000000 ? nsec : 0};
}

static int
meta_read(struct ctx *x, struct archive_entry *e, struct meta *m)
{
	int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);

	if (uid < 0 || uid >= UINT32_MAX || gid < 0 || gid >= UINT32_MAX)
		return entry_fail(x, ERR_INVALID, EINVAL, "owner %lld:%lld out of range",
				  (long long)uid, (long long)gid);
	m->uid = (uid_t)uid;
	m->gid = (gid_t)gid;
	m->mode = archive_entry_perm(e) & 07777;
	m->times[0] = timespec_of(archive_entry_atime(e), archive_entry_atime_nsec(e),
				  archive_entry_atime_is_set(e));
	m->times[1] = timespec_of(archive_entry_mtime(e), archive_entry_mtime_nsec(e),
				  archive_entry_mtime_is_set(e));
	return 0;
}

static bool
xattr_wanted(const char *name)
{
	return strncmp(name, "user.", 5) == 0 || strncmp(name, "trusted.", 8) == 0 ||
	       strncmp(name, "security.", 9) == 0;
}

/* user., trusted. and security. xattrs (file capabilities); a filesystem without them is fine. */
static int
xattrs_apply(struct ctx *x, struct archive_entry *e, int fd)
{
	const char *name;
	const void *value;
	size_t size;
	int n = 0;

	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (++n > XATTRS_MAX)
			return entry_fail(x, ERR_INVALID, E2BIG, "more than %d xattrs", XATTRS_MAX);
		if (!name || !xattr_wanted(name))
			continue;
		if (fsetxattr(fd, name, value, size, 0) < 0 && errno != EOPNOTSUPP)
			return entry_fail(x, err_code_for_errno(errno), errno, "xattr '%s': %s",
					  name, strerror(errno));
	}
	return 0;
}

/* Owner first (chown drops setuid bits and capabilities), then mode, xattrs, times. A
 * directory's mode and times wait for its fixup. */
static int
meta_apply_fd(struct ctx *x, struct archive_entry *e, int fd, const struct meta *m, bool dir)
{
	int r;

	if (x->owners && fchown(fd, m->uid, m->gid) < 0)
		return entry_errno(x, -errno, "chown");
	if (!dir && fchmod(fd, m->mode) < 0)
		return entry_errno(x, -errno, "chmod");
	if ((r = xattrs_apply(x, e, fd)) < 0)
		return r;
	if (!dir && futimens(fd, m->times) < 0)
		return entry_errno(x, -errno, "set times");
	return 0;
}

/* The same for a symlink or a node, by name in dir, never following a link. */
static int
meta_apply_at(struct ctx *x, int dir, const char *base, const struct meta *m, bool node)
{
	if (x->owners && fchownat(dir, base, m->uid, m->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_errno(x, -errno, "chown");
	/* fchmodat cannot refuse links, but base is the node just made: nothing else writes */
	if (node && fchmodat(dir, base, m->mode, 0) < 0)
		return entry_errno(x, -errno, "chmod");
	if (utimensat(dir, base, m->times, AT_SYMLINK_NOFOLLOW) < 0)
		return entry_errno(x, -errno, "set times");
	return 0;
}

static int
fixup_add(struct ctx *x, const struct meta *m)
{
	if (x->n_fix == x->cap_fix) {
		size_t cap = x->cap_fix ? x->cap_fix * 2 : 256;
		struct fixup *fix = reallocarray(x->fix, cap, sizeof(*fix));
		if (!fix)
			return entry_errno(x, -ENOMEM, "directory list");
		x->fix = fix;
		x->cap_fix = cap;
	}
	x->fix[x->n_fix].path = strdup(x->path);
	if (!x->fix[x->n_fix].path)
		return entry_errno(x, -ENOMEM, "directory list");
	x->fix[x->n_fix].mode = m->mode;
	x->fix[x->n_fix++].mtime = m->times[1];
	return 0;
}

/* Directory modes and mtimes, in archive order (a repeated entry wins). A directory gone or
 * replaced by a later entry or layer is skipped. */
static int
fixups_apply(struct ctx *x)
{
	for (size_t i = 0; i < x->n_fix; i++) {
		struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, x->fix[i].mtime};
		size_t bad = 0;
		int fd = open_dir(x, x->fix[i].path, &bad);
		if (fd < 0)
			continue;
		int r = fchmod(fd, x->fix[i].mode) < 0 || futimens(fd, times) < 0 ? -errno : 0;
		close(fd);
		if (r < 0)
			return err_set(x->err, err_code_for_errno(-r), NULL, -r,
				       "directory '%s': %s", x->fix[i].path, strerror(-r));
	}
	return 0;
}

/* ---- entries --------------------------------------------------------------------------- */

/* tree_replace for the current entry: a directory gone drops the walk's directories. */
static int
entry_replace(struct ctx *x, int dir, const char *base)
{
	int r = tree_replace(dir, base);

	if (r > 0)
		walk_drop(x, 0);
	return r < 0 ? entry_errno(x, r, "replace") : 0;
}

static int
pwrite_all(int fd, const char *p, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Copies the entry's data (size bytes, holes kept) into fd. */
static int
file_data(struct ctx *x, int fd, int64_t size)
{
	const void *buf;
	size_t len;
	la_int64_t off, end = 0;
	int r;

	for (;;) { /* libarchive ends each entry with ARCHIVE_EOF */
		r = archive_read_data_block(x->a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return reader_fail(x);
		if (off < 0 || off > size || len > (uint64_t)(size - off))
			return entry_fail(x, ERR_INVALID, EINVAL, "data past its size");
		if ((r = pwrite_all(fd, buf, len, off)) < 0)
			return entry_errno(x, r, "write");
		end = off + (la_int64_t)len > end ? off + (la_int64_t)len : end;
		progress_tick(x, false);
	}
	/* a hole at the end */
	return end < size && ftruncate(fd, size) < 0 ? entry_errno(x, -errno, "truncate") : 0;
}

static int
entry_file(struct ctx *x, struct archive_entry *e)
{
	int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	cleanup_close int dir = -1, fd = -1;
	const char *base;
	struct meta m;
	int r;

	if ((r = meta_read(x, e, &m)) < 0)
		return r;
	if (size < 0 || (uint64_t)size > x->max_bytes - x->st.bytes)
		return entry_fail(x, ERR_EXHAUSTED, EFBIG, "more than %llu bytes of files",
				  (unsigned long long)x->max_bytes);
	if ((dir = entry_parent(x, &base)) < 0)
		return dir;
	fd = openat(dir, base, FILE_FLAGS, 0600);
	if (fd < 0 && errno == EEXIST) { /* rare: try first, replace then */
		if ((r = entry_replace(x, dir, base)) < 0)
			return r;
		fd = openat(dir, base, FILE_FLAGS, 0600);
	}
	if (fd < 0)
		return entry_errno(x, -errno, "create");
	x->st.bytes += (uint64_t)size;
	if ((r = file_data(x, fd, size)) < 0 || (r = meta_apply_fd(x, e, fd, &m, false)) < 0)
		return r;
	x->st.files++;
	return 0;
}

/* Makes the entry's directory (or keeps the one there) and opens it. */
static int
dir_make(struct ctx *x)
{
	const char *base;
	struct stat st;
	int fd, r;

	if (!x->path[0]) {
		fd = fcntl(x->root, F_DUPFD_CLOEXEC, 3);
		return fd < 0 ? entry_errno(x, -errno, "open") : fd;
	}
	cleanup_close int dir = entry_parent(x, &base);
	if (dir < 0)
		return dir;
	r = mkdirat(dir, base, 0700) < 0 ? -errno : 0;
	if (r == -EEXIST && fstatat(dir, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !S_ISDIR(st.st_mode)) { /* a directory there is kept, anything else replaced */
		if ((r = entry_replace(x, dir, base)) < 0)
			return r;
		r = mkdirat(dir, base, 0700) < 0 ? -errno : 0;
	}
	if (r < 0 && r != -EEXIST)
		return entry_errno(x, r, "mkdir");
	fd = openat(dir, base, DIR_FLAGS);
	return fd < 0 ? entry_errno(x, -errno, "open") : fd;
}

static int
entry_dir(struct ctx *x, struct archive_entry *e)
{
	cleanup_close int fd = -1;
	struct meta m;
	int r;

	if ((r = meta_read(x, e, &m)) < 0)
		return r;
	if ((fd = dir_make(x)) < 0)
		return fd;
	if ((r = meta_apply_fd(x, e, fd, &m, true)) < 0 || (r = fixup_add(x, &m)) < 0)
		return r;
	x->st.dirs++;
	return 0;
}

static int
entry_symlink(struct ctx *x, struct archive_entry *e)
{
	const char *target = archive_entry_symlink(e), *base;
	cleanup_close int dir = -1;
	struct meta m;
	int r;

	if (!target || !*target || strlen(target) >= PATH_MAX)
		return entry_fail(x, ERR_INVALID, EINVAL, "symbolic link without a usable target");
	if ((r = meta_read(x, e, &m)) < 0)
		return r;
	if ((dir = entry_parent(x, &base)) < 0)
		return dir;
	if ((r = entry_replace(x, dir, base)) < 0)
		return r;
	if (symlinkat(target, dir, base) < 0)
		return entry_errno(x, -errno, "symlink");
	if ((r = meta_apply_at(x, dir, base, &m, false)) < 0)
		return r;
	x->st.symlinks++;
	return 0;
}

/* The hard link's target: a regular file in dest, reached without crossing a link. Returns
 * its directory and sets *ret_base. */
static int
link_target(struct ctx *x, struct archive_entry *e, char target[PATH_MAX], const char **ret_base)
{
	struct stat st;
	size_t bad = 0;
	int r = path_norm(archive_entry_hardlink(e), target);

	if (r < 0)
		return path_fail(x, r, "hard link target: ");
	if (!target[0] || streq(target, x->path))
		return entry_fail(x, ERR_INVALID, EINVAL, "hard link to itself or the destination");
	char why[128];
	cleanup_close int dir = open_parent(x, target, false, ret_base, &bad);
	if (dir < 0)
		return entry_fail(x, ERR_INVALID, -dir, "hard link target '%s': '%.*s'%s", target,
				  (int)bad, target, walk_why(dir, why, sizeof(why)));
	if (fstatat(dir, *ret_base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return entry_fail(x, ERR_INVALID, EINVAL,
				  "hard link target '%s' is not a regular file extracted before it",
				  target);
	return TAKE_FD(dir);
}

static int
entry_hardlink(struct ctx *x, struct archive_entry *e)
{
	char target[PATH_MAX];
	const char *tbase = NULL, *base;
	cleanup_close int tdir = link_target(x, e, target, &tbase), dir = -1;
	int r;

	if (tdir < 0)
		return tdir;
	if ((dir = entry_parent(x, &base)) < 0)
		return dir;
	if ((r = entry_replace(x, dir, base)) < 0)
		return r;
	if (linkat(tdir, tbase, dir, base, 0) < 0)
		return entry_errno(x, -errno, "link");
	x->st.hardlinks++;
	return 0;
}

/* Character and block devices, FIFOs: only with allow_devices. */
static int
entry_node(struct ctx *x, struct archive_entry *e)
{
	unsigned type = archive_entry_filetype(e);
	mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
	dev_t dev = kind == S_IFIFO
			    ? 0
			    : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
	cleanup_close int dir = -1;
	const char *base;
	struct meta m;
	int r;

	if (!x->devices) {
		x->st.skipped++;
		return 0;
	}
	if ((r = meta_read(x, e, &m)) < 0)
		return r;
	if ((dir = entry_parent(x, &base)) < 0)
		return dir;
	if ((r = entry_replace(x, dir, base)) < 0)
		return r;
	if (mknodat(dir, base, kind | 0600, dev) < 0)
		return entry_errno(x, -errno, "mknod");
	if ((r = meta_apply_at(x, dir, base, &m, true)) < 0)
		return r;
	x->st.nodes++;
	return 0;
}

/* ---- whiteouts ------------------------------------------------------------------------- */

static const char *
path_base(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* ".wh..wh..opq" in the entry's directory: what lower layers put there goes, what this layer
 * wrote stays. */
static int
whiteout_opaque(struct ctx *x, const char *dir)
{
	char path[PATH_MAX];
	size_t bad = 0;
	int fd = open_dir(x, dir, &bad), r;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return walk_fail(x, fd, dir, bad);
	snprintf(path, sizeof(path), "%s", dir);
	walk_drop(x, 0);
	r = tree_clear(fd, x->layer, path, strlen(path), 0);
	if (r < 0)
		return entry_errno(x, r, "opaque directory");
	x->st.whiteouts++;
	return 0;
}

/* ".wh.NAME": NAME goes, unless this layer wrote it. */
static int
whiteout_remove(struct ctx *x, const char *victim)
{
	const char *base;
	size_t bad = 0;
	int r;

	if (pathset_has(x->layer, victim))
		return 0;
	cleanup_close int dir = open_parent(x, victim, false, &base, &bad);
	if (dir == -ENOENT ||
	    (dir >= 0 && faccessat(dir, base, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT))
		return 0; /* nothing there to hide */
	if (dir < 0)
		return walk_fail(x, dir, victim, bad);
	walk_drop(x, 0);
	if ((r = tree_replace(dir, base)) < 0)
		return entry_errno(x, r, "whiteout");
	x->st.whiteouts++;
	return 0;
}

static int
entry_whiteout(struct ctx *x)
{
	const char *base = path_base(x->path), *name = base + strlen(WHITEOUT);
	int dirlen = (int)(base - x->path);
	char path[PATH_MAX];

	if (streq(base, OPAQUE)) {
		snprintf(path, sizeof(path), "%.*s", dirlen > 0 ? dirlen - 1 : 0, x->path);
		return whiteout_opaque(x, path);
	}
	if (strncmp(name, WHITEOUT, strlen(WHITEOUT)) == 0) {
		x->st.skipped++; /* aufs' own (.wh..wh.plnk): nothing to apply */
		return 0;
	}
	if (!*name || streq(name, ".") || streq(name, ".."))
		return entry_fail(x, ERR_INVALID, EINVAL, "whiteout without a name");
	snprintf(path, sizeof(path), "%.*s%s", dirlen, x->path, name);
	return whiteout_remove(x, path);
}

static bool
whiteout_is(const char *path)
{
	return strncmp(path_base(path), WHITEOUT, strlen(WHITEOUT)) == 0;
}

/* ---- streams --------------------------------------------------------------------------- */

static int
entry_create(struct ctx *x, struct archive_entry *e)
{
	unsigned type = archive_entry_filetype(e);

	if (!x->path[0] && (type != AE_IFDIR || archive_entry_hardlink(e)))
		return entry_fail(x, ERR_INVALID, EINVAL, "not a directory, yet names the root");
	if (archive_entry_hardlink(e))
		return entry_hardlink(x, e);
	switch (type) {
	case AE_IFREG:
		return entry_file(x, e);
	case AE_IFDIR:
		return entry_dir(x, e);
	case AE_IFLNK:
		return entry_symlink(x, e);
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		return entry_node(x, e);
	default: /* sockets */
		x->st.skipped++;
		return 0;
	}
}

static int
entry_apply(struct ctx *x, struct archive_entry *e)
{
	int r;

	x->name = archive_entry_pathname(e);
	if (!x->name)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "an entry's name cannot be read");
	if (++x->entries > x->max_entries)
		return entry_fail(x, ERR_EXHAUSTED, E2BIG, "more than %llu entries",
				  (unsigned long long)x->max_entries);
	if ((r = path_norm(x->name, x->path)) < 0)
		return path_fail(x, r, "");
	if (x->layer && whiteout_is(x->path))
		return entry_whiteout(x);
	if ((r = entry_create(x, e)) < 0)
		return r;
	if (x->layer && pathset_add(x->layer, x->path) < 0)
		return entry_errno(x, -ENOMEM, "layer paths");
	return 0;
}

/* Applies every entry of x->a; bounded by max_entries. */
static int
stream_apply(struct ctx *x)
{
	struct archive_entry *e;
	int r;

	for (;;) {
		x->name = NULL;
		r = archive_read_next_header(x->a, &e);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return reader_fail(x);
		if ((r = entry_apply(x, e)) < 0)
			return r;
		progress_tick(x, false);
	}
}

/* A tar reader with the compressions Debian's libarchive has in-process. */
static struct archive *
reader_new(void)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_support_format_empty(a) != ARCHIVE_OK ||
	    archive_read_support_filter_gzip(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_bzip2(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_xz(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_lzma(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_zstd(a) < ARCHIVE_WARN ||
	    archive_read_support_filter_lz4(a) < ARCHIVE_WARN) {
		archive_read_free(a);
		return NULL;
	}
	return a;
}

/* Opens the archive file: a regular file (O_NONBLOCK: a FIFO must not hang us). */
static int
input_open(const char *path, uint64_t *ret_size, struct err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return err_errno(err, -errno, "'%s'", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, ERR_INVALID, NULL, EINVAL, "'%s' is not a file", path);
	}
	*ret_size = (uint64_t)st.st_size;
	return fd;
}

/* Opens path into x->a; apply(x, ud) then reads it. */
static int
input_read(struct ctx *x, const char *path, int (*apply)(struct ctx *x, void *ud), void *ud)
{
	cleanup_close int fd = input_open(path, &x->prog.total, x->err);
	cleanup_(reader) struct archive *a = NULL; /* freed before fd is closed */
	int r;

	if (fd < 0)
		return fd;
	if (!(a = reader_new()))
		return err_set(x->err, ERR_EXHAUSTED, NULL, ENOMEM,
			       "archive reader: out of memory");
	x->a = a;
	if (archive_read_open_fd(a, fd, BLOCK_SIZE) != ARCHIVE_OK)
		r = reader_fail(x);
	else
		r = apply(x, ud);
	x->prog.base = x->prog.total;
	x->a = NULL;
	return r;
}

static int
tar_apply(struct ctx *x, void *ud)
{
	(void)ud;
	return stream_apply(x);
}

int
extract_tar(const char *archive, const char *dest, const struct extract_opts *o,
	    struct extract_stats *st, struct err *err)
{
	struct ctx x;
	int r = ctx_init(&x, dest, o, err);

	if (r == 0)
		r = input_read(&x, archive, tar_apply, NULL);
	if (r == 0 && x.entries == 0)
		r = err_set(err, ERR_INVALID, NULL, ENODATA, "no entries: not a root filesystem");
	if (r == 0)
		r = fixups_apply(&x);
	if (r == 0)
		progress_tick(&x, true);
	ctx_done(&x, st);
	if (r < 0)
		err_wrap(err, "archive '%s'", archive);
	return r;
}

/* ---- image archives: the members, copied aside --------------------------------------- */

/* An image archive's members, copied into one unnamed file: layers are then read in the
 * manifest's order, whatever the archive's. */
struct member {
	char *name; /* relative to the archive's root, as path_norm makes it */
	char *link; /* a symlink or hard link member: the member it names; otherwise NULL */
	uint64_t off, size;
};

struct stash {
	int fd;
	uint64_t end;
	struct member *m;
	size_t n, cap;
};

static void
stash_free(struct stash *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->m[i].name);
		free(s->m[i].link);
	}
	free(s->m);
	if (s->fd >= 0)
		close(s->fd);
}

/* An unnamed file in dest's filesystem; where O_TMPFILE is missing, a name unlinked at once
 * (dest is empty and ours). */
static int
stash_file(int root)
{
	int fd = openat(root, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
		return fd >= 0 ? fd : -errno;
	fd = openat(root, STASH_NAME, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (unlinkat(root, STASH_NAME, 0) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Whether the member is a symlink or a hard link (*ret_link) and, if so, the member it names,
 * normalized, into out. */
static int
member_link(struct archive_entry *e, const char *name, char out[PATH_MAX], bool *ret_link)
{
	const char *hard = archive_entry_hardlink(e), *sym = archive_entry_symlink(e);
	char joined[PATH_MAX * 2];

	*ret_link = hard || (archive_entry_filetype(e) == AE_IFLNK && sym);
	if (hard)
		return path_norm(hard, out);
	if (!*ret_link)
		return 0;
	snprintf(joined, sizeof(joined), "%.*s%s",
		 sym[0] == '/' ? 0 : (int)(path_base(name) - name), name, sym);
	return path_norm(joined, out);
}

/* Copies the member's data to the end of the stash. */
static int
stash_data(struct ctx *x, struct stash *s, struct member *m, int64_t size)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	if (size < 0 || (uint64_t)size > x->max_bytes - s->end)
		return entry_fail(x, ERR_EXHAUSTED, EFBIG, "more than %llu bytes in the archive",
				  (unsigned long long)x->max_bytes);
	m->off = s->end;
	m->size = (uint64_t)size;
	for (;;) { /* libarchive ends each entry with ARCHIVE_EOF */
		r = archive_read_data_block(x->a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return reader_fail(x);
		if (off < 0 || off > size || len > (uint64_t)(size - off))
			return entry_fail(x, ERR_INVALID, EINVAL, "data past its size");
		if ((r = pwrite_all(s->fd, buf, len, (off_t)(m->off + (uint64_t)off))) < 0)
			return entry_errno(x, r, "copy");
		progress_tick(x, false);
	}
	s->end += m->size;
	return ftruncate(s->fd, (off_t)s->end) < 0 ? entry_errno(x, -errno, "copy") : 0;
}

static int
stash_member(struct ctx *x, struct stash *s, struct archive_entry *e)
{
	char name[PATH_MAX], link[PATH_MAX];
	struct member *m;
	bool is_link;

	if (path_norm(x->name, name) < 0 || !name[0] || member_link(e, name, link, &is_link) < 0)
		return 0; /* a name no manifest can reach */
	if (!is_link && archive_entry_filetype(e) != AE_IFREG)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		if (s->n >= MEMBERS_MAX)
			return entry_fail(x, ERR_EXHAUSTED, E2BIG, "more than %d members",
					  MEMBERS_MAX);
		m = reallocarray(s->m, cap, sizeof(*m));
		if (!m)
			return entry_errno(x, -ENOMEM, "member list");
		s->m = m;
		s->cap = cap;
	}
	m = &s->m[s->n];
	*m = (struct member){.name = strdup(name), .link = is_link ? strdup(link) : NULL};
	if (!m->name || (is_link && !m->link)) {
		free(m->name);
		free(m->link);
		return entry_errno(x, -ENOMEM, "member list");
	}
	s->n++;
	return is_link ? 0 : stash_data(x, s, m, archive_entry_size(e));
}

static int
stash_apply(struct ctx *x, void *ud)
{
	struct archive_entry *e;
	int r;

	for (;;) { /* bounded by MEMBERS_MAX and max_entries */
		x->name = NULL;
		r = archive_read_next_header(x->a, &e);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return reader_fail(x);
		if (!(x->name = archive_entry_pathname(e)))
			continue;
		if (++x->entries > x->max_entries)
			return entry_fail(x, ERR_EXHAUSTED, E2BIG, "more than %llu entries",
					  (unsigned long long)x->max_entries);
		if ((r = stash_member(x, ud, e)) < 0)
			return r;
	}
}

/* The member called name, links followed; the last of a name wins, as in tar. */
static const struct member *
stash_find(const struct stash *s, const char *name)
{
	for (int hop = 0; hop <= ALIAS_HOPS_MAX; hop++) {
		const struct member *m = NULL;
		for (size_t i = s->n; i-- > 0 && !m;)
			if (streq(s->m[i].name, name))
				m = &s->m[i];
		if (!m || !m->link)
			return m;
		name = m->link;
	}
	return NULL;
}

static int
pread_all(int fd, char *p, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Parses the JSON member name. */
static int
stash_json(struct ctx *x, const struct stash *s, const char *name, json_t **ret)
{
	const struct member *m = stash_find(s, name);
	cleanup_free char *buf = NULL;
	json_error_t je;
	int r;

	if (!m)
		return err_set(x->err, ERR_INVALID, NULL, ENOENT, "no '%s' in the archive", name);
	if (m->size > JSON_MAX)
		return err_set(x->err, ERR_INVALID, NULL, EFBIG, "'%s': more than %u bytes", name,
			       JSON_MAX);
	if (!(buf = malloc(m->size + 1)))
		return err_set(x->err, ERR_EXHAUSTED, NULL, ENOMEM, "'%s': out of memory", name);
	if ((r = pread_all(s->fd, buf, m->size, (off_t)m->off)) < 0)
		return err_errno(x->err, r, "'%s'", name);
	*ret = json_loadb(buf, m->size, JSON_REJECT_DUPLICATES, &je);
	if (!*ret)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "'%s': line %d: %s", name,
			       je.line, je.text);
	return 0;
}

/* ---- image archives: which image, which layers ---------------------------------------- */

struct plan {
	char *config;  /* the config's member */
	char **layers; /* the layers' members, lowest first */
	size_t n_layers;
};

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void
plan_free(struct plan *p)
{
	free(p->config);
	strv_free(p->layers, p->n_layers);
}

/* A reference in one spelling: "docker.io/library/" dropped, ":latest" added when untagged. */
static void
ref_norm(const char *ref, char *buf, size_t size)
{
	static const char *const prefixes[] = {"docker.io/library/", "docker.io/"};
	const char *slash, *last;

	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (strncmp(ref, prefixes[i], strlen(prefixes[i])) == 0) {
			ref += strlen(prefixes[i]);
			break;
		}
	slash = strrchr(ref, '/');
	last = slash ? slash + 1 : ref;
	snprintf(buf, size, "%s%s", ref, strchr(last, ':') || strchr(ref, '@') ? "" : ":latest");
}

/* "busybox" names "busybox:latest" and "docker.io/library/busybox:latest". */
static bool
tag_matches(const char *name, const char *tag)
{
	char a[512], b[512];

	if (!name || !tag)
		return false;
	if (streq(name, tag))
		return true;
	ref_norm(name, a, sizeof(a));
	ref_norm(tag, b, sizeof(b));
	return streq(a, b);
}

/* "sha256:ab12..." -> "blobs/sha256/ab12...". */
static int
blob_name(struct ctx *x, const char *digest, char out[PATH_MAX])
{
	const char *colon = digest ? strchr(digest, ':') : NULL;

	if (!colon || colon == digest || !colon[1] || strchr(digest, '/') ||
	    snprintf(out, PATH_MAX, "blobs/%.*s/%s", (int)(colon - digest), digest, colon + 1) >=
		    PATH_MAX)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "bad digest '%s'",
			       digest ? digest : "");
	return 0;
}

static int
plan_add_layer(struct ctx *x, struct plan *p, const char *name)
{
	char norm[PATH_MAX];

	if (!name || path_norm(name, norm) < 0)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "bad layer name '%s'",
			       name ? name : "");
	if (p->n_layers >= LAYERS_MAX)
		return err_set(x->err, ERR_INVALID, NULL, E2BIG, "more than %d layers", LAYERS_MAX);
	if (!(p->layers[p->n_layers] = strdup(norm)))
		return err_set(x->err, ERR_EXHAUSTED, NULL, ENOMEM, "out of memory");
	p->n_layers++;
	return 0;
}

/* The layers and config of a manifest: docker's manifest.json entry (names) or an OCI image
 * manifest (descriptors with digests). */
static int
plan_fill(struct ctx *x, struct plan *p, const char *config, json_t *layers, bool oci)
{
	char name[PATH_MAX];
	json_t *l;
	size_t i;
	int r;

	if (!config || !json_is_array(layers))
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "manifest without %s",
			       config ? "layers" : "a config");
	if (!(p->config = strdup(config)) ||
	    !(p->layers = calloc(json_array_size(layers) + 1, sizeof(char *))))
		return err_set(x->err, ERR_EXHAUSTED, NULL, ENOMEM, "out of memory");
	for (i = 0; i < json_array_size(layers); i++) {
		l = json_array_get(layers, i);
		if (!oci) {
			r = plan_add_layer(x, p, json_string_value(l));
		} else if ((r = blob_name(x, json_string_value(json_object_get(l, "digest")),
					  name)) == 0) {
			r = plan_add_layer(x, p, name);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static bool
docker_tagged(json_t *image, const char *tag)
{
	json_t *tags = json_object_get(image, "RepoTags");

	for (size_t i = 0; i < json_array_size(tags); i++)
		if (tag_matches(json_string_value(json_array_get(tags, i)), tag))
			return true;
	return false;
}

/* manifest.json: [{"Config": "...", "RepoTags": ["busybox:latest"], "Layers": ["..."]}]. */
static int
plan_docker(struct ctx *x, json_t *manifest, const char *tag, struct plan *p)
{
	json_t *image = NULL, *v;
	size_t i, matches = 0;
	char config[PATH_MAX];

	if (!json_is_array(manifest))
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "manifest.json: not a list");
	for (i = 0; i < json_array_size(manifest); i++) {
		v = json_array_get(manifest, i);
		if (!tag || docker_tagged(v, tag)) {
			image = image ? image : v;
			matches++;
		}
	}
	if (!image && tag)
		return err_set(x->err, ERR_NOT_FOUND, NULL, ENOENT, "no image tagged '%s'", tag);
	if (!image)
		return err_set(x->err, ERR_INVALID, NULL, ENOENT, "manifest.json lists no image");
	if (matches > 1)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL,
			       "%zu images in the archive: name one by its tag", matches);
	if (path_norm(json_string_value(json_object_get(image, "Config")) ?: "", config) < 0)
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "manifest.json: bad Config");
	return plan_fill(x, p, config[0] ? config : NULL, json_object_get(image, "Layers"), false);
}

static bool
platform_host(json_t *desc)
{
	json_t *pf = json_object_get(desc, "platform");
	const char *os = json_string_value(json_object_get(pf, "os"));
	const char *arch = json_string_value(json_object_get(pf, "architecture"));

	return os && arch && streq(os, "linux") && streq(arch, HOST_ARCH);
}

static bool
desc_tagged(json_t *desc, const char *tag)
{
	json_t *ann = json_object_get(desc, "annotations");

	return tag_matches(json_string_value(json_object_get(ann, "io.containerd.image.name")),
			   tag) ||
	       tag_matches(
		       json_string_value(json_object_get(ann, "org.opencontainers.image.ref.name")),
		       tag);
}

/* Of an index's manifests: the one tagged tag (any when NULL); among several, the first for
 * linux on this architecture. Its blob's name into blob. */
static int
desc_pick(struct ctx *x, json_t *index, const char *tag, char blob[PATH_MAX])
{
	json_t *list = json_object_get(index, "manifests"), *d, *pick = NULL, *host = NULL;
	size_t i, matches = 0;

	for (i = 0; i < json_array_size(list); i++) {
		d = json_array_get(list, i);
		if (tag && !desc_tagged(d, tag))
			continue;
		pick = pick ? pick : d;
		host = host || !platform_host(d) ? host : d;
		matches++;
	}
	if (matches == 0 && tag)
		return err_set(x->err, ERR_NOT_FOUND, NULL, ENOENT, "no image tagged '%s'", tag);
	if (matches == 0)
		return err_set(x->err, ERR_INVALID, NULL, ENOENT, "an image index without images");
	if (matches > 1 && !(pick = host))
		return err_set(x->err, ERR_INVALID, NULL, EINVAL,
			       "%zu images, none for linux/" HOST_ARCH ": name one by its tag",
			       matches);
	return blob_name(x, json_string_value(json_object_get(pick, "digest")), blob);
}

/* index.json -> (image index ->)* image manifest. */
static int
plan_oci(struct ctx *x, const struct stash *s, const char *tag, struct plan *p)
{
	cleanup_(jsonv) json_t *doc = NULL;
	char blob[PATH_MAX], config[PATH_MAX];
	int r = stash_json(x, s, "index.json", &doc);

	if (r < 0 || (r = desc_pick(x, doc, tag, blob)) < 0)
		return r;
	for (int depth = 0; depth < INDEX_DEPTH_MAX; depth++) {
		json_decref(doc);
		doc = NULL;
		if ((r = stash_json(x, s, blob, &doc)) < 0)
			return r;
		if (!json_object_get(doc, "manifests")) {
			if ((r = blob_name(x,
					   json_string_value(json_object_get(
						   json_object_get(doc, "config"), "digest")),
					   config)) < 0)
				return r;
			return plan_fill(x, p, config, json_object_get(doc, "layers"), true);
		}
		if ((r = desc_pick(x, doc, NULL, blob)) < 0)
			return r;
	}
	return err_set(x->err, ERR_INVALID, NULL, ELOOP, "image indexes nested too deep");
}

static int
plan_make(struct ctx *x, const struct stash *s, const char *tag, struct plan *p)
{
	cleanup_(jsonv) json_t *manifest = NULL;
	int r;

	if (stash_find(s, "manifest.json")) {
		if ((r = stash_json(x, s, "manifest.json", &manifest)) < 0)
			return r;
		return plan_docker(x, manifest, tag, p);
	}
	if (stash_find(s, "index.json"))
		return plan_oci(x, s, tag, p);
	return err_set(x->err, ERR_INVALID, NULL, EINVAL,
		       "neither manifest.json nor index.json: not a docker save or OCI archive");
}

/* ---- image archives: config and layers ------------------------------------------------- */

/* The lists of struct oci_meta: key in an image config, key in our JSON. */
static const struct meta_list {
	const char *config, *saved;
	bool keys; /* in an image config, an object's keys: "ExposedPorts": {"80/tcp": {}} */
	size_t items, count;
} meta_lists[] = {
	{"Entrypoint", "entrypoint", false, offsetof(struct oci_meta, entrypoint),
	 offsetof(struct oci_meta, n_entrypoint)},
	{"Cmd", "cmd", false, offsetof(struct oci_meta, cmd), offsetof(struct oci_meta, n_cmd)},
	{"Env", "env", false, offsetof(struct oci_meta, env), offsetof(struct oci_meta, n_env)},
	{"ExposedPorts", "ports", true, offsetof(struct oci_meta, ports),
	 offsetof(struct oci_meta, n_ports)},
};

static const struct meta_string {
	const char *config, *saved;
	size_t at;
} meta_strings[] = {
	{"WorkingDir", "workdir", offsetof(struct oci_meta, workdir)},
	{"User", "user", offsetof(struct oci_meta, user)},
};

#define META_AT(m, off, type) ((type *)((char *)(m) + (off)))

/* A JSON array of strings (with keys: an object, its keys), or null: a NULL-terminated list.
 * -EINVAL for anything else. */
static int
strv_from_json(json_t *v, bool keys, char ***ret, size_t *ret_n)
{
	size_t n = keys ? json_object_size(v) : json_array_size(v), i = 0;
	char **list;

	if (!v || json_is_null(v))
		return 0;
	if ((keys ? !json_is_object(v) : !json_is_array(v)) || n > LIST_MAX)
		return -EINVAL;
	for (i = 0; !keys && i < n; i++)
		if (!json_is_string(json_array_get(v, i)))
			return -EINVAL;
	if (!(list = calloc(n + 1, sizeof(char *))))
		return -ENOMEM;
	i = 0;
	for (void *it = keys ? json_object_iter(v) : NULL; it && i < n;
	     it = json_object_iter_next(v, it))
		list[i++] = strdup(json_object_iter_key(it));
	for (i = 0; !keys && i < n; i++)
		list[i] = strdup(json_string_value(json_array_get(v, i)));
	for (i = 0; i < n; i++)
		if (!list[i]) {
			strv_free(list, n);
			return -ENOMEM;
		}
	*ret = list;
	*ret_n = n;
	return 0;
}

/* A string or null; "" is unset. */
static int
str_from_json(json_t *v, char **ret)
{
	if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v)))
		return 0;
	if (!json_is_string(v))
		return -EINVAL;
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

/* Fills meta from obj: an image config's "config" (config keys) or our JSON. */
static int
meta_fill(json_t *obj, bool config, struct oci_meta *meta, struct err *err)
{
	const char *what = config ? "image config" : "image settings";
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(meta_lists); i++) {
		const struct meta_list *l = &meta_lists[i];
		const char *key = config ? l->config : l->saved;
		r = strv_from_json(json_object_get(obj, key), config && l->keys,
				   META_AT(meta, l->items, char **),
				   META_AT(meta, l->count, size_t));
		if (r < 0)
			return err_set(err, r == -ENOMEM ? ERR_EXHAUSTED : ERR_INVALID, NULL, -r,
				       "%s: '%s' is not a list of at most %d strings", what, key,
				       LIST_MAX);
	}
	for (size_t i = 0; i < ARRAY_SIZE(meta_strings); i++) {
		const struct meta_string *f = &meta_strings[i];
		const char *key = config ? f->config : f->saved;
		if ((r = str_from_json(json_object_get(obj, key), META_AT(meta, f->at, char *))) <
		    0)
			return err_set(err, r == -ENOMEM ? ERR_EXHAUSTED : ERR_INVALID, NULL, -r,
				       "%s: '%s' is not a string", what, key);
	}
	return 0;
}

static int
meta_load(struct ctx *x, const struct stash *s, const char *config, struct oci_meta *meta)
{
	cleanup_(jsonv) json_t *doc = NULL;
	json_t *c;
	int r = stash_json(x, s, config, &doc);

	if (r < 0)
		return r;
	c = json_object_get(doc, "config");
	if (!json_is_object(doc) || (c && !json_is_object(c) && !json_is_null(c)))
		return err_set(x->err, ERR_INVALID, NULL, EINVAL, "image config: not an object");
	if ((r = meta_fill(c, true, meta, x->err)) < 0)
		err_wrap(x->err, "'%s'", config);
	return r;
}

/* A stash member as a libarchive stream. */
struct region {
	int fd;
	uint64_t off, size, pos;
	char *buf;
};

static la_ssize_t
region_read(struct archive *a, void *ud, const void **ret)
{
	struct region *rg = ud;
	uint64_t left = rg->size - rg->pos;
	size_t want = left < BLOCK_SIZE ? (size_t)left : BLOCK_SIZE;
	ssize_t n;

	if (want == 0)
		return 0;
	do
		n = pread(rg->fd, rg->buf, want, (off_t)(rg->off + rg->pos));
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		archive_set_error(a, n < 0 ? errno : EIO, "read the copied layer: %s",
				  n < 0 ? strerror(errno) : "short");
		return -1;
	}
	rg->pos += (uint64_t)n;
	*ret = rg->buf;
	return n;
}

static la_int64_t
region_skip(struct archive *a, void *ud, la_int64_t request)
{
	struct region *rg = ud;
	uint64_t left = rg->size - rg->pos;
	uint64_t n = request < 0 ? 0 : (uint64_t)request < left ? (uint64_t)request : left;

	(void)a;
	rg->pos += n;
	return (la_int64_t)n;
}

static int
layer_apply(struct ctx *x, const struct stash *s, const struct member *m, struct pathset *layer)
{
	cleanup_free char *buf = malloc(BLOCK_SIZE);
	cleanup_(reader) struct archive *a = reader_new(); /* freed before buf */
	struct region rg = {.fd = s->fd, .off = m->off, .size = m->size, .buf = buf};
	int r;

	if (!a || !buf)
		return err_set(x->err, ERR_EXHAUSTED, NULL, ENOMEM, "out of memory");
	x->a = a;
	x->layer = layer;
	if (archive_read_open2(a, &rg, NULL, region_read, region_skip, NULL) != ARCHIVE_OK)
		r = reader_fail(x);
	else
		r = stream_apply(x);
	x->prog.base += m->size;
	x->a = NULL;
	x->layer = NULL;
	return r;
}

static int
layers_apply(struct ctx *x, const struct stash *s, const struct plan *p)
{
	const struct member *m[LAYERS_MAX];
	struct pathset layer = {0};
	int r = 0;

	for (size_t i = 0; i < p->n_layers; i++) {
		if (!(m[i] = stash_find(s, p->layers[i])))
			return err_set(x->err, ERR_INVALID, NULL, ENOENT,
				       "layer '%s' is not in the archive", p->layers[i]);
		x->prog.total += m[i]->size;
	}
	for (size_t i = 0; i < p->n_layers && r == 0; i++) {
		r = layer_apply(x, s, m[i], &layer);
		pathset_clear(&layer);
		if (r < 0)
			err_wrap(x->err, "layer %zu of %zu ('%s')", i + 1, p->n_layers,
				 p->layers[i]);
	}
	return r;
}

static int
stash_load(struct ctx *x, struct stash *s, const char *archive)
{
	s->fd = stash_file(x->root);
	if (s->fd < 0)
		return err_errno(x->err, s->fd, "temporary file in the destination");
	return input_read(x, archive, stash_apply, s);
}

int
extract_oci(const char *archive, const char *tag, const char *dest, const struct extract_opts *o,
	    struct oci_meta *meta, struct extract_stats *st, struct err *err)
{
	struct stash s = {.fd = -1};
	struct plan p = {0};
	struct ctx x;
	int r;

	*meta = (struct oci_meta){0};
	r = ctx_init(&x, dest, o, err);
	if (r == 0)
		r = stash_load(&x, &s, archive);
	if (r == 0)
		r = plan_make(&x, &s, tag, &p);
	if (r == 0)
		r = meta_load(&x, &s, p.config, meta);
	if (r == 0)
		r = layers_apply(&x, &s, &p);
	if (r == 0)
		r = fixups_apply(&x);
	if (r == 0)
		progress_tick(&x, true);
	plan_free(&p);
	stash_free(&s);
	ctx_done(&x, st);
	if (r < 0)
		err_wrap(err, "image archive '%s'", archive);
	return r;
}

/* ---- struct oci_meta ------------------------------------------------------------------- */

void
oci_meta_free(struct oci_meta *meta)
{
	if (!meta)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(meta_lists); i++)
		strv_free(*META_AT(meta, meta_lists[i].items, char **),
			  *META_AT(meta, meta_lists[i].count, size_t));
	for (size_t i = 0; i < ARRAY_SIZE(meta_strings); i++)
		free(*META_AT(meta, meta_strings[i].at, char *));
	*meta = (struct oci_meta){0};
}

static json_t *
strv_to_json(char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

int
oci_meta_to_json(const struct oci_meta *meta, struct strbuf *out)
{
	cleanup_(jsonv) json_t *o = json_object();
	cleanup_free char *text = NULL;

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(meta_lists); i++) {
		const struct meta_list *l = &meta_lists[i];
		if (json_object_set_new(o, l->saved,
					strv_to_json(*META_AT(meta, l->items, char **),
						     *META_AT(meta, l->count, size_t))) < 0)
			return -EINVAL; /* out of memory, or a string that is not UTF-8 */
	}
	for (size_t i = 0; i < ARRAY_SIZE(meta_strings); i++) {
		const char *v = *META_AT(meta, meta_strings[i].at, char *);
		if (json_object_set_new(o, meta_strings[i].saved,
					v ? json_string(v) : json_null()) < 0)
			return -EINVAL;
	}
	text = json_dumps(o, JSON_COMPACT);
	return text ? strbuf_append(out, text, strlen(text)) : -ENOMEM;
}

static bool
meta_key_known(const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(meta_lists); i++)
		if (streq(key, meta_lists[i].saved))
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(meta_strings); i++)
		if (streq(key, meta_strings[i].saved))
			return true;
	return false;
}

int
oci_meta_from_json(const char *json, struct oci_meta *meta, struct err *err)
{
	cleanup_(jsonv) json_t *o = NULL;
	json_error_t je;
	int r;

	*meta = (struct oci_meta){0};
	if (strnlen(json, META_JSON_MAX + 1) > META_JSON_MAX)
		return err_set(err, ERR_INVALID, NULL, EFBIG, "image settings: more than %u bytes",
			       META_JSON_MAX);
	o = json_loads(json, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(o))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "image settings: %s",
			       o ? "not an object" : je.text);
	for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it))
		if (!meta_key_known(json_object_iter_key(it)))
			return err_set(err, ERR_INVALID, NULL, EINVAL,
				       "image settings: unknown key '%s'",
				       json_object_iter_key(it));
	if ((r = meta_fill(o, false, meta, err)) < 0)
		oci_meta_free(meta);
	return r;
}
