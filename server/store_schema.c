/* The schema, as an ordered list of migrations. Never edit a released migration: append. */
#include "store_schema.h"

#include <stddef.h>

static const char *const migrations[] = {
	/* 1: the first schema */
	"CREATE TABLE network ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  subnet TEXT NOT NULL UNIQUE,"
	"  bridge TEXT NOT NULL UNIQUE,"
	"  mode TEXT NOT NULL DEFAULT 'bridge' CHECK (mode IN ('bridge','isolated','none')),"
	"  created_ms INTEGER NOT NULL);"
	"CREATE TABLE machine ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  state TEXT NOT NULL CHECK (state IN ('creating','starting','running','stopping',"
	"    'stopped','deleting','error')),"
	"  image TEXT NOT NULL,"
	"  image_digest TEXT NOT NULL DEFAULT '',"
	"  network_id TEXT REFERENCES network(id),"
	"  driver TEXT NOT NULL DEFAULT '',"
	"  vcpus INTEGER NOT NULL CHECK (vcpus > 0),"
	"  memory_mb INTEGER NOT NULL CHECK (memory_mb > 0),"
	"  storage_mb INTEGER NOT NULL CHECK (storage_mb > 0),"
	"  mac TEXT NOT NULL DEFAULT '',"
	"  namespace TEXT NOT NULL DEFAULT '',"
	"  pid INTEGER NOT NULL DEFAULT 0,"
	"  boot_ms INTEGER NOT NULL DEFAULT 0,"
	"  network_mode TEXT NOT NULL DEFAULT 'bridge'"
	"    CHECK (network_mode IN ('bridge','isolated','none')),"
	"  allow_from TEXT NOT NULL DEFAULT '',"
	"  egress_allow TEXT NOT NULL DEFAULT '',"
	"  error TEXT NOT NULL DEFAULT '',"
	"  created_ms INTEGER NOT NULL,"
	"  state_changed_ms INTEGER NOT NULL);"
	"CREATE INDEX machine_state ON machine(state);"
	"CREATE TABLE ip_allocation ("
	"  network TEXT NOT NULL," /* network name, 'default' for sistemo0 */
	"  ip TEXT NOT NULL,"
	"  machine_id TEXT NOT NULL UNIQUE REFERENCES machine(id) ON DELETE CASCADE,"
	"  allocated_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (network, ip));"
	"CREATE TABLE port_rule ("
	"  id INTEGER PRIMARY KEY,"
	"  machine_id TEXT NOT NULL REFERENCES machine(id) ON DELETE CASCADE,"
	"  host_ip TEXT NOT NULL DEFAULT '',"
	"  host_port INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),"
	"  machine_port INTEGER NOT NULL CHECK (machine_port BETWEEN 1 AND 65535),"
	"  protocol TEXT NOT NULL CHECK (protocol IN ('tcp','udp')),"
	"  created_ms INTEGER NOT NULL,"
	"  UNIQUE (host_port, protocol));"
	"CREATE TABLE volume ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  size_mb INTEGER NOT NULL CHECK (size_mb > 0),"
	"  path TEXT NOT NULL UNIQUE,"
	"  role TEXT NOT NULL DEFAULT 'data' CHECK (role IN ('root','data')),"
	"  state TEXT NOT NULL CHECK (state IN ('online','attached','busy','error')),"
	"  machine_id TEXT REFERENCES machine(id) ON DELETE SET NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  state_changed_ms INTEGER NOT NULL);"
	"CREATE TABLE image ("
	"  digest TEXT PRIMARY KEY,"
	"  size_bytes INTEGER NOT NULL,"
	"  source TEXT NOT NULL CHECK (source IN ('builtin','registry','url','import','build')),"
	"  source_ref TEXT NOT NULL DEFAULT '',"
	"  path TEXT NOT NULL,"
	"  meta TEXT NOT NULL DEFAULT '{}',"
	"  created_ms INTEGER NOT NULL);"
	"CREATE TABLE image_tag ("
	"  tag TEXT PRIMARY KEY,"
	"  digest TEXT NOT NULL REFERENCES image(digest) ON DELETE CASCADE);"
	"CREATE TABLE user ("
	"  id INTEGER PRIMARY KEY,"
	"  username TEXT NOT NULL UNIQUE,"
	"  password_hash TEXT NOT NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL);"
	"CREATE TABLE setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE audit ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  time_ms INTEGER NOT NULL,"
	"  actor TEXT NOT NULL,"
	"  action TEXT NOT NULL,"
	"  target_type TEXT NOT NULL DEFAULT '',"
	"  target_id TEXT NOT NULL DEFAULT '',"
	"  target_name TEXT NOT NULL DEFAULT '',"
	"  success INTEGER NOT NULL,"
	"  detail TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX audit_time ON audit(time_ms);"
	"CREATE INDEX audit_action ON audit(action);"
	"CREATE INDEX audit_target ON audit(target_name);"
	"CREATE TABLE operation ("
	"  id TEXT PRIMARY KEY,"
	"  kind TEXT NOT NULL,"
	"  target TEXT NOT NULL DEFAULT '',"
	"  state TEXT NOT NULL CHECK (state IN ('running','done','failed','cancelled')),"
	"  status_code INTEGER NOT NULL DEFAULT 0,"
	"  status_message TEXT NOT NULL DEFAULT '',"
	"  created_ms INTEGER NOT NULL,"
	"  finished_ms INTEGER NOT NULL DEFAULT 0);",
	/* 2: volumes: a machine's disks in order (0: its root disk, then its data disks as
	 * attached); a machine's record going takes the rows of the disks in its run directory and
	 * releases every other volume it had; machines made before get their root-disk rows */
	"ALTER TABLE volume ADD COLUMN attach_order INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX volume_machine ON volume(machine_id);"
	"CREATE TRIGGER machine_volumes_release BEFORE DELETE ON machine BEGIN"
	"  DELETE FROM volume WHERE machine_id = OLD.id AND substr(path, 1, 4) = 'vms/';"
	"  UPDATE volume SET machine_id = NULL, attach_order = 0,"
	"    state = CASE state WHEN 'attached' THEN 'online' ELSE state END,"
	"    state_changed_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
	"  WHERE machine_id = OLD.id;"
	"END;"
	"INSERT INTO volume (id, name, size_mb, path, role, state, machine_id, attach_order,"
	"  created_ms, state_changed_ms)"
	"  SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||"
	"    substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random()) % 4, 1) ||"
	"    substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),"
	"    name || '-root', storage_mb, 'vms/' || id || '/rootfs.ext4', 'root', 'attached', id,"
	"    0, created_ms, created_ms FROM machine;",
	/* 3: images deployed from a URL, cached: the URL's digest (the same bytes may have come
	 * from the registry or an import first) */
	"CREATE TABLE image_url ("
	"  url TEXT PRIMARY KEY,"
	"  digest TEXT NOT NULL REFERENCES image(digest) ON DELETE CASCADE,"
	"  fetched_ms INTEGER NOT NULL);",
};

unsigned
store_schema_count(void)
{
	return sizeof(migrations) / sizeof(migrations[0]);
}

const char *
store_schema_migration(unsigned version)
{
	if (version < 1 || version > store_schema_count())
		return NULL;
	return migrations[version - 1];
}
