import { isUtf8 } from 'node:buffer'
import type { ForwardedProperties, PublishPacket, QoS } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import { checkPublish } from '../../protocol/validate.js'
import { createMessage, type Message } from '../../session/message.js'
import { validTopicName } from '../../topic/validate.js'
import type { PacketContext } from '../context.js'

interface PublishFields {
  topic: string
  payload: Buffer | string
  qos: QoS
  retain: boolean
  properties: (ForwardedProperties & { messageExpiryInterval?: number }) | undefined
}

/** Builds the shared Message, keeping only the properties forwarded to subscribers [MQTT-3.3.2-4..20]. */
export function buildMessage(f: PublishFields, origin: string, clock: { now(): number }): Message {
  const p = f.properties
  let properties: ForwardedProperties | undefined
  if (p !== undefined) {
    properties = {}
    if (p.payloadFormatIndicator !== undefined) properties.payloadFormatIndicator = p.payloadFormatIndicator
    if (p.contentType !== undefined) properties.contentType = p.contentType
    if (p.responseTopic !== undefined) properties.responseTopic = p.responseTopic
    if (p.correlationData !== undefined) properties.correlationData = p.correlationData
    if (p.userProperties !== undefined) properties.userProperties = p.userProperties
    if (Object.keys(properties).length === 0) properties = undefined
  }
  // An interval of 0 means no expiry, as in Mosquitto (a 0 s lifetime would make retained and queued copies vanish).
  const expiry = p?.messageExpiryInterval || undefined
  return createMessage({
    topic: f.topic,
    payload: typeof f.payload === 'string' ? Buffer.from(f.payload) : f.payload,
    qos: f.qos,
    retain: f.retain,
    properties,
    expiresAt: expiry === undefined ? undefined : clock.now() + expiry * 1000,
    origin,
  })
}

export function handlePublish(ctx: PacketContext, p: PublishPacket): void {
  const { broker, limits, clock } = ctx.services
  const v5 = ctx.version === 5
  const bad = checkPublish(p, ctx.version)
  if (bad !== null) return ctx.fail(bad.reasonCode, bad.message)
  const topic = v5 ? ctx.resolveAlias(p.topic, p.properties?.topicAlias) : p.topic
  if (topic === undefined) return
  // An empty topic is only valid as a reference to a topic alias (MQTT 5.0 section 3.3.2.1).
  if (topic.length === 0 && v5) return ctx.fail(RC.PROTOCOL_ERROR, 'empty topic name without a topic alias')
  // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-1] not empty.
  const invalid = validTopicName(topic, limits.maxTopicLength, limits.maxTopicLevels)
  if (invalid !== null) return ctx.fail(RC.TOPIC_NAME_INVALID, `invalid topic name: ${invalid}`)
  const id = p.messageId ?? 0
  const session = ctx.session

  if (p.qos === 2 && session.incomingQos2.has(id)) {
    // A resent QoS 2 PUBLISH is acknowledged again but not delivered twice [MQTT-4.3.3-10].
    ctx.send({ cmd: 'pubrec', messageId: id })
    return
  }
  if (p.qos === 2 && session.incomingQos2.size >= limits.receiveMaximum) {
    return ctx.fail(RC.RECEIVE_MAXIMUM_EXCEEDED, `[MQTT-3.3.4-7] more than ${limits.receiveMaximum} unacknowledged QoS 2 messages`)
  }

  let reasonCode: number = RC.SUCCESS
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload
  if (!broker.hooks.authorizePublish(ctx.client, topic)) {
    broker.stats.publishDenied++
    ctx.services.logger.debug('publish.denied', { clientId: ctx.client.clientId, topic })
    reasonCode = RC.NOT_AUTHORIZED
  } else if (v5 && p.properties?.payloadFormatIndicator === true && !isUtf8(payload)) {
    reasonCode = RC.PAYLOAD_FORMAT_INVALID
  } else {
    const message = buildMessage({ topic, payload, qos: p.qos, retain: p.retain, properties: p.properties }, ctx.client.clientId, clock)
    const matched = broker.publish(message)
    if (matched === 0 && v5) reasonCode = RC.NO_MATCHING_SUBSCRIBERS
  }
  if (p.qos === 0) return
  const ack = p.qos === 1 ? 'puback' : 'pubrec'
  if (p.qos === 2 && reasonCode < 0x80) session.incomingQos2.add(id)
  if (v5 && reasonCode !== RC.SUCCESS) ctx.send({ cmd: ack, messageId: id, reasonCode })
  else ctx.send({ cmd: ack, messageId: id })
}
