/* Volumes: names, the ext4 superblock reader, and the volume rules over a real store and real
 * files (mkfs.ext4, resize2fs): create, attach and detach guards, the disks and command line a
 * boot gets, resize, delete, --preserve-storage, the machine-delete trigger, recovery and the
 * migration that gives older machines their root-disk rows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "store.h"
#include "store_schema.h"
#include "store_volume.h"
#include "uuid.h"
#include "volume.h"

#define NET_10_200 ((10u << 24) | (200u << 16))

struct fixture {
	char dir[64];
	struct daemon d;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct err err = {0};
	char db[128];

	snprintf(f->dir, sizeof(f->dir), "/tmp/sistemo-vol.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(db, sizeof(db), "%s/sistemo.db", f->dir);
	assert_int_equal(paths_init(&f->d.paths, f->dir, &err), 0);
	assert_int_equal(paths_create_tree(&f->d.paths, &err), 0);
	config_defaults(&f->d.cfg);
	assert_int_equal(store_open(db, &f->d.store, &err), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	store_close(f->d.store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static bool
have_e2fsprogs(void)
{
	return system("command -v mkfs.ext4 >/dev/null 2>&1 && command -v resize2fs >/dev/null "
		      "2>&1") == 0;
}

#define NEED_E2FSPROGS()                                                                           \
	do {                                                                                       \
		if (!have_e2fsprogs()) {                                                           \
			print_message("e2fsprogs not installed: skipped\n");                       \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* ---- names --------------------------------------------------------------------------------- */

static void
names(void **state)
{
	static const char *const good[] = {"data", "a", "0db", "my_vol-1", "x-root"};
	static const char *const bad[] = {"",    "Data", "-x",  "_x",  "a b",
					  "a/b", "a.b",  "a:b", "a,b", "dätä"};
	char longest[65];
	struct err err = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(volume_name_check(good[i], &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err_clear(&err);
		assert_int_equal(volume_name_check(bad[i], &err), -EINVAL);
		assert_int_equal(err.code, ERR_INVALID);
		assert_non_null(strstr(err.msg, "invalid volume name"));
	}
	memset(longest, 'a', 63);
	longest[63] = '\0';
	assert_int_equal(volume_name_check(longest, NULL), 0);
	longest[63] = 'a';
	longest[64] = '\0';
	assert_int_equal(volume_name_check(longest, NULL), -EINVAL);
}

/* ---- the superblock ------------------------------------------------------------------------ */

static void
put32(unsigned char *sb, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		sb[off + (size_t)i] = (unsigned char)(v >> (8 * i));
}

/* The label field: 16 bytes, NUL-padded, not terminated when full. */
static void
put_label(unsigned char *sb, const char *label)
{
	for (size_t i = 0; i < 16 && label[i]; i++)
		sb[0x78 + i] = (unsigned char)label[i];
}

/* A fresh 1 GiB ext4 as mkfs.ext4 -m 0 makes it (dumpe2fs -h): 4 KiB blocks. */
static void
fresh_1g(unsigned char sb[1024])
{
	memset(sb, 0, 1024);
	put32(sb, 0x04, 262144);
	put32(sb, 0x0c, 249189);
	put32(sb, 0x18, 2);
	sb[0x38] = 0x53;
	sb[0x39] = 0xef;
	put32(sb, 0x60, 0x2c2);
	put_label(sb, "data");
	put32(sb, 0x248, 12949);
}

static void
superblock_parse(void **state)
{
	unsigned char sb[1024];
	struct volume_usage u;

	(void)state;
	fresh_1g(sb);
	assert_int_equal(volume_ext4_parse(sb, &u), 0);
	assert_int_equal(u.size_bytes, (uint64_t)(262144 - 12949) * 4096);
	assert_int_equal(u.used_bytes, (uint64_t)6 * 4096);
	assert_string_equal(u.label, "data");

	/* no overhead recorded: the metadata counts as used */
	put32(sb, 0x248, 0);
	assert_int_equal(volume_ext4_parse(sb, &u), 0);
	assert_int_equal(u.used_bytes, (uint64_t)(262144 - 249189) * 4096);

	/* 64-bit block counts */
	put32(sb, 0x150, 1);
	put32(sb, 0x158, 1);
	assert_int_equal(volume_ext4_parse(sb, &u), 0);
	assert_int_equal(u.size_bytes, ((1ull << 32) + 262144) * 4096);
	assert_int_equal(u.used_bytes, (uint64_t)(262144 - 249189) * 4096);
	/* ... ignored without the 64bit feature */
	put32(sb, 0x60, 0x2c2 & ~0x80u);
	assert_int_equal(volume_ext4_parse(sb, &u), 0);
	assert_int_equal(u.size_bytes, (uint64_t)262144 * 4096);

	/* a 16-byte label is not terminated on disk */
	put_label(sb, "0123456789abcdef");
	assert_int_equal(volume_ext4_parse(sb, &u), 0);
	assert_string_equal(u.label, "0123456789abcdef");
}

static void
superblock_refused(void **state)
{
	unsigned char sb[1024];
	struct volume_usage u;

	(void)state;
	fresh_1g(sb);
	sb[0x38] = 0;
	assert_int_equal(volume_ext4_parse(sb, &u), -EINVAL); /* no magic */
	fresh_1g(sb);
	put32(sb, 0x0c, 262145);
	assert_int_equal(volume_ext4_parse(sb, &u), -EINVAL); /* more free than there is */
	fresh_1g(sb);
	put32(sb, 0x248, 262144);
	assert_int_equal(volume_ext4_parse(sb, &u), -EINVAL); /* overhead beyond the used */
	fresh_1g(sb);
	put32(sb, 0x18, 40);
	assert_int_equal(volume_ext4_parse(sb, &u), -EINVAL); /* absurd block size */
}

/* The reader against mkfs.ext4 and dumpe2fs on a real file. */
static void
superblock_real(void **state)
{
	struct fixture *f = *state;
	char path[128], cmd[512], line[128] = "";
	struct volume_usage u;

	NEED_E2FSPROGS();
	snprintf(path, sizeof(path), "%s/x.ext4", f->dir);
	snprintf(cmd, sizeof(cmd), "truncate -s 256M %s && mkfs.ext4 -F -q -m 0 -L lbl %s", path,
		 path);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(volume_ext4_usage(path, &u), 0);
	assert_string_equal(u.label, "lbl");
	assert_true(u.size_bytes > 200ull << 20 && u.size_bytes <= 256ull << 20);
	assert_true(u.used_bytes < 4ull << 20);
	snprintf(cmd, sizeof(cmd), "dumpe2fs -h %s 2>/dev/null | sed -n 's/^Free blocks: *//p'",
		 path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	pclose(p);
	assert_true(strtoull(line, NULL, 10) > 0);
	assert_int_equal(volume_ext4_usage("/nonexistent", &u), -ENOENT);
	snprintf(cmd, sizeof(cmd), "%s/link", f->dir);
	assert_int_equal(symlink(path, cmd), 0);
	assert_int_equal(volume_ext4_usage(cmd, &u), -ELOOP); /* never through a link */
}

/* ---- the rules over a store ----------------------------------------------------------------- */

static void
machine(struct fixture *f, const char *name, const char *state, struct machine_info *ret)
{
	char id[37], ip[16];
	struct err err = {0};

	uuid_generate_text(id);
	struct machine_rec m = {.id = id,
				.name = name,
				.image = "tiny",
				.driver = "qemu",
				.vcpus = 1,
				.memory_mb = 256,
				.storage_mb = 512,
				.network = "default"};
	assert_int_equal(store_machine_create(f->d.store, &m, NET_10_200, 16, ip, &err), 0);
	assert_int_equal(store_machine_set_state(f->d.store, id, state, 0, 0, "", &err), 0);
	assert_int_equal(store_machine_get(f->d.store, id, ret, &err), 0);
}

static void
set_machine_state(struct fixture *f, const struct machine_info *m, const char *state)
{
	assert_int_equal(store_machine_set_state(f->d.store, m->id, state, 0, 0, "", NULL), 0);
}

/* The run directory's root disk a deploy would have made. */
static void
root_file(struct fixture *f, const struct machine_info *m)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/vms/%s", f->dir, m->id);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/vms/%s/rootfs.ext4", f->dir, m->id);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static void
create_volumes(void **state)
{
	struct fixture *f = *state;
	struct volume_info v;
	struct volume_usage u;
	struct err err = {0};
	char file[4096];

	NEED_E2FSPROGS();
	assert_int_equal(volume_create(&f->d, "data", 128, &v, &err), 0);
	assert_string_equal(v.state, "online");
	assert_string_equal(v.role, "data");
	assert_int_equal(v.size_mb, 128);
	assert_int_equal(volume_file(&f->d, &v, file, sizeof(file), &err), 0);
	assert_int_equal(volume_ext4_usage(file, &u), 0);
	assert_string_equal(u.label, "data");
	assert_true(volume_create(&f->d, "data", 128, &v, &err) < 0);
	assert_int_equal(err.code, ERR_EXISTS);
	err_clear(&err);
	assert_true(volume_create(&f->d, "tiny", 32, &v, &err) < 0); /* below VOLUME_MIN_MB */
	assert_int_equal(err.code, ERR_INVALID);
	err_clear(&err);
	assert_true(volume_create(&f->d, "Bad", 128, &v, &err) < 0);
	assert_int_equal(err.code, ERR_INVALID);
	err_clear(&err);
	assert_int_equal(volume_create(&f->d, "", 64, &v, &err), 0); /* named after its id */
	assert_int_equal(strlen(v.name), 8);
	assert_int_equal(strncmp(v.name, v.id, 8), 0);
}

static void
deploy_attach_boot(void **state)
{
	struct fixture *f = *state;
	struct machine_info m;
	struct volume_info v;
	struct volume_disks *disks = NULL;
	struct err err = {0};
	const char *attach[] = {"data"};
	struct volume_deploy vd = {NULL, attach, 1};

	NEED_E2FSPROGS();
	assert_int_equal(volume_create(&f->d, "data", 64, &v, &err), 0);
	assert_int_equal(volume_create(&f->d, "logs", 64, &v, &err), 0);
	assert_int_equal(volume_deploy_check(&f->d, "web", &vd, NULL, &err), 0);
	machine(f, "web", "creating", &m);
	root_file(f, &m);
	assert_int_equal(volume_deploy_claim(&f->d, &m, &vd, &err), 0);
	assert_int_equal(store_volume_get(f->d.store, "web-root", &v, &err), 0);
	assert_string_equal(v.role, "root");
	assert_string_equal(v.machine, "web");
	assert_int_equal(v.attach_order, 0);
	assert_int_equal(v.size_mb, 512);
	assert_int_equal(store_volume_get(f->d.store, "data", &v, &err), 0);
	assert_string_equal(v.state, "attached");
	assert_int_equal(v.attach_order, 1);

	/* a running machine: no attach, detach or resize (no hotplug) */
	set_machine_state(f, &m, "running");
	assert_true(volume_attach(&f->d, "logs", "web", &v, &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_non_null(strstr(err.msg, "stop it first"));
	err_clear(&err);
	assert_true(volume_detach(&f->d, "data", "web", &v, &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	err_clear(&err);
	assert_true(volume_resize(&f->d, "data", 128, &v, &err) < 0);
	assert_non_null(strstr(err.msg, "stop machine 'web' first: the guest cannot grow a disk "
					"online with this driver"));
	err_clear(&err);

	/* stopped: logs becomes /dev/vdc */
	set_machine_state(f, &m, "stopped");
	assert_int_equal(volume_attach(&f->d, "logs", "web", &v, &err), 0);
	assert_int_equal(v.attach_order, 2);
	assert_int_equal(volume_machine_disks(&f->d, &m, &disks, &err), 0);
	assert_non_null(strstr(disks->root, "/vms/"));
	assert_int_equal(disks->n_data, 2);
	assert_non_null(strstr(disks->data_paths[0], "/volumes/"));
	assert_string_equal(disks->cmdline, "sistemo.volumes=data:vdb,logs:vdc");
	free(disks);

	/* the root disk stays; a volume attached elsewhere or twice is refused */
	assert_true(volume_detach(&f->d, "web-root", "web", &v, &err) < 0);
	assert_non_null(strstr(err.msg, "root disk"));
	err_clear(&err);
	assert_true(volume_attach(&f->d, "logs", "web", &v, &err) < 0);
	assert_int_equal(err.code, ERR_EXISTS);
	err_clear(&err);
	assert_true(volume_deploy_check(&f->d, "other", &vd, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "attached to machine 'web'"));
	err_clear(&err);
	assert_true(volume_delete(&f->d, "data", &v, &err) < 0);
	assert_non_null(strstr(err.msg, "attached to machine 'web'"));
	err_clear(&err);
	assert_true(volume_attach(&f->d, "/dev/sda", "web", &v, &err) < 0);
	assert_non_null(strstr(err.msg, "not a sistemo volume"));
	err_clear(&err);

	/* detached: the order closes up */
	assert_int_equal(volume_detach(&f->d, "data", "web", &v, &err), 0);
	assert_string_equal(v.state, "online");
	assert_int_equal(volume_machine_disks(&f->d, &m, &disks, &err), 0);
	assert_string_equal(disks->cmdline, "sistemo.volumes=logs:vdb");
	free(disks);
}

static void
resize_grows(void **state)
{
	struct fixture *f = *state;
	struct volume_info v;
	struct volume_usage before, after;
	struct err err = {0};
	char file[4096];
	struct stat st;

	NEED_E2FSPROGS();
	assert_int_equal(volume_create(&f->d, "data", 64, &v, &err), 0);
	assert_int_equal(volume_file(&f->d, &v, file, sizeof(file), &err), 0);
	assert_int_equal(volume_ext4_usage(file, &before), 0);
	assert_true(volume_resize(&f->d, "data", 32, &v, &err) < 0);
	assert_non_null(strstr(err.msg, "shrinking is not supported"));
	err_clear(&err);
	assert_int_equal(volume_resize(&f->d, "data", 64, &v, &err), 0); /* nothing to do */
	assert_int_equal(volume_resize(&f->d, "data", 256, &v, &err), 0);
	assert_int_equal(v.size_mb, 256);
	assert_string_equal(v.state, "online");
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, 256 << 20);
	assert_int_equal(volume_ext4_usage(file, &after), 0);
	assert_true(after.size_bytes > 3 * before.size_bytes);
}

/* --preserve-storage moves the run directory's root disk under volumes/; the record's delete
 * releases every volume, and takes the rows of disks left in the run directory. */
static void
delete_preserve_and_trigger(void **state)
{
	struct fixture *f = *state;
	struct machine_info a, b;
	struct volume_info v;
	struct err err = {0};
	const char *attach[] = {"data"};
	struct volume_deploy with_data = {NULL, attach, 1}, plain = {0};
	char file[4096];

	NEED_E2FSPROGS();
	assert_int_equal(volume_create(&f->d, "data", 64, &v, &err), 0);
	machine(f, "a", "stopped", &a);
	root_file(f, &a);
	assert_int_equal(volume_deploy_claim(&f->d, &a, &with_data, &err), 0);
	machine(f, "bb", "stopped", &b);
	root_file(f, &b);
	assert_int_equal(volume_deploy_claim(&f->d, &b, &plain, &err), 0);

	assert_int_equal(volume_machine_release(&f->d, &a, true, &err), 0);
	assert_int_equal(volume_machine_release(&f->d, &a, true, &err), 0); /* idempotent */
	assert_int_equal(store_machine_delete(f->d.store, a.id, &err), 0);
	assert_int_equal(store_volume_get(f->d.store, "a-root", &v, &err), 0);
	assert_string_equal(v.state, "online");
	assert_string_equal(v.machine_id, "");
	assert_int_equal(volume_file(&f->d, &v, file, sizeof(file), &err), 0);
	assert_int_equal(access(file, F_OK), 0);
	assert_int_equal(strncmp(v.path, "volumes/", 8), 0);
	assert_int_equal(store_volume_get(f->d.store, "data", &v, &err), 0);
	assert_string_equal(v.state, "online");

	/* a machine named 'a' again must not silently take the kept disk's name */
	assert_true(volume_deploy_check(&f->d, "a", &plain, NULL, &err) < 0);
	assert_int_equal(err.code, ERR_EXISTS);
	err_clear(&err);

	assert_int_equal(volume_machine_release(&f->d, &b, false, &err), 0);
	assert_int_equal(store_machine_delete(f->d.store, b.id, &err), 0);
	assert_true(store_volume_get(f->d.store, "bb-root", &v, NULL) < 0);

	/* boot from the kept disk, then delete without preserve: the volume goes */
	struct volume_deploy boot = {"a-root", NULL, 0};
	uint64_t mb = 0;
	assert_int_equal(volume_deploy_check(&f->d, "c", &boot, &mb, &err), 0);
	assert_int_equal(mb, 512);
	machine(f, "c", "stopped", &b);
	assert_int_equal(volume_deploy_claim(&f->d, &b, &boot, &err), 0);
	assert_true(volume_delete(&f->d, "a-root", &v, &err) < 0);
	assert_non_null(strstr(err.msg, "root disk of machine 'c'"));
	err_clear(&err);
	assert_int_equal(volume_machine_release(&f->d, &b, false, &err), 0);
	assert_int_equal(store_machine_delete(f->d.store, b.id, &err), 0);
	assert_true(store_volume_get(f->d.store, "a-root", &v, NULL) < 0);
	assert_int_equal(access(file, F_OK), -1);
}

static void
busy_becomes_error(void **state)
{
	struct fixture *f = *state;
	struct volume_info v;
	struct err err = {0};

	NEED_E2FSPROGS();
	assert_int_equal(volume_create(&f->d, "data", 64, &v, &err), 0);
	assert_int_equal(store_volume_set_state(f->d.store, v.id, "busy", "", 0, &err), 0);
	assert_true(volume_delete(&f->d, "data", &v, &err) < 0);
	assert_non_null(strstr(err.msg, "busy"));
	err_clear(&err);
	assert_int_equal(volume_recover(&f->d, &err), 0);
	assert_int_equal(store_volume_get(f->d.store, "data", &v, &err), 0);
	assert_string_equal(v.state, "error");
	assert_int_equal(volume_resize(&f->d, "data", 64, &v, &err), 0); /* a resize repairs it */
	assert_string_equal(v.state, "online");
	assert_int_equal(volume_delete(&f->d, "data", &v, &err), 0);
}

/* A database at schema 1 with a machine: migration 2 gives it its root-disk row. */
static void
migration_adds_root_rows(void **state)
{
	struct fixture *f = *state;
	char path[128];
	sqlite3 *h;
	struct store *s;
	struct volume_info v;
	struct err err = {0};

	(void)state;
	snprintf(path, sizeof(path), "%s/old.db", f->dir);
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, store_schema_migration(1), NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h,
				      "INSERT INTO machine (id, name, state, image, vcpus, "
				      "memory_mb, storage_mb, created_ms, state_changed_ms) VALUES "
				      "('11111111-2222-4333-8444-555555555555', 'old', 'stopped', "
				      "'tiny', 1, 256, 1024, 1, 1); PRAGMA user_version = 1;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(store_open(path, &s, &err), 0);
	assert_int_equal(store_volume_get(s, "old-root", &v, &err), 0);
	assert_string_equal(v.path, "vms/11111111-2222-4333-8444-555555555555/rootfs.ext4");
	assert_string_equal(v.state, "attached");
	assert_string_equal(v.machine, "old");
	assert_int_equal(v.size_mb, 1024);
	assert_int_equal(strlen(v.id), 36);
	assert_int_equal(v.id[14], '4');
	store_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names),
		cmocka_unit_test(superblock_parse),
		cmocka_unit_test(superblock_refused),
		cmocka_unit_test_setup_teardown(superblock_real, setup, teardown),
		cmocka_unit_test_setup_teardown(create_volumes, setup, teardown),
		cmocka_unit_test_setup_teardown(deploy_attach_boot, setup, teardown),
		cmocka_unit_test_setup_teardown(resize_grows, setup, teardown),
		cmocka_unit_test_setup_teardown(delete_preserve_and_trigger, setup, teardown),
		cmocka_unit_test_setup_teardown(busy_becomes_error, setup, teardown),
		cmocka_unit_test_setup_teardown(migration_adds_root_rows, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
