import type { Clock, TimerHandle } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { deviceTopics, type FeatureKind } from './model.js'
import type { FeatureStore, LinkRecord, SignalCommand, SignalRecord } from './store.js'

/** A feature some link uses: `device\0kind\0feature`. */
export type EndpointKey = string

export const endpointKey = (l: Pick<LinkRecord, 'device' | 'kind' | 'feature'>): EndpointKey => `${l.device}\0${l.kind}\0${l.feature}`

function parseKey(k: EndpointKey): { device: string; kind: FeatureKind; feature: string } {
  const [device = '', kind = 'idf', feature = ''] = k.split('\0')
  return { device, kind: kind === 'odf' ? 'odf' : 'idf', feature }
}

/** Every feature that at least one link of any graph uses. */
export function usedEndpoints(links: readonly LinkRecord[]): Set<EndpointKey> {
  return new Set(links.map(endpointKey))
}

export type SignalSend = (topic: string, body: Record<string, unknown>) => void

/** An unanswered signal is sent again this often (a device may have subscribed to its downlink late)... */
export const SIGNAL_RETRY_MS = 5000
/** ...this many times in all; then it is recorded as unanswered. */
export const SIGNAL_ATTEMPTS = 5

/**
 * The control channel: a feature gets CONNECT (with its data topic) when the first link uses it
 * and DISCONNECT when the last one goes; a device that comes online gets CONNECT again for
 * every feature in use (it starts afresh). The device's answer, on its uplink with the signal's
 * id, is recorded; a signal left unanswered is sent again, with the same id, a few times (the
 * reference's device goes online before it subscribes to its downlink, so the first CONNECT can
 * pass it by).
 */
export class Signaller {
  readonly #store: FeatureStore
  readonly #send: SignalSend
  readonly #clock: Clock
  readonly #logger: Logger
  /** The retry timer of each signal waiting for its answer, by signal id. */
  readonly #retries = new Map<string, TimerHandle>()
  #next = 0

  constructor(store: FeatureStore, send: SignalSend, clock: Clock, logger: Logger) {
    this.#store = store
    this.#send = send
    this.#clock = clock
    this.#logger = logger
    this.#next = clock.now()
  }

  dispose(): void {
    for (const t of this.#retries.values()) t.cancel()
    this.#retries.clear()
  }

  /** Signals the difference between the features in use before and after a change. */
  changed(before: ReadonlySet<EndpointKey>, after: ReadonlySet<EndpointKey>): void {
    for (const k of after) if (!before.has(k)) this.#signal('CONNECT', parseKey(k))
    for (const k of before) if (!after.has(k)) this.#signal('DISCONNECT', parseKey(k))
  }

  /** The device (re)started: CONNECT every feature of it that a link uses. */
  online(device: string): void {
    for (const k of usedEndpoints(this.#store.linksOfDevice(device))) this.#signal('CONNECT', parseKey(k))
  }

  /** An answer on the uplink; false when it answers no signal we sent (or an older one). */
  reply(device: string, body: Record<string, unknown>): boolean {
    const id = typeof body.id === 'string' ? body.id : undefined
    const last = this.#store.signals(device).find((s) => s.id === id)
    if (last === undefined || (last.state !== 'sent' && last.state !== 'pending')) return false
    this.#retries.get(last.id)?.cancel()
    this.#retries.delete(last.id)
    const state = body.state === 'ok' ? 'ok' : 'error'
    const error = state === 'ok' ? null : typeof body.reason === 'string' ? body.reason : typeof body.error === 'string' ? body.error : `state ${JSON.stringify(body.state ?? null)}`
    this.#store.setSignal({ ...last, state, error, at: this.#clock.now() })
    if (state === 'error') this.#logger.warn('device.signal-failed', { device, command: last.command, feature: last.feature, error })
    return true
  }

  #signal(command: SignalCommand, e: { device: string; kind: FeatureKind; feature: string }): void {
    const d = this.#store.device(e.device)
    if (d === undefined) return
    const id = `${command.toLowerCase()}-${(this.#next++).toString(36)}`
    const online = d.presence === 'online'
    const record: SignalRecord = { ...e, command, id, state: online ? 'sent' : 'pending', error: null, at: this.#clock.now() }
    this.#store.setSignal(record)
    // An offline device learns nothing now: it gets CONNECT again when it comes online, and a
    // DISCONNECT for a feature it never restarted with does not matter.
    if (!online) return
    const t = deviceTopics(d.account, d.id)
    const body = { command, id, [e.kind]: e.feature, topic: t.feature(e.kind, e.feature) }
    this.#send(t.down, body)
    this.#retry(record, t.down, body, 1)
  }

  #retry(record: SignalRecord, topic: string, body: Record<string, unknown>, attempts: number): void {
    const timer = this.#clock.setTimer(SIGNAL_RETRY_MS, () => {
      this.#retries.delete(record.id)
      const now = this.#store.signals(record.device).find((s) => s.id === record.id)
      // Answered, replaced by a newer signal, or the device went away: nothing to do.
      if (now === undefined || now.state !== 'sent' || this.#store.device(record.device)?.presence !== 'online') return
      if (attempts >= SIGNAL_ATTEMPTS) {
        this.#store.setSignal({ ...now, state: 'error', error: `no answer after ${attempts} attempts`, at: this.#clock.now() })
        this.#logger.warn('device.signal-unanswered', { device: record.device, command: record.command, feature: record.feature, attempts })
        return
      }
      this.#send(topic, body)
      this.#retry(record, topic, body, attempts + 1)
    })
    this.#retries.set(record.id, timer)
  }
}
