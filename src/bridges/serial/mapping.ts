// Records -> publishes: scale/offset/decimals per field, the topic template, the payload form,
// and the publish policy (onChange, minIntervalMs with the newest value winning).
import type { Clock, TimerHandle } from '../../core/clock.js'
import { err, ok, type Result } from '../../core/result.js'
import type { FieldMapping, PublishOptions } from '../device-config.js'
import { fillTemplate } from '../types.js'
import type { RawRecord, RawValue } from './framing.js'

export interface Publication {
  readonly topic: string
  readonly payload: string
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly field: string
}

export interface MappingConfig {
  readonly device: string
  readonly account: string
  readonly topic: string
  readonly payload: 'value' | 'json'
  readonly fields: Readonly<Record<string, FieldMapping>>
  readonly publish: PublishOptions
}

export type MappedValue = number | string | boolean

const NUMERIC = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/

function isIdentity(m: FieldMapping | undefined): boolean {
  return m === undefined || (m.scale === 1 && m.offset === 0 && m.decimals === undefined)
}

/**
 * One raw value -> the value to publish. Numbers (and numeric strings) get value * scale + offset,
 * rounded to `decimals`. Other strings and booleans pass through unchanged when the field has no
 * numeric mapping; with one they are rejected.
 */
export function mapValue(raw: RawValue, m: FieldMapping | undefined): Result<MappedValue, string> {
  let n: number
  if (typeof raw === 'number') n = raw
  else if (typeof raw === 'string' && NUMERIC.test(raw.trim())) n = Number(raw.trim())
  else {
    if (typeof raw === 'string' && raw === '') return err('empty value')
    return isIdentity(m) ? ok(raw) : err(`not a number: ${String(raw).slice(0, 40)}`)
  }
  if (m !== undefined) n = n * m.scale + m.offset
  if (m?.decimals !== undefined) n = Number(n.toFixed(m.decimals))
  if (!Number.isFinite(n)) return err('not a finite number')
  // -0 reads as "0" in JSON but not everywhere; normalise.
  return ok(Object.is(n, -0) ? 0 : n)
}

export function renderPayload(form: 'value' | 'json', value: MappedValue, unit: string | undefined, at: number): string {
  if (form === 'value') return String(value)
  const iso = new Date(at).toISOString()
  return JSON.stringify(unit === undefined ? { value, at: iso } : { value, unit, at: iso })
}

interface FieldState {
  last: MappedValue | undefined
  lastAt: number | undefined
  pending: { value: MappedValue; at: number } | undefined
  timer: TimerHandle | undefined
}

/** Applies the mapping and the publish policy; `emit` gets each publication when it is due. */
export class FieldPublisher {
  readonly #c: MappingConfig
  readonly #clock: Clock
  readonly #emit: (p: Publication) => void
  readonly #fields = new Map<string, FieldState>()
  #disposed = false

  constructor(config: MappingConfig, clock: Clock, emit: (p: Publication) => void) {
    this.#c = config
    this.#clock = clock
    this.#emit = emit
  }

  /** Takes one record; returns the reasons for the fields that could not be mapped. */
  accept(record: RawRecord): string[] {
    const rejected: string[] = []
    if (this.#disposed) return rejected
    const at = this.#clock.now()
    for (const [field, raw] of Object.entries(record)) {
      const r = mapValue(raw, this.#c.fields[field])
      if (!r.ok) {
        rejected.push(`${field}: ${r.error}`)
        continue
      }
      this.#offer(field, r.value, at)
    }
    return rejected
  }

  #state(field: string): FieldState {
    let s = this.#fields.get(field)
    if (s === undefined) {
      s = { last: undefined, lastAt: undefined, pending: undefined, timer: undefined }
      this.#fields.set(field, s)
    }
    return s
  }

  #offer(field: string, value: MappedValue, at: number): void {
    const { onChange, minIntervalMs } = this.#c.publish
    const s = this.#state(field)
    const unchanged = onChange && s.last !== undefined && s.last === value
    const now = this.#clock.now()
    if (minIntervalMs > 0 && s.lastAt !== undefined && now - s.lastAt < minIntervalMs) {
      // Too soon: the newest value waits for the interval (replacing an older waiting one).
      s.pending = unchanged ? undefined : { value, at }
      if (s.pending !== undefined && s.timer === undefined) {
        s.timer = this.#clock.setTimer(s.lastAt + minIntervalMs - now, () => {
          s.timer = undefined
          const p = s.pending
          s.pending = undefined
          if (p !== undefined && !this.#disposed) this.#publish(field, s, p.value, p.at)
        })
      }
      return
    }
    if (unchanged) return
    this.#publish(field, s, value, at)
  }

  #publish(field: string, s: FieldState, value: MappedValue, at: number): void {
    s.last = value
    s.lastAt = this.#clock.now()
    const c = this.#c
    this.#emit({
      field,
      topic: fillTemplate(c.topic, { device: c.device, field, account: c.account }),
      payload: renderPayload(c.payload, value, c.fields[field]?.unit, at),
      qos: c.publish.qos,
      retain: c.publish.retain,
    })
  }

  /** Drops waiting values and their timers. */
  dispose(): void {
    this.#disposed = true
    for (const s of this.#fields.values()) {
      s.timer?.cancel()
      s.timer = undefined
      s.pending = undefined
    }
  }
}
