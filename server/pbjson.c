#include "pbjson.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h> /* isfinite, isinf: macros, no libm */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

/* ---- shared by both directions ------------------------------------------------------------ */

static char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if there is none: overlong
 * forms, surrogates and code points past U+10FFFF are invalid. */
static size_t
utf8_valid_len(const unsigned char *s, size_t n)
{
	static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Length of the prefix all value names of desc share, up to and including its last '_'
 * ("MACHINE_STATE_"), or 0 when there is none or it would leave a name empty. */
static size_t
enum_prefix_len(const ProtobufCEnumDescriptor *desc)
{
	const char *first;
	size_t len;

	if (desc->n_value_names == 0)
		return 0;
	first = desc->values_by_name[0].name;
	len = strlen(first);
	for (unsigned i = 1; i < desc->n_value_names; i++) {
		const char *name = desc->values_by_name[i].name;
		size_t k = 0;

		while (k < len && name[k] == first[k])
			k++;
		len = k;
	}
	while (len > 0 && first[len - 1] != '_')
		len--;
	for (unsigned i = 0; i < desc->n_value_names; i++)
		if (desc->values_by_name[i].name[len] == '\0')
			return 0;
	return len;
}

/* The size of one element of a repeated field: the C type protobuf-c stores. */
static size_t
type_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	default:
		return sizeof(uint32_t); /* 32-bit integers and enums */
	}
}

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void
c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* The "C" locale: numbers keep '.' as decimal point even in a CLI that called setlocale().
 * Made once, never freed; (locale_t)0 if it could not be made. */
static locale_t
c_locale_get(void)
{
	pthread_once(&c_locale_once, c_locale_init);
	return c_locale;
}

/* ---- enum names --------------------------------------------------------------------------- */

/* Lowercased short names of one enum, indexed like desc->values. */
struct enum_names {
	const ProtobufCEnumDescriptor *desc;
	struct enum_names *next;
	const char *names[];
};

/* A memo, not state: one entry per enum descriptor asked for, never changed nor freed once
 * published, so readers walk it without the lock. */
static _Atomic(struct enum_names *) enum_memo;
static pthread_mutex_t enum_memo_lock = PTHREAD_MUTEX_INITIALIZER;

static struct enum_names *
enum_names_find(const ProtobufCEnumDescriptor *desc)
{
	struct enum_names *e = atomic_load_explicit(&enum_memo, memory_order_acquire);

	while (e && e->desc != desc)
		e = e->next;
	return e;
}

static struct enum_names *
enum_names_build(const ProtobufCEnumDescriptor *desc)
{
	size_t prefix = enum_prefix_len(desc);
	size_t size = sizeof(struct enum_names) + desc->n_values * sizeof(char *);
	struct enum_names *e;
	char *p;

	for (unsigned i = 0; i < desc->n_values; i++)
		size += strlen(desc->values[i].name) - prefix + 1;
	e = calloc(1, size);
	if (!e)
		return NULL;
	e->desc = desc;
	p = (char *)&e->names[desc->n_values];
	for (unsigned i = 0; i < desc->n_values; i++) {
		e->names[i] = p;
		for (const char *s = desc->values[i].name + prefix; *s; s++)
			*p++ = ascii_lower(*s);
		*p++ = '\0';
	}
	return e;
}

static const struct enum_names *
enum_names_get(const ProtobufCEnumDescriptor *desc)
{
	struct enum_names *e = enum_names_find(desc);

	if (e)
		return e;
	pthread_mutex_lock(&enum_memo_lock);
	e = enum_names_find(desc);
	if (!e) {
		e = enum_names_build(desc);
		if (e) {
			e->next = atomic_load_explicit(&enum_memo, memory_order_relaxed);
			atomic_store_explicit(&enum_memo, e, memory_order_release);
		}
	}
	pthread_mutex_unlock(&enum_memo_lock);
	return e;
}

const char *
pbjson_enum_name(const ProtobufCEnumDescriptor *desc, int value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
	const struct enum_names *e;

	if (!v)
		return NULL;
	e = enum_names_get(desc);
	return e ? e->names[v - desc->values] : NULL;
}

/* Whether s is name lowercased. */
static bool
lower_eq(const char *name, const char *s)
{
	for (; *name; name++, s++)
		if (*s != ascii_lower(*name))
			return false;
	return *s == '\0';
}

int
pbjson_enum_parse(const ProtobufCEnumDescriptor *desc, const char *name, int *ret_value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, name);
	size_t prefix;

	if (v) {
		*ret_value = v->value;
		return 0;
	}
	prefix = enum_prefix_len(desc);
	for (unsigned i = 0; i < desc->n_value_names; i++) {
		const ProtobufCEnumValueIndex *ix = &desc->values_by_name[i];

		if (lower_eq(ix->name + prefix, name)) {
			*ret_value = desc->values[ix->index].value;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- encoding ----------------------------------------------------------------------------- */

struct enc {
	struct strbuf *out;
	bool pretty;
	unsigned level;
	int r; /* the first error; once set, writes are skipped */
};

static void
enc_put(struct enc *e, const char *s, size_t n)
{
	if (e->r == 0)
		e->r = strbuf_append(e->out, s, n);
}

static void
enc_puts(struct enc *e, const char *s)
{
	enc_put(e, s, strlen(s));
}

static void
enc_newline(struct enc *e)
{
	if (!e->pretty)
		return;
	enc_put(e, "\n", 1);
	for (unsigned i = 0; i < e->level; i++)
		enc_put(e, "  ", 2);
}

/* The JSON escape of an ASCII character that needs one. */
static const char *
escape_char(unsigned char c, char *buf, size_t size)
{
	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	default:
		snprintf(buf, size, "\\u%04x", c);
		return buf;
	}
}

static void
enc_string(struct enc *e, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t start = 0, i = 0;
	char esc[8];

	enc_put(e, "\"", 1);
	while (i < n) {
		size_t len = utf8_valid_len(u + i, n - i);

		if (len && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\') {
			i += len;
			continue;
		}
		enc_put(e, s + start, i - start);
		enc_puts(e, len ? escape_char(u[i], esc, sizeof(esc)) : "\\ufffd");
		start = ++i;
	}
	enc_put(e, s + start, n - start);
	enc_put(e, "\"", 1);
}

static void
enc_base64(struct enc *e, const uint8_t *d, size_t n)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char quad[4];

	enc_put(e, "\"", 1);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		quad[0] = abc[v >> 18 & 63];
		quad[1] = abc[v >> 12 & 63];
		quad[2] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		quad[3] = i + 2 < n ? abc[v & 63] : '=';
		enc_put(e, quad, 4);
	}
	enc_put(e, "\"", 1);
}

static void
enc_enum(struct enc *e, const ProtobufCEnumDescriptor *desc, int32_t value)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
	char buf[64];
	size_t n = 0;

	if (!v) {
		snprintf(buf, sizeof(buf), "%" PRId32, value);
		enc_puts(e, buf);
		return;
	}
	enc_put(e, "\"", 1);
	for (const char *s = v->name + enum_prefix_len(desc); *s; s++) {
		buf[n++] = ascii_lower(*s);
		if (n == sizeof(buf)) {
			enc_put(e, buf, n);
			n = 0;
		}
	}
	enc_put(e, buf, n);
	enc_put(e, "\"", 1);
}

/* The shortest %g form of v that reads back as the same value (for a float: the same float);
 * null when it is not finite. */
static void
format_real(double v, bool is_float, char *buf, size_t size)
{
	locale_t c = c_locale_get(), old = (locale_t)0;

	if (!isfinite(v)) {
		snprintf(buf, size, "null");
		return;
	}
	if (c)
		old = uselocale(c);
	for (int prec = is_float ? 6 : 15; prec <= (is_float ? 9 : 17); prec++) {
		snprintf(buf, size, "%.*g", prec, v);
		if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
			break;
	}
	if (c)
		uselocale(old);
}

static void
format_number(ProtobufCType type, const void *p, char *buf, size_t size)
{
	switch (type) {
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, size, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, size, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, size, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		format_real(*(const float *)p, true, buf, size);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		format_real(*(const double *)p, false, buf, size);
		break;
	default: /* int32, sint32, sfixed32 */
		snprintf(buf, size, "%" PRId32, *(const int32_t *)p);
		break;
	}
}

static void enc_message(struct enc *e, const ProtobufCMessage *msg);

/* Writes one value of field f stored at p: the member itself or one element of it. */
static void
enc_value(struct enc *e, const ProtobufCFieldDescriptor *f, const void *p)
{
	char buf[40];

	if (f->type == PROTOBUF_C_TYPE_STRING) {
		const char *s = *(char *const *)p;

		enc_string(e, s ? s : "", s ? strlen(s) : 0);
	} else if (f->type == PROTOBUF_C_TYPE_BYTES) {
		const ProtobufCBinaryData *b = p;

		enc_base64(e, b->data, b->len);
	} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

		if (m)
			enc_message(e, m);
		else
			enc_puts(e, "null");
	} else if (f->type == PROTOBUF_C_TYPE_ENUM) {
		enc_enum(e, f->descriptor, *(const int32_t *)p);
	} else if (f->type == PROTOBUF_C_TYPE_BOOL) {
		enc_puts(e, *(const protobuf_c_boolean *)p ? "true" : "false");
	} else {
		format_number(f->type, p, buf, sizeof(buf));
		enc_puts(e, buf);
	}
}

static void
enc_array(struct enc *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *msg)
{
	const char *base = (const char *)msg;
	size_t n = *(const size_t *)(base + f->quantifier_offset);
	const char *arr = *(char *const *)(base + f->offset);
	size_t size = type_size(f->type);

	if (n == 0) {
		enc_put(e, "[]", 2);
		return;
	}
	enc_put(e, "[", 1);
	e->level++;
	for (size_t i = 0; i < n; i++) {
		if (i)
			enc_put(e, ",", 1);
		enc_newline(e);
		enc_value(e, f, arr + i * size);
	}
	e->level--;
	enc_newline(e);
	enc_put(e, "]", 1);
}

/* Whether the field is to be written: all are, except the members of a oneof other than the
 * one set and proto2 optionals that are not set. */
static bool
field_present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *msg)
{
	const char *base = (const char *)msg;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->label != PROTOBUF_C_LABEL_OPTIONAL)
		return true;
	if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
		return *(void *const *)(base + f->offset) != NULL;
	return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
}

static void
enc_message(struct enc *e, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *desc = msg->descriptor;
	bool first = true;

	enc_put(e, "{", 1);
	e->level++;
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];

		if (!field_present(f, msg))
			continue;
		if (!first)
			enc_put(e, ",", 1);
		first = false;
		enc_newline(e);
		enc_string(e, f->name, strlen(f->name));
		enc_put(e, ": ", e->pretty ? 2 : 1);
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			enc_array(e, f, msg);
		else
			enc_value(e, f, (const char *)msg + f->offset);
	}
	e->level--;
	if (!first)
		enc_newline(e);
	enc_put(e, "}", 1);
}

int
pbjson_encode(const ProtobufCMessage *msg, unsigned flags, struct strbuf *out)
{
	struct enc e = {.out = out, .pretty = flags & PBJSON_PRETTY};
	size_t old_len = out->len;

	if (msg)
		enc_message(&e, msg);
	else
		enc_puts(&e, "null");
	if (e.pretty)
		enc_put(&e, "\n", 1);
	if (e.r < 0 && out->data) {
		out->len = old_len;
		out->data[old_len] = '\0';
	}
	return e.r;
}

/* ---- decoding: errors --------------------------------------------------------------------- */

/* One step of the path to the value being parsed. */
struct seg {
	const char *name; /* NULL: an array index */
	size_t index;
};

struct parser {
	const char *start, *p, *end;
	struct arena *arena;
	struct err *err;
	unsigned depth, n_path;
	struct seg path[PBJSON_MAX_DEPTH + 1];
};

static void
path_push(struct parser *ps, const char *name, size_t index)
{
	ps->path[ps->n_path++] = (struct seg){.name = name, .index = index};
}

static void
path_pop(struct parser *ps)
{
	ps->n_path--;
}

/* Renders the path as JSON readers write it ("ports[1].host_port") or, wire, as Status.field
 * carries it ("ports.1.host_port"). */
static void
path_render(const struct parser *ps, bool wire, char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < ps->n_path && n < size; i++) {
		const struct seg *s = &ps->path[i];
		int w;

		if (s->name)
			w = snprintf(buf + n, size - n, "%s%s", n ? "." : "", s->name);
		else
			w = snprintf(buf + n, size - n, wire ? ".%zu" : "[%zu]", s->index);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static int fail(struct parser *ps, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sets the error for the value being parsed: "<path>: <message>". Returns -errnum. */
static int
fail(struct parser *ps, int errnum, const char *fmt, ...)
{
	char field[sizeof(ps->err->field)], where[256], msg[512];
	va_list ap;

	path_render(ps, true, field, sizeof(field));
	path_render(ps, false, where, sizeof(where));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(ps->err, ERR_INVALID, field, errnum, "%s%s%s", where, *where ? ": " : "",
		       msg);
}

static int
fail_syntax(struct parser *ps, const char *what)
{
	if (ps->p >= ps->end)
		return fail(ps, EINVAL, "invalid json: unexpected end of input");
	return fail(ps, EINVAL, "invalid json at byte %zu: %s", (size_t)(ps->p - ps->start), what);
}

/* ---- decoding: tokens --------------------------------------------------------------------- */

/* Skips whitespace; returns the next byte or -1 at the end. */
static int
next_char(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
	return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

static bool
is_number_start(int c)
{
	return c == '-' || (c >= '0' && c <= '9');
}

/* What a value starting with c is, for type errors. */
static const char *
token_kind(int c)
{
	switch (c) {
	case '"':
		return "string";
	case '{':
		return "object";
	case '[':
		return "array";
	case 't':
	case 'f':
		return "boolean";
	case 'n':
		return "null";
	default:
		return is_number_start(c) ? "number" : NULL;
	}
}

static int
fail_type(struct parser *ps, const char *expected)
{
	const char *got = token_kind(next_char(ps));

	if (!got)
		return fail_syntax(ps, "unexpected character");
	return fail(ps, EINVAL, "expected %s, got %s", expected, got);
}

static const char *
type_name(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return "uint32";
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return "int64";
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return "uint64";
	case PROTOBUF_C_TYPE_FLOAT:
		return "float";
	case PROTOBUF_C_TYPE_DOUBLE:
		return "double";
	case PROTOBUF_C_TYPE_BOOL:
		return "boolean";
	case PROTOBUF_C_TYPE_STRING:
		return "string";
	case PROTOBUF_C_TYPE_BYTES:
		return "base64 string";
	case PROTOBUF_C_TYPE_MESSAGE:
		return "object";
	default:
		return "int32";
	}
}

static int
fail_field_type(struct parser *ps, const ProtobufCFieldDescriptor *f)
{
	char what[128];

	if (f->type == PROTOBUF_C_TYPE_ENUM)
		snprintf(what, sizeof(what), "%s name or number",
			 ((const ProtobufCEnumDescriptor *)f->descriptor)->short_name);
	else
		snprintf(what, sizeof(what), "%s", type_name(f->type));
	return fail_type(ps, what);
}

/* Consumes the literal word (true, false, null). */
static int
literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word), avail = (size_t)(ps->end - ps->p);

	if (avail < n && memcmp(ps->p, word, avail) == 0) {
		ps->p = ps->end;
		return fail_syntax(ps, "truncated literal");
	}
	if (avail < n || memcmp(ps->p, word, n) != 0)
		return fail_syntax(ps, "invalid literal");
	ps->p += n;
	return 0;
}

/* Opens an object or array (ps->p at its bracket), counting the nesting. */
static int
depth_enter(struct parser *ps)
{
	if (ps->depth >= PBJSON_MAX_DEPTH)
		return fail(ps, EMSGSIZE, "nesting deeper than %d", PBJSON_MAX_DEPTH);
	ps->depth++;
	ps->p++;
	return 0;
}

/* After a member or element: 1 on ',' (another follows), 0 on the closing bracket. */
static int
list_next(struct parser *ps, char close)
{
	int c = next_char(ps);

	if (c == ',') {
		ps->p++;
		return 1;
	}
	if (c != close)
		return fail_syntax(ps,
				   close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
	ps->p++;
	ps->depth--;
	return 0;
}

/* ---- decoding: strings -------------------------------------------------------------------- */

/* Finds the closing quote of the string at ps->p; *ret_raw is the byte count between quotes,
 * at least what the string decodes to. */
static int
string_span(struct parser *ps, size_t *ret_raw)
{
	const char *q = ps->p + 1;

	while (q < ps->end && *q != '"') {
		if (*q == '\\' && q + 1 < ps->end)
			q++;
		q++;
	}
	if (q >= ps->end) {
		ps->p = ps->end;
		return fail_syntax(ps, "unterminated string");
	}
	*ret_raw = (size_t)(q - ps->p - 1);
	return 0;
}

static size_t
utf8_put(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		d[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (char)(0xc0 | cp >> 6);
		d[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (char)(0xe0 | cp >> 12);
		d[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		d[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | cp >> 18);
	d[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	d[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	d[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Reads 4 hex digits; stops at the first other byte, so never past the closing quote. */
static int
hex4(const char *s, uint32_t *ret)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];
		uint32_t d;

		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (uint32_t)((c | 0x20) - 'a' + 10);
		else
			return -EINVAL;
		v = v << 4 | d;
	}
	*ret = v;
	return 0;
}

/* Decodes \uXXXX (ps->p at the backslash), joining a surrogate pair into one code point. */
static int
unicode_escape(struct parser *ps, uint32_t *ret)
{
	const char *q = ps->p;
	uint32_t hi = 0, lo = 0;

	if (hex4(q + 2, &hi) < 0)
		return fail_syntax(ps, "invalid \\u escape");
	q += 6;
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return fail_syntax(ps, "lone surrogate in \\u escape");
	if (hi >= 0xd800 && hi <= 0xdbff) {
		if (q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) < 0 || lo < 0xdc00 ||
		    lo > 0xdfff)
			return fail_syntax(ps, "lone surrogate in \\u escape");
		q += 6;
		hi = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (hi == 0)
		return fail_syntax(ps, "\\u0000 is not allowed in strings");
	ps->p = q;
	*ret = hi;
	return 0;
}

/* Decodes the escape at ps->p (a backslash) onto dst + *n. */
static int
escape_decode(struct parser *ps, char *dst, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *hit = ps->p[1] ? strchr(from, ps->p[1]) : NULL;
	uint32_t cp = 0;
	int r;

	if (hit) {
		dst[(*n)++] = to[hit - from];
		ps->p += 2;
		return 0;
	}
	if (ps->p[1] != 'u')
		return fail_syntax(ps, "invalid escape");
	r = unicode_escape(ps, &cp);
	if (r < 0)
		return r;
	*n += utf8_put(dst + *n, cp);
	return 0;
}

/* Decodes the string at ps->p, which string_span() checked, into dst (room for the raw length
 * plus a NUL); leaves ps->p after the closing quote. */
static int
string_decode(struct parser *ps, char *dst, size_t *ret_len)
{
	size_t n = 0, len;
	int r = 0;

	ps->p++;
	while (r == 0 && *ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p;

		if (c == '\\') {
			r = escape_decode(ps, dst, &n);
		} else if (c < 0x20) {
			r = fail_syntax(ps, "control character in string");
		} else {
			len = utf8_valid_len((const unsigned char *)ps->p,
					     (size_t)(ps->end - ps->p));
			if (!len)
				return fail_syntax(ps, "invalid utf-8 in string");
			memcpy(dst + n, ps->p, len);
			n += len;
			ps->p += len;
		}
	}
	if (r < 0)
		return r;
	ps->p++;
	dst[n] = '\0';
	*ret_len = n;
	return 0;
}

/* Parses a string value into the arena. */
static int
parse_string(struct parser *ps, char **ret, size_t *ret_len)
{
	size_t raw = 0, n = 0;
	char *s;
	int r = string_span(ps, &raw);

	if (r < 0)
		return r;
	s = arena_alloc(ps->arena, raw + 1);
	r = string_decode(ps, s, &n);
	if (r < 0)
		return r;
	if (n > PBJSON_MAX_STRING)
		return fail(ps, EMSGSIZE, "string longer than 1 MiB");
	*ret = s;
	*ret_len = n;
	return 0;
}

/* Parses a member name and its ':' into buf; longer names match no field anyway. */
static int
parse_key(struct parser *ps, char *buf, size_t size)
{
	size_t raw = 0, n = 0;
	int r;

	if (next_char(ps) != '"')
		return fail_syntax(ps, "expected a field name");
	r = string_span(ps, &raw);
	if (r < 0)
		return r;
	if (raw >= size)
		return fail(ps, EINVAL, "field name longer than %zu bytes", size - 1);
	r = string_decode(ps, buf, &n);
	if (r < 0)
		return r;
	if (next_char(ps) != ':')
		return fail_syntax(ps, "expected ':'");
	ps->p++;
	return 0;
}

static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard padded base64 in place (the output is shorter than the input). */
static int
base64_decode(char *s, size_t len, size_t *ret_len)
{
	size_t out = 0;

	if (len % 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int pad = 0;

		for (size_t k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + k];
			int d = 0;

			if (c == '=' && k >= 2 && i + 4 == len)
				pad++;
			else if (pad || (d = base64_value(c)) < 0)
				return -EINVAL;
			v = v << 6 | (uint32_t)d;
		}
		s[out++] = (char)(v >> 16);
		if (pad < 2)
			s[out++] = (char)(v >> 8 & 0xff);
		if (pad < 1)
			s[out++] = (char)(v & 0xff);
	}
	*ret_len = out;
	return 0;
}

/* ---- decoding: numbers -------------------------------------------------------------------- */

static const char *
skip_digits(const char *q, const char *end)
{
	while (q < end && *q >= '0' && *q <= '9')
		q++;
	return q;
}

/* Checks the JSON number at ps->p; *ret_end is where it ends, *ret_is_int says it has neither
 * fraction nor exponent. */
static int
number_scan(struct parser *ps, const char **ret_end, bool *ret_is_int)
{
	const char *q = ps->p, *end = ps->end, *d;

	if (*q == '-')
		q++;
	d = q;
	q = skip_digits(q, end);
	if (q == d || (*d == '0' && q - d > 1))
		return fail_syntax(ps, "invalid number");
	*ret_is_int = true;
	if (q < end && *q == '.') {
		d = ++q;
		q = skip_digits(q, end);
		*ret_is_int = false;
		if (q == d)
			return fail_syntax(ps, "invalid number");
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		d = q;
		q = skip_digits(q, end);
		*ret_is_int = false;
		if (q == d)
			return fail_syntax(ps, "invalid number");
	}
	*ret_end = q;
	return 0;
}

/* How much of the number [ps->p, end) an error message quotes. */
static int
token_width(const struct parser *ps, const char *end)
{
	return end - ps->p < 40 ? (int)(end - ps->p) : 40;
}

/* Reads the number [ps->p, end) with strtod (or strtof) in the C locale. */
static int
number_real(struct parser *ps, const char *end, bool is_float, double *ret)
{
	char buf[128];
	size_t n = (size_t)(end - ps->p);
	locale_t c = c_locale_get();

	if (n >= sizeof(buf))
		return fail(ps, EINVAL, "number longer than %zu characters", sizeof(buf) - 1);
	memcpy(buf, ps->p, n);
	buf[n] = '\0';
	if (is_float)
		*ret = c ? strtof_l(buf, NULL, c) : strtof(buf, NULL);
	else
		*ret = c ? strtod_l(buf, NULL, c) : strtod(buf, NULL);
	return 0;
}

static int
parse_real(struct parser *ps, const ProtobufCFieldDescriptor *f, void *dst)
{
	bool is_float = f->type == PROTOBUF_C_TYPE_FLOAT, is_int = false;
	const char *end = NULL;
	double v = 0;
	int r = number_scan(ps, &end, &is_int);

	if (r == 0)
		r = number_real(ps, end, is_float, &v);
	if (r < 0)
		return r;
	if (isinf(v))
		return fail(ps, EINVAL, "%.*s is out of range for %s", token_width(ps, end), ps->p,
			    type_name(f->type));
	if (is_float)
		*(float *)dst = (float)v;
	else
		*(double *)dst = v;
	ps->p = end;
	return 0;
}

/* The magnitude of the digits [q, end); -ERANGE past 2^64 - 1. */
static int
digits_value(const char *q, const char *end, uint64_t *ret)
{
	uint64_t v = 0;

	for (; q < end; q++) {
		unsigned d = (unsigned)(*q - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

/* Stores sign and magnitude into the field's C type; -ERANGE when it does not fit. */
static int
integer_store(ProtobufCType type, bool neg, uint64_t mag, void *dst)
{
	bool is_32 = type_size(type) == 4;
	bool is_unsigned = type == PROTOBUF_C_TYPE_UINT32 || type == PROTOBUF_C_TYPE_FIXED32 ||
			   type == PROTOBUF_C_TYPE_UINT64 || type == PROTOBUF_C_TYPE_FIXED64;
	uint64_t max;
	int64_t sv;

	neg = neg && mag;
	if (is_unsigned)
		max = neg ? 0 : is_32 ? UINT32_MAX : UINT64_MAX;
	else
		max = (is_32 ? (uint64_t)INT32_MAX : (uint64_t)INT64_MAX) + neg;
	if (mag > max)
		return -ERANGE;
	sv = !neg ? 0 : mag > INT64_MAX ? INT64_MIN : -(int64_t)mag;
	if (is_32)
		*(uint32_t *)dst = neg ? (uint32_t)(int32_t)sv : (uint32_t)mag;
	else
		*(uint64_t *)dst = neg ? (uint64_t)sv : mag;
	return 0;
}

/* Parses an integer field: an integer, or a fraction or exponent form with an integral value. */
static int
parse_integer(struct parser *ps, const ProtobufCFieldDescriptor *f, void *dst)
{
	const char *end = NULL;
	bool is_int = false, neg = *ps->p == '-';
	uint64_t mag = 0;
	double v = 0;
	int r = number_scan(ps, &end, &is_int);

	if (r < 0)
		return r;
	if (is_int) {
		r = digits_value(ps->p + neg, end, &mag);
	} else {
		r = number_real(ps, end, false, &v);
		if (r < 0)
			return r;
		v = neg ? -v : v;
		if (v < 18446744073709551616.0 && (double)(uint64_t)v != v)
			return fail(ps, EINVAL, "expected %s, got a fractional number",
				    type_name(f->type));
		r = v < 18446744073709551616.0 ? 0 : -ERANGE;
		mag = r == 0 ? (uint64_t)v : 0;
	}
	if (r == 0)
		r = integer_store(f->type, neg, mag, dst);
	if (r < 0)
		return fail(ps, EINVAL, "%.*s is out of range for %s", token_width(ps, end), ps->p,
			    f->type == PROTOBUF_C_TYPE_ENUM ? "an enum" : type_name(f->type));
	ps->p = end;
	return 0;
}

/* ---- decoding: values and messages -------------------------------------------------------- */

static int parse_object(struct parser *ps, const ProtobufCMessageDescriptor *desc,
			ProtobufCMessage **ret);

static int
parse_enum(struct parser *ps, const ProtobufCFieldDescriptor *f, void *dst)
{
	const ProtobufCEnumDescriptor *desc = f->descriptor;
	int c = next_char(ps), value = 0;
	size_t n = 0;
	char *s = NULL;
	int r;

	if (is_number_start(c))
		return parse_integer(ps, f, dst);
	if (c != '"')
		return fail_field_type(ps, f);
	r = parse_string(ps, &s, &n);
	if (r < 0)
		return r;
	if (pbjson_enum_parse(desc, s, &value) < 0)
		return fail(ps, EINVAL, "unknown %s value '%.64s'", desc->short_name, s);
	*(int32_t *)dst = value;
	return 0;
}

static int
parse_bytes(struct parser *ps, ProtobufCBinaryData *dst)
{
	size_t n = 0, len = 0;
	char *s = NULL;
	int r = parse_string(ps, &s, &n);

	if (r < 0)
		return r;
	if (base64_decode(s, n, &len) < 0)
		return fail(ps, EINVAL, "invalid base64");
	dst->data = len ? (uint8_t *)s : NULL;
	dst->len = len;
	return 0;
}

static int
parse_bool(struct parser *ps, protobuf_c_boolean *dst)
{
	*dst = *ps->p == 't';
	return literal(ps, *dst ? "true" : "false");
}

/* Parses one non-null value of field f into dst: the member or one element of it. */
static int
parse_value(struct parser *ps, const ProtobufCFieldDescriptor *f, void *dst)
{
	int c = next_char(ps);
	size_t n;

	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
		return c == '{' ? parse_object(ps, f->descriptor, dst) : fail_field_type(ps, f);
	case PROTOBUF_C_TYPE_STRING:
		return c == '"' ? parse_string(ps, dst, &n) : fail_field_type(ps, f);
	case PROTOBUF_C_TYPE_BYTES:
		return c == '"' ? parse_bytes(ps, dst) : fail_field_type(ps, f);
	case PROTOBUF_C_TYPE_BOOL:
		return c == 't' || c == 'f' ? parse_bool(ps, dst) : fail_field_type(ps, f);
	case PROTOBUF_C_TYPE_ENUM:
		return parse_enum(ps, f, dst);
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		return is_number_start(c) ? parse_real(ps, f, dst) : fail_field_type(ps, f);
	default:
		return is_number_start(c) ? parse_integer(ps, f, dst) : fail_field_type(ps, f);
	}
}

/* One array element; null is the type's default (an empty message, an empty string, 0). */
static int
parse_element(struct parser *ps, const ProtobufCFieldDescriptor *f, void *dst)
{
	if (next_char(ps) != 'n')
		return parse_value(ps, f, dst);
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		*(void **)dst = arena_msg(ps->arena, f->descriptor);
	else if (f->type == PROTOBUF_C_TYPE_STRING)
		*(char **)dst = arena_strdup(ps->arena, "");
	return literal(ps, "null");
}

/* Doubles the capacity of an array being parsed; the old copy stays in the arena. */
static void *
array_grow(struct arena *a, void *arr, size_t n, size_t *cap, size_t size)
{
	void *grown;

	*cap = *cap ? *cap * 2 : 4;
	grown = arena_alloc(a, *cap * size);
	if (n)
		memcpy(grown, arr, n * size);
	return grown;
}

static int
parse_array(struct parser *ps, const ProtobufCFieldDescriptor *f, ProtobufCMessage *msg)
{
	size_t size = type_size(f->type), n = 0, cap = 0;
	char *arr = NULL;
	int r;

	if (next_char(ps) != '[')
		return fail_type(ps, "array");
	r = depth_enter(ps);
	if (r < 0)
		return r;
	r = next_char(ps) == ']' ? list_next(ps, ']') : 1;
	while (r > 0) {
		if (n == cap)
			arr = array_grow(ps->arena, arr, n, &cap, size);
		path_push(ps, NULL, n);
		r = parse_element(ps, f, arr + n * size);
		path_pop(ps);
		if (r < 0)
			return r;
		n++;
		r = list_next(ps, ']');
	}
	if (r < 0)
		return r;
	*(size_t *)((char *)msg + f->quantifier_offset) = n;
	*(void **)((char *)msg + f->offset) = arr;
	return 0;
}

/* Parses the value of member f; null leaves the default (and a oneof or optional unset). */
static int
parse_field(struct parser *ps, const ProtobufCFieldDescriptor *f, ProtobufCMessage *msg,
	    uint8_t *seen)
{
	size_t i = (size_t)(f - msg->descriptor->fields);
	char *base = (char *)msg;

	if (seen[i / 8] & (1u << i % 8))
		return fail(ps, EINVAL, "duplicate field");
	seen[i / 8] |= (uint8_t)(1u << i % 8);
	if (next_char(ps) == 'n')
		return literal(ps, "null");
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return parse_array(ps, f, msg);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = (uint32_t *)(base + f->quantifier_offset);

		if (*which)
			return fail(ps, EINVAL, "another field of the same oneof is already set");
		*which = f->id;
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
		   f->type != PROTOBUF_C_TYPE_MESSAGE) {
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	}
	return parse_value(ps, f, base + f->offset);
}

static int
parse_member(struct parser *ps, ProtobufCMessage *msg, uint8_t *seen)
{
	const ProtobufCFieldDescriptor *f;
	char key[256];
	int r = parse_key(ps, key, sizeof(key));

	if (r < 0)
		return r;
	f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, key);
	path_push(ps, f ? f->name : key, 0);
	r = f ? parse_field(ps, f, msg, seen) : fail(ps, EINVAL, "unknown field");
	path_pop(ps);
	return r;
}

/* Parses the object at ps->p into a new message of type desc. */
static int
parse_object(struct parser *ps, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret)
{
	ProtobufCMessage *msg = arena_msg(ps->arena, desc);
	uint8_t *seen = arena_alloc(ps->arena, desc->n_fields / 8 + 1);
	int r = depth_enter(ps);

	if (r < 0)
		return r;
	r = next_char(ps) == '}' ? list_next(ps, '}') : 1;
	while (r > 0) {
		r = parse_member(ps, msg, seen);
		if (r < 0)
			return r;
		r = list_next(ps, '}');
	}
	if (r < 0)
		return r;
	*ret = msg;
	return 0;
}

int
pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
	      struct arena *arena, ProtobufCMessage **ret, struct err *err)
{
	struct parser ps = {.arena = arena, .err = err};
	ProtobufCMessage *msg = NULL;
	int c, r;

	if (len > PBJSON_MAX_INPUT)
		return err_set(err, ERR_INVALID, NULL, EMSGSIZE, "json input larger than 4 MiB");
	ps.start = ps.p = json ? json : "";
	ps.end = ps.start + len;
	c = next_char(&ps);
	if (c == '{')
		r = parse_object(&ps, desc, &msg);
	else if (c == 'n')
		r = literal(&ps, "null");
	else
		r = fail_type(&ps, "object");
	if (r == 0 && !msg)
		msg = arena_msg(arena, desc);
	if (r == 0 && next_char(&ps) != -1)
		r = fail_syntax(&ps, "trailing data after the value");
	if (r < 0)
		return r;
	*ret = msg;
	return 0;
}
