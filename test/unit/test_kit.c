/* The guest kit's fast pieces: the cpio writer, the module closure, the staging tree that never
 * writes through a link, sparse copies, the spawn helper, the guest scripts under dash and
 * busybox sh, and the root disk (clone, grow, inject) on small ext4 files. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "kit.h"
#include "kit_cpio.h"
#include "kit_debian.h"
#include "kit_image.h"
#include "kit_modules.h"
#include "kit_rootfs.h"
#include "kit_run.h"
#include "kit_scripts.h"
#include "kit_tree.h"
#include "strbuf.h"

struct state {
	char dir[64];  /* scratch, removed in teardown */
	char host[64]; /* stands for "somewhere on the host" a planted link points at */
	struct err err;
};

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->dir, sizeof(st->dir), "/tmp/test_kit.XXXXXX");
	snprintf(st->host, sizeof(st->host), "/tmp/test_kit_host.XXXXXX");
	if (!mkdtemp(st->dir) || !mkdtemp(st->host)) {
		free(st);
		return -1;
	}
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

static bool
have(const char *program)
{
	char path[PATH_MAX];
	const char *dirs[] = {"/usr/sbin", "/usr/bin", "/sbin", "/bin"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], program);
		if (access(path, X_OK) == 0)
			return true;
	}
	return false;
}

/* Runs argv; returns the exit status, stdout in out (may be NULL). */
static int
run(const char *const *argv, const char *stdin_path, struct strbuf *out)
{
	struct kit_cmd cmd = {.argv = argv, .stdin_path = stdin_path};
	struct err err = {0};
	int r = kit_run(&cmd, out, NULL, &err);

	if (r < 0)
		fail_msg("%s: %s", argv[0], err.msg);
	return r;
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (!haystack || !strstr(haystack, needle))
		fail_msg("'%s' does not contain '%s'", haystack ? haystack : "(null)", needle);
}

static void
path_in(const struct state *st, char *buf, size_t size, const char *name)
{
	assert_int_equal(kit_path(buf, size, "%s/%s", st->dir, name), 0);
}

static int
open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* ---- cpio ------------------------------------------------------------------------------ */

static void
test_cpio_newc(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX], src[PATH_MAX];
	struct kit_cpio *c = NULL;
	struct stat sb;
	char head[7] = "";

	path_in(st, src, sizeof(src), "src");
	FILE *f = fopen(src, "w");
	assert_non_null(f);
	fputs("hello from the host\n", f);
	fclose(f);
	path_in(st, path, sizeof(path), "a.cpio");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(kit_cpio_new(fd, &c), 0);
	assert_int_equal(kit_cpio_add_dir(c, "bin", 0755), 0);
	assert_int_equal(kit_cpio_add_file(c, "bin/file", 0644, src), 0);
	assert_int_equal(kit_cpio_add_data(c, "init", 0755, "#!/bin/sh\n", 10), 0);
	assert_int_equal(kit_cpio_add_symlink(c, "bin/sh", "busybox"), 0);
	assert_int_equal(kit_cpio_add_chardev(c, "console", 0600, 5, 1), 0);
	assert_int_equal(kit_cpio_add_dir(c, "/abs", 0755), -EINVAL);
	assert_int_equal(kit_cpio_add_dir(c, "a/../b", 0755), -EINVAL);
	assert_int_equal(kit_cpio_finish(c), 0);
	kit_cpio_free(c);
	close(fd);

	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size % 512, 0);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fread(head, 1, 6, f), 6);
	fclose(f);
	assert_string_equal(head, "070701");
	if (!have("cpio"))
		return;
	/* GNU cpio reads it back: names, types, the symlink target */
	const char *argv[] = {"cpio", "-itv", "--quiet", NULL};
	struct strbuf out = {0};
	assert_int_equal(run(argv, path, &out), 0);
	assert_contains(out.data, "drwxr-xr-x");
	assert_contains(out.data, "bin/file");
	assert_contains(out.data, "bin/sh -> busybox");
	assert_contains(out.data, "crw-------");
	assert_contains(out.data, "init");
	assert_int_equal(strstr(out.data, "TRAILER") == NULL, 1);
	strbuf_free(&out);
}

/* ---- modules --------------------------------------------------------------------------- */

static const char modules_dep[] =
	"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/virtio/virtio_ring.ko:\n"
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
	"kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
	"kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
	"kernel/net/core/failover.ko:\n"
	"kernel/drivers/acpi/button.ko:\n";

static const char modules_builtin[] = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n";

static long
index_of(char **list, const char *name)
{
	char mod[64];

	for (long i = 0; list[i]; i++)
		if (kit_modules_name(list[i], mod, sizeof(mod)) == 0 && strcmp(mod, name) == 0)
			return i;
	return -1;
}

static void
test_modules_closure(void **ts)
{
	struct state *st = *ts;
	const char *required[] = {"virtio_mmio", "virtio_pci", "virtio_blk",
				  "virtio_net",  "ext4",       NULL};
	const char *optional[] = {"virtio-rng", "button", "evdev", NULL};
	char **list = NULL;
	long n = 0;

	assert_int_equal(kit_modules_resolve(modules_dep, modules_builtin, required, optional,
					     &list, &st->err),
			 0);
	while (list[n])
		n++;
	/* 12 lines minus nothing: every listed module is in the closure, each once */
	assert_int_equal(n, 12);
	assert_true(index_of(list, "virtio_ring") < index_of(list, "virtio"));
	assert_true(index_of(list, "virtio") < index_of(list, "virtio_mmio"));
	assert_true(index_of(list, "virtio_pci_legacy_dev") < index_of(list, "virtio_pci"));
	assert_true(index_of(list, "failover") < index_of(list, "net_failover"));
	assert_true(index_of(list, "net_failover") < index_of(list, "virtio_net"));
	assert_true(index_of(list, "virtio_rng") >= 0);
	assert_int_equal(index_of(list, "ext4"), -1); /* built in */
	assert_string_equal(list[index_of(list, "virtio_rng")],
			    "kernel/drivers/char/hw_random/virtio-rng.ko");
	kit_modules_free(list);
}

static void
test_modules_errors(void **ts)
{
	struct state *st = *ts;
	const char *missing[] = {"virtio_blk", "nvme", NULL};
	const char *cycle_dep = "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n";
	const char *a[] = {"a", NULL};
	const char *dangling = "kernel/a.ko: kernel/zz.ko\n";
	const char *xz = "kernel/a.ko.xz:\n";
	char **list = NULL, name[64];

	assert_int_equal(kit_modules_name("kernel/x/virtio-rng.ko", name, sizeof(name)), 0);
	assert_string_equal(name, "virtio_rng");
	assert_int_equal(kit_modules_name("kernel/x/README", name, sizeof(name)), -EINVAL);
	assert_true(kit_modules_resolve(modules_dep, NULL, missing, NULL, &list, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	assert_contains(st->err.msg, "'nvme'");
	err_clear(&st->err);
	assert_true(kit_modules_resolve(cycle_dep, NULL, a, NULL, &list, &st->err) < 0);
	assert_contains(st->err.msg, "cycle");
	err_clear(&st->err);
	assert_true(kit_modules_resolve(dangling, NULL, a, NULL, &list, &st->err) < 0);
	assert_contains(st->err.msg, "kernel/zz.ko");
	err_clear(&st->err);
	assert_true(kit_modules_resolve(xz, NULL, a, NULL, &list, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_UNIMPLEMENTED);
}

/* ---- staging tree ---------------------------------------------------------------------- */

static void
test_tree_relative(void **ts)
{
	char buf[PATH_MAX];

	(void)ts;
	assert_int_equal(kit_tree_relative("usr/bin/awk", "bin/busybox", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "../../bin/busybox");
	assert_int_equal(kit_tree_relative("bin/sh", "bin/busybox", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "busybox");
	assert_int_equal(kit_tree_relative("sbin/init", "bin/busybox", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "../bin/busybox");
	assert_int_equal(kit_tree_relative("binx/a", "bin/busybox", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "../bin/busybox");
	assert_int_equal(kit_tree_relative("linuxrc", "bin/busybox", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "bin/busybox");
	assert_int_equal(kit_tree_relative("/abs", "bin/busybox", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(kit_tree_relative("a/../b", "bin/busybox", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(kit_tree_relative("usr/bin/awk", "bin/busybox", buf, 8), -ENAMETOOLONG);
}

/* The lesson of measurements.md §6.2: a link in the staging tree never redirects a write. */
static void
test_tree_never_follows_links(void **ts)
{
	struct state *st = *ts;
	char victim[PATH_MAX], buf[64] = "";
	int root = open_dir(st->dir);

	snprintf(victim, sizeof(victim), "%s/busybox", st->host);
	FILE *f = fopen(victim, "w");
	assert_non_null(f);
	fputs("host busybox\n", f);
	fclose(f);
	assert_int_equal(kit_tree_mkdir(root, "bin", 0755), 0);
	assert_int_equal(kit_tree_symlink(root, "sbin", st->host), 0);
	assert_int_equal(kit_tree_symlink(root, "bin/init", victim), 0);
	/* a file where a link is: refused, the link's target untouched */
	assert_int_equal(kit_tree_write(root, "bin/init", 0755, "x", 1), -EEXIST);
	/* a link as a directory on the way: refused */
	assert_int_equal(kit_tree_write(root, "sbin/busybox", 0755, "x", 1), -ENOTDIR);
	assert_int_equal(kit_tree_mkdir(root, "sbin/deeper", 0755), -ENOTDIR);
	assert_int_equal(kit_tree_copy(root, "sbin/busybox", 0755, "/etc/hostname"), -ENOTDIR);
	assert_int_equal(kit_tree_symlink(root, "sbin/x", "y"), -ENOTDIR);
	f = fopen(victim, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "host busybox\n");
	/* removing the tree removes the links, not what they point at */
	close(root);
	char tree[PATH_MAX];
	path_in(st, tree, sizeof(tree), "bin");
	assert_int_equal(kit_tree_remove(tree), 0);
	assert_int_equal(access(victim, F_OK), 0);
	assert_int_equal(kit_tree_remove(tree), 0); /* missing: fine */
}

static void
test_tree_modes(void **ts)
{
	struct state *st = *ts;
	int root = open_dir(st->dir);
	char path[PATH_MAX];
	struct stat sb;
	mode_t old = umask(077);

	assert_int_equal(kit_tree_mkdir(root, "tmp", 01777), 0);
	assert_int_equal(kit_tree_mkdir(root, "a/b/c", 0755), 0);
	assert_int_equal(kit_tree_mkdir(root, "a/b/c", 0755), 0); /* existing: fine */
	assert_int_equal(kit_tree_write(root, "a/b/c/f", 0640, "data", 4), 0);
	umask(old);
	path_in(st, path, sizeof(path), "tmp");
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 01777);
	path_in(st, path, sizeof(path), "a/b/c/f");
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);
	assert_int_equal(sb.st_size, 4);
	close(root);
}

static void
test_copy_sparse(void **ts)
{
	struct state *st = *ts;
	char src[PATH_MAX], dst[PATH_MAX], a[16] = "", b[16] = "";
	struct stat ss, ds;

	path_in(st, src, sizeof(src), "sparse.src");
	path_in(st, dst, sizeof(dst), "sparse.dst");
	int in = open(src, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int out = open(dst, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(in >= 0 && out >= 0);
	assert_int_equal(pwrite(in, "head", 4, 0), 4);
	assert_int_equal(pwrite(in, "tail", 4, 64 << 20), 4);
	assert_int_equal(kit_tree_copy_sparse(in, out), 0);
	assert_int_equal(fstat(in, &ss), 0);
	assert_int_equal(fstat(out, &ds), 0);
	assert_int_equal(ds.st_size, ss.st_size);
	assert_true(ds.st_blocks * 512 < 4 << 20); /* holes stayed holes */
	assert_int_equal(pread(out, a, 4, 0), 4);
	assert_int_equal(pread(out, b, 4, 64 << 20), 4);
	assert_string_equal(a, "head");
	assert_string_equal(b, "tail");
	close(in);
	close(out);
}

/* ---- spawning -------------------------------------------------------------------------- */

static void
test_run(void **ts)
{
	struct state *st = *ts;
	const char *echo[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
	const char *slow[] = {"sleep", "10", NULL};
	const char *none[] = {"/nonexistent/program", NULL};
	struct kit_cmd cmd = {.argv = echo};
	struct strbuf out = {0}, errout = {0};
	struct timespec t0, t1;

	assert_int_equal(kit_run(&cmd, &out, &errout, &st->err), 3);
	assert_string_equal(out.data, "out\n");
	assert_string_equal(errout.data, "err\n");
	strbuf_free(&out);
	assert_true(kit_run_ok(&cmd, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "'sh' failed (exit status 3): err");
	err_clear(&st->err);
	cmd = (struct kit_cmd){.argv = slow, .timeout_ms = 200};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_true(kit_run(&cmd, NULL, NULL, &st->err) < 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(st->err.code, ERR_DEADLINE);
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	err_clear(&st->err);
	cmd = (struct kit_cmd){.argv = none};
	assert_true(kit_run(&cmd, NULL, NULL, &st->err) < 0);
	assert_contains(st->err.msg, "program");
	strbuf_free(&errout);
}

/* ---- guest scripts --------------------------------------------------------------------- */

/* argv running a script under dash (s == 0) or busybox sh (s == 1), or NULL when missing. */
static const char **
shell_argv(int s, const char *opt, const char *script, const char *argv[6])
{
	const char *shell = s ? "/bin/busybox" : "/bin/dash";
	int n = 0;

	if (access(shell, X_OK) < 0)
		return NULL;
	argv[n++] = shell;
	if (s)
		argv[n++] = "sh";
	if (opt)
		argv[n++] = opt;
	argv[n++] = "-c";
	argv[n++] = script;
	argv[n] = NULL;
	return argv;
}

static void
test_scripts_parse(void **ts)
{
	const char *argv[6];

	(void)ts;
	for (int s = 0; s < 2; s++) {
		const char *scripts[16] = {kit_script_initramfs_init, kit_script_sistemo_init};
		size_t n = 2;
		for (size_t i = 0; i < kit_tiny_files_count && n < 16; i++)
			if (strncmp(kit_tiny_files[i].data, "#!/bin/sh", 9) == 0)
				scripts[n++] = kit_tiny_files[i].data;
		for (size_t i = 0; i < n; i++) {
			if (!shell_argv(s, "-n", scripts[i], argv))
				break;
			if (run(argv, NULL, NULL) != 0)
				fail_msg("%s: syntax error in:\n%s", argv[0], scripts[i]);
		}
	}
}

static void
test_scripts_ip_parsing(void **ts)
{
	static const char probe[] =
		"set -u; set -f\n"
		"parse_ip 10.200.0.2::10.200.0.1:255.255.255.0:t1:eth0:off\n"
		"echo \"$ip_addr|$ip_gw|$ip_mask|$ip_dev|$(prefix_of $ip_mask)\"\n"
		"echo \"$(prefix_of 255.255.240.0) $(prefix_of 255.0.0.0) $(prefix_of '')\"\n"
		"parse_ip 10.0.0.5\n"
		"echo \"$ip_addr|$ip_gw|$ip_dev\"\n";
	struct strbuf script = {0};

	(void)ts;
	assert_int_equal(strbuf_printf(&script, "%s\n%s", kit_script_sh_lib, probe), 0);
	for (int s = 0; s < 2; s++) {
		const char *argv[6];
		struct strbuf out = {0};
		if (!shell_argv(s, NULL, script.data, argv))
			continue;
		assert_int_equal(run(argv, NULL, &out), 0);
		assert_string_equal(out.data, "10.200.0.2|10.200.0.1|255.255.255.0|eth0|24\n"
					      "20 8 0\n"
					      "10.0.0.5||eth0\n");
		strbuf_free(&out);
	}
	strbuf_free(&script);
}

/* ---- root disks ------------------------------------------------------------------------ */

/* An ext4 file made from a tree built by the test. */
static void
make_ext4(struct state *st, const char *tree, const char *file, const char *size)
{
	char t[PATH_MAX], f[PATH_MAX];
	const char *argv[] = {"mkfs.ext4", "-q", "-F", "-b", "4096", "-d", t, f, size, NULL};

	path_in(st, t, sizeof(t), tree);
	path_in(st, f, sizeof(f), file);
	assert_int_equal(run(argv, NULL, NULL), 0);
}

static void
inject(struct state *st, const char *img, const char *key)
{
	if (kit_rootfs_inject(img, key, &st->err) < 0)
		fail_msg("inject: %s", st->err.msg);
}

static enum kit_rootfs_type
type_of(struct state *st, const char *rootfs, const char *path)
{
	enum kit_rootfs_type t = KIT_ROOTFS_OTHER;

	if (kit_rootfs_type(rootfs, path, &t, &st->err) < 0)
		fail_msg("%s", st->err.msg);
	return t;
}

/* An image whose /root/.ssh and /sbin/sistemo-init are links to host paths: the injection
 * replaces the links inside the image and writes nothing on the host. */
static void
test_inject_never_writes_host(void **ts)
{
	struct state *st = *ts;
	char img[PATH_MAX], victim[PATH_MAX];
	int root;

	if (!have("mkfs.ext4") || !have("debugfs"))
		skip();
	snprintf(victim, sizeof(victim), "%s/sistemo-init", st->host);
	path_in(st, img, sizeof(img), "tree");
	assert_int_equal(mkdir(img, 0755), 0);
	root = open_dir(img);
	assert_int_equal(kit_tree_mkdir(root, "root", 0700), 0);
	assert_int_equal(kit_tree_mkdir(root, "sbin", 0755), 0);
	assert_int_equal(kit_tree_symlink(root, "root/.ssh", st->host), 0);
	assert_int_equal(kit_tree_symlink(root, "sbin/sistemo-init", victim), 0);
	close(root);
	make_ext4(st, "tree", "img.ext4", "16M");
	path_in(st, img, sizeof(img), "img.ext4");
	assert_int_equal(type_of(st, img, "/root/.ssh"), KIT_ROOTFS_LINK);

	inject(st, img, "ssh-ed25519 AAAAC3Nza test@host");
	assert_int_equal(access(victim, F_OK), -1);
	char authorized[PATH_MAX];
	snprintf(authorized, sizeof(authorized), "%s/authorized_keys", st->host);
	assert_int_equal(access(authorized, F_OK), -1);
	assert_int_equal(type_of(st, img, "/root/.ssh"), KIT_ROOTFS_DIR);
	assert_int_equal(type_of(st, img, "/root/.ssh/authorized_keys"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, img, "/sbin/sistemo-init"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, img, "/etc/systemd/system/sistemo-ready.service"),
			 KIT_ROOTFS_NONE);

	/* the key, the modes and the owner as debugfs reads them back */
	const char *cat[] = {"debugfs", "-R", "cat /root/.ssh/authorized_keys", img, NULL};
	const char *ls[] = {"debugfs", "-R", "ls -l /root/.ssh", img, NULL};
	struct strbuf out = {0};
	assert_int_equal(run(cat, NULL, &out), 0);
	assert_string_equal(out.data, "ssh-ed25519 AAAAC3Nza test@host\n");
	strbuf_free(&out);
	assert_int_equal(run(ls, NULL, &out), 0);
	assert_contains(out.data, "40700 (2)      0      0");
	assert_contains(out.data, "100600 (1)      0      0");
	strbuf_free(&out);

	/* again: the files are replaced, not an error */
	inject(st, img, "ssh-ed25519 BBBB second");
	assert_int_equal(run(cat, NULL, &out), 0);
	assert_string_equal(out.data, "ssh-ed25519 BBBB second\n");
	strbuf_free(&out);
}

#define WANTS "/etc/systemd/system/multi-user.target.wants"

static void
test_inject_systemd(void **ts)
{
	struct state *st = *ts;
	char img[PATH_MAX];
	int root;

	if (!have("mkfs.ext4") || !have("debugfs"))
		skip();
	path_in(st, img, sizeof(img), "sd");
	assert_int_equal(mkdir(img, 0755), 0);
	root = open_dir(img);
	/* merged /usr: /lib and /sbin are links inside the image, followed there */
	assert_int_equal(kit_tree_mkdir(root, "usr/lib/systemd", 0755), 0);
	assert_int_equal(kit_tree_mkdir(root, "usr/sbin", 0755), 0);
	assert_int_equal(kit_tree_write(root, "usr/lib/systemd/systemd", 0755, "elf", 3), 0);
	assert_int_equal(kit_tree_symlink(root, "lib", "usr/lib"), 0);
	assert_int_equal(kit_tree_symlink(root, "sbin", "usr/sbin"), 0);
	close(root);
	make_ext4(st, "sd", "sd.ext4", "16M");
	path_in(st, img, sizeof(img), "sd.ext4");

	inject(st, img, "ssh-ed25519 AAAA k");
	assert_int_equal(type_of(st, img, "/sbin"), KIT_ROOTFS_LINK);
	assert_int_equal(type_of(st, img, "/usr/sbin/sistemo-init"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, img, "/etc/systemd/system/sistemo-ready.service"),
			 KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, img, WANTS "/sistemo-ready.service"), KIT_ROOTFS_LINK);
	assert_int_equal(type_of(st, img, WANTS "/sistemo-power-button.service"), KIT_ROOTFS_LINK);
	inject(st, img, "ssh-ed25519 AAAA k");
}

static void
test_inject_rejects(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX];

	path_in(st, path, sizeof(path), "not-ext4");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("plain text\n", f);
	fclose(f);
	assert_true(kit_rootfs_inject(path, "ssh-ed25519 AAAA\nsecond line", &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	err_clear(&st->err);
	assert_true(kit_rootfs_inject(path, "ssh-ed25519 AAAA k", &st->err) < 0);
	assert_contains(st->err.msg, "not an ext4 filesystem");
}

static off_t
size_of(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_size;
}

static void
test_clone_grow(void **ts)
{
	struct state *st = *ts;
	char img[PATH_MAX], dest[PATH_MAX], small[PATH_MAX];
	const char *dirty[] = {"debugfs", "-w", "-R", "ssv state 0", img, NULL};

	if (!have("mkfs.ext4") || !have("resize2fs"))
		skip();
	path_in(st, img, sizeof(img), "t");
	assert_int_equal(mkdir(img, 0755), 0);
	make_ext4(st, "t", "base.ext4", "16M");
	path_in(st, img, sizeof(img), "base.ext4");
	path_in(st, dest, sizeof(dest), "vm.ext4");
	path_in(st, small, sizeof(small), "small.ext4");

	assert_true(kit_rootfs_clone(img, small, 8, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_int_equal(access(small, F_OK), -1);
	err_clear(&st->err);
	/* not cleanly unmounted: resize2fs wants e2fsck -f first */
	assert_int_equal(run(dirty, NULL, NULL), 0);
	assert_int_equal(kit_rootfs_clone(img, dest, 48, &st->err), 0);
	assert_int_equal(size_of(dest), 48 << 20);
	const char *check[] = {"e2fsck", "-fn", dest, NULL};
	assert_int_equal(run(check, NULL, NULL), 0);
	/* same size: a plain copy */
	assert_int_equal(kit_rootfs_clone(img, small, 16, &st->err), 0);
	assert_int_equal(size_of(small), 16 << 20);
	/* never over an existing disk */
	assert_true(kit_rootfs_clone(img, dest, 64, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_EXISTS);
	assert_int_equal(size_of(dest), 48 << 20);
}

/* ---- the debian image's pure parts: the mirror from apt's sources, debootstrap's progress -- */

static void
expect_mirror(const char *sources, const char *want)
{
	char buf[256];

	if (!want) {
		assert_int_equal(kit_debian_mirror_parse(sources, buf, sizeof(buf)), -ENOENT);
		return;
	}
	assert_int_equal(kit_debian_mirror_parse(sources, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static void
test_debian_mirror(void **ts)
{
	char buf[8];

	(void)ts;
	/* one-line format: comments, deb-src and other suites skipped; options, a trailing '/' */
	expect_mirror("# deb http://old/debian bookworm main\n"
		      "deb-src http://src/debian bookworm main\n"
		      "deb http://a/debian bullseye main\n"
		      "deb [arch=amd64 signed-by=/k.gpg] http://ftp.fr.debian.org/debian/ bookworm "
		      "main\n",
		      "http://ftp.fr.debian.org/debian");
	/* deb822 as Debian 12 ships it: the security stanza comes second */
	expect_mirror("Types: deb\n"
		      "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
		      "URIs: http://deb.debian.org/debian\n"
		      "Suites: bookworm bookworm-updates\n"
		      "Components: main\n"
		      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
		      "\n"
		      "Types: deb\n"
		      "URIs: http://deb.debian.org/debian-security\n"
		      "Suites: bookworm-security\n",
		      "http://deb.debian.org/debian");
	/* continuation lines; the first http(s) URI of several */
	expect_mirror("Types: deb-src deb\nURIs: file:/srv/m\n https://c/debian/\nSuites: sid\n "
		      "bookworm\n",
		      "https://c/debian");
	/* nothing usable: deb-src only, disabled, another suite, a local mirror */
	expect_mirror("Types: deb-src\nURIs: http://a/debian\nSuites: bookworm\n", NULL);
	expect_mirror("Types: deb\nURIs: http://a/debian\nSuites: bookworm\nEnabled: no\n\n"
		      "Types: deb\nURIs: http://b/debian-security\nSuites: bookworm-security\n",
		      NULL);
	expect_mirror("deb file:/srv/mirror bookworm main\ndeb http://a/debian stable main\n",
		      NULL);
	expect_mirror("", NULL);
	assert_int_equal(
		kit_debian_mirror_parse("deb http://a/debian bookworm main\n", buf, sizeof(buf)),
		-ENAMETOOLONG);
}

/* Feeds debootstrap-like lines; checks the percent only grows and ends at 100. */
static void
test_debian_progress(void **ts)
{
	struct kit_debian_progress p = {0};
	struct strbuf seen = {0};
	unsigned percent = 0, last = 0;
	char line[128], msg[128];
	const char *head[] = {"I: Retrieving InRelease ",
			      "I: Checking Release signature",
			      "I: Retrieving Packages ",
			      "I: Validating Packages ",
			      "I: Resolving dependencies of required packages...",
			      "W: a warning is no progress"};
	const char *phases[] = {"Unpacking required packages", "Configuring required packages",
				"Unpacking the base system", "Configuring the base system"};

	(void)ts;
	for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		if (kit_debian_progress_line(&p, head[i], &percent, msg, sizeof(msg)))
			strbuf_printf(&seen, "%u %s\n", percent, msg);
	for (int i = 0; i < 130; i++) {
		snprintf(line, sizeof(line), "I: %s pkg%d 1.0-%d",
			 i % 2 ? "Validating" : "Retrieving", i / 2, i);
		if (kit_debian_progress_line(&p, line, &percent, msg, sizeof(msg))) {
			assert_true(percent >= last);
			last = percent;
			strbuf_printf(&seen, "%u %s\n", percent, msg);
		}
	}
	for (int i = 0; i < 4 * 21; i++) {
		const char *verb =
			strncmp(phases[i / 21], "Unpacking", 9) ? "Configuring" : "Unpacking";
		if (i % 21 == 0)
			snprintf(line, sizeof(line), "I: %s...", phases[i / 21]);
		else
			snprintf(line, sizeof(line), "I: %s lib%d:amd64...", verb, i);
		if (kit_debian_progress_line(&p, line, &percent, msg, sizeof(msg))) {
			assert_true(percent >= last);
			last = percent;
			strbuf_printf(&seen, "%u %s\n", percent, msg);
		}
	}
	assert_true(kit_debian_progress_line(&p, "I: Base system installed successfully.", &percent,
					     msg, sizeof(msg)));
	assert_int_equal(percent, 100);
	assert_contains(seen.data, "1 fetching the release file\n");
	assert_contains(seen.data, "5 resolving dependencies\n");
	assert_contains(seen.data, "downloading packages (60)\n");
	assert_contains(seen.data, "configuring the base system (20)\n");
	assert_true(strstr(seen.data, "warning") == NULL);
	assert_true(strstr(seen.data, "(70)") == NULL); /* 65 packages retrieved, not 130 lines */
	strbuf_free(&seen);
}

/* Text of the file at path under dir ("" when missing); the caller frees. */
static char *
text_at(const char *dir, const char *path)
{
	char full[PATH_MAX];
	char *text = NULL;

	snprintf(full, sizeof(full), "%s/%s", dir, path);
	return kit_tree_read(full, 1 << 20, &text) == 0 ? text : strdup("");
}

/* A tree like debootstrap's, with links planted where files are written: they are replaced,
 * never written through. */
static void
test_debian_configure(void **ts)
{
	struct state *st = *ts;
	char host_file[PATH_MAX], link[PATH_MAX], *text;
	int root = open_dir(st->dir), host = open_dir(st->host);
	struct stat sb;
	ssize_t n;

	snprintf(host_file, sizeof(host_file), "%s/hostname", st->host);
	assert_int_equal(kit_tree_write(host, "hostname", 0644, "host\n", 5), 0);
	assert_int_equal(kit_tree_mkdir(root, "etc/ssh", 0755), 0);
	assert_int_equal(kit_tree_mkdir(root, "etc/systemd/system", 0755), 0);
	assert_int_equal(kit_tree_mkdir(root, "var/cache/apt/archives", 0755), 0);
	assert_int_equal(kit_tree_write(root, "etc/ssh/ssh_host_ed25519_key", 0600, "k", 1), 0);
	assert_int_equal(kit_tree_write(root, "etc/ssh/ssh_host_rsa_key.pub", 0644, "k", 1), 0);
	assert_int_equal(kit_tree_write(root, "etc/ssh/sshd_config", 0644, "x\n", 2), 0);
	assert_int_equal(kit_tree_write(root, "etc/shadow", 0640, "root:*:1:0:::::\n", 16), 0);
	assert_int_equal(kit_tree_write(root, "var/cache/apt/archives/a_1_amd64.deb", 0644, "d", 1),
			 0);
	assert_int_equal(kit_tree_symlink(root, "etc/hostname", host_file), 0);
	assert_int_equal(kit_tree_symlink(root, "etc/machine-id", host_file), 0);
	assert_int_equal(kit_tree_symlink(root, "etc/systemd/system/fstrim.timer", host_file), 0);
	assert_int_equal(kit_debian_configure(root, &st->err), 0);

	text = text_at(st->host, "hostname");
	assert_string_equal(text, "host\n"); /* the host's file is untouched */
	free(text);
	text = text_at(st->dir, "etc/hostname");
	assert_string_equal(text, "sistemo\n");
	free(text);
	assert_int_equal(fstatat(root, "etc/machine-id", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISREG(sb.st_mode) && sb.st_size == 0);
	assert_int_equal(faccessat(root, "etc/ssh/ssh_host_ed25519_key", F_OK, 0), -1);
	assert_int_equal(faccessat(root, "etc/ssh/ssh_host_rsa_key.pub", F_OK, 0), -1);
	assert_int_equal(faccessat(root, "etc/ssh/sshd_config", F_OK, 0), 0);
	assert_int_equal(faccessat(root, "var/cache/apt/archives/a_1_amd64.deb", F_OK, 0), -1);
	text = text_at(st->dir, "etc/ssh/sshd_config.d/sistemo.conf");
	assert_contains(text, "PermitRootLogin prohibit-password\n");
	free(text);
	text = text_at(st->dir, "etc/fstab");
	assert_contains(text, "/dev/vda / ext4 defaults 0 1\n");
	free(text);
	n = readlinkat(root, "etc/systemd/system/fstrim.timer", link, sizeof(link) - 1);
	assert_int_equal(n, 9);
	link[n] = '\0';
	assert_string_equal(link, "/dev/null");
	n = readlinkat(root, "etc/systemd/system/apt-daily.timer", link, sizeof(link) - 1);
	assert_int_equal(n, 9);

	/* root with a password: refused */
	assert_int_equal(unlinkat(root, "etc/shadow", 0), 0);
	assert_int_equal(kit_tree_write(root, "etc/shadow", 0640, "root:$6$x$y:1:0:::::\n", 21), 0);
	assert_true(kit_debian_configure(root, &st->err) < 0);
	assert_contains(st->err.msg, "root has a password");
	err_clear(&st->err);
	close(root);

	/* a link on the way (etc -> a host directory): refused, nothing written there */
	assert_int_equal(kit_tree_mkdir(host, "t2", 0755), 0);
	assert_int_equal(symlinkat(st->host, host, "t2/etc"), 0);
	snprintf(link, sizeof(link), "%s/t2", st->host);
	root = open_dir(link);
	assert_true(kit_debian_configure(root, &st->err) < 0);
	assert_int_equal(faccessat(host, "fstab", F_OK, 0), -1);
	assert_int_equal(faccessat(host, "resolv.conf", F_OK, 0), -1);
	text = text_at(st->host, "hostname");
	assert_string_equal(text, "host\n");
	free(text);
	close(root);
	close(host);
}

/* ---- images and kernels ---------------------------------------------------------------- */

static void
test_image_tiny(void **ts)
{
	struct state *st = *ts;
	char out[PATH_MAX];

	assert_true(kit_image_build("huge", "/nonexistent/x", NULL, NULL, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	assert_contains(st->err.msg, "built-in: tiny");
	err_clear(&st->err);
	if (!kit_tree_elf_static(KIT_BUSYBOX) || !have("dropbear") || !have("mkfs.ext4"))
		skip();
	path_in(st, out, sizeof(out), "tiny.ext4");
	assert_int_equal(kit_image_build("tiny", out, NULL, NULL, &st->err), 0);
	assert_int_equal(size_of(out), 64 << 20);
	assert_int_equal(type_of(st, out, "/sbin/init"), KIT_ROOTFS_LINK);
	assert_int_equal(type_of(st, out, "/usr/sbin/dropbear"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, out, "/lib64/ld-linux-x86-64.so.2"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, out, "/etc/acpi/PWRF/00000080"), KIT_ROOTFS_FILE);
	assert_int_equal(type_of(st, out, "/etc/dropbear/dropbear_ed25519_host_key"),
			 KIT_ROOTFS_NONE);
	const char *ls[] = {"debugfs", "-R", "ls -l /root", out, NULL};
	struct strbuf text = {0};
	assert_int_equal(run(ls, NULL, &text), 0);
	assert_contains(text.data, "40700 (2)      0      0");
	strbuf_free(&text);
	/* the staging tree is gone: nothing but the image next to it */
	DIR *d = opendir(st->dir);
	struct dirent *de;
	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' || strncmp(de->d_name, ".image-", 7) == 0)
			assert_string_equal(de->d_name, "tiny.ext4");
	closedir(d);
}

static void
test_kernel_find(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX];
	struct kit_kernel k;
	unsigned char hdr[0x300] = {0};
	const char *stamp = "format=1\nversion=6.1.0-9-cloud-amd64\npackage=p.deb\ninit=0123\n"
			    "kernel=vmlinuz-6.1.0-9-cloud-amd64\n"
			    "initrd=initrd-6.1.0-9-cloud-amd64.img\n";
	int root;

	assert_true(kit_kernel_find(st->dir, &k, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_contains(st->err.msg, "sistemo install");
	err_clear(&st->err);

	root = open_dir(st->dir);
	assert_int_equal(kit_tree_mkdir(root, "kernel", 0755), 0);
	assert_int_equal(kit_tree_write(root, "kernel/kit.stamp", 0644, stamp, strlen(stamp)), 0);
	assert_true(kit_kernel_find(st->dir, &k, &st->err) < 0); /* files missing */
	err_clear(&st->err);
	assert_int_equal(kit_tree_write(root, "kernel/vmlinuz-6.1.0-9-cloud-amd64", 0644, "k", 1),
			 0);
	assert_int_equal(
		kit_tree_write(root, "kernel/initrd-6.1.0-9-cloud-amd64.img", 0644, "i", 1), 0);
	assert_int_equal(kit_kernel_find(st->dir, &k, &st->err), 0);
	assert_false(k.built);
	assert_string_equal(k.version, "6.1.0-9-cloud-amd64");
	path_in(st, path, sizeof(path), "kernel/initrd-6.1.0-9-cloud-amd64.img");
	assert_string_equal(k.initrd, path);

	/* the built kernel wins; its version comes from the bzImage header */
	memcpy(hdr + 0x202, "HdrS", 4);
	hdr[0x20e] = 0x00;
	hdr[0x20f] = 0x01; /* kernel_version at 0x200 + 0x100 */
	assert_int_equal(kit_tree_write(root, "kernel/bzImage-sistemo", 0644, hdr, sizeof(hdr)), 0);
	int fd = openat(root, "kernel/bzImage-sistemo", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "6.1.192 (root@b) #1 SMP", 23, 0x300), 23);
	close(fd);
	assert_int_equal(kit_kernel_find(st->dir, &k, &st->err), 0);
	assert_true(k.built);
	assert_string_equal(k.initrd, "");
	assert_string_equal(k.vmlinux, "");
	assert_string_equal(k.version, "6.1.192");
	close(root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cpio_newc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules_closure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modules_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tree_relative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tree_never_follows_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tree_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scripts_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scripts_ip_parsing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inject_never_writes_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inject_systemd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inject_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debian_mirror, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debian_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debian_configure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_tiny, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_find, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
