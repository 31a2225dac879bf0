// The contract between the bridge service (config, lifetimes, status) and the bridges (serial,
// GPIO, 1-Wire): a bridge gets a port to publish and subscribe as its account, a clock and a
// logger, and reports its state; it never sees the broker.
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import type { Disposable } from '../core/scope.js'

export type BridgeKind = 'serial' | 'gpio' | 'onewire'

/**
 * How a bridge reaches MQTT: an in-process client acting as the device's account, so the
 * account's ACL applies. Topics are absolute (`/<account>/...`); `publish` returns false when the
 * ACL refuses. Handlers run after the routing that delivered the message, never inside it.
 */
export interface BridgePort {
  readonly account: string
  publish(topic: string, payload: string | Buffer, options: { qos: 0 | 1 | 2; retain: boolean }): boolean
  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): Disposable | undefined
}

export interface BridgeCounters {
  /** Messages published into MQTT. */
  published: number
  /** Commands taken from MQTT and written to the device (serial writes, GPIO outputs). */
  commands: number
  /** Input that could not be parsed or mapped, and publishes the ACL refused. */
  rejected: number
  /** Times the device was lost (unplugged, vanished, failed). */
  disconnects: number
  /** Failed attempts to open or reach the device. */
  errors: number
}

export interface BridgeStatus {
  readonly device: string
  readonly kind: BridgeKind
  /** online: reading; offline: lost and retrying; starting: not opened yet; stopped: disposed. */
  readonly state: 'starting' | 'online' | 'offline' | 'stopped'
  readonly since: number
  readonly lastError: string | undefined
  readonly counters: Readonly<BridgeCounters>
}

export interface BridgeContext {
  readonly port: BridgePort
  readonly clock: Clock
  readonly logger: Logger
}

/**
 * One configured device. `start` returns at once (opening happens in the background and is
 * retried); `dispose` releases the device (closes ports, unexports lines, stops timers) and
 * resolves when it is released. A bridge never throws out of a callback: failures become status.
 */
export interface Bridge {
  readonly device: string
  readonly kind: BridgeKind
  start(): void
  status(): BridgeStatus
  /** Called with every change of state; returns the undo. */
  onStatus(fn: (s: BridgeStatus) => void): () => void
  dispose(): Promise<void>
}

/** Fills `{device}`, `{field}`, `{account}` (and other named values) in a topic or payload template. */
export function fillTemplate(template: string, values: Readonly<Record<string, string | number>>): string {
  return template.replace(/\{([a-zA-Z0-9_]+)\}/g, (whole, name: string) => {
    const v = values[name]
    return v === undefined ? whole : String(v)
  })
}
