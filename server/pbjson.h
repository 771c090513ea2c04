/* Converts any protobuf-c message to JSON and back, driven only by its descriptor: the CLI's
 * "-o json" and the HTTP/JSON gateway. No per-message code.
 *
 * The mapping is a stable interface (scripts read it):
 * - Keys are the proto field names (snake_case), in field-number order.
 * - Every field is emitted, zero values included, so keys are stable. Exception: a field with
 *   presence that is not present is omitted (a oneof member other than the one set, a proto2
 *   optional without its has_ flag).
 * - int32, uint32, int64, uint64 (and their sint/fixed forms) are JSON numbers, written exactly.
 *   64-bit values are numbers, not strings as in proto3's canonical JSON: ours (sizes, ids,
 *   unix ms) stay below 2^53, where every JSON reader is exact.
 * - double and float are numbers in the shortest form that reads back to the same value;
 *   NaN and infinities are null.
 * - bool is true or false.
 * - string is a JSON string: '"', '\' and control characters are escaped (\b \f \n \r \t,
 *   others as \u001f, lowercase hex); valid UTF-8 passes through, each byte of invalid UTF-8
 *   becomes \ufffd.
 * - bytes is a base64 string (standard alphabet, with '=' padding).
 * - enum is the value name lowercased, without the prefix all its values share:
 *   MACHINE_STATE_RUNNING -> "running", PROTOCOL_UDP -> "udp", INVALID_ARGUMENT (Code, no
 *   shared prefix) -> "invalid_argument". A number with no name is written as the number.
 * - message is an object, a NULL submessage is null; repeated is an array, [] when empty.
 * - Compact output has no whitespace; PBJSON_PRETTY indents by 2 spaces, puts each member and
 *   element on its own line, uses ": " after keys and ends with a newline.
 *
 * Decoding is strict JSON (RFC 8259) into the same mapping: unknown or duplicate keys, type
 * mismatches (no numbers in strings, no NaN) and out-of-range numbers are errors naming the
 * field ("ports[1].host_port"); strings must be valid UTF-8 without \u0000; bytes must be padded
 * standard base64. Also accepted: an enum's full name ("PROTOCOL_UDP") or its number (any
 * int32: enums are open); an integral number written with a fraction or exponent (1e3, 2.0) for
 * integer fields; null for any field or element, meaning its default (an unset oneof member).
 * Limits: input 4 MiB, nesting 32 objects and arrays, strings 1 MiB once decoded. */
#pragma once

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "arena.h"
#include "err.h"
#include "strbuf.h"

#define PBJSON_MAX_INPUT (4u << 20)
#define PBJSON_MAX_DEPTH 32
#define PBJSON_MAX_STRING (1u << 20)

enum { PBJSON_PRETTY = 1 };

/* Appends msg as JSON to out. Returns 0 or -ENOMEM (out is then left as it was). */
int pbjson_encode(const ProtobufCMessage *msg, unsigned flags, struct strbuf *out);

/* Parses json (len bytes, no NUL needed) into a new message of type desc allocated in arena;
 * *ret is set only on success. On bad input returns -EINVAL (-EMSGSIZE past a limit) and sets
 * err: ERR_INVALID, field = the path in wire form ("ports.1.host_port"), message starting with
 * the path in JSON form ("ports[1].host_port: unknown field"). */
int pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
		  struct arena *arena, ProtobufCMessage **ret, struct err *err);

/* The short JSON name of an enum value ("running"), or NULL if value has no name (or out of
 * memory). The string lives as long as the process. Also used by the CLI's tables. */
const char *pbjson_enum_name(const ProtobufCEnumDescriptor *desc, int value);

/* The inverse, for CLI flags and filters: accepts the short name or the full name
 * ("running", "MACHINE_STATE_RUNNING"). Returns 0 or -EINVAL. */
int pbjson_enum_parse(const ProtobufCEnumDescriptor *desc, const char *name, int *ret_value);
