// The central sync against a real MariaDB: a perch gateway with real MQTT clients takes its
// accounts, grants and rules from the central schema, live, and keeps them when central changes.
import t from 'tap'
import { type AccountsBroker, connackCode, startAccountsBroker } from '../helpers/accounts.js'
import { type Central, startCentral } from '../helpers/central.js'
import { connectWithAck, until } from '../helpers/clients.js'
import { type MariaDb, startMariaDb } from '../helpers/mariadb.js'
import { runPerch } from '../helpers/perch-bin.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const C2F = `export function onMessage(msg) { publish('out/f', String(Number(msg.payload) * 9 / 5 + 32)) }`
const C2F_V2 = `export function onMessage(msg) { publish('out/f', 'v2:' + String(Number(msg.payload) * 9 / 5 + 32)) }`
const manifest = (topics: string[]): string => JSON.stringify({ triggers: { topics } })

let m: MariaDb

t.before(async () => {
  m = await startMariaDb(t)
})

async function gatewayWith(t: Teardown, url: string, dataDir?: string): Promise<AccountsBroker> {
  return startAccountsBroker(t, { sync: { url, interval: 0.1, queryTimeout: 2, connectTimeout: 2, maxBackoff: 1 }, rules: { enabled: true, reloadInterval: 0.1 }, auth: { reloadInterval: 0.1 } }, dataDir === undefined ? {} : { dataDir })
}

/** The running perch has applied what its files hold at mark `v`: rights in the ACL, rules in the engine. */
function applied(b: AccountsBroker, v: number): boolean {
  const rules = b.app.rules
  // Equal to the sync's own mark: after an epoch change the counter may have gone back.
  if (b.app.accounts?.syncMark !== b.app.sync?.status?.hwm || (b.app.sync?.status?.hwm ?? -1) < v || rules === undefined) return false
  const storedRules = rules.store.rules()
  const running = [...rules.engine.rules.values()].filter((r) => r.origin !== 'file')
  return storedRules.length === running.length && storedRules.every((r) => rules.engine.rule(r.account, r.name)?.version === r.version)
}

/** Waits until the gateway has synced everything central holds now, and applied it. */
async function caughtUp(b: AccountsBroker, c: Central, ms = 20_000): Promise<void> {
  const v = await c.counter()
  await until(() => (b.app.sync?.status?.hwm ?? -1) >= v && b.app.sync?.status?.state === 'ok', ms, `sync to reach ${v} (at ${b.app.sync?.status?.hwm}, ${b.app.sync?.status?.lastError ?? ''})`)
  await until(() => applied(b, v), ms, 'perch to apply the synced files')
}

const login = (b: AccountsBroker, username: string, password: string): Promise<number> =>
  connackCode(b.url, { protocolVersion: 5, username, password, reconnectPeriod: 0 })

t.test('initial sync: accounts, grants and rules from central work on the gateway', async (t) => {
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await c.gateway('g2')
  await c.account('alice', 'pw-alice', { gateway: 'g1' })
  await c.account('bob', 'pw-bob', { gateway: 'g1' })
  await c.account('carol', 'pw-carol', { gateway: 'g2' })
  await c.run('INSERT INTO grants (owner, grantee, filter, publish, subscribe) VALUES (?, ?, ?, 0, 1)', ['alice', 'bob', '/alice/temp/#'])
  await c.run('INSERT INTO rules (account, name, source, manifest) VALUES (?, ?, ?, ?)', ['alice', 'c2f', C2F, manifest(['in/c'])])
  const b = await gatewayWith(t, url)
  await caughtUp(b, c)
  t.equal(b.app.sync?.status?.fullSyncs, 1, 'one full sync')
  t.equal(b.app.sync?.status?.lastFullReason, 'first')
  const status = await runPerch(t, b.config.dataDir, ['sync', 'status', '--json', '--data-dir', b.config.dataDir])
  t.equal(status.code, 0, status.stderr)
  t.match(JSON.parse(status.stdout), { state: 'ok', mark: await c.counter(), accounts: 2, grants: 1, rules: 1, fullSyncs: 1 }, 'perch sync status')
  const text = await runPerch(t, b.config.dataDir, ['sync', 'status', '--data-dir', b.config.dataDir])
  t.match(text.stdout, /state +ok\n[\s\S]*cached +2 accounts, 1 grants, 1 rules from central/)
  t.equal(await login(b, 'alice', 'pw-alice'), 0, 'alice logs in')
  t.equal(await login(b, 'alice', 'wrong'), 0x86, 'with her password only')
  t.equal(await login(b, 'carol', 'pw-carol'), 0x86, "carol belongs to another gateway: this one never saw her")
  const bob = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'bob', password: 'pw-bob' })
  await bob.client.subscribeAsync('/alice/temp/#')
  await t.rejects(bob.client.subscribeAsync('/alice/out/#'), /Not authorized/, 'a filter bob was not granted is refused')
  const alice = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  await alice.client.subscribeAsync('/alice/out/f')
  await alice.client.publishAsync('/alice/temp/1', '20', { qos: 1 })
  await alice.client.publishAsync('/alice/in/c', '100', { qos: 1 })
  await until(() => alice.messages.some((x) => x.topic === '/alice/out/f'), 10_000, 'the central rule ran')
  t.equal(alice.messages.find((x) => x.topic === '/alice/out/f')?.payload.toString(), '212')
  await until(() => bob.messages.length >= 1, 5000, 'the grant delivers')
  t.same(
    bob.messages.map((x) => x.topic),
    ['/alice/temp/1'],
    'bob reads what he was granted and nothing else',
  )
})

t.test('incremental sync: inserts, updates, deletes and unassignments take effect live', async (t) => {
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await c.account('alice', 'pw-alice', { gateway: 'g1' })
  await c.account('bob', 'pw-bob', { gateway: 'g1' })
  await c.run('INSERT INTO grants (owner, grantee, filter, publish, subscribe) VALUES (?, ?, ?, 0, 1)', ['alice', 'bob', '/alice/temp/#'])
  await c.run('INSERT INTO rules (account, name, source, manifest) VALUES (?, ?, ?, ?)', ['alice', 'c2f', C2F, manifest(['in/c'])])
  const b = await gatewayWith(t, url)
  await caughtUp(b, c)

  await c.account('dave', 'pw-dave', { gateway: 'g1' })
  await caughtUp(b, c)
  t.equal(await login(b, 'dave', 'pw-dave'), 0, 'a new account logs in')

  const bob = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'bob', password: 'pw-bob' })
  await bob.client.subscribeAsync('/alice/temp/#')
  const alice = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  await alice.client.subscribeAsync('/alice/out/f')
  await alice.client.publishAsync('/alice/temp/1', 'before', { qos: 1 })
  await until(() => bob.messages.length === 1, 5000, 'granted delivery')
  await c.run('DELETE FROM grants WHERE owner = ? AND grantee = ?', ['alice', 'bob'])
  await caughtUp(b, c)
  await alice.client.publishAsync('/alice/temp/1', 'after', { qos: 1 })
  await alice.client.publishAsync('/alice/in/c', '0', { qos: 1 })
  await until(() => alice.messages.length === 1, 10_000, 'the rule output')
  t.same(
    bob.messages.map((x) => x.payload.toString()),
    ['before'],
    'a revoked grant stops delivery',
  )

  await c.run('UPDATE rules SET source = ? WHERE account = ? AND name = ?', [C2F_V2, 'alice', 'c2f'])
  await caughtUp(b, c)
  await alice.client.publishAsync('/alice/in/c', '100', { qos: 1 })
  await until(() => alice.messages.length === 2, 10_000, 'the updated rule output')
  t.equal(alice.messages[1]?.payload.toString(), 'v2:212', 'an updated rule is hot-swapped')

  await c.run('UPDATE accounts SET verifier = (SELECT verifier FROM (SELECT verifier FROM accounts WHERE name = ?) x) WHERE name = ?', ['dave', 'bob'])
  await caughtUp(b, c)
  t.equal(await login(b, 'bob', 'pw-dave'), 0, 'a changed password applies')
  t.equal(await login(b, 'bob', 'pw-bob'), 0x86, 'and the old one no longer works')

  await c.run('DELETE FROM rules WHERE account = ? AND name = ?', ['alice', 'c2f'])
  await caughtUp(b, c)
  t.equal(b.app.rules?.engine.rule('alice', 'c2f'), undefined, 'a deleted rule stops')

  await c.run('DELETE FROM accounts WHERE name = ?', ['dave'])
  await c.run('DELETE FROM gateway_accounts WHERE account = ?', ['alice'])
  await caughtUp(b, c)
  t.equal(await login(b, 'dave', 'pw-dave'), 0x86, 'a deleted account cannot log in')
  await until(() => !alice.client.connected, 5000, 'alice dropped')
  t.equal(await login(b, 'alice', 'pw-alice'), 0x86, 'an unassigned account is gone from the gateway')
  t.equal(b.app.sync?.status?.fullSyncs, 1, 'all of it incremental after the first sync')
})

t.test('an epoch change forces a full resync that also removes what central no longer has', async (t) => {
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await c.account('alice', 'pw-alice', { gateway: 'g1' })
  await c.account('bob', 'pw-bob', { gateway: 'g1' })
  const b = await gatewayWith(t, url)
  await caughtUp(b, c)
  // A restore from an older backup: bob is gone and the counter is back, under a new epoch.
  await c.run('DELETE FROM accounts WHERE name = ?', ['bob'])
  await c.run('DELETE FROM change_log')
  await c.run('UPDATE sync_clock SET v = 1, epoch = UUID() WHERE id = 1')
  await until(() => b.app.sync?.status?.fullSyncs === 2, 10_000, 'a second full sync')
  t.equal(b.app.sync?.status?.lastFullReason, 'epoch')
  await caughtUp(b, c)
  t.equal(await login(b, 'bob', 'pw-bob'), 0x86, 'bob is gone')
  t.equal(await login(b, 'alice', 'pw-alice'), 0, 'alice stays')
})

t.test('a pushed rule stays until central moves past it; then central wins and a conflict is published', async (t) => {
  const c = await startCentral(t, m)
  const url = await c.gateway('g1')
  await c.account('alice', 'pw-alice', { gateway: 'g1' })
  await c.run('INSERT INTO rules (account, name, source, manifest) VALUES (?, ?, ?, ?)', ['alice', 'c2f', C2F, manifest(['in/c'])])
  const b = await gatewayWith(t, url)
  await caughtUp(b, c)
  const alice = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  await alice.client.subscribeAsync('/alice/#')
  const pushed = `export function onMessage(msg) { publish('out/f', 'pushed') }`
  await alice.client.publishAsync('/alice/scripts/put/c2f', JSON.stringify({ source: pushed, manifest: { triggers: { topics: ['in/c'] } } }), { qos: 1 })
  await until(() => alice.messages.some((x) => x.topic === '/alice/scripts/put/c2f/result'), 10_000, 'push result')
  const out = (): string[] => alice.messages.filter((x) => x.topic === '/alice/out/f').map((x) => x.payload.toString())
  await alice.client.publishAsync('/alice/in/c', '1', { qos: 1 })
  await until(() => out().length === 1, 10_000, 'first output')
  t.equal(out()[0], 'pushed', 'the pushed rule runs')
  // A sync with no change to this rule keeps the pushed one.
  await c.account('other', 'pw', { gateway: 'g1' })
  await caughtUp(b, c)
  await alice.client.publishAsync('/alice/in/c', '1', { qos: 1 })
  await until(() => out().length === 2, 10_000, 'second output')
  t.equal(out()[1], 'pushed', 'still the pushed rule after an unrelated sync')
  await c.run('UPDATE rules SET source = ? WHERE account = ? AND name = ?', [C2F_V2, 'alice', 'c2f'])
  await caughtUp(b, c)
  await until(() => alice.messages.some((x) => x.topic === '/alice/rules/c2f/conflict'), 10_000, 'conflict event')
  const conflict = JSON.parse(alice.messages.find((x) => x.topic === '/alice/rules/c2f/conflict')?.payload.toString() ?? '{}')
  t.match(conflict, { winner: 'central', pushedBy: 'mqtt' })
  t.ok(conflict.centralVersion > conflict.pushedOnCentralVersion, 'central moved past the version the push was based on')
  await alice.client.publishAsync('/alice/in/c', '100', { qos: 1 })
  await until(() => out().length === 3, 10_000, 'third output')
  t.equal(out()[2], 'v2:212', 'the central copy runs')
})
