/**
 * The session store's schema, one entry per version (`user_version`). Each message body is
 * stored once in `messages` and referenced by id from deliveries, wills and retained topics;
 * triggers keep `messages.refs` equal to the number of rows referring to it, so the count can
 * never drift from the rows, whatever is rolled back. A row whose count drops to 0 is noted
 * in `unreferenced`, and all of them are deleted in one statement at commit time. (A partial
 * index on refs would do the same but rewrite an index page in every commit: a new row starts
 * at 0 for an instant before its first reference counts it.) `refs` comes before the payload,
 * so reading it never touches a large payload's overflow pages.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE sessions (
    client_id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    expiry_interval INTEGER NOT NULL,
    expires_at INTEGER
  ) WITHOUT ROWID;

  CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    refs INTEGER NOT NULL DEFAULT 0,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    expires_at INTEGER,
    origin TEXT NOT NULL,
    topic TEXT NOT NULL,
    properties TEXT,
    payload BLOB NOT NULL
  );

  CREATE TABLE unreferenced (id INTEGER PRIMARY KEY);
  CREATE TRIGGER messages_unreferenced AFTER UPDATE OF refs ON messages WHEN NEW.refs <= 0 BEGIN
    INSERT OR IGNORE INTO unreferenced (id) VALUES (NEW.id);
  END;

  CREATE TABLE wills (
    client_id TEXT PRIMARY KEY NOT NULL,
    message_id INTEGER NOT NULL,
    delay INTEGER NOT NULL,
    expiry INTEGER,
    publish_at INTEGER
  ) WITHOUT ROWID;

  CREATE TABLE subscriptions (
    client_id TEXT NOT NULL,
    filter TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (client_id, filter)
  ) WITHOUT ROWID;

  CREATE TABLE deliveries (
    client_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    sub_ids TEXT,
    state TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, seq)
  ) WITHOUT ROWID;

  CREATE TABLE incoming_qos2 (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
  ) WITHOUT ROWID;

  CREATE TABLE retained (
    topic TEXT PRIMARY KEY NOT NULL,
    message_id INTEGER NOT NULL
  ) WITHOUT ROWID;

  ${refTriggers('deliveries')}
  ${refTriggers('wills')}
  ${refTriggers('retained')}
  `,
]

function refTriggers(table: string): string {
  return `
  CREATE TRIGGER ${table}_ref AFTER INSERT ON ${table} BEGIN
    UPDATE messages SET refs = refs + 1 WHERE id = NEW.message_id;
  END;
  CREATE TRIGGER ${table}_unref AFTER DELETE ON ${table} BEGIN
    UPDATE messages SET refs = refs - 1 WHERE id = OLD.message_id;
  END;
  CREATE TRIGGER ${table}_reref AFTER UPDATE OF message_id ON ${table} WHEN OLD.message_id <> NEW.message_id BEGIN
    UPDATE messages SET refs = refs - 1 WHERE id = OLD.message_id;
    UPDATE messages SET refs = refs + 1 WHERE id = NEW.message_id;
  END;`
}
