#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROOT "/sys/fs/cgroup"

static int
write_file(const char *dir, const char *name, const char *value, struct err *err)
{
	char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "cgroup: open '%s': %s", path,
			       strerror(errno));
	ssize_t n = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	if (n != (ssize_t)strlen(value))
		return err_set(err, ERR_INTERNAL, NULL, e, "cgroup: write '%s' to '%s': %s", value,
			       path, strerror(e));
	return 0;
}

/* v2 when the unified hierarchy mounted at ROOT (or ROOT/unified) offers cpu and memory. */
static bool
v2_root(char *out, size_t size)
{
	static const char *const roots[] = {ROOT, ROOT "/unified"};
	char path[PATH_MAX], line[512] = "";

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/cgroup.controllers", roots[i]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		bool ok = fgets(line, sizeof(line), f) && strstr(line, "cpu") &&
			  strstr(line, "memory");
		fclose(f);
		if (ok) {
			snprintf(out, size, "%s", roots[i]);
			return true;
		}
	}
	return false;
}

static int
make_group(const char *parent, const char *id, char *out, size_t size, struct err *err)
{
	char base[PATH_MAX + 16];

	snprintf(base, sizeof(base), "%s/sistemo", parent);
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return err_set(err, ERR_UNAVAILABLE, NULL, errno, "cgroup: create '%s': %s", base,
			       strerror(errno));
	if (snprintf(out, size, "%s/%s", base, id) >= (int)size)
		return err_set(err, ERR_INTERNAL, NULL, ENAMETOOLONG, "cgroup path too long");
	if (mkdir(out, 0755) < 0 && errno != EEXIST)
		return err_set(err, ERR_UNAVAILABLE, NULL, errno, "cgroup: create '%s': %s", out,
			       strerror(errno));
	return 0;
}

static int
create_v2(const char *root, const char *id, unsigned vcpus, uint64_t limit,
	  struct cgroup_machine *ret, struct err *err)
{
	char value[64], base[PATH_MAX + 16];
	int r;

	/* the parent must hand cpu and memory down to its children */
	snprintf(base, sizeof(base), "%s/sistemo", root);
	mkdir(base, 0755);
	if ((r = write_file(root, "cgroup.subtree_control", "+cpu +memory", err)) < 0 ||
	    (r = write_file(base, "cgroup.subtree_control", "+cpu +memory", err)) < 0 ||
	    (r = make_group(root, id, ret->cpu, sizeof(ret->cpu), err)) < 0)
		return r;
	snprintf(value, sizeof(value), "%u 100000", vcpus * 100000);
	if ((r = write_file(ret->cpu, "cpu.max", value, err)) < 0)
		return r;
	snprintf(value, sizeof(value), "%llu", (unsigned long long)limit);
	return write_file(ret->cpu, "memory.max", value, err);
}

static int
create_v1(const char *id, unsigned vcpus, uint64_t limit, struct cgroup_machine *ret,
	  struct err *err)
{
	char value[64];
	int r;

	if ((r = make_group(ROOT "/cpu", id, ret->cpu, sizeof(ret->cpu), err)) < 0 ||
	    (r = make_group(ROOT "/memory", id, ret->memory, sizeof(ret->memory), err)) < 0)
		return r;
	snprintf(value, sizeof(value), "%u", vcpus * 100000);
	if ((r = write_file(ret->cpu, "cpu.cfs_period_us", "100000", err)) < 0 ||
	    (r = write_file(ret->cpu, "cpu.cfs_quota_us", value, err)) < 0)
		return r;
	snprintf(value, sizeof(value), "%llu", (unsigned long long)limit);
	return write_file(ret->memory, "memory.limit_in_bytes", value, err);
}

int
cgroup_machine_create(const char *id, unsigned vcpus, uint64_t memory_mb,
		      struct cgroup_machine *ret, struct err *err)
{
	uint64_t limit = (memory_mb + CGROUP_VMM_OVERHEAD_MB) << 20;
	char root[PATH_MAX];
	struct stat st;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (v2_root(root, sizeof(root)))
		r = create_v2(root, id, vcpus, limit, ret, err);
	else if (stat(ROOT "/cpu/cpu.cfs_quota_us", &st) == 0 &&
		 stat(ROOT "/memory/memory.limit_in_bytes", &st) == 0)
		r = create_v1(id, vcpus, limit, ret, err);
	else
		return err_set(
			err, ERR_UNAVAILABLE, NULL, ENOENT,
			"no cgroup hierarchy with the cpu and memory controllers is mounted");
	if (r < 0)
		cgroup_machine_delete(id);
	return r;
}

int
cgroup_machine_attach(const struct cgroup_machine *cg, pid_t pid, struct err *err)
{
	char value[32];

	if (!cg->memory[0])
		return 0;
	snprintf(value, sizeof(value), "%d", (int)pid);
	return write_file(cg->memory, "cgroup.procs", value, err);
}

void
cgroup_machine_delete(const char *id)
{
	static const char *const parents[] = {ROOT "/sistemo", ROOT "/unified/sistemo",
					      ROOT "/cpu/sistemo", ROOT "/memory/sistemo"};
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", parents[i], id);
		rmdir(path); /* fails harmlessly when missing or still used */
	}
}
