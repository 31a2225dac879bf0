/** MQTT 5 property identifiers and types (section 2.2.2.2) for the packets a server sends. */
type PropertyType = 'byte' | 'bool' | 'u16' | 'u32' | 'varint' | 'string' | 'binary' | 'pairs'

const PROPERTIES: Record<string, readonly [number, PropertyType]> = {
  payloadFormatIndicator: [0x01, 'bool'],
  messageExpiryInterval: [0x02, 'u32'],
  contentType: [0x03, 'string'],
  responseTopic: [0x08, 'string'],
  correlationData: [0x09, 'binary'],
  subscriptionIdentifier: [0x0b, 'varint'],
  sessionExpiryInterval: [0x11, 'u32'],
  assignedClientIdentifier: [0x12, 'string'],
  serverKeepAlive: [0x13, 'u16'],
  authenticationMethod: [0x15, 'string'],
  authenticationData: [0x16, 'binary'],
  responseInformation: [0x1a, 'string'],
  serverReference: [0x1c, 'string'],
  reasonString: [0x1f, 'string'],
  receiveMaximum: [0x21, 'u16'],
  topicAliasMaximum: [0x22, 'u16'],
  topicAlias: [0x23, 'u16'],
  maximumQoS: [0x24, 'byte'],
  retainAvailable: [0x25, 'bool'],
  userProperties: [0x26, 'pairs'],
  maximumPacketSize: [0x27, 'u32'],
  wildcardSubscriptionAvailable: [0x28, 'bool'],
  subscriptionIdentifiersAvailable: [0x29, 'bool'],
  sharedSubscriptionAvailable: [0x2a, 'bool'],
}

export function varintSize(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

export function writeVarint(buf: Buffer, pos: number, n: number): number {
  let v = n
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    buf[pos++] = byte
  } while (v > 0)
  return pos
}

/** Serializes a v5 property set, length prefix included. */
export function encodeProperties(props: Readonly<Record<string, unknown>> | undefined): Buffer {
  const parts: Buffer[] = []
  if (props !== undefined) {
    for (const [name, value] of Object.entries(props)) {
      const spec = PROPERTIES[name]
      if (spec === undefined || value === undefined) continue
      encodeProperty(parts, spec[0], spec[1], value)
    }
  }
  const body = Buffer.concat(parts)
  const out = Buffer.allocUnsafe(varintSize(body.length) + body.length)
  body.copy(out, writeVarint(out, 0, body.length))
  return out
}

function encodeProperty(parts: Buffer[], id: number, type: PropertyType, value: unknown): void {
  switch (type) {
    case 'byte':
    case 'bool':
      parts.push(Buffer.from([id, value === true ? 1 : typeof value === 'number' ? value : 0]))
      return
    case 'u16': {
      const b = Buffer.allocUnsafe(3)
      b[0] = id
      b.writeUInt16BE(Number(value), 1)
      parts.push(b)
      return
    }
    case 'u32': {
      const b = Buffer.allocUnsafe(5)
      b[0] = id
      b.writeUInt32BE(Number(value), 1)
      parts.push(b)
      return
    }
    case 'varint':
      // A PUBLISH may carry several Subscription Identifiers, one property each [MQTT-3.3.4-3].
      for (const n of Array.isArray(value) ? value : [value]) {
        const b = Buffer.allocUnsafe(1 + varintSize(Number(n)))
        b[0] = id
        writeVarint(b, 1, Number(n))
        parts.push(b)
      }
      return
    case 'string':
    case 'binary':
      parts.push(Buffer.from([id]), lengthPrefixed(value))
      return
    case 'pairs':
      if (typeof value !== 'object' || value === null) return
      if (Array.isArray(value)) {
        // A UserPropertyList: written in its order [MQTT-3.3.2-18].
        for (const pair of value as readonly (readonly [string, string])[]) parts.push(Buffer.from([id]), lengthPrefixed(pair[0]), lengthPrefixed(pair[1]))
        return
      }
      for (const [k, v] of Object.entries(value)) {
        for (const one of Array.isArray(v) ? v : [v]) parts.push(Buffer.from([id]), lengthPrefixed(k), lengthPrefixed(String(one)))
      }
      return
  }
}

export function lengthPrefixed(value: unknown): Buffer {
  const data = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'utf8')
  const out = Buffer.allocUnsafe(2 + data.length)
  out.writeUInt16BE(data.length, 0)
  data.copy(out, 2)
  return out
}
