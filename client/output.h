/* Output for humans and scripts: aligned tables, key/value blocks, and any reply message as
 * JSON (-o json) through the one protobuf-JSON converter. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <protobuf-c/protobuf-c.h>

struct table;

/* A table with the given column headers (NULL-terminated). */
struct table *table_new(const char *const *headers);
void table_free(struct table *t);

/* Adds a row of n cells (as many as headers); the cells are copied. */
void table_add(struct table *t, const char *const *cells);

/* Prints the table aligned, or `empty` when it has no rows (when empty is not NULL). */
void table_print(const struct table *t, FILE *f, const char *empty);

/* Prints "Key:   value" lines with keys padded to `width`. */
void output_kv(FILE *f, int width, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Prints msg as pretty JSON on stdout; returns 0 or a negative errno. */
int output_json(const ProtobufCMessage *msg);

/* The short name of an enum value ("running"), as in JSON. */
const char *output_enum(const ProtobufCEnumDescriptor *d, int value);

/* Wraps a status word in colour when stdout is a terminal. */
const char *output_state_color(const char *state, bool tty, char *buf, size_t size);
