import type { Database } from '../db/index.js'
import type { InlineRow, MessageRow } from './codec.js'

export interface SessionRow {
  client_id: string
  owner: string
  expiry_interval: number
  expires_at: number | null
}

export interface WillRow {
  client_id: string
  message_id: number
  delay: number
  expiry: number | null
  publish_at: number | null
}

export interface SubscriptionRow {
  client_id: string
  filter: string
  options: string
}

export interface DeliveryRow extends InlineRow {
  client_id: string
  seq: number
  /** NULL: the message is inline, in the m_* columns. */
  message_id: number | null
  qos: number
  retain: number
  sub_ids: string | null
  state: number
  packet_id: number
}

export interface IncomingRow {
  client_id: string
  packet_id: number
}

/** The message a deleted row referred to. */
export interface Ref {
  id: number
}

/** The message a deleted delivery referred to: NULL when it held it inline. */
export interface DeliveryRef {
  id: number | null
}

/**
 * How many rows each table holds, and the sum of the message reference counts; `messages`
 * counts message bodies (messages rows plus deliveries holding theirs inline), and `refs`
 * counts an inline delivery as one reference.
 */
export interface RowCounts {
  sessions: number
  messages: number
  deliveries: number
  retained: number
  wills: number
  subscriptions: number
  refs: number
}

const INLINE_COLUMNS = 'm_qos, m_retain, m_expires_at, m_origin, m_topic, m_properties, m_payload'

export interface RetainedRow {
  topic: string
  message_id: number
}

/**
 * Writes for a client only take effect while its session row exists, as in the memory store;
 * the client id is bound a second time, last (better-sqlite3 binds `?NNN` only once).
 */
const IF_SESSION = 'WHERE EXISTS (SELECT 1 FROM sessions WHERE client_id = ?)'

/** Every statement the session store runs, prepared once when it opens. */
export function prepareStatements(db: Database) {
  return {
    // messages
    lastMessageId: db.prepare<{ id: number | null }>('SELECT max(id) AS id FROM messages'),
    insertMessage: db.prepare(
      'INSERT INTO messages (id, qos, retain, expires_at, origin, topic, properties, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    deleteMessage: db.prepare('DELETE FROM messages WHERE id = ?'),
    /** Bound to a JSON array of ids. */
    deleteMessages: db.prepare('DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))'),
    allMessageIds: db.prepare<{ id: number }>('SELECT id FROM messages'),
    allReferences: db.prepare<{ id: number; n: number }>(
      `SELECT message_id AS id, count(*) AS n FROM (SELECT message_id FROM deliveries UNION ALL SELECT message_id FROM wills
       UNION ALL SELECT message_id FROM retained) WHERE message_id IS NOT NULL GROUP BY message_id`,
    ),
    allMessages: db.prepare<MessageRow>('SELECT id, topic, payload, qos, retain, properties, expires_at, origin FROM messages'),
    // sessions
    saveSession: db.prepare(
      `INSERT INTO sessions (client_id, owner, expiry_interval, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at`,
    ),
    deleteSession: db.prepare('DELETE FROM sessions WHERE client_id = ?'),
    deleteSessionDeliveries: db.prepare<DeliveryRef>('DELETE FROM deliveries WHERE client_id = ? RETURNING message_id AS id'),
    deleteSessionSubscriptions: db.prepare('DELETE FROM subscriptions WHERE client_id = ?'),
    deleteSessionIncoming: db.prepare('DELETE FROM incoming_qos2 WHERE client_id = ?'),
    allSessions: db.prepare<SessionRow>('SELECT client_id, owner, expiry_interval, expires_at FROM sessions'),
    // wills
    /** After deleteWill: there is no row to conflict with. */
    insertWill: db.prepare(`INSERT INTO wills (client_id, message_id, delay, expiry, publish_at) SELECT ?, ?, ?, ?, ? ${IF_SESSION}`),
    deleteWill: db.prepare<Ref>('DELETE FROM wills WHERE client_id = ? RETURNING message_id AS id'),
    allWills: db.prepare<WillRow>('SELECT client_id, message_id, delay, expiry, publish_at FROM wills'),
    // subscriptions
    saveSubscription: db.prepare(
      `INSERT INTO subscriptions (client_id, filter, options) SELECT ?, ?, ? ${IF_SESSION}
       ON CONFLICT (client_id, filter) DO UPDATE SET options = excluded.options`,
    ),
    deleteSubscription: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND filter = ?'),
    allSubscriptions: db.prepare<SubscriptionRow>('SELECT client_id, filter, options FROM subscriptions'),
    // deliveries
    /** Changes nothing when the session is missing or the seq is taken (then removeDelivery first). */
    addDelivery: db.prepare(
      `INSERT OR IGNORE INTO deliveries (client_id, seq, message_id, qos, retain, sub_ids, state, packet_id)
       SELECT ?, ?, ?, ?, ?, ?, ?, ? ${IF_SESSION}`,
    ),
    /** Like addDelivery, with the message inline (message_id NULL). */
    addInlineDelivery: db.prepare(
      `INSERT OR IGNORE INTO deliveries (client_id, seq, qos, retain, sub_ids, state, packet_id, ${INLINE_COLUMNS})
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? ${IF_SESSION}`,
    ),
    /** Moves an inline message out to its messages row, if the delivery still holds that very body. */
    spillDelivery: db.prepare(
      `UPDATE deliveries SET message_id = ?, m_qos = NULL, m_retain = NULL, m_expires_at = NULL, m_origin = NULL, m_topic = NULL,
       m_properties = NULL, m_payload = NULL WHERE client_id = ? AND seq = ? AND message_id IS NULL AND m_qos = ? AND m_retain = ?
       AND m_expires_at IS ? AND m_origin = ? AND m_topic = ? AND m_properties IS ? AND m_payload = ?`,
    ),
    updateDelivery: db.prepare('UPDATE deliveries SET state = ?, packet_id = ? WHERE client_id = ? AND seq = ?'),
    /** Only a delivery holding its message inline (nothing to release). */
    removeInlineDelivery: db.prepare('DELETE FROM deliveries WHERE client_id = ? AND seq = ? AND message_id IS NULL'),
    removeDelivery: db.prepare<DeliveryRef>('DELETE FROM deliveries WHERE client_id = ? AND seq = ? RETURNING message_id AS id'),
    allDeliveries: db.prepare<DeliveryRow>(
      `SELECT client_id, seq, message_id, qos, retain, sub_ids, state, packet_id, ${INLINE_COLUMNS} FROM deliveries ORDER BY client_id, seq`,
    ),
    // incoming QoS 2
    addIncoming: db.prepare(`INSERT INTO incoming_qos2 (client_id, packet_id) SELECT ?, ? ${IF_SESSION} ON CONFLICT DO NOTHING`),
    removeIncoming: db.prepare('DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?'),
    allIncoming: db.prepare<IncomingRow>('SELECT client_id, packet_id FROM incoming_qos2'),
    // retained
    /** After deleteRetained: there is no row to conflict with. */
    insertRetained: db.prepare('INSERT INTO retained (topic, message_id) VALUES (?, ?)'),
    deleteRetained: db.prepare<Ref>('DELETE FROM retained WHERE topic = ? RETURNING message_id AS id'),
    allRetained: db.prepare<RetainedRow>('SELECT topic, message_id FROM retained'),
    // diagnostics
    rowCounts: db.prepare<Omit<RowCounts, 'refs'> & { inline: number }>(
      `SELECT (SELECT count(*) FROM sessions) AS sessions, (SELECT count(*) FROM messages) AS messages,
        (SELECT count(*) FROM deliveries) AS deliveries, (SELECT count(*) FROM retained) AS retained,
        (SELECT count(*) FROM wills) AS wills, (SELECT count(*) FROM subscriptions) AS subscriptions,
        (SELECT count(*) FROM deliveries WHERE message_id IS NULL) AS inline`,
    ),
  }
}

export type Statements = ReturnType<typeof prepareStatements>
