/* The Firecracker driver (KVM only): one process per machine started with --config-file (it
 * configures and boots at once) and --api-sock, which serves the power-off request. Its
 * stdout is the guest's serial console; its own log goes to vmm.log through the config. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"
#include "vmm.h"
#include "vmm_impl.h"

#define FC_START_MS 5000 /* launch to the API socket */
#define FC_COMMAND_MS 5000
#define FC_RESPONSE_MAX 4096
#define FC_MAX_VCPUS 32
#define FC_CONFIG_MAX (64 * 1024)

/* A JSON string: quotes, backslashes and control characters escaped. */
static int
json_str(struct strbuf *sb, const char *s)
{
	int r = strbuf_append(sb, "\"", 1);

	for (; r == 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			r = strbuf_printf(sb, "\\%c", c);
		else if (c < 0x20)
			r = strbuf_printf(sb, "\\u%04x", c);
		else
			r = strbuf_append(sb, s, 1);
	}
	return r ?: strbuf_append(sb, "\"", 1);
}

/* "1.16.0", "v1.16.1" or "Firecracker v1.16.1" against major.minor. */
static bool
fc_version_at_least(const char *v, unsigned major, unsigned minor)
{
	unsigned ma, mi;

	if (!v)
		return false;
	while (*v && !isdigit((unsigned char)*v))
		v++;
	if (sscanf(v, "%u.%u", &ma, &mi) != 2)
		return false;
	return ma > major || (ma == major && mi >= minor);
}

static int
fc_boot_source(struct strbuf *sb, const struct vmm_config *cfg)
{
	int r = strbuf_printf(sb, "\"boot-source\":{\"kernel_image_path\":");

	r = r ?: json_str(sb, cfg->kernel);
	r = r ?: strbuf_printf(sb, ",\"boot_args\":");
	r = r ?: json_str(sb, cfg->cmdline ? cfg->cmdline : "");
	if (cfg->initrd && *cfg->initrd) {
		r = r ?: strbuf_printf(sb, ",\"initrd_path\":");
		r = r ?: json_str(sb, cfg->initrd);
	}
	return r ?: strbuf_printf(sb, "}");
}

/* Writeback: the guest's flushes reach the disk (Unsafe, the default, drops them). */
static int
fc_drive(struct strbuf *sb, const char *id, const char *path, bool root)
{
	int r = strbuf_printf(sb, "{\"drive_id\":\"%s\",\"path_on_host\":", id);

	r = r ?: json_str(sb, path);
	return r
		       ?: strbuf_printf(sb,
					",\"is_root_device\":%s,\"is_read_only\":false,"
					"\"cache_type\":\"Writeback\"}",
					root ? "true" : "false");
}

static int
fc_drives(struct strbuf *sb, const struct vmm_config *cfg)
{
	bool root = cfg->rootfs && *cfg->rootfs;
	char id[24];
	int r = strbuf_printf(sb, ",\"drives\":[");

	if (root)
		r = r ?: fc_drive(sb, "root", cfg->rootfs, true);
	for (size_t i = 0; i < cfg->n_disks; i++) {
		snprintf(id, sizeof(id), "d%zu", i + 1);
		r = r ?: strbuf_printf(sb, "%s", root || i > 0 ? "," : "");
		r = r ?: fc_drive(sb, id, cfg->disks[i], false);
	}
	return r ?: strbuf_printf(sb, "]");
}

/* The TAP must exist in Firecracker's namespace; mtu only from v1.16 (older ones reject
 * unknown fields). */
static int
fc_nic(struct strbuf *sb, const struct vmm_config *cfg, const char *fc_version)
{
	int r;

	if (!cfg->tap)
		return 0;
	r = strbuf_printf(sb, ",\"network-interfaces\":[{\"iface_id\":\"eth0\",\"host_dev_name\":");
	r = r ?: json_str(sb, cfg->tap);
	if (cfg->mac && *cfg->mac) {
		r = r ?: strbuf_printf(sb, ",\"guest_mac\":");
		r = r ?: json_str(sb, cfg->mac);
	}
	if (cfg->mtu && fc_version_at_least(fc_version, 1, 16))
		r = r ?: strbuf_printf(sb, ",\"mtu\":%u", cfg->mtu);
	return r ?: strbuf_printf(sb, "}]");
}

static int
fc_rest(struct strbuf *sb, const struct vmm_config *cfg)
{
	char log[PATH_MAX];
	int r = strbuf_printf(sb,
			      ",\"machine-config\":{\"vcpu_count\":%u,\"mem_size_mib\":%" PRIu64
			      ",\"smt\":false}",
			      cfg->vcpus, cfg->memory_mb);

	snprintf(log, sizeof(log), "%s/vmm.log", cfg->run_dir);
	r = r ?: strbuf_printf(sb, ",\"logger\":{\"log_path\":");
	r = r ?: json_str(sb, log);
	r = r
		    ?: strbuf_printf(sb, ",\"level\":\"Info\",\"show_level\":true,"
					 "\"show_log_origin\":false}");
	/* virtio-rng: the guest's entropy is ready at boot */
	return r ?: strbuf_printf(sb, ",\"entropy\":{}");
}

int
vmm_firecracker_config(const struct vmm_config *cfg, const char *fc_version, char *buf, size_t size)
{
	cleanup_strbuf struct strbuf sb = {0};
	int r;

	if (!cfg->kernel || !cfg->run_dir || cfg->vcpus < 1 || cfg->vcpus > FC_MAX_VCPUS ||
	    (cfg->vcpus > 1 && cfg->vcpus % 2) || cfg->memory_mb < 1 ||
	    cfg->n_disks > VMM_MAX_DISKS)
		return -EINVAL;
	r = strbuf_printf(&sb, "{");
	r = r ?: fc_boot_source(&sb, cfg);
	r = r ?: fc_drives(&sb, cfg);
	r = r ?: fc_nic(&sb, cfg, fc_version);
	r = r ?: fc_rest(&sb, cfg);
	r = r ?: strbuf_printf(&sb, "}\n");
	if (r < 0)
		return r;
	if (sb.len >= size || sb.len > INT_MAX)
		return -ENOSPC;
	memcpy(buf, sb.data, sb.len + 1);
	return (int)sb.len;
}

int
vmm_firecracker_argv(const struct vmm_config *cfg, const char *binary, struct vmm_argv *ret)
{
	struct vmm_argv a = {0};

	vmm_argv_add(&a, "%s", binary);
	vmm_argv_add(&a, "--api-sock");
	vmm_argv_add(&a, "%s/api.sock", cfg->run_dir);
	vmm_argv_add(&a, "--config-file");
	vmm_argv_add(&a, "%s/config.json", cfg->run_dir);
	if (a.error) {
		int r = a.error;
		vmm_argv_free(&a);
		return r;
	}
	*ret = a;
	return 0;
}

/* Waits for events on fd until deadline_ms: 0, or ERR_DEADLINE. */
static int
fc_io_wait(int fd, short events, int64_t deadline_ms, struct err *err)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left = deadline_ms - vmm_now_ms();
	int r;

	do
		r = poll(&p, 1, left > 0 ? (int)left : 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "firecracker api: poll: %s",
			       strerror(errno));
	if (r == 0)
		return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT, "firecracker api: no answer");
	return 0;
}

static int
fc_send_all(int fd, const char *buf, size_t len, int64_t deadline_ms, struct err *err)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		int r = 0;
		if (n < 0 && errno == EAGAIN)
			r = fc_io_wait(fd, POLLOUT, deadline_ms, err);
		else if (n < 0 && errno != EINTR)
			r = err_set(err, ERR_UNAVAILABLE, NULL, errno, "firecracker api: send: %s",
				    strerror(errno));
		if (r < 0)
			return r;
		off += n > 0 ? (size_t)n : 0;
	}
	return 0;
}

/* True once buf holds the headers and the Content-Length bytes of body after them. */
static bool
http_complete(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *cl;
	size_t body = 0;

	if (!end)
		return false;
	for (cl = buf; (cl = memchr(cl, '\n', (size_t)(end - cl))) && cl < end; cl++)
		if (strncasecmp(cl + 1, "content-length:", 15) == 0)
			body = strtoul(cl + 16, NULL, 10);
	return (size_t)(end + 4 - buf) + body <= len;
}

/* Reads one response (the server keeps the connection open: Content-Length ends it). */
static int
fc_read_response(int fd, char *buf, size_t size, int64_t deadline_ms, struct err *err)
{
	size_t len = 0;

	while (!http_complete(buf, len)) {
		ssize_t n;
		if (len + 1 >= size)
			return err_set(err, ERR_INTERNAL, NULL, EMSGSIZE,
				       "firecracker api: response longer than %zu bytes", size);
		int r = fc_io_wait(fd, POLLIN, deadline_ms, err);
		if (r < 0)
			return r;
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return err_set(err, ERR_UNAVAILABLE, NULL, n < 0 ? errno : ECONNRESET,
				       "firecracker api: %s",
				       n < 0 ? strerror(errno) : "connection closed");
		len += (size_t)n;
		buf[len] = '\0';
	}
	return 0;
}

int
vmm_firecracker_action(int fd, const char *action, unsigned timeout_ms, struct err *err)
{
	char body[128], req[512], resp[FC_RESPONSE_MAX] = "";
	int64_t deadline = vmm_now_ms() + timeout_ms;
	int n, status = 0, r;

	snprintf(body, sizeof(body), "{\"action_type\":\"%s\"}", action);
	n = snprintf(req, sizeof(req),
		     "PUT /actions HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		     strlen(body), body);
	r = fc_send_all(fd, req, (size_t)n, deadline, err);
	r = r ?: fc_read_response(fd, resp, sizeof(resp), deadline, err);
	if (r < 0)
		return r;
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
		return err_set(err, ERR_INTERNAL, NULL, EPROTO,
			       "firecracker api: bad response '%.64s'", resp);
	if (status == 204 || status == 200)
		return 0;
	const char *fault = strstr(resp, "\r\n\r\n");
	return err_set(err, ERR_INTERNAL, NULL, EIO, "firecracker api: PUT /actions %s: %d %.400s",
		       action, status, fault ? fault + 4 : "");
}

static int
fc_request_shutdown(const char *run_dir, pid_t pid, struct err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cleanup_close int fd = -1;

	(void)pid;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/api.sock", run_dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return err_set(err, ERR_UNAVAILABLE, NULL, errno, "firecracker api '%s': %s",
			       sa.sun_path, strerror(errno));
	return vmm_firecracker_action(fd, "SendCtrlAltDel", FC_COMMAND_MS, err);
}

static int
fc_check(const struct vmm_config *cfg, char *binary, size_t size, struct err *err)
{
	int r = vmm_config_check(cfg, err);

	if (r < 0)
		return r;
	if (cfg->vcpus > FC_MAX_VCPUS || (cfg->vcpus > 1 && cfg->vcpus % 2))
		return err_set(err, ERR_INVALID, "vcpus", EINVAL,
			       "firecracker runs 1 or an even number of vcpus up to %d, not %u",
			       FC_MAX_VCPUS, cfg->vcpus);
	if (cfg->binary)
		snprintf(binary, size, "%s", cfg->binary);
	else if (host_find_binary("firecracker", NULL, binary, size) < 0)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT, "firecracker not found");
	return 0;
}

/* Writes run_dir/name (0600: it names the host's paths) with the given content. */
static int
fc_write_file(const char *run_dir, const char *name, const char *data, size_t len, struct err *err)
{
	char path[PATH_MAX];
	cleanup_close int fd = -1;

	snprintf(path, sizeof(path), "%s/%s", run_dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		return err_set(err, ERR_INTERNAL, NULL, errno, "write '%s': %s", path,
			       strerror(errno));
	return 0;
}

/* Config file written, stale socket gone, logs rotated; the argv to run. */
static int
fc_prepare(const struct vmm_config *cfg, struct vmm_argv *argv, struct err *err)
{
	char binary[PATH_MAX], path[PATH_MAX];
	cleanup_free char *json = malloc(FC_CONFIG_MAX);
	int n, r = fc_check(cfg, binary, sizeof(binary), err);

	if (r < 0 || (r = vmm_check_stopped(cfg->run_dir, err)) < 0)
		return r;
	n = json ? vmm_firecracker_config(cfg, cfg->version, json, FC_CONFIG_MAX) : -ENOMEM;
	if (n < 0)
		return err_set(err, ERR_INVALID, NULL, -n, "firecracker config: %s", strerror(-n));
	if (cfg->mtu && !strstr(json, "\"mtu\""))
		log_warn("firecracker %s: no mtu field before v1.16; the guest uses 1500",
			 cfg->version ? cfg->version : "(version unknown)");
	r = vmm_logs_rotate(cfg->run_dir, err);
	r = r ?: fc_write_file(cfg->run_dir, "config.json", json, (size_t)n, err);
	snprintf(path, sizeof(path), "%s/api.sock", cfg->run_dir);
	if (r == 0 && unlink(path) < 0 && errno != ENOENT)
		r = err_set(err, ERR_INTERNAL, NULL, errno, "remove '%s': %s", path,
			    strerror(errno));
	if (r < 0)
		return r;
	r = vmm_firecracker_argv(cfg, binary, argv);
	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "firecracker command line: %s",
			       strerror(-r));
	return 0;
}

/* Waits until the API socket exists (inotify on run_dir, set up before the spawn), the
 * process dies or FC_START_MS passes. */
static int
fc_wait_socket(const char *run_dir, int ino, pid_t pid, struct err *err)
{
	cleanup_close int pidfd = vmm_pidfd_open(pid);
	int64_t deadline = vmm_now_ms() + FC_START_MS;
	char path[PATH_MAX], buf[4096];

	snprintf(path, sizeof(path), "%s/api.sock", run_dir);
	while (access(path, F_OK) < 0) {
		struct pollfd p[2] = {{ino, POLLIN, 0}, {pidfd, POLLIN, 0}};
		int64_t left = deadline - vmm_now_ms();
		int r = poll(p, 2, left > 0 ? (int)left : 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return err_set(err, ERR_DEADLINE, NULL, ETIMEDOUT,
				       "no api socket after %d ms", FC_START_MS);
		if (r < 0 || p[1].revents)
			return err_set(err, ERR_INTERNAL, NULL, ESRCH, "exited");
		while (read(ino, buf, sizeof(buf)) > 0)
			;
	}
	return 0;
}

int
vmm_firecracker_launch(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err)
{
	cleanup_vmm_argv struct vmm_argv argv = {0};
	cleanup_close int console = -1, log = -1, ino = -1;
	struct err wait = {0};
	char pid_text[16];
	pid_t pid;
	int r = fc_prepare(cfg, &argv, err);

	if (r < 0)
		return r;
	if ((console = vmm_log_open(cfg->run_dir, "console.log", err)) < 0 ||
	    (log = vmm_log_open(cfg->run_dir, "vmm.log", err)) < 0)
		return -EIO;
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ino < 0 || inotify_add_watch(ino, cfg->run_dir, IN_CREATE) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "watch '%s': %s", cfg->run_dir,
			       strerror(errno));
	const struct vmm_spawn s = {argv.v, cfg->netns_path, cfg->cgroup, console, log, -1};
	r = vmm_spawn(&s, &pid, err);
	if (r < 0)
		return r;
	if (fc_wait_socket(cfg->run_dir, ino, pid, &wait) < 0)
		return vmm_spawn_abort(pid, cfg->run_dir, "firecracker",
				       wait.code == ERR_DEADLINE ? wait.msg : NULL, err);
	snprintf(pid_text, sizeof(pid_text), "%d\n", (int)pid);
	if (fc_write_file(cfg->run_dir, "vmm.pid", pid_text, strlen(pid_text), err) < 0)
		return vmm_spawn_abort(pid, cfg->run_dir, "firecracker", err->msg, err);
	log_debug("firecracker: machine '%s' runs as pid %d", cfg->id, (int)pid);
	*ret_pid = pid;
	return 0;
}

static int
fc_start(const struct vmm_config *cfg, pid_t *ret_pid, struct err *err)
{
	char why[256];

	if (!host_kvm_usable(why, sizeof(why)))
		return err_set(err, ERR_PRECONDITION, NULL, ENODEV, "firecracker needs KVM (%s)",
			       why);
	return vmm_firecracker_launch(cfg, ret_pid, err);
}

const struct vmm_driver vmm_firecracker = {
	.name = "firecracker",
	.start = fc_start,
	.request_shutdown = fc_request_shutdown,
};
