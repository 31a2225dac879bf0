// Inline message bodies (see src/persistence/inline.ts): a small message held by one delivery
// only lives in that delivery's row; a second reference to the same Message object in the same
// transaction moves it ("spills") into its own messages row, shared by both; a second reference
// after a commit stores a second copy; large messages always get their own row. Every case is
// checked through load() after the store is closed and reopened, as a restart would.
import fs, { mkdtempSync, rmSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { openDatabase } from '../../src/db/database.js'
import { createMessage, type Message, type MessageFields } from '../../src/mqtt/session/message.js'
import type { SessionOwner, StoredDelivery, StoredState } from '../../src/mqtt/session/store.js'
import { MIGRATIONS } from '../../src/persistence/schema.js'
import { SqliteSessionStore, type SqliteStoreOptions } from '../../src/persistence/sqlite-store.js'

const dir = mkdtempSync(join(tmpdir(), 'perch-inline-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const newFile = (): string => join(dir, `inline-${++n}.db`)

function openAt(t: Test, file: string, options: Partial<SqliteStoreOptions> = {}): SqliteSessionStore {
  const opened = SqliteSessionStore.open(file, { synchronous: 'full', clock: new FakeClock(), logger: silentLogger(), ...options })
  if (!opened.ok) throw opened.error
  const store = opened.value
  t.teardown(() => store.close())
  return store
}

/** Closes the store and opens its file again, as a restart would; returns the new store and what it loads. */
function reopen(t: Test, store: SqliteSessionStore): { store: SqliteSessionStore; state: StoredState } {
  store.close()
  const again = openAt(t, store.file)
  return { store: again, state: again.load() }
}

interface DeliveryLayout {
  client_id: string
  seq: number
  message_id: number | null
  m_topic: string | null
}

/** What the file holds, read directly (the store must be closed: it locks its file exclusively). */
function inspect(file: string): { deliveries: DeliveryLayout[]; messages: { id: number; topic: string }[]; retained: { topic: string; message_id: number }[] } {
  const opened = openDatabase(file, { synchronous: 'full', migrations: MIGRATIONS })
  if (!opened.ok) throw opened.error
  const db = opened.value
  try {
    return {
      deliveries: db.prepare<DeliveryLayout>('SELECT client_id, seq, message_id, m_topic FROM deliveries ORDER BY client_id, seq').all(),
      messages: db.prepare<{ id: number; topic: string }>('SELECT id, topic FROM messages ORDER BY id').all(),
      retained: db.prepare<{ topic: string; message_id: number }>('SELECT topic, message_id FROM retained ORDER BY topic').all(),
    }
  } finally {
    db.close()
  }
}

const owner: SessionOwner = { username: 'u', account: undefined, admin: false }

function message(topic: string, payload: string | Buffer = `payload of ${topic}`, extra: Partial<MessageFields> = {}): Message {
  return createMessage({
    topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    qos: 1,
    retain: false,
    properties: undefined,
    expiresAt: undefined,
    origin: 'pub',
    ...extra,
  })
}

function delivery(seq: number, m: Message, extra: Partial<StoredDelivery> = {}): StoredDelivery {
  return { seq, message: m, qos: m.qos, retain: false, subscriptionIds: undefined, state: 'queued', packetId: 0, ...extra }
}

function sessions(store: SqliteSessionStore, ...ids: string[]): void {
  for (const id of ids) store.saveSession(id, owner, 3600, undefined)
}

/** The message a session's delivery loaded with, failing the test when it is missing. */
function loaded(t: Test, state: StoredState, clientId: string, seq: number): Message {
  const d = state.sessions.find((s) => s.clientId === clientId)?.deliveries.find((x) => x.seq === seq)
  if (d === undefined) throw new Error(`no delivery ${clientId} ${seq}`)
  t.ok(d, `${clientId} ${seq} loaded`)
  return d.message
}

/** The stored fields of a message (what must survive a restart), payload as bytes. */
function content(m: Message): Record<string, unknown> {
  return {
    topic: m.topic,
    payload: [...m.payload],
    qos: m.qos,
    retain: m.retain,
    properties: m.properties === undefined ? undefined : { ...m.properties, correlationData: m.properties.correlationData?.toString('hex') },
    expiresAt: m.expiresAt,
    origin: m.origin,
  }
}

function sameContent(t: Test, actual: Message, expected: Message, what: string): void {
  t.same(content(actual), content(expected), what)
  t.ok(actual.payload.equals(expected.payload), `${what}: payload bytes equal`)
}

// ---------------------------------------------------------------------------------------------

t.test('a small message for one session is stored inline and round-trips exactly', async (t) => {
  const store = openAt(t, newFile())
  const payload = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10, 13, 0])
  const m = message('inline/ünï', payload, {
    qos: 2,
    retain: true,
    expiresAt: 1_700_000_123_456,
    origin: 'publisher-7',
    properties: {
      payloadFormatIndicator: false,
      contentType: 'application/octet-stream',
      responseTopic: 'reply/here',
      correlationData: Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef]),
      userProperties: [['a', '1'], ['multi', 'x'], ['multi', 'y'], ['multi', 'x'], ['ключ', 'значение']],
    },
  })
  const empty = message('inline/empty', Buffer.alloc(0), { qos: 0 })
  sessions(store, 'a')
  store.addDelivery('a', delivery(1, m, { qos: 1, retain: true, subscriptionIds: [3, 9], state: 'await-ack', packetId: 42 }))
  store.addDelivery('a', delivery(2, empty))
  store.flush()
  t.match(store.rowCounts(), { messages: 2, deliveries: 2, refs: 2 }, 'two bodies, two references')
  const { store: again, state } = reopen(t, store)
  const a = state.sessions.find((s) => s.clientId === 'a')
  t.equal(a?.deliveries.length, 2)
  const d = a?.deliveries[0]
  t.match(d, { seq: 1, qos: 1, retain: true, state: 'await-ack', packetId: 42 }, 'the delivery fields round-trip')
  t.same(d?.subscriptionIds, [3, 9])
  sameContent(t, loaded(t, state, 'a', 1), m, 'every message field round-trips')
  sameContent(t, loaded(t, state, 'a', 2), empty, 'an empty payload round-trips')
  t.equal(loaded(t, state, 'a', 1).properties?.payloadFormatIndicator, false, 'a false payload format indicator stays false')
  again.close()
  const layout = inspect(again.file)
  t.same(layout.messages, [], 'no messages row')
  t.same(
    layout.deliveries.map((r) => [r.seq, r.message_id, r.m_topic]),
    [
      [1, null, 'inline/ünï'],
      [2, null, 'inline/empty'],
    ],
    'both bodies are held inline',
  )
})

t.test('the inline limit: 512 bytes (payload + topic + properties) inline, 513 in messages, even with one reference', async (t) => {
  const store = openAt(t, newFile())
  const topic = 'big/x'
  const at = message(topic, Buffer.alloc(512 - topic.length, 7))
  const over = message(topic, Buffer.alloc(513 - topic.length, 8))
  const large = message('big/y', Buffer.alloc(10_000, 9), { properties: { userProperties: [['k', 'v']] } })
  sessions(store, 'a')
  store.addDelivery('a', delivery(1, at))
  store.addDelivery('a', delivery(2, over))
  store.addDelivery('a', delivery(3, large))
  store.flush()
  t.match(store.rowCounts(), { messages: 3, deliveries: 3, refs: 3 })
  const { store: again, state } = reopen(t, store)
  sameContent(t, loaded(t, state, 'a', 1), at, '512 bytes')
  sameContent(t, loaded(t, state, 'a', 2), over, '513 bytes')
  sameContent(t, loaded(t, state, 'a', 3), large, '10 kB')
  // Removing a large message's only delivery sweeps its row.
  again.removeDelivery('a', 3)
  again.flush()
  t.match(again.rowCounts(), { messages: 2, deliveries: 2, refs: 2 })
  again.close()
  const layout = inspect(again.file)
  t.same(
    layout.deliveries.map((r) => [r.seq, r.message_id === null]),
    [
      [1, true],
      [2, false],
    ],
    'at the limit inline, over it a messages row',
  )
  t.equal(layout.messages.length, 1)
})

t.test('one Message for two sessions in one transaction: one shared row; removals keep it until the last', async (t) => {
  const store = openAt(t, newFile())
  const m = message('fan/out', 'shared body', { properties: { userProperties: [['k', '1'], ['k', '2']], correlationData: Buffer.from('cd') }, expiresAt: 99_000 })
  sessions(store, 'a', 'b')
  store.addDelivery('a', delivery(1, m))
  store.addDelivery('b', delivery(5, m, { qos: 0 }))
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 2, refs: 2 }, 'one body, two references')
  let { store: s, state } = reopen(t, store)
  const fromA = loaded(t, state, 'a', 1)
  const fromB = loaded(t, state, 'b', 5)
  t.equal(fromA, fromB, 'both deliveries load the same object')
  sameContent(t, fromA, m, 'the shared body')
  s.close()
  const layout = inspect(s.file)
  t.equal(layout.messages.length, 1, 'one messages row')
  const id = layout.messages[0]?.id
  t.same(
    layout.deliveries.map((r) => [r.client_id, r.message_id, r.m_topic]),
    [
      ['a', id, null],
      ['b', id, null],
    ],
    'the first delivery was moved out of its row: both point to it',
  )
  ;({ store: s, state } = reopen(t, s))
  s.removeDelivery('a', 1)
  s.flush()
  t.match(s.rowCounts(), { messages: 1, deliveries: 1, refs: 1 }, 'one removal keeps the row')
  ;({ store: s, state } = reopen(t, s))
  t.equal(state.sessions.find((x) => x.clientId === 'a')?.deliveries.length, 0)
  sameContent(t, loaded(t, state, 'b', 5), m, 'the other delivery is intact')
  s.removeDelivery('b', 5)
  t.match(s.rowCounts(), { messages: 1, deliveries: 0 }, 'the row stays until the commit')
  s.flush()
  t.match(s.rowCounts(), { messages: 0, deliveries: 0, refs: 0 }, 'the last removal deletes the row at commit')
  s.close()
  t.same(inspect(s.file).messages, [], 'nothing left after reopen')
})

t.test('both removals of a shared message in the same transaction that stored it', async (t) => {
  const store = openAt(t, newFile())
  const m = message('fan/gone')
  sessions(store, 'a', 'b', 'c')
  store.addDelivery('a', delivery(1, m))
  store.addDelivery('b', delivery(1, m))
  store.addDelivery('c', delivery(1, m))
  store.removeDelivery('a', 1)
  store.removeDelivery('b', 1)
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 1, refs: 1 })
  store.removeDelivery('c', 1)
  store.flush()
  t.match(store.rowCounts(), { messages: 0, deliveries: 0, refs: 0 })
  const { state } = reopen(t, store)
  t.same(
    state.sessions.map((s) => s.deliveries.length),
    [0, 0, 0],
  )
})

t.test('a Message delivered then set retained in the same transaction shares one row', async (t) => {
  const store = openAt(t, newFile())
  const m = message('ret/x', 'retained body', { retain: true, properties: { contentType: 'text/plain' } })
  sessions(store, 'a')
  store.addDelivery('a', delivery(1, m, { retain: true }))
  store.setRetained(m)
  store.flush()
  t.match(store.rowCounts(), { messages: 1, deliveries: 1, retained: 1, refs: 2 })
  let { store: s, state } = reopen(t, store)
  t.equal(state.retained.length, 1)
  t.equal(state.retained[0], loaded(t, state, 'a', 1), 'the retained store and the delivery load one object')
  sameContent(t, loaded(t, state, 'a', 1), m, 'its content')
  s.close()
  const layout = inspect(s.file)
  t.equal(layout.messages.length, 1)
  t.equal(layout.deliveries[0]?.message_id, layout.retained[0]?.message_id, 'both point to the one row')
  ;({ store: s, state } = reopen(t, s))
  s.deleteRetained('ret/x')
  s.flush()
  t.match(s.rowCounts(), { messages: 1, retained: 0, refs: 1 }, 'the delivery keeps the row')
  ;({ store: s, state } = reopen(t, s))
  sameContent(t, loaded(t, state, 'a', 1), m, 'still intact after the retained copy went')
})

t.test('a Message delivered then saved as a will in the same transaction shares one row', async (t) => {
  const store = openAt(t, newFile())
  const m = message('will/x', 'last words')
  sessions(store, 'a', 'b')
  store.addDelivery('b', delivery(1, m))
  store.saveWill('a', { message: m, delaySeconds: 3, expirySeconds: undefined, publishAt: undefined })
  store.flush()
  t.match(store.rowCounts(), { messages: 1, wills: 1, refs: 2 })
  const { state } = reopen(t, store)
  const will = state.sessions.find((s) => s.clientId === 'a')?.will
  t.equal(will?.message, loaded(t, state, 'b', 1), 'one object')
  sameContent(t, loaded(t, state, 'b', 1), m, 'its content')
})

t.test('a second reference after a commit stores a second copy; both load correctly', async (t) => {
  const store = openAt(t, newFile())
  const m = message('later/x', 'twice', { properties: { userProperties: [['n', '1']] } })
  sessions(store, 'a', 'b')
  store.addDelivery('a', delivery(1, m))
  store.flush()
  store.addDelivery('b', delivery(1, m))
  store.flush()
  t.match(store.rowCounts(), { messages: 2, deliveries: 2, refs: 2 }, 'two bodies')
  store.setRetained(m)
  store.flush()
  t.match(store.rowCounts(), { messages: 3, retained: 1, refs: 3 }, 'a retained reference after the commits is a third copy')
  let { store: s, state } = reopen(t, store)
  const fromA = loaded(t, state, 'a', 1)
  const fromB = loaded(t, state, 'b', 1)
  t.not(fromA, fromB, 'separate copies load as separate objects')
  sameContent(t, fromA, m, 'the first copy')
  sameContent(t, fromB, m, 'the second copy')
  const retained = state.retained[0]
  t.ok(retained)
  if (retained !== undefined) sameContent(t, retained, m, 'the retained copy')
  s.close()
  const layout = inspect(s.file)
  t.same(
    layout.deliveries.map((r) => r.message_id),
    [null, null],
    'both deliveries inline',
  )
  t.equal(layout.messages.length, 1, 'the retained copy has its own row')
  ;({ store: s, state } = reopen(t, s))
  s.removeDelivery('a', 1)
  s.flush()
  ;({ store: s, state } = reopen(t, s))
  sameContent(t, loaded(t, state, 'b', 1), m, 'removing one copy leaves the other')
})

t.test('a loaded inline message referenced again is stored again (its own row), content intact', async (t) => {
  const store = openAt(t, newFile())
  const m = message('reload/x')
  sessions(store, 'a', 'b')
  store.addDelivery('a', delivery(1, m))
  store.flush()
  let { store: s, state } = reopen(t, store)
  const fromA = loaded(t, state, 'a', 1)
  s.addDelivery('b', delivery(1, fromA))
  s.setRetained(fromA)
  s.flush()
  t.match(s.rowCounts(), { messages: 2, deliveries: 2, retained: 1, refs: 3 }, 'a copy inline in a, the new one shared by b and retained')
  ;({ store: s, state } = reopen(t, s))
  sameContent(t, loaded(t, state, 'a', 1), m, 'a')
  sameContent(t, loaded(t, state, 'b', 1), m, 'b')
  t.equal(state.retained[0], loaded(t, state, 'b', 1), 'b and the retained store share a row')
})

t.test('the spill guard: a seq removed and reused before the second reference is not overwritten', async (t) => {
  const store = openAt(t, newFile())
  const m = message('guard/m', 'first body')
  const other = message('guard/other', 'replacement body', { qos: 2, origin: 'other' })
  sessions(store, 'a', 'b')
  store.addDelivery('a', delivery(1, m))
  store.removeDelivery('a', 1)
  store.addDelivery('a', delivery(1, other))
  store.addDelivery('b', delivery(1, m))
  // The same with replace-by-add: a taken seq is replaced.
  const m2 = message('guard/m2', 'second body')
  const other2 = message('guard/other2', 'another replacement')
  store.addDelivery('a', delivery(2, m2))
  store.addDelivery('a', delivery(2, other2))
  store.setRetained(m2)
  // And a seq reused after deleting and recreating the session.
  const m3 = message('guard/m3', 'third body')
  const other3 = message('guard/other3', 'third replacement')
  sessions(store, 'c')
  store.addDelivery('c', delivery(1, m3))
  store.deleteSession('c')
  sessions(store, 'c')
  store.addDelivery('c', delivery(1, other3))
  store.saveWill('b', { message: m3, delaySeconds: 0, expirySeconds: undefined, publishAt: undefined })
  store.flush()
  t.match(store.rowCounts(), { deliveries: 4, retained: 1, wills: 1, messages: 6, refs: 6 })
  let { store: s, state } = reopen(t, store)
  sameContent(t, loaded(t, state, 'a', 1), other, 'a 1 keeps the replacement')
  sameContent(t, loaded(t, state, 'b', 1), m, 'b 1 got the first body')
  sameContent(t, loaded(t, state, 'a', 2), other2, 'a 2 keeps its replacement')
  sameContent(t, loaded(t, state, 'c', 1), other3, 'c 1 keeps its replacement')
  const retained = state.retained[0]
  if (retained !== undefined) sameContent(t, retained, m2, 'the retained message is the one set')
  else t.fail('no retained message')
  const will = state.sessions.find((x) => x.clientId === 'b')?.will?.message
  if (will !== undefined) sameContent(t, will, m3, 'the will is the one saved')
  else t.fail('no will')
  s.close()
  const layout = inspect(s.file)
  t.same(
    layout.deliveries.map((r) => [r.client_id, r.seq, r.message_id === null, r.m_topic]),
    [
      ['a', 1, true, 'guard/other'],
      ['a', 2, true, 'guard/other2'],
      ['b', 1, false, null],
      ['c', 1, true, 'guard/other3'],
    ],
    'the reused rows still hold their own bodies inline',
  )
  ;({ store: s, state } = reopen(t, s))
  s.removeDelivery('b', 1)
  s.deleteRetained('guard/m2')
  s.saveWill('b', undefined)
  s.flush()
  t.match(s.rowCounts(), { deliveries: 3, messages: 3, refs: 3 }, 'the spilled rows are swept with their last reference')
  ;({ store: s, state } = reopen(t, s))
  sameContent(t, loaded(t, state, 'a', 1), other, 'a 1 still intact')
})

t.test('the spill guard with a reused seq holding an equal body: both still load it', async (t) => {
  const store = openAt(t, newFile())
  const m = message('twin/x', 'same')
  const twin = message('twin/x', 'same')
  sessions(store, 'a', 'b', 'c')
  store.addDelivery('a', delivery(1, m))
  store.removeDelivery('a', 1)
  store.addDelivery('a', delivery(1, twin))
  store.addDelivery('b', delivery(1, m))
  store.addDelivery('c', delivery(1, twin))
  store.flush()
  const { store: s, state } = reopen(t, store)
  for (const id of ['a', 'b', 'c']) sameContent(t, loaded(t, state, id, 1), m, `${id} loads the body`)
  t.equal(s.rowCounts().deliveries, 3)
  s.removeDelivery('a', 1)
  s.removeDelivery('b', 1)
  s.flush()
  const after = reopen(t, s)
  sameContent(t, loaded(t, after.state, 'c', 1), m, 'c intact after the others went')
  after.store.removeDelivery('c', 1)
  after.store.flush()
  t.match(after.store.rowCounts(), { messages: 0, deliveries: 0, refs: 0 }, 'nothing left over')
})

// ---------------------------------------------------------------------------------------------
// A failed batch: a tiny free space makes the store cap its file (max_page_count) just above
// its size at open, as `fitFreeSpace` does on a nearly full disk.

type Statfs = typeof fs.statfsSync

function withTinyDisk<T>(fn: () => T): T {
  const real: Statfs = fs.statfsSync
  const fake = ((path: string) => ({ ...real(path), bavail: 1, bsize: 4096 })) as unknown as Statfs
  ;(fs as { statfsSync: Statfs }).statfsSync = fake
  syncBuiltinESMExports()
  try {
    return fn()
  } finally {
    ;(fs as { statfsSync: Statfs }).statfsSync = real
    syncBuiltinESMExports()
  }
}

t.test('a failed batch (disk full) leaves a consistent state: every committed delivery loads with its content', async (t) => {
  const file = newFile()
  const store = openAt(t, file)
  const small = message('full/small', 'inline body', { properties: { userProperties: [['k', 'v']] } })
  const shared = message('full/shared', 'shared body')
  const big = message('full/big', Buffer.alloc(2000, 1))
  sessions(store, 'a', 'b')
  store.addDelivery('a', delivery(1, small))
  store.addDelivery('a', delivery(2, shared))
  store.addDelivery('b', delivery(1, shared))
  store.addDelivery('a', delivery(3, big))
  store.flush()
  store.close()

  const full = withTinyDisk(() => openAt(t, file))
  t.ok(full.maxBytes !== undefined, 'the file is capped')
  const fresh = message('full/fresh', 'fresh body')
  const outcomes: (string | undefined)[] = []
  // One batch: a new inline delivery spilled by a second reference, a removal, a state change,
  // then a message too large for the room left.
  full.addDelivery('a', delivery(4, fresh))
  full.addDelivery('b', delivery(2, fresh))
  full.setRetained(shared)
  full.removeDelivery('a', 1)
  full.updateDelivery('a', 2, 'await-ack', 7)
  full.addDelivery('b', delivery(3, message('full/huge', Buffer.alloc(256 * 1024, 2))))
  full.afterCommit((e) => outcomes.push(e?.message))
  full.flush()
  t.equal(outcomes.length, 1)
  t.match(outcomes[0], /disk full/, 'the batch failed: disk full')
  t.equal(full.stats.failures, 1)
  t.equal(full.stats.backlog, 2, 'the removal and the state change wait to be applied again')
  t.match(full.rowCounts(), { messages: 3, deliveries: 4, retained: 0 }, 'the batch was rolled back')
  // The kept writes are applied by the next transaction; the fresh message, referenced again
  // after the rollback, is stored anew (inline, then spilled by its second reference).
  full.addDelivery('a', delivery(5, fresh))
  full.addDelivery('b', delivery(5, fresh))
  full.afterCommit((e) => outcomes.push(e?.message))
  full.flush()
  t.same(outcomes, [outcomes[0], undefined], 'the retry committed')
  t.equal(full.stats.backlog, 0)

  const { store: s, state } = reopen(t, full)
  const a = state.sessions.find((x) => x.clientId === 'a')
  const b = state.sessions.find((x) => x.clientId === 'b')
  t.same(
    a?.deliveries.map((d) => d.seq),
    [2, 3, 5],
    'a: the removal was applied, the failed additions are gone',
  )
  t.same(
    b?.deliveries.map((d) => d.seq),
    [1, 5],
  )
  t.match(a?.deliveries[0], { state: 'await-ack', packetId: 7 }, 'the state change was applied')
  sameContent(t, loaded(t, state, 'a', 2), shared, 'a 2')
  sameContent(t, loaded(t, state, 'b', 1), shared, 'b 1')
  t.equal(loaded(t, state, 'a', 2), loaded(t, state, 'b', 1), 'still one shared row')
  sameContent(t, loaded(t, state, 'a', 3), big, 'a 3 (large)')
  sameContent(t, loaded(t, state, 'a', 5), fresh, 'a 5')
  sameContent(t, loaded(t, state, 'b', 5), fresh, 'b 5')
  t.equal(loaded(t, state, 'a', 5), loaded(t, state, 'b', 5), 'the fresh message shares one row')
  t.same(state.retained, [], 'the failed setRetained is not retried')
  t.match(s.rowCounts(), { messages: 3, deliveries: 5, refs: 5 }, 'no row left over from the failed batch')
  s.close()
  const opened = openDatabase(file, { synchronous: 'full', migrations: MIGRATIONS })
  if (!opened.ok) throw opened.error
  t.equal(opened.value.pragmaList('integrity_check')[0], 'ok', 'the file is intact')
  opened.value.close()
})

t.test('a batch that fails after a spill: the spill is undone, committed inline bodies stay, later references store anew', async (t) => {
  const file = newFile()
  const store = openAt(t, file)
  sessions(store, 'a', 'b')
  store.flush()
  store.close()
  const full = withTinyDisk(() => openAt(t, file))
  const m = message('spill/x', 'body')
  // Commit m inline in a 1, then in one batch: an inline delivery spilled by a second
  // reference, then the failure.
  full.addDelivery('a', delivery(1, m))
  full.flush()
  const n2 = message('spill/y', 'other body')
  full.addDelivery('a', delivery(2, n2))
  full.addDelivery('b', delivery(2, n2))
  full.addDelivery('b', delivery(1, m))
  full.addDelivery('b', delivery(3, message('spill/huge', Buffer.alloc(256 * 1024, 3))))
  full.flush()
  t.equal(full.stats.failures, 1)
  t.match(full.rowCounts(), { messages: 1, deliveries: 1, refs: 1 }, 'only the committed inline delivery')
  // Both referenced again in the next transaction.
  full.addDelivery('b', delivery(1, m))
  full.addDelivery('a', delivery(2, n2))
  full.setRetained(n2)
  full.flush()
  const { state } = reopen(t, full)
  sameContent(t, loaded(t, state, 'a', 1), m, 'a 1')
  sameContent(t, loaded(t, state, 'b', 1), m, 'b 1')
  sameContent(t, loaded(t, state, 'a', 2), n2, 'a 2')
  t.equal(state.retained[0], loaded(t, state, 'a', 2), 'a 2 shares its row with the retained store')
})
