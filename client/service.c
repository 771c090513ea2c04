#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

#define UNIT_NAME "sistemo.service"
#define UNIT_DIR_DEFAULT "/etc/systemd/system"
/* What sd_booted() checks: systemd is PID 1 and manages services. */
#define SYSTEMD_RUN_DIR "/run/systemd/system"
#define NO_SYSTEMD "systemd is not running on this host (no " SYSTEMD_RUN_DIR ")"
#define DETACH_HINT "start the daemon with 'sistemo up --detach'"

extern char **environ;

static const char unit_template[] =
	"# Written by 'sistemo service install'; 'sistemo service uninstall' removes it.\n"
	"[Unit]\n"
	"Description=sistemo microVM daemon\n"
	"After=network-online.target\n"
	"Wants=network-online.target\n"
	"\n"
	"[Service]\n"
	"Type=simple\n"
	"ExecStart=%s up --data-dir=%s\n"
	"Restart=on-failure\n"
	"RestartSec=5\n"
	"LimitNOFILE=65535\n"
	"# Only the daemon: the machines' VMM processes survive a daemon restart.\n"
	"KillMode=process\n"
	"Delegate=yes\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

static bool
unit_dir_overridden(void)
{
	const char *dir = getenv("SISTEMO_SYSTEMD_DIR");

	return dir && *dir;
}

static const char *
unit_dir(void)
{
	return unit_dir_overridden() ? getenv("SISTEMO_SYSTEMD_DIR") : UNIT_DIR_DEFAULT;
}

static int
unit_path(char *buf, size_t size, struct err *err)
{
	if (snprintf(buf, size, "%s/" UNIT_NAME, unit_dir()) >= (int)size)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG,
			       "unit directory '%s' is too long", unit_dir());
	return 0;
}

static bool
systemd_running(void)
{
	struct stat st;

	return lstat(SYSTEMD_RUN_DIR, &st) == 0 && S_ISDIR(st.st_mode);
}

static int
root_check(const char *verb, bool needed, struct err *err)
{
	if (!needed || geteuid() == 0)
		return 0;
	return err_set(err, ERR_PERMISSION, NULL, EPERM, "service %s must run as root", verb);
}

static enum err_code
errno_code(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
		return ERR_PERMISSION;
	case ENOENT:
	case ENOTDIR:
		return ERR_NOT_FOUND;
	case ENOSPC:
	case EDQUOT:
		return ERR_EXHAUSTED;
	default:
		return ERR_INTERNAL;
	}
}

/* Runs argv (argv[0] looked up in $PATH, no shell) with our stdio and waits for it: its exit
 * status, 128 + the signal that killed it, or -errno when it did not start (-ENOENT: missing). */
static int
run(char *const argv[])
{
	pid_t pid;
	int status, r = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);

	if (r != 0)
		return -r;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

/* `systemctl VERB [sistemo]`, which must succeed. `written` is the unit path for the message
 * when systemctl is missing after the unit was written. */
static int
systemctl(const char *verb, bool unit, const char *written, struct err *err)
{
	char *argv[] = {"systemctl", (char *)verb, unit ? "sistemo" : NULL, NULL};
	int r = run(argv);

	if (r == -ENOENT)
		return err_set(
			err, ERR_PRECONDITION, NULL, ENOENT,
			"the unit is written to '%s', but systemctl is not installed on this "
			"host: " DETACH_HINT,
			written);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "run 'systemctl %s': %s", verb,
			       strerror(-r));
	if (r > 0)
		return err_set(err, ERR_INTERNAL, NULL, EIO,
			       "'systemctl %s%s' exited with status %d", verb,
			       unit ? " sistemo" : "", r);
	return 0;
}

/* Appends s as one systemd double-quoted word: \ and " escaped, % and $ doubled so that systemd
 * expands neither specifiers nor variables. -ENAMETOOLONG when it does not fit. */
static int
unit_quote(const char *s, char *buf, size_t size)
{
	size_t n = 0;

	if (size < 3)
		return -ENAMETOOLONG;
	buf[n++] = '"';
	for (; *s; s++) {
		size_t extra = (*s == '%' || *s == '$' || *s == '\\' || *s == '"');
		if (n + 1 + extra + 2 > size)
			return -ENAMETOOLONG;
		if (*s == '\\' || *s == '"')
			buf[n++] = '\\';
		else if (extra)
			buf[n++] = *s;
		buf[n++] = *s;
	}
	buf[n++] = '"';
	buf[n] = '\0';
	return 0;
}

/* An absolute path without control characters, which would break the unit's line. */
static int
unit_path_check(const char *what, const char *path, struct err *err)
{
	if (!path || path[0] != '/')
		return err_set(err, ERR_INVALID, NULL, EINVAL, "%s '%s' must be an absolute path",
			       what, path ? path : "");
	for (const char *p = path; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return err_set(err, ERR_INVALID, NULL, EINVAL,
				       "%s must not contain control characters", what);
	return 0;
}

int
service_unit_render(const char *binary, const char *data_dir, char *buf, size_t size,
		    struct err *err)
{
	char bin_q[2 * PATH_MAX + 3], dir_q[2 * PATH_MAX + 3];

	if (unit_path_check("binary", binary, err) < 0 ||
	    unit_path_check("data dir", data_dir, err) < 0)
		return -EINVAL;
	if (unit_quote(binary, bin_q, sizeof(bin_q)) < 0 ||
	    unit_quote(data_dir, dir_q, sizeof(dir_q)) < 0)
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "path is too long");
	if (snprintf(buf, size, unit_template, bin_q, dir_q) >= (int)size)
		return err_set(err, ERR_INTERNAL, NULL, ENOBUFS, "unit text is too long");
	return 0;
}

/* mkdir -p dir, mode 0755. */
static int
dir_create(const char *dir)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		if (c == '\0')
			return 0;
		*s = c;
	}
}

static int
fd_write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes text to path through a temporary file in the same directory and rename(), so systemd
 * never reads half a unit. */
static int
unit_write(const char *path, const char *text, struct err *err)
{
	char tmp[PATH_MAX];
	int fd, r = dir_create(unit_dir());

	if (r < 0)
		return err_set(err, errno_code(-r), NULL, -r, "create '%s': %s", unit_dir(),
			       strerror(-r));
	if (snprintf(tmp, sizeof(tmp), "%s/." UNIT_NAME ".XXXXXX", unit_dir()) >= (int)sizeof(tmp))
		return err_set(err, ERR_INVALID, NULL, ENAMETOOLONG, "'%s' is too long", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return err_set(err, errno_code(errno), NULL, errno, "write '%s': %s", path,
			       strerror(errno));
	r = fd_write_all(fd, text, strlen(text));
	if (r == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return err_set(err, errno_code(-r), NULL, -r, "write '%s': %s", path, strerror(-r));
	}
	return 0;
}

/* daemon-reload, enable, then restart when active (to pick up a new binary) or start. */
static int
service_start(const char *path, struct err *err)
{
	char *is_active[] = {"systemctl", "is-active", "--quiet", "sistemo", NULL};

	if (!systemd_running())
		return err_set(err, ERR_PRECONDITION, NULL, ENOTSUP,
			       "the unit is written to '%s', but " NO_SYSTEMD ": " DETACH_HINT,
			       path);
	if (systemctl("daemon-reload", false, path, err) < 0 ||
	    systemctl("enable", true, path, err) < 0)
		return -EIO;
	return systemctl(run(is_active) == 0 ? "restart" : "start", true, path, err);
}

int
service_install(const char *binary, const char *data_dir, bool start, struct err *err)
{
	char path[PATH_MAX], text[4 * PATH_MAX + 1024];

	if (root_check("install", start || !unit_dir_overridden(), err) < 0 ||
	    service_unit_render(binary, data_dir, text, sizeof(text), err) < 0 ||
	    unit_path(path, sizeof(path), err) < 0 || unit_write(path, text, err) < 0)
		return -EIO;
	if (!start)
		return 0;
	return service_start(path, err);
}

int
service_uninstall(struct err *err)
{
	char path[PATH_MAX];
	char *stop[] = {"systemctl", "stop", "sistemo", NULL};
	char *disable[] = {"systemctl", "disable", "sistemo", NULL};
	bool systemd = systemd_running();

	if (root_check("uninstall", !unit_dir_overridden(), err) < 0 ||
	    unit_path(path, sizeof(path), err) < 0)
		return -EIO;
	if (access(path, F_OK) < 0)
		return err_set(err, errno_code(errno), NULL, errno,
			       "no unit at '%s': the service is not installed", path);
	/* Failures are not fatal: a unit that does not load must still be removable. */
	if (systemd && run(stop) == -ENOENT)
		systemd = false;
	if (systemd)
		run(disable);
	if (unlink(path) < 0)
		return err_set(err, errno_code(errno), NULL, errno, "remove '%s': %s", path,
			       strerror(errno));
	return systemd ? systemctl("daemon-reload", false, path, err) : 0;
}

int
service_status(struct err *err)
{
	char *argv[] = {"systemctl", "status", "sistemo", "--no-pager", NULL};
	int r = systemd_running() ? run(argv) : -ENOTSUP;

	if (r == -ENOTSUP)
		return err_set(err, ERR_PRECONDITION, NULL, ENOTSUP,
			       NO_SYSTEMD ", so there is no service: " DETACH_HINT);
	if (r == -ENOENT)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "systemctl is not installed on this host, so there is no "
			       "service: " DETACH_HINT);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "run 'systemctl status': %s",
			       strerror(-r));
	return r;
}

int
service_logs(bool follow, const char *data_dir, struct err *err)
{
	char *argv[] = {"journalctl", "-u", "sistemo", "--no-pager", follow ? "-f" : NULL, NULL};
	const char *dir = data_dir ? data_dir : "<data dir>";
	int r = systemd_running() ? run(argv) : -ENOTSUP;

	if (r == -ENOTSUP)
		return err_set(err, ERR_PRECONDITION, NULL, ENOTSUP,
			       NO_SYSTEMD ", so there is no service log: a daemon started with "
					  "'sistemo up --detach' logs to '%s/sistemo.log'",
			       dir);
	if (r == -ENOENT)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT,
			       "journalctl is not installed on this host: a daemon started with "
			       "'sistemo up --detach' logs to '%s/sistemo.log'",
			       dir);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "run 'journalctl': %s", strerror(-r));
	return r;
}
