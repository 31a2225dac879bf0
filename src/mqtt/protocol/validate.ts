import { ProtocolError } from '../../core/errors.js'
import type { ConnectPacket, PublishPacket, SubscribePacket } from './packets.js'
import { RC } from './reason-codes.js'

/** Packet-level checks mqtt-packet leaves to the receiver; topic rules live in mqtt/topic. */

export function checkConnect(p: ConnectPacket): ProtocolError | null {
  const version = p.protocolVersion ?? 4
  if (version === 3 && p.clientId.length > 23) {
    // MQTT 3.1 limits client identifiers to 23 characters.
    return new ProtocolError(RC.CLIENT_IDENTIFIER_NOT_VALID, 'MQTT 3.1 client id longer than 23 characters')
  }
  if (p.clientId.length === 0 && version !== 5 && p.clean === false) {
    return new ProtocolError(RC.CLIENT_IDENTIFIER_NOT_VALID, '[MQTT-3.1.3-8] empty client id needs a clean session')
  }
  if (p.clientId.length === 0 && version === 3) {
    return new ProtocolError(RC.CLIENT_IDENTIFIER_NOT_VALID, 'MQTT 3.1 requires a client id')
  }
  if (p.clientId.includes('\u0000')) return new ProtocolError(RC.CLIENT_IDENTIFIER_NOT_VALID, '[MQTT-1.5.3-2] U+0000 in client id')
  const props = p.properties
  if (props?.receiveMaximum === 0) return new ProtocolError(RC.PROTOCOL_ERROR, 'Receive Maximum of 0 (MQTT 5.0 section 3.1.2.11.3)')
  if (props?.maximumPacketSize === 0) return new ProtocolError(RC.PROTOCOL_ERROR, 'Maximum Packet Size of 0 (MQTT 5.0 section 3.1.2.11.4)')
  if (props?.authenticationMethod !== undefined) {
    return new ProtocolError(RC.BAD_AUTHENTICATION_METHOD, 'extended authentication is not supported')
  }
  return null
}

export function checkPublish(p: PublishPacket, version: number): ProtocolError | null {
  if (p.qos === 0 && p.dup) return new ProtocolError(RC.MALFORMED_PACKET, '[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH')
  if (p.qos > 0 && (p.messageId === undefined || p.messageId === 0)) {
    return new ProtocolError(RC.MALFORMED_PACKET, '[MQTT-2.3.1-1] QoS > 0 PUBLISH without a packet identifier')
  }
  if (version === 5 && p.properties?.subscriptionIdentifier !== undefined) {
    return new ProtocolError(RC.PROTOCOL_ERROR, '[MQTT-3.3.4-6] PUBLISH from a client carries a Subscription Identifier')
  }
  return null
}

export function checkSubscribe(p: SubscribePacket, version: number): ProtocolError | null {
  if (p.subscriptions.length === 0) {
    return new ProtocolError(RC.PROTOCOL_ERROR, '[MQTT-3.8.3-3] SUBSCRIBE without topic filters')
  }
  if (version === 5 && p.properties?.subscriptionIdentifier === 0) {
    return new ProtocolError(RC.PROTOCOL_ERROR, '[MQTT-3.8.2.1.2] Subscription Identifier of 0')
  }
  return null
}
