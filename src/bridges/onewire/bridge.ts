// 1-Wire temperature sensors (DS18B20) polled every intervalMs on the injected clock, one read at
// a time. Good readings are published in °C; rejected ones (crc=NO, 85 °C, out of range) are
// counted and logged, never published; a vanished sensor is listed in the retained status.
import type { TimerHandle } from '../../core/clock.js'
import type { OneWireDevice } from '../device-config.js'
import { DeviceStatus } from '../device-status.js'
import { type Bridge, type BridgeContext, type BridgeStatus, fillTemplate } from '../types.js'
import { W1Bus } from './w1.js'

/** A sensor converts for ~750 ms per read: at most one read per sensor per second. */
export const MIN_INTERVAL_MS = 1000


class OneWireBridge implements Bridge {
  readonly device: string
  readonly kind = 'onewire' as const
  readonly #config: OneWireDevice
  readonly #ctx: BridgeContext
  readonly #log: BridgeContext['logger']
  readonly #bus: W1Bus
  /** Sensors seen by discovery: one that later vanishes is reported missing, not forgotten. */
  readonly #known = new Set<string>()
  readonly #missing = new Set<string>()
  readonly #last = new Map<string, { value: number; at: number }>()
  readonly #status: DeviceStatus
  #timer: TimerHandle | undefined
  #started = false
  #disposed = false

  constructor(config: OneWireDevice, ctx: BridgeContext) {
    this.device = config.name
    this.#config = config
    this.#ctx = ctx
    this.#log = ctx.logger.child({ bridge: 'onewire', device: config.name })
    this.#bus = new W1Bus(config.root)
    this.#status = new DeviceStatus(config.name, 'onewire', ctx)
  }

  start(): void {
    if (this.#started || this.#disposed) return
    this.#started = true
    void this.#poll()
  }

  status(): BridgeStatus {
    return this.#status.status()
  }

  /** The ids of sensors that did not answer on the last poll. */
  missing(): string[] {
    return [...this.#missing].sort()
  }

  onStatus(fn: (s: BridgeStatus) => void): () => void {
    return this.#status.onStatus(fn)
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return
    this.#disposed = true
    this.#timer?.cancel()
    this.#timer = undefined
    this.#status.set('stopped', this.#status.lastError, { missing: this.missing() })
  }

  #nameOf(id: string): string {
    return this.#config.sensors.find((s) => s.id === id)?.name ?? id
  }

  async #targets(): Promise<{ ok: true; ids: string[] } | { ok: false; message: string }> {
    if (this.#config.sensors.length > 0) return { ok: true, ids: this.#config.sensors.map((s) => s.id) }
    const listed = await this.#bus.list()
    if (!listed.ok) return { ok: false, message: listed.error.message }
    for (const id of listed.value) this.#known.add(id)
    return { ok: true, ids: [...this.#known].sort() }
  }

  async #poll(): Promise<void> {
    if (this.#disposed) return
    const started = this.#ctx.clock.now()
    try {
      await this.#pollOnce()
    } catch (e) {
      // A bug, not a device problem: keep polling, say so.
      this.#status.counters.errors++
      this.#log.error('onewire.poll_failed', { error: e })
    }
    if (this.#disposed) return
    const interval = Math.max(this.#config.intervalMs, MIN_INTERVAL_MS)
    this.#timer = this.#ctx.clock.setTimer(Math.max(0, started + interval - this.#ctx.clock.now()), () => {
      this.#timer = undefined
      void this.#poll()
    })
  }

  async #pollOnce(): Promise<void> {
    const targets = await this.#targets()
    if (this.#disposed) return
    if (!targets.ok) {
      this.#status.counters.errors++
      this.#status.set('offline', targets.message, { missing: this.missing() })
      return
    }
    if (targets.ids.length === 0) {
      this.#status.set('offline', `no DS18B20 (28-*) sensor under ${this.#config.root}`, { missing: this.missing() })
      return
    }
    let present = 0
    for (const id of targets.ids) {
      const r = await this.#bus.read(id)
      if (this.#disposed) return
      if (r.ok) {
        present++
        this.#missing.delete(id)
        this.#publish(id, r.value)
      } else if (r.error.code === 'EW1_GONE') {
        if (!this.#missing.has(id)) {
          this.#missing.add(id)
          this.#status.counters.disconnects++
          this.#log.warn('onewire.sensor_gone', { sensor: id, error: r.error.message })
        }
      } else {
        present++
        this.#missing.delete(id)
        this.#status.counters.rejected++
        this.#log.warn('onewire.reading_rejected', { sensor: id, code: r.error.code, error: r.error.message })
      }
    }
    const missing = this.missing()
    const lastError =
      missing.length === 0
        ? undefined
        : `missing: ${missing.map((id) => (this.#nameOf(id) === id ? id : `${id} (${this.#nameOf(id)})`)).join(', ')} (not under ${this.#config.root})`
    this.#status.set(present > 0 ? 'online' : 'offline', lastError, { missing: this.missing() })
  }

  #publish(id: string, celsius: number): void {
    const now = this.#ctx.clock.now()
    const last = this.#last.get(id)
    const { publish } = this.#config
    if (last !== undefined) {
      if (publish.onChange && last.value === celsius) return
      if (publish.minIntervalMs > 0 && now - last.at < publish.minIntervalMs) return
    }
    const name = this.#nameOf(id)
    const topic = fillTemplate(this.#config.topic, { account: this.#ctx.port.account, device: this.device, name, field: name, id })
    const payload =
      this.#config.payload === 'json' ? JSON.stringify({ value: celsius, unit: '°C', at: new Date(now).toISOString() }) : String(celsius)
    if (this.#ctx.port.publish(topic, payload, { qos: publish.qos, retain: publish.retain })) {
      this.#status.counters.published++
      this.#last.set(id, { value: celsius, at: now })
    } else {
      this.#status.counters.rejected++
      this.#log.warn('onewire.publish_refused', { topic })
    }
  }
}

/** Polls the DS18B20 sensors of one 1-Wire bus. */
export function createOneWireBridge(config: OneWireDevice, ctx: BridgeContext): Bridge {
  return new OneWireBridge(config, ctx)
}
