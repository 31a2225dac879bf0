// Accounts, grants and persistent sessions across a restart: the rights in force when perch
// starts again decide what restored sessions receive, and the CLI may change them meanwhile.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AccountStore } from '../../src/auth/account-store.js'
import { systemClock } from '../../src/core/clock.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { connectWithAck, sleep, until } from '../helpers/clients.js'

t.test('a grant revoked while perch was down: the restored session gets nothing of it; granted again, it resumes', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'perch-acct-restart-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const session = { protocolVersion: 5 as const, username: 'B', password: 'pw-B', clientId: 'b-durable', clean: false, properties: { sessionExpiryInterval: 3600 } }

  const first = await startAccountsBroker(t, {}, { dataDir })
  await first.addAccount('A', 'pw-A')
  await first.addAccount('B', 'pw-B')
  first.grant('A', 'B', '/A/feed/#', { subscribe: true })
  const b = await connectWithAck(t, first.url, session)
  await b.client.subscribeAsync('/A/feed/#', { qos: 1 })
  b.client.end(true)
  await until(() => !first.app.broker.hasLive('b-durable'), 5000, 'B offline')
  const a = await connectWithAck(t, first.url, { protocolVersion: 5, username: 'A', password: 'pw-A' })
  await a.client.publishAsync('/A/feed/1', 'queued while B is away', { qos: 1 })
  t.equal(first.app.broker.sessions.get('b-durable')?.queued, 1)
  a.client.end(true)
  await first.stop()

  // `perch grant rm` while perch is stopped.
  const store = AccountStore.open(dataDir, systemClock())
  if (!store.ok) throw store.error
  t.ok(store.value.removeGrant('A', 'B', '/A/feed/#', { publish: false, subscribe: true }).ok)
  store.value.dispose()

  const second = await startAccountsBroker(t, {}, { dataDir })
  t.equal(second.app.broker.sessions.get('b-durable')?.queued, 0, 'the queued message B may no longer read was withdrawn')
  const back = await connectWithAck(t, second.url, session)
  t.equal(back.connack.sessionPresent, true)
  const a2 = await connectWithAck(t, second.url, { protocolVersion: 5, username: 'A', password: 'pw-A' })
  await a2.client.publishAsync('/A/feed/2', 'after the revoke', { qos: 1 })
  await sleep(300)
  t.same(back.messages.map((m) => m.topic), [], 'nothing of A reached B')

  second.grant('A', 'B', '/A/feed/#', { subscribe: true })
  await a2.client.publishAsync('/A/feed/3', 'granted again', { qos: 1 })
  await until(() => back.messages.length === 1, 5000, 'resumed')
  t.same(back.messages.map((m) => m.topic), ['/A/feed/3'])
})
