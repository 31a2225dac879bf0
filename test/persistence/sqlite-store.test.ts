// The SQLite SessionStore (issue 3): the shared SessionStore contract on a real file, opened
// afresh and reopened as a restart would, then what only the durable store has: each message
// body stored once, rows swept when their last reference goes, group commit, failures that
// roll back and are retried, and typed errors for a damaged file.
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { FakeClock } from '../../src/core/clock.js'
import { createLogger, silentLogger } from '../../src/core/logger.js'
import { openDatabase } from '../../src/db/database.js'
import { DbError } from '../../src/db/errors.js'
import { createMessage, type Message } from '../../src/mqtt/session/message.js'
import type { SessionOwner, SessionStore, StoredDelivery } from '../../src/mqtt/session/store.js'
import { GroupCommit } from '../../src/persistence/group-commit.js'
import { MIGRATIONS } from '../../src/persistence/schema.js'
import { SqliteSessionStore, type SqliteStoreOptions } from '../../src/persistence/sqlite-store.js'
import { sessionStoreContract } from '../session/store-contract.js'

const dir = mkdtempSync(join(tmpdir(), 'perch-sqlite-store-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const newFile = (): string => join(dir, `store-${++n}.db`)
const files = new WeakMap<SessionStore, string>()

function openAt(file: string, options: Partial<SqliteStoreOptions> = {}): SqliteSessionStore {
  const opened = SqliteSessionStore.open(file, { synchronous: 'full', clock: new FakeClock(), logger: silentLogger(), ...options })
  if (!opened.ok) throw opened.error
  files.set(opened.value, file)
  return opened.value
}

/** A store on a fresh file, closed when the test ends. */
function freshStore(t: Test, options: Partial<SqliteStoreOptions> = {}): { store: SqliteSessionStore; file: string } {
  const file = newFile()
  const store = openAt(file, options)
  t.teardown(() => store.close())
  return { store, file }
}

sessionStoreContract(t, 'SqliteSessionStore', {
  open: () => openAt(newFile()),
  reopen: (previous) => {
    const file = files.get(previous)
    if (file === undefined) throw new Error('not a store this factory opened')
    previous.close()
    return openAt(file)
  },
})

const owner: SessionOwner = { username: 'u', account: undefined, admin: false }

function message(topic: string, qos: 0 | 1 | 2 = 1, retain = false): Message {
  return createMessage({ topic, payload: Buffer.from(`payload of ${topic}`), qos, retain, properties: undefined, expiresAt: undefined, origin: 'pub' })
}

function delivery(seq: number, m: Message): StoredDelivery {
  return { seq, message: m, qos: m.qos, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0 }
}

// ---------------------------------------------------------------------------------------------
// Each message body once, reference-counted

t.test('a message delivered to 3 persistent sessions and retained is stored once; reload shares one object', async (t) => {
  const { store, file } = freshStore(t)
  const m = message('shared/x', 1, true)
  for (const id of ['a', 'b', 'c']) {
    store.saveSession(id, owner, 60, undefined)
    store.addDelivery(id, delivery(1, m))
  }
  store.setRetained(m)
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 3, retained: 1, refs: 4 }, 'one message row with 4 references')
  store.close()
  const again = openAt(file)
  t.teardown(() => again.close())
  const state = again.load()
  const objects = new Set([...state.sessions.flatMap((s) => s.deliveries.map((d) => d.message)), ...state.retained])
  t.equal(objects.size, 1, 'every reference to the row is the same Message object')
  // Referencing a loaded message again reuses its row.
  again.saveSession('d', owner, 60, undefined)
  const [loaded] = objects
  if (loaded !== undefined) again.addDelivery('d', delivery(1, loaded))
  again.flush()
  t.match(again.rowCounts(), { messages: 1, deliveries: 4, refs: 5 }, 'a loaded message referenced again keeps its one row')
})

t.test('a message row is deleted, in the commit, once its last reference goes', async (t) => {
  const { store } = freshStore(t)
  const m = message('gone/x', 1, true)
  const will = message('will/a')
  store.saveSession('a', owner, 60, undefined)
  store.saveSession('b', owner, 60, undefined)
  store.addDelivery('a', delivery(1, m))
  store.addDelivery('b', delivery(7, m))
  store.setRetained(m)
  store.saveWill('a', { message: will, delaySeconds: 5, expirySeconds: undefined, publishAt: undefined })
  store.flush()
  t.match(store.rowCounts(), { messages: 2, refs: 4 })
  store.removeDelivery('a', 1)
  store.flush()
  t.match(store.rowCounts(), { messages: 2, refs: 3 }, 'still referenced')
  store.deleteRetained('gone/x')
  store.deleteSession('b')
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 0, retained: 0, refs: 1 }, 'the last references went: the row is swept')
  store.saveWill('a', undefined)
  store.flush()
  t.match(store.rowCounts(), { messages: 0, wills: 0, refs: 0 }, 'clearing the will sweeps its message')
  // The same Message object referenced again after its row was swept is stored again.
  store.addDelivery('a', delivery(2, m))
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 1, refs: 1 })
  t.equal(store.load().sessions.find((s) => s.clientId === 'a')?.deliveries[0]?.message.topic, 'gone/x')
})

t.test('writes for an unknown session leave no message row behind', async (t) => {
  const { store } = freshStore(t)
  const m = message('ghost/x')
  store.addDelivery('ghost', delivery(1, m))
  store.saveWill('ghost', { message: m, delaySeconds: 0, expirySeconds: undefined, publishAt: undefined })
  store.flush()
  t.match(store.rowCounts(), { sessions: 0, messages: 0, deliveries: 0, wills: 0 })
})

t.test('replacing a retained message moves the reference to the new row', async (t) => {
  const { store } = freshStore(t)
  store.setRetained(message('r', 1, true))
  store.setRetained(message('r', 1, true))
  store.flush()
  t.match(store.rowCounts(), { messages: 1, retained: 1, refs: 1 })
})

// ---------------------------------------------------------------------------------------------
// Group commit

t.test('group commit: writes share one transaction; callbacks run after it commits, in order', async (t) => {
  const clock = new FakeClock()
  const { store } = freshStore(t, { clock, commitIntervalMs: 5, commitMaxWrites: 1000 })
  const calls: string[] = []
  store.afterCommit((e) => calls.push(`idle ${String(e)}`))
  t.same(calls, ['idle undefined'], 'nothing pending: called at once')
  store.saveSession('a', owner, 60, undefined)
  for (let i = 1; i <= 300; i++) {
    store.addDelivery('a', delivery(i, message(`t/${i}`)))
    if (i % 100 === 0) store.afterCommit((e) => calls.push(`after ${i} ${String(e)}`))
  }
  t.equal(store.stats.commits, 0, 'nothing committed before the interval ends')
  t.same(calls, ['idle undefined'], 'no callback before the commit')
  clock.advance(4)
  t.equal(store.stats.commits, 0)
  clock.advance(1)
  t.equal(store.stats.commits, 1, '301 writes, one commit')
  t.same(calls, ['idle undefined', 'after 100 undefined', 'after 200 undefined', 'after 300 undefined'])
  store.afterCommit((e) => calls.push(`idle again ${String(e)}`))
  t.equal(calls.at(-1), 'idle again undefined')
  t.equal(store.rowCounts().deliveries, 300)
})

t.test('group commit: commitMaxWrites ends a transaction early; its callbacks follow the current call', async (t) => {
  const clock = new FakeClock()
  const { store } = freshStore(t, { clock, commitIntervalMs: 1000, commitMaxWrites: 100 })
  const calls: number[] = []
  store.saveSession('a', owner, 60, undefined)
  for (let i = 1; i <= 2500; i++) {
    store.addDelivery('a', delivery(i, message(`t/${i}`)))
    if (i % 50 === 0) store.afterCommit(() => calls.push(i))
  }
  t.equal(store.stats.commits, 25, '2,501 writes in transactions of 100: 25 commits so far')
  t.same(calls, [], 'callbacks wait for the current call stack to finish')
  await Promise.resolve()
  t.equal(calls.length, 49, 'then the 49 committed ones run')
  t.same(
    calls,
    calls.slice().sort((a, b) => a - b),
    'in order',
  )
  store.afterCommit(() => calls.push(-1))
  t.equal(calls.length, 49, 'one write is pending: a new callback waits')
  clock.advance(1000)
  t.equal(store.stats.commits, 26)
  t.same(calls.slice(-2), [2500, -1])
})

t.test('flush commits at once; close flushes; writes reach the file', async (t) => {
  const clock = new FakeClock()
  const file = newFile()
  const store = openAt(file, { clock })
  store.saveSession('a', owner, 60, undefined)
  let called = false
  store.afterCommit(() => {
    called = true
  })
  store.flush()
  t.ok(called)
  t.equal(store.stats.commits, 1)
  store.saveSubscription('a', 'x/#', { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined })
  store.close()
  let afterClose: Error | undefined
  store.afterCommit((e) => {
    afterClose = e
  })
  t.match(afterClose?.message, /closed/, 'a callback after close is told the store is closed')
  const again = openAt(file)
  t.teardown(() => again.close())
  t.same([...(again.load().sessions[0]?.subscriptions.keys() ?? [])], ['x/#'], 'the write made just before close is there')
})

t.test('a QoS 0 message to a persistent session never writes; its retained copy is the one write', async (t) => {
  const { store } = freshStore(t)
  // What the broker does: Session.deliver does not call the store for QoS 0 (tested with the
  // broker below); the store itself only writes when asked.
  store.flush()
  const before = store.stats.writes
  store.afterCommit(() => {})
  t.equal(store.stats.writes, before, 'afterCommit alone writes nothing')
})

// ---------------------------------------------------------------------------------------------
// Failures: a full database (max_page_count stands in for a full disk)

t.test('a full disk fails the batch: callbacks get an error naming the file; writes are kept and applied once there is room', async (t) => {
  const file = newFile()
  const opened = openDatabase(file, { synchronous: 'full', migrations: ['CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)'] })
  if (!opened.ok) throw opened.error
  const db = opened.value
  t.teardown(() => db.close())
  const pages = db.pragma('page_count')
  db.pragma(`max_page_count = ${Number(pages) + 8}`)
  const insert = db.prepare('INSERT INTO blobs (id, data) VALUES (?, ?)')
  const remove = db.prepare('DELETE FROM blobs WHERE id = ?')
  const count = db.prepare<{ n: number }>('SELECT count(*) AS n FROM blobs')
  const logs: Record<string, unknown>[] = []
  const clock = new FakeClock()
  const logger = createLogger('debug', (l) => logs.push(JSON.parse(l) as Record<string, unknown>), () => clock.now())
  const gc = new GroupCommit(db, clock, logger, { intervalMs: 5, maxWrites: 1000, retryMs: 1000 }, () => {})
  const outcomes: (string | undefined)[] = []
  const record = (e: Error | undefined): void => {
    outcomes.push(e?.message)
  }
  gc.write(() => insert.run(1, Buffer.alloc(4000)))
  gc.afterCommit(record)
  clock.advance(5)
  t.same(outcomes, [undefined], 'a small write commits')
  gc.write(() => insert.run(2, Buffer.alloc(100_000)))
  gc.afterCommit(record)
  gc.write(() => remove.run(1))
  gc.afterCommit(record)
  gc.write(() => insert.run(9, Buffer.alloc(10)), false)
  clock.advance(5)
  t.equal(outcomes.length, 3)
  t.match(outcomes[1], /^disk full: .*store-\d+\.db/, 'the error says disk full and names the file')
  t.equal(outcomes[2], outcomes[1], 'a callback registered after the failed write in the same batch fails too')
  t.equal(gc.stats.failures, 1)
  t.equal(gc.stats.backlog, 2, 'both writes of the failed batch wait to be applied again; the one marked retry: false does not')
  t.ok(logs.some((l) => l.event === 'store.commit-failed' && String(l.error).includes(file)), 'logged, naming the file')
  t.equal(count.get()?.n, 1, 'the failed batch was rolled back')
  gc.afterCommit(record)
  t.equal(outcomes.length, 3, 'with writes waiting, a new callback waits too')
  clock.advance(1000)
  t.equal(outcomes.length, 4)
  t.match(outcomes[3], /disk full/, 'the retry fails while the disk is still full')
  db.pragma('max_page_count = 100000')
  gc.write(() => insert.run(3, Buffer.alloc(10)))
  gc.afterCommit(record)
  clock.advance(5)
  t.equal(outcomes.length, 4, 'after a failure, new writes wait behind the kept ones for the retry (a backoff)')
  clock.advance(995)
  t.equal(outcomes.length, 5)
  t.equal(outcomes[4], undefined, 'with room again the retry commits, the kept writes first')
  t.equal(gc.stats.backlog, 0)
  t.same(
    db.prepare<{ id: number }>('SELECT id FROM blobs ORDER BY id').all().map((r) => r.id),
    [2, 3],
    'the removal made while the disk was full was not forgotten',
  )
  t.equal(db.pragmaList('integrity_check')[0], 'ok', 'the file is intact')
  gc.close()
})

t.test('a publisher sending into a full disk cannot starve the retry: the kept removals commit on their own and free the space', async (t) => {
  const file = newFile()
  const opened = openDatabase(file, { synchronous: 'full', migrations: ['CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)'] })
  if (!opened.ok) throw opened.error
  const db = opened.value
  t.teardown(() => db.close())
  const insert = db.prepare('INSERT INTO blobs (id, data) VALUES (?, ?)')
  const remove = db.prepare('DELETE FROM blobs WHERE id = ?')
  const ids = (): number[] => db.prepare<{ id: number }>('SELECT id FROM blobs ORDER BY id').all().map((r) => r.id)
  const clock = new FakeClock()
  const gc = new GroupCommit(db, clock, silentLogger(), { intervalMs: 5, maxWrites: 1000, retryMs: 1000 }, () => {})
  const outcomes: (string | undefined)[] = []
  const record = (e: Error | undefined): void => {
    outcomes.push(e?.message)
  }
  // Two 40 KB rows, then the disk is full: 4 pages of room left.
  gc.write(() => insert.run(1, Buffer.alloc(40_000)))
  gc.write(() => insert.run(2, Buffer.alloc(40_000)))
  gc.afterCommit(record)
  clock.advance(5)
  t.same(outcomes, [undefined])
  db.pragma(`max_page_count = ${Number(db.pragma('page_count')) + 4}`)
  // A subscriber acknowledges row 1 while a message that does not fit fails the batch.
  gc.write(() => insert.run(10, Buffer.alloc(60_000)), false)
  gc.write(() => remove.run(1))
  gc.afterCommit(record)
  clock.advance(5)
  t.match(outcomes[1], /disk full/, 'the batch with the oversized message fails')
  t.equal(gc.stats.backlog, 1, 'the removal is kept; the message is given up')
  // Every retry interval the publisher tries again with a message that needs more room than
  // the removal frees (40 KB freed, 60 KB asked).
  for (let round = 0; round < 3; round++) {
    clock.advance(400)
    gc.write(() => insert.run(20 + round, Buffer.alloc(60_000)), false)
    gc.afterCommit(record)
    clock.advance(600)
  }
  t.same(ids(), [2], 'the kept removal committed at the first retry, though every retry carried a message that could not fit')
  t.equal(outcomes.length, 5)
  t.same(
    outcomes.slice(2).map((o) => /disk full/.test(o ?? '')),
    [true, true, true],
    'each oversized message is refused: its publisher is told it was not stored',
  )
  t.equal(gc.stats.backlog, 0, 'nothing waits any more')
  // The space the removal freed is usable: a message that fits in it is stored.
  gc.write(() => insert.run(30, Buffer.alloc(30_000)), false)
  gc.afterCommit(record)
  clock.advance(5)
  t.equal(outcomes[5], undefined, 'a message that fits in the freed space is stored')
  t.same(ids(), [2, 30])
  t.equal(db.pragmaList('integrity_check')[0], 'ok', 'the file is intact')
  gc.close()
})

t.test('a statement error that keeps the transaction open drops only that write', async (t) => {
  const file = newFile()
  const opened = openDatabase(file, { synchronous: 'normal', migrations: ['CREATE TABLE u (id INTEGER PRIMARY KEY)'] })
  if (!opened.ok) throw opened.error
  const db = opened.value
  t.teardown(() => db.close())
  const insert = db.prepare('INSERT INTO u (id) VALUES (?)')
  const clock = new FakeClock()
  const gc = new GroupCommit(db, clock, silentLogger(), { intervalMs: 5, maxWrites: 1000 }, () => {})
  let outcome: Error | undefined | null = null
  gc.write(() => insert.run(1))
  gc.write(() => insert.run(1))
  gc.write(() => insert.run(2))
  gc.afterCommit((e) => {
    outcome = e
  })
  clock.advance(5)
  t.equal(outcome, undefined)
  t.same(
    db.prepare<{ id: number }>('SELECT id FROM u').all().map((r) => r.id),
    [1, 2],
  )
  gc.close()
})

// ---------------------------------------------------------------------------------------------
// Damaged files

t.test('a file of garbage: open gives the typed not-a-database error naming the file', async (t) => {
  const file = newFile()
  writeFileSync(file, Buffer.alloc(8192, 0x5a))
  const opened = SqliteSessionStore.open(file, { synchronous: 'full', clock: new FakeClock(), logger: silentLogger() })
  t.notOk(opened.ok)
  if (opened.ok) return
  t.type(opened.error, DbError)
  t.equal(opened.error.code, 'EDB_NOTADB')
  t.ok(opened.error.damaged)
  t.match(opened.error.message, file)
})

t.test('a truncated database: open gives the typed corrupt error naming the file', async (t) => {
  const file = newFile()
  const store = openAt(file)
  store.saveSession('a', owner, 60, undefined)
  for (let i = 0; i < 200; i++) store.addDelivery('a', delivery(i, createMessage({ ...message(`t/${i}`), payload: Buffer.alloc(2000, i) })))
  store.close()
  const { statSync } = await import('node:fs')
  truncateSync(file, Math.floor(statSync(file).size / 2))
  const opened = SqliteSessionStore.open(file, { synchronous: 'full', clock: new FakeClock(), logger: silentLogger() })
  t.notOk(opened.ok)
  if (opened.ok) return
  t.equal(opened.error.code, 'EDB_CORRUPT')
  t.equal(opened.error.kind, 'corrupt')
  t.match(opened.error.message, file)
})

t.test('a directory where the database should be: the unreadable error naming the file', async (t) => {
  const file = join(mkdtempSync(join(dir, 'd-')), 'perch.db')
  const { mkdirSync } = await import('node:fs')
  mkdirSync(file)
  const opened = openDatabase(file, { synchronous: 'full', migrations: MIGRATIONS })
  t.notOk(opened.ok)
  if (opened.ok) return
  t.equal(opened.error.code, 'EDB_UNREADABLE')
  t.notOk(opened.error.damaged, 'not something to move aside')
  t.match(opened.error.message, file)
})

t.test('a database written by a newer schema is refused', async (t) => {
  const file = newFile()
  openAt(file).close()
  const opened = openDatabase(file, { synchronous: 'full', migrations: [] })
  t.notOk(opened.ok)
  if (!opened.ok) t.equal(opened.error.code, 'EDB_SCHEMA')
})

t.test('a second store on the same file is refused while the first has it open', async (t) => {
  const { file } = freshStore(t)
  const second = openDatabase(file, { synchronous: 'full', migrations: MIGRATIONS, busyTimeoutMs: 50 })
  t.notOk(second.ok, 'exclusive locking: one process owns the file')
  if (!second.ok) t.equal(second.error.code, 'EDB_BUSY')
})
