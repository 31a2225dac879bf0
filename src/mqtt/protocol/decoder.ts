import { isUtf8 } from 'node:buffer'
import type { IConnectPacket, IPublishPacket, Packet as MqttPacket } from 'mqtt-packet'
import Parser from 'mqtt-packet/parser.js'
import { ProtocolError } from '../../core/errors.js'
import { type ConnectPacket, type Packet, type PublishPacket, type UserPropertyList, withUserPropertyList } from './packets.js'
import { RC } from './reason-codes.js'

export interface DecoderEvents {
  onPacket(packet: Packet): void
  onError(error: ProtocolError): void
}

const TYPE_PUBLISH = 3
const TYPE_PUBACK = 4
const TYPE_PUBREL = 6
const TYPE_PUBCOMP = 7
const TYPE_SUBSCRIBE = 8
const TYPE_UNSUBSCRIBE = 10
const TYPE_PINGREQ = 12
const ACK_NAMES = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const

/**
 * Frames the byte stream before mqtt-packet sees it, so an oversized packet is refused
 * from its fixed header without being buffered [MQTT-3.2.2-15], and so topic bytes can be
 * checked for well-formed UTF-8, which mqtt-packet silently replaces [MQTT-1.5.3-1].
 * One decoder per connection: mqtt-packet's parser adopts the CONNECT's protocol version.
 */
export class PacketDecoder {
  readonly #events: DecoderEvents
  #maxPacketSize: number
  #pending: Buffer[] = []
  #pendingBytes = 0
  #need = 0
  #failed = false
  #version = 4

  constructor(maxPacketSize: number, events: DecoderEvents) {
    this.#maxPacketSize = maxPacketSize
    this.#events = events
  }

  /** Stops decoding: nothing more is emitted after a close or an error. */
  stop(): void {
    this.#failed = true
    this.#pending = []
  }

  push(chunk: Buffer): void {
    if (this.#failed) return
    let buf = chunk
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk)
      this.#pendingBytes += chunk.length
      if (this.#pendingBytes < this.#need) return
      buf = Buffer.concat(this.#pending, this.#pendingBytes)
      this.#pending = []
      this.#pendingBytes = 0
    }
    let offset = 0
    while (offset < buf.length && !this.#failed) {
      const size = this.#frameSize(buf, offset)
      if (size < 0) return
      if (size === 0 || offset + size > buf.length) break
      this.#frame(buf, offset, size)
      offset += size
    }
    if (offset < buf.length && !this.#failed) {
      const rest = buf.subarray(offset)
      this.#pending = [rest]
      this.#pendingBytes = rest.length
      const known = this.#frameSize(rest, 0)
      this.#need = known > 0 ? known : rest.length + 1
    }
  }

  /**
   * PUBLISH and the acknowledgements are most of the traffic: they are decoded here directly;
   * everything else (and v5 packets with properties) goes through mqtt-packet.
   */
  #frame(buf: Buffer, offset: number, size: number): void {
    const first = buf[offset] ?? 0
    const type = first >> 4
    const flags = first & 0x0f
    let pos = offset + 1
    while (((buf[pos] ?? 0) & 0x80) !== 0) pos++
    pos++
    const end = offset + size
    const remaining = end - pos
    if (type === TYPE_PUBLISH) {
      if (this.#publish(buf, first, pos, end)) return
    } else if (type >= TYPE_PUBACK && type <= TYPE_PUBCOMP && remaining === 2) {
      if (flags !== (type === TYPE_PUBREL ? 2 : 0)) return this.#fail(new ProtocolError(RC.MALFORMED_PACKET, `[MQTT-2.2.2-2] invalid flags on ${ACK_NAMES[type - TYPE_PUBACK]}`))
      const cmd = ACK_NAMES[type - TYPE_PUBACK] ?? 'puback'
      this.#events.onPacket({ cmd, messageId: buf.readUInt16BE(pos), length: 2 })
      return
    } else if (type === TYPE_PINGREQ && flags === 0 && remaining === 0) {
      this.#events.onPacket({ cmd: 'pingreq' })
      return
    } else if ((type === TYPE_SUBSCRIBE || type === TYPE_UNSUBSCRIBE) && !this.#checkFilters(buf, type, pos, end)) {
      return
    }
    this.#parse(buf.subarray(offset, end))
  }

  /**
   * Rare packets go through a parser made for the one frame: an idle connection then holds
   * no parser state at all, and a whole frame leaves no partial state behind.
   */
  #parse(frame: Buffer): void {
    const parser = Parser.parser({ protocolVersion: this.#version })
    parser.on('packet', (p: MqttPacket) => {
      if (this.#failed) return
      if (p.cmd === 'connect' && p.protocolVersion !== undefined) this.#version = p.protocolVersion
      this.#events.onPacket(p.cmd === 'publish' ? orderedPublish(p, frame) : p.cmd === 'connect' ? orderedConnect(p, frame) : p)
    })
    parser.on('error', (e: unknown) => this.#fail(mapParserError(e)))
    parser.parse(frame)
  }

  /** Decodes a PUBLISH; false hands it to mqtt-packet (v5 with properties). */
  #publish(buf: Buffer, first: number, start: number, end: number): boolean {
    const qos = (first >> 1) & 3
    if (qos === 3) {
      this.#fail(new ProtocolError(RC.MALFORMED_PACKET, '[MQTT-3.3.1-4] PUBLISH with QoS 3'))
      return true
    }
    let pos = start
    if (pos + 2 > end) return this.#malformed('PUBLISH too short for its topic')
    const topicLength = buf.readUInt16BE(pos)
    pos += 2
    if (pos + topicLength > end) return this.#malformed('PUBLISH topic runs past the packet')
    const topicBytes = buf.subarray(pos, pos + topicLength)
    if (!isUtf8(topicBytes)) return this.#malformed('[MQTT-1.5.3-1] topic is not valid UTF-8')
    pos += topicLength
    let messageId: number | undefined
    if (qos > 0) {
      if (pos + 2 > end) return this.#malformed('PUBLISH too short for its packet identifier')
      messageId = buf.readUInt16BE(pos)
      pos += 2
    }
    if (this.#version === 5) {
      if (pos >= end) return this.#malformed('PUBLISH too short for its properties')
      if (buf[pos] !== 0) return false
      pos++
    }
    const packet: PublishPacket = {
      cmd: 'publish',
      retain: (first & 1) !== 0,
      qos: qos as 0 | 1 | 2,
      dup: (first & 8) !== 0,
      topic: topicBytes.toString('utf8'),
      payload: buf.subarray(pos, end),
      length: end - start,
    }
    if (messageId !== undefined) packet.messageId = messageId
    this.#events.onPacket(packet)
    return true
  }

  #malformed(message: string): true {
    this.#fail(new ProtocolError(RC.MALFORMED_PACKET, message))
    return true
  }

  /** Size of the frame at `offset`: 0 when its header is incomplete, -1 after an error. */
  #frameSize(buf: Buffer, offset: number): number {
    let remaining = 0
    let mul = 1
    for (let i = 1; i <= 4; i++) {
      const pos = offset + i
      if (pos >= buf.length) return 0
      const byte = buf[pos] ?? 0
      remaining += (byte & 0x7f) * mul
      if ((byte & 0x80) === 0) {
        const size = 1 + i + remaining
        if (size > this.#maxPacketSize) {
          this.#fail(new ProtocolError(RC.PACKET_TOO_LARGE, `packet of ${size} bytes exceeds the maximum of ${this.#maxPacketSize}`))
          return -1
        }
        return size
      }
      mul *= 128
    }
    this.#fail(new ProtocolError(RC.MALFORMED_PACKET, 'malformed remaining length'))
    return -1
  }

  #checkFilters(buf: Buffer, type: number, start: number, end: number): boolean {
    let pos = start + 2
    if (this.#version === 5) {
      const props = readVarint(buf, pos)
      if (props === undefined) return true
      pos = props.next + props.value
    }
    while (pos + 2 <= end) {
      if (!this.#checkString(buf, pos, end)) return false
      pos += 2 + buf.readUInt16BE(pos) + (type === TYPE_SUBSCRIBE ? 1 : 0)
    }
    return true
  }

  #checkString(buf: Buffer, pos: number, end: number): boolean {
    if (pos + 2 > end) return true
    const len = buf.readUInt16BE(pos)
    if (pos + 2 + len > end) return true
    if (isUtf8(buf.subarray(pos + 2, pos + 2 + len))) return true
    this.#fail(new ProtocolError(RC.MALFORMED_PACKET, 'topic is not valid UTF-8'))
    return false
  }

  #fail(error: ProtocolError): void {
    if (this.#failed) return
    this.#failed = true
    this.#pending = []
    this.#events.onError(error)
  }
}

/**
 * mqtt-packet gives User Properties as {name: value | values}, which loses their order when
 * names interleave (a, b, a); they are read again from the frame, in order [MQTT-3.3.2-18].
 */
function orderedPublish(p: IPublishPacket, frame: Buffer): PublishPacket {
  const { properties, ...rest } = p
  if (properties === undefined) return rest
  const listed = withUserPropertyList(properties)
  if (properties.userProperties === undefined) return { ...rest, properties: listed }
  let inOrder: UserPropertyList | undefined
  try {
    const start = afterFixedHeader(frame)
    inOrder = userPropertiesAt(frame, start + 2 + frame.readUInt16BE(start) + (p.qos > 0 ? 2 : 0))
  } catch {
    inOrder = undefined
  }
  return { ...rest, properties: inOrder === undefined ? listed : { ...listed, userProperties: inOrder } }
}

/** The same for a will's User Properties in a v5 CONNECT [MQTT-3.1.3-10]. */
function orderedConnect(p: IConnectPacket, frame: Buffer): ConnectPacket {
  const { will, ...rest } = p
  if (will === undefined) return rest
  const { properties, ...willRest } = will
  if (properties === undefined) return { ...rest, will: willRest }
  const listed = withUserPropertyList(properties)
  const inOrder = properties.userProperties === undefined ? undefined : willUserProperties(frame)
  return { ...rest, will: { ...willRest, properties: inOrder === undefined ? listed : { ...listed, userProperties: inOrder } } }
}

/** Skips a v5 CONNECT's variable header and client id to read its will properties. */
function willUserProperties(frame: Buffer): UserPropertyList | undefined {
  try {
    let pos = afterFixedHeader(frame)
    pos += 2 + frame.readUInt16BE(pos) + 1 + 1 + 2 // protocol name, level, flags, keep alive
    const props = readVarint(frame, pos)
    if (props === undefined) return undefined
    pos = props.next + props.value
    pos += 2 + frame.readUInt16BE(pos) // client id
    return userPropertiesAt(frame, pos)
  } catch {
    return undefined
  }
}

function afterFixedHeader(frame: Buffer): number {
  let pos = 1
  while (((frame[pos] ?? 0) & 0x80) !== 0) pos++
  return pos + 1
}

/** Property sizes by identifier (MQTT 5 section 2.2.2.2): fixed bytes, 's' for a length-prefixed string or binary, 'v' for a varint. */
const PROPERTY_SIZE = new Map<number, number | 's' | 'v'>([
  [0x01, 1], [0x02, 4], [0x03, 's'], [0x08, 's'], [0x09, 's'], [0x0b, 'v'], [0x11, 4], [0x12, 's'], [0x13, 2],
  [0x15, 's'], [0x16, 's'], [0x17, 1], [0x18, 4], [0x19, 1], [0x1a, 's'], [0x1c, 's'], [0x1f, 's'], [0x21, 2],
  [0x22, 2], [0x23, 2], [0x24, 1], [0x25, 1], [0x27, 4], [0x28, 1], [0x29, 1], [0x2a, 1],
])
const USER_PROPERTY = 0x26

/** The User Properties of the property section at `at` in a frame mqtt-packet accepted, in wire order; undefined if it cannot be read. */
function userPropertiesAt(frame: Buffer, at: number): UserPropertyList | undefined {
  const length = readVarint(frame, at)
  if (length === undefined) return undefined
  let pos = length.next
  const end = Math.min(frame.length, pos + length.value)
  const text = (): string | undefined => {
    if (pos + 2 > end) return undefined
    const n = frame.readUInt16BE(pos)
    if (pos + 2 + n > end) return undefined
    const s = frame.toString('utf8', pos + 2, pos + 2 + n)
    pos += 2 + n
    return s
  }
  const out: (readonly [string, string])[] = []
  while (pos < end) {
    const id = frame[pos++] ?? 0
    if (id === USER_PROPERTY) {
      const k = text()
      const v = text()
      if (k === undefined || v === undefined) return undefined
      out.push([k, v])
      continue
    }
    const size = PROPERTY_SIZE.get(id)
    if (size === undefined) return undefined
    if (typeof size === 'number') pos += size
    else if (size === 'v') {
      const v = readVarint(frame, pos)
      if (v === undefined) return undefined
      pos = v.next
    } else if (text() === undefined) return undefined
  }
  return out
}

function readVarint(buf: Buffer, pos: number): { value: number; next: number } | undefined {
  let value = 0
  let mul = 1
  for (let i = 0; i < 4; i++) {
    const byte = buf[pos + i]
    if (byte === undefined) return undefined
    value += (byte & 0x7f) * mul
    if ((byte & 0x80) === 0) return { value, next: pos + i + 1 }
    mul *= 128
  }
  return undefined
}

function mapParserError(e: unknown): ProtocolError {
  const message = e instanceof Error ? e.message : String(e)
  if (/protocol version|protocolId/i.test(message)) return new ProtocolError(RC.UNSUPPORTED_PROTOCOL_VERSION, message)
  return new ProtocolError(RC.MALFORMED_PACKET, message)
}
