import type { ForwardedProperties } from '../protocol/packets.js'

export type QoS = 0 | 1 | 2

/**
 * One published message, shared (never copied) by every queue and in-flight slot that
 * holds it; its serialized forms are cached on it so each variant is encoded once.
 */
export interface Message {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: QoS
  readonly retain: boolean
  readonly properties: ForwardedProperties | undefined
  /** Absolute ms after which the message must not be delivered [MQTT-3.3.2-5]. */
  readonly expiresAt: number | undefined
  /** Client id of the publisher, for no-local [MQTT-3.8.3-3]. */
  readonly origin: string
  /** The first serialized variant and its key; most messages only ever need one. */
  encodedKey: number
  encodedBytes: Buffer | undefined
  /** Further variants, for subscribers with other protocol versions, QoS or retain flags. */
  encodedMore: Map<number, Buffer> | undefined
}

export type MessageFields = Omit<Message, 'encodedKey' | 'encodedBytes' | 'encodedMore'>

/**
 * The payload is copied when the message may outlive the read buffer it was sliced from
 * (queued or retained), so a small message never pins a whole 64 KB socket read in memory.
 */
export function createMessage(f: MessageFields): Message {
  const p = f.payload
  const payload = (f.qos > 0 || f.retain) && p.buffer.byteLength > 2 * p.length + 64 ? Buffer.from(p) : p
  return {
    topic: f.topic,
    payload,
    qos: f.qos,
    retain: f.retain,
    properties: f.properties,
    expiresAt: f.expiresAt,
    origin: f.origin,
    encodedKey: -1,
    encodedBytes: undefined,
    encodedMore: undefined,
  }
}

export function cachedEncoding(m: Message, key: number): Buffer | undefined {
  return m.encodedKey === key ? m.encodedBytes : m.encodedMore?.get(key)
}

export function cacheEncoding(m: Message, key: number, bytes: Buffer): void {
  if (m.encodedBytes === undefined) {
    m.encodedKey = key
    m.encodedBytes = bytes
    return
  }
  m.encodedMore ??= new Map()
  m.encodedMore.set(key, bytes)
}

/** How one message goes to one session: QoS and retain flag decided by its subscription. */
export interface Delivery {
  readonly message: Message
  readonly qos: QoS
  readonly retain: boolean
  readonly subscriptionIds: readonly number[] | undefined
}

export function messageBytes(m: Message): number {
  return m.payload.length + m.topic.length + 32
}
