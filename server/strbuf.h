/* A growable, always NUL-terminated output buffer: JSON from pbjson, tables and text from the
 * CLI. The caller owns the struct (zero-initialise it); strbuf_free() releases the memory. */
#pragma once

#include <stddef.h>

struct strbuf {
	char *data; /* NULL until the first append, then NUL-terminated at len */
	size_t len, cap;
};

/* Frees the memory and zeroes the struct; accepts NULL. Also the cleanup destructor. */
void strbuf_free(struct strbuf *sb);
#define cleanup_strbuf __attribute__((cleanup(strbuf_free)))

/* Appends n bytes of s. Returns 0 or -ENOMEM (the buffer is left as it was). */
int strbuf_append(struct strbuf *sb, const char *s, size_t n);

/* Appends formatted text. Returns 0, -ENOMEM or -EINVAL (bad format). */
int strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
