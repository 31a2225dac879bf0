import { isUtf8 } from 'node:buffer'
import type { ForwardedProperties, PubackPacket, PublishPacket, PubrecPacket, QoS } from '../../protocol/packets.js'
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

  if (p.qos === 2 && session.hasIncomingQos2(id)) {
    // A resent QoS 2 PUBLISH is acknowledged again but not delivered twice [MQTT-4.3.3-10].
    broker.afterCommit((error) => (error === undefined ? ctx.send({ cmd: 'pubrec', messageId: id }) : refuseStorage(ctx, id, 'pubrec', error)))
    return
  }
  if (p.qos === 2 && session.incomingQos2Count >= limits.receiveMaximum) {
    return ctx.fail(RC.RECEIVE_MAXIMUM_EXCEEDED, `[MQTT-3.3.4-7] more than ${limits.receiveMaximum} unacknowledged QoS 2 messages`)
  }

  let reasonCode: number = RC.SUCCESS
  let message: Message | undefined
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload
  if (!broker.hooks.authorizePublish(ctx.client, topic)) {
    broker.denied(ctx.client, 'publish', topic)
    reasonCode = RC.NOT_AUTHORIZED
  } else if (v5 && p.properties?.payloadFormatIndicator === true && !isUtf8(payload)) {
    reasonCode = RC.PAYLOAD_FORMAT_INVALID
  } else {
    message = buildMessage({ topic, payload, qos: p.qos, retain: p.retain, properties: p.properties }, ctx.client.clientId, clock)
    const matched = broker.publish(message)
    if (matched === 0 && v5) reasonCode = RC.NO_MATCHING_SUBSCRIBERS
  }
  if (p.qos === 0) return
  const cmd = p.qos === 1 ? 'puback' : 'pubrec'
  if (p.qos === 2 && reasonCode < 0x80) session.holdIncomingQos2(id)
  const ack: PubackPacket | PubrecPacket = v5 && reasonCode !== RC.SUCCESS ? { cmd, messageId: id, reasonCode } : { cmd, messageId: id }
  // The durability promise: the ack leaves once the message is committed for every persistent
  // session that must receive it and for the retained store.
  broker.afterCommit((error) => {
    if (error === undefined) return ctx.send(ack)
    // Not stored means not delivered to persistent sessions either: the publisher is told to retry.
    if (message !== undefined) broker.withdraw(message)
    refuseStorage(ctx, id, cmd, error)
  })
}

/**
 * The message could not be made durable (a full disk): a v5 publisher is told so with 0x97
 * and may retry; a 3.1.1 publisher has no such code, so its connection is closed and it will
 * resend the unacknowledged message after reconnecting.
 */
function refuseStorage(ctx: PacketContext, id: number, cmd: 'puback' | 'pubrec', error: Error): void {
  ctx.services.logger.error('publish.not-stored', { clientId: ctx.client.clientId, error: error.message })
  // A retry with the same id must be taken as a new message, not as a duplicate.
  if (cmd === 'pubrec') ctx.session.releaseIncomingQos2(id)
  if (ctx.version === 5) ctx.send({ cmd, messageId: id, reasonCode: RC.QUOTA_EXCEEDED, properties: { reasonString: `not stored: ${error.message}` } })
  else ctx.fail(RC.QUOTA_EXCEEDED, `message not stored: ${error.message}`)
}
