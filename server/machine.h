/* Machines: the lifecycle behind the Machines service. Deploy (record → root disk → inject →
 * namespace → VMM → ready, rolled back in reverse on failure), start, stop, restart, delete,
 * and the recovery of every machine when the daemon starts. No protobuf here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"
#include "network.h"

struct daemon;
struct op;

struct machine_spec {
	const char *name;  /* [a-z0-9][a-z0-9-]*, at most 63; "" derives one from the image */
	const char *image; /* what image_resolve takes: a path, a URL, name[:tag], a digest */
	unsigned vcpus;
	uint64_t memory_mb, storage_mb;
	const char *network;          /* "default" or a named network (checked by the caller) */
	const struct net_port *ports; /* exposed ports (checked by the caller) */
	size_t n_ports;
	struct net_policy policy;
	const char *volume;        /* boot from this volume instead of an image; NULL or "": none */
	const char *const *attach; /* data volumes to attach, in order (volume.h) */
	size_t n_attach;
};

/* Checks a spec against the config's limits before anything is created. */
int machine_spec_check(const struct daemon *d, struct machine_spec *spec, char *name_buf,
		       size_t name_size, struct err *err);

/* Deploys a machine (the work of an operation: op reports progress; may be NULL). On success
 * ret holds the running machine; on failure nothing is left. */
int machine_deploy(struct daemon *d, const struct machine_spec *spec, struct op *op,
		   struct machine_info *ret, struct err *err);

/* Boots a stopped machine with its IP and ports. */
int machine_start(struct daemon *d, const char *ref, struct op *op, struct machine_info *ret,
		  struct err *err);

/* Shuts a machine down: the guest powers off (grace timeout_sec, 0: 30 s), then signals;
 * its namespace goes, its disk stays. `force` skips the guest. */
int machine_stop(struct daemon *d, const char *ref, unsigned timeout_sec, bool force,
		 struct machine_info *ret, struct err *err);

/* Removes a machine: stops it if running, then its namespace, files and record; its data
 * volumes are released. preserve_storage keeps its root disk as a volume (deploy --volume). */
int machine_delete(struct daemon *d, const char *ref, bool preserve_storage,
		   struct machine_info *ret, struct err *err);

/* At daemon start: adopts machines whose VMM still runs, finishes or rolls back the operations
 * a crash interrupted (creating: rolled back; starting/running without a VMM: stopped;
 * stopping: stopped; deleting: deleted), and removes namespaces that belong to no machine. */
int machine_recover(struct daemon *d, struct err *err);

/* One reconciler pass: running machines whose VMM died become stopped and lose their
 * namespace; orphaned namespaces are removed; exited VMM children are reaped. */
void machine_reconcile(struct daemon *d);
