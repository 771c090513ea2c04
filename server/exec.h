/* Exec sessions: commands and shells running in machines over SSH, each addressed by an id;
 * clients read output by long polling and write input. A session ends when its exit has been
 * read, or after 10 idle minutes. */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "ssh.h"
#include "strbuf.h"

struct execs;

int execs_new(struct execs **ret, struct err *err);

/* Closes every session. Accepts NULL. */
void execs_free(struct execs *e);

/* Starts command (a shell string), or a login shell when command is NULL and pty is set.
 * timeout_sec 0: no limit; past it the command is killed and exits with status 124. */
int execs_start(struct execs *e, const struct ssh_target *t, const char *command,
		const struct ssh_pty *pty, unsigned timeout_sec, char ret_id[40], struct err *err);

/* Appends the output that came within wait_ms to out/errout; sets *ret_exited and *ret_code
 * once the command ended and all output was delivered (the session then goes away). */
int execs_read(struct execs *e, const char *id, unsigned wait_ms, struct strbuf *out,
	       struct strbuf *errout, bool *ret_exited, int *ret_code, struct err *err);

int execs_write(struct execs *e, const char *id, const void *data, size_t n, bool eof,
		struct err *err);
int execs_resize(struct execs *e, const char *id, unsigned cols, unsigned rows, struct err *err);
int execs_signal(struct execs *e, const char *id, const char *signal, struct err *err);
