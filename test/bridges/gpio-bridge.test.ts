// The GPIO bridge through the GpioBackend interface, with an in-memory backend that injects edges
// deterministically and a fake clock for the debounce: initial levels, debounce, active-low,
// edge filters, outputs following their set topic, bad payloads, board validation and backend
// failures. The topic tests run through a real broker and MQTT.js clients.
import t from 'tap'
import type { BoardProfile, GpioDevice, GpioInput, GpioOutput } from '../../src/bridges/device-config.js'
import {
  type ChipInfo,
  createGpioBridge,
  type GpioBackend,
  type GpioError,
  type GpioInputLine,
  type GpioOutputLine,
  type InputRequest,
  type Level,
  type OutputRequest,
  parseLevel,
} from '../../src/bridges/gpio/index.js'
import { LocalBridgePort } from '../../src/bridges/local-port.js'
import type { BridgeContext, BridgePort } from '../../src/bridges/types.js'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { err, ok, type Result } from '../../src/core/result.js'
import type { Disposable } from '../../src/core/scope.js'
import { startAccountsBroker } from '../helpers/accounts.js'
import { connectWithAck, until } from '../helpers/clients.js'

const BASE = 512

/** Physical lines in memory: `drive` sets an input's electrical level and fires its watchers. */
class FakeGpio implements GpioBackend {
  readonly physical = new Map<number, Level>()
  readonly activeLow = new Map<number, boolean>()
  readonly watchers = new Map<number, (l: Level) => void>()
  readonly onError = new Map<number, (e: GpioError) => void>()
  readonly released: number[] = []
  readonly writes: [number, Level][] = []
  failBase: GpioError | undefined
  failOpen = new Map<number, GpioError>()
  failWrite: GpioError | undefined
  chip: ChipInfo = { chip: 'gpiochip512', label: 'pinctrl-bcm2711', base: BASE, ngpio: 58 }

  async base(labels: readonly string[]): Promise<Result<ChipInfo, GpioError>> {
    if (this.failBase !== undefined) return err(this.failBase)
    if (!labels.includes(this.chip.label)) return err({ code: 'EGPIO_NO_CHIP', message: `no ${labels.join(',')}` })
    return ok(this.chip)
  }

  logical(line: number): Level {
    const p = this.physical.get(line) ?? 0
    return this.activeLow.get(line) === true ? ((1 - p) as Level) : p
  }

  async openInput(req: InputRequest): Promise<Result<GpioInputLine, GpioError>> {
    const line = req.base + req.pin
    const f = this.failOpen.get(req.pin)
    if (f !== undefined) return err(f)
    this.activeLow.set(line, req.activeLow)
    if (!this.physical.has(line)) this.physical.set(line, 0)
    return ok({
      line,
      read: () => ok(this.logical(line)),
      watch: (onLevel, onError) => {
        this.watchers.set(line, onLevel)
        this.onError.set(line, onError)
        return ok(undefined)
      },
      unwatch: () => {
        this.watchers.delete(line)
      },
      release: () => {
        this.released.push(line)
        return ok(undefined)
      },
    })
  }

  async openOutput(req: OutputRequest): Promise<Result<GpioOutputLine, GpioError>> {
    const line = req.base + req.pin
    const f = this.failOpen.get(req.pin)
    if (f !== undefined) return err(f)
    this.activeLow.set(line, req.activeLow)
    this.physical.set(line, (req.activeLow ? 1 - req.initial : req.initial) as Level)
    return ok({
      line,
      read: () => ok(this.logical(line)),
      write: (level) => {
        if (this.failWrite !== undefined) return err(this.failWrite)
        this.writes.push([line, level])
        this.physical.set(line, (req.activeLow ? 1 - level : level) as Level)
        return ok(undefined)
      },
      release: () => {
        this.released.push(line)
        return ok(undefined)
      },
    })
  }

  /** Sets the electrical level of BCM `pin` and delivers the interrupt. */
  drive(pin: number, level: Level): void {
    const line = BASE + pin
    this.physical.set(line, level)
    this.watchers.get(line)?.(this.logical(line))
  }
}

/** A BridgePort in memory: exact-topic subscriptions, every publish recorded. */
class MemoryPort implements BridgePort {
  readonly account = 'acme'
  readonly published: { topic: string; payload: string; retain: boolean }[] = []
  readonly subs = new Map<string, (topic: string, payload: Buffer) => void>()
  publish(topic: string, payload: string | Buffer, options: { qos: 0 | 1 | 2; retain: boolean }): boolean {
    this.published.push({ topic, payload: payload.toString(), retain: options.retain })
    return true
  }
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): Disposable | undefined {
    this.subs.set(filter, handler)
    return { dispose: () => this.subs.delete(filter) }
  }
  send(topic: string, payload: string): void {
    this.subs.get(topic)?.(topic, Buffer.from(payload))
  }
  on(topic: string): string[] {
    return this.published.filter((p) => p.topic === topic).map((p) => p.payload)
  }
}

const board: BoardProfile = {
  name: 'pi4',
  description: 'Raspberry Pi 4',
  gpio: { chipLabels: ['pinctrl-bcm2711'], pins: [4, 17, 22, 27] },
  serial: [],
  onewire: undefined,
}

function input(name: string, pin: number, more: Partial<GpioInput> = {}): GpioInput {
  return { name, pin, edge: 'both', debounceMs: 20, activeLow: false, topic: '/{account}/sensors/{device}/{name}', ...more }
}

function output(name: string, pin: number, more: Partial<GpioOutput> = {}): GpioOutput {
  return { name, pin, activeLow: false, initial: 0, topic: '/{account}/actuators/{name}/set', ...more }
}

function device(inputs: GpioInput[], outputs: GpioOutput[]): GpioDevice {
  return {
    kind: 'gpio',
    name: 'panel',
    account: 'acme',
    enabled: true,
    file: 'panel.json',
    board: 'pi4',
    inputs,
    outputs,
    publish: { qos: 1, retain: false, onChange: true, minIntervalMs: 0 },
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

function setup(inputs: GpioInput[], outputs: GpioOutput[], opts: { board?: BoardProfile | undefined } = {}) {
  const b = 'board' in opts ? opts.board : board
  const clock = new FakeClock()
  const port = new MemoryPort()
  const gpio = new FakeGpio()
  const ctx: BridgeContext = { port, clock, logger: silentLogger() }
  const bridge = createGpioBridge(device(inputs, outputs), b, ctx, gpio)
  return { clock, port, gpio, bridge }
}

const STATUS = '/acme/devices/panel/status'
const statusOf = (port: MemoryPort) => JSON.parse(port.on(STATUS).at(-1) ?? '{}') as { state: string; since: string; lastError: string | null }

t.test('parseLevel takes 0/1, on/off, true/false in any case and nothing else', async (t) => {
  for (const s of ['1', 'on', 'ON', 'True', ' true\n']) t.equal(parseLevel(s), 1, s)
  for (const s of ['0', 'off', 'Off', 'FALSE']) t.equal(parseLevel(s), 0, s)
  for (const s of ['', '2', 'yes', 'high', 'onn', '01']) t.equal(parseLevel(s), undefined, JSON.stringify(s))
})

t.test('an input publishes its initial level at start, then each debounced change once', async (t) => {
  const { clock, port, gpio, bridge } = setup([input('door', 17)], [])
  gpio.physical.set(BASE + 17, 1)
  bridge.start()
  await settle()
  t.equal(bridge.status().state, 'online')
  t.same(port.on('/acme/sensors/panel/door'), ['1'], 'initial level')
  t.same(statusOf(port), { state: 'online', since: new Date(clock.now()).toISOString(), lastError: null })

  // A bouncing contact: five changes 3 ms apart, ending low.
  for (const l of [0, 1, 0, 1, 0] as Level[]) {
    gpio.drive(17, l)
    clock.advance(3)
  }
  t.same(port.on('/acme/sensors/panel/door'), ['1'], 'nothing while it bounces')
  clock.advance(16)
  t.same(port.on('/acme/sensors/panel/door'), ['1'], 'still nothing before debounceMs of stability')
  clock.advance(1)
  t.same(port.on('/acme/sensors/panel/door'), ['1', '0'], 'published once after 20 ms stable')

  // A glitch shorter than debounceMs that returns to the stable level publishes nothing.
  gpio.drive(17, 1)
  clock.advance(10)
  gpio.drive(17, 0)
  clock.advance(100)
  t.same(port.on('/acme/sensors/panel/door'), ['1', '0'], 'a short glitch is ignored')
  t.equal(bridge.status().counters.published, 2)
  await bridge.dispose()
  t.equal(bridge.status().state, 'stopped')
  t.same(gpio.released, [BASE + 17], 'the line is released at dispose')
  t.equal(statusOf(port).state, 'offline', 'offline is retained after dispose')
})

t.test('activeLow inverts what is published; edge filters choose which changes publish', async (t) => {
  const { clock, port, gpio, bridge } = setup(
    [input('button', 4, { activeLow: true, debounceMs: 0 }), input('rise', 22, { edge: 'rising', debounceMs: 5 }), input('fall', 27, { edge: 'falling', debounceMs: 5 })],
    [],
  )
  gpio.physical.set(BASE + 4, 1) // pulled up, not pressed
  bridge.start()
  await settle()
  t.same(port.on('/acme/sensors/panel/button'), ['0'], 'high on an active-low line is 0')
  gpio.drive(4, 0)
  t.same(port.on('/acme/sensors/panel/button'), ['0', '1'], 'pressed (pulled low) is 1, at once with debounceMs 0')

  for (const l of [1, 0, 1] as Level[]) {
    gpio.drive(22, l)
    gpio.drive(27, l)
    clock.advance(10)
  }
  t.same(port.on('/acme/sensors/panel/rise'), ['0', '1', '1'], 'rising: the initial level, then each rise')
  t.same(port.on('/acme/sensors/panel/fall'), ['0', '0'], 'falling: the initial level, then each fall')
  await bridge.dispose()
})

t.test('outputs start at their initial level and follow set commands; bad payloads are rejected', async (t) => {
  const { port, gpio, bridge } = setup([], [output('relay', 22, { initial: 1 }), output('led', 27, { activeLow: true })])
  bridge.start()
  await settle()
  t.equal(gpio.physical.get(BASE + 22), 1, 'relay starts high')
  t.equal(gpio.physical.get(BASE + 27), 1, 'active-low led starts off: physically high')
  t.same(port.published.filter((p) => p.topic.endsWith('/state')), [
    { topic: '/acme/actuators/relay/state', payload: '1', retain: true },
    { topic: '/acme/actuators/led/state', payload: '0', retain: true },
  ])
  t.ok(port.subs.has('/acme/actuators/relay/set') && port.subs.has('/acme/actuators/led/set'))

  port.send('/acme/actuators/led/set', 'ON')
  t.equal(gpio.physical.get(BASE + 27), 0, 'led on: pulled low')
  port.send('/acme/actuators/relay/set', 'false')
  for (const bad of ['maybe', '2', '', 'on off']) port.send('/acme/actuators/relay/set', bad)
  t.same(port.on('/acme/actuators/led/state'), ['0', '1'])
  t.same(port.on('/acme/actuators/relay/state'), ['1', '0'])
  t.same(gpio.writes, [[BASE + 27, 1], [BASE + 22, 0]], 'only valid commands reach the lines')
  t.equal(bridge.status().counters.commands, 2)
  t.equal(bridge.status().counters.rejected, 4)
  await bridge.dispose()
  t.equal(port.subs.size, 0, 'unsubscribed at dispose')
})

t.test('pins are validated against the board profile', async (t) => {
  const bad = setup([input('door', 5)], [])
  bad.bridge.start()
  await settle()
  t.equal(bad.bridge.status().state, 'offline')
  t.match(bad.bridge.status().lastError, /door: pin 5 is not a GPIO pin of board pi4 \(valid: 4, 17, 22, 27\)/)
  t.equal(bad.gpio.physical.size, 0, 'nothing was opened')

  const dup = setup([input('a', 17)], [output('b', 17)])
  dup.bridge.start()
  await settle()
  t.match(dup.bridge.status().lastError, /b: pin 17 is already used by a/)

  const none = setup([input('a', 17)], [], { board: undefined })
  none.bridge.start()
  await settle()
  t.match(none.bridge.status().lastError, /no board profile/)
  t.match(statusOf(none.port).lastError ?? '', /no board profile/)
})

t.test('a failing backend makes the device offline with its message, and it retries', async (t) => {
  const { clock, port, gpio, bridge } = setup([input('door', 17)], [output('relay', 22)])
  const access = 'permission denied on /sys/class/gpio/export: run perch as a member of the gpio group'
  gpio.failOpen.set(17, { code: 'EGPIO_ACCESS', message: access })
  bridge.start()
  await settle()
  t.equal(bridge.status().state, 'offline')
  t.equal(bridge.status().lastError, `door: ${access}`)
  t.equal(statusOf(port).lastError, `door: ${access}`)
  t.same(gpio.released, [BASE + 22], 'the output opened before the failure is released')

  gpio.failOpen.clear()
  clock.advance(5_000)
  await settle()
  t.equal(bridge.status().state, 'online', 'the retry succeeds')
  t.equal(statusOf(port).lastError, null)

  // A write failure while online: offline, lines released, and a retry later.
  gpio.failWrite = { code: 'EGPIO_IO', message: 'write /sys/class/gpio/gpio534/value failed: EIO i/o error' }
  port.send('/acme/actuators/relay/set', '1')
  t.equal(bridge.status().state, 'offline')
  t.match(bridge.status().lastError, /relay: write .* EIO/)
  t.equal(bridge.status().counters.disconnects, 1)
  t.equal(port.subs.size, 0)
  gpio.failWrite = undefined
  clock.advance(5_000)
  await settle()
  t.equal(bridge.status().state, 'online')

  // An error reported from the watch (reading after an interrupt).
  gpio.onError.get(BASE + 17)?.({ code: 'EGPIO_IO', message: 'read failed' })
  t.equal(bridge.status().state, 'offline')
  t.equal(bridge.status().lastError, 'door: read failed')
  await bridge.dispose()
})

t.test('a missing gpiochip label gives the backend message', async (t) => {
  const s = setup([input('door', 17)], [])
  const { gpio, bridge } = s
  gpio.failBase = { code: 'EGPIO_NO_CHIP', message: 'no gpiochip labelled pinctrl-bcm2711 under /sys/class/gpio; found gpiochip571 (label pinctrl-rp1, base 571, ngpio 54)' }
  const states: string[] = []
  bridge.onStatus((s) => states.push(s.state))
  bridge.start()
  await settle()
  t.same(states, ['offline'])
  t.match(bridge.status().lastError, /found gpiochip571 \(label pinctrl-rp1/)
  const { clock } = s
  clock.advance(5_000)
  await settle()
  t.equal(bridge.status().counters.errors, 2, 'retried')
  t.same(states, ['offline'], 'the same failure again is not announced again')
  await bridge.dispose()
})

t.test('through a broker: levels, set commands and retained state on the account topics', async (t) => {
  const b = await startAccountsBroker(t)
  await b.addAccount('acme', 'pw')
  const port = new LocalBridgePort(b.app.broker, 'panel', 'acme')
  t.teardown(() => port.dispose())
  const gpio = new FakeGpio()
  const clock = new FakeClock()
  const bridge = createGpioBridge(device([input('door', 17)], [output('relay', 22)]), board, { port, clock, logger: silentLogger() }, gpio)
  t.teardown(() => bridge.dispose())
  const { client, messages } = await connectWithAck(t, b.url, { username: 'acme', password: 'pw', protocolVersion: 5, clientId: 'watcher' })
  await client.subscribeAsync('/acme/#', { qos: 1 })
  bridge.start()
  await until(() => bridge.status().state === 'online')
  const got = (topic: string) => messages.filter((m) => m.topic === topic).map((m) => m.payload.toString())
  await until(() => got('/acme/sensors/panel/door').length === 1 && got('/acme/actuators/relay/state').length === 1)
  t.same(got('/acme/sensors/panel/door'), ['0'])

  gpio.drive(17, 1)
  clock.advance(20)
  await until(() => got('/acme/sensors/panel/door').length === 2, 5000, 'the door level')
  t.same(got('/acme/sensors/panel/door'), ['0', '1'])

  await client.publishAsync('/acme/actuators/relay/set', 'on', { qos: 1 })
  await until(() => got('/acme/actuators/relay/state').length === 2, 5000, 'the relay state echo')
  t.same(got('/acme/actuators/relay/state'), ['0', '1'])
  t.equal(gpio.physical.get(BASE + 22), 1)
  await client.publishAsync('/acme/actuators/relay/set', 'bogus', { qos: 1 })
  await until(() => bridge.status().counters.rejected === 1, 5000, 'the bad payload to be rejected')

  // A client arriving later sees the retained state and status.
  const late = await connectWithAck(t, b.url, { username: 'acme', password: 'pw', protocolVersion: 5, clientId: 'late' })
  await late.client.subscribeAsync(['/acme/actuators/+/state', '/acme/devices/+/status'], { qos: 1 })
  await until(() => late.messages.length === 2, 5000, 'retained state and status')
  const retained = Object.fromEntries(late.messages.map((m) => [m.topic, m.payload.toString()]))
  t.equal(retained['/acme/actuators/relay/state'], '1')
  t.match(JSON.parse(retained['/acme/devices/panel/status'] ?? '{}'), { state: 'online', lastError: null })
})
