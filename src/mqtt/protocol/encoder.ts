import mqttPacket from 'mqtt-packet'
import type { Packet, ProtocolVersion } from './packets.js'

export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version })
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
 * PUBLISH without v5 properties, written by hand: it is the packet perch sends most, and
 * mqtt-packet's generic encoder allocates per field.
 */
export function encodePublish(frame: PublishFrame, version: ProtocolVersion): Buffer {
  const topicLength = Buffer.byteLength(frame.topic)
  const remaining = 2 + topicLength + (frame.qos > 0 ? 2 : 0) + (version === 5 ? 1 : 0) + frame.payload.length
  const header = varintSize(remaining)
  const buf = Buffer.allocUnsafe(1 + header + remaining)
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

function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  let v = n
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    buf[pos++] = byte
  } while (v > 0)
  return pos
}
