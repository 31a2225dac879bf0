// 1-Wire DS18B20 readings from fixture trees shaped like /sys/bus/w1/devices (test/fixtures/w1/):
// bus/ holds a good sensor (t=21375), a crc=NO one, an 85 °C power-on one, a -127 °C one and a
// DS18S20 (family 10, not discovered); single/ holds two good ones. Trees that change between
// polls are copies in a temp dir. Polling runs on a fake clock; the topic test uses a real broker.
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { OneWireDevice } from '../../src/bridges/device-config.js'
import { LocalBridgePort } from '../../src/bridges/local-port.js'
import { createOneWireBridge, parseW1Slave, W1Bus } from '../../src/bridges/onewire/index.js'
import type { BridgePort } from '../../src/bridges/types.js'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import type { Disposable } from '../../src/core/scope.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { connectWithAck, until } from '../helpers/clients.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/w1/', import.meta.url))
const BUS = join(FIXTURES, 'bus')
const SINGLE = join(FIXTURES, 'single')
const GOOD = '28-000005e2fdc3'

class MemoryPort implements BridgePort {
  readonly account = 'acme'
  readonly published: { topic: string; payload: string; retain: boolean }[] = []
  publish(topic: string, payload: string | Buffer, options: { qos: 0 | 1 | 2; retain: boolean }): boolean {
    this.published.push({ topic, payload: payload.toString(), retain: options.retain })
    return true
  }
  subscribe(): Disposable | undefined {
    return undefined
  }
  on(topic: string): string[] {
    return this.published.filter((p) => p.topic === topic).map((p) => p.payload)
  }
}

function device(root: string, more: Partial<OneWireDevice> = {}): OneWireDevice {
  return {
    kind: 'onewire',
    name: 'temps',
    account: 'acme',
    enabled: true,
    file: 'temps.json',
    root,
    intervalMs: 10_000,
    sensors: [],
    topic: '/{account}/sensors/{device}/{name}',
    payload: 'value',
    publish: { qos: 1, retain: false, onChange: false, minIntervalMs: 0 },
    ...more,
  }
}

const STATUS = '/acme/devices/temps/status'
type Status = { state: string; since: string; lastError: string | null; missing: string[] }
const statusOf = (port: MemoryPort): Status => JSON.parse(port.on(STATUS).at(-1) ?? '{}') as Status

function tempCopy(t: { teardown(fn: () => unknown): void }, from: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'perch-w1-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(from, dir, { recursive: true })
  return dir
}

t.test('w1_slave parsing: value, crc=NO, 85 °C, range, format', async (t) => {
  const line = (crc: string, milli: string) => `72 01 4b 46 7f ff 0e 10 57 : crc=57 ${crc}\n72 01 4b 46 7f ff 0e 10 57 t=${milli}\n`
  t.same(parseW1Slave(line('YES', '21375')), { ok: true, value: 21.375 })
  t.same(parseW1Slave(line('YES', '-10125')), { ok: true, value: -10.125 })
  t.same(parseW1Slave(line('YES', '0')), { ok: true, value: 0 })
  t.match(parseW1Slave(line('NO', '21375')), { ok: false, error: { code: 'EW1_CRC' } })
  t.match(parseW1Slave(line('YES', '85000')), { ok: false, error: { code: 'EW1_POWER_ON', message: /power-on/ } })
  t.match(parseW1Slave(line('YES', '-127000')), { ok: false, error: { code: 'EW1_RANGE' } })
  t.match(parseW1Slave(line('YES', '125001')), { ok: false, error: { code: 'EW1_RANGE' } })
  t.match(parseW1Slave(''), { ok: false, error: { code: 'EW1_FORMAT' } })
  t.match(parseW1Slave('72 01 : crc=57 YES\n'), { ok: false, error: { code: 'EW1_FORMAT' } })
})

t.test('W1Bus reads the fixture tree and lists only DS18B20s', async (t) => {
  const bus = new W1Bus(BUS)
  t.same(await bus.read(GOOD), { ok: true, value: 21.375 })
  t.match(await bus.read('28-0000075a1b2c'), { ok: false, error: { code: 'EW1_CRC' } })
  t.match(await bus.read('28-00000a0b0c0d'), { ok: false, error: { code: 'EW1_POWER_ON' } })
  t.match(await bus.read('28-00000b1e0a11'), { ok: false, error: { code: 'EW1_RANGE' } })
  t.match(await bus.read('28-ffffffffffff'), { ok: false, error: { code: 'EW1_GONE', message: /28-ffffffffffff is gone/ } })
  t.same(await bus.list(), { ok: true, value: [GOOD, '28-0000075a1b2c', '28-00000a0b0c0d', '28-00000b1e0a11'].sort() })
  t.match(await new W1Bus(join(FIXTURES, 'nope')).list(), { ok: false, error: { code: 'EW1_NO_BUS', message: /w1-gpio/ } })

  // Reads are serialised: started together, they still complete in order.
  const one = new W1Bus(SINGLE)
  const seq: string[] = []
  await Promise.all([one.read(GOOD).then(() => seq.push('a')), one.read('28-0316a2794aff').then(() => seq.push('b'))])
  t.same(seq, ['a', 'b'])
})

t.test('discovery of every 28-*: good readings published, rejected ones counted only', async (t) => {
  const clock = new FakeClock()
  const port = new MemoryPort()
  const bridge = createOneWireBridge(device(BUS), { port, clock, logger: silentLogger() })
  bridge.start()
  await until(() => port.on(STATUS).length > 0)
  t.same(port.published.filter((p) => p.topic !== STATUS), [{ topic: `/acme/sensors/temps/${GOOD}`, payload: '21.375', retain: false }])
  t.equal(bridge.status().state, 'online')
  t.equal(bridge.status().counters.rejected, 3, 'crc=NO, 85 °C and -127 °C')
  t.equal(bridge.status().counters.published, 1)
  t.same(statusOf(port), { state: 'online', since: new Date(clock.now()).toISOString(), lastError: null, missing: [] })
  t.notOk(port.published.some((p) => p.topic.includes('10-000801b5a6f7')), 'a DS18S20 is not discovered')

  clock.advance(10_000)
  await until(() => bridge.status().counters.published === 2, 5000, 'the second poll')
  t.equal(bridge.status().counters.rejected, 6)
  t.equal(port.on(STATUS).length, 1, 'an unchanged status is not republished')
  await bridge.dispose()
})

t.test('named sensors, json payloads, a missing sensor in the status', async (t) => {
  const clock = new FakeClock()
  const port = new MemoryPort()
  const sensors = [
    { id: GOOD, name: 'outdoor' },
    { id: '28-0316a2794aff', name: 'freezer' },
    { id: '28-00000000dead', name: 'cellar' },
  ]
  const bridge = createOneWireBridge(device(SINGLE, { sensors, payload: 'json' }), { port, clock, logger: silentLogger() })
  bridge.start()
  await until(() => port.on(STATUS).length > 0)
  const at = new Date(clock.now()).toISOString()
  t.same(JSON.parse(port.on('/acme/sensors/temps/outdoor')[0] ?? ''), { value: 21.375, unit: '°C', at })
  t.same(JSON.parse(port.on('/acme/sensors/temps/freezer')[0] ?? ''), { value: -10.125, unit: '°C', at })
  t.equal(bridge.status().state, 'online', 'online while some sensors answer')
  t.equal(bridge.status().lastError, `missing: 28-00000000dead (cellar) (not under ${SINGLE})`)
  t.same(statusOf(port).missing, ['28-00000000dead'])
  t.equal(bridge.status().counters.disconnects, 1)
  await bridge.dispose()
})

t.test('a sensor that disappears between polls, and comes back', async (t) => {
  const root = tempCopy(t, SINGLE)
  const clock = new FakeClock()
  const port = new MemoryPort()
  const bridge = createOneWireBridge(device(root, { intervalMs: 5_000 }), { port, clock, logger: silentLogger() })
  bridge.start()
  await until(() => bridge.status().counters.published === 2)
  t.same(statusOf(port).missing, [])

  rmSync(join(root, GOOD), { recursive: true })
  clock.advance(5_000)
  await until(() => statusOf(port).missing.length === 1, 5000, 'the vanished sensor in the status')
  t.same(statusOf(port), { state: 'online', since: statusOf(port).since, lastError: `missing: ${GOOD} (not under ${root})`, missing: [GOOD] })
  t.equal(bridge.status().counters.disconnects, 1)
  t.equal(port.on(`/acme/sensors/temps/${GOOD}`).length, 1, 'nothing published for it')

  rmSync(join(root, '28-0316a2794aff'), { recursive: true })
  clock.advance(5_000)
  await until(() => statusOf(port).missing.length === 2, 5000, 'both gone')
  t.equal(statusOf(port).state, 'offline', 'offline when no sensor answers')

  cpSync(join(SINGLE, GOOD), join(root, GOOD), { recursive: true })
  clock.advance(5_000)
  await until(() => statusOf(port).missing.length === 1, 5000, 'one back')
  t.equal(statusOf(port).state, 'online')
  t.equal(port.on(`/acme/sensors/temps/${GOOD}`).length, 2, 'published again once back')
  await bridge.dispose()
})

t.test('no bus at all: offline with the overlay hint', async (t) => {
  const port = new MemoryPort()
  const bridge = createOneWireBridge(device(join(FIXTURES, 'nope')), { port, clock: new FakeClock(), logger: silentLogger() })
  bridge.start()
  await until(() => port.on(STATUS).length > 0)
  t.equal(statusOf(port).state, 'offline')
  t.match(statusOf(port).lastError, /no 1-Wire bus at .*nope: is dtoverlay=w1-gpio set/)
  await bridge.dispose()
})

t.test('through a broker: readings and the retained status on the account topics', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('acme', 'pw')
  const port = new LocalBridgePort(b.app.broker, 'temps', 'acme')
  t.teardown(() => port.dispose())
  const { client, messages } = await connectWithAck(t, b.url, { username: 'acme', password: 'pw', protocolVersion: 5, clientId: 'w1-watcher' })
  await client.subscribeAsync('/acme/#', { qos: 1 })
  const sensors = [
    { id: GOOD, name: 'outdoor' },
    { id: '28-00000000dead', name: 'cellar' },
  ]
  const bridge = createOneWireBridge(device(SINGLE, { sensors }), { port, clock: new FakeClock(), logger: silentLogger() })
  t.teardown(() => bridge.dispose())
  bridge.start()
  await until(() => messages.length >= 2, 5000, 'a reading and the status')
  const byTopic = Object.fromEntries(messages.map((m) => [m.topic, m.payload.toString()]))
  t.equal(byTopic['/acme/sensors/temps/outdoor'], '21.375')
  t.match(JSON.parse(byTopic[STATUS] ?? '{}'), { state: 'online', missing: ['28-00000000dead'] })
  const status = messages.find((m) => m.topic === STATUS)
  t.equal(status?.packet.retain, false, 'live delivery')
  const late = await connectWithAck(t, b.url, { username: 'acme', password: 'pw', protocolVersion: 5, clientId: 'w1-late' })
  await late.client.subscribeAsync(STATUS, { qos: 1 })
  await until(() => late.messages.length === 1, 5000, 'the retained status')
  t.equal(late.messages[0]?.packet.retain, true)
})
