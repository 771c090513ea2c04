/* Runs a program that must not touch the host: debootstrap, and code that comes from an image
 * (its dpkg and maintainer scripts). The program is PID 1 of new PID and mount namespaces, every
 * mount private, optionally in an empty network namespace, and with a root tree: pivot_root
 * into it (the host's tree detached, not merely hidden by chroot), a fresh /proc of its own PID
 * namespace and a small tmpfs /dev holding only null, zero, full, random, urandom and tty.
 * Capabilities it never needs are dropped from its bounding set, and no_new_privs is set. */
#pragma once

#include <stdbool.h>

#include "err.h"

#define JAIL_LINE_MAX 1024

struct jail {
	const char *what;        /* names the program in errors: "debootstrap", "dpkg" */
	const char *const *argv; /* argv[0]: an absolute path (inside root when root is set) */
	const char *const *env;  /* the whole environment, NULL-terminated */
	const char *root;        /* NULL: the host's tree (mounts still private); else pivot_root */
	bool no_network;         /* a new network namespace with no interface up */
	bool allow_mounts;       /* keep CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_CHROOT (debootstrap) */
	const char *error_prefix; /* lines starting with it are preferred as the error: "E: " */
	unsigned timeout_ms;      /* then it and everything it started are killed */
	void (*line)(void *ud, const char *line); /* each line of its stdout and stderr, or NULL */
	void *ud;
};

/* Runs j to its end. 0 when it exited 0; else ERR_DEADLINE (killed at the deadline),
 * ERR_PRECONDITION (the namespaces could not be made) or ERR_INTERNAL naming j->what, the exit
 * status and the error line. */
int jail_run(const struct jail *j, struct err *err);
