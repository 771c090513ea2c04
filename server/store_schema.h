/* The SQLite schema as ordered migrations; version N is the state after migration N.
 * Used only by store.c and its tests. */
#pragma once

/* How many migrations there are (the newest schema version). */
unsigned store_schema_count(void);

/* The SQL of migration `version` (1-based), or NULL. */
const char *store_schema_migration(unsigned version);
