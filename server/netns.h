/* Host network plumbing over rtnetlink (libmnl), never by spawning `ip`: the host bridge and,
 * per machine, a network namespace holding a veth end, a namespace bridge and the TAP the VMM
 * opens. Everything it creates carries sistemo's names, so the reconciler can find it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Names of one machine's objects; `short_id` is the first 8 hex digits of its id. */
struct netns_names {
	char ns[32];        /* "sistemo-<short>", bind-mounted at /run/netns/<ns> like `ip netns` */
	char ns_path[64];   /* "/run/netns/sistemo-<short>" */
	char veth_host[16]; /* "vh-<short>": the host end, enslaved to the host bridge */
	char veth_ns[16];   /* "eth0" inside the namespace */
	char bridge[16];    /* "br0" inside the namespace */
	char tap[16];       /* "tap0" inside the namespace: what the VMM opens */
};

/* Fills the names for a machine id (a UUID; hex digits are lowercased). Returns 0, or -EINVAL
 * when the id does not start with 8 hex digits (the names are then filled but unusable). */
int netns_names_for(const char *machine_id, struct netns_names *ret);

/* Makes sure the host bridge exists with gateway/prefix (host byte order) as its address and
 * is up; leaves it alone when already so. A bridge it creates gets a stable MAC derived from
 * the gateway. ERR_EXISTS when a non-bridge link has the name. */
int netns_bridge_ensure(const char *bridge, uint32_t gateway, unsigned prefix, struct err *err);

/* Deletes the host bridge (tests, uninstall). Missing: success. A non-bridge link of that
 * name is left alone: ERR_PRECONDITION. */
int netns_bridge_delete(const char *bridge, struct err *err);

/* Builds a machine's plumbing:
 *   ip netns add <ns>; ip -n <ns> tuntap add tap0 mode tap (ioctl TUNSETIFF + TUNSETPERSIST)
 *   ip -n <ns> link add br0 up type bridge
 *   ip -n <ns> link add eth0 master br0 up type veth peer name <veth_host> netns <host>
 *   ip -n <ns> link set tap0 master br0 up; ip -n <ns> link set lo up
 *   ip link set <veth_host> master <host_bridge> up
 * One thread makes the namespace and the TAP inside it; the link requests go in one batch.
 * IPv6 is off for the namespace's new links (they only carry the guest's frames). Any failure
 * undoes what was done, in reverse, and the error names the step ("machine netns
 * 'sistemo-1a2b3c4d': create veth 'vh-1a2b3c4d': File exists"). A missing host bridge is
 * ERR_PRECONDITION, found before anything is made. ERR_EXISTS when the namespace exists, or
 * when a link that is not a veth holds <veth_host>; a veth holding it is a leftover host end of
 * this machine (see netns_machine_delete) and is replaced. Costs a few ms, nearly all of it in
 * the kernel: a bare unshare(CLONE_NEWNET) alone is 0.6-1 ms on a small, busy VM. */
int netns_machine_create(const struct netns_names *n, const char *host_bridge, struct err *err);

/* Keeps n (at most 16) spare namespaces built ahead: "sistemo-spare<k>" under /run/netns, each
 * with br0, eth0 and tap0 as above, lo up, and its veth's host end "vs-<k>" down, IPv6 off, and
 * already a port of host_bridge (NULL: of none). netns_machine_create takes one when there is
 * one: the mount moves to the machine's name and one request renames the host end, attaches it
 * to the machine's bridge (a no-op when it is host_bridge) and brings it up, and a thread
 * builds the next spare meanwhile; without one it builds the whole. Spares a previous daemon
 * left are deleted first. netns_list never reports a spare. Called again, it changes n and the
 * bridge of the spares built next. Call from the host namespace's thread. */
int netns_spares_start(unsigned n, const char *host_bridge, struct err *err);

/* Stops building spares and deletes those built (their host ends go with them). */
void netns_spares_stop(void);

/* Waits until n spares are ready, at most timeout_ms; true when they are. */
bool netns_spares_wait(unsigned n, unsigned timeout_ms);

/* Tears a machine's plumbing down by deleting its namespace (unmount + unlink, ~0.1 ms). Once
 * nothing else holds the namespace (stop the VMM first), the kernel deletes its links and the
 * host veth end with them, asynchronously (~20 ms later): the call does not wait for it.
 * When the namespace is already gone, a leftover host veth end is deleted here (~20 ms: an RCU
 * barrier in the kernel). Missing pieces are not an error. */
int netns_machine_delete(const struct netns_names *n, struct err *err);

/* True when the machine's namespace exists. */
bool netns_machine_exists(const struct netns_names *n);

/* Calls fn for every namespace under /run/netns named "sistemo-*" (for the reconciler), mounted
 * or a stale file; stops at and returns fn's first negative result. */
int netns_list(int (*fn)(void *ud, const char *ns_name), void *ud, struct err *err);

/* Deletes every host link named "vh-<8 hex>" that is a veth whose namespace
 * /run/netns/sistemo-<8 hex> is not mounted (a crash between two steps left it), unless
 * keep(ud, "sistemo-<8 hex>") is true (a machine in the middle of an operation). A host end
 * whose namespace was just deleted may still be there (the kernel takes it ~20 ms later):
 * deleting it first is harmless. Returns how many it deleted; on a failure it goes on with the
 * others and returns the first error. */
int netns_orphan_links(int (*keep)(void *ud, const char *ns_name), void *ud, struct err *err);

/* Runs fn on a thread that has entered the namespace at ns_path (setns) and returns; the
 * calling thread never changes namespace. Returns fn's result (fn reports its own errors
 * through ud); err is set only when the namespace cannot be entered. */
int netns_run_in(const char *ns_path, int (*fn)(void *ud), void *ud, struct err *err);
