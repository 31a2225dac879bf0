// BridgeService.apply, as a reload uses it: unchanged devices keep running untouched, changed and
// vanished ones are released before anything starts, new ones start, a failed one is retried,
// and a dispose during an apply releases each bridge once.
import t from 'tap'
import type { DeviceConfig, OneWireDevice } from '../../src/bridges/device-config.js'
import { type BridgeFactories, BridgeService } from '../../src/bridges/service.js'
import type { Bridge, BridgeContext, BridgeStatus } from '../../src/bridges/types.js'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { startBroker } from '../helpers/broker.js'

const publish = { qos: 0 as const, retain: false, onChange: false, minIntervalMs: 0 }

function device(name: string, extra: Partial<OneWireDevice> = {}): DeviceConfig {
  return { name, account: 'farm', enabled: true, file: `/devices/${name}.json`, kind: 'onewire', root: '/w1', intervalMs: 10_000, sensors: [], topic: `/farm/sensors/${name}/{name}`, payload: 'value', publish, ...extra }
}

/** Bridges that record what happens to them, in one shared journal ("start tank", "dispose tank"). */
function recordingFactories(journal: string[], options: { failing?: Set<string>; slow?: Map<string, Promise<void>> } = {}): BridgeFactories {
  return {
    onewire: (config, ctx: BridgeContext): Bridge => {
      if (options.failing?.has(config.name) === true) throw new Error(`cannot open ${config.root}`)
      const status = (): BridgeStatus => ({ device: config.name, kind: 'onewire', state: 'online', since: ctx.clock.now(), lastError: undefined, counters: { published: 0, commands: 0, rejected: 0, disconnects: 0, errors: 0 } })
      return {
        device: config.name,
        kind: 'onewire',
        start: () => journal.push(`start ${config.name} ${config.intervalMs}`),
        status,
        onStatus: () => () => {},
        dispose: async () => {
          journal.push(`dispose ${config.name}`)
          await options.slow?.get(config.name)
        },
      }
    },
  }
}

t.test('apply keeps unchanged devices, releases changed and vanished ones first, then starts', async (t) => {
  const broker = await startBroker(t)
  const journal: string[] = []
  const options = { broker: broker.app.broker, clock: new FakeClock(), logger: silentLogger() }
  const service = BridgeService.start([device('tank'), device('pond'), device('well')], [], { ...options, factories: recordingFactories(journal) })
  journal.length = 0
  const change = await service.apply([device('tank'), device('well', { intervalMs: 5000 }), device('barn')], [], recordingFactories(journal))
  t.same(change, { started: ['barn'], stopped: ['pond'], restarted: ['well'], unchanged: ['tank'] })
  t.same(journal, ['dispose well', 'dispose pond', 'start well 5000', 'start barn 10000'], 'released in reverse order before anything starts')
  t.same(
    service.list().map((d) => d.config.name),
    ['tank', 'well', 'barn'],
    'listed in the order of the new set',
  )
  await service.dispose()
  t.same(journal.slice(4), ['dispose barn', 'dispose well', 'dispose tank'], 'each running bridge released once at stop')
})

t.test('a device that failed is tried again; problems are replaced', async (t) => {
  const broker = await startBroker(t)
  const journal: string[] = []
  const options = { broker: broker.app.broker, clock: new FakeClock(), logger: silentLogger() }
  const problems = [{ file: '/devices/bad.json', key: 'kind', reason: 'is required' }]
  const service = BridgeService.start([device('tank')], problems, { ...options, factories: recordingFactories(journal, { failing: new Set(['tank']) }) })
  t.match(service.list(), [{ state: 'failed', lastError: /cannot open/ }])
  const change = await service.apply([device('tank')], [], recordingFactories(journal))
  t.same(change, { started: [], stopped: [], restarted: ['tank'], unchanged: [] })
  t.match(service.list(), [{ state: 'online' }])
  t.same(service.problems, [])
  t.equal(new Map(service.sysEntries()).get('bridges/invalid'), '0')
  await service.dispose()
})

t.test('dispose during an apply waits for it and releases every bridge once', async (t) => {
  const broker = await startBroker(t)
  const journal: string[] = []
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => {
    release = resolve
  })
  const slow = new Map([['pond', held]])
  const options = { broker: broker.app.broker, clock: new FakeClock(), logger: silentLogger() }
  const service = BridgeService.start([device('tank'), device('pond')], [], { ...options, factories: recordingFactories(journal, { slow }) })
  journal.length = 0
  const applying = service.apply([device('tank'), device('barn')], [], recordingFactories(journal))
  await new Promise((r) => setImmediate(r))
  t.same(journal, ['dispose pond'], 'the apply is releasing pond')
  const stopping = service.dispose()
  release()
  t.same(await applying, { started: [], stopped: [], restarted: [], unchanged: [] }, 'nothing starts once stopping')
  await stopping
  t.same(journal, ['dispose pond', 'dispose tank'])
})
