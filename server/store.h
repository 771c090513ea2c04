/* The daemon's state in SQLite: schema migrations, machines, networks, IPs, ports, volumes,
 * images, users, the audit history. Thread-safe: one connection behind a mutex. */
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
	unsigned vcpus;
	uint64_t memory_mb, storage_mb, boot_ms;
	int64_t pid, created_ms, state_changed_ms;
};

/* Finds a machine by id or name. ERR_NOT_FOUND naming ref. */
int store_machine_get(struct store *s, const char *ref, struct machine_info *ret, struct err *err);

/* Records a new machine in state 'creating' (id, name, image, driver, vcpus, memory_mb,
 * storage_mb, mac, namespace and network from m) and allocates the lowest free address of
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
