/* The DNS responder on each network's gateway address: machines resolve each other as <machine>
 * and <machine>.<network>.sistemo (A records, 5 s TTL); other names go to the host's resolvers.
 * One thread serves UDP and TCP on every address; the packet functions below do no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DNS_TTL_S 5
#define DNS_NAME_MAX 253    /* dotted, without the trailing dot */
#define DNS_MAX_UPSTREAMS 8 /* more nameservers than this are ignored */

enum dns_rcode {
	DNS_NOERROR = 0,
	DNS_FORMERR = 1,
	DNS_SERVFAIL = 2,
	DNS_NXDOMAIN = 3,
	DNS_NOTIMP = 4,
};

enum {
	DNS_TYPE_A = 1,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_ANY = 255,
	DNS_CLASS_IN = 1,
	DNS_CLASS_ANY = 255
};

/* Resolves a name for a client. name: lowercased, no trailing dot. client: the asking machine's
 * IPv4 (host order). Returns 1 and *ret (host order) when found, 0 when the name is ours but
 * unknown (NXDOMAIN), -1 when it is not ours (forwarded). Runs on the server's thread. */
typedef int (*dns_lookup_fn)(void *ud, const char *name, uint32_t client, uint32_t *ret);

/* The one question of a query. */
struct dns_query {
	uint16_t id;
	bool rd; /* recursion desired: echoed */
	uint16_t qtype, qclass;
	char name[DNS_NAME_MAX + 1]; /* lowercased, dotted, no trailing dot; "" for the root */
	bool plain;                  /* no label holds a dot, a space or a control byte */
	uint8_t qname[255];          /* the name in wire form, uncompressed, case kept: echoed */
	size_t qname_len;
};

/* Parses a query from a client. 0: *ret is filled. -EINVAL: drop it (shorter than a header, or a
 * response). -EOPNOTSUPP: an opcode other than QUERY (answer NOTIMP). -EBADMSG: malformed
 * (answer FORMERR): not one question, a label or name too long, truncated, a compression
 * pointer that leaves the packet or loops (pointers are followed at most 16 times). */
int dns_query_parse(const uint8_t *pkt, size_t len, struct dns_query *ret);

/* Writes the reply to q into buf: rcode, and an A record for *addr (host order) when addr is not
 * NULL. Returns its length, or -ENOSPC (287 bytes always suffice). */
int dns_reply_build(const struct dns_query *q, enum dns_rcode rcode, const uint32_t *addr,
		    uint8_t *buf, size_t size);

/* Writes a header-only reply with rcode (FORMERR, NOTIMP) to a packet of at least 12 bytes;
 * returns 12, or -EINVAL / -ENOSPC. */
int dns_reply_error(const uint8_t *pkt, size_t len, enum dns_rcode rcode, uint8_t *buf,
		    size_t size);

/* Decides a parsed query: writes the answer into buf (A, NXDOMAIN, or NODATA for other types)
 * and returns its length, or returns 0 when the name is not ours and must be forwarded, or
 * -ENOSPC. Names under "sistemo." are always ours; the lookup decides for the others. */
int dns_answer(const struct dns_query *q, dns_lookup_fn lookup, void *ud, uint32_t client,
	       uint8_t *buf, size_t size);

/* Reads the IPv4 nameservers (host order, duplicates dropped) of a resolv.conf into out, at most
 * max. Returns how many, or a negative errno when the file cannot be read. */
int dns_upstreams_from_resolv_conf(const char *path, uint32_t *out, size_t max);

struct dns_server;

/* Creates a server and starts its thread; it listens nowhere yet. lookup(ud, ...) is called on
 * that thread: it must not wait for a lock held around the dns_server_* calls below. */
int dns_server_new(dns_lookup_fn lookup, void *ud, struct dns_server **ret, struct err *err);

/* Serves UDP and TCP on addr:port (host order; port 0 picks a free one). Binds with
 * IP_FREEBIND, so the address need not be up yet. Returns the port; listening again on the
 * same address and port is a no-op, another port ERR_EXISTS. Safe from any thread. */
int dns_server_listen(struct dns_server *s, uint32_t addr, uint16_t port, struct err *err);

/* Stops serving addr: its sockets and TCP connections are closed when this returns (it waits
 * up to 5 s for the server's thread). Returns 0, or -ENOENT when not listening there. */
int dns_server_unlisten(struct dns_server *s, uint32_t addr);

/* Sets the resolvers that names not ours are forwarded to (host order, port 53; copied), in
 * the order to try them; queries arriving after it returns use them (it waits like unlisten).
 * Addresses the server listens on are skipped, so it never forwards to itself. A query goes to
 * the next one after 1 s without an answer and is forgotten after 5 s; 1024 may wait, 256 per
 * client. With no resolver, or past those bounds, the client gets SERVFAIL. */
void dns_server_set_upstreams(struct dns_server *s, const uint32_t *addrs, size_t n);

/* Stops the thread and closes every socket. Accepts NULL. */
void dns_server_free(struct dns_server *s);
