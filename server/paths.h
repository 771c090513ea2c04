/* Where things live: the data directory layout (DESIGN.md) and the daemon's socket.
 * Shared by the CLI (to find the socket) and the daemon (to own the tree). */
#pragma once

#include <limits.h>
#include <stddef.h>

#include "err.h"

struct paths {
	char data_dir[PATH_MAX];
	char db[PATH_MAX];      /* sistemo.db */
	char config[PATH_MAX];  /* config.yml */
	char run_dir[PATH_MAX]; /* run/: socket, lock */
	char socket[PATH_MAX];  /* run/sistemo.sock */
	char lock[PATH_MAX];    /* run/daemon.lock */
	char url[PATH_MAX + 8]; /* ipc://<socket> */
};

/* Fills the layout for data_dir, or the default when NULL: $SISTEMO_DATA_DIR, else
 * $HOME/.sistemo (/root/.sistemo for root). The socket path must fit sockaddr_un. */
int paths_init(struct paths *p, const char *data_dir, struct err *err);

/* Creates the tree (data dir 0711, subfolders) owned by the current user (root for the
 * daemon). Existing folders are kept; a data dir owned by another user is refused. */
int paths_create_tree(const struct paths *p, struct err *err);

/* Joins data_dir and a relative name into buf. */
int paths_join(const struct paths *p, const char *name, char *buf, size_t size);

/* <data dir>/vms/<id>: a machine's directory (root disk, console log, VMM run files). */
int paths_machine_dir(const struct paths *p, const char *id, char *buf, size_t size);
