// Hand-rolled MQTT 3.1.1 bytes for the load generator and the readiness probe.
// Everything is serialized once up front so the hot loops only copy buffers and
// scan fixed headers; MQTT.js would spend more CPU than the broker under test.

export const CONNACK = 2
export const PUBLISH = 3
export const PUBACK = 4
export const SUBACK = 9

function remLength(n) {
  const out = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}

// A UTF-8 string, or binary data when given a Buffer, with its 2-byte length.
function str(s) {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8')
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

function packet(first, body) {
  return Buffer.concat([Buffer.from([first]), remLength(body.length), body])
}

// With `username` (and `password`, a string or Buffer), the login of perch's accounts mode.
export function connect(clientId, { clean = true, keepalive = 600, username, password } = {}) {
  const flags = (clean ? 0x02 : 0) | (username !== undefined ? 0x80 : 0) | (password !== undefined ? 0x40 : 0)
  const vh = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, keepalive >> 8, keepalive & 0xff])
  const fields = [vh, str(clientId)]
  if (username !== undefined) fields.push(str(username))
  if (password !== undefined) fields.push(str(password))
  return packet(0x10, Buffer.concat(fields))
}

export function subscribe(filter, qos = 0, id = 1) {
  return packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), str(filter), Buffer.from([qos])]))
}

// QoS 0 when id is 0, QoS 1 otherwise.
export function publish(topic, payload, id = 0) {
  const parts = [str(topic)]
  if (id) parts.push(Buffer.from([id >> 8, id & 0xff]))
  parts.push(payload)
  return packet(id ? 0x32 : 0x30, Buffer.concat(parts))
}

export const DISCONNECT = Buffer.from([0xe0, 0])

// Total length (fixed header included) of the packet starting at buf[i],
// or -1 when the remaining-length bytes are not all there yet.
export function packetLength(buf, i, end) {
  let mult = 1
  let len = 0
  for (let j = i + 1; j < end && j < i + 5; j++) {
    const b = buf[j]
    len += (b & 0x7f) * mult
    if ((b & 0x80) === 0) return j - i + 1 + len
    mult *= 128
  }
  return -1
}

// Offset of a PUBLISH payload inside buf, given the packet start and length.
export function payloadOffset(buf, i) {
  let j = i + 1
  while (buf[j] & 0x80) j++
  j++
  const topicLen = (buf[j] << 8) | buf[j + 1]
  return j + 2 + topicLen + ((buf[i] & 0x06) !== 0 ? 2 : 0)
}

// The number in the last level of a PUBLISH's topic (`.../7` -> 7), for
// messages whose payload cannot carry the publisher's index (a rule's output).
export function topicIndex(buf, i) {
  let j = i + 1
  while (buf[j] & 0x80) j++
  j++
  const end = j + 2 + ((buf[j] << 8) | buf[j + 1])
  let k = end
  while (k > j + 2 && buf[k - 1] >= 0x30 && buf[k - 1] <= 0x39) k--
  let n = 0
  for (; k < end; k++) n = n * 10 + buf[k] - 0x30
  return n
}

// Stream splitter: calls onPacket(buf, start, length) for each whole packet.
// Only a packet that straddles two chunks is copied (into a small carry
// buffer), so the common case allocates nothing.
export function splitter(onPacket) {
  let carry = Buffer.allocUnsafe(512)
  let carryLen = 0
  return function feed(chunk) {
    const n = chunk.length
    let i = 0
    if (carryLen > 0) {
      let need = packetLength(carry, 0, carryLen)
      while (need === -1 && i < n && carryLen < 5) {
        carry[carryLen++] = chunk[i++]
        need = packetLength(carry, 0, carryLen)
      }
      if (need === -1) return
      if (need > carry.length) {
        const bigger = Buffer.allocUnsafe(need)
        carry.copy(bigger, 0, 0, carryLen)
        carry = bigger
      }
      const take = Math.min(need - carryLen, n - i)
      chunk.copy(carry, carryLen, i, i + take)
      carryLen += take
      i += take
      if (carryLen < need) return
      carryLen = 0
      onPacket(carry, 0, need)
    }
    while (i < n) {
      const len = packetLength(chunk, i, n)
      if (len === -1 || i + len > n) {
        const rest = n - i
        if (rest > carry.length) carry = Buffer.allocUnsafe(rest)
        chunk.copy(carry, 0, i, n)
        carryLen = rest
        return
      }
      onPacket(chunk, i, len)
      i += len
    }
  }
}
