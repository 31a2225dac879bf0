// Password logins to accounts, with real clients: exact CONNACK codes, rate limits, disabled
// and removed accounts, and changes made to the account store while perch runs.

import { join } from 'node:path'
import t from 'tap'
import { ACCOUNT_MIGRATIONS } from '../../src/auth/account-schema.js'
import { hashPassword } from '../../src/auth/password.js'
import { openDatabase } from '../../src/db/index.js'
import { connackCode, startAccountsBroker } from '../helpers/accounts.js'
import { mosquitto, mosquittoPub } from '../helpers/cli.js'
import { closedPromise, connectWithAck, sleep, until } from '../helpers/clients.js'

t.test('username and password log in as the account, in 3.1, 3.1.1 and 5.0', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('site-1', 'correct horse')
  for (const protocolVersion of [3, 4, 5] as const) {
    t.equal(await connackCode(b.url, { protocolVersion, username: 'site-1', password: 'correct horse' }), 0, `protocol ${protocolVersion}`)
  }
  const { client } = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'site-1', password: 'correct horse', clientId: 'c1' })
  t.ok(client.connected)
  t.match(b.logs.find((l) => l.event === 'client.connected' && l.clientId === 'c1'), { username: 'site-1' })
})

t.test('CONNACK codes are exact for each failure', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('A', 'pw-A')
  await b.addAccount('off', 'pw-off', { enabled: false })
  const cases: [string, Record<string, unknown>, number, number][] = [
    ['wrong password', { username: 'A', password: 'nope' }, 0x86, 4],
    ['unknown account', { username: 'ghost', password: 'pw' }, 0x86, 4],
    ['no password', { username: 'A' }, 0x86, 4],
    ['anonymous', {}, 0x87, 5],
    ['disabled account', { username: 'off', password: 'pw-off' }, 0x8a, 5],
  ]
  for (const [what, options, v5, v4] of cases) {
    t.equal(await connackCode(b.url, { protocolVersion: 5, ...options }), v5, `${what}: v5`)
    t.equal(await connackCode(b.url, { protocolVersion: 4, ...options }), v4, `${what}: 3.1.1`)
  }
})

t.test('a username that is not one topic level never logs in', async (t) => {
  const b = await startAccountsBroker(t)
  // Written straight into the store, as a careless import might: perch still refuses them.
  const store = b.app.accounts?.store
  for (const id of ['a/b', 'a+b', '#', '+', '']) store?.addAccount(id, await hashPassword('pw'), true)
  b.reload()
  for (const id of ['a/b', 'a+b', '#', '+', '', '/A', 'A/']) {
    t.equal(await connackCode(b.url, { protocolVersion: 5, username: id, password: 'pw' }), 0x86, JSON.stringify(id))
  }
})

t.test('repeated wrong passwords are rate-limited per address and per account', async (t) => {
  const b = await startAccountsBroker(t, { auth: { rateLimit: { addressFailures: 100, accountFailures: 3, window: 60, block: 60 } } })
  await b.addAccount('A', 'pw-A')
  await b.addAccount('B', 'pw-B')
  for (let i = 0; i < 3; i++) t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'A', password: `guess-${i}` }), 0x86)
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'A', password: 'guess-4' }), 0x9f, 'blocked: connection rate exceeded')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'A', password: 'pw-A' }), 0x9f, 'even the right password waits out the block')
  t.equal(await connackCode(b.url, { protocolVersion: 4, username: 'A', password: 'pw-A' }), 3, '3.1.1: server unavailable')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'B', password: 'pw-B' }), 0, 'another account is not affected')

  const perAddress = await startAccountsBroker(t, { auth: { rateLimit: { addressFailures: 3, accountFailures: 100, window: 60, block: 60 } } })
  await perAddress.addAccount('A', 'pw-A')
  for (const name of ['x1', 'x2', 'x3']) await connackCode(perAddress.url, { protocolVersion: 5, username: name, password: 'spray' })
  t.equal(await connackCode(perAddress.url, { protocolVersion: 5, username: 'A', password: 'pw-A' }), 0x9f, 'an address spraying usernames is blocked')
})

t.test('an account added, disabled, re-enabled, re-keyed and removed while perch runs: changes apply live', async (t) => {
  const b = await startAccountsBroker(t, { auth: { reloadInterval: 0.1 } })
  const store = b.app.accounts?.store
  if (store === undefined) throw new Error('no store')
  // The changes go straight to the store, as `perch account` writes them; perch polls for them.
  store.addAccount('late', await hashPassword('pw-1'), false)
  await until(() => b.app.accounts?.hooks.acl.account('late') !== undefined, 5000, 'the new account to be seen')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'late', password: 'pw-1' }), 0, 'a new account logs in')

  const first = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'late', password: 'pw-1', clientId: 'late-1' })
  const disconnect = new Promise<number | undefined>((resolve) => first.client.once('disconnect', (p) => resolve(p.reasonCode)))
  store.setEnabled('late', false)
  t.equal(await disconnect, 0x98, 'disabling drops its clients with DISCONNECT 0x98 administrative action')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'late', password: 'pw-1' }), 0x8a)
  store.setEnabled('late', true)
  await until(() => b.app.accounts?.hooks.acl.account('late')?.enabled === true, 5000, 'enabled again')

  const second = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'late', password: 'pw-1', clientId: 'late-2' })
  store.setVerifier('late', await hashPassword('pw-2'))
  await closedPromise(second.client)
  t.pass('a password change drops the clients that logged in with the old one')
  await until(() => b.app.accounts?.hooks.acl.account('late')?.verifier !== undefined, 5000, 'reload')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'late', password: 'pw-1' }), 0x86, 'the old password no longer works')
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'late', password: 'pw-2' }), 0, 'the new one does')

  const third = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'late', password: 'pw-2', clientId: 'late-3' })
  store.removeAccount('late')
  await closedPromise(third.client)
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'late', password: 'pw-2' }), 0x86, 'a removed account is unknown')
})

t.test('an account store that cannot be read keeps the last rights in force, says so, and recovers', async (t) => {
  const b = await startAccountsBroker(t, { auth: { reloadInterval: 0.1 } })
  await b.addAccount('A', 'pw-A')
  // Another process breaks the schema under perch's feet.
  const other = openDatabase(join(b.config.dataDir, 'accounts.db'), { synchronous: 'full', migrations: ACCOUNT_MIGRATIONS, exclusive: false })
  if (!other.ok) throw other.error
  t.teardown(() => other.value.close())
  other.value.exec('ALTER TABLE accounts RENAME TO accounts_gone')
  await until(() => b.logs.some((l) => l.event === 'accounts.reload-failed'), 5000, 'the failure to be logged')
  t.match(b.logs.find((l) => l.event === 'accounts.reload-failed'), { error: /no such table: accounts/ })
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'A', password: 'pw-A' }), 0, 'the accounts known before still log in')
  other.value.exec('ALTER TABLE accounts_gone RENAME TO accounts')
  await until(() => b.logs.some((l) => l.event === 'accounts.reloaded' && l.cause === 'accounts changed outside perch'), 5000, 'recovery')
})

t.test('mosquitto_pub and mosquitto_sub log in with -u and -P', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('farm', 'barn door')
  const sub = mosquitto(t, 'mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-u', 'farm', '-P', 'barn door', '-t', '/farm/silo/#', '-C', '1', '-v'])
  const subscribed = (): boolean => [...b.app.broker.sessions.values()].some((s) => s.subscriptions.has('/farm/silo/#'))
  await until(subscribed, 5000, 'mosquitto_sub subscribed')
  await mosquittoPub(t, b.port, ['-u', 'farm', '-P', 'barn door', '-t', '/farm/silo/level', '-m', '73', '-q', '1'])
  const r = await sub.done
  t.equal(r.code, 0)
  t.equal(r.stdout.trim(), '/farm/silo/level 73')
  const denied = await mosquitto(t, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-u', 'farm', '-P', 'wrong', '-t', '/farm/x', '-m', 'x']).done
  t.not(denied.code, 0, 'a wrong password fails')
  t.match(denied.stderr, /not authori[sz]ed|bad user ?name or password/i)
})

t.test('a failed login is told to its account on /A/events/auth_failed, an unknown one to nobody', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('A', 'pw-A')
  const watcher = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'A', password: 'pw-A' })
  await watcher.client.subscribeAsync('/A/events/auth_failed')
  await connackCode(b.url, { protocolVersion: 5, username: 'A', password: 'nope', clientId: 'guesser' })
  await connackCode(b.url, { protocolVersion: 5, username: 'ghost', password: 'nope' })
  await until(() => watcher.messages.length === 1, 5000, 'event')
  await sleep(100)
  t.equal(watcher.messages.length, 1)
  t.match(JSON.parse(watcher.messages[0]?.payload.toString() ?? '{}'), { event: 'auth_failed', clientId: 'guesser', address: '127.0.0.1', reasonCode: 0x86 })
})
