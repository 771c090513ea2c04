/* Errors that carry a message up to the user: a status code, the request field at fault and a
 * message that each layer prefixes with its context. Lives on the caller's stack. */
#pragma once

#include <stdarg.h>

/* Same numbers as sistemo.v1.Code on the wire. */
enum err_code {
	ERR_OK = 0,
	ERR_INVALID = 1,
	ERR_NOT_FOUND = 2,
	ERR_EXISTS = 3,
	ERR_PRECONDITION = 4,
	ERR_PERMISSION = 5,
	ERR_UNAUTHENTICATED = 6,
	ERR_EXHAUSTED = 7,
	ERR_UNAVAILABLE = 8,
	ERR_UNIMPLEMENTED = 9,
	ERR_INTERNAL = 10,
	ERR_CANCELLED = 11,
	ERR_DEADLINE = 12,
};

struct err {
	enum err_code code;
	char field[64];
	char msg[1024];
};

/* Sets the error (code, field or NULL, message) and returns -errno_hint, or -EIO if 0. Never
 * overwrites an error already set: the first error wins. */
int err_set(struct err *err, enum err_code code, const char *field, int errno_hint, const char *fmt,
	    ...) __attribute__((format(printf, 5, 6)));

/* Prefixes the message with "context: " (context formatted); returns -EIO for chaining. */
int err_wrap(struct err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The code for an errno: EEXIST/EBUSY exists, ENOENT/ENODEV not found, EPERM/EACCES permission,
 * ENOMEM/ENOBUFS/ENOSPC/E2BIG/EMFILE/ENFILE exhausted, EOPNOTSUPP and kin unavailable,
 * ETIMEDOUT deadline, anything else internal. */
enum err_code err_code_for_errno(int errnum);

/* Sets "<what>: <strerror(-r)>" (what formatted) with the code for -r, and returns r (a
 * negative errno). */
int err_errno(struct err *err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears an error for reuse. */
void err_clear(struct err *err);

/* The lowercase wire name of a code: "invalid argument", "not found"... */
const char *err_code_name(enum err_code code);

/* Distinct CLI exit status per code (documented in docs/cli.md). */
int err_exit_status(enum err_code code);
