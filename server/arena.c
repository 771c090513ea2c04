#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	ProtobufCAllocator pb;
};

static void *
pb_alloc(void *data, size_t size)
{
	return arena_alloc(data, size);
}

static void
pb_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

int
arena_new(struct arena **ret)
{
	struct arena *a = calloc(1, sizeof(*a));

	if (!a)
		return -12;
	a->pb.alloc = pb_alloc;
	a->pb.free = pb_free;
	a->pb.allocator_data = a;
	*ret = a;
	return 0;
}

void
arena_free(struct arena *a)
{
	if (!a)
		return;
	for (struct chunk *c = a->head, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	free(a);
}

void *
arena_alloc(struct arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	if (!a->head || a->head->cap - a->head->used < size) {
		size_t cap = size > 16384 ? size : 16384;
		struct chunk *c = malloc(sizeof(*c) + cap);
		if (!c)
			abort();
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += size;
	memset(p, 0, size);
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	size_t n = strlen(s ? s : "") + 1;
	char *d = arena_alloc(a, n);

	memcpy(d, s ? s : "", n);
	return d;
}

char *
arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap, ap2;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = arena_alloc(a, (size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return s;
}

void *
arena_msg(struct arena *a, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = arena_alloc(a, desc->sizeof_message);

	protobuf_c_message_init(desc, m);
	return m;
}

void
arena_append(struct arena *a, void *arr_ptr, size_t *n, void *elem)
{
	void ***arr = arr_ptr;

	/* full when n is 0 or a power of two (4 at least): grow to twice that */
	if (*n == 0 || (*n >= 4 && (*n & (*n - 1)) == 0)) {
		size_t cap = *n ? *n * 2 : 4;
		void **grown = arena_alloc(a, cap * sizeof(void *));
		if (*n)
			memcpy(grown, *arr, *n * sizeof(void *));
		*arr = grown;
	}
	(*arr)[(*n)++] = elem;
}

ProtobufCAllocator *
arena_allocator(struct arena *a)
{
	return &a->pb;
}
