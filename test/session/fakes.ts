// Test doubles for Session: a PacketSink that records every write, a DropCounter that records
// every drop, and a SessionStore that records every call (the session's journal).
import { createMessage, type Delivery, type Message, type QoS } from '../../src/mqtt/session/message.js'
import type { PacketSink } from '../../src/mqtt/session/ports.js'
import { type DeliverOutcome, type DropCounter, Session, type SessionLimits, type SubscriptionOptions } from '../../src/mqtt/session/session.js'
import type { DeliveryState, SessionOwner, SessionStore, StoredDelivery, StoredState, StoredWill } from '../../src/mqtt/session/store.js'

export const T0 = 1_700_000_000_000

export type Write = { kind: 'publish'; topic: string; packetId: number; dup: boolean; qos: QoS } | { kind: 'pubrel'; packetId: number }

export class FakeSink implements PacketSink {
  readonly writes: Write[] = []
  lastPacketId = -1
  writable = true
  constructor(readonly receiveMaximum = 65_535) {}
  canWrite(): boolean {
    return this.writable
  }
  writePublish(d: Delivery, packetId: number, dup: boolean): void {
    this.writes.push({ kind: 'publish', topic: d.message.topic, packetId, dup, qos: d.qos })
    this.lastPacketId = packetId
  }
  writePubrel(packetId: number): void {
    this.writes.push({ kind: 'pubrel', packetId })
  }
  get publishes(): Extract<Write, { kind: 'publish' }>[] {
    return this.writes.filter((w): w is Extract<Write, { kind: 'publish' }> => w.kind === 'publish')
  }
}

export class Drops implements DropCounter {
  readonly dropped_: { reason: DeliverOutcome; topic: string }[] = []
  readonly expired_: string[] = []
  dropped(reason: DeliverOutcome, d: Delivery): void {
    this.dropped_.push({ reason, topic: d.message.topic })
  }
  expired(d: Delivery): void {
    this.expired_.push(d.message.topic)
  }
}

/**
 * Implements the port and logs each call as one line, e.g. `addDelivery c1 #3 queued 0 t/a`;
 * added deliveries are kept whole in `added`. Loads empty; commits at once.
 */
export class RecordingStore implements SessionStore {
  readonly durable = true
  readonly calls: string[] = []
  readonly added: StoredDelivery[] = []

  /** The calls logged since the last `take`. */
  take(): string[] {
    return this.calls.splice(0)
  }

  load(): StoredState {
    return { sessions: [], retained: [] }
  }
  saveSession(clientId: string, _owner: SessionOwner, expiryInterval: number, expiresAt: number | undefined): void {
    this.calls.push(`saveSession ${clientId} ${expiryInterval} ${expiresAt}`)
  }
  deleteSession(clientId: string): void {
    this.calls.push(`deleteSession ${clientId}`)
  }
  saveWill(clientId: string, will: StoredWill | undefined): void {
    this.calls.push(`saveWill ${clientId} ${will?.message.topic}`)
  }
  saveSubscription(clientId: string, filter: string, options: SubscriptionOptions): void {
    this.calls.push(`saveSubscription ${clientId} ${filter} qos ${options.qos}`)
  }
  deleteSubscription(clientId: string, filter: string): void {
    this.calls.push(`deleteSubscription ${clientId} ${filter}`)
  }
  addDelivery(clientId: string, d: StoredDelivery): void {
    this.added.push(d)
    this.calls.push(`addDelivery ${clientId} #${d.seq} ${d.state} ${d.packetId} ${d.message.topic}`)
  }
  updateDelivery(clientId: string, seq: number, state: DeliveryState, packetId: number): void {
    this.calls.push(`updateDelivery ${clientId} #${seq} ${state} ${packetId}`)
  }
  removeDelivery(clientId: string, seq: number): void {
    this.calls.push(`removeDelivery ${clientId} #${seq}`)
  }
  addIncomingQos2(clientId: string, packetId: number): void {
    this.calls.push(`addIncomingQos2 ${clientId} ${packetId}`)
  }
  removeIncomingQos2(clientId: string, packetId: number): void {
    this.calls.push(`removeIncomingQos2 ${clientId} ${packetId}`)
  }
  setRetained(message: Message): void {
    this.calls.push(`setRetained ${message.topic}`)
  }
  deleteRetained(topic: string): void {
    this.calls.push(`deleteRetained ${topic}`)
  }
  afterCommit(fn: (error: Error | undefined) => void): void {
    fn(undefined)
  }
  flush(): void {}
  close(): void {}
}

export interface Setup {
  clock: { now: number }
  drops: Drops
  store: RecordingStore
  session: Session
}

/** Session 'c1' (expiry 60 unless told) with a hand-moved clock and a recording store. */
export function setup(limits: Partial<SessionLimits> = {}, expiryInterval = 60): Setup {
  const clock = { now: T0 }
  const drops = new Drops()
  const store = new RecordingStore()
  const session = new Session('c1', expiryInterval, {
    limits: { maxInflight: 32, maxQueuedMessages: 1000, maxQueuedBytes: 16 * 1_048_576, ...limits },
    drops,
    now: () => clock.now,
    store,
  })
  return { clock, drops, store, session }
}

export function delivery(topic: string, qos: QoS, expiresAt?: number, payload = 'x'): Delivery {
  const message = createMessage({ topic, payload: Buffer.from(payload), qos, retain: false, properties: undefined, expiresAt, origin: 'pub' })
  return { message, qos, retain: false, subscriptionIds: undefined }
}

export function subscription(qos: QoS = 1): SubscriptionOptions {
  return { qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined }
}
