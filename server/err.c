#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int
err_set(struct err *err, enum err_code code, const char *field, int errno_hint, const char *fmt,
	...)
{
	int ret = errno_hint > 0 ? -errno_hint : -EIO;

	if (!err || err->code != ERR_OK)
		return ret;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return ret;
}

int
err_wrap(struct err *err, const char *fmt, ...)
{
	char prefix[256], old[sizeof(err->msg)], joined[sizeof(prefix) + sizeof(old) + 2];

	if (!err)
		return -EIO;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(joined, sizeof(joined), "%s: %s", prefix, old);
	snprintf(err->msg, sizeof(err->msg), "%.*s", (int)sizeof(err->msg) - 1, joined);
	if (err->code == ERR_OK)
		err->code = ERR_INTERNAL;
	return -EIO;
}

enum err_code
err_code_for_errno(int errnum)
{
	switch (errnum) {
	case EEXIST:
	case EBUSY:
		return ERR_EXISTS;
	case ENOENT:
	case ENODEV:
		return ERR_NOT_FOUND;
	case EPERM:
	case EACCES:
		return ERR_PERMISSION;
	case ENOMEM:
	case ENOBUFS:
	case ENOSPC:
	case E2BIG:
	case EMFILE:
	case ENFILE:
		return ERR_EXHAUSTED;
	case EOPNOTSUPP:
	case EAFNOSUPPORT:
	case EPROTONOSUPPORT:
		return ERR_UNAVAILABLE;
	case ETIMEDOUT:
		return ERR_DEADLINE;
	default:
		return ERR_INTERNAL;
	}
}

int
err_errno(struct err *err, int r, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	err_set(err, err_code_for_errno(-r), NULL, -r, "%s: %s", what, strerror(-r));
	return r;
}

void
err_clear(struct err *err)
{
	memset(err, 0, sizeof(*err));
}

static const struct {
	const char *name;
	int exit_status;
} codes[] = {
	[ERR_OK] = {"ok", 0},
	[ERR_INVALID] = {"invalid argument", 2},
	[ERR_NOT_FOUND] = {"not found", 4},
	[ERR_EXISTS] = {"already exists", 5},
	[ERR_PRECONDITION] = {"failed precondition", 6},
	[ERR_PERMISSION] = {"permission denied", 7},
	[ERR_UNAUTHENTICATED] = {"unauthenticated", 7},
	[ERR_EXHAUSTED] = {"resource exhausted", 8},
	[ERR_UNAVAILABLE] = {"unavailable", 3},
	[ERR_UNIMPLEMENTED] = {"unimplemented", 9},
	[ERR_INTERNAL] = {"internal", 1},
	[ERR_CANCELLED] = {"cancelled", 10},
	[ERR_DEADLINE] = {"deadline exceeded", 11},
};

const char *
err_code_name(enum err_code code)
{
	if ((unsigned)code >= sizeof(codes) / sizeof(codes[0]))
		return "unknown";
	return codes[code].name;
}

int
err_exit_status(enum err_code code)
{
	if ((unsigned)code >= sizeof(codes) / sizeof(codes[0]))
		return 1;
	return codes[code].exit_status;
}
