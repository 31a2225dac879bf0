/**
 * MQTT bytes by hand, for what mqtt-packet refuses to generate (malformed packets, empty 3.x
 * ids, bad protocol names, reserved bits, interleaved properties) and for reading what the
 * broker sent at the byte level.
 */

/** Protocol level: 3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0. */
export type Version = 3 | 4 | 5

/** Control packet types, the high nibble of the fixed header. */
export const PACKET = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const

/** A variable byte integer (remaining length, property length). */
export function varint(n: number): number[] {
  const out: number[] = []
  let v = n
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    out.push(byte)
  } while (v > 0)
  return out
}

/**
 * Reads a variable byte integer at `pos`: its value and the position after it. Undefined when
 * the bytes end first or it runs past the four bytes MQTT allows.
 */
export function readVarint(buf: Buffer, pos: number): { value: number; next: number } | undefined {
  let value = 0
  let mul = 1
  for (let i = pos; i < pos + 4; i++) {
    const byte = buf[i]
    if (byte === undefined) return undefined
    value += (byte & 0x7f) * mul
    mul *= 128
    if ((byte & 0x80) === 0) return { value, next: i + 1 }
  }
  return undefined
}

/** A packet from a fixed-header byte and a body: the remaining length is computed. */
export function frame(first: number, body: Buffer | number[]): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body)
  return Buffer.concat([Buffer.from([first, ...varint(b.length)]), b])
}

/** A length-prefixed string from raw bytes (so invalid UTF-8 can be sent). */
export function str(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

/**
 * A PUBLISH built by hand. v5 gets a property block: `props` (already encoded), or empty.
 * `first` replaces the fixed-header byte, for bad flags.
 */
export function rawPublish(
  topic: Buffer | string,
  payload: Buffer | string,
  opts: { version?: Version; qos?: number; id?: number; first?: number; props?: Buffer } = {},
): Buffer {
  const qos = opts.qos ?? 0
  const parts: Buffer[] = [str(topic)]
  if (qos > 0) parts.push(Buffer.from([(opts.id ?? 1) >> 8, (opts.id ?? 1) & 0xff]))
  if (opts.version === 5) {
    const props = opts.props ?? Buffer.alloc(0)
    parts.push(Buffer.from(varint(props.length)), props)
  }
  parts.push(typeof payload === 'string' ? Buffer.from(payload) : payload)
  return frame(opts.first ?? 0x30 | (qos << 1), Buffer.concat(parts))
}

/**
 * A CONNECT written byte by byte, for what mqtt-packet refuses to generate (empty 3.x ids,
 * bad protocol names or levels, reserved flag bits). v5 (level 5) gets a property block.
 */
export function handConnect(o: {
  clientId: string | Buffer
  protocolName?: string | Buffer
  level?: number
  flags?: number
  keepalive?: number
  props?: number[]
  /** Bytes after the client id: will properties/topic/payload, username, password. */
  tail?: Buffer
}): Buffer {
  const level = o.level ?? 4
  const ka = o.keepalive ?? 60
  const props = level === 5 ? [...varint((o.props ?? []).length), ...(o.props ?? [])] : []
  return frame(
    0x10,
    Buffer.concat([str(o.protocolName ?? (level === 3 ? 'MQIsdp' : 'MQTT')), Buffer.from([level, o.flags ?? 0x02, ka >> 8, ka & 0xff, ...props]), str(o.clientId), o.tail ?? Buffer.alloc(0)]),
  )
}

/** One MQTT packet as it stood on the wire. */
export interface Frame {
  /** Packet type: one of PACKET. */
  type: number
  /** The low nibble of the fixed header (PUBLISH: DUP, QoS, RETAIN). */
  flags: number
  body: Buffer
}

/** Splits bytes into complete MQTT frames; a trailing partial frame is left out. */
export function frames(buf: Buffer): Frame[] {
  const out: Frame[] = []
  let pos = 0
  while (pos < buf.length) {
    const len = readVarint(buf, pos + 1)
    if (len === undefined || len.next + len.value > buf.length) break
    const first = buf[pos] ?? 0
    out.push({ type: first >> 4, flags: first & 0x0f, body: buf.subarray(len.next, len.next + len.value) })
    pos = len.next + len.value
  }
  return out
}
