/* The store's volumes: one row per root disk and data volume, with the machine it is attached
 * to and its place among that machine's disks. Paths are relative to the data directory. */
#pragma once

#include <stdint.h>

#include "err.h"
#include "store.h"

struct volume_rec {
	const char *id, *name, *path, *role, *state;      /* role: root, data; state: online,
							   * attached, busy, error */
	const char *machine_id, *machine, *machine_state; /* "" when not attached */
	unsigned attach_order; /* 0: the machine's root disk; 1, 2...: its data disks in order */
	uint64_t size_mb;
	int64_t created_ms, state_changed_ms;
};

/* An owned copy of one volume record. */
struct volume_info {
	char id[40], name[72], path[160], role[8], state[16];
	char machine_id[40], machine[64], machine_state[16];
	unsigned attach_order;
	uint64_t size_mb;
	int64_t created_ms, state_changed_ms;
};

/* Calls fn for every volume by name, or for those of one machine (machine_id not NULL) in
 * disk order. fn returns 0 to go on, 1 to stop, negative to fail. */
int store_volume_list(struct store *s, const char *machine_id,
		      int (*fn)(void *ud, const struct volume_rec *v), void *ud, struct err *err);

/* Finds a volume by id or name. ERR_NOT_FOUND naming ref. */
int store_volume_get(struct store *s, const char *ref, struct volume_info *ret, struct err *err);

/* Records a volume (id, name, path, role, state, machine_id or "", attach_order, size_mb of v;
 * created now). ERR_EXISTS (field "name") when the name is taken. */
int store_volume_add(struct store *s, const struct volume_rec *v, struct err *err);

/* Sets a volume's state, machine ("" or NULL: none) and place among its disks. */
int store_volume_set_state(struct store *s, const char *id, const char *state,
			   const char *machine_id, unsigned attach_order, struct err *err);

/* Sets a volume's size; the storage_mb of the machine it is the root disk of follows. */
int store_volume_set_size(struct store *s, const char *id, uint64_t size_mb, struct err *err);

/* Sets a volume's file (NULL or "": kept) and role. */
int store_volume_set_path(struct store *s, const char *id, const char *path, const char *role,
			  struct err *err);

/* Deletes a volume's row (its file is the caller's). */
int store_volume_remove(struct store *s, const char *id, struct err *err);

/* Runs fn under the store's lock in one transaction, committed when fn returns 0 or more and
 * rolled back otherwise: fn reads, checks and changes rows with the store_* functions (except
 * those that open a transaction themselves) and no other call sees the rows in between. */
int store_volume_tx(struct store *s, int (*fn)(void *ud, struct err *err), void *ud,
		    struct err *err);
