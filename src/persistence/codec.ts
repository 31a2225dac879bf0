import { DbError } from '../db/index.js'
import { type ForwardedProperties, userPropertyList } from '../mqtt/protocol/packets.js'
import { createMessage, type Message, type QoS } from '../mqtt/session/message.js'
import type { SubscriptionOptions } from '../mqtt/session/session.js'
import type { DeliveryState, SessionOwner } from '../mqtt/session/store.js'

/**
 * Row <-> object conversions. Structured columns are JSON; Buffer fields (correlation data)
 * are base64 inside it. Decoding checks every field: a row that does not decode is reported
 * as a corrupt database naming the file, never turned into a half-valid object.
 */

export interface MessageRow {
  id: number
  topic: string
  payload: Buffer
  qos: number
  retain: number
  properties: string | null
  expires_at: number | null
  origin: string
}

/** A delivery's inline message columns (NULL when the delivery refers to a messages row). */
export interface InlineRow {
  m_qos: number | null
  m_retain: number | null
  m_expires_at: number | null
  m_origin: string | null
  m_topic: string | null
  m_properties: string | null
  m_payload: Buffer | null
}

export function encodeProperties(p: ForwardedProperties | undefined): string | null {
  if (p === undefined) return null
  const { correlationData, ...rest } = p
  return JSON.stringify(correlationData === undefined ? rest : { ...rest, correlationData: correlationData.toString('base64') })
}

export function encodeOwner(o: SessionOwner): string {
  return JSON.stringify({ username: o.username, account: o.account, admin: o.admin, serves: o.serves })
}

export function encodeOptions(o: SubscriptionOptions): string {
  return JSON.stringify({
    qos: o.qos,
    noLocal: o.noLocal,
    retainAsPublished: o.retainAsPublished,
    retainHandling: o.retainHandling,
    subscriptionId: o.subscriptionId,
  })
}

const STATES: readonly DeliveryState[] = ['queued', 'await-ack', 'await-comp']

/** A delivery's state as stored: its index in STATES. */
export function encodeState(s: DeliveryState): number {
  return s === 'queued' ? 0 : s === 'await-ack' ? 1 : 2
}

export function encodeSubIds(ids: readonly number[] | undefined): string | null {
  return ids === undefined ? null : JSON.stringify(ids)
}

/** Decoders for one database file; what fails names the file, the table and the key. */
export class RowDecoder {
  readonly #file: string

  constructor(file: string) {
    this.#file = file
  }

  message(r: MessageRow): Message {
    return this.#message(r, `messages.id ${r.id}`)
  }

  /** The message a delivery holds inline (its m_* columns). */
  inlineMessage(r: InlineRow, where: string): Message {
    if (r.m_qos === null || r.m_retain === null || r.m_origin === null || r.m_topic === null || r.m_payload === null) {
      throw this.#bad(where, 'inline message')
    }
    const row = { topic: r.m_topic, payload: r.m_payload, qos: r.m_qos, retain: r.m_retain, properties: r.m_properties }
    return this.#message({ ...row, expires_at: r.m_expires_at, origin: r.m_origin }, where)
  }

  #message(r: Omit<MessageRow, 'id'>, where: string): Message {
    return createMessage({
      topic: r.topic,
      payload: r.payload,
      qos: this.qos(r.qos, where),
      retain: r.retain !== 0,
      properties: r.properties === null ? undefined : this.#properties(r.properties, where),
      expiresAt: r.expires_at ?? undefined,
      origin: r.origin,
    })
  }

  owner(text: string, where: string): SessionOwner {
    const o = this.#object(text, where)
    return {
      username: this.#optString(o.username, where),
      account: this.#optString(o.account, where),
      admin: o.admin === true,
      serves: Array.isArray(o.serves) && o.serves.every((a) => typeof a === 'string') ? (o.serves as string[]) : undefined,
    }
  }

  options(text: string, where: string): SubscriptionOptions {
    const o = this.#object(text, where)
    const rh = o.retainHandling
    return {
      qos: this.qos(o.qos, where),
      noLocal: o.noLocal === true,
      retainAsPublished: o.retainAsPublished === true,
      retainHandling: rh === 1 || rh === 2 ? rh : 0,
      subscriptionId: typeof o.subscriptionId === 'number' ? o.subscriptionId : undefined,
    }
  }

  subIds(text: string | null, where: string): readonly number[] | undefined {
    if (text === null) return undefined
    const v = this.#json(text, where)
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw this.#bad(where, 'subscription ids')
    return v
  }

  state(n: number, where: string): DeliveryState {
    const s = STATES[n]
    if (s !== undefined) return s
    throw this.#bad(where, `delivery state ${String(n)}`)
  }

  qos(q: unknown, where: string): QoS {
    if (q === 0 || q === 1 || q === 2) return q
    throw this.#bad(where, `qos ${String(q)}`)
  }

  missing(where: string, id: number): DbError {
    return new DbError('corrupt', this.#file, `${where}: refers to message ${id}, which is missing`)
  }

  #properties(text: string, where: string): ForwardedProperties {
    const o = this.#object(text, where)
    const p: ForwardedProperties = {}
    if (typeof o.payloadFormatIndicator === 'boolean') p.payloadFormatIndicator = o.payloadFormatIndicator
    if (typeof o.contentType === 'string') p.contentType = o.contentType
    if (typeof o.responseTopic === 'string') p.responseTopic = o.responseTopic
    if (typeof o.correlationData === 'string') p.correlationData = Buffer.from(o.correlationData, 'base64')
    const up = o.userProperties
    if (Array.isArray(up)) {
      const list: (readonly [string, string])[] = []
      for (const pair of up as unknown[]) {
        if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') throw this.#bad(where, 'a user property')
        list.push([pair[0], pair[1]])
      }
      p.userProperties = list
    } else if (typeof up === 'object' && up !== null) {
      // Rows written before user properties were kept in order: {name: value | values}.
      for (const [k, v] of Object.entries(up)) {
        if (typeof v !== 'string' && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) throw this.#bad(where, `user property "${k}"`)
      }
      p.userProperties = userPropertyList(up as Record<string, string | string[]>)
    }
    return p
  }

  #optString(v: unknown, where: string): string | undefined {
    if (v === undefined || v === null) return undefined
    if (typeof v === 'string') return v
    throw this.#bad(where, 'a string field')
  }

  #object(text: string, where: string): Record<string, unknown> {
    const v = this.#json(text, where)
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.#bad(where, 'a JSON object')
    return v as Record<string, unknown>
  }

  #json(text: string, where: string): unknown {
    try {
      return JSON.parse(text)
    } catch {
      throw this.#bad(where, 'JSON')
    }
  }

  #bad(where: string, what: string): DbError {
    return new DbError('corrupt', this.#file, `${where}: cannot decode ${what}`)
  }
}
