// App.reload in-process: live limits reach new connections while connected clients stay, rule
// limits and rules from the store apply at once, a config that failed to load changes nothing,
// and a reload is not begun once perch is stopping.
import t from 'tap'
import { type PerchConfig, resolveConfig } from '../../src/app/config.js'
import { systemClock } from '../../src/core/clock.js'
import { ConfigError } from '../../src/core/errors.js'
import { RuleStore } from '../../src/scripting/engine/rule-store.js'
import { connackCode } from '../helpers/accounts.js'
import { logEvents, startBroker } from '../helpers/broker.js'
import { collect, connectClient, until } from '../helpers/clients.js'

const SERVER_BUSY = 0x89

/** `config` with `overrides` laid over it, validated as a config file is. */
function changed(config: PerchConfig, overrides: Record<string, unknown>): PerchConfig {
  const r = resolveConfig(overrides, config, 'test')
  if (!r.ok) throw r.error
  return r.value
}

t.test('a lower maxConnections refuses new clients and keeps the connected one', async (t) => {
  const broker = await startBroker(t)
  const first = await connectClient(t, broker.url, { clientId: 'first', protocolVersion: 5 })
  const closed: string[] = []
  first.on('close', () => closed.push('close'))

  const r = await broker.app.reload(changed(broker.config, { limits: { maxConnections: 1 } }))
  t.ok(r.ok)
  if (!r.ok) return
  t.same(r.value.applied, ['limits.maxConnections'])
  t.same(r.value.needsRestart, [])
  t.equal(await connackCode(broker.url, { clientId: 'second', protocolVersion: 5 }), SERVER_BUSY, 'a second client is refused')

  const back = await broker.app.reload(broker.config)
  t.ok(back.ok)
  t.equal(await connackCode(broker.url, { clientId: 'third', protocolVersion: 5 }), 0, 'and accepted again after the next reload')
  const messages = collect(first)
  await first.subscribeAsync('still/here')
  await first.publishAsync('still/here', 'yes')
  await until(() => messages.length > 0, 5000, 'the first client to receive its message')
  t.same(closed, [])
  t.match(logEvents(broker.logs, 'perch.reload'), [{ applied: ['limits.maxConnections'] }, { applied: ['limits.maxConnections'] }])
})

t.test('a config that failed to load changes nothing and is logged', async (t) => {
  const broker = await startBroker(t)
  const r = await broker.app.reload(new ConfigError('config file /etc/perch/perch.json: not valid JSON'))
  t.match(r, { ok: false, error: { code: 'ECONFIG' } })
  t.match(logEvents(broker.logs, 'perch.reload-failed'), [{ error: /not valid JSON/ }])
  t.same(logEvents(broker.logs, 'perch.reload'), [])
  const after = await broker.app.reload(broker.config)
  t.match(after, { ok: true, value: { applied: [], needsRestart: [] } }, 'the next reload compares with the config perch started with')
})

t.test('rules: a rule stored meanwhile runs at once, and a lower failure limit suspends sooner', async (t) => {
  const broker = await startBroker(t, { rules: { enabled: true, reloadInterval: 3600, failureLimit: 5 } })
  const store = RuleStore.open(broker.config.dataDir, systemClock())
  if (!store.ok) throw store.error
  t.teardown(() => store.value.dispose())
  store.value.put('farm', 'boom', "export function onMessage() { throw new Error('no') }\n", JSON.stringify({ name: 'boom', triggers: { topics: ['in'] } }), 'cli')

  const r = await broker.app.reload(changed(broker.config, { rules: { failureLimit: 1 } }))
  t.match(r, { ok: true, value: { applied: ['rules.failureLimit'], rules: 1 } })
  const client = await connectClient(t, broker.url, { clientId: 'farm-client', protocolVersion: 5 })
  await client.publishAsync('/farm/in', 'x', { qos: 1 })
  await until(() => logEvents(broker.logs, 'rule.suspended').length > 0 || logEvents(broker.logs, 'rule.failed').length > 0, 15_000, 'the rule to fail')
  t.same(logEvents(broker.logs, 'rule.failed'), [], 'not merely counted as one of five failures')
  t.match(logEvents(broker.logs, 'rule.suspended'), [{ account: 'farm', rule: 'boom' }], 'suspended at the first failure')
})

t.test('a reload that has not begun when stop is called is skipped; so is one after stop', async (t) => {
  const broker = await startBroker(t)
  const reloading = broker.app.reload(changed(broker.config, { sys: { interval: 5 } }))
  const stopping = broker.app.stop()
  t.match(await reloading, { ok: false, error: { code: 'ESTOPPING' } })
  await stopping
  t.match(await broker.app.reload(broker.config), { ok: false, error: { code: 'ESTOPPING' } })
  t.same(logEvents(broker.logs, 'perch.reload'), [])
  t.match(logEvents(broker.logs, 'perch.stopped'), [{}])
})
