import type { Delivery } from './message.js'
import type { Session } from './session.js'

/** Where a session writes when its client is connected; implemented by the transport. */
export interface PacketSink {
  /** False while the connection's bounded write buffer is full (a slow consumer). */
  canWrite(): boolean
  writePublish(delivery: Delivery, packetId: number, dup: boolean): void
  writePubrel(packetId: number): void
  /** The client's Receive Maximum [MQTT-3.3.4-7]. */
  readonly receiveMaximum: number
}

/**
 * Keeps sessions between connections. The memory store keeps them in a map; the durable
 * store persists the same operations. Every implementation passes the contract suite in
 * test/session/store-contract.ts.
 */
export interface SessionStore {
  get(clientId: string): Session | undefined
  put(session: Session): void
  delete(clientId: string): boolean
  values(): IterableIterator<Session>
  readonly size: number
}
