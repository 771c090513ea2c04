/* SSH into machines with libssh2 and the daemon's ed25519 key (RSA user keys fail against
 * OpenSSH >= 8.8 with libssh2 1.10): commands with separate stdout/stderr and exit status,
 * interactive PTY sessions that follow resizes, and the key pair itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "strbuf.h"

/* Creates <dir>/sistemo_key and sistemo_key.pub (ed25519, `ssh-keygen -t ed25519 -N ''`) when
 * missing; 0600 / 0644, owned by root. Idempotent. */
int ssh_key_ensure(const char *dir, struct err *err);

/* Reads the public key line (without the newline) into buf. */
int ssh_key_public(const char *dir, char *buf, size_t size, struct err *err);

struct ssh_target {
	const char *host;     /* IPv4 address of the guest */
	unsigned port;        /* 22 */
	const char *user;     /* "root" */
	const char *key_dir;  /* <data dir>/ssh */
	unsigned connect_timeout_ms;
};

struct ssh_pty {
	const char *term; /* "xterm-256color" */
	unsigned cols, rows;
};

/* A running command (or shell, when command is NULL and pty is set). One TCP connection and
 * session each. Thread-compatible: one thread at a time per exec. */
struct ssh_exec;

int ssh_exec_start(const struct ssh_target *t, const char *command, const struct ssh_pty *pty,
		   struct ssh_exec **ret, struct err *err);

/* Waits up to wait_ms for output, appends what came to out/errout (errout is merged into out
 * for a PTY), and sets *ret_exited and *ret_code (the exit status; 128+N for a signal) when the
 * command ended and all its output was read. */
int ssh_exec_read(struct ssh_exec *x, struct strbuf *out, struct strbuf *errout, int wait_ms,
		  bool *ret_exited, int *ret_code, struct err *err);

/* Sends stdin bytes; eof closes stdin. */
int ssh_exec_write(struct ssh_exec *x, const void *data, size_t n, bool eof, struct err *err);

int ssh_exec_resize(struct ssh_exec *x, unsigned cols, unsigned rows, struct err *err);

/* Sends a signal ("TERM", "KILL", "INT", "HUP") to the command. */
int ssh_exec_signal(struct ssh_exec *x, const char *signal, struct err *err);

/* Closes the channel and the connection. Accepts NULL. */
void ssh_exec_free(struct ssh_exec *x);

/* Convenience: runs command to completion (timeout_ms), collecting output and status. */
int ssh_run(const struct ssh_target *t, const char *command, unsigned timeout_ms,
	    struct strbuf *out, struct strbuf *errout, int *ret_code, struct err *err);
