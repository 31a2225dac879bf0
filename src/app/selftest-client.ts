import { connect, type Socket } from 'node:net'
import { PacketDecoder } from '../mqtt/protocol/decoder.js'
import { encodePublish } from '../mqtt/protocol/encoder.js'
import type { Packet } from '../mqtt/protocol/packets.js'
import { lengthPrefixed, varintSize, writeVarint } from '../mqtt/protocol/properties.js'

/**
 * The smallest MQTT 3.1.1 client that can prove a gateway works: connect, subscribe, publish
 * at QoS 0 and wait for packets. It goes through a real socket and perch's own decoder, so it
 * needs nothing beyond the production dependencies (selftest runs where only those exist).
 */
export class SelftestClient {
  readonly #socket: Socket
  readonly #waiters: { match: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = []
  readonly #seen: Packet[] = []
  #closed: Error | undefined

  private constructor(socket: Socket) {
    this.#socket = socket
    const decoder = new PacketDecoder(1_048_576, {
      onPacket: (p) => this.#deliver(p),
      onError: (e) => this.#close(e),
    })
    socket.on('data', (chunk) => decoder.push(chunk))
    socket.on('error', (e) => this.#close(e))
    socket.on('close', () => this.#close(new Error('connection closed by the broker')))
  }

  static async open(port: number, username: string, password: string, timeoutMs: number): Promise<SelftestClient> {
    const socket = connect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    const client = new SelftestClient(socket)
    socket.write(connectPacket(`perch-selftest-${process.pid}`, username, password))
    const ack = await client.next((p) => p.cmd === 'connack', timeoutMs)
    const code = ack.cmd === 'connack' ? (ack.returnCode ?? ack.reasonCode ?? 0) : -1
    if (code !== 0) {
      client.close()
      throw new Error(`CONNECT refused with return code ${code}`)
    }
    return client
  }

  async subscribe(filter: string, timeoutMs: number): Promise<void> {
    const id = 1
    const body = Buffer.concat([u16(id), lengthPrefixed(filter), Buffer.from([0])])
    this.#socket.write(frame(0x82, body))
    const ack = await this.next((p) => p.cmd === 'suback' && p.messageId === id, timeoutMs)
    if (ack.cmd === 'suback' && ack.granted[0] !== 0) throw new Error(`SUBSCRIBE to ${filter} refused (${String(ack.granted[0])})`)
  }

  publish(topic: string, payload: string): void {
    this.#socket.write(encodePublish({ topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false, packetId: 0 }, 4))
  }

  /** The first packet (already received or still to come) that matches. */
  next(match: (p: Packet) => boolean, timeoutMs: number): Promise<Packet> {
    const i = this.#seen.findIndex(match)
    if (i >= 0) return Promise.resolve(this.#seen.splice(i, 1)[0] as Packet)
    if (this.#closed !== undefined) return Promise.reject(this.#closed)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new Error(`no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      const waiter = {
        match,
        resolve: (p: Packet) => {
          clearTimeout(timer)
          resolve(p)
        },
      }
      this.#waiters.push(waiter)
    })
  }

  close(): void {
    if (!this.#socket.destroyed) this.#socket.end(Buffer.from([0xe0, 0]))
  }

  #deliver(p: Packet): void {
    const i = this.#waiters.findIndex((w) => w.match(p))
    if (i < 0) {
      this.#seen.push(p)
      return
    }
    const [w] = this.#waiters.splice(i, 1)
    w?.resolve(p)
  }

  #close(e: Error): void {
    this.#closed ??= e
    this.#socket.destroy()
  }
}

function connectPacket(clientId: string, username: string, password: string): Buffer {
  // Protocol "MQTT" level 4, flags: user name, password, clean session; keepalive 60 s.
  const header = Buffer.concat([lengthPrefixed('MQTT'), Buffer.from([4, 0xc2]), u16(60)])
  return frame(0x10, Buffer.concat([header, lengthPrefixed(clientId), lengthPrefixed(username), lengthPrefixed(password)]))
}

function frame(first: number, body: Buffer): Buffer {
  const head = Buffer.alloc(1 + varintSize(body.length))
  head[0] = first
  writeVarint(head, 1, body.length)
  return Buffer.concat([head, body])
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
