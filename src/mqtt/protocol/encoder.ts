import type { Packet, ProtocolVersion } from './packets.js'
import { encodeProperties, lengthPrefixed, varintSize, writeVarint } from './properties.js'

/**
 * Encoders for the packets a server sends. Written here rather than taken from mqtt-packet,
 * whose encoder builds a 65,536-entry number cache (about 8 MB of heap) when loaded.
 */
export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  const v5 = version === 5
  switch (packet.cmd) {
    case 'connack': {
      const flags = packet.sessionPresent ? 1 : 0
      if (!v5) return Buffer.from([0x20, 2, flags, packet.returnCode ?? 0])
      return frame(0x20, [Buffer.from([flags, packet.reasonCode ?? 0]), encodeProperties(packet.properties)])
    }
    case 'publish': {
      const qos = packet.qos
      const head = 0x30 | (packet.dup ? 8 : 0) | (qos << 1) | (packet.retain ? 1 : 0)
      const parts = [lengthPrefixed(packet.topic)]
      if (qos > 0) parts.push(u16(packet.messageId ?? 0))
      if (v5) parts.push(encodeProperties(packet.properties))
      parts.push(typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload)
      return frame(head, parts)
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp': {
      const head = packet.cmd === 'puback' ? 0x40 : packet.cmd === 'pubrec' ? 0x50 : packet.cmd === 'pubrel' ? 0x62 : 0x70
      const id = u16(packet.messageId ?? 0)
      const code = packet.reasonCode ?? 0
      const props = packet.properties
      // The reason code and properties may be omitted when the code is 0 and there are none [MQTT-3.4.2.1].
      if (!v5 || (code === 0 && props === undefined)) return frame(head, [id])
      return frame(head, [id, Buffer.from([code]), encodeProperties(props)])
    }
    case 'suback': {
      const codes = Buffer.from(packet.granted.map((g) => (typeof g === 'number' ? g : 0x80)))
      const parts = [u16(packet.messageId ?? 0)]
      if (v5) parts.push(encodeProperties(packet.properties))
      parts.push(codes)
      return frame(0x90, parts)
    }
    case 'unsuback': {
      const parts = [u16(packet.messageId ?? 0)]
      if (v5) parts.push(encodeProperties(packet.properties), Buffer.from(packet.granted))
      return frame(0xb0, parts)
    }
    case 'pingresp':
      return Buffer.from([0xd0, 0])
    case 'disconnect':
      if (!v5) return Buffer.from([0xe0, 0])
      return frame(0xe0, [Buffer.from([packet.reasonCode ?? 0]), encodeProperties(packet.properties)])
    default:
      throw new Error(`a server does not send ${packet.cmd.toUpperCase()}`)
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2)
  b.writeUInt16BE(n, 0)
  return b
}

function frame(head: number, parts: Buffer[]): Buffer {
  let length = 0
  for (const p of parts) length += p.length
  const out = Buffer.allocUnsafe(1 + varintSize(length) + length)
  out[0] = head
  let pos = writeVarint(out, 1, length)
  for (const p of parts) pos += p.copy(out, pos)
  return out
}

export interface PublishFrame {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  dup: boolean
  packetId: number
}

/**
 * PUBLISH without v5 properties in one allocation: it is the packet perch sends most.
 */
export function encodePublish(frame: PublishFrame, version: ProtocolVersion): Buffer {
  const topicLength = Buffer.byteLength(frame.topic)
  const remaining = 2 + topicLength + (frame.qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + frame.payload.length
  const buf = Buffer.allocUnsafe(1 + varintSize(remaining) + remaining)
  buf[0] = 0x30 | (frame.dup ? 8 : 0) | (frame.qos << 1) | (frame.retain ? 1 : 0)
  let pos = writeVarint(buf, 1, remaining)
  buf.writeUInt16BE(topicLength, pos)
  pos += 2
  pos += buf.write(frame.topic, pos, 'utf8')
  if (frame.qos > 0) {
    buf.writeUInt16BE(frame.packetId, pos)
    pos += 2
  }
  if (version === 5) buf[pos++] = 0
  frame.payload.copy(buf, pos)
  return buf
}

/**
 * A PUBLISH template serialized once is shared by every subscriber; QoS 1/2 copies only
 * need their own packet id and DUP flag.
 */
export function withPacketId(template: Buffer, packetId: number, dup: boolean): Buffer {
  const buf = Buffer.from(template)
  if (dup) buf[0] = (buf[0] ?? 0) | 8
  let pos = 1
  while (((buf[pos] ?? 0) & 0x80) !== 0) pos++
  pos++
  pos += 2 + buf.readUInt16BE(pos)
  buf.writeUInt16BE(packetId, pos)
  return buf
}
