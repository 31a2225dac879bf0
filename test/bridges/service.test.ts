// The bridge service with fake bridges through a real broker: devices start as their account
// and publish through the router (a network client sees it), statuses reach list(), $SYS and the
// status file, a factory that throws fails one device only, and stop releases in reverse order.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { DeviceConfig, OneWireDevice, SerialDevice } from '../../src/bridges/device-config.js'
import { type BridgeFactories, BridgeService, type DevicesStatusFile } from '../../src/bridges/service.js'
import type { Bridge, BridgeContext, BridgeCounters, BridgeStatus } from '../../src/bridges/types.js'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { startBroker } from '../helpers/broker.js'
import { collect, connectClient, until } from '../helpers/clients.js'

const work = mkdtempSync(join(tmpdir(), 'perch-bridge-service-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

const publish = { qos: 0 as const, retain: false, onChange: false, minIntervalMs: 0 }

function serialDevice(name: string, extra: Partial<SerialDevice> = {}): SerialDevice {
  return {
    name,
    account: 'farm',
    enabled: true,
    file: `/devices/${name}.json`,
    kind: 'serial',
    path: `/dev/${name}`,
    baudRate: 9600,
    dataBits: 8,
    parity: 'none',
    stopBits: 1,
    framing: { type: 'lines', delimiter: '\n', field: 'value' },
    topic: `/farm/sensors/${name}/{field}`,
    payload: 'value',
    fields: {},
    publish,
    command: undefined,
    reconnect: { initialMs: 100, maxMs: 10_000 },
    ...extra,
  }
}

function oneWireDevice(name: string): OneWireDevice {
  return { name, account: 'farm', enabled: true, file: `/devices/${name}.json`, kind: 'onewire', root: '/sys/bus/w1/devices', intervalMs: 10_000, sensors: [], topic: `/farm/sensors/${name}/{name}`, payload: 'value', publish }
}

/** A bridge that goes online at start, publishes one reading and records its disposal. */
class FakeBridge implements Bridge {
  readonly device: string
  readonly kind: DeviceConfig['kind']
  readonly counters: BridgeCounters = { published: 0, commands: 0, rejected: 0, disconnects: 0, errors: 0 }
  state: BridgeStatus['state'] = 'starting'
  lastError: string | undefined
  readonly #listeners = new Set<(s: BridgeStatus) => void>()
  readonly #ctx: BridgeContext
  readonly #disposed: string[]
  readonly #hang: boolean

  constructor(config: DeviceConfig, ctx: BridgeContext, disposed: string[], hang = false) {
    this.device = config.name
    this.kind = config.kind
    this.#ctx = ctx
    this.#disposed = disposed
    this.#hang = hang
  }

  start(): void {
    if (this.#ctx.port.publish(`/farm/sensors/${this.device}/value`, '21.5', { qos: 0, retain: false })) this.counters.published++
    if (!this.#ctx.port.publish('/elsewhere/x', '1', { qos: 0, retain: false })) this.counters.rejected++
    this.set('online', undefined)
  }

  set(state: BridgeStatus['state'], lastError: string | undefined): void {
    this.state = state
    this.lastError = lastError
    const s = this.status()
    for (const fn of this.#listeners) fn(s)
  }

  status(): BridgeStatus {
    return { device: this.device, kind: this.kind, state: this.state, since: this.#ctx.clock.now(), lastError: this.lastError, counters: { ...this.counters } }
  }

  onStatus(fn: (s: BridgeStatus) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  dispose(): Promise<void> {
    this.#disposed.push(this.device)
    return this.#hang ? new Promise<void>(() => {}) : Promise.resolve()
  }
}

t.test('devices run as their account through the router; status, $SYS, status file, reverse dispose', async (t) => {
  const broker = await startAccountsBroker(t)
  // The ACL of accounts mode: an account publishes in /<account>/ only; an admin reads everything.
  await broker.addAccount('farm', 'farm-password-1')
  await broker.addAccount('ops', 'ops-password-1', { admin: true })
  const sub = await connectClient(t, broker.url, { username: 'ops', password: 'ops-password-1' })
  const seen = collect(sub)
  await sub.subscribeAsync('#')
  const clock = new FakeClock()
  const disposed: string[] = []
  const bridges: FakeBridge[] = []
  const factories: BridgeFactories = {
    serial: (c, ctx) => {
      const b = new FakeBridge(c, ctx, disposed)
      bridges.push(b)
      return b
    },
    gpio: () => {
      throw new Error('no gpiochip labelled pinctrl-bcm2711')
    },
    onewire: (c, ctx) => {
      const b = new FakeBridge(c, ctx, disposed)
      bridges.push(b)
      return b
    },
  }
  const statusFile = join(work, 'devices-status.json')
  const configs: DeviceConfig[] = [
    serialDevice('weather'),
    { name: 'barn', account: 'farm', enabled: true, file: '/devices/barn.json', kind: 'gpio', board: 'raspberry-pi-4', inputs: [], outputs: [], publish },
    serialDevice('spare', { enabled: false }),
    oneWireDevice('tank'),
  ]
  const problems = [{ file: '/devices/bad.json', key: 'kind', reason: 'must be one of serial, gpio, onewire' }]
  const service = BridgeService.start(configs, problems, { broker: broker.app.broker, clock, logger: silentLogger(), factories, statusFile })

  t.same(
    service.list().map((d) => [d.config.name, d.state]),
    [
      ['weather', 'online'],
      ['barn', 'failed'],
      ['spare', 'disabled'],
      ['tank', 'online'],
    ],
  )
  t.match(service.list()[1], { lastError: /no gpiochip labelled pinctrl-bcm2711/ }, 'the failed factory is reported')
  t.match(service.list()[0], { counters: { published: 1, rejected: 1 } }, 'a publish outside the account is refused by the ACL')
  const readings = () => seen.filter((m) => m.topic.startsWith('/farm/sensors/')).map((m) => `${m.topic} ${m.payload.toString()}`)
  await until(() => readings().length >= 2, 5000, 'the readings reach a network client')
  t.same(readings().sort(), ['/farm/sensors/tank/value 21.5', '/farm/sensors/weather/value 21.5'])
  await until(() => seen.filter((m) => m.topic === '/farm/events/acl_denied').length >= 2, 5000, 'the refusals are reported to the account')
  t.notOk(
    seen.some((m) => m.topic.startsWith('/elsewhere')),
    'nothing outside the account was routed',
  )

  const sys = new Map(service.sysEntries())
  t.equal(sys.get('bridges/count'), '4')
  t.equal(sys.get('bridges/online'), '2')
  t.equal(sys.get('bridges/invalid'), '1')
  t.equal(sys.get('bridges/weather/state'), 'online')
  t.equal(sys.get('bridges/weather/published'), '1')
  t.equal(sys.get('bridges/weather/rejected'), '1')
  t.equal(sys.get('bridges/weather/disconnects'), '0')
  t.equal(sys.get('bridges/barn/state'), 'failed')
  t.equal(sys.get('bridges/spare/state'), 'disabled')

  // A change of state is written to the status file (after the turn it happened in).
  const weather = bridges[0]
  if (weather === undefined) throw new Error('no weather bridge')
  weather.counters.disconnects++
  weather.set('offline', 'ENOENT: /dev/weather vanished')
  await new Promise((r) => setImmediate(r))
  const file = JSON.parse(readFileSync(statusFile, 'utf8')) as DevicesStatusFile
  t.equal(file.pid, process.pid)
  t.equal(file.stoppedAt, undefined)
  t.same(file.problems, problems)
  t.match(file.devices, [
    { device: 'weather', kind: 'serial', account: 'farm', state: 'offline', lastError: 'ENOENT: /dev/weather vanished', counters: { disconnects: 1 } },
    { device: 'barn', state: 'failed' },
    { device: 'spare', state: 'disabled', enabled: false },
    { device: 'tank', state: 'online', lastError: null },
  ])
  t.equal(new Map(service.sysEntries()).get('bridges/online'), '1')

  // The heartbeat rewrites the file.
  clock.advance(10_000)
  t.equal((JSON.parse(readFileSync(statusFile, 'utf8')) as DevicesStatusFile).writtenAt, clock.now())

  await service.dispose()
  t.same(disposed, ['tank', 'weather'], 'disposed in reverse order of start')
  const final = JSON.parse(readFileSync(statusFile, 'utf8')) as DevicesStatusFile
  t.equal(final.stoppedAt, clock.now(), 'the last status file says perch stopped')
  t.notOk(existsSync(`${statusFile}.${process.pid}.tmp`), 'no temporary file is left')
})

t.test('a bridge that does not release its device in time does not hold up the others', async (t) => {
  const broker = await startBroker(t)
  const clock = new FakeClock()
  const disposed: string[] = []
  const service = BridgeService.start([serialDevice('a'), serialDevice('stuck'), serialDevice('c')], [], {
    broker: broker.app.broker,
    clock,
    logger: silentLogger(),
    factories: { serial: (c, ctx) => new FakeBridge(c, ctx, disposed, c.name === 'stuck') },
    disposeTimeoutMs: 1000,
  })
  const stopping = service.dispose()
  await new Promise((r) => setImmediate(r))
  t.same(disposed, ['c', 'stuck'], 'waits for the stuck bridge')
  clock.advance(1000)
  await stopping
  t.same(disposed, ['c', 'stuck', 'a'], 'and goes on after the timeout')
  t.equal(service.dispose(), stopping, 'dispose is idempotent')
})

t.test('a kind without a factory, and a start() that throws, fail that device only', async (t) => {
  const broker = await startBroker(t)
  const disposed: string[] = []
  const service = BridgeService.start([oneWireDevice('tank'), serialDevice('throws'), serialDevice('fine')], [], {
    broker: broker.app.broker,
    clock: new FakeClock(),
    logger: silentLogger(),
    factories: {
      serial: (c, ctx) => {
        const b = new FakeBridge(c, ctx, disposed)
        if (c.name === 'throws') {
          b.start = () => {
            throw new Error('boom')
          }
        }
        return b
      },
    },
  })
  const list = service.list()
  t.match(list, [
    { config: { name: 'tank' }, state: 'failed', lastError: /no onewire bridge/ },
    { config: { name: 'throws' }, state: 'failed', lastError: /boom/ },
    { config: { name: 'fine' }, state: 'online' },
  ])
  await service.dispose()
  t.same(disposed, ['fine', 'throws'], 'a bridge whose start threw is still released')
})
