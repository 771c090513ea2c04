#include "daemon.h"

#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dispatch.h"
#include "exec.h"
#include "image.h"
#include "image_fetch.h"
#include "log.h"
#include "machine.h"
#include "network.h"
#include "macro.h"
#include "netns.h"
#include "ops.h"
#include "rpc_server.h"
#include "ssh.h"
#include "store.h"

static const struct service *const all_services[] = {
	&service_machines, &service_networks, &service_volumes, &service_images, &service_system,
};

static void
daemon_audit(struct daemon *d, const struct caller *caller, const char *action,
	     const struct call *c, const struct err *err)
{
	struct err aerr = {0};
	struct audit_entry e = {
		.actor = caller->actor,
		.action = action,
		.target_type = c->target_type ? c->target_type : "",
		.target_id = c->target_id ? c->target_id : "",
		.target_name = c->target_name ? c->target_name : "",
		.success = err->code == ERR_OK,
		.detail = err->code == ERR_OK ? "" : err->msg,
	};
	if (!*e.target_type) {
		/* "machine.deploy" -> target type "machine" */
		static __thread char type[32];
		snprintf(type, sizeof(type), "%.*s", (int)strcspn(action, "."), action);
		e.target_type = type;
	}
	if (store_audit_add(d->store, &e, &aerr) < 0)
		log_error("audit: %s", aerr.msg);
}

/* One daemon per data dir: an flock held for the daemon's life; the file holds its pid. */
static int
lock_data_dir(struct daemon *d, struct err *err)
{
	char pid[32] = "";
	int fd = open(d->paths.lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "open '%s': %s", d->paths.lock,
			       strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		return err_set(err, ERR_EXISTS, NULL, EBUSY,
			       "another sistemo daemon (pid %s) is already running with data dir "
			       "'%s'",
			       *pid ? pid : "unknown", d->paths.data_dir);
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		log_warn("write pid to '%s': %s", d->paths.lock, strerror(errno));
	d->lock_fd = fd;
	return 0;
}

static int
load_config(struct daemon *d, struct err *err)
{
	enum log_level lvl;

	if (config_load(&d->cfg, d->paths.config, err) < 0)
		return err_wrap(err, "config");
	for (size_t i = 0; i < config_warning_count(&d->cfg); i++)
		log_warn("%s", config_warning(&d->cfg, i));
	if (!getenv("SISTEMO_LOG_LEVEL") && log_level_parse(d->cfg.log_level, &lvl) == 0)
		log_max_level = lvl;
	return 0;
}

static void *
rpc_prepare(void *ud, const void *req, size_t len, bool *ret_blocks)
{
	struct daemon *d = ud;
	struct dispatch_req *r = dispatch_parse(d->dispatch, req, len);

	*ret_blocks = dispatch_req_blocks(r);
	return r;
}

static void
rpc_handle(void *ud, const struct caller *caller, void *prepared, void **ret, size_t *ret_len)
{
	dispatch_run(prepared, ud, caller, ret, ret_len);
}

static void
rpc_discard(void *ud, void *prepared)
{
	(void)ud;
	dispatch_req_free(prepared);
}

static int
start_rpc(struct daemon *d, struct err *err)
{
	struct rpc_handler h = {
		.prepare = rpc_prepare, .handle = rpc_handle, .discard = rpc_discard, .ud = d};
	int r;

	/* We hold the lock, so a socket file left here is a dead daemon's. */
	if (unlink(d->paths.socket) < 0 && errno != ENOENT)
		return err_set(err, ERR_INTERNAL, NULL, errno, "remove stale socket '%s': %s",
			       d->paths.socket, strerror(errno));
	r = rpc_server_start(d->paths.url, &h, 64, 16, &d->rpc, err);
	if (r < 0)
		return r;
	if (chown(d->paths.socket, 0, 0) < 0 || chmod(d->paths.socket, 0660) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "set owner of '%s': %s",
			       d->paths.socket, strerror(errno));
	return 0;
}

/* The host side of machines: the default bridge from bridge_subnet, the SSH key, KVM. */
static int
start_host(struct daemon *d, struct err *err)
{
	char why[128];
	int r;

	snprintf(d->bridge, sizeof(d->bridge), "sistemo0");
	if (config_parse_cidr(d->cfg.bridge_subnet, 8, 24, &d->bridge_net, &d->bridge_prefix) < 0)
		return err_set(err, ERR_INVALID, "bridge_subnet", EINVAL, "bad bridge_subnet '%s'",
			       d->cfg.bridge_subnet);
	d->kvm = host_kvm_usable(why, sizeof(why));
	d->tsc_khz = host_tsc_khz();
	paths_join(&d->paths, "ssh", d->ssh_dir, sizeof(d->ssh_dir));
	if ((r = ssh_key_ensure(d->ssh_dir, err)) < 0)
		return err_wrap(err, "ssh key");
	if ((r = netns_bridge_ensure(d->bridge, d->bridge_net + 1, d->bridge_prefix, err)) < 0)
		return err_wrap(err, "bridge '%s'", d->bridge);
	return 0;
}

static void *
reconciler_main(void *arg)
{
	struct daemon *d = arg;
	struct timespec next;

	pthread_mutex_lock(&d->stop_lock);
	while (!d->stopping) {
		clock_gettime(CLOCK_REALTIME, &next);
		next.tv_sec += d->cfg.reconciler_interval_sec;
		while (!d->stopping &&
		       pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &next) != ETIMEDOUT)
			;
		if (d->stopping)
			break;
		pthread_mutex_unlock(&d->stop_lock);
		machine_reconcile(d);
		pthread_mutex_lock(&d->stop_lock);
	}
	pthread_mutex_unlock(&d->stop_lock);
	return NULL;
}

static int
start_machines(struct daemon *d, struct err *err)
{
	int r;

	if ((r = ops_new(d->store, &d->ops, err)) < 0 || (r = execs_new(&d->execs, err)) < 0 ||
	    (r = machine_recover(d, err)) < 0)
		return r;
	/* after recovery: the ruleset is rebuilt for the machines that really run */
	if ((r = net_host_start(d, err)) < 0)
		return err_wrap(err, "networks");
	if ((r = pthread_create(&d->reconciler, NULL, reconciler_main, d)) != 0)
		return err_set(err, ERR_INTERNAL, NULL, r, "start the reconciler: %s", strerror(r));
	d->reconciler_running = true;
	return 0;
}

static int
daemon_start(struct daemon *d, const struct daemon_options *o, struct err *err)
{
	int r;

	d->lock_fd = -1;
	d->started_ms = store_now_ms();
	if ((r = paths_init(&d->paths, o->data_dir, err)) < 0 ||
	    (r = paths_create_tree(&d->paths, err)) < 0 || (r = lock_data_dir(d, err)) < 0 ||
	    (r = load_config(d, err)) < 0)
		return r;
	if ((r = store_open(d->paths.db, &d->store, err)) < 0)
		return r;
	/* before any thread: libcurl's global set-up */
	if ((r = image_fetch_init(err)) < 0 || (r = image_store_init(d, err)) < 0)
		return err_wrap(err, "image store");
	host_probe_vmms(d->paths.data_dir, d->cfg.vmm, d->vmms);
	if ((r = start_host(d, err)) < 0 || (r = start_machines(d, err)) < 0)
		return r;
	if ((r = dispatch_new(all_services, ARRAY_SIZE(all_services), daemon_audit, &d->dispatch,
			      err)) < 0)
		return r;
	return start_rpc(d, err);
}

static void
daemon_stop(struct daemon *d)
{
	/* Only the daemon that listened owns the socket file: a second daemon refused at the
	 * lock must not remove the first one's. */
	if (d->rpc) {
		rpc_server_stop(d->rpc);
		d->rpc = NULL;
		unlink(d->paths.socket);
	}
	if (d->reconciler_running) {
		pthread_mutex_lock(&d->stop_lock);
		d->stopping = true;
		pthread_cond_broadcast(&d->stop_cond);
		pthread_mutex_unlock(&d->stop_lock);
		pthread_join(d->reconciler, NULL);
	}
	ops_free(d->ops); /* running operations roll back first */
	execs_free(d->execs);
	net_host_stop(d); /* its lookups read the store */
	dispatch_free(d->dispatch);
	store_close(d->store);
	if (d->lock_fd >= 0)
		close(d->lock_fd); /* releases the flock last: nothing of ours is left running */
}

static int
wait_for_signal(const sigset_t *set)
{
	int sig;

	do {
		sig = sigwaitinfo(set, NULL);
	} while (sig < 0 && errno == EINTR);
	return sig;
}

/* Detach: the parent waits on a pipe for the child's "ready" or its error. */
static int
detach(int *ret_ready_fd)
{
	int p[2];
	char buf[1200] = "";

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(p[0]);
		setsid();
		*ret_ready_fd = p[1];
		return 0;
	}
	close(p[1]);
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	if (strncmp(buf, "ready", 5) == 0) {
		printf("sistemo daemon running (pid %d)%s\n", (int)pid, buf + 5);
		exit(0);
	}
	fprintf(stderr, "sistemo up: %s\n", *buf ? buf : "the daemon exited during start");
	exit(1);
}

static int
redirect_logs(const struct daemon *d, const char *log_file, char *out, size_t size)
{
	if (log_file)
		snprintf(out, size, "%s", log_file);
	else
		paths_join(&d->paths, "sistemo.log", out, size);
	int fd = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	dup2(null, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	close(null);
	return 0;
}

static void
report_ready(int ready_fd, const struct daemon *d, const char *log_path)
{
	char msg[PATH_MAX * 2 + 64];

	log_info("sistemo %s ready on %s (data dir %s)", SISTEMO_VERSION, d->paths.url,
		 d->paths.data_dir);
	if (ready_fd < 0)
		return;
	int n = snprintf(msg, sizeof(msg), "ready, socket %s, logs in %s", d->paths.socket,
			 log_path);
	if (write(ready_fd, msg, (size_t)n) < 0)
		log_warn("report readiness: %s", strerror(errno));
	close(ready_fd);
}

static int
run(struct daemon *d, const struct daemon_options *o, int ready_fd, const char *log_path)
{
	struct err err = {0};
	sigset_t set;

	/* Block the signals before NNG starts its threads; only this thread takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (daemon_start(d, o, &err) < 0) {
		log_error("cannot start: %s", err.msg);
		if (ready_fd >= 0 && write(ready_fd, err.msg, strlen(err.msg)) < 0)
			log_error("report failure: %s", strerror(errno));
		daemon_stop(d);
		return err.code == ERR_EXISTS ? 3 : 1;
	}
	report_ready(ready_fd, d, log_path);
	int sig;
	while ((sig = wait_for_signal(&set)) == SIGHUP)
		log_info("SIGHUP: nothing to reload yet");
	log_info("%s: shutting down", strsignal(sig));
	daemon_stop(d);
	log_info("stopped");
	return 0;
}

int
daemon_main(const struct daemon_options *o)
{
	struct daemon d = {.lock_fd = -1,
			   .stop_lock = PTHREAD_MUTEX_INITIALIZER,
			   .stop_cond = PTHREAD_COND_INITIALIZER};
	struct err err = {0};
	char log_path[PATH_MAX] = "stderr";
	int ready_fd = -1;

	if (geteuid() != 0) {
		fprintf(stderr, "sistemo up: the daemon must run as root (it manages network "
				"namespaces, bridges, nftables and VMM processes)\n");
		return 7;
	}
	umask(022);
	if (o->detach) {
		if (paths_init(&d.paths, o->data_dir, &err) < 0 ||
		    paths_create_tree(&d.paths, &err) < 0) {
			fprintf(stderr, "sistemo up: %s\n", err.msg);
			return 1;
		}
		if (detach(&ready_fd) < 0 ||
		    redirect_logs(&d, o->log_file, log_path, sizeof(log_path)) < 0)
			return 1;
	}
	return run(&d, o, ready_fd, log_path);
}
