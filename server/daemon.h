/* The daemon: one context holding config, store, dispatcher and RPC server, its start-up
 * (lock, tree, config, database, socket), signal handling and clean shutdown. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "host.h"
#include "paths.h"

struct store;
struct dispatch;
struct rpc_server;
struct ops;
struct execs;
struct dns_server;

struct daemon {
	struct paths paths;
	struct config cfg;
	struct store *store;
	struct dispatch *dispatch;
	struct rpc_server *rpc;
	struct vmm_probe vmms[2]; /* probed once at start */
	struct ops *ops;          /* long operations */
	struct execs *execs;      /* exec and terminal sessions */
	struct dns_server *dns;   /* machine names on every gateway (network.c) */
	char bridge[16];          /* "sistemo0" */
	uint32_t bridge_net;      /* bridge_subnet's network address, host order */
	unsigned bridge_prefix;
	bool kvm;               /* /dev/kvm can create a VM */
	unsigned tsc_khz;       /* for TCG guests */
	char ssh_dir[PATH_MAX]; /* <data dir>/ssh: the key machines trust */
	int lock_fd;
	int64_t started_ms;
	pthread_t reconciler;
	bool reconciler_running;
	bool stopping;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
};

struct daemon_options {
	const char *data_dir; /* NULL: the default */
	bool detach;          /* fork, return once the socket listens, log to log_file */
	const char *log_file; /* with detach; NULL: <data dir>/sistemo.log */
};

/* Runs the daemon until SIGTERM or SIGINT; returns the process exit status. */
int daemon_main(const struct daemon_options *o);
