#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
strbuf_free(struct strbuf *sb)
{
	if (!sb)
		return;
	free(sb->data);
	sb->data = NULL;
	sb->len = sb->cap = 0;
}

/* Makes room for n more bytes plus the terminating NUL. */
static int
strbuf_reserve(struct strbuf *sb, size_t n)
{
	size_t need, cap;
	char *grown;

	if (n > SIZE_MAX / 2 - sb->len - 1)
		return -ENOMEM;
	need = sb->len + n + 1;
	if (need <= sb->cap)
		return 0;
	cap = sb->cap ? sb->cap : 64;
	while (cap < need)
		cap *= 2;
	grown = realloc(sb->data, cap);
	if (!grown)
		return -ENOMEM;
	sb->data = grown;
	sb->cap = cap;
	return 0;
}

int
strbuf_append(struct strbuf *sb, const char *s, size_t n)
{
	int r = strbuf_reserve(sb, n);

	if (r < 0)
		return r;
	if (n)
		memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
	return 0;
}

int
strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = strbuf_reserve(sb, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}
