/* SSH into machines with libssh2 and the daemon's ed25519 key (RSA user keys fail against
 * OpenSSH >= 8.8 with libssh2 1.10): commands with separate stdout/stderr and exit status,
 * interactive PTY sessions that follow resizes, and the key pair itself. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "strbuf.h"

/* Creates <dir> (0700) and <dir>/sistemo_key + sistemo_key.pub (ed25519, `ssh-keygen -t ed25519
 * -N ''`) when missing, rebuilds a missing .pub from the private key, and fixes modes to
 * 0600 / 0644. Refuses (ERR_PERMISSION) a directory or key file not owned by root. Idempotent. */
int ssh_key_ensure(const char *dir, struct err *err);

/* Reads the public key line (without the newline) into buf: ERR_NOT_FOUND when missing. */
int ssh_key_public(const char *dir, char *buf, size_t size, struct err *err);

struct ssh_target {
	const char *host;            /* IPv4 (or IPv6) address of the guest, numeric */
	unsigned port;               /* 0 means 22 */
	const char *user;            /* NULL means "root" */
	const char *key_dir;         /* <data dir>/ssh, holding sistemo_key and sistemo_key.pub */
	unsigned connect_timeout_ms; /* bounds connect + handshake + auth + start; 0: 10 s */
};

struct ssh_pty {
	const char *term; /* "xterm-256color" */
	unsigned cols, rows;
};

/* A running command (or shell, when command is NULL and pty is set). One TCP connection and
 * session each. Thread-compatible: one thread at a time per exec. The guest's host key is not
 * checked (fresh per machine; see ssh.c). */
struct ssh_exec;

/* Connects, authenticates with <key_dir>/sistemo_key and starts command (a shell string the
 * guest's login shell runs) or, with pty, a terminal. Errors: ERR_UNAVAILABLE (cannot reach,
 * connection lost), ERR_DEADLINE (connect_timeout_ms), ERR_PERMISSION (key refused),
 * ERR_PRECONDITION (no key), ERR_INVALID. On success *ret is the caller's to free. */
int ssh_exec_start(const struct ssh_target *t, const char *command, const struct ssh_pty *pty,
		   struct ssh_exec **ret, struct err *err);

/* Waits up to wait_ms for output, appends what came to out/errout (errout is merged into out
 * for a PTY, or when NULL), at most 1 MiB per call, and sets *ret_exited and *ret_code (the
 * exit status; 128+N for a signal) when the command ended and all its output was read.
 * Returns as soon as some output came; calling again after the end repeats the status. */
int ssh_exec_read(struct ssh_exec *x, struct strbuf *out, struct strbuf *errout, int wait_ms,
		  bool *ret_exited, int *ret_code, struct err *err);

/* Sends stdin bytes; eof closes stdin. Waits up to 10 s for the guest to take them
 * (ERR_DEADLINE): interleave with ssh_exec_read when the command also writes a lot. */
int ssh_exec_write(struct ssh_exec *x, const void *data, size_t n, bool eof, struct err *err);

/* Changes the terminal size (ERR_PRECONDITION without a PTY). */
int ssh_exec_resize(struct ssh_exec *x, unsigned cols, unsigned rows, struct err *err);

/* Sends a signal ("TERM", "KILL", "INT", "HUP"...) to the command. With libssh2 1.10 this is
 * ERR_UNIMPLEMENTED (the request arrived in 1.11); unknown names are ERR_INVALID. */
int ssh_exec_signal(struct ssh_exec *x, const char *signal, struct err *err);

/* Closes the channel and the connection (a command still running is hung up on). Bounded to
 * a fraction of a second. Accepts NULL. */
void ssh_exec_free(struct ssh_exec *x);

/* Convenience: runs command to completion within timeout_ms (connecting included), collecting
 * output (at most 64 MiB, else ERR_EXHAUSTED) and status. At the timeout: ERR_DEADLINE and
 * the connection is closed. errout may be NULL (merged into out). */
int ssh_run(const struct ssh_target *t, const char *command, unsigned timeout_ms,
	    struct strbuf *out, struct strbuf *errout, int *ret_code, struct err *err);

/* Appends arg single-quoted for a POSIX shell ('it'\''s'), to build commands from argv.
 * Returns 0 or -ENOMEM (sb left as it was). */
int ssh_shell_quote(struct strbuf *sb, const char *arg);
