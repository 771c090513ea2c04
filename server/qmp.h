/* A minimal QMP client for QEMU's monitor socket: the daemon creates the listening socket that
 * QEMU inherits, then connects per request (greeting, qmp_capabilities, one command). */
#pragma once

#include "err.h"

/* Binds and listens on path (a stale socket file is replaced); QEMU inherits the fd and serves
 * it with `-chardev socket,fd=N,server=on,wait=off`, so the socket exists before QEMU runs and
 * a client never races QEMU's bind. The caller owns *ret_fd (O_CLOEXEC). */
int qmp_listen(const char *path, int *ret_fd, struct err *err);

/* Connects to the QMP socket at path, reads the greeting, negotiates capabilities and, when
 * command is not NULL, runs it (no arguments) and waits for its return. All of it within
 * timeout_ms. A reply of qmp_capabilities means QEMU finished starting: its main loop runs.
 * ERR_UNAVAILABLE when nothing listens, ERR_DEADLINE, ERR_INTERNAL with QEMU's desc. */
int qmp_execute(const char *path, const char *command, unsigned timeout_ms, struct err *err);
