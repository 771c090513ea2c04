/* Runs the host programs the guest kit needs (dpkg-deb, depmod, gzip, mkfs.ext4, debugfs,
 * resize2fs...): posix_spawn, no shell, LC_ALL=C, output captured up to a bound, a deadline. */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "strbuf.h"

/* Captured output beyond this many bytes per stream is read and dropped. */
#define KIT_RUN_CAPTURE_MAX (256 * 1024)

struct kit_cmd {
	const char *const *argv; /* argv[0]: a path, or a name looked up on PATH */
	const char *cwd;         /* NULL: the caller's */
	const char *stdin_path;  /* NULL: /dev/null */
	const char *stdout_path; /* NULL: captured; else created 0600 (O_EXCL, O_NOFOLLOW) */
	const char *const *env;  /* extra NAME=value entries, NULL-terminated, or NULL */
	unsigned timeout_ms;     /* 0: 120 s */
};

/* Runs cmd to completion. out/errout (may be NULL) receive stdout/stderr. Returns the exit
 * status (0-255); a spawn failure, a signal or the deadline (the child is then killed) is an
 * error: ERR_INTERNAL / ERR_DEADLINE naming the program. */
int kit_run(const struct kit_cmd *cmd, struct strbuf *out, struct strbuf *errout, struct err *err);

/* kit_run, and a non-zero exit status is an error too, quoting the last line of stderr. */
int kit_run_ok(const struct kit_cmd *cmd, struct strbuf *out, struct err *err);

/* The last non-empty line of text (at most size-1 bytes) into buf: "" when none. */
void kit_run_last_line(const char *text, char *buf, size_t size);
