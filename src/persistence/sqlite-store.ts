import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { err, ok, type Result } from '../core/result.js'
import { type Database, type DbError, openDatabase, type Synchronous, toDbError } from '../db/index.js'
import type { Message } from '../mqtt/session/message.js'
import type { SubscriptionOptions } from '../mqtt/session/session.js'
import type {
  DeliveryState,
  SessionOwner,
  SessionStore,
  StoredDelivery,
  StoredState,
  StoredWill,
} from '../mqtt/session/store.js'
import { encodeOptions, encodeOwner, encodeProperties, encodeState, encodeSubIds, RowDecoder } from './codec.js'
import { type CommitCallback, type CommitStats, GroupCommit } from './group-commit.js'
import { InlineHints } from './inline.js'
import { RefCounts } from './refs.js'
import { MIGRATIONS } from './schema.js'
import { type DeliveryRef, prepareStatements, type Ref, type RowCounts, type Statements } from './statements.js'

/**
 * Larger messages always get their own row: a delivery's state changes rewrite its whole row,
 * which must stay small (it must fit a page, and must not need much room on a full disk).
 */
const INLINE_MAX_BYTES = 512

export interface SqliteStoreOptions {
  readonly synchronous: Synchronous
  /** Group commit: a transaction ends this long after its first write (default 5 ms)... */
  readonly commitIntervalMs?: number
  /** ...or after this many writes (default 1000), whichever comes first. */
  readonly commitMaxWrites?: number
  readonly clock: Clock
  readonly logger: Logger
}

/**
 * The durable SessionStore: one SQLite file in WAL mode, written through group commit.
 * Each message body is stored once and shared by every delivery, will and retained topic
 * that holds it (reference-counted in memory, see RefCounts); a WeakMap finds the row of a Message object
 * already stored, and `load` gives back one object per row, shared by all its references.
 * A small message held by one delivery only is stored inline in that delivery's row instead
 * (one INSERT to queue it, one DELETE to acknowledge it), moved to its own row when a second
 * reference comes in the same transaction (see InlineHints); `load` gives each inline delivery
 * its own Message object.
 */
export class SqliteSessionStore implements SessionStore {
  readonly durable = true
  readonly file: string
  /** How large the file may grow (half the free space at open, plus its size then). */
  readonly maxBytes: number | undefined
  readonly #db: Database
  readonly #s: Statements
  readonly #commit: GroupCommit
  readonly #decode: RowDecoder
  readonly #ids = new WeakMap<Message, number>()
  readonly #refs = new RefCounts()
  readonly #inline = new InlineHints()
  /** Ids are never reused within a process, so a stale WeakMap entry can never name another message. */
  #lastId: number

  private constructor(db: Database, options: SqliteStoreOptions) {
    this.#db = db
    this.file = db.file
    this.maxBytes = db.maxBytes
    this.#s = prepareStatements(db)
    this.#decode = new RowDecoder(db.file)
    this.#lastId = this.#s.lastMessageId.get()?.id ?? 0
    this.#countReferences()
    const commit = { intervalMs: options.commitIntervalMs ?? 5, maxWrites: options.commitMaxWrites ?? 1000 }
    const refs = this.#refs
    const inline = this.#inline
    this.#commit = new GroupCommit(db, options.clock, options.logger, commit, () => this.#sweep(), {
      committed: () => {
        refs.committed()
        inline.clear()
      },
      rolledBack: () => {
        refs.rolledBack()
        inline.clear()
      },
    })
  }

  /** Opens (creating if missing) the store at `file`; a damaged or unreadable file is a typed error naming it. */
  static open(file: string, options: SqliteStoreOptions): Result<SqliteSessionStore, DbError> {
    const db = openDatabase(file, { synchronous: options.synchronous, migrations: MIGRATIONS, fitFreeSpace: true })
    if (!db.ok) return db
    try {
      return ok(new SqliteSessionStore(db.value, options))
    } catch (e) {
      db.value.close()
      return err(toDbError(e, file))
    }
  }

  /** Commits, writes and failed batches so far. */
  get stats(): Readonly<CommitStats> {
    return this.#commit.stats
  }

  /** Rows per table, as committed plus the writes of the open transaction (for tests and diagnostics). */
  rowCounts(): RowCounts {
    const rows = this.#s.rowCounts.get() ?? { sessions: 0, messages: 0, deliveries: 0, retained: 0, wills: 0, subscriptions: 0, inline: 0 }
    const { inline, ...counts } = rows
    return { ...counts, messages: counts.messages + inline, refs: this.#refs.total() + inline }
  }

  /** Throws a DbError ('corrupt') when a row cannot be decoded. */
  load(): StoredState {
    const s = this.#s
    const messages = new Map<number, Message>()
    for (const row of s.allMessages.all()) {
      const m = this.#decode.message(row)
      messages.set(row.id, m)
      this.#ids.set(m, row.id)
    }
    const message = (id: number, where: string): Message => {
      const m = messages.get(id)
      if (m === undefined) throw this.#decode.missing(where, id)
      return m
    }
    const sessions = new Map<string, Building>()
    for (const r of s.allSessions.all()) {
      sessions.set(r.client_id, {
        clientId: r.client_id,
        owner: this.#decode.owner(r.owner, `sessions "${r.client_id}"`),
        expiryInterval: r.expiry_interval,
        expiresAt: r.expires_at ?? undefined,
        will: undefined,
        subscriptions: new Map(),
        deliveries: [],
        incomingQos2: new Set(),
      })
    }
    for (const r of s.allWills.all()) {
      const session = sessions.get(r.client_id)
      if (session === undefined) continue
      const where = `wills "${r.client_id}"`
      session.will = {
        message: message(r.message_id, where),
        delaySeconds: r.delay,
        expirySeconds: r.expiry ?? undefined,
        publishAt: r.publish_at ?? undefined,
      }
    }
    for (const r of s.allSubscriptions.all()) {
      sessions.get(r.client_id)?.subscriptions.set(r.filter, this.#decode.options(r.options, `subscriptions "${r.client_id}" "${r.filter}"`))
    }
    for (const r of s.allDeliveries.all()) {
      const session = sessions.get(r.client_id)
      if (session === undefined) continue
      const where = `deliveries "${r.client_id}" ${r.seq}`
      let m: Message
      if (r.message_id !== null) m = message(r.message_id, where)
      else m = this.#decode.inlineMessage(r, where)
      session.deliveries.push({
        seq: r.seq,
        message: m,
        qos: this.#decode.qos(r.qos, where),
        retain: r.retain !== 0,
        subscriptionIds: this.#decode.subIds(r.sub_ids, where),
        state: this.#decode.state(r.state, where),
        packetId: r.packet_id,
      })
    }
    for (const r of s.allIncoming.all()) sessions.get(r.client_id)?.incomingQos2.add(r.packet_id)
    const retained = s.allRetained.all().map((r) => message(r.message_id, `retained "${r.topic}"`))
    return { sessions: [...sessions.values()], retained }
  }

  saveSession(clientId: string, owner: SessionOwner, expiryInterval: number, expiresAt: number | undefined): void {
    this.#commit.write(() => this.#s.saveSession.run(clientId, encodeOwner(owner), expiryInterval, expiresAt ?? null))
  }

  deleteSession(clientId: string): void {
    const s = this.#s
    this.#commit.write(() => {
      for (const r of s.deleteSessionDeliveries.all(clientId)) this.#releaseDelivery(r)
      s.deleteSessionSubscriptions.run(clientId)
      s.deleteSessionIncoming.run(clientId)
      this.#release(s.deleteWill.get(clientId))
      s.deleteSession.run(clientId)
    })
  }

  saveWill(clientId: string, will: StoredWill | undefined): void {
    const s = this.#s
    this.#commit.write(() => {
      this.#release(s.deleteWill.get(clientId))
      if (will === undefined) return
      const id = this.#messageId(will.message)
      if (s.insertWill.run(clientId, id, will.delaySeconds, will.expirySeconds ?? null, will.publishAt ?? null, clientId) > 0) this.#refs.add(id)
    })
  }

  saveSubscription(clientId: string, filter: string, options: SubscriptionOptions): void {
    this.#commit.write(() => this.#s.saveSubscription.run(clientId, filter, encodeOptions(options), clientId))
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#commit.write(() => this.#s.deleteSubscription.run(clientId, filter))
  }

  /** Not retried if its batch fails: the publisher was refused (0x97) and may send it again. */
  addDelivery(clientId: string, d: StoredDelivery): void {
    this.#commit.write(() => this.#addDelivery(clientId, d), false)
  }

  updateDelivery(clientId: string, seq: number, state: DeliveryState, packetId: number): void {
    this.#commit.write(() => this.#s.updateDelivery.run(encodeState(state), packetId, clientId, seq))
  }

  removeDelivery(clientId: string, seq: number): void {
    const s = this.#s
    // Most deliveries hold their message inline: then nothing to release, and no RETURNING.
    this.#commit.write(() => {
      if (s.removeInlineDelivery.run(clientId, seq) === 0) this.#releaseDelivery(s.removeDelivery.get(clientId, seq))
    })
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.#commit.write(() => this.#s.addIncoming.run(clientId, packetId, clientId))
  }

  removeIncomingQos2(clientId: string, packetId: number): void {
    this.#commit.write(() => this.#s.removeIncoming.run(clientId, packetId))
  }

  /** Not retried if its batch fails, like addDelivery: the last retained message stored stays. */
  setRetained(message: Message): void {
    this.#commit.write(() => {
      const id = this.#messageId(message)
      this.#release(this.#s.deleteRetained.get(message.topic))
      this.#s.insertRetained.run(message.topic, id)
      this.#refs.add(id)
    }, false)
  }

  deleteRetained(topic: string): void {
    this.#commit.write(() => this.#release(this.#s.deleteRetained.get(topic)))
  }

  afterCommit(fn: CommitCallback): void {
    this.#commit.afterCommit(fn)
  }

  flush(): void {
    this.#commit.flush()
  }

  close(): void {
    if (!this.#db.open) return
    this.#commit.close()
    this.#db.close()
  }

  /** A missing session changes nothing (the message row stored for it goes at commit); a taken seq is replaced. */
  #addDelivery(clientId: string, d: StoredDelivery): void {
    // undefined: no other reference is stored and the message is small, so it goes inline.
    const m = d.message
    const properties = encodeProperties(m.properties)
    const small = m.payload.length + Buffer.byteLength(m.topic) + (properties == null ? 0 : Buffer.byteLength(properties)) <= INLINE_MAX_BYTES
    const id = small ? this.#storedId(m) : this.#messageId(m)
    if (this.#insertDelivery(clientId, d, id, properties)) return
    const replaced = this.#s.removeDelivery.get(clientId, d.seq)
    if (replaced === undefined) return
    this.#releaseDelivery(replaced)
    this.#insertDelivery(clientId, d, id, properties)
  }

  /** False when the session is missing or the seq is taken. */
  #insertDelivery(clientId: string, d: StoredDelivery, id: number | undefined, properties: string | null): boolean {
    const s = this.#s
    const subIds = encodeSubIds(d.subscriptionIds)
    const state = encodeState(d.state)
    const retain = d.retain ? 1 : 0
    if (id !== undefined) {
      if (s.addDelivery.run(clientId, d.seq, id, d.qos, retain, subIds, state, d.packetId, clientId) === 0) return false
      this.#refs.add(id)
      return true
    }
    const m = d.message
    const mRetain = m.retain ? 1 : 0
    const inserted = s.addInlineDelivery.run(clientId, d.seq, d.qos, retain, subIds, state, d.packetId, m.qos, mRetain, m.expiresAt ?? null, m.origin, m.topic, properties, m.payload, clientId)
    if (inserted === 0) return false
    this.#inline.set(m, clientId, d.seq)
    return true
  }

  #release(row: Ref | undefined): void {
    if (row !== undefined) this.#refs.release(row.id)
  }

  #releaseDelivery(row: DeliveryRef | undefined): void {
    if (row !== undefined && row.id !== null) this.#refs.release(row.id)
  }

  /** At open: the references to every row; a row without any goes at the first commit. */
  #countReferences(): void {
    const counts = new Map<number, number>()
    for (const r of this.#s.allReferences.all()) counts.set(r.id, r.n)
    for (const r of this.#s.allMessageIds.all()) this.#refs.found(r.id, counts.get(r.id) ?? 0)
  }

  /** At commit: every message row whose last reference went in this transaction, in one statement. */
  #sweep(): void {
    const ids = this.#refs.takeUnreferenced()
    if (ids.length === 1) this.#s.deleteMessage.run(ids[0] as number)
    else if (ids.length > 1) this.#s.deleteMessages.run(JSON.stringify(ids))
  }

  /**
   * The row of a message, inserted on first use. A row found through the WeakMap may have
   * been swept (its last reference went) or rolled back since: then the message is stored again.
   */
  #messageId(m: Message): number {
    return this.#storedId(m) ?? this.#insertMessage(m)
  }

  /**
   * The row of a message already stored, or undefined if nothing holds it. A message a
   * delivery holds inline is moved ("spilled") to its own row first, now that it has two references.
   */
  #storedId(m: Message): number | undefined {
    const known = this.#ids.get(m)
    if (known !== undefined && this.#refs.has(known)) return known
    const hint = this.#inline.get(m)
    if (hint === undefined) return undefined
    const id = this.#insertMessage(m)
    this.#inline.delete(m)
    const properties = encodeProperties(m.properties)
    const spill = [hint.clientId, hint.seq, m.qos, m.retain ? 1 : 0, m.expiresAt ?? null, m.origin, m.topic, properties, m.payload]
    if (this.#s.spillDelivery.run(id, ...spill) > 0) this.#refs.add(id)
    return id
  }

  #insertMessage(m: Message): number {
    const id = ++this.#lastId
    this.#s.insertMessage.run(id, m.qos, m.retain ? 1 : 0, m.expiresAt ?? null, m.origin, m.topic, encodeProperties(m.properties), m.payload)
    this.#refs.created(id)
    this.#ids.set(m, id)
    return id
  }
}

interface Building {
  clientId: string
  owner: SessionOwner
  expiryInterval: number
  expiresAt: number | undefined
  will: StoredWill | undefined
  subscriptions: Map<string, SubscriptionOptions>
  deliveries: StoredDelivery[]
  incomingQos2: Set<number>
}
