// Issue 3 through a real broker with the default persistence (SQLite in the data directory):
// what a persistent session was owed, and retained messages, survive a stop and a start of a
// new broker on the same directory; one message row serves every session that holds it; a
// QoS 0 message never writes; a damaged database stops the start or is moved aside loudly.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { App } from '../../src/app/app.js'
import { runCli } from '../../src/app/cli.js'
import { defaultConfig, resolveConfig } from '../../src/app/config.js'
import { systemClock } from '../../src/core/clock.js'
import { createLogger } from '../../src/core/logger.js'
import { openDatabase } from '../../src/db/database.js'
import { MIGRATIONS } from '../../src/persistence/schema.js'
import { SqliteSessionStore } from '../../src/persistence/sqlite-store.js'
import { startBroker } from '../helpers/broker.js'
import { collect, connectClient, connectWithAck, until } from '../helpers/clients.js'

function tempDataDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-restart-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Row counts of a stopped broker's database. */
function countRows(file: string): Record<string, number> {
  const opened = openDatabase(file, { synchronous: 'normal', migrations: MIGRATIONS })
  if (!opened.ok) throw opened.error
  const db = opened.value
  try {
    const n = (table: string): number => db.prepare<{ n: number }>(`SELECT count(*) AS n FROM ${table}`).get()?.n ?? -1
    return { sessions: n('sessions'), messages: n('messages'), deliveries: n('deliveries'), retained: n('retained'), subscriptions: n('subscriptions') }
  } finally {
    db.close()
  }
}

t.test('persistent subscribers (3.1.1 and 5.0) get every QoS 1 message sent while they were offline, across a restart; retained survives', async (t) => {
  const dataDir = tempDataDir(t)
  const first = await startBroker(t, {}, { dataDir })
  t.equal(first.config.persistence.mode, 'sqlite', 'sqlite is the default')
  const v4 = await connectClient(t, first.url, { protocolVersion: 4, clientId: 'restart-v4', clean: false })
  await v4.subscribeAsync('restart/#', { qos: 1 })
  await v4.endAsync()
  const v5opts = { protocolVersion: 5 as const, clientId: 'restart-v5', properties: { sessionExpiryInterval: 3600 } }
  const v5 = await connectClient(t, first.url, { ...v5opts, clean: true })
  await v5.subscribeAsync('restart/+/x', { qos: 2 })
  await v5.endAsync()
  const pub = await connectClient(t, first.url, { protocolVersion: 5, clientId: 'restart-pub' })
  const N = 200
  await Promise.all(Array.from({ length: N }, (_, i) => pub.publishAsync(`restart/${i}/x`, `m${i}`, { qos: 1 })))
  await pub.publishAsync('restart/retained', 'kept', { qos: 1, retain: true })
  await pub.endAsync()
  await first.app.stop()

  const second = await startBroker(t, {}, { dataDir })
  const restored = second.logs.find((l) => l.event === 'sessions.restored')
  t.match(restored, { sessions: 2, retained: 1 }, 'both sessions and the retained message are restored')
  const a = await connectWithAck(t, second.url, { protocolVersion: 4, clientId: 'restart-v4', clean: false })
  const b = await connectWithAck(t, second.url, { ...v5opts, clean: false })
  t.equal(a.connack.sessionPresent, true)
  t.equal(b.connack.sessionPresent, true)
  await until(() => a.messages.length >= N + 1 && b.messages.length >= N, 10_000, 'every queued message')
  t.same(
    a.messages.map((m) => m.payload.toString()),
    [...Array.from({ length: N }, (_, i) => `m${i}`), 'kept'],
    '3.1.1: every message, in order',
  )
  t.same(
    b.messages.map((m) => m.payload.toString()),
    Array.from({ length: N }, (_, i) => `m${i}`),
    '5.0: every message, in order',
  )
  const probe = await connectClient(t, second.url, { protocolVersion: 5, clientId: 'restart-probe' })
  const got = collect(probe)
  await probe.subscribeAsync('restart/retained', { qos: 1 })
  await until(() => got.length === 1, 5000, 'the retained message')
  t.equal(got[0]?.payload.toString(), 'kept')
  t.equal(got[0]?.packet.retain, true)
  await Promise.all([a.client.endAsync(), b.client.endAsync(), probe.endAsync()])
  await second.app.stop()
  t.match(countRows(join(dataDir, 'perch.db')), { messages: 1, deliveries: 0, retained: 1 }, 'delivered messages are gone; only the retained body is left')
})

t.test('in-flight messages come back with DUP after a restart', async (t) => {
  const dataDir = tempDataDir(t)
  const first = await startBroker(t, {}, { dataDir })
  const sub = await connectClient(t, first.url, { protocolVersion: 4, clientId: 'dup-sub', clean: false })
  await sub.subscribeAsync('dup/#', { qos: 1 })
  // Received but never acknowledged: MQTT.js acknowledges in handleMessage, which stalls here.
  sub.handleMessage = () => {}
  const got = collect(sub)
  const pub = await connectClient(t, first.url, { protocolVersion: 4, clientId: 'dup-pub' })
  await pub.publishAsync('dup/1', 'once', { qos: 1 })
  await until(() => got.length === 1, 5000, 'the first delivery')
  await first.app.stop()
  const second = await startBroker(t, {}, { dataDir })
  const again = await connectWithAck(t, second.url, { protocolVersion: 4, clientId: 'dup-sub', clean: false })
  await until(() => again.messages.length === 1, 5000, 'the redelivery')
  t.equal(again.messages[0]?.packet.dup, true, 'resent with DUP')
  t.equal(again.messages[0]?.payload.toString(), 'once')
})

t.test('one message row for a message queued for 3 offline persistent sessions and retained', async (t) => {
  const dataDir = tempDataDir(t)
  const b = await startBroker(t, {}, { dataDir })
  for (const id of ['s1', 's2', 's3']) {
    const c = await connectClient(t, b.url, { protocolVersion: 4, clientId: id, clean: false })
    await c.subscribeAsync('fan/#', { qos: 1 })
    await c.endAsync()
  }
  const pub = await connectClient(t, b.url, { protocolVersion: 4, clientId: 'fan-pub' })
  await pub.publishAsync('fan/x', Buffer.alloc(5000, 1), { qos: 1, retain: true })
  const store = b.app.store
  t.ok(store instanceof SqliteSessionStore)
  if (store instanceof SqliteSessionStore) t.match(store.rowCounts(), { messages: 1, deliveries: 3, retained: 1, refs: 4 })
  await pub.endAsync()
  await b.app.stop()
  t.match(countRows(join(dataDir, 'perch.db')), { sessions: 3, messages: 1, deliveries: 3, retained: 1, subscriptions: 3 })
})

t.test('QoS 0 messages to online and offline persistent sessions never write to the store', async (t) => {
  const b = await startBroker(t)
  const store = b.app.store
  if (!(store instanceof SqliteSessionStore)) throw new Error('expected the SQLite store')
  const online = await connectClient(t, b.url, { protocolVersion: 4, clientId: 'q0-online', clean: false })
  const got = collect(online)
  await online.subscribeAsync('q0/#', { qos: 1 })
  const offline = await connectClient(t, b.url, { protocolVersion: 5, clientId: 'q0-offline', clean: false, properties: { sessionExpiryInterval: 600 } })
  await offline.subscribeAsync('q0/#', { qos: 2 })
  await offline.endAsync()
  const pub = await connectClient(t, b.url, { protocolVersion: 4, clientId: 'q0-pub' })
  await until(() => b.app.broker.liveCount === 2, 5000, 'the offline session to be released')
  store.flush()
  const before = store.stats.writes
  for (let i = 0; i < 100; i++) pub.publish(`q0/${i}`, 'zero', { qos: 0 })
  await until(() => got.length === 100, 5000, '100 QoS 0 messages')
  t.equal(store.stats.writes, before, 'not one write for 100 QoS 0 messages')
  await pub.publishAsync('q0/one', 'one', { qos: 1 })
  t.ok(store.stats.writes > before, 'a QoS 1 message does write')
})

t.test('persistence.mode memory: nothing is kept and no database file is created', async (t) => {
  const dataDir = tempDataDir(t)
  const b = await startBroker(t, { persistence: { mode: 'memory' } }, { dataDir })
  t.equal(b.app.store.durable, false)
  const c = await connectClient(t, b.url, { protocolVersion: 4, clientId: 'mem', clean: false })
  await c.subscribeAsync('m/#', { qos: 1 })
  await c.endAsync()
  await b.app.stop()
  t.notOk(existsSync(join(dataDir, 'perch.db')))
})

// ---------------------------------------------------------------------------------------------
// A damaged database at start

async function startOn(dataDir: string, persistence: Record<string, unknown>): Promise<{ app: App | undefined; error: Error | undefined; logs: Record<string, unknown>[] }> {
  const resolved = resolveConfig({ listeners: [{ kind: 'tcp', host: '127.0.0.1', port: 0 }], sys: { interval: 0 }, dataDir, persistence }, defaultConfig(), 'test')
  if (!resolved.ok) throw resolved.error
  const logs: Record<string, unknown>[] = []
  const clock = systemClock()
  const logger = createLogger('debug', (l) => logs.push(JSON.parse(l) as Record<string, unknown>), () => clock.now())
  try {
    return { app: await App.start(resolved.value, { clock, logger, version: 'test' }), error: undefined, logs }
  } catch (e) {
    return { app: undefined, error: e as Error, logs }
  }
}

t.test('a corrupt database with onCorrupt "fail" (the default): start fails naming the file and the switch; the file is untouched', async (t) => {
  const dataDir = tempDataDir(t)
  const file = join(dataDir, 'perch.db')
  const garbage = Buffer.alloc(10_000, 0x42)
  writeFileSync(file, garbage)
  const r = await startOn(dataDir, {})
  await r.app?.stop()
  t.ok(r.error, 'App.start rejects')
  t.match(r.error?.message, file, 'the error names the file')
  t.match(r.error?.message, /persistence\.onCorrupt.*move-aside/, 'and how to recover')
  t.ok(readFileSync(file).equals(garbage), 'the damaged file is left alone')
})

t.test('a corrupt database with onCorrupt "move-aside": renamed with its -wal, a loud warning names both paths, a fresh start', async (t) => {
  const dataDir = tempDataDir(t)
  const file = join(dataDir, 'perch.db')
  const garbage = Buffer.alloc(10_000, 0x42)
  writeFileSync(file, garbage)
  writeFileSync(`${file}-wal`, Buffer.alloc(100, 1))
  const r = await startOn(dataDir, { onCorrupt: 'move-aside' })
  t.teardown(() => r.app?.stop())
  t.equal(r.error, undefined, 'perch starts')
  const warn = r.logs.find((l) => l.event === 'persistence.moved-aside')
  t.equal(warn?.level, 'warn')
  t.equal(warn?.file, file)
  const movedTo = String(warn?.movedTo)
  t.match(movedTo, /perch\.db\.corrupt-\d{4}-\d\d-\d\dT/)
  t.ok(readFileSync(movedTo).equals(garbage), 'the moved file holds the damaged bytes')
  t.ok(existsSync(`${movedTo}-wal`), 'its -wal went with it')
  t.same(readdirSync(dataDir).filter((f) => f.startsWith('perch.db')).sort(), ['perch.db', 'perch.db-wal', `${movedTo.slice(dataDir.length + 1)}`, `${movedTo.slice(dataDir.length + 1)}-wal`].sort())
  t.equal(r.app?.broker.sessions.size, 0, 'an empty state')
})

t.test('perch start on a corrupt database exits 1 with an error naming the file and the switch', async (t) => {
  const dataDir = tempDataDir(t)
  const file = join(dataDir, 'perch.db')
  writeFileSync(file, Buffer.alloc(4096, 0x13))
  let out = ''
  let err = ''
  const code = await runCli(['start', '--port', '0', '--data-dir', dataDir], {
    out: (s) => {
      out += s
    },
    err: (s) => {
      err += s
    },
    env: {},
  })
  t.equal(code, 1)
  t.match(err, file)
  t.match(err, /onCorrupt/)
  t.notMatch(out, /perch\.started/)
})
