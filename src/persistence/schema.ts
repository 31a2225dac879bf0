/**
 * The session store's schema, one entry per version (`user_version`). Each message body is
 * stored once in `messages` and referenced by id from deliveries, wills and retained topics;
 * the store counts those references in memory (see refs.ts) and deletes a row at the commit
 * after its last reference went. A message only one delivery refers to is stored inline in
 * that delivery instead (message_id NULL, the m_* columns set; see inline.ts). A delivery's
 * state is 0 queued, 1 await-ack, 2 await-comp.
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
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    expires_at INTEGER,
    origin TEXT NOT NULL,
    topic TEXT NOT NULL,
    properties TEXT,
    payload BLOB NOT NULL
  );

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
    message_id INTEGER,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    sub_ids TEXT,
    state INTEGER NOT NULL,
    packet_id INTEGER NOT NULL,
    m_qos INTEGER,
    m_retain INTEGER,
    m_expires_at INTEGER,
    m_origin TEXT,
    m_topic TEXT,
    m_properties TEXT,
    m_payload BLOB,
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

  `,
]
