// A GPIO device: inputs publish their debounced level, outputs follow their set topic and echo
// their state, retained. The lines are reached through a GpioBackend, so everything here runs
// against an in-memory fake in tests; backend failures become status, never exceptions.
import type { TimerHandle } from '../../core/clock.js'
import type { Disposable } from '../../core/scope.js'
import type { BoardProfile, GpioDevice, GpioInput, GpioOutput } from '../device-config.js'
import { DeviceStatus } from '../device-status.js'
import { type Bridge, type BridgeContext, type BridgeStatus, fillTemplate } from '../types.js'
import type { GpioBackend, GpioInputLine, GpioOutputLine, Level } from './backend.js'

const RETRY_INITIAL_MS = 5_000
const RETRY_MAX_MS = 60_000

/** 0/1, on/off, true/false (any case, surrounding blanks ignored); undefined for anything else. */
export function parseLevel(payload: Buffer | string): Level | undefined {
  const s = payload.toString().trim().toLowerCase()
  if (s === '1' || s === 'on' || s === 'true') return 1
  if (s === '0' || s === 'off' || s === 'false') return 0
  return undefined
}

/** The retained state topic beside an output's set topic: .../set -> .../state. */
export function stateTopicOf(setTopic: string): string {
  return setTopic.endsWith('/set') ? `${setTopic.slice(0, -'/set'.length)}/state` : `${setTopic}/state`
}

interface InputState {
  readonly config: GpioInput
  readonly line: GpioInputLine
  readonly topic: string
  stable: Level
  pending: TimerHandle | undefined
}

interface OutputState {
  readonly config: GpioOutput
  readonly line: GpioOutputLine
  readonly stateTopic: string
  level: Level
}


class GpioBridge implements Bridge {
  readonly device: string
  readonly kind = 'gpio' as const
  readonly #config: GpioDevice
  readonly #board: BoardProfile | undefined
  readonly #ctx: BridgeContext
  readonly #backend: GpioBackend
  readonly #log: BridgeContext['logger']
  readonly #status: DeviceStatus
  #inputs: InputState[] = []
  #outputs: OutputState[] = []
  #subscriptions: Disposable[] = []
  #retry: TimerHandle | undefined
  #retryMs = RETRY_INITIAL_MS
  /** Bumped on every open and release, so a late open result from before is dropped. */
  #generation = 0
  #started = false
  #disposed = false

  constructor(config: GpioDevice, board: BoardProfile | undefined, ctx: BridgeContext, backend: GpioBackend) {
    this.device = config.name
    this.#config = config
    this.#board = board
    this.#ctx = ctx
    this.#backend = backend
    this.#log = ctx.logger.child({ bridge: 'gpio', device: config.name })
    this.#status = new DeviceStatus(config.name, 'gpio', ctx)
  }

  start(): void {
    if (this.#started || this.#disposed) return
    this.#started = true
    void this.#open()
  }

  status(): BridgeStatus {
    return this.#status.status()
  }

  onStatus(fn: (s: BridgeStatus) => void): () => void {
    return this.#status.onStatus(fn)
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return
    this.#disposed = true
    this.#retry?.cancel()
    this.#retry = undefined
    this.#release()
    this.#status.set('stopped', this.#status.lastError)
  }

  #values(name: string): Record<string, string> {
    return { account: this.#ctx.port.account, device: this.device, name }
  }

  #publish(topic: string, payload: string, retain: boolean): void {
    if (this.#ctx.port.publish(topic, payload, { qos: this.#config.publish.qos, retain })) this.#status.counters.published++
    else {
      this.#status.counters.rejected++
      this.#log.warn('gpio.publish_refused', { topic })
    }
  }

  /** Config problems retrying cannot fix; undefined when the device file and board agree. */
  #configProblem(): string | undefined {
    const gpio = this.#board?.gpio
    if (gpio === undefined) {
      return this.#board === undefined
        ? 'no board profile: set "board" in the device file (the gpiochip base and valid pins come from it)'
        : `board ${this.#board.name} has no GPIO header`
    }
    const seen = new Map<number, string>()
    for (const line of [...this.#config.inputs, ...this.#config.outputs]) {
      if (!gpio.pins.includes(line.pin)) {
        return `${line.name}: pin ${line.pin} is not a GPIO pin of board ${this.#board?.name ?? ''} (valid: ${gpio.pins.join(', ')})`
      }
      const other = seen.get(line.pin)
      if (other !== undefined) return `${line.name}: pin ${line.pin} is already used by ${other}`
      seen.set(line.pin, line.name)
    }
    return undefined
  }

  async #open(): Promise<void> {
    const generation = ++this.#generation
    const problem = this.#configProblem()
    if (problem !== undefined) {
      this.#status.counters.errors++
      this.#log.error('gpio.config_error', { error: problem })
      this.#status.set('offline', problem)
      return
    }
    const labels = this.#board?.gpio?.chipLabels ?? []
    const failed = (message: string): void => {
      this.#status.counters.errors++
      this.#release()
      this.#log.warn('gpio.open_failed', { error: message, retryMs: this.#retryMs })
      this.#status.set('offline', message)
      this.#scheduleRetry()
    }
    const chip = await this.#backend.base(labels)
    if (generation !== this.#generation || this.#disposed) return
    if (!chip.ok) return failed(chip.error.message)
    const base = chip.value.base
    for (const line of [...this.#config.inputs, ...this.#config.outputs]) {
      if (line.pin >= chip.value.ngpio) {
        return failed(`${line.name}: pin ${line.pin} is beyond ${chip.value.chip} (${chip.value.label}, ${chip.value.ngpio} lines)`)
      }
    }

    for (const o of this.#config.outputs) {
      const r = await this.#backend.openOutput({ pin: o.pin, base, activeLow: o.activeLow, initial: o.initial })
      if (generation !== this.#generation || this.#disposed) {
        if (r.ok) r.value.release()
        return
      }
      if (!r.ok) return failed(`${o.name}: ${r.error.message}`)
      const setTopic = fillTemplate(o.topic, this.#values(o.name))
      this.#outputs.push({ config: o, line: r.value, stateTopic: stateTopicOf(setTopic), level: o.initial })
    }
    for (const i of this.#config.inputs) {
      // Interrupts on both edges: the debounce has to see the level go back as well.
      const r = await this.#backend.openInput({ pin: i.pin, base, activeLow: i.activeLow, edge: 'both' })
      if (generation !== this.#generation || this.#disposed) {
        if (r.ok) r.value.release()
        return
      }
      if (!r.ok) return failed(`${i.name}: ${r.error.message}`)
      const line = r.value
      const level = line.read()
      if (!level.ok) {
        line.release()
        return failed(`${i.name}: ${level.error.message}`)
      }
      const input: InputState = { config: i, line, topic: fillTemplate(i.topic, this.#values(i.name)), stable: level.value, pending: undefined }
      this.#inputs.push(input)
      const watched = line.watch(
        (v) => this.#onLevel(input, v),
        (e) => this.#fail(`${i.name}: ${e.message}`),
      )
      if (!watched.ok) return failed(`${i.name}: ${watched.error.message}`)
    }
    for (const o of this.#outputs) {
      const filter = fillTemplate(o.config.topic, this.#values(o.config.name))
      const sub = this.#ctx.port.subscribe(filter, (_topic, payload) => this.#onSet(o, payload))
      if (sub === undefined) return failed(`${o.config.name}: account ${this.#ctx.port.account} may not subscribe to ${filter}`)
      this.#subscriptions.push(sub)
    }

    this.#retryMs = RETRY_INITIAL_MS
    for (const o of this.#outputs) this.#publish(o.stateTopic, String(o.level), true)
    for (const i of this.#inputs) this.#publish(i.topic, String(i.stable), this.#config.publish.retain)
    this.#log.info('gpio.online', { chip: chip.value.chip, base, inputs: this.#inputs.length, outputs: this.#outputs.length })
    this.#status.set('online', undefined)
  }

  #scheduleRetry(): void {
    if (this.#disposed || this.#retry !== undefined) return
    const delay = this.#retryMs
    this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS)
    this.#retry = this.#ctx.clock.setTimer(delay, () => {
      this.#retry = undefined
      void this.#open()
    })
  }

  /** A line failed while online: release everything, go offline, try again later. */
  #fail(message: string): void {
    if (this.#disposed || this.#status.state !== 'online') return
    this.#status.counters.disconnects++
    this.#status.counters.errors++
    this.#release()
    this.#log.warn('gpio.failed', { error: message })
    this.#status.set('offline', message)
    this.#scheduleRetry()
  }

  #release(): void {
    this.#generation++
    for (const s of this.#subscriptions.splice(0).reverse()) s.dispose()
    for (const i of this.#inputs.splice(0).reverse()) {
      i.pending?.cancel()
      i.line.unwatch()
      const r = i.line.release()
      if (!r.ok) this.#log.warn('gpio.release_failed', { line: i.config.name, error: r.error.message })
    }
    for (const o of this.#outputs.splice(0).reverse()) {
      const r = o.line.release()
      if (!r.ok) this.#log.warn('gpio.release_failed', { line: o.config.name, error: r.error.message })
    }
  }

  /** Software debounce: a new level is published once it has held for debounceMs. */
  #onLevel(input: InputState, level: Level): void {
    if (!this.#inputs.includes(input)) return
    input.pending?.cancel()
    input.pending = undefined
    if (level === input.stable) return
    const { debounceMs } = input.config
    if (debounceMs <= 0) return this.#commit(input, level)
    input.pending = this.#ctx.clock.setTimer(debounceMs, () => {
      input.pending = undefined
      this.#commit(input, level)
    })
  }

  #commit(input: InputState, level: Level): void {
    input.stable = level
    const edge = input.config.edge
    if (edge === 'both' || (edge === 'rising' && level === 1) || (edge === 'falling' && level === 0)) {
      this.#publish(input.topic, String(level), this.#config.publish.retain)
    }
  }

  #onSet(output: OutputState, payload: Buffer): void {
    if (!this.#outputs.includes(output)) return
    const level = parseLevel(payload)
    if (level === undefined) {
      this.#status.counters.rejected++
      this.#log.warn('gpio.bad_command', { output: output.config.name, payload: payload.toString().slice(0, 64) })
      return
    }
    const r = output.line.write(level)
    if (!r.ok) return this.#fail(`${output.config.name}: ${r.error.message}`)
    this.#status.counters.commands++
    output.level = level
    this.#publish(output.stateTopic, String(level), true)
  }
}

/** One GPIO device on `board`, reached through `backend`. */
export function createGpioBridge(
  config: GpioDevice,
  board: BoardProfile | undefined,
  ctx: BridgeContext,
  backend: GpioBackend,
): Bridge {
  return new GpioBridge(config, board, ctx, backend)
}
