/* Kernel modules for the initramfs: the closure of a few wanted modules over the kernel's
 * modules.dep (as depmod writes it), in load order (dependencies first), minus what
 * modules.builtin says is built in. */
#pragma once

#include <stddef.h>

#include "err.h"

/* The module name of a modules.dep path:
 * "kernel/drivers/char/hw_random/virtio-rng.ko" -> "virtio_rng". Returns 0 or -EINVAL. */
int kit_modules_name(const char *path, char *buf, size_t size);

/* Resolves required and optional (NULL-terminated name lists) into *ret: a NULL-terminated
 * array of modules.dep paths in load order, owned by the caller (kit_modules_free). A required
 * module neither in dep_text nor in builtin_text (may be NULL) is ERR_NOT_FOUND; a missing
 * optional one is skipped; compressed modules (.ko.xz...) are ERR_UNIMPLEMENTED. */
int kit_modules_resolve(const char *dep_text, const char *builtin_text, const char *const *required,
			const char *const *optional, char ***ret, struct err *err);

/* Frees a list from kit_modules_resolve; accepts NULL. */
void kit_modules_free(char **list);
