/* ssh.c against a real SSH server: dropbear on 127.0.0.1:2222 inside private network and mount
 * namespaces, authorising a key made by ssh_key_ensure through a tmpfs over /root/.ssh. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "it.h"
#include "ssh.h"
#include "strbuf.h"

#define PORT 2222
#define PORT_CLOSED 2223
#define PORT_SILENT 2224
#define RUN_MS 20000

extern char **environ;

static struct {
	char tmp[64];
	char keydir[128], badkeydir[128];
	pid_t dropbear;
} fx = {.dropbear = -1};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct ssh_target
target(const char *keydir, unsigned port)
{
	return (struct ssh_target){.host = "127.0.0.1",
				   .port = port,
				   .user = "root",
				   .key_dir = keydir,
				   .connect_timeout_ms = 5000};
}

/* --- fixture ------------------------------------------------------------------------------- */

static int
rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* Runs argv with stdout+stderr to log; returns its exit status or -1. */
static int
run_wait(char *const argv[], const char *log)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* dropbear reads root's ~/.ssh/authorized_keys: give it a private one. We are in our own mount
 * namespace (it_isolate), so the host's /root is never written; when /root/.ssh does not
 * exist, the tmpfs goes over /root itself rather than creating a directory on the host. */
static int
private_root_ssh(const char *pubkey)
{
	struct stat st;
	const char *where = stat("/root/.ssh", &st) == 0 ? "/root/.ssh" : "/root";

	if (mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
		return -1;
	if (mkdir("/root/.ssh", 0700) < 0 && errno != EEXIST)
		return -1;
	int fd = open("/root/.ssh/authorized_keys", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int ok = dprintf(fd, "%s\n", pubkey) > 0;
	close(fd);
	return ok ? 0 : -1;
}

/* Waits until dropbear wrote its pid file, which it does after listening (2022.83), or died. */
static int
wait_pidfile(pid_t pid, int timeout_ms)
{
	char path[PATH_MAX], buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK),
	    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int64_t deadline = mono_ms() + timeout_ms;
	int ok = -1;

	snprintf(path, sizeof(path), "%s/pid", fx.tmp);
	if (in < 0 || pfd < 0 || inotify_add_watch(in, fx.tmp, IN_CLOSE_WRITE) < 0)
		goto out;
	while (access(path, F_OK) < 0 && mono_ms() < deadline) {
		struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
		if (poll(p, 2, (int)(deadline - mono_ms())) < 0 || p[1].revents)
			goto out;
		while (read(in, buf, sizeof(buf)) > 0)
			;
	}
	ok = access(path, F_OK);
out:
	if (in >= 0)
		close(in);
	if (pfd >= 0)
		close(pfd);
	return ok;
}

static int
start_dropbear(void)
{
	char hostkey[128], pidfile[128], log[128], listen[32];
	posix_spawn_file_actions_t fa;

	snprintf(hostkey, sizeof(hostkey), "%s/hostkey", fx.tmp);
	snprintf(pidfile, sizeof(pidfile), "%s/pid", fx.tmp);
	snprintf(log, sizeof(log), "%s/dropbear.log", fx.tmp);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", PORT);
	char *keygen[] = {"dropbearkey", "-t", "ed25519", "-f", hostkey, NULL};
	if (run_wait(keygen, log) != 0)
		return -1;
	char *argv[] = {"/usr/sbin/dropbear",
			"-F",
			"-E",
			"-s",
			"-p",
			listen,
			"-r",
			hostkey,
			"-P",
			pidfile,
			NULL};
	/* its log goes to a file: no process of it keeps the test's stdout open */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int r = posix_spawn(&fx.dropbear, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		fx.dropbear = -1;
		return -1;
	}
	return wait_pidfile(fx.dropbear, 10000);
}

static void
stop_dropbear(void)
{
	if (fx.dropbear <= 0)
		return;
	kill(fx.dropbear, SIGKILL);
	waitpid(fx.dropbear, NULL, 0);
	fx.dropbear = -1;
}

static int
group_setup(void **ts)
{
	struct err err = {0};
	char pub[1024];

	(void)ts;
	snprintf(fx.tmp, sizeof(fx.tmp), "/tmp/sistemo-it-ssh-XXXXXX");
	if (!mkdtemp(fx.tmp))
		return -1;
	snprintf(fx.keydir, sizeof(fx.keydir), "%s/key", fx.tmp);
	snprintf(fx.badkeydir, sizeof(fx.badkeydir), "%s/otherkey", fx.tmp);
	if (ssh_key_ensure(fx.keydir, &err) < 0 || ssh_key_ensure(fx.badkeydir, &err) < 0 ||
	    ssh_key_public(fx.keydir, pub, sizeof(pub), &err) < 0) {
		fprintf(stderr, "ssh keys: %s\n", err.msg);
		return -1;
	}
	if (private_root_ssh(pub) < 0) {
		fprintf(stderr, "private /root/.ssh: %s\n", strerror(errno));
		return -1;
	}
	if (start_dropbear() < 0) {
		fprintf(stderr, "dropbear did not start; see %s/dropbear.log\n", fx.tmp);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **ts)
{
	(void)ts;
	stop_dropbear();
	if (getenv("SISTEMO_KEEP_TMP"))
		fprintf(stderr, "kept %s\n", fx.tmp);
	else if (fx.tmp[0])
		nftw(fx.tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* --- helpers ------------------------------------------------------------------------------- */

/* Reads until out contains needle; every wait bounded. */
static bool
read_until(struct ssh_exec *x, struct strbuf *out, const char *needle, int timeout_ms)
{
	struct err err = {0};
	int64_t deadline = mono_ms() + timeout_ms;
	bool exited = false;
	int code;

	while (!(out->data && strstr(out->data, needle))) {
		int64_t left = deadline - mono_ms();
		if (left <= 0 || exited)
			return false;
		assert_int_equal(ssh_exec_read(x, out, NULL, (int)left, &exited, &code, &err), 0);
	}
	return true;
}

/* Reads to the end; returns the exit code. */
static int
read_to_exit(struct ssh_exec *x, struct strbuf *out, struct strbuf *errout, int timeout_ms)
{
	struct err err = {0};
	int64_t deadline = mono_ms() + timeout_ms;
	bool exited = false;
	int code = -1;

	while (!exited) {
		int64_t left = deadline - mono_ms();
		assert_true(left > 0);
		assert_int_equal(ssh_exec_read(x, out, errout, (int)left, &exited, &code, &err), 0);
	}
	return code;
}

/* --- tests --------------------------------------------------------------------------------- */

static void
test_streams_and_status(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	int code = -1;

	(void)ts;
	assert_int_equal(
		ssh_run(&t, "echo out; echo err >&2; exit 3", RUN_MS, &out, &errout, &code, &err),
		0);
	assert_string_equal(out.data, "out\n");
	assert_string_equal(errout.data, "err\n");
	assert_int_equal(code, 3);
	strbuf_free(&out);
	strbuf_free(&errout);
	assert_int_equal(ssh_run(&t, "true", RUN_MS, &out, &errout, &code, &err), 0);
	assert_int_equal(code, 0);
	assert_int_equal(out.len + errout.len, 0);
	strbuf_free(&out);
	strbuf_free(&errout);
}

static void
test_merged_and_repeated(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0};
	struct err err = {0};
	struct ssh_exec *x = NULL;
	bool exited = false;
	int code = -1;

	(void)ts;
	/* errout NULL: stderr lands in out */
	assert_int_equal(
		ssh_run(&t, "echo a; sleep 0.1; echo b >&2", RUN_MS, &out, NULL, &code, &err), 0);
	assert_string_equal(out.data, "a\nb\n");
	strbuf_free(&out);
	/* after the end, reads repeat the status without waiting */
	assert_int_equal(ssh_exec_start(&t, "exit 5", NULL, &x, &err), 0);
	assert_int_equal(read_to_exit(x, &out, NULL, RUN_MS), 5);
	int64_t t0 = mono_ms();
	assert_int_equal(ssh_exec_read(x, &out, NULL, 1000, &exited, &code, &err), 0);
	assert_true(exited);
	assert_int_equal(code, 5);
	assert_true(mono_ms() - t0 < 50);
	ssh_exec_free(x);
	strbuf_free(&out);
}

/* The guest side dies mid-command (the command kills its dropbear session process). */
static void
test_connection_lost(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0};
	struct err err = {0};
	int code = -1;
	int64_t t0 = mono_ms();

	(void)ts;
	assert_true(ssh_run(&t, "kill -KILL $PPID; sleep 5", RUN_MS, &out, NULL, &code, &err) < 0);
	printf("# connection lost: %s (%lld ms)\n", err.msg, (long long)(mono_ms() - t0));
	assert_int_equal(err.code, ERR_UNAVAILABLE);
	assert_true(mono_ms() - t0 < 2000);
	strbuf_free(&out);
}

static void
test_killed_by_signal(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	int code = -1;

	(void)ts;
	assert_int_equal(ssh_run(&t, "kill -TERM $$", RUN_MS, &out, &errout, &code, &err), 0);
	assert_int_equal(code, 128 + SIGTERM);
	strbuf_free(&out);
	strbuf_free(&errout);
}

static void
test_large_output(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	int code = -1;
	int64_t t0 = mono_ms();

	(void)ts;
	assert_int_equal(ssh_run(&t, "head -c 2000000 /dev/zero | tr '\\0' x; echo done >&2",
				 RUN_MS, &out, &errout, &code, &err),
			 0);
	printf("# 2 MB of output in %lld ms\n", (long long)(mono_ms() - t0));
	assert_int_equal(code, 0);
	assert_int_equal(out.len, 2000000);
	assert_int_equal(strspn(out.data, "x"), 2000000);
	assert_string_equal(errout.data, "done\n");
	strbuf_free(&out);
	strbuf_free(&errout);
}

static void
test_stdin(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	struct ssh_exec *x = NULL;
	size_t big = 1 << 20;
	char *data = malloc(big);

	(void)ts;
	assert_non_null(data);
	memset(data, 'y', big);
	assert_int_equal(ssh_exec_start(&t, "wc -c", NULL, &x, &err), 0);
	assert_int_equal(ssh_exec_write(x, "hello world\n", 12, true, &err), 0);
	assert_int_equal(read_to_exit(x, &out, &errout, RUN_MS), 0);
	assert_string_equal(out.data, "12\n");
	assert_true(ssh_exec_write(x, "more", 4, false, &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	ssh_exec_free(x);
	strbuf_free(&out);
	/* 1 MiB: more than one SSH window's worth of packets */
	err = (struct err){0};
	assert_int_equal(ssh_exec_start(&t, "wc -c", NULL, &x, &err), 0);
	assert_int_equal(ssh_exec_write(x, data, big, false, &err), 0);
	assert_int_equal(ssh_exec_write(x, NULL, 0, true, &err), 0);
	assert_int_equal(read_to_exit(x, &out, &errout, RUN_MS), 0);
	assert_string_equal(out.data, "1048576\n");
	ssh_exec_free(x);
	strbuf_free(&out);
	strbuf_free(&errout);
	free(data);
}

static void
stty_size_is(struct ssh_exec *x, const char *want)
{
	struct strbuf out = {0};
	struct err err = {0};
	char needle[32];

	snprintf(needle, sizeof(needle), "%s\r\n", want);
	assert_int_equal(ssh_exec_write(x, "stty size\n", 10, false, &err), 0);
	if (!read_until(x, &out, needle, 5000))
		fail_msg("wanted '%s', terminal says: %s", want, out.data ? out.data : "");
	strbuf_free(&out);
}

static void
test_pty(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct ssh_pty pty = {.term = "xterm-256color", .cols = 80, .rows = 24};
	struct strbuf out = {0};
	struct err err = {0};
	struct ssh_exec *x = NULL;

	(void)ts;
	assert_int_equal(ssh_exec_start(&t, NULL, &pty, &x, &err), 0);
	stty_size_is(x, "24 80");
	assert_int_equal(ssh_exec_resize(x, 120, 40, &err), 0);
	stty_size_is(x, "40 120");
	/* a second resize too (libssh2 1.10 keeps state between window-change requests) */
	assert_int_equal(ssh_exec_resize(x, 100, 30, &err), 0);
	stty_size_is(x, "30 100");
	assert_int_equal(ssh_exec_resize(x, 90, 20, &err), 0);
	stty_size_is(x, "20 90");
	assert_int_equal(ssh_exec_write(x, "echo $TERM; exit 7\n", 19, false, &err), 0);
	assert_int_equal(read_to_exit(x, &out, NULL, 5000), 7);
	assert_non_null(strstr(out.data, "xterm-256color\r\n"));
	ssh_exec_free(x);
	strbuf_free(&out);
}

static void
test_signal_unimplemented(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct err err = {0};
	struct ssh_exec *x = NULL;
	int64_t t0;

	(void)ts;
	assert_int_equal(ssh_exec_start(&t, "sleep 5", NULL, &x, &err), 0);
	assert_true(ssh_exec_signal(x, "BOGUS", &err) < 0);
	assert_int_equal(err.code, ERR_INVALID);
	err = (struct err){0};
	assert_true(ssh_exec_signal(x, "TERM", &err) < 0);
	assert_int_equal(err.code, ERR_UNIMPLEMENTED);
	printf("# %s\n", err.msg);
	assert_true(ssh_exec_resize(x, 80, 24, &err) < 0);
	/* freeing a running command hangs up at once */
	t0 = mono_ms();
	ssh_exec_free(x);
	assert_true(mono_ms() - t0 < 300);
}

static void
test_timeout(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	struct strbuf out = {0}, errout = {0};
	struct err err = {0};
	int code = -1;
	int64_t t0 = mono_ms(), took;

	(void)ts;
	assert_true(ssh_run(&t, "sleep 10", 500, &out, &errout, &code, &err) < 0);
	took = mono_ms() - t0;
	printf("# 'sleep 10' with a 500 ms timeout: %s after %lld ms\n", err.msg, (long long)took);
	assert_int_equal(err.code, ERR_DEADLINE);
	assert_non_null(strstr(err.msg, "within 500 ms"));
	assert_true(took >= 500 && took < 1000);
	strbuf_free(&out);
	strbuf_free(&errout);
}

static void
test_refused(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT_CLOSED);
	struct strbuf out = {0};
	struct err err = {0};
	int code = -1;
	int64_t t0 = mono_ms(), took;

	(void)ts;
	assert_true(ssh_run(&t, "true", RUN_MS, &out, NULL, &code, &err) < 0);
	took = mono_ms() - t0;
	printf("# refused: %s (%lld ms)\n", err.msg, (long long)took);
	assert_int_equal(err.code, ERR_UNAVAILABLE);
	assert_string_equal(err.msg, "cannot reach 127.0.0.1:2223: Connection refused");
	assert_true(took < 200);
	/* no route at all in this namespace */
	t.host = "10.200.0.2";
	err = (struct err){0};
	assert_true(ssh_run(&t, "true", RUN_MS, &out, NULL, &code, &err) < 0);
	assert_int_equal(err.code, ERR_UNAVAILABLE);
	printf("# no route: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "cannot reach 10.200.0.2:2223: "));
	strbuf_free(&out);
}

/* A server that accepts TCP (the kernel does) but never says a word. */
static void
test_silent_server(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT_SILENT);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(PORT_SILENT)};
	struct strbuf out = {0};
	struct err err = {0};
	int code = -1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int64_t t0, took;

	(void)ts;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(s, 4), 0);
	t.connect_timeout_ms = 300;
	t0 = mono_ms();
	assert_true(ssh_run(&t, "true", RUN_MS, &out, NULL, &code, &err) < 0);
	took = mono_ms() - t0;
	printf("# silent server: %s (%lld ms)\n", err.msg, (long long)took);
	assert_int_equal(err.code, ERR_DEADLINE);
	assert_non_null(strstr(err.msg, "ssh handshake with 127.0.0.1:2224"));
	assert_true(took >= 300 && took < 800);
	close(s);
	strbuf_free(&out);
}

static void
test_wrong_key(void **ts)
{
	struct ssh_target t = target(fx.badkeydir, PORT);
	struct strbuf out = {0};
	struct err err = {0};
	int code = -1;

	(void)ts;
	assert_true(ssh_run(&t, "true", RUN_MS, &out, NULL, &code, &err) < 0);
	printf("# wrong key: %s\n", err.msg);
	assert_int_equal(err.code, ERR_PERMISSION);
	assert_non_null(strstr(err.msg, fx.badkeydir));
	strbuf_free(&out);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void
test_measure(void **ts)
{
	struct ssh_target t = target(fx.keydir, PORT);
	int64_t took[9];
	int code = -1;

	(void)ts;
	for (size_t i = 0; i < 9; i++) {
		struct strbuf out = {0};
		struct err err = {0};
		int64_t t0 = mono_ms();
		assert_int_equal(ssh_run(&t, "true", RUN_MS, &out, NULL, &code, &err), 0);
		took[i] = mono_ms() - t0;
		assert_int_equal(code, 0);
		strbuf_free(&out);
	}
	qsort(took, 9, sizeof(took[0]), cmp_i64);
	printf("# connect+handshake+auth+exec of 'true' (dropbear, loopback): min %lld ms, median "
	       "%lld ms, max %lld ms\n",
	       (long long)took[0], (long long)took[4], (long long)took[8]);
}

int
main(void)
{
	it_isolate();
	if (access("/usr/sbin/dropbear", X_OK) < 0 || system("command -v dropbearkey >/dev/null"))
		it_skip("dropbear is not installed (dropbear-bin)");
	if (system("command -v ssh-keygen >/dev/null"))
		it_skip("ssh-keygen is not installed (openssh-client)");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_streams_and_status),
		cmocka_unit_test(test_merged_and_repeated),
		cmocka_unit_test(test_killed_by_signal),
		cmocka_unit_test(test_connection_lost),
		cmocka_unit_test(test_large_output),
		cmocka_unit_test(test_stdin),
		cmocka_unit_test(test_pty),
		cmocka_unit_test(test_signal_unimplemented),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_silent_server),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_measure),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
