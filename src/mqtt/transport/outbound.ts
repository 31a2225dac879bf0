import { encodePacket, encodePublish, withPacketId } from '../protocol/encoder.js'
import type { ProtocolVersion, PublishPacket } from '../protocol/packets.js'
import { cachedEncoding, cacheEncoding, type Delivery } from '../session/message.js'

/**
 * Serializes a delivery for one connection. Deliveries without per-subscriber parts share one
 * template cached on the message, so a message fanned out to N subscribers is encoded once.
 */
export class PublishEncoder {
  readonly #version: ProtocolVersion
  readonly #aliases = new Map<string, number>()
  #aliasMaximum = 0

  constructor(version: ProtocolVersion) {
    this.#version = version
  }

  /** The client's Topic Alias Maximum: perch assigns aliases up to it [MQTT-3.3.2-9]. */
  setAliasMaximum(max: number): void {
    this.#aliasMaximum = max
  }

  /** `maxSize`: the client's Maximum Packet Size; a packet above it is discarded by the caller. */
  encode(d: Delivery, packetId: number, dup: boolean, clock: { now(): number }, maxSize = Number.POSITIVE_INFINITY): Buffer {
    const m = d.message
    const v5 = this.#version === 5
    const perSubscriber = v5 && (m.expiresAt !== undefined || d.subscriptionIds !== undefined || this.#aliasMaximum > 0)
    if (!perSubscriber) {
      const key = this.#version * 8 + d.qos * 2 + (d.retain ? 1 : 0)
      let template = cachedEncoding(m, key)
      if (template === undefined) {
        template =
          v5 && m.properties !== undefined
            ? encodePacket(this.#packet(d, 1, false, clock, undefined), this.#version)
            : encodePublish({ topic: m.topic, payload: m.payload, qos: d.qos, retain: d.retain, dup: false, packetId: 0 }, this.#version)
        cacheEncoding(m, key, template)
      }
      return d.qos === 0 ? template : withPacketId(template, packetId, dup)
    }
    const alias = this.#alias(m.topic)
    const buf = encodePacket(this.#packet(d, packetId, dup, clock, alias), this.#version)
    // A new alias counts only once its packet is sent: one discarded as too large [MQTT-3.1.2-25]
    // would leave the client an alias it never learned.
    if (alias !== undefined && !alias.known && buf.length <= maxSize) this.#aliases.set(m.topic, alias.alias)
    return buf
  }

  #alias(topic: string): { alias: number; known: boolean } | undefined {
    if (this.#aliasMaximum === 0) return undefined
    const known = this.#aliases.get(topic)
    if (known !== undefined) return { alias: known, known: true }
    if (this.#aliases.size >= this.#aliasMaximum) return undefined
    return { alias: this.#aliases.size + 1, known: false }
  }

  #packet(d: Delivery, packetId: number, dup: boolean, clock: { now(): number }, alias: { alias: number; known: boolean } | undefined): PublishPacket {
    const m = d.message
    const properties: NonNullable<PublishPacket['properties']> = { ...m.properties }
    if (m.expiresAt !== undefined) {
      // The forwarded expiry is what remains of it [MQTT-3.3.2-6].
      properties.messageExpiryInterval = Math.max(1, Math.ceil((m.expiresAt - clock.now()) / 1000))
    }
    if (d.subscriptionIds !== undefined) properties.subscriptionIdentifier = d.subscriptionIds.length === 1 ? (d.subscriptionIds[0] ?? 0) : [...d.subscriptionIds]
    if (alias !== undefined) properties.topicAlias = alias.alias
    const packet: PublishPacket = {
      cmd: 'publish',
      topic: alias?.known === true ? '' : m.topic,
      payload: m.payload,
      qos: d.qos,
      retain: d.retain,
      dup,
      properties,
    }
    if (d.qos > 0) packet.messageId = packetId
    return packet
  }
}
