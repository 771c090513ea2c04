#include "output.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "pbjson.h"
#include "strbuf.h"

#define MAX_COLS 12

struct table {
	size_t n_cols, n_rows, cap_rows;
	const char *headers[MAX_COLS];
	char **cells; /* n_rows * n_cols */
	size_t width[MAX_COLS];
};

struct table *
table_new(const char *const *headers)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	for (; headers[t->n_cols] && t->n_cols < MAX_COLS; t->n_cols++) {
		t->headers[t->n_cols] = headers[t->n_cols];
		t->width[t->n_cols] = strlen(headers[t->n_cols]);
	}
	return t;
}

void
table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

void
table_add(struct table *t, const char *const *cells)
{
	if (t->n_rows == t->cap_rows) {
		t->cap_rows = t->cap_rows ? t->cap_rows * 2 : 16;
		t->cells = realloc(t->cells, t->cap_rows * t->n_cols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	for (size_t c = 0; c < t->n_cols; c++) {
		char *v = strdup(cells[c] && *cells[c] ? cells[c] : "-");
		if (!v)
			abort();
		t->cells[t->n_rows * t->n_cols + c] = v;
		if (strlen(v) > t->width[c])
			t->width[c] = strlen(v);
	}
	t->n_rows++;
}

static void
print_row(const struct table *t, FILE *f, const char *const *cells)
{
	for (size_t c = 0; c < t->n_cols; c++) {
		if (c + 1 == t->n_cols)
			fprintf(f, "%s\n", cells[c]);
		else
			fprintf(f, "%-*s   ", (int)t->width[c], cells[c]);
	}
}

void
table_print(const struct table *t, FILE *f, const char *empty)
{
	if (t->n_rows == 0 && empty) {
		fprintf(f, "%s\n", empty);
		return;
	}
	print_row(t, f, t->headers);
	for (size_t r = 0; r < t->n_rows; r++)
		print_row(t, f, (const char *const *)&t->cells[r * t->n_cols]);
}

void
output_kv(FILE *f, int width, const char *key, const char *fmt, ...)
{
	char value[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	fprintf(f, "%-*s %s\n", width, key, *value ? value : "-");
}

int
output_json(const ProtobufCMessage *msg)
{
	struct strbuf sb = {0};
	int r = pbjson_encode(msg, PBJSON_PRETTY, &sb);

	if (r >= 0 && fwrite(sb.data, 1, sb.len, stdout) != sb.len)
		r = -EIO;
	strbuf_free(&sb);
	return r;
}

const char *
output_enum(const ProtobufCEnumDescriptor *d, int value)
{
	const char *s = pbjson_enum_name(d, value);

	return s ? s : "unknown";
}

const char *
output_state_color(const char *state, bool tty, char *buf, size_t size)
{
	static const struct {
		const char *state, *color;
	} colors[] = {
		{"running", "32"},  {"ok", "32"},       {"stopped", "33"},  {"warn", "33"},
		{"error", "31"},    {"fail", "31"},     {"creating", "36"}, {"starting", "36"},
		{"stopping", "36"}, {"deleting", "36"},
	};
	for (size_t i = 0; tty && i < ARRAY_SIZE(colors); i++)
		if (streq(colors[i].state, state)) {
			snprintf(buf, size, "\033[%sm%s\033[0m", colors[i].color, state);
			return buf;
		}
	return state;
}
