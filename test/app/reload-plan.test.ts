// Which changed config keys a reload applies and which wait for a restart.
import t from 'tap'
import { defaultConfig, type PerchConfig } from '../../src/app/config.js'
import { changedKeys, planReload } from '../../src/app/reload-plan.js'

const base = defaultConfig({})

function edit(fn: (c: PerchConfig) => void): PerchConfig {
  const c = structuredClone(base)
  fn(c)
  return c
}

t.test('changedKeys names leaves by dotted path and compares arrays whole', async (t) => {
  t.same(changedKeys(base, structuredClone(base)), [])
  const next = edit((c) => {
    c.limits.maxInflight = 1
    c.listeners[0] = { name: 'mqtt', kind: 'tcp', port: 1884 }
    c.http = { host: '127.0.0.1', port: 9100 }
    c.devices.dir = '/etc/perch/devices'
  })
  t.same(changedKeys(base, next), ['devices.dir', 'http', 'limits.maxInflight', 'listeners'])
})

t.test('live keys are applied, the others are named as needing a restart', async (t) => {
  const next = edit((c) => {
    c.limits.maxConnections = 5
    c.limits.connectTimeout = 3
    c.limits.slowConsumerPolicy = 'disconnect'
    c.sys.interval = 30
    c.rules.failureLimit = 2
    c.rules.coolOff = 5
    c.rules.reloadInterval = 10
    c.devices.board = 'raspberry-pi-4'
    c.limits.receiveMaximum = 10
    c.limits.maxPacketSize = 1024
    c.log.level = 'debug'
    c.dataDir = '/elsewhere'
    c.auth.mode = 'open'
    c.persistence.mode = 'memory'
    c.rules.dir = '/rules'
  })
  const plan = planReload(base, next)
  t.same(plan.applied, [
    'devices.board',
    'limits.connectTimeout',
    'limits.maxConnections',
    'limits.slowConsumerPolicy',
    'rules.coolOff',
    'rules.failureLimit',
    'rules.reloadInterval',
    'sys.interval',
  ])
  t.same(plan.needsRestart, ['auth.mode', 'dataDir', 'limits.maxPacketSize', 'limits.receiveMaximum', 'log.level', 'persistence.mode', 'rules.dir'])
  t.equal(plan.config.limits.maxConnections, 5, 'the running config takes the live values')
  t.equal(plan.config.limits.receiveMaximum, base.limits.receiveMaximum, 'and keeps the others')
  t.equal(plan.config.dataDir, base.dataDir)
})

t.test('log.level applies live when the logger can change its level', async (t) => {
  const next = edit((c) => {
    c.log.level = 'debug'
  })
  t.same(planReload(base, next).needsRestart, ['log.level'], 'not without a way to change it')
  const plan = planReload(base, next, true)
  t.same(plan.applied, ['log.level'])
  t.same(plan.needsRestart, [])
  t.equal(plan.config.log.level, 'debug')
})

t.test('what needs a restart is judged against what runs, so it is reported until it matches again', async (t) => {
  const first = planReload(
    base,
    edit((c) => {
      c.limits.maxInflight = 8
    }),
  )
  t.same(first.needsRestart, ['limits.maxInflight'])
  const again = planReload(
    first.config,
    edit((c) => {
      c.limits.maxInflight = 8
      c.sys.interval = 1
    }),
  )
  t.same(again.needsRestart, ['limits.maxInflight'], 'still waiting for the restart')
  t.same(again.applied, ['sys.interval'])
  const back = edit((c) => {
    c.sys.interval = 1
  })
  t.same(planReload(again.config, back).needsRestart, [], 'back to the running value')
})
