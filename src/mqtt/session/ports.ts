import type { Delivery } from './message.js'

/** Where a session writes when its client is connected; implemented by the transport. */
export interface PacketSink {
  /** False while the connection's bounded write buffer is full (a slow consumer). */
  canWrite(): boolean
  writePublish(delivery: Delivery, packetId: number, dup: boolean): void
  writePubrel(packetId: number): void
  /** The client's Receive Maximum [MQTT-3.3.4-7]. */
  readonly receiveMaximum: number
}
