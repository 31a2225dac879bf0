import type { Bridge, BridgeContext, BridgeCounters, BridgeKind, BridgeStatus } from './types.js'

type State = BridgeStatus['state']

/** The retained status topic of a device. */
export function deviceStatusTopic(account: string, device: string): string {
  return `/${account}/devices/${device}/status`
}

/**
 * A bridge's state, counters and listeners, and its retained status message
 * (`{"state":"online"|"offline","since","lastError",...}` on /A/devices/D/status), published
 * only when something in it changed.
 */
export class DeviceStatus {
  readonly counters: BridgeCounters = { published: 0, commands: 0, rejected: 0, disconnects: 0, errors: 0 }
  readonly #device: string
  readonly #kind: BridgeKind
  readonly #ctx: BridgeContext
  readonly #listeners = new Set<(s: BridgeStatus) => void>()
  #state: State = 'starting'
  #since: number
  #lastError: string | undefined
  #shown = ''

  constructor(device: string, kind: BridgeKind, ctx: BridgeContext) {
    this.#device = device
    this.#kind = kind
    this.#ctx = ctx
    this.#since = ctx.clock.now()
  }

  get state(): State {
    return this.#state
  }

  get lastError(): string | undefined {
    return this.#lastError
  }

  status(): BridgeStatus {
    return { device: this.#device, kind: this.#kind, state: this.#state, since: this.#since, lastError: this.#lastError, counters: { ...this.counters } }
  }

  onStatus(fn: (s: BridgeStatus) => void): ReturnType<Bridge['onStatus']> {
    this.#listeners.add(fn)
    return () => {
      this.#listeners.delete(fn)
    }
  }

  /**
   * Moves to `state`; `extra` fields go into the status message too (e.g. missing sensors).
   * Stopped is final: a late callback of a disposed device changes nothing.
   */
  set(state: State, lastError: string | undefined, extra: Readonly<Record<string, unknown>> = {}): void {
    if (this.#state === 'stopped') return
    const key = JSON.stringify([state, lastError, extra])
    if (key === this.#shown) return
    this.#shown = key
    if (state !== this.#state) this.#since = this.#ctx.clock.now()
    this.#state = state
    this.#lastError = lastError
    const body = { state: state === 'online' ? 'online' : 'offline', since: new Date(this.#since).toISOString(), lastError: lastError ?? null, ...extra }
    if (!this.#ctx.port.publish(deviceStatusTopic(this.#ctx.port.account, this.#device), JSON.stringify(body), { qos: 1, retain: true })) this.counters.rejected++
    const s = this.status()
    for (const fn of this.#listeners) {
      try {
        fn(s)
      } catch (e) {
        this.#ctx.logger.error('bridge.status-listener-failed', { device: this.#device, error: e instanceof Error ? e.message : String(e) })
      }
    }
    if (state === 'stopped') this.#listeners.clear()
  }
}
