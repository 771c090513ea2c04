#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"

extern char **environ;

int
host_find_binary(const char *name, const char *data_dir, char *out, size_t size)
{
	const char *path = getenv("PATH");

	if (data_dir) {
		snprintf(out, size, "%s/bin/%s", data_dir, name);
		if (access(out, X_OK) == 0)
			return 0;
	}
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		if (n > 0 && snprintf(out, size, "%.*s/%s", (int)n, p, name) < (int)size &&
		    access(out, X_OK) == 0)
			return 0;
		p += n + (p[n] == ':');
	}
	out[0] = '\0';
	return -ENOENT;
}

/* Usable means more than a device node: the API version is the stable one and a VM can be
 * created (nested virtualisation may expose /dev/kvm yet refuse KVM_CREATE_VM). */
bool
host_kvm_usable(char *why, size_t size)
{
	/* kvm_pvm (pagetable-based VMs) answers every ioctl but boots only PVM-enabled guest
	 * kernels: Debian's kernels hang or QEMU aborts setting MSRs. */
	if (access("/sys/module/kvm_pvm", F_OK) == 0) {
		snprintf(why, size,
			 "/dev/kvm is kvm_pvm, which runs only PVM-enabled guest kernels");
		return false;
	}
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, size, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(why, size, "/dev/kvm: API version %d, expected %d", api, KVM_API_VERSION);
		close(fd);
		return false;
	}
	int vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		snprintf(why, size, "/dev/kvm: cannot create a VM: %s", strerror(errno));
		close(fd);
		return false;
	}
	close(vm);
	close(fd);
	snprintf(why, size, "kvm");
	return true;
}

/* First line of `binary --version`, bounded in size and time (the binary is trusted: root's). */
static void
binary_version(const char *binary, char *out, size_t size)
{
	int pipefd[2];
	pid_t pid;
	posix_spawn_file_actions_t fa;
	char *argv[] = {(char *)binary, "--version", NULL};
	char buf[512] = "";

	out[0] = '\0';
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	int r = posix_spawn(&pid, binary, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (r == 0) {
		ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		waitpid(pid, NULL, 0);
	}
	close(pipefd[0]);
	buf[strcspn(buf, "\n")] = '\0';
	snprintf(out, size, "%s", buf);
}

static void
probe_qemu(const char *data_dir, bool kvm, const char *kvm_why, struct vmm_probe *p)
{
	p->name = "qemu";
	if (host_find_binary("qemu-system-x86_64", data_dir, p->binary, sizeof(p->binary)) < 0) {
		snprintf(p->reason, sizeof(p->reason),
			 "qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
		return;
	}
	p->available = true;
	binary_version(p->binary, p->version, sizeof(p->version));
	if (kvm)
		snprintf(p->reason, sizeof(p->reason), "kvm");
	else
		snprintf(p->reason, sizeof(p->reason), "tcg software emulation (%s)", kvm_why);
}

static void
probe_firecracker(const char *data_dir, bool kvm, const char *kvm_why, struct vmm_probe *p)
{
	p->name = "firecracker";
	if (host_find_binary("firecracker", data_dir, p->binary, sizeof(p->binary)) < 0) {
		snprintf(p->reason, sizeof(p->reason), "no firecracker binary in %s/bin or on PATH",
			 data_dir);
		return;
	}
	binary_version(p->binary, p->version, sizeof(p->version));
	if (!kvm) {
		snprintf(p->reason, sizeof(p->reason), "needs KVM (%s)", kvm_why);
		return;
	}
	p->available = true;
	snprintf(p->reason, sizeof(p->reason), "kvm");
}

void
host_probe_vmms(const char *data_dir, const char *vmm, struct vmm_probe ret[2])
{
	char why[128];
	bool kvm = host_kvm_usable(why, sizeof(why));

	memset(ret, 0, 2 * sizeof(*ret));
	probe_qemu(data_dir, kvm, why, &ret[0]);
	probe_firecracker(data_dir, kvm, why, &ret[1]);
	/* auto: firecracker where it can run, qemu otherwise */
	bool firecracker = streq(vmm, "firecracker") || (streq(vmm, "auto") && ret[1].available);
	ret[firecracker ? 1 : 0].is_default = true;
}

unsigned
host_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

static uint64_t
meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	uint64_t v = 0;
	size_t klen = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			v = strtoull(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

uint64_t
host_memory_mb(void)
{
	return meminfo_kb("MemTotal") / 1024;
}

uint64_t
host_memory_available_mb(void)
{
	return meminfo_kb("MemAvailable") / 1024;
}

uint64_t
host_disk_free_mb(const char *path)
{
	struct statvfs sv;

	if (statvfs(path, &sv) < 0)
		return 0;
	return (uint64_t)sv.f_bavail * sv.f_frsize / (1024 * 1024);
}

void
host_kernel_release(char *out, size_t size)
{
	struct utsname u;

	snprintf(out, size, "%s", uname(&u) == 0 ? u.release : "unknown");
}

unsigned
host_tsc_khz(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	double mhz = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "cpu MHz", 7) == 0 &&
		    sscanf(strchr(line, ':') + 1, "%lf", &mhz) == 1)
			break;
	fclose(f);
	return mhz > 0 ? (unsigned)(mhz * 1000) : 0;
}
