/* Conversions from store records to API messages, shared by the service handlers. All
 * strings are copied into the call's arena. */
#pragma once

#include "arena.h"
#include "store.h"
#include "sistemo/v1/machines.pb-c.h"
#include "sistemo/v1/networks.pb-c.h"

/* "running" -> MACHINE_STATE_RUNNING; unknown -> UNSPECIFIED. */
Sistemo__V1__MachineState machine_state_from_text(const char *s);

/* "bridge" -> NETWORK_MODE_BRIDGE. */
Sistemo__V1__NetworkMode network_mode_from_text(const char *s);

/* NETWORK_MODE_ISOLATED -> "isolated" (what SQLite keeps). */
const char *network_mode_text(Sistemo__V1__NetworkMode m);

/* An exposed port as the API shows it. */
Sistemo__V1__PortRule *port_rule_to_msg(struct arena *a, const struct port_rec *p);

Sistemo__V1__Machine *machine_to_msg(struct arena *a, const struct machine_rec *m);

/* The same from an owned copy. */
Sistemo__V1__Machine *machine_info_to_msg(struct arena *a, const struct machine_info *m);

/* {"a", "b"} -> "a,b" (empty items dropped), in the arena. */
char *join_list(struct arena *a, char *const *items, size_t n);

/* Fills the gateway of an IPv4 CIDR (network address + 1) into out; -EINVAL if malformed. */
int subnet_gateway(const char *cidr, char *out, size_t size);
