#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"

static const char *const subdirs[] = {"run", "bin",    "kernel",  "ssh",
				      "vms", "images", "volumes", "tmp"};

static int
absolutize(const char *in, char *out, size_t size, struct err *err)
{
	char cwd[PATH_MAX];

	if (in[0] == '/')
		return snprintf(out, size, "%s", in) < (int)size
			       ? 0
			       : err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG,
					 "data dir '%s' is too long", in);
	if (!getcwd(cwd, sizeof(cwd)))
		return err_set(err, ERR_INTERNAL, NULL, errno, "getcwd: %s", strerror(errno));
	if (snprintf(out, size, "%s/%s", cwd, in) >= (int)size)
		return err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG,
			       "data dir '%s' is too long", in);
	return 0;
}

static int
default_data_dir(char *out, size_t size, struct err *err)
{
	const char *env = getenv("SISTEMO_DATA_DIR");
	const char *home = getenv("HOME");

	if (env && *env)
		return absolutize(env, out, size, err);
	if (geteuid() == 0 || !home || !*home)
		home = "/root";
	return absolutize(home, out, size, err)
		       ?: (strlen(out) + 9 < size ? (strcat(out, "/.sistemo"), 0)
						  : err_set(err, ERR_INVALID, "data_dir",
							    ENAMETOOLONG, "home is too long"));
}

int
paths_init(struct paths *p, const char *data_dir, struct err *err)
{
	struct sockaddr_un sun;
	int r;

	memset(p, 0, sizeof(*p));
	r = data_dir && *data_dir ? absolutize(data_dir, p->data_dir, sizeof(p->data_dir), err)
				  : default_data_dir(p->data_dir, sizeof(p->data_dir), err);
	if (r < 0)
		return r;
	/* strip trailing slashes so names stay canonical */
	for (size_t n = strlen(p->data_dir); n > 1 && p->data_dir[n - 1] == '/'; n--)
		p->data_dir[n - 1] = '\0';
	paths_join(p, "sistemo.db", p->db, sizeof(p->db));
	paths_join(p, "config.yml", p->config, sizeof(p->config));
	paths_join(p, "run", p->run_dir, sizeof(p->run_dir));
	paths_join(p, "run/sistemo.sock", p->socket, sizeof(p->socket));
	paths_join(p, "run/daemon.lock", p->lock, sizeof(p->lock));
	if (strlen(p->socket) >= sizeof(sun.sun_path))
		return err_set(err, ERR_INVALID, "data_dir", ENAMETOOLONG,
			       "data dir '%s' is too long: its socket path must stay under %zu "
			       "bytes",
			       p->data_dir, sizeof(sun.sun_path) - strlen("/run/sistemo.sock"));
	snprintf(p->url, sizeof(p->url), "ipc://%s", p->socket);
	return 0;
}

int
paths_join(const struct paths *p, const char *name, char *buf, size_t size)
{
	size_t d = strlen(p->data_dir), n = strlen(name);

	if (d + 1 + n + 1 > size)
		return -ENAMETOOLONG;
	memcpy(buf, p->data_dir, d);
	buf[d] = '/';
	memcpy(buf + d + 1, name, n + 1);
	return 0;
}

static int
ensure_dir(const char *path, mode_t mode, struct err *err)
{
	struct stat st;

	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", path,
			       strerror(errno));
	if (lstat(path, &st) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "stat '%s': %s", path,
			       strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_set(err, ERR_PRECONDITION, NULL, ENOTDIR,
			       "'%s' exists and is not a directory", path);
	/* The root daemon executes and reads what is in here: nobody else may own it. */
	if (st.st_uid != geteuid())
		return err_set(err, ERR_PERMISSION, NULL, EPERM,
			       "'%s' is owned by uid %u, not by uid %u: refusing to use it", path,
			       (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & S_IWOTH || st.st_mode & S_IWGRP)
		chmod(path, st.st_mode & ~(mode_t)(S_IWOTH | S_IWGRP));
	return 0;
}

int
paths_create_tree(const struct paths *p, struct err *err)
{
	char sub[PATH_MAX];
	int r;

	if ((r = ensure_dir(p->data_dir, 0711, err)) < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
		paths_join(p, subdirs[i], sub, sizeof(sub));
		r = ensure_dir(sub, streq(subdirs[i], "ssh") ? 0700 : 0755, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int
paths_machine_dir(const struct paths *p, const char *id, char *buf, size_t size)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "vms/%.40s", id);
	return paths_join(p, rel, buf, size);
}
