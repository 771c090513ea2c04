/* Networks as the daemon keeps them: the default network (sistemo0, from bridge_subnet) and
 * named networks (br-<name>, a /24 each), their bridges, the nftables ruleset rebuilt from
 * SQLite, exposed ports, machine policies and the DNS names machines resolve each other by.
 * Every change is recorded in SQLite and applied to the kernel in one nftables batch. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct daemon;
struct machine_info;
struct strbuf;

#define NET_NAME_MAX 12 /* "br-" + 12 fits IFNAMSIZ */

struct net {
	char name[32];   /* "default" or the named network */
	char bridge[16]; /* "sistemo0", "br-<name>" */
	char subnet_text[32];
	uint32_t subnet; /* host order */
	unsigned prefix;
	uint32_t gateway;
	char mode[16]; /* bridge, isolated, none: the default for machines deployed on it */
	bool is_default;
	int64_t created_ms;
};

/* One exposed port as the API gives it. */
struct net_port {
	char host_ip[16];      /* "" for every host address */
	unsigned host_port;    /* 1-65535 */
	unsigned machine_port; /* 1-65535 */
	char protocol[4];      /* "tcp", "udp" */
};

/* A machine's network policy, as text (what SQLite keeps and the API shows). */
struct net_policy {
	const char *mode;         /* bridge, isolated, none; "" or NULL: the network's default */
	const char *allow_from;   /* comma-separated machine or network names; "": anyone */
	const char *egress_allow; /* comma-separated ADDR[/PREFIX][:PORT]; "": everything */
};

/* Finds a network: "", "default" or "sistemo0" is the default one. ERR_NOT_FOUND otherwise. */
int net_resolve(struct daemon *d, const char *ref, struct net *ret, struct err *err);

/* Creates a named network: checks the name, takes the given subnet or the first free /24 of
 * 10.201-254.0.0, refuses one overlapping the default network, another network or an address
 * of the host, records it, creates its bridge and rebuilds the ruleset. Rolls back on
 * failure, last step first. */
int net_create(struct daemon *d, const char *name, const char *subnet, const char *mode,
	       struct net *ret, struct err *err);

/* Deletes a named network no machine uses: its bridge, its rules, its record. */
int net_delete(struct daemon *d, const char *name, struct net *ret, struct err *err);

/* Sets a named network's default mode. */
int net_set_mode(struct daemon *d, const char *name, const char *mode, struct net *ret,
		 struct err *err);

/* At daemon start: forwarding on, every recorded network's bridge (with route_localnet),
 * the ruleset rebuilt from SQLite (so a crash never leaves stale rules), and the DNS
 * responder on every gateway. */
int net_host_start(struct daemon *d, struct err *err);

/* At daemon stop: the DNS responder goes; bridges and rules stay for the running machines. */
void net_host_stop(struct daemon *d);

/* Rebuilds the whole ruleset from SQLite in one batch. */
int net_apply(struct daemon *d, struct err *err);

/* The ruleset, readable. */
int net_rules_text(struct daemon *d, struct strbuf *out, struct err *err);

/* Checks one port rule: ports in range, protocol tcp or udp, host_ip an IPv4 address of the
 * host (or 127.0.0.1); err names the value and what is allowed. */
int net_port_check(const struct net_port *p, struct err *err);

/* net_port_check, then: no machine holds the host port (ERR_EXISTS naming it) and no host
 * service listens on it (ERR_EXISTS). */
int net_port_available(struct daemon *d, const struct net_port *p, struct err *err);

/* Checks a policy: mode, allow_from names that exist, egress_allow entries that parse. */
int net_policy_check(struct daemon *d, const struct net_policy *p, struct err *err);

/* Exposes a port of a machine: refused when another machine holds the host port (naming it)
 * or a host service listens on it; recorded, and in the kernel at once when it runs. */
int net_expose(struct daemon *d, const struct machine_info *m, const struct net_port *p,
	       struct err *err);

/* Removes an exposed port: from the kernel and the record. */
int net_unexpose(struct daemon *d, const struct machine_info *m, unsigned host_port,
		 const char *protocol, struct err *err);

/* Replaces a machine's policy and applies it. */
int net_set_policy(struct daemon *d, const struct machine_info *m, const struct net_policy *p,
		   struct err *err);

/* A machine came up (its ports and policy go into the kernel) or went down (they leave it;
 * the records stay). */
int net_machine_up(struct daemon *d, const struct machine_info *m, struct err *err);
void net_machine_down(struct daemon *d, const struct machine_info *m);

/* False when the machine's mode (or its network's) is none: it boots without a NIC, and exec,
 * ssh and ping, which go over SSH, cannot reach it. */
bool net_machine_has_nic(struct daemon *d, const struct machine_info *m);

/* The kernel command line's ip= for a machine on net: "ip=<ip>::<gw>:<mask>:<name>:eth0:off". */
void net_boot_arg(const struct net *net, const char *ip, const char *name, char *buf, size_t size);
