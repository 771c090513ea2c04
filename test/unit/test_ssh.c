#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "ssh.h"
#include "strbuf.h"

struct state {
	char tmp[64];
	char dir[128]; /* the key directory, created by ssh_key_ensure */
	struct err err;
};

static int
rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int
setup(void **ts)
{
	struct state *st = calloc(1, sizeof(*st));

	if (!st)
		return -1;
	snprintf(st->tmp, sizeof(st->tmp), "/tmp/sistemo-test-ssh-XXXXXX");
	if (!mkdtemp(st->tmp))
		return -1;
	snprintf(st->dir, sizeof(st->dir), "%s/ssh", st->tmp);
	*ts = st;
	return 0;
}

static int
teardown(void **ts)
{
	struct state *st = *ts;

	nftw(st->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(st);
	return 0;
}

/* ssh_key_ensure insists on root ownership, and needs ssh-keygen. */
static void
need_keygen(void)
{
	if (geteuid() != 0)
		skip();
	if (access("/usr/bin/ssh-keygen", X_OK) < 0 && system("command -v ssh-keygen >/dev/null"))
		skip();
}

static mode_t
mode_of(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat s;

	snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "", name ? name : "");
	if (lstat(path, &s) < 0)
		return (mode_t)-1;
	return s.st_mode & 07777;
}

static void
key_file_path(const struct state *st, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", st->dir, name);
}

static void
test_quote(void **ts)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"abc", "'abc'"},       {"", "''"},
		{"it's", "'it'\\''s'"}, {"a b;$(rm -rf /)`x`\n", "'a b;$(rm -rf /)`x`\n'"},
		{"''", "''\\'''\\'''"},
	};
	(void)ts;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb = {0};
		assert_int_equal(ssh_shell_quote(&sb, cases[i].in), 0);
		assert_string_equal(sb.data, cases[i].out);
		strbuf_free(&sb);
	}
	struct strbuf sb = {0};
	assert_int_equal(strbuf_append(&sb, "echo ", 5), 0);
	assert_int_equal(ssh_shell_quote(&sb, "x y"), 0);
	assert_string_equal(sb.data, "echo 'x y'");
	strbuf_free(&sb);
}

static void
test_key_create(void **ts)
{
	struct state *st = *ts;
	char pub[512], again[512];

	need_keygen();
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(mode_of(st->dir, NULL), 0700);
	assert_int_equal(mode_of(st->dir, "sistemo_key"), 0600);
	assert_int_equal(mode_of(st->dir, "sistemo_key.pub"), 0644);
	assert_int_equal(mode_of(st->dir, ".sistemo_key.new"), (mode_t)-1);
	assert_int_equal(ssh_key_public(st->dir, pub, sizeof(pub), &st->err), 0);
	assert_true(strncmp(pub, "ssh-ed25519 AAAA", 16) == 0);
	assert_non_null(strstr(pub, " sistemo"));
	assert_null(strchr(pub, '\n'));
	/* idempotent: the same key */
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(ssh_key_public(st->dir, again, sizeof(again), &st->err), 0);
	assert_string_equal(pub, again);
}

static void
test_key_repair(void **ts)
{
	struct state *st = *ts;
	char pub[512], again[512], path[PATH_MAX];

	need_keygen();
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(ssh_key_public(st->dir, pub, sizeof(pub), &st->err), 0);
	/* a lost public half is rebuilt from the private key: same key */
	key_file_path(st, "sistemo_key.pub", path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(ssh_key_public(st->dir, again, sizeof(again), &st->err), 0);
	assert_string_equal(pub, again);
	assert_int_equal(mode_of(st->dir, "sistemo_key.pub"), 0644);
	/* loose modes are tightened */
	key_file_path(st, "sistemo_key", path, sizeof(path));
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(chmod(st->dir, 0755), 0);
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(mode_of(st->dir, "sistemo_key"), 0600);
	assert_int_equal(mode_of(st->dir, NULL), 0700);
	/* a lost private key means a new pair */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(ssh_key_public(st->dir, again, sizeof(again), &st->err), 0);
	assert_string_not_equal(pub, again);
}

static void
test_key_refuses_foreign_owner(void **ts)
{
	struct state *st = *ts;
	char path[PATH_MAX];

	need_keygen();
	assert_int_equal(mkdir(st->dir, 0700), 0);
	assert_int_equal(chown(st->dir, 65534, 65534), 0);
	assert_true(ssh_key_ensure(st->dir, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PERMISSION);
	assert_non_null(strstr(st->err.msg, "not root"));
	assert_non_null(strstr(st->err.msg, st->dir));
	key_file_path(st, "sistemo_key", path, sizeof(path));
	assert_int_equal(access(path, F_OK), -1);
	/* a key file owned by someone else is refused too */
	assert_int_equal(chown(st->dir, 0, 0), 0);
	st->err = (struct err){0};
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_true(ssh_key_ensure(st->dir, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PERMISSION);
}

static void
test_key_public_errors(void **ts)
{
	struct state *st = *ts;
	char small[8], path[PATH_MAX];
	int fd;

	assert_true(ssh_key_public(st->dir, small, sizeof(small), &st->err) < 0);
	assert_int_equal(st->err.code, ERR_NOT_FOUND);
	assert_int_equal(mkdir(st->dir, 0700), 0);
	key_file_path(st, "sistemo_key.pub", path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "ssh-ed25519 AAAAlong comment\n", 29), 29);
	close(fd);
	st->err = (struct err){0};
	assert_true(ssh_key_public(st->dir, small, sizeof(small), &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	char line[64];
	assert_int_equal(ssh_key_public(st->dir, line, sizeof(line), &st->err), 0);
	assert_string_equal(line, "ssh-ed25519 AAAAlong comment");
}

static void
test_start_arguments(void **ts)
{
	struct state *st = *ts;
	struct ssh_target t = {.host = "127.0.0.1", .key_dir = st->dir};
	struct ssh_pty bad = {.term = "xterm", .cols = 0, .rows = 24};
	struct ssh_exec *x = NULL;

	assert_true(ssh_exec_start(&t, NULL, NULL, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	st->err = (struct err){0};
	assert_true(ssh_exec_start(&t, NULL, &bad, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	st->err = (struct err){0};
	bad = (struct ssh_pty){.term = "x term", .cols = 80, .rows = 24};
	assert_true(ssh_exec_start(&t, NULL, &bad, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	/* no key yet: refused before any connection */
	st->err = (struct err){0};
	assert_true(ssh_exec_start(&t, "true", NULL, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_PRECONDITION);
	assert_non_null(strstr(st->err.msg, "sistemo_key"));
	assert_null(x);
}

static void
test_start_bad_host(void **ts)
{
	struct state *st = *ts;
	struct ssh_target t = {.host = "guest.example", .key_dir = st->dir};
	struct ssh_exec *x = NULL;
	char *big;

	need_keygen();
	assert_int_equal(ssh_key_ensure(st->dir, &st->err), 0);
	assert_true(ssh_exec_start(&t, "true", NULL, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	assert_non_null(strstr(st->err.msg, "'guest.example'"));
	/* commands are bounded */
	big = malloc(40000);
	assert_non_null(big);
	memset(big, 'a', 39999);
	big[39999] = '\0';
	t.host = "127.0.0.1";
	st->err = (struct err){0};
	assert_true(ssh_exec_start(&t, big, NULL, &x, &st->err) < 0);
	assert_int_equal(st->err.code, ERR_INVALID);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote),
		cmocka_unit_test_setup_teardown(test_key_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_refuses_foreign_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_public_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_bad_host, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
