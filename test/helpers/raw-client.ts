import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket, {
  type IConnackPacket,
  type IConnectPacket,
  type IPublishPacket,
  type ISubackPacket,
  type ISubscribePacket,
  type ISubscription,
  type IUnsubackPacket,
  type Packet,
} from 'mqtt-packet'
import { until } from './clients.js'
import type { Version } from './wire.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export type Cmd = Packet['cmd']
export type PacketOf<K extends Cmd> = Extract<Packet, { cmd: K }>

/**
 * A packet-level MQTT client on a raw TCP socket: packets are built and parsed with
 * mqtt-packet, nothing is acknowledged unless the test does it, and every packet the broker
 * sends is kept in `packets`, so DUP flags, packet ids and properties can be checked.
 */
export class Wire {
  readonly socket: Socket
  readonly version: Version
  readonly packets: Packet[] = []
  readonly closed: Promise<void>
  readonly #taken = new Set<Packet>()
  readonly #chunks: Buffer[] = []
  #isClosed = false
  #parseError: unknown

  private constructor(socket: Socket, version: Version) {
    this.socket = socket
    this.version = version
    const parser = mqttPacket.parser({ protocolVersion: version })
    parser.on('packet', (p: Packet) => this.packets.push(p))
    parser.on('error', (e: unknown) => {
      this.#parseError = e
    })
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk)
      parser.parse(chunk)
    })
    socket.on('error', () => {})
    this.closed = new Promise<void>((resolve) =>
      socket.on('close', () => {
        this.#isClosed = true
        resolve()
      }),
    )
  }

  /** Opens the TCP connection only (destroyed at teardown); nothing is sent. */
  static async open(t: Teardown, port: number, version: Version = 4): Promise<Wire> {
    const socket = netConnect(port, '127.0.0.1')
    t.teardown(() => {
      socket.destroy()
    })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    return new Wire(socket, version)
  }

  /**
   * Opens a socket and completes CONNECT/CONNACK; throws unless the CONNACK accepts. To see a
   * refusal, `open` and then `handshake`.
   */
  static async connect(t: Teardown, port: number, version: Version, fields: ConnectFields): Promise<{ wire: Wire; connack: IConnackPacket }> {
    const wire = await Wire.open(t, port, version)
    const connack = await wire.handshake(fields)
    const code = version === 5 ? connack.reasonCode : connack.returnCode
    if (code !== 0) throw new Error(`CONNACK refused with ${code}`)
    return { wire, connack }
  }

  /** Reason code of the first DISCONNECT the broker sent (0 when it has none), if any. */
  disconnectCode(): number | undefined {
    const d = this.all('disconnect')[0]
    return d === undefined ? undefined : (d.reasonCode ?? 0)
  }

  /** Set when the broker sent bytes mqtt-packet could not parse. */
  get parseError(): unknown {
    return this.#parseError
  }

  /** Every byte received so far, for checks mqtt-packet's parsed form cannot express. */
  bytes(): Buffer {
    return Buffer.concat(this.#chunks)
  }

  isClosed(): boolean {
    return this.#isClosed
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: this.version }))
  }

  sendBytes(bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** Sends CONNECT and waits for the CONNACK, whatever its code. */
  async handshake(fields: ConnectFields): Promise<IConnackPacket> {
    const packet: IConnectPacket = {
      cmd: 'connect',
      protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: this.version,
      keepalive: 60,
      clean: true,
      ...fields,
    }
    this.send(packet)
    return this.take('connack')
  }

  /**
   * The first packet of this kind not yet taken that satisfies `pred`; waits for it up to
   * `ms`. Each packet is returned by `take` at most once.
   */
  async take<K extends Cmd>(cmd: K, pred: (p: PacketOf<K>) => boolean = () => true, ms = 5000): Promise<PacketOf<K>> {
    let found: PacketOf<K> | undefined
    await until(
      () => {
        found = this.peek(cmd, pred)
        return found !== undefined || this.#isClosed
      },
      ms,
      `${cmd} from the broker`,
    )
    if (found === undefined) found = this.peek(cmd, pred)
    if (found === undefined) throw new Error(`connection closed while waiting for ${cmd}`)
    this.#taken.add(found)
    return found
  }

  peek<K extends Cmd>(cmd: K, pred: (p: PacketOf<K>) => boolean = () => true): PacketOf<K> | undefined {
    for (const p of this.packets) {
      if (p.cmd === cmd && !this.#taken.has(p) && pred(p as PacketOf<K>)) return p as PacketOf<K>
    }
    return undefined
  }

  /** Every packet of this kind received so far, taken or not. */
  all<K extends Cmd>(cmd: K): PacketOf<K>[] {
    return this.packets.filter((p): p is PacketOf<K> => p.cmd === cmd)
  }

  publishes(topic?: string): IPublishPacket[] {
    return this.all('publish').filter((p) => topic === undefined || p.topic === topic)
  }

  async subscribe(
    subscriptions: ISubscription[],
    messageId: number,
    properties?: NonNullable<ISubscribePacket['properties']>,
  ): Promise<ISubackPacket> {
    const packet: ISubscribePacket = { cmd: 'subscribe', messageId, subscriptions }
    if (properties !== undefined) packet.properties = properties
    this.send(packet)
    return this.take('suback', (p) => p.messageId === messageId)
  }

  async unsubscribe(unsubscriptions: string[], messageId: number): Promise<IUnsubackPacket> {
    this.send({ cmd: 'unsubscribe', messageId, unsubscriptions })
    return this.take('unsuback', (p) => p.messageId === messageId)
  }

  /** Publishes and completes the QoS 1/2 flow as a well-behaved client. */
  async publish(fields: PublishFields): Promise<void> {
    const packet: IPublishPacket = { cmd: 'publish', qos: 0, dup: false, retain: false, ...fields }
    this.send(packet)
    const id = packet.messageId
    if (packet.qos === 1) await this.take('puback', (p) => p.messageId === id)
    if (packet.qos === 2) {
      await this.take('pubrec', (p) => p.messageId === id)
      this.send({ cmd: 'pubrel', messageId: id ?? 0 })
      await this.take('pubcomp', (p) => p.messageId === id)
    }
  }

  /** Sends DISCONNECT and waits for the broker to close the socket. */
  async disconnect(reasonCode?: number): Promise<void> {
    if (this.#isClosed) return
    if (reasonCode !== undefined && this.version === 5) this.send({ cmd: 'disconnect', reasonCode })
    else this.send({ cmd: 'disconnect' })
    await this.closed
  }

  /** Drops the connection without DISCONNECT, as a network failure would. */
  async drop(): Promise<void> {
    this.socket.destroy()
    await this.closed
  }
}

export type ConnectFields = Omit<IConnectPacket, 'cmd'>
export type PublishFields = Omit<IPublishPacket, 'cmd' | 'dup' | 'retain' | 'qos'> & Partial<Pick<IPublishPacket, 'dup' | 'retain' | 'qos'>>
