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
  encoded: Map<number, Buffer> | undefined
}

export function createMessage(fields: Omit<Message, 'encoded'>): Message {
  return { ...fields, encoded: undefined }
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
