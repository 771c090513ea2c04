/* A bump allocator for one request: handlers build their reply message in it and the whole
 * request is freed at once. Also serves as a ProtobufCAllocator for unpacking. */
#pragma once

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

struct arena;

int arena_new(struct arena **ret);
void arena_free(struct arena *a);

/* Zeroed memory owned by the arena; aborts on out-of-memory (like the rest of the daemon's
 * small allocations, there is nothing sane to roll back to). */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocates and initialises a protobuf-c message of the given descriptor. */
void *arena_msg(struct arena *a, const ProtobufCMessageDescriptor *desc);

/* Appends a pointer to a repeated field of pointers (messages, strings): *arr_ptr holds *n.
 * Capacity doubles at powers of two, so every array must grow only through this call. */
void arena_append(struct arena *a, void *arr_ptr, size_t *n, void *elem);

/* A ProtobufCAllocator drawing from this arena (free is a no-op). */
ProtobufCAllocator *arena_allocator(struct arena *a);
