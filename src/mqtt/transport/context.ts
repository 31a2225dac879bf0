import type { Clock } from '../../core/clock.js'
import type { Logger } from '../../core/logger.js'
import type { Broker } from '../broker/broker.js'
import type { ClientInfo } from '../broker/hooks.js'
import type { Packet, ProtocolVersion } from '../protocol/packets.js'
import type { Session } from '../session/session.js'

export type SlowConsumerPolicy = 'drop' | 'disconnect'

export interface ConnectionLimits {
  /** Largest packet the broker accepts, announced as v5 Maximum Packet Size. */
  maxPacketSize: number
  connectTimeoutMs: number
  /** Upper bound on keepalive seconds, announced as v5 Server Keep Alive; 0 = none. */
  maxKeepalive: number
  /** Incoming QoS 1/2 messages a client may have unacknowledged (v5 Receive Maximum). */
  receiveMaximum: number
  topicAliasMaximum: number
  maxTopicLength: number
  maxTopicLevels: number
  /** Bytes a connection may have unwritten before it counts as a slow consumer. */
  maxWriteBuffer: number
  slowConsumerPolicy: SlowConsumerPolicy
  maxConnections: number
}

/** Services shared by every connection, built once in app/. */
export interface TransportServices {
  readonly broker: Broker
  readonly clock: Clock
  readonly logger: Logger
  readonly limits: ConnectionLimits
  readonly flusher: Flusher
  newClientId(): string
}

/** Collects connections with pending output and writes them all once per loop turn. */
export interface Flusher {
  schedule(target: { flush(): void }): void
}

/**
 * What a packet handler may touch: the session and broker operations, a way to send and a
 * way to close. Never the socket, never bytes.
 */
export interface PacketContext {
  readonly services: TransportServices
  readonly version: ProtocolVersion
  readonly client: ClientInfo
  readonly session: Session
  send(packet: Packet): void
  /** Closes with a reason code: sent as v5 DISCONNECT, a plain close in 3.1.1. */
  fail(reasonCode: number, reason: string): void
  /** Resolves an incoming v5 topic alias; returns the topic or an error already reported. */
  resolveAlias(topic: string, alias: number | undefined): string | undefined
  readonly connection: ConnectionControl
}

/** Connection-level operations the CONNECT and DISCONNECT handlers need. */
export interface ConnectionControl {
  readonly state: 'new' | 'authenticating' | 'connected' | 'closed'
  readonly remoteAddress: string
  readonly listener: string
  readonly certificateCommonName: string | undefined
  beginAuthentication(): void
  identify(client: ClientInfo): void
  accept(setup: AcceptedConnection): void
  refuse(): void
  closeGracefully(publishWill: boolean, expiryInterval: number | undefined, reason: string): void
}

export interface AcceptedConnection {
  readonly client: ClientInfo
  readonly session: Session
  readonly keepalive: number
  readonly clientReceiveMaximum: number
  readonly clientMaxPacketSize: number
  readonly clientTopicAliasMaximum: number
}
