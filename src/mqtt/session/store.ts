import type { Message, QoS } from './message.js'
import type { SubscriptionOptions } from './session.js'

/** Where an outgoing QoS 1/2 message stands: waiting in the queue, or in flight (MQTT 4.3). */
export type DeliveryState = 'queued' | 'await-ack' | 'await-comp'

export interface StoredDelivery {
  /** Order within the session; redelivery and queue order follow it. */
  readonly seq: number
  readonly message: Message
  readonly qos: QoS
  readonly retain: boolean
  readonly subscriptionIds: readonly number[] | undefined
  readonly state: DeliveryState
  /** 0 while queued. */
  readonly packetId: number
}

/** Who owns a session, so its will and subscriptions are authorized as that client after a restart. */
export interface SessionOwner {
  readonly username: string | undefined
  readonly account: string | undefined
  readonly admin: boolean
  readonly serves?: readonly string[] | undefined
}

export interface StoredWill {
  readonly message: Message
  readonly delaySeconds: number
  readonly expirySeconds: number | undefined
  /** Absolute ms at which a pending will is due; undefined while its client is connected. */
  readonly publishAt: number | undefined
}

export interface StoredSession {
  readonly clientId: string
  readonly owner: SessionOwner
  readonly expiryInterval: number
  /** Absolute ms at which a disconnected session ends; undefined while it was connected. */
  readonly expiresAt: number | undefined
  readonly will: StoredWill | undefined
  readonly subscriptions: ReadonlyMap<string, SubscriptionOptions>
  /** Ordered by seq. */
  readonly deliveries: readonly StoredDelivery[]
  readonly incomingQos2: ReadonlySet<number>
}

export interface StoredState {
  readonly sessions: readonly StoredSession[]
  readonly retained: readonly Message[]
}

/**
 * What outlives the process: persistent sessions (expiry > 0) with their subscriptions,
 * queued and in-flight deliveries, incoming QoS 2 ids and wills, and retained messages.
 * Writes are recorded at once and become durable together at the next commit;
 * `afterCommit` is how the broker keeps its promise to acknowledge a QoS 1/2 message only
 * once it is durable. Every implementation passes test/session/store-contract.ts.
 */
export interface SessionStore {
  /** True when the state survives a restart. */
  readonly durable: boolean
  load(): StoredState
  saveSession(clientId: string, owner: SessionOwner, expiryInterval: number, expiresAt: number | undefined): void
  /** Removes the session with everything it owns. */
  deleteSession(clientId: string): void
  saveWill(clientId: string, will: StoredWill | undefined): void
  saveSubscription(clientId: string, filter: string, options: SubscriptionOptions): void
  deleteSubscription(clientId: string, filter: string): void
  addDelivery(clientId: string, delivery: StoredDelivery): void
  updateDelivery(clientId: string, seq: number, state: DeliveryState, packetId: number): void
  removeDelivery(clientId: string, seq: number): void
  addIncomingQos2(clientId: string, packetId: number): void
  removeIncomingQos2(clientId: string, packetId: number): void
  setRetained(message: Message): void
  deleteRetained(topic: string): void
  /**
   * Calls `fn` once every write recorded so far is durable (at once when nothing is pending),
   * or with the error that kept them from being committed (a full disk, an I/O error).
   */
  afterCommit(fn: (error: Error | undefined) => void): void
  /** Commits whatever is pending now. */
  flush(): void
  close(): void
}
