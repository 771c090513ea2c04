#include "kit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kit_cpio.h"
#include "kit_image.h"
#include "kit_modules.h"
#include "kit_run.h"
#include "kit_scripts.h"
#include "kit_tree.h"
#include "log.h"
#include "macro.h"

#define APT_ARCHIVES "/var/cache/apt/archives"
#define CLOUD_DEB_GLOB "linux-image-*-cloud-amd64_*.deb"
#define CLOUD_META_PACKAGE "linux-image-cloud-amd64"
#define STAMP "kit.stamp"
#define STAMP_FORMAT 1
#define BUILT_KERNEL "bzImage-sistemo"
#define BUILT_VMLINUX "vmlinux-sistemo"
#define TEXT_MAX (16u << 20)

/* What the initramfs loads; ext4 is built into the cloud kernel, a module elsewhere. */
static const char *const modules_required[] = {"virtio_mmio", "virtio_pci", "virtio_blk",
					       "virtio_net",  "ext4",       NULL};
/* virtio_rng: entropy; button + evdev: the ACPI power button as an input event for acpid. */
static const char *const modules_optional[] = {"virtio_rng", "button", "evdev", NULL};

/* <data_dir>/kernel/kit.stamp: written last, so its presence means a complete install. */
struct stamp {
	int format;
	char version[64];
	char package[256];
	char init[32]; /* hash of the initramfs /init: a new script rebuilds */
	char kernel[128];
	char initrd[128];
};

struct install {
	char kdir[PATH_MAX - 256]; /* <data_dir>/kernel: short enough for what goes in it */
	char tmp[PATH_MAX - 224];  /* <kdir>/.install-XXXXXX, removed at the end */
	char deb[PATH_MAX];        /* the package file, "" until found */
	char version[64];
	kit_progress_fn progress;
	void *ud;
};

static void report(const struct install *ins, const char *step, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(const struct install *ins, const char *step, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_debug("kit: %s: %s", step, msg);
	if (ins->progress)
		ins->progress(ins->ud, step, msg);
}

static uint64_t
fnv1a(uint64_t h, const char *s)
{
	for (const char *p = s; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (h ^ 0xff) * 1099511628211ull; /* a separator: "ab","c" differs from "a","bc" */
}

/* FNV-1a of the /init script and the module lists: when they change, an installed initramfs
 * is stale. */
static void
script_hash(char *buf, size_t size)
{
	uint64_t h = fnv1a(1469598103934665603ull, kit_script_initramfs_init);

	for (size_t i = 0; modules_required[i]; i++)
		h = fnv1a(h, modules_required[i]);
	for (size_t i = 0; modules_optional[i]; i++)
		h = fnv1a(h, modules_optional[i]);
	snprintf(buf, size, "%016llx", (unsigned long long)h);
}

static bool
safe_name(const char *s)
{
	if (!*s || streq(s, ".") || streq(s, ".."))
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-~") ==
	       strlen(s);
}

static void
stamp_field(struct stamp *s, const char *key, const char *val)
{
	struct {
		const char *key;
		char *dst;
		size_t size;
	} fields[] = {
		{"version", s->version, sizeof(s->version)},
		{"package", s->package, sizeof(s->package)},
		{"init", s->init, sizeof(s->init)},
		{"kernel", s->kernel, sizeof(s->kernel)},
		{"initrd", s->initrd, sizeof(s->initrd)},
	};

	if (streq(key, "format"))
		s->format = atoi(val);
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (streq(key, fields[i].key) && safe_name(val))
			snprintf(fields[i].dst, fields[i].size, "%s", val);
}

/* Reads key=value lines; 0 only when every field is there and safe to join to kdir. */
static int
stamp_read(const char *kdir, struct stamp *s)
{
	char path[PATH_MAX + 16];
	cleanup_free char *text = NULL;
	char *save = NULL;

	memset(s, 0, sizeof(*s));
	kit_path(path, sizeof(path), "%s/" STAMP, kdir);
	int r = kit_tree_read(path, 4096, &text);
	if (r < 0)
		return r;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq) {
			*eq = '\0';
			stamp_field(s, line, eq + 1);
		}
	}
	if (!s->version[0] || !s->init[0] || !s->kernel[0] || !s->initrd[0])
		return -EINVAL;
	return 0;
}

static bool
file_in(const char *dir, const char *name)
{
	char path[PATH_MAX * 2];

	kit_path(path, sizeof(path), "%s/%s", dir, name);
	return access(path, R_OK) == 0;
}

/* Installed and current: the stamp is ours, its files exist, the initramfs script is the same
 * and apt's cache holds no newer package (an older one never downgrades). */
static bool
install_current(const struct install *ins)
{
	struct stamp s;
	char hash[32];
	const char *base = strrchr(ins->deb, '/');

	if (stamp_read(ins->kdir, &s) < 0 || s.format != STAMP_FORMAT)
		return false;
	script_hash(hash, sizeof(hash));
	if (!streq(hash, s.init) || !file_in(ins->kdir, s.kernel) || !file_in(ins->kdir, s.initrd))
		return false;
	return !base || strverscmp(base + 1, s.package) <= 0;
}

/* The newest linux-image-*-cloud-amd64 package file in dir into ins->deb. */
static int
newest_deb(struct install *ins, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char best[256] = "";

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (fnmatch(CLOUD_DEB_GLOB, de->d_name, 0) == 0 && safe_name(de->d_name) &&
		    strlen(de->d_name) < sizeof(best) && strverscmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(d);
	if (!best[0])
		return -ENOENT;
	kit_path(ins->deb, sizeof(ins->deb), "%s/%s", dir, best);
	return 0;
}

/* The package the meta package depends on: "  Depends: linux-image-6.1.0-56-cloud-amd64". */
static int
apt_resolve(char *pkg, size_t size, struct err *err)
{
	const char *argv[] = {"apt-cache", "depends", "--important", CLOUD_META_PACKAGE, NULL};
	struct kit_cmd cmd = {.argv = argv};
	cleanup_strbuf struct strbuf out = {0};
	int r = kit_run_ok(&cmd, &out, err);

	if (r < 0)
		return r;
	for (const char *p = out.data ? strstr(out.data, "Depends: ") : NULL; p;
	     p = strstr(p + 1, "Depends: ")) {
		const char *name = p + strlen("Depends: ");
		size_t n = strcspn(name, " \n<");
		if (n < size && strncmp(name, "linux-image-", 12) == 0) {
			snprintf(pkg, size, "%.*s", (int)n, name);
			if (safe_name(pkg))
				return 0;
		}
	}
	return err_set(err, ERR_NOT_FOUND, NULL, ENOENT,
		       "apt-cache: '" CLOUD_META_PACKAGE "' depends on no kernel package");
}

/* apt-get download into <tmp>/deb: the package file only, nothing installed on the host. */
static int
apt_download(struct install *ins, struct err *err)
{
	char dir[PATH_MAX + 8], pkg[128];
	const char *argv[] = {"apt-get", "download", "-q", pkg, NULL};
	struct kit_cmd cmd = {.argv = argv, .cwd = dir, .timeout_ms = 600000};
	int r = apt_resolve(pkg, sizeof(pkg), err);

	if (r < 0)
		return err_wrap(err, "no kernel package in " APT_ARCHIVES);
	report(ins, "kernel", "downloading %s (apt-get download)", pkg);
	kit_path(dir, sizeof(dir), "%s/deb", ins->tmp);
	if (mkdir(dir, 0755) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdir '%s': %s", dir,
			       strerror(errno));
	r = kit_run_ok(&cmd, NULL, err);
	if (r < 0)
		return r;
	r = newest_deb(ins, dir);
	if (r < 0)
		return err_set(err, ERR_NOT_FOUND, NULL, -r, "apt-get download left no '%s'",
			       CLOUD_DEB_GLOB);
	return 0;
}

/* dpkg-deb -x into <tmp>/root; the version is the one directory under lib/modules. */
static int
unpack(struct install *ins, struct err *err)
{
	char root[PATH_MAX + 8], mods[PATH_MAX + 24];
	const char *argv[] = {"dpkg-deb", "-x", ins->deb, root, NULL};
	struct kit_cmd cmd = {.argv = argv, .timeout_ms = 300000};
	struct dirent *de;
	DIR *d;

	report(ins, "kernel", "unpacking %s", strrchr(ins->deb, '/') + 1);
	kit_path(root, sizeof(root), "%s/root", ins->tmp);
	int r = kit_run_ok(&cmd, NULL, err);
	if (r < 0)
		return r;
	kit_path(mods, sizeof(mods), "%s/lib/modules", root);
	if (!(d = opendir(mods)))
		return err_set(err, ERR_INVALID, NULL, errno, "'%s' holds no lib/modules",
			       ins->deb);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && safe_name(de->d_name) &&
		    strlen(de->d_name) < sizeof(ins->version))
			snprintf(ins->version, sizeof(ins->version), "%s", de->d_name);
	closedir(d);
	if (!ins->version[0])
		return err_set(err, ERR_INVALID, NULL, ENOENT, "'%s' holds no kernel version",
			       ins->deb);
	return 0;
}

/* modules.dep (depmod runs when the package has none: Debian's postinst makes it). */
static int
modules_resolve(struct install *ins, char ***ret, struct err *err)
{
	char dir[PATH_MAX * 2], path[PATH_MAX * 2], root[PATH_MAX + 8];
	const char *argv[] = {"depmod", "-b", root, ins->version, NULL};
	struct kit_cmd cmd = {.argv = argv};
	cleanup_free char *dep = NULL, *builtin = NULL;
	int r;

	kit_path(root, sizeof(root), "%s/root", ins->tmp);
	kit_path(dir, sizeof(dir), "%s/lib/modules/%s", root, ins->version);
	kit_path(path, sizeof(path), "%s/modules.dep", dir);
	if (access(path, R_OK) < 0 && (r = kit_run_ok(&cmd, NULL, err)) < 0)
		return r;
	if ((r = kit_tree_read(path, TEXT_MAX, &dep)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "read '%s': %s", path, strerror(-r));
	kit_path(path, sizeof(path), "%s/modules.builtin", dir);
	kit_tree_read(path, TEXT_MAX, &builtin);
	r = kit_modules_resolve(dep, builtin, modules_required, modules_optional, ret, err);
	return r < 0 ? err_wrap(err, "kernel '%s'", ins->version) : 0;
}

DEFINE_CLEANUP(cpio, struct kit_cpio, kit_cpio_free)

/* bin/busybox and its applets as relative links in the directories the archive has. */
static int
cpio_busybox(struct kit_cpio *c, struct err *err)
{
	static const char *const dirs[] = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", NULL};
	cleanup_strbuf struct strbuf out = {0};
	char *save = NULL, target[PATH_MAX];
	int r = 0;

	for (size_t i = 0; dirs[i] && r == 0; i++)
		r = kit_cpio_add_dir(c, dirs[i], 0755);
	if (r == 0)
		r = kit_cpio_add_file(c, "bin/busybox", 0755, KIT_BUSYBOX);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "initramfs: busybox: %s", strerror(-r));
	if ((r = kit_image_busybox_applets(&out, err)) < 0)
		return r;
	for (char *l = strtok_r(out.data, "\n", &save); l && r == 0;
	     l = strtok_r(NULL, "\n", &save)) {
		const char *slash = strrchr(l, '/');
		bool known = false;
		for (size_t i = 0; dirs[i] && slash; i++)
			known |= strncmp(l, dirs[i], (size_t)(slash - l)) == 0 &&
				 dirs[i][slash - l] == '\0';
		if (!known || streq(l, "bin/busybox"))
			continue;
		r = kit_tree_relative(l, "bin/busybox", target, sizeof(target));
		if (r == 0)
			r = kit_cpio_add_symlink(c, l, target);
	}
	return r < 0 ? err_set(err, ERR_INTERNAL, NULL, -r, "initramfs: applet links: %s",
			       strerror(-r))
		     : 0;
}

/* lib/modules/<name>.ko for each module, and load.order listing them in order. */
static int
cpio_modules(struct kit_cpio *c, const struct install *ins, char **mods, struct err *err)
{
	cleanup_strbuf struct strbuf order = {0};
	char src[PATH_MAX * 2], dst[PATH_MAX];
	int r = kit_cpio_add_dir(c, "lib", 0755);

	if (r == 0)
		r = kit_cpio_add_dir(c, "lib/modules", 0755);
	for (size_t i = 0; mods[i] && r == 0; i++) {
		const char *base = strrchr(mods[i], '/');
		base = base ? base + 1 : mods[i];
		for (size_t j = 0; j < i; j++)
			if (streq(base,
				  strrchr(mods[j], '/') ? strrchr(mods[j], '/') + 1 : mods[j]))
				return err_set(err, ERR_INVALID, NULL, EEXIST,
					       "initramfs: two modules named '%s'", base);
		kit_path(src, sizeof(src), "%s/root/lib/modules/%s/%s", ins->tmp, ins->version,
			 mods[i]);
		kit_path(dst, sizeof(dst), "lib/modules/%s", base);
		r = kit_cpio_add_file(c, dst, 0644, src);
		if (r == 0)
			r = strbuf_printf(&order, "%s\n", base);
	}
	if (r == 0)
		r = kit_cpio_add_data(c, "lib/modules/load.order", 0644,
				      order.data ? order.data : "", order.len);
	return r < 0 ? err_set(err, ERR_INTERNAL, NULL, -r, "initramfs: modules: %s", strerror(-r))
		     : 0;
}

static int
cpio_write(int fd, const struct install *ins, char **mods, struct err *err)
{
	static const char *const dirs[] = {"dev", "proc", "sys", "newroot", "run", "tmp", NULL};
	cleanup_(cpio) struct kit_cpio *c = NULL;
	int r = kit_cpio_new(fd, &c);

	for (size_t i = 0; dirs[i] && r == 0; i++)
		r = kit_cpio_add_dir(c, dirs[i], streq(dirs[i], "tmp") ? 01777 : 0755);
	if (r == 0)
		r = kit_cpio_add_chardev(c, "dev/console", 0600, 5, 1);
	if (r == 0)
		r = kit_cpio_add_data(c, "init", 0755, kit_script_initramfs_init,
				      strlen(kit_script_initramfs_init));
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "initramfs: %s", strerror(-r));
	if ((r = cpio_busybox(c, err)) < 0 || (r = cpio_modules(c, ins, mods, err)) < 0)
		return r;
	r = kit_cpio_finish(c);
	return r < 0 ? err_set(err, ERR_INTERNAL, NULL, -r, "initramfs: %s", strerror(-r)) : 0;
}

/* <tmp>/initrd.img: the newc archive, then gzip -9n. */
static int
initramfs_build(const struct install *ins, char **mods, struct err *err)
{
	char cpio[PATH_MAX + 16], img[PATH_MAX + 16];
	const char *argv[] = {"gzip", "-9", "-n", "-c", NULL};
	struct kit_cmd cmd = {.argv = argv, .stdin_path = cpio, .stdout_path = img};
	cleanup_close int fd = -1;
	int r;

	kit_path(cpio, sizeof(cpio), "%s/initrd.cpio", ins->tmp);
	kit_path(img, sizeof(img), "%s/initrd.img", ins->tmp);
	fd = open(cpio, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", cpio,
			       strerror(errno));
	if ((r = cpio_write(fd, ins, mods, err)) < 0)
		return r;
	if ((r = kit_run_ok(&cmd, NULL, err)) < 0)
		return r;
	return chmod(img, 0644) < 0 ? err_set(err, ERR_INTERNAL, NULL, errno, "chmod '%s': %s", img,
					      strerror(errno))
				    : 0;
}

static int
stamp_write(const struct install *ins, struct err *err)
{
	char hash[32], path[PATH_MAX + 16], dst[PATH_MAX + 16];
	cleanup_strbuf struct strbuf sb = {0};
	cleanup_close int root = open(ins->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = root < 0 ? -errno : 0;

	script_hash(hash, sizeof(hash));
	if (r == 0)
		r = strbuf_printf(&sb,
				  "format=%d\nversion=%s\npackage=%s\ninit=%s\nkernel=vmlinuz-%s\n"
				  "initrd=initrd-%s.img\n",
				  STAMP_FORMAT, ins->version, strrchr(ins->deb, '/') + 1, hash,
				  ins->version, ins->version);
	if (r == 0)
		r = kit_tree_write(root, STAMP, 0644, sb.data, sb.len);
	kit_path(path, sizeof(path), "%s/" STAMP, ins->tmp);
	kit_path(dst, sizeof(dst), "%s/" STAMP, ins->kdir);
	if (r == 0 && rename(path, dst) < 0)
		r = -errno;
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "write '%s': %s", dst, strerror(-r));
	return 0;
}

static int
move_in(const char *from, const char *to, struct err *err)
{
	if (chmod(from, 0644) < 0 || rename(from, to) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "install '%s': %s", to,
			       strerror(errno));
	return 0;
}

/* Moves the kernel and the initramfs in (atomic renames), then the stamp; removes the files
 * of a previous version. */
static int
install_files(const struct install *ins, struct err *err)
{
	char from[PATH_MAX * 2], to[PATH_MAX * 2];
	struct stamp old;
	bool had_old = stamp_read(ins->kdir, &old) == 0 && !streq(old.version, ins->version);
	int r;

	kit_path(from, sizeof(from), "%s/root/boot/vmlinuz-%s", ins->tmp, ins->version);
	kit_path(to, sizeof(to), "%s/vmlinuz-%s", ins->kdir, ins->version);
	if ((r = move_in(from, to, err)) < 0)
		return r;
	kit_path(from, sizeof(from), "%s/initrd.img", ins->tmp);
	kit_path(to, sizeof(to), "%s/initrd-%s.img", ins->kdir, ins->version);
	if ((r = move_in(from, to, err)) < 0 || (r = stamp_write(ins, err)) < 0)
		return r;
	if (had_old) {
		kit_path(to, sizeof(to), "%s/%s", ins->kdir, old.kernel);
		unlink(to);
		kit_path(to, sizeof(to), "%s/%s", ins->kdir, old.initrd);
		unlink(to);
	}
	return 0;
}

static int
install_build(struct install *ins, struct err *err)
{
	char **mods = NULL;
	int r, n = 0;

	if (!ins->deb[0] && (r = apt_download(ins, err)) < 0)
		return r;
	if ((r = unpack(ins, err)) < 0 || (r = modules_resolve(ins, &mods, err)) < 0)
		return r;
	while (mods[n])
		n++;
	report(ins, "initramfs", "busybox and %d modules for %s", n, ins->version);
	r = initramfs_build(ins, mods, err);
	kit_modules_free(mods);
	if (r < 0 || (r = install_files(ins, err)) < 0)
		return r;
	report(ins, "kernel", "installed %s", ins->version);
	return 0;
}

static int
install_prepare(struct install *ins, const char *data_dir, struct err *err)
{
	if (kit_path(ins->kdir, sizeof(ins->kdir), "%s/kernel", data_dir) < 0)
		return err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG, "data dir '%s' too long",
			       data_dir);
	if (mkdir(ins->kdir, 0755) < 0 && errno != EEXIST)
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdir '%s': %s", ins->kdir,
			       strerror(errno));
	if (!kit_tree_elf_static(KIT_BUSYBOX))
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no static '" KIT_BUSYBOX "' (apt-get install busybox-static)");
	return 0;
}

/* One install at a time: flock on the kernel folder. The holder removes what a crashed install
 * left behind (.install-*: an unpacked package, about 100 MB). Returns the locked fd. */
static int
install_lock(const struct install *ins, struct err *err)
{
	int fd = open(ins->kdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (fd < 0 || flock(fd, LOCK_EX) < 0 || !(d = opendir(ins->kdir))) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return err_set(err, ERR_INTERNAL, NULL, e, "lock '%s': %s", ins->kdir, strerror(e));
	}
	while ((de = readdir(d)))
		if (strncmp(de->d_name, ".install-", 9) == 0 &&
		    kit_path(path, sizeof(path), "%s/%s", ins->kdir, de->d_name) == 0)
			kit_tree_remove(path);
	closedir(d);
	return fd;
}

int
kit_install(const char *data_dir, bool force, kit_progress_fn progress, void *ud, struct err *err)
{
	struct install ins = {.progress = progress, .ud = ud};
	cleanup_close int lock = -1;
	int r = install_prepare(&ins, data_dir, err);

	if (r < 0)
		return r;
	newest_deb(&ins, APT_ARCHIVES);
	if (!force && install_current(&ins)) {
		report(&ins, "kernel", "already installed");
		return 0;
	}
	if ((lock = install_lock(&ins, err)) < 0)
		return lock;
	if (!force && install_current(&ins)) {
		report(&ins, "kernel", "installed meanwhile");
		return 0;
	}
	kit_path(ins.tmp, sizeof(ins.tmp), "%s/.install-XXXXXX", ins.kdir);
	if (!mkdtemp(ins.tmp))
		return err_set(err, ERR_INTERNAL, NULL, errno, "mkdtemp in '%s': %s", ins.kdir,
			       strerror(errno));
	r = install_build(&ins, err);
	int rr = kit_tree_remove(ins.tmp);
	if (rr < 0)
		log_warn("kit: remove '%s': %s", ins.tmp, strerror(-rr));
	return r < 0 ? err_wrap(err, "install the guest kernel") : 0;
}

/* The version in a bzImage's setup header ("6.1.192 (user@host) #1 ..." -> "6.1.192"). */
static void
bzimage_version(const char *path, char *buf, size_t size)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char hdr[0x210];
	char text[64] = "";

	snprintf(buf, size, "unknown");
	if (fd < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr + 0x202, "HdrS", 4) != 0)
		return;
	unsigned off = 0x200u + (hdr[0x20e] | (unsigned)hdr[0x20f] << 8);
	ssize_t n = pread(fd, text, sizeof(text) - 1, off);
	if (n <= 0)
		return;
	text[n] = '\0';
	text[strcspn(text, " ")] = '\0';
	if (text[0])
		snprintf(buf, size, "%s", text);
}

static void
kernel_built(const char *kdir, struct kit_kernel *ret)
{
	kit_path(ret->kernel, sizeof(ret->kernel), "%s/" BUILT_KERNEL, kdir);
	if (file_in(kdir, BUILT_VMLINUX))
		kit_path(ret->vmlinux, sizeof(ret->vmlinux), "%s/" BUILT_VMLINUX, kdir);
	ret->built = true;
	bzimage_version(ret->kernel, ret->version, sizeof(ret->version));
}

int
kit_kernel_find(const char *data_dir, struct kit_kernel *ret, struct err *err)
{
	char kdir[PATH_MAX - 256];
	struct stamp s;

	memset(ret, 0, sizeof(*ret));
	if (kit_path(kdir, sizeof(kdir), "%s/kernel", data_dir) < 0)
		return err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG, "data dir '%s' too long",
			       data_dir);
	if (file_in(kdir, BUILT_KERNEL)) {
		kernel_built(kdir, ret);
		return 0;
	}
	if (stamp_read(kdir, &s) < 0 || !file_in(kdir, s.kernel) || !file_in(kdir, s.initrd))
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "no guest kernel in '%s': run 'sistemo install'", kdir);
	kit_path(ret->kernel, sizeof(ret->kernel), "%s/%s", kdir, s.kernel);
	kit_path(ret->initrd, sizeof(ret->initrd), "%s/%s", kdir, s.initrd);
	snprintf(ret->version, sizeof(ret->version), "%s", s.version);
	return 0;
}
