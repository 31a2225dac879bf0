import type { Duplex } from 'node:stream'
import type { TimerHandle } from '../../core/clock.js'
import { describeError, type ProtocolError } from '../../core/errors.js'
import type { ClientLink } from '../broker/broker.js'
import type { ClientInfo } from '../broker/hooks.js'
import { PacketDecoder } from '../protocol/decoder.js'
import { encodePacket } from '../protocol/encoder.js'
import type { Packet, ProtocolVersion } from '../protocol/packets.js'
import { RC } from '../protocol/reason-codes.js'
import type { Delivery } from '../session/message.js'
import type { PacketSink } from '../session/ports.js'
import type { Session } from '../session/session.js'
import type { AcceptedConnection, ConnectionControl, PacketContext, TransportServices } from './context.js'
import { dispatch } from './dispatch.js'
import { PublishEncoder } from './outbound.js'

export interface ConnectionMeta {
  readonly listener: string
  readonly remoteAddress: string
  readonly certificateCommonName: string | undefined
}

/** Packets a client may pipeline behind its CONNECT while authentication runs. */
const MAX_BACKLOG = 1000
/** How long a closing socket may take to deliver its last packets. */
const LINGER_MS = 2000


/**
 * One client connection: bytes in through the decoder to the handlers, packets out through a
 * bounded buffer written once per loop turn. Owns its timers; `destroy` releases everything.
 */
export class Connection implements PacketSink, ClientLink, PacketContext, ConnectionControl {
  readonly services: TransportServices
  readonly connection: ConnectionControl = this
  readonly remoteAddress: string
  readonly listener: string
  readonly certificateCommonName: string | undefined
  state: 'new' | 'authenticating' | 'connected' | 'closed' = 'new'
  receiveMaximum = 65_535
  readonly #socket: Duplex
  readonly #decoder: PacketDecoder
  readonly #onClosed: (c: Connection) => void
  #version: ProtocolVersion = 4
  #client: ClientInfo | undefined
  #session: Session | undefined
  #encoder: PublishEncoder | undefined
  #out: Buffer[] = []
  #outBytes = 0
  #scheduled = false
  #backlog: Packet[] = []
  #inAliases: Map<number, string> | undefined
  #clientMaxPacketSize = Number.POSITIVE_INFINITY
  #keepaliveMs = 0
  #lastActivity: number
  #timer: TimerHandle | undefined
  #slow = false
  #destroyed = false

  constructor(socket: Duplex, services: TransportServices, meta: ConnectionMeta, onClosed: (c: Connection) => void) {
    this.#socket = socket
    this.services = services
    this.remoteAddress = meta.remoteAddress
    this.listener = meta.listener
    this.certificateCommonName = meta.certificateCommonName
    this.#onClosed = onClosed
    this.#lastActivity = services.clock.now()
    this.#decoder = new PacketDecoder(services.limits.maxPacketSize, {
      onPacket: (p) => this.#onPacket(p),
      onError: (e) => this.#onDecodeError(e),
    })
    socket.on('data', (chunk: Buffer) => {
      services.broker.stats.bytesReceived += chunk.length
      this.#lastActivity = services.clock.now()
      this.#decoder.push(chunk)
    })
    socket.on('drain', () => this.#onDrain())
    socket.on('error', () => this.destroy('socket error'))
    socket.on('close', () => this.destroy('socket closed'))
    // [MQTT-3.1.4-1] a connection that sends no CONNECT in time is closed.
    this.#timer = services.clock.setTimer(services.limits.connectTimeoutMs, () => {
      if (this.state !== 'new' && this.state !== 'authenticating') return
      services.broker.stats.connectTimeouts++
      services.logger.info('connect.timeout', { remote: this.remoteAddress, listener: this.listener })
      this.destroy('connect timeout')
    })
  }

  get version(): ProtocolVersion {
    return this.#version
  }

  get client(): ClientInfo {
    if (this.#client === undefined) throw new Error('client used before CONNECT was accepted')
    return this.#client
  }

  get session(): Session {
    if (this.#session === undefined) throw new Error('session used before CONNECT was accepted')
    return this.#session
  }

  setVersion(version: ProtocolVersion): void {
    this.#version = version
  }

  beginAuthentication(): void {
    this.state = 'authenticating'
  }

  /** Fixes who the client is; the broker reads it while opening the session. */
  identify(client: ClientInfo): void {
    this.#client = client
  }

  accept(setup: AcceptedConnection): void {
    if (this.state === 'closed') return
    this.state = 'connected'
    this.#timer?.cancel()
    this.#timer = undefined
    this.#client = setup.client
    this.#session = setup.session
    this.receiveMaximum = setup.clientReceiveMaximum
    this.#clientMaxPacketSize = setup.clientMaxPacketSize
    this.#encoder = new PublishEncoder(this.#version)
    this.#encoder.setAliasMaximum(setup.clientTopicAliasMaximum)
    this.#keepaliveMs = setup.keepalive * 1000
    this.#armKeepalive()
  }

  /** Called after CONNACK is queued: resend in-flight, then run what the client pipelined. */
  resume(): void {
    if (this.state !== 'connected') return
    this.session.attach(this)
    const backlog = this.#backlog
    this.#backlog = []
    for (const p of backlog) {
      if (this.state !== 'connected') return
      this.#dispatch(p)
    }
  }

  refuse(): void {
    this.#flushNow()
    this.destroy('connect refused', false, true)
  }

  send(packet: Packet): void {
    this.#queue(encodePacket(packet, this.#version))
  }

  fail(reasonCode: number, reason: string): void {
    if (this.state === 'closed') return
    const stats = this.services.broker.stats
    if (reasonCode === RC.PACKET_TOO_LARGE) stats.packetsTooLarge++
    else stats.protocolErrors++
    this.services.logger.info('client.error', {
      clientId: this.#client?.clientId,
      remote: this.remoteAddress,
      reasonCode,
      reason,
    })
    if (this.#version === 5 && this.state === 'connected') {
      this.send({ cmd: 'disconnect', reasonCode, properties: { reasonString: reason } })
      this.#flushNow()
    }
    this.#release(true, undefined, reason)
    this.destroy(reason, true, true)
  }

  /** Server-side close with a v5 reason code (shutdown, takeover, keepalive). */
  disconnect(reasonCode: number, reason: string, publishWill = true): void {
    if (this.state === 'closed') return
    if (this.#version === 5 && this.state === 'connected') {
      this.send({ cmd: 'disconnect', reasonCode, properties: { reasonString: reason } })
    }
    this.#flushNow()
    this.#release(publishWill, undefined, reason)
    this.destroy(reason, true, true)
  }

  takeOver(): void {
    this.disconnect(RC.SESSION_TAKEN_OVER, 'session taken over by another connection')
  }

  closeGracefully(publishWill: boolean, expiryInterval: number | undefined, reason: string): void {
    this.#release(publishWill, expiryInterval, reason)
    this.destroy(reason, true, true)
  }

  resolveAlias(topic: string, alias: number | undefined): string | undefined {
    if (alias === undefined) return topic
    if (alias === 0 || alias > this.services.limits.topicAliasMaximum) {
      this.fail(RC.TOPIC_ALIAS_INVALID, `[MQTT-3.3.2-8] topic alias ${alias} outside 1..${this.services.limits.topicAliasMaximum}`)
      return undefined
    }
    if (topic.length > 0) {
      this.#inAliases ??= new Map()
      this.#inAliases.set(alias, topic)
      return topic
    }
    const known = this.#inAliases?.get(alias)
    if (known === undefined) this.fail(RC.PROTOCOL_ERROR, `topic alias ${alias} used before it was set`)
    return known
  }

  // PacketSink
  canWrite(): boolean {
    return !this.#slow && this.state === 'connected'
  }

  writePublish(d: Delivery, packetId: number, dup: boolean): void {
    const encoder = this.#encoder
    if (encoder === undefined) return
    const buf = encoder.encode(d, packetId, dup, this.services.clock, this.#clientMaxPacketSize)
    if (buf.length > this.#clientMaxPacketSize) {
      // Too large for this client: discarded as if sent [MQTT-3.1.2-25].
      this.services.logger.debug('publish.too-large-for-client', { clientId: this.#client?.clientId, bytes: buf.length })
      if (packetId !== 0) queueMicrotask(() => this.#session?.abandon(packetId))
      return
    }
    this.services.broker.stats.messagesSent++
    this.#queue(buf)
  }

  writePubrel(packetId: number): void {
    this.send({ cmd: 'pubrel', messageId: packetId })
  }

  flush(): void {
    this.#scheduled = false
    if (this.#outBytes === 0 || this.state === 'closed') return
    this.#flushNow()
  }

  /**
   * Releases the connection. With `linger`, output already queued is given a moment to reach
   * the client (a DISCONNECT, a refusing CONNACK) before the socket is torn down.
   */
  destroy(reason: string, alreadyReleased = false, linger = false): void {
    if (this.#destroyed) return
    this.#destroyed = true
    if (!alreadyReleased) this.#release(true, undefined, reason)
    this.state = 'closed'
    this.#decoder.stop()
    this.#timer?.cancel()
    this.#timer = undefined
    this.#out = []
    this.#outBytes = 0
    this.#backlog = []
    if (linger && !this.#socket.destroyed) {
      this.#socket.end()
      const t = this.services.clock.setTimer(LINGER_MS, () => this.#socket.destroy())
      this.#socket.once('close', () => t.cancel())
    } else this.#socket.destroy()
    this.#onClosed(this)
  }

  #release(publishWill: boolean, expiryInterval: number | undefined, reason: string): void {
    if (this.state !== 'connected' || this.#client === undefined) {
      if (this.state !== 'closed') this.state = 'closed'
      return
    }
    this.state = 'closed'
    this.#decoder.stop()
    this.services.broker.closeSession(this, { publishWill, expiryInterval, reason })
  }

  #onPacket(p: Packet): void {
    if (this.state === 'closed') return
    if (this.state === 'authenticating') {
      if (this.#backlog.length >= MAX_BACKLOG) this.fail(RC.RECEIVE_MAXIMUM_EXCEEDED, 'too many packets before CONNACK')
      else this.#backlog.push(p)
      return
    }
    this.#dispatch(p)
  }

  #dispatch(p: Packet): void {
    try {
      dispatch(this, p)
    } catch (e) {
      // A bug in a handler costs this connection, never the process.
      this.services.logger.error('handler.crash', { clientId: this.#client?.clientId, cmd: p.cmd, error: describeError(e), stack: e instanceof Error ? e.stack : undefined })
      this.fail(RC.IMPLEMENTATION_SPECIFIC_ERROR, 'internal error')
    }
  }

  #onDecodeError(e: ProtocolError): void {
    if (this.state === 'new' && e.reasonCode === RC.UNSUPPORTED_PROTOCOL_VERSION) {
      // [MQTT-3.1.2-2] answer an unknown protocol level with CONNACK 0x01 (3.1.1) / 0x84 (5.0) and close.
      this.#queue(Buffer.from([0x20, 0x02, 0x00, 0x01]))
      this.#flushNow()
      this.destroy(e.message, false, true)
      return
    }
    this.fail(e.reasonCode, e.message)
  }

  #queue(buf: Buffer): void {
    if (this.state === 'closed') return
    this.#out.push(buf)
    this.#outBytes += buf.length
    if (!this.#scheduled) {
      this.#scheduled = true
      this.services.flusher.schedule(this)
    }
  }

  #flushNow(): void {
    if (this.#outBytes === 0) return
    const data = this.#out.length === 1 ? this.#out[0] : Buffer.concat(this.#out, this.#outBytes)
    this.services.broker.stats.bytesSent += this.#outBytes
    this.#out = []
    this.#outBytes = 0
    if (data === undefined || this.#socket.destroyed) return
    this.#socket.write(data)
    if (this.#socket.writableLength > this.services.limits.maxWriteBuffer) this.#onSlow()
  }

  #onSlow(): void {
    if (this.#slow || this.state !== 'connected') return
    this.#slow = true
    if (this.services.limits.slowConsumerPolicy === 'disconnect') {
      this.services.broker.stats.slowConsumerDisconnects++
      this.services.logger.warn('client.slow-consumer.disconnect', { clientId: this.#client?.clientId, buffered: this.#socket.writableLength })
      this.disconnect(RC.QUOTA_EXCEEDED, 'slow consumer: write buffer full')
    }
  }

  #onDrain(): void {
    if (!this.#slow) return
    this.#slow = false
    this.#session?.pump()
  }

  #armKeepalive(): void {
    if (this.#keepaliveMs === 0) return
    // [MQTT-3.1.2-24] one and a half keepalive periods without a packet closes the connection.
    const limit = this.#keepaliveMs * 1.5
    const check = (): void => {
      if (this.state !== 'connected') return
      const idle = this.services.clock.now() - this.#lastActivity
      if (idle >= limit) {
        this.services.broker.stats.keepaliveTimeouts++
        this.services.logger.info('client.keepalive-timeout', { clientId: this.#client?.clientId, idleMs: idle })
        this.disconnect(RC.KEEP_ALIVE_TIMEOUT, 'keep alive timeout')
        return
      }
      this.#timer = this.services.clock.setTimer(limit - idle, check)
    }
    this.#timer = this.services.clock.setTimer(limit, check)
  }
}
