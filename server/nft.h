/* The one nftables ruleset sistemo owns, tables `inet sistemo` and `bridge sistemo`, built
 * in-process with libnftnl + libmnl (one batch per call; never by spawning `nft`).
 *
 * inet sistemo: DNAT of exposed ports (two maps, one lookup rule each: adding the 10 000th port
 * costs what the first did) only for traffic addressed to the host itself (`fib daddr type
 * local`); masquerade for egress, for 127.0.0.1 (needs route_localnet=1 on the bridges, which the
 * daemon sets) and for hairpin; guests never reach the guarded daemon ports; in forward: SMTP
 * block where traffic is routed, isolation between our bridges, isolated mode, egress allow
 * lists and allow_from (sources allowed to open connections to a machine).
 *
 * bridge sistemo: traffic between two machines of one network is bridged and never crosses the
 * inet forward hook unless br_netfilter is loaded. Without nf_conntrack_bridge the bridge table
 * is stateless: for a machine with allow_from, frames sent to its port from a source not in the
 * list are dropped when they open a connection (TCP SYN without ACK, ICMP/ICMPv6 echo
 * request, and UDP that is not a reply: frames from the machine record `saddr . daddr . sport .
 * dport` in the dynamic set `udp_flows` for two minutes, and UDP to it passes only when it
 * matches such a flow backwards); IP protocols other than TCP, ICMP and ICMPv6 are dropped
 * (ARP passes). Where br_netfilter is loaded, the inet forward chain has judged the frame
 * first, statefully, and the bridge table accepts what it marked. Frames from a
 * machine's port must carry its address (IPv4 source and ARP sender), so a guest cannot
 * escape its policy by changing its address. Both hold with and without br_netfilter.
 *
 * Compatibility: a foreign base chain on the forward hook with policy drop (Docker,
 * iptables-nft, a distro firewall) would drop what we accept. nft_apply inserts at its head one
 * rule `meta mark & NFT_MARK_ACCEPTED == NFT_MARK_ACCEPTED accept comment "sistemo"`, and our
 * forward chain (priority filter - 10, before theirs) sets that mark on our traffic it accepts.
 * A foreign chain at a priority lower than ours, or one that ends in a reject rule under an
 * accept policy, is not handled. Nothing else that is not ours is ever touched.
 *
 * Callers serialize the calls (the daemon holds its network lock): nft_apply reads the foreign
 * chains before it writes its batch, and a port added while it runs could be lost. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "strbuf.h"

#define NFT_TABLE "sistemo"           /* both tables' name */
#define NFT_MARK_ACCEPTED 0x10000000u /* packet mark: accepted by sistemo's forward chain */
#define NFT_COMPAT_COMMENT "sistemo"  /* the comment on the rules in foreign chains */
#define NFT_MAX_NETWORKS 1024         /* bounds on a model: ERR_INVALID beyond */
#define NFT_MAX_MACHINES 16384
#define NFT_MAX_PORTS 262144
#define NFT_MAX_POLICY 256 /* allow_from and egress_allow entries per machine */
#define NFT_MAX_GUARDED 64

enum nft_mode {
	NFT_MODE_BRIDGE,   /* egress through NAT, reachable on its network */
	NFT_MODE_ISOLATED, /* its own network only: nothing routed beyond its bridge */
	NFT_MODE_NONE,     /* no NIC: the machine gets no rules */
};

/* Addresses, prefixes and ports are in host byte order throughout. */
struct nft_network {
	const char *name;   /* shown in rule comments: printable, no quote or backslash */
	const char *bridge; /* "sistemo0", "br-<name>" */
	uint32_t subnet;
	unsigned prefix;
	uint32_t gateway;
};

struct nft_cidr {
	uint32_t addr;
	unsigned prefix; /* 0..32 */
	uint16_t port;   /* 0: any port; else TCP or UDP to this port */
};

struct nft_machine {
	const char *name;      /* shown in rule comments: printable, no quote or backslash */
	const char *veth_host; /* "vh-1a2b3c4d", a port of `bridge` */
	const char *bridge;    /* one of the model's networks */
	uint32_t ip;
	enum nft_mode mode;
	/* Sources allowed to open connections to it (machine /32s, network subnets), with the
	 * machine's port when given. 0 entries: anyone. Exposed ports stay reachable from
	 * anywhere, and a listed source reaches it even across network isolation. */
	const struct nft_cidr *allow_from;
	size_t n_allow_from;
	/* Destinations it may reach beyond its own network (addr/prefix, TCP or UDP port when
	 * given). 0 entries: all egress allowed. */
	const struct nft_cidr *egress_allow;
	size_t n_egress_allow;
};

struct nft_port {
	uint32_t host_ip; /* 0: every local address; else only this one (e.g. 127.0.0.1) */
	uint16_t host_port;
	uint8_t proto; /* IPPROTO_TCP or IPPROTO_UDP */
	uint32_t machine_ip;
	uint16_t machine_port;
};

/* What the daemon knows (from SQLite); the pointers are borrowed for the call. */
struct nft_model {
	const struct nft_network *networks;
	size_t n_networks;
	const struct nft_machine *machines; /* running machines */
	size_t n_machines;
	const struct nft_port *ports; /* ports of running machines */
	size_t n_ports;
	const uint16_t *guarded_ports; /* daemon ports guests must not reach (7777, 7778) */
	size_t n_guarded;
	bool allow_smtp; /* config block_smtp: false; the SMTP drop rule is left out */
};

/* Replaces both our tables with the model's ruleset and brings the compat rules in foreign
 * forward chains up to date, in ONE atomic batch: on failure nothing changed. Idempotent.
 * Existing connections keep their NAT (conntrack); UDP flows recorded for allow_from are
 * forgotten. A bad model is ERR_INVALID; a kernel refusal names the step, e.g.
 * "nftables: apply ruleset: add rule to chain 'forward': Operation not supported". */
int nft_apply(const struct nft_model *m, struct err *err);

/* Adds one exposed port as a map element (one small batch; the cost does not depend on how
 * many ports exist). Adding the same mapping again succeeds; the same host port mapped
 * elsewhere is ERR_EXISTS; no ruleset loaded is ERR_NOT_FOUND. */
int nft_port_add(const struct nft_port *p, struct err *err);

/* Removes one exposed port's map element; a missing one (or no ruleset) is not an error.
 * Connections already established through it keep flowing until they end.
 * nft_port_add and nft_port_del share one netlink socket kept open (serialized by a lock):
 * closing a socket that changed nf_tables waits for an RCU grace period (~10 ms). */
int nft_port_del(const struct nft_port *p, struct err *err);

/* Appends our tables as `nft list` prints them (read through libnftables), then one comment
 * line per compat rule in a foreign chain. ERR_NOT_FOUND when no table of ours is loaded. */
int nft_render(struct strbuf *out, struct err *err);

/* Deletes our tables and our rules in foreign chains, in one batch (uninstall, tests).
 * Nothing of ours loaded: success. */
int nft_remove(struct err *err);
