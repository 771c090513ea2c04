/* The daemon: one context holding config, store, dispatcher and RPC server, its start-up
 * (lock, tree, config, database, socket), signal handling and clean shutdown. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "host.h"
#include "paths.h"

struct store;
struct dispatch;
struct rpc_server;

struct daemon {
	struct paths paths;
	struct config cfg;
	struct store *store;
	struct dispatch *dispatch;
	struct rpc_server *rpc;
	struct vmm_probe vmms[2]; /* probed once at start */
	int lock_fd;
	int64_t started_ms;
};

struct daemon_options {
	const char *data_dir; /* NULL: the default */
	bool detach;          /* fork, return once the socket listens, log to log_file */
	const char *log_file; /* with detach; NULL: <data dir>/sistemo.log */
};

/* Runs the daemon until SIGTERM or SIGINT; returns the process exit status. */
int daemon_main(const struct daemon_options *o);
