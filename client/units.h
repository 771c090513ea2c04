/* Parsers and formatters for the CLI's arguments: sizes in MB, port specs, bounded integers,
 * and the short sizes and ages printed in tables. Parsers take the flag's name without dashes
 * (`field`: "memory"), set it as the error's field and start the message with "--memory: ". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* One --expose value: host_ip is "" when the port listens on every address. */
struct port_spec {
	char host_ip[46]; /* INET6_ADDRSTRLEN, without brackets */
	unsigned host_port, machine_port;
	bool udp;
};

/* "512" (MB), "512M", "512MB", "512MiB", "2G", "2GB", "2GiB", "1T", "1TB", "1TiB" (units in any
 * case, 1G = 1024 MB) into MB. Whole numbers above 0 only; ERR_INVALID otherwise. */
int units_parse_size_mb(const char *field, const char *s, uint64_t *ret_mb, struct err *err);

/* "80", "8080:3000", "53/udp", "53:53/udp", "127.0.0.1:8443:443[/tcp]", "[::1]:8443:443":
 * host port, machine port (the host port when absent), host ip and protocol (tcp by default). */
int units_parse_port_spec(const char *field, const char *s, struct port_spec *ret, struct err *err);

/* A whole number from min to max (decimal digits only). */
int units_parse_uint(const char *field, const char *s, unsigned min, unsigned max, unsigned *ret,
		     struct err *err);

/* A host port for unexpose: "8080" or "8080/udp" ("/tcp" is the default). */
int units_parse_host_port(const char *field, const char *s, unsigned *ret_port, bool *ret_udp,
			  struct err *err);

/* 512 -> "512M", 2048 -> "2G", 1536 -> "1.5G", 1048576 -> "1T" (at most one decimal). */
void units_format_mb(uint64_t mb, char *buf, size_t size);

/* Time since unix_ms: "just now", "42s ago", "5m ago", "3h ago", "2d ago"; "-" when 0. */
void units_format_age(int64_t unix_ms, int64_t now_ms, char *buf, size_t size);
