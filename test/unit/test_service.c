/* `sistemo service`: the unit written into $SISTEMO_SYSTEMD_DIR, its removal, and the errors
 * when systemd's tools are missing ($PATH points at an empty directory, so no test ever drives
 * the host's real systemctl). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service.h"

struct fixture {
	char unit_dir[64];
	char empty_dir[64];
	char unit[PATH_MAX];
	char *old_path;
};

static const char expected_unit[] =
	"# Written by 'sistemo service install'; 'sistemo service uninstall' removes it.\n"
	"[Unit]\n"
	"Description=sistemo microVM daemon\n"
	"After=network-online.target\n"
	"Wants=network-online.target\n"
	"\n"
	"[Service]\n"
	"Type=simple\n"
	"ExecStart=\"/usr/local/bin/sistemo\" up --data-dir=\"/var/lib/sistemo\"\n"
	"Restart=on-failure\n"
	"RestartSec=5\n"
	"LimitNOFILE=65535\n"
	"# Only the daemon: the machines' VMM processes survive a daemon restart.\n"
	"KillMode=process\n"
	"Delegate=yes\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

/* Removes every entry of dir and returns how many there were. */
static int
dir_empty(const char *dir)
{
	char p[PATH_MAX];
	struct dirent *e;
	int n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
		n++;
	}
	closedir(d);
	return n;
}

static int
dir_count(const char *dir)
{
	struct dirent *e;
	int n = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *path = getenv("PATH");

	if (!f)
		return -1;
	strcpy(f->unit_dir, "/tmp/test_service_units.XXXXXX");
	strcpy(f->empty_dir, "/tmp/test_service_path.XXXXXX");
	if (!mkdtemp(f->unit_dir) || !mkdtemp(f->empty_dir))
		return -1;
	snprintf(f->unit, sizeof(f->unit), "%s/sistemo.service", f->unit_dir);
	f->old_path = path ? strdup(path) : NULL;
	setenv("SISTEMO_SYSTEMD_DIR", f->unit_dir, 1);
	setenv("PATH", f->empty_dir, 1);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	dir_empty(f->unit_dir);
	rmdir(f->unit_dir);
	rmdir(f->empty_dir);
	unsetenv("SISTEMO_SYSTEMD_DIR");
	if (f->old_path)
		setenv("PATH", f->old_path, 1);
	free(f->old_path);
	free(f);
	return 0;
}

/* Reads the whole (small) file into buf. */
static void
file_read(const char *path, char *buf, size_t size)
{
	FILE *fp = fopen(path, "re");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

static void
test_install_writes_unit(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	struct stat st;
	char text[4096];

	assert_int_equal(service_install("/usr/local/bin/sistemo", "/var/lib/sistemo", false, &err),
			 0);
	assert_int_equal(err.code, ERR_OK);
	file_read(f->unit, text, sizeof(text));
	assert_string_equal(text, expected_unit);
	assert_non_null(strstr(text, "\nExecStart=\"/usr/local/bin/sistemo\" up "
				     "--data-dir=\"/var/lib/sistemo\"\n"));
	assert_non_null(strstr(text, "\nKillMode=process\n"));
	assert_int_equal(stat(f->unit, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(dir_count(f->unit_dir), 1); /* no temporary file left */
}

static void
test_install_replaces_unit(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	char text[4096];

	assert_int_equal(service_install("/usr/bin/sistemo", "/srv/old", false, &err), 0);
	assert_int_equal(service_install("/usr/bin/sistemo", "/srv/new", false, &err), 0);
	file_read(f->unit, text, sizeof(text));
	assert_non_null(strstr(text, "--data-dir=\"/srv/new\"\n"));
	assert_null(strstr(text, "/srv/old"));
	assert_int_equal(dir_count(f->unit_dir), 1);
}

static void
test_install_quotes_paths(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	char text[4096];

	assert_int_equal(service_install("/opt/my tools/sistemo", "/srv/a%b$c\"d\\e", false, &err),
			 0);
	file_read(f->unit, text, sizeof(text));
	assert_non_null(strstr(text, "\nExecStart=\"/opt/my tools/sistemo\" up "
				     "--data-dir=\"/srv/a%%b$$c\\\"d\\\\e\"\n"));
}

static void
test_install_rejects_bad_paths(void **state)
{
	static const char *const bad[][2] = {
		{"sistemo", "/var/lib/sistemo"},
		{"/usr/bin/sistemo", "data"},
		{"/usr/bin/sistemo", ""},
		{"/usr/bin/sistemo", "/var/lib/x\nExecStartPre=/bin/evil"},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct err err = {0};
		assert_true(service_install(bad[i][0], bad[i][1], false, &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
	}
	assert_int_equal(access(f->unit, F_OK), -1);
}

static void
test_install_start_without_systemctl(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};

	assert_true(service_install("/usr/bin/sistemo", "/var/lib/sistemo", true, &err) < 0);
	if (geteuid() != 0) {
		/* Starting drives systemd: root is checked before anything is written. */
		assert_int_equal(err.code, ERR_PERMISSION);
		assert_string_equal(err.msg, "service install must run as root");
		assert_int_equal(access(f->unit, F_OK), -1);
		return;
	}
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_non_null(strstr(err.msg, f->unit));
	assert_non_null(strstr(err.msg, "sistemo up --detach"));
	assert_int_equal(access(f->unit, F_OK), 0);
}

static void
test_install_needs_root(void **state)
{
	struct err err = {0};

	(void)state;
	if (geteuid() == 0)
		skip(); /* as root this would write /etc/systemd/system */
	unsetenv("SISTEMO_SYSTEMD_DIR");
	assert_true(service_install("/usr/bin/sistemo", "/var/lib/sistemo", false, &err) < 0);
	assert_int_equal(err.code, ERR_PERMISSION);
	assert_string_equal(err.msg, "service install must run as root");
	err = (struct err){0};
	assert_true(service_uninstall(&err) < 0);
	assert_int_equal(err.code, ERR_PERMISSION);
}

static void
test_uninstall_removes_unit(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};

	assert_int_equal(service_install("/usr/bin/sistemo", "/var/lib/sistemo", false, &err), 0);
	assert_int_equal(access(f->unit, F_OK), 0);
	assert_int_equal(service_uninstall(&err), 0);
	assert_int_equal(err.code, ERR_OK);
	assert_int_equal(dir_count(f->unit_dir), 0);
}

static void
test_uninstall_missing_unit(void **state)
{
	struct fixture *f = *state;
	struct err err = {0};
	char want[PATH_MAX + 64];

	assert_true(service_uninstall(&err) < 0);
	assert_int_equal(err.code, ERR_NOT_FOUND);
	snprintf(want, sizeof(want), "no unit at '%s': the service is not installed", f->unit);
	assert_string_equal(err.msg, want);
}

static void
test_status_and_logs_without_tools(void **state)
{
	struct err err = {0};

	(void)state;
	assert_true(service_status(&err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_non_null(strstr(err.msg, "sistemo up --detach"));
	err = (struct err){0};
	assert_true(service_logs(true, "/srv/sistemo", &err) < 0);
	assert_int_equal(err.code, ERR_PRECONDITION);
	assert_non_null(strstr(err.msg, "'/srv/sistemo/sistemo.log'"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_writes_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_replaces_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_quotes_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_rejects_bad_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_install_start_without_systemctl, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_install_needs_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uninstall_removes_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uninstall_missing_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_logs_without_tools, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
