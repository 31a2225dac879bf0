// The central sync when things go wrong: concurrent central writers, MariaDB killed mid-sync,
// frozen, or down when perch starts. The cache stays consistent, MQTT clients notice nothing,
// and the gateway converges once central is back.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ACCOUNT_MIGRATIONS } from '../../src/auth/account-schema.js'
import { AccountStore } from '../../src/auth/account-store.js'
import { hashPassword } from '../../src/auth/password.js'
import { systemClock } from '../../src/core/clock.js'
import { openDatabase } from '../../src/db/index.js'
import { MysqlSession, parseMysqlUrl } from '../../src/sync/mysql.js'
import { type AccountsBroker, connackCode, startAccountsBroker } from '../helpers/accounts.js'
import { type Central, startCentral } from '../helpers/central.js'
import { connectWithAck, sleep, until } from '../helpers/clients.js'
import { startMariaDb } from '../helpers/mariadb.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const VERIFIER = await hashPassword('pw')

async function gateway(t: Teardown, url: string, dataDir?: string): Promise<AccountsBroker> {
  return startAccountsBroker(
    t,
    { sync: { url, interval: 0.1, queryTimeout: 1, connectTimeout: 1, maxBackoff: 0.5 }, rules: { enabled: false }, auth: { reloadInterval: 0.1 } },
    dataDir === undefined ? {} : { dataDir },
  )
}

async function caughtUp(b: AccountsBroker, c: Central, ms = 30_000): Promise<void> {
  const v = await c.counter()
  await until(() => (b.app.sync?.status?.hwm ?? -1) >= v && b.app.sync?.status?.state === 'ok', ms, `sync to reach ${v} (at ${b.app.sync?.status?.hwm}, ${b.app.sync?.status?.lastError ?? ''})`)
  await until(() => b.app.accounts?.syncMark === b.app.sync?.status?.hwm, ms, 'perch to apply the synced accounts')
}

/** The central accounts this gateway's cache holds, read straight from accounts.db. */
function cachedAccounts(dataDir: string): string[] {
  const store = AccountStore.open(dataDir, systemClock())
  if (!store.ok) throw store.error
  try {
    return store.value
      .snapshot()
      .accounts.map((a) => `${a.id}:${a.enabled ? 1 : 0}`)
      .filter((a) => !a.startsWith('admin:'))
      .sort()
  } finally {
    store.value.dispose()
  }
}

async function centralAccounts(c: Central): Promise<string[]> {
  const rows = await c.rows(`SELECT a.name, a.enabled FROM accounts a JOIN gateway_accounts ga ON ga.account = a.name JOIN gateways g ON g.id = ga.gateway_id WHERE g.name = 'g1'`)
  return rows.map((r) => `${String(r.name)}:${Number(r.enabled)}`).sort()
}

function integrity(dataDir: string): string {
  const db = openDatabase(join(dataDir, 'accounts.db'), { migrations: ACCOUNT_MIGRATIONS, exclusive: false, synchronous: 'normal' })
  if (!db.ok) return db.error.message
  try {
    return String(db.value.pragma('integrity_check'))
  } finally {
    db.value.close()
  }
}

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-sync-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A MariaDB with the central schema, gateway g1 (after `prepare`), and a perch synced with it. */
async function syncedGateway(t: Teardown, prepare: (c: Central) => Promise<void> = async () => {}) {
  const m = await startMariaDb(t)
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await prepare(c)
  const dir = tempDir(t)
  const b = await gateway(t, url, dir)
  await caughtUp(b, c)
  return { m, c, dir, b }
}

t.test('8 concurrent central writers: the gateway misses no change', async (t) => {
  const { m, c, dir, b } = await syncedGateway(t)
  const target = parseMysqlUrl(m.url(c.db), { connectTimeoutMs: 5000, queryTimeoutMs: 30_000 })
  if (!target.ok) throw target.error
  const writers = await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      const s = await MysqlSession.open(target.value)
      if (!s.ok) throw s.error
      t.teardown(() => s.value.close())
      return { w, s: s.value }
    }),
  )
  const per = 60
  await Promise.all(
    writers.map(async ({ w, s }) => {
      for (let i = 0; i < per; i++) {
        const name = `w${w}-${i}`
        // One transaction per change, as operators' tools make them, interleaved with the other writers.
        for (const sql of [
          'START TRANSACTION',
          `INSERT INTO accounts (name, verifier) VALUES ('${name}', '${VERIFIER}')`,
          `INSERT INTO gateway_accounts (gateway_id, account) SELECT id, '${name}' FROM gateways WHERE name = 'g1'`,
          'COMMIT',
        ]) {
          const r = await s.execute(sql)
          if (!r.ok) throw r.error
        }
        if (i % 3 === 0) {
          const r = await s.execute(`UPDATE accounts SET enabled = 0 WHERE name = '${name}'`)
          if (!r.ok) throw r.error
        }
        if (i % 10 === 9) {
          const r = await s.execute(`DELETE FROM accounts WHERE name = 'w${w}-${i - 1}'`)
          if (!r.ok) throw r.error
        }
      }
    }),
  )
  await caughtUp(b, c)
  t.ok((b.app.sync?.status?.incrementalSyncs ?? 0) > 1, `synced in ${b.app.sync?.status?.incrementalSyncs} incremental steps while the writers ran: ${JSON.stringify(b.app.sync?.status)}`)
  const expected = await centralAccounts(c)
  t.equal(expected.length, 8 * per - 8 * (per / 10), 'central holds what the writers left')
  t.same(cachedAccounts(dir), expected, 'the cache holds exactly what central holds')
})

t.test('MariaDB killed with SIGKILL mid-sync: the cache stays consistent, and the next sync converges', async (t) => {
  const { m, c, dir, b } = await syncedGateway(t)
  for (let round = 0; round < 3; round++) {
    const before = cachedAccounts(dir)
    // A batch of changes, then a kill while the gateway is reading or applying them.
    const values = Array.from({ length: 400 }, (_, i) => `('r${round}-${i}', '${VERIFIER}')`).join(', ')
    await c.run(`INSERT INTO accounts (name, verifier) VALUES ${values}`)
    await c.run(`INSERT INTO gateway_accounts (gateway_id, account) SELECT g.id, a.name FROM gateways g, accounts a WHERE g.name = 'g1' AND a.name LIKE 'r${round}-%'`)
    const after = await centralAccounts(c)
    b.app.sync?.poke()
    await sleep(5 + round * 20)
    m.kill('SIGKILL')
    await sleep(300)
    const cached = cachedAccounts(dir)
    t.ok(JSON.stringify(cached) === JSON.stringify(before) || JSON.stringify(cached) === JSON.stringify(after), `round ${round}: the cache holds the old state or the whole new one (${cached.length} accounts)`)
    t.equal(integrity(dir), 'ok', `round ${round}: integrity_check`)
    await m.start()
    await caughtUp(b, c)
    t.same(cachedAccounts(dir), after, `round ${round}: converged after the restart`)
  }
})

t.test('MariaDB frozen with SIGSTOP: queries time out, MQTT clients notice nothing; then it converges', async (t) => {
  const { m, c, b } = await syncedGateway(t, (c) => c.account('alice', 'pw-alice', { gateway: 'g1' }))
  const sub = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  await sub.client.subscribeAsync('/alice/#', { qos: 1 })
  const pub = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  m.kill('SIGSTOP')
  t.teardown(() => m.kill('SIGCONT'))
  await until(() => b.app.sync?.status?.state === 'error', 10_000, 'the sync notices')
  t.match(b.app.sync?.status?.lastError, /timeout|timed out|ETIMEDOUT/i, `a timeout: ${b.app.sync?.status?.lastError}`)
  for (let i = 0; i < 50; i++) await pub.client.publishAsync('/alice/x', String(i), { qos: 1 })
  await until(() => sub.messages.filter((x) => x.topic === '/alice/x').length === 50, 5000, 'every message delivered while central is frozen')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice', reconnectPeriod: 0 }), 0, 'logins still work from the cache')
  t.ok(sub.client.connected && pub.client.connected, 'no client was dropped')
  m.kill('SIGCONT')
  await c.account('bob', 'pw-bob', { gateway: 'g1' })
  await caughtUp(b, c)
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'bob', password: 'pw-bob', reconnectPeriod: 0 }), 0, 'and once it thaws, changes flow again')
})

t.test('perch started while MariaDB is down serves from its cache, and syncs once MariaDB is back', async (t) => {
  const m = await startMariaDb(t)
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await c.account('alice', 'pw-alice', { gateway: 'g1' })
  const dir = tempDir(t)
  const first = await gateway(t, url, dir)
  await caughtUp(first, c)
  await first.stop()
  await m.stop()
  const b = await gateway(t, url, dir)
  await until(() => b.app.sync?.status?.state === 'error', 10_000, 'the sync fails')
  t.match(b.app.sync?.status?.lastError, /ECONNREFUSED|connect/i, `central is down: ${b.app.sync?.status?.lastError}`)
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice', reconnectPeriod: 0 }), 0, 'alice logs in from the cache')
  await m.start()
  await c.account('bob', 'pw-bob', { gateway: 'g1' })
  await caughtUp(b, c)
  await sleep(300)
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'bob', password: 'pw-bob', reconnectPeriod: 0 }), 0, 'central is back: bob arrives')
  t.equal(b.app.sync?.status?.fullSyncs, 0, 'no full resync was needed: the cache kept its mark')
})
