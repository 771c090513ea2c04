/* jail.h against the real kernel, inside it_isolate()'s private namespaces: a tree holding the
 * host's static busybox, and what a program started in it can see and do: PID 1 of its own PID
 * namespace, only its own processes in /proc, no network interface but lo, a /dev of six
 * nodes, none of the host's files, no mount, chroot or mknod; exit statuses and the deadline;
 * a link planted where /proc goes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "it.h"
#include "jail.h"

#define BUSYBOX "/bin/busybox"

static char dir[] = "/tmp/sistemo-jail.XXXXXX";
static char tree[sizeof(dir) + 8];

struct lines {
	char text[16384];
	size_t len;
};

static void
collect(void *ud, const char *line)
{
	struct lines *l = ud;
	int n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s\n", line);

	if (n > 0 && (size_t)n < sizeof(l->text) - l->len)
		l->len += (size_t)n;
}

static const char *const env[] = {"PATH=/bin", NULL};

/* Runs script with busybox sh in the tree; the lines it printed in out. */
static int
run(const char *script, bool allow_mounts, unsigned timeout_ms, struct lines *out, struct err *err)
{
	const char *argv[] = {"/bin/busybox", "sh", "-c", script, NULL};
	const struct jail j = {
		.what = "the test script",
		.argv = argv,
		.env = env,
		.root = tree,
		.no_network = true,
		.allow_mounts = allow_mounts,
		.timeout_ms = timeout_ms,
		.line = collect,
		.ud = out,
	};

	memset(out, 0, sizeof(*out));
	return jail_run(&j, err);
}

static void
test_sees_only_itself(void **state)
{
	static const char script[] =
		"echo pid=$$\n"
		"echo procs=$(ls /proc | grep -c '^[0-9]')\n"
		"echo devs=$(ls /dev | tr '\\n' ' ')\n"
		"echo links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\n"
		"echo root=$(ls / | tr '\\n' ' ')\n"
		"cd /../../..; echo up=$(ls | tr '\\n' ' ')\n"
		"[ -e /host-marker ] && echo host-visible\n"
		"grep CapBnd /proc/self/status\n"
		"mount -t tmpfs none /tmp 2>/dev/null; echo mount=$?\n"
		"chroot / /bin/busybox true 2>/dev/null; echo chroot=$?\n"
		"mknod /tmp/sda b 8 0 2>/dev/null; echo mknod=$?\n"
		"echo hello > /tmp/written\n";
	struct err err = {0};
	struct lines out;

	(void)state;
	assert_int_equal(run(script, false, 30000, &out, &err), 0);
	assert_non_null(strstr(out.text, "pid=1\n"));
	/* the shell, and the subshell, ls and grep of the command substitution at most */
	const char *procs = strstr(out.text, "procs=");
	assert_non_null(procs);
	assert_in_range(atoi(procs + 6), 1, 4);
	assert_non_null(strstr(out.text,
			       "devs=fd full null random stderr stdin stdout tty urandom zero\n"));
	assert_non_null(strstr(out.text, "links=lo\n"));
	assert_non_null(strstr(out.text, "root=bin dev proc tmp\n"));
	assert_non_null(strstr(out.text, "up=bin dev proc tmp\n"));
	assert_null(strstr(out.text, "host-visible"));
	assert_null(strstr(out.text, "mount=0\n"));
	assert_null(strstr(out.text, "chroot=0\n"));
	assert_null(strstr(out.text, "mknod=0\n"));
	/* CAP_SYS_ADMIN (21), CAP_MKNOD (27), CAP_SYS_CHROOT (18), CAP_NET_ADMIN (12) dropped */
	const char *cap = strstr(out.text, "CapBnd:");
	assert_non_null(cap);
	unsigned long long bnd = strtoull(cap + 7, NULL, 16);
	assert_int_equal(bnd & (1ull << 21 | 1ull << 27 | 1ull << 18 | 1ull << 12), 0);
	assert_int_not_equal(bnd & (1ull << 0), 0); /* CAP_CHOWN kept: dpkg needs it */
	/* what it wrote in the tree stays there; its mounts left with it */
	char path[sizeof(tree) + 32];
	snprintf(path, sizeof(path), "%s/tmp/written", tree);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_not_equal(it_cmd("grep -q ' %s/' /proc/self/mountinfo", tree), 0);
}

static void
test_allow_mounts(void **state)
{
	struct err err = {0};
	struct lines out;

	(void)state;
	assert_int_equal(run("mount -t tmpfs none /tmp && echo mounted && grep -c tmpfs "
			     "/proc/mounts",
			     true, 30000, &out, &err),
			 0);
	assert_non_null(strstr(out.text, "mounted\n"));
	assert_int_not_equal(it_cmd("grep -q ' %s/' /proc/self/mountinfo", tree), 0);
}

static void
test_exit_status_and_error_line(void **state)
{
	struct err err = {0};
	struct lines out;

	(void)state;
	assert_int_equal(
		run("echo E: something broke; echo last; exit 3", false, 30000, &out, &err), -EIO);
	assert_int_equal(err.code, ERR_INTERNAL);
	assert_non_null(strstr(err.msg, "the test script failed (exit status 3): last"));
	err_clear(&err);
}

static void
test_deadline_kills_everything(void **state)
{
	struct err err = {0};
	struct lines out;
	double t0 = it_now_ms();

	(void)state;
	/* a child in the background keeps the output open: killing PID 1 ends it too */
	assert_int_equal(run("sleep 300 & sleep 300", false, 500, &out, &err), -ETIMEDOUT);
	assert_int_equal(err.code, ERR_DEADLINE);
	assert_true(it_now_ms() - t0 < 5000);
	assert_int_not_equal(it_cmd("pgrep -f '^sleep 300' >/dev/null"), 0);
	err_clear(&err);
}

static void
test_planted_link_refused(void **state)
{
	char path[sizeof(tree) + 16];
	struct err err = {0};
	struct lines out;

	(void)state;
	snprintf(path, sizeof(path), "%s/proc", tree);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(symlink("/bin", path), 0);
	assert_int_equal(run("echo ran", false, 30000, &out, &err), -EPERM);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_null(strstr(out.text, "ran"));
	err_clear(&err);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0555), 0);
	/* the tree's /bin untouched: no proc mounted on it anywhere */
	assert_int_not_equal(it_cmd("grep -q ' %s/bin ' /proc/self/mountinfo", tree), 0);
}

static void
test_missing_program(void **state)
{
	static const char *const argv[] = {"/no/such/program", NULL};
	const struct jail j = {.what = "nothing",
			       .argv = argv,
			       .env = env,
			       .root = tree,
			       .no_network = true,
			       .timeout_ms = 30000};
	struct err err = {0};

	(void)state;
	assert_int_equal(jail_run(&j, &err), -ENOENT);
	assert_non_null(strstr(
		err.msg, "cannot run '/no/such/program' in the tree: No such file or directory"));
	err_clear(&err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sees_only_itself),
		cmocka_unit_test(test_allow_mounts),
		cmocka_unit_test(test_exit_status_and_error_line),
		cmocka_unit_test(test_deadline_kills_everything),
		cmocka_unit_test(test_planted_link_refused),
		cmocka_unit_test(test_missing_program),
	};
	char path[sizeof(tree) + 32];
	int r;

	it_isolate();
	if (access(BUSYBOX, X_OK) < 0)
		it_skip("needs a static " BUSYBOX " (busybox-static)");
	if (!mkdtemp(dir))
		return 1;
	snprintf(tree, sizeof(tree), "%s/tree", dir);
	snprintf(path, sizeof(path), "%s/host-marker", dir);
	if (mkdir(tree, 0755) < 0 || close(open(path, O_CREAT | O_WRONLY, 0644)) < 0 ||
	    it_cmd("mkdir %s/bin %s/proc %s/tmp && cp " BUSYBOX " %s/bin/busybox && "
		   "for a in sh ls grep tr tail cut echo mount chroot mknod sleep true; do "
		   "ln -s busybox %s/bin/$a; done",
		   tree, tree, tree, tree, tree) != 0)
		return 1;
	r = cmocka_run_group_tests(tests, NULL, NULL);
	it_cmd("rm -rf %s", dir);
	return r;
}
