/* The daemon's state in SQLite: schema migrations, machines, networks, IPs, ports, volumes,
 * images, users, the audit history. Thread-safe: one connection behind a recursive mutex, so
 * a list callback may read the store again (it must not start a transaction). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct store;

/* Opens (creating) the database: WAL, foreign keys, busy timeout, then migrates it to the
 * newest schema. A database written by a newer sistemo is refused. */
int store_open(const char *path, struct store **ret, struct err *err);
void store_close(struct store *s);

/* The schema version now in the file, and the newest this build knows. */
unsigned store_schema_version(struct store *s);
unsigned store_schema_latest(void);

struct audit_entry {
	int64_t id;
	int64_t time_ms;
	const char *actor;       /* "uid:0", "user:admin" */
	const char *action;      /* "machine.deploy" */
	const char *target_type; /* "machine" */
	const char *target_id;
	const char *target_name;
	bool success;
	const char *detail;
};

/* Appends one entry; id and time_ms are filled in when 0. */
int store_audit_add(struct store *s, const struct audit_entry *e, struct err *err);

struct audit_filter {
	unsigned limit, offset;
	const char *action; /* exact, or NULL */
	const char *target; /* name or id, or NULL */
};

/* Calls fn for each matching entry, newest first; *ret_total gets the count of all matches.
 * The entry's strings live until fn returns. */
int store_audit_list(struct store *s, const struct audit_filter *f,
		     int (*fn)(void *ud, const struct audit_entry *e), void *ud,
		     unsigned *ret_total, struct err *err);

struct machine_rec {
	const char *id, *name, *state, *image, *image_digest, *network, *driver;
	const char *ip, *mac, *namespace, *error;
	const char *network_mode; /* bridge, isolated, none */
	const char *allow_from;   /* comma-separated machine or network names, or "" */
	const char *egress_allow; /* comma-separated HOST:PORT or CIDR:PORT, or "" */
	unsigned vcpus;
	uint64_t memory_mb, storage_mb, boot_ms;
	int64_t pid, created_ms, state_changed_ms;
};

/* Calls fn for every machine (network filter or NULL), newest first; fn returns 0 to go on,
 * 1 to stop, negative to fail. */
int store_machine_list(struct store *s, const char *network,
		       int (*fn)(void *ud, const struct machine_rec *m), void *ud, struct err *err);

/* An owned copy of one machine record. */
struct machine_info {
	char id[40], name[64], state[16], image[4096], image_digest[80], network[64], driver[16];
	char ip[16], mac[18], namespace_[32], error[1024];
	char network_mode[16], allow_from[1024], egress_allow[1024];
	unsigned vcpus;
	uint64_t memory_mb, storage_mb, boot_ms;
	int64_t pid, created_ms, state_changed_ms;
};

/* Finds a machine by id or name. ERR_NOT_FOUND naming ref. */
int store_machine_get(struct store *s, const char *ref, struct machine_info *ret, struct err *err);

/* Records a new machine in state 'creating' (id, name, image, driver, vcpus, memory_mb,
 * storage_mb, mac, namespace, network and policy from m) and allocates the lowest free address of
 * subnet/prefix on m->network ("default" or a network name), in one transaction: ret_ip gets
 * it. ERR_EXISTS (field "name") when the name is taken; ERR_EXHAUSTED when no address is left. */
int store_machine_create(struct store *s, const struct machine_rec *m, uint32_t subnet,
			 unsigned prefix, char ret_ip[16], struct err *err);

/* Records a machine's MAC address. */
int store_machine_set_mac(struct store *s, const char *id, const char *mac, struct err *err);

/* Sets a machine's state, VMM pid, last boot time (kept when 0) and error text. */
int store_machine_set_state(struct store *s, const char *id, const char *state, int64_t pid,
			    uint64_t boot_ms, const char *error, struct err *err);

/* Moves a machine to state `to` only when its state is one of `from` (comma-separated:
 * "stopped,error"); otherwise ERR_PRECONDITION naming the state it is in. Fills ret. */
int store_machine_transition(struct store *s, const char *ref, const char *from, const char *to,
			     struct machine_info *ret, struct err *err);

/* Deletes a machine; its address, port rules go with it (foreign keys). */
int store_machine_delete(struct store *s, const char *id, struct err *err);

/* Counts machines: all, and those running. */
int store_machine_count(struct store *s, unsigned *ret_total, unsigned *ret_running,
			struct err *err);

/* Counts machines on a network ("default" for the default bridge). */
int store_network_machine_count(struct store *s, const char *network, unsigned *ret,
				struct err *err);

struct network_rec {
	const char *id, *name, *subnet, *bridge, *mode;
	int64_t created_ms;
};

/* Calls fn for every named network, by name. */
int store_network_list(struct store *s, int (*fn)(void *ud, const struct network_rec *n), void *ud,
		       struct err *err);

/* An owned copy of one named network. */
struct network_info {
	char id[40], name[32], subnet[24], bridge[16], mode[16];
	int64_t created_ms;
};

/* Records a named network (id, name, subnet, bridge, mode from n; created now). ERR_EXISTS
 * (field "name") when the name is taken, (field "subnet") when the subnet is. */
int store_network_create(struct store *s, const struct network_rec *n, struct err *err);

/* Finds a named network by name or bridge. ERR_NOT_FOUND naming ref. */
int store_network_get(struct store *s, const char *ref, struct network_info *ret, struct err *err);

/* Deletes a named network unless a machine (in any state) is on it: ERR_PRECONDITION naming
 * how many and the first. ERR_NOT_FOUND when there is no such network. */
int store_network_delete(struct store *s, const char *name, struct err *err);

/* Sets a named network's default mode for machines deployed on it. */
int store_network_set_mode(struct store *s, const char *name, const char *mode, struct err *err);

/* One exposed port, with its machine. */
struct port_rec {
	const char *machine_id, *machine, *machine_ip, *network, *state;
	const char *host_ip; /* "" for every host address */
	unsigned host_port, machine_port;
	const char *protocol; /* "tcp", "udp" */
};

/* Records an exposed port of a machine. ERR_EXISTS (field "port") naming the machine that
 * holds host_port/protocol already. */
int store_port_add(struct store *s, const char *machine_id, const char *host_ip, unsigned host_port,
		   unsigned machine_port, const char *protocol, struct err *err);

/* Removes a machine's exposed host_port/protocol.
 * ERR_NOT_FOUND when the machine does not expose it. */
int store_port_del(struct store *s, const char *machine_id, unsigned host_port,
		   const char *protocol, struct err *err);

/* Calls fn for every exposed port, by host port: of one machine (id), of one network, or all
 * (both NULL). */
int store_port_list(struct store *s, const char *machine_id, const char *network,
		    int (*fn)(void *ud, const struct port_rec *p), void *ud, struct err *err);

/* Replaces a machine's network policy. */
int store_machine_set_policy(struct store *s, const char *id, const char *mode,
			     const char *allow_from, const char *egress_allow, struct err *err);

/* A long operation's row. */
struct store_operation {
	const char *id, *kind, *target, *state; /* state: running, done, failed, cancelled */
	int code;                               /* enum err_code when failed */
	const char *message;
	int64_t created_ms, finished_ms;
	char buf[2048]; /* backs the strings filled by store_operation_get */
};

/* Inserts or replaces an operation's row. */
int store_operation_save(struct store *s, const struct store_operation *op, struct err *err);

/* Reads an operation's row. ERR_NOT_FOUND for an unknown id. */
int store_operation_get(struct store *s, const char *id, struct store_operation *ret,
			struct err *err);

/* Marks operations left 'running' by a previous daemon as failed ("interrupted"). */
int store_operation_interrupt(struct store *s, struct err *err);

/* Runs one SQL statement with no result (tests and maintenance). */
int store_exec(struct store *s, const char *sql, struct err *err);

/* Milliseconds since the epoch. */
int64_t store_now_ms(void);

/* One image of the store: its digest ("sha256:<hex>"), file and metadata (JSON), the tags
 * pointing at it and the machines deployed from it (comma-separated, sorted). */
struct image_rec {
	const char *digest, *source, *source_ref, *path, *meta, *tags, *used_by;
	uint64_t size_bytes;
	int64_t created_ms;
};

/* An owned copy of one image record. */
struct image_info {
	char digest[80], source[16], source_ref[4096], path[4096], meta[16384];
	char tags[4096], used_by[4096];
	uint64_t size_bytes;
	int64_t created_ms;
};

/* Calls fn for every image, newest first. */
int store_image_list(struct store *s, int (*fn)(void *ud, const struct image_rec *im), void *ud,
		     struct err *err);

/* Finds an image by tag ("name:tag"), digest, or a "sha256:" prefix of at least 8 hex digits
 * that one image alone has. -ENOENT (err untouched) when there is none. */
int store_image_get(struct store *s, const char *ref, struct image_info *ret, struct err *err);

/* The image last downloaded from url (a deploy's cache). -ENOENT when none. */
int store_image_find_url(struct store *s, const char *url, struct image_info *ret, struct err *err);

/* Records that url gave the image digest. */
int store_image_set_url(struct store *s, const char *url, const char *digest, struct err *err);

/* Records an image (kept as it is when its digest is there already) and points tag (may be
 * NULL or "") at it, in one transaction. */
int store_image_add(struct store *s, const struct image_rec *im, const char *tag, struct err *err);

/* Removes tag from im, or im itself with all its tags when tag is NULL or its last tag;
 * *ret_gone tells whether the image went (its file is the caller's to remove). Removing the
 * image is refused (ERR_PRECONDITION naming a machine) while machines were deployed from it. */
int store_image_remove(struct store *s, const struct image_info *im, const char *tag,
		       bool *ret_gone, struct err *err);

/* Records the digest of the image a machine was deployed from. */
int store_machine_set_image_digest(struct store *s, const char *id, const char *digest,
				   struct err *err);
