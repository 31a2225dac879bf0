/**
 * The account tables: the CLI and MQTT grant requests write them locally, the central sync
 * fills them from MySQL. Step i brings `user_version` from i to i + 1.
 */
export const ACCOUNT_MIGRATIONS: readonly string[] = [
  `CREATE TABLE accounts (
     id TEXT PRIMARY KEY NOT NULL,
     verifier TEXT,
     admin INTEGER NOT NULL DEFAULT 0,
     enabled INTEGER NOT NULL DEFAULT 1,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE grants (
     owner TEXT NOT NULL,
     grantee TEXT NOT NULL,
     filter TEXT NOT NULL,
     publish INTEGER NOT NULL DEFAULT 0,
     subscribe INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (owner, grantee, filter)
   ) WITHOUT ROWID;
   CREATE INDEX grants_by_grantee ON grants (grantee);
   CREATE TABLE handler_roles (
     handler TEXT NOT NULL,
     account TEXT NOT NULL,
     filter TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (handler, account, filter)
   ) WITHOUT ROWID;`,
  // Rows synced from the central database are marked, so a sync replaces only its own rows;
  // sync_state holds the central high-water mark and epoch, written with the rows they describe.
  `ALTER TABLE accounts ADD COLUMN origin TEXT NOT NULL DEFAULT 'local';
   ALTER TABLE grants ADD COLUMN origin TEXT NOT NULL DEFAULT 'local';
   CREATE TABLE sync_state (
     k TEXT PRIMARY KEY NOT NULL,
     v TEXT NOT NULL
   ) WITHOUT ROWID;`,
  // Whose rights each commit changed (an account, the grantees of its grants, the handlers
  // serving it), so perch recompiles only those; old rows are pruned by the writers.
  `CREATE TABLE account_changes (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     account TEXT NOT NULL
   );`,
]
