import { RingQueue } from '../../core/ring-queue.js'
import type { QueueBudget } from './budget.js'
import type { Delivery, Message, QoS } from './message.js'
import { messageBytes } from './message.js'
import type { PacketSink } from './ports.js'
import type { SessionStore, StoredSession } from './store.js'

export interface SubscriptionOptions {
  readonly qos: QoS
  readonly noLocal: boolean
  readonly retainAsPublished: boolean
  readonly retainHandling: 0 | 1 | 2
  readonly subscriptionId: number | undefined
}

/** The states of an outgoing QoS 1/2 message (MQTT 4.3). */
export type OutState = 'await-ack' | 'await-comp'

export interface OutFlight {
  readonly seq: number
  readonly delivery: Delivery
  state: OutState
}

interface Queued {
  readonly seq: number
  readonly delivery: Delivery
}

export interface SessionDeps {
  readonly limits: SessionLimits
  /** Shared by all sessions; unlimited when absent. */
  readonly budget?: QueueBudget
  readonly drops: DropCounter
  readonly now: () => number
  readonly store: SessionStore
}

export interface SessionLimits {
  maxInflight: number
  maxQueuedMessages: number
  maxQueuedBytes: number
}

export type DeliverOutcome = 'sent' | 'queued' | 'dropped-full' | 'dropped-slow' | 'dropped-offline'

/** Counts what a session dropped; the broker sums them for $SYS and logs. */
export interface DropCounter {
  dropped(reason: DeliverOutcome, delivery: Delivery): void
  expired(delivery: Delivery): void
}

export const NEVER_EXPIRES = 0xffffffff

/**
 * Per-client state without sockets: subscriptions, the outgoing in-flight window with
 * packet ids, the queue of messages waiting for the window or for the client, and the ids
 * of incoming QoS 2 messages awaiting PUBREL. A persistent session (expiry > 0) records
 * every change of that state in the SessionStore as it happens.
 */
export class Session {
  readonly clientId: string
  /** Seconds the session outlives its connection; NEVER_EXPIRES for 3.1.1 persistent sessions. */
  expiryInterval: number
  /** Whether the session outlives its connection and is kept in the store; fixed at creation. */
  readonly persistent: boolean
  readonly #subscriptions = new Map<string, SubscriptionOptions>()
  /** Insertion-ordered, so redelivery after reconnect keeps the original order [MQTT-4.6.0-1]. */
  readonly #inflight = new Map<number, OutFlight>()
  readonly #incomingQos2 = new Set<number>()
  /** In-flight ids whose PUBLISH awaits room in a new connection's window to be resent. */
  readonly #unsent = new Set<number>()
  readonly #queue = new RingQueue<Queued>()
  #queuedBytes = 0
  #sink: PacketSink | undefined
  #nextId = 1
  #seq = 1
  readonly #deps: SessionDeps
  /** The store, for persistent sessions only: others are never written. */
  readonly #journal: SessionStore | undefined

  constructor(clientId: string, expiryInterval: number, deps: SessionDeps) {
    this.clientId = clientId
    this.expiryInterval = expiryInterval
    this.persistent = expiryInterval > 0
    this.#deps = deps
    this.#journal = this.persistent ? deps.store : undefined
  }

  get connected(): boolean {
    return this.#sink !== undefined
  }

  get queued(): number {
    return this.#queue.length
  }

  get queuedBytes(): number {
    return this.#queuedBytes
  }

  get subscriptions(): ReadonlyMap<string, SubscriptionOptions> {
    return this.#subscriptions
  }

  get inflight(): ReadonlyMap<number, OutFlight> {
    return this.#inflight
  }

  /** Refills the session from what the store kept; it is not yet attached. */
  restore(stored: StoredSession): void {
    for (const [filter, options] of stored.subscriptions) this.#subscriptions.set(filter, options)
    for (const id of stored.incomingQos2) this.#incomingQos2.add(id)
    for (const d of stored.deliveries) {
      const delivery: Delivery = { message: d.message, qos: d.qos, retain: d.retain, subscriptionIds: d.subscriptionIds }
      if (d.state === 'queued') {
        this.#queue.push({ seq: d.seq, delivery })
        this.#queuedBytes += messageBytes(d.message)
        this.#deps.budget?.take(messageBytes(d.message))
      } else this.#inflight.set(d.packetId, { seq: d.seq, delivery, state: d.state })
      if (d.seq >= this.#seq) this.#seq = d.seq + 1
    }
  }

  subscribe(filter: string, options: SubscriptionOptions): boolean {
    const isNew = !this.#subscriptions.has(filter)
    this.#subscriptions.set(filter, options)
    this.#journal?.saveSubscription(this.clientId, filter, options)
    return isNew
  }

  unsubscribe(filter: string): boolean {
    if (!this.#subscriptions.delete(filter)) return false
    this.#journal?.deleteSubscription(this.clientId, filter)
    return true
  }

  hasIncomingQos2(packetId: number): boolean {
    return this.#incomingQos2.has(packetId)
  }

  get incomingQos2Count(): number {
    return this.#incomingQos2.size
  }

  /** An incoming QoS 2 message was accepted; its id is held until PUBREL [MQTT-4.3.3-9]. */
  holdIncomingQos2(packetId: number): void {
    this.#incomingQos2.add(packetId)
    this.#journal?.addIncomingQos2(this.clientId, packetId)
  }

  releaseIncomingQos2(packetId: number): boolean {
    if (!this.#incomingQos2.delete(packetId)) return false
    this.#journal?.removeIncomingQos2(this.clientId, packetId)
    return true
  }

  /** Hot path: called by the router for every matching message. */
  deliver(d: Delivery): DeliverOutcome {
    const sink = this.#sink
    if (d.qos === 0) {
      if (sink === undefined) return 'dropped-offline'
      if (!sink.canWrite()) {
        this.#deps.drops.dropped('dropped-slow', d)
        return 'dropped-slow'
      }
      sink.writePublish(d, 0, false)
      return 'sent'
    }
    if (sink !== undefined && this.#queue.length === 0 && this.#windowOpen(sink) && sink.canWrite()) {
      this.#send(this.#seq++, d, true)
      return 'sent'
    }
    return this.#enqueue(d)
  }

  /** PUBACK or PUBCOMP: the slot is free [MQTT-4.3.2-4], [MQTT-4.3.3-13]. */
  complete(packetId: number, expected: OutState): boolean {
    const f = this.#inflight.get(packetId)
    if (f === undefined || f.state !== expected) return false
    this.#drop(packetId, f)
    this.pump()
    return true
  }

  /** PUBREC: the message is owned by the receiver; answer with PUBREL [MQTT-4.3.3-4]. */
  received(packetId: number): boolean {
    const f = this.#inflight.get(packetId)
    if (f === undefined) return false
    if (f.state !== 'await-comp') {
      f.state = 'await-comp'
      this.#journal?.updateDelivery(this.clientId, f.seq, 'await-comp', packetId)
    }
    this.#unsent.delete(packetId)
    this.#write((sink) => sink.writePubrel(packetId))
    return true
  }

  /** PUBREC with an error code ends the flow for that id [MQTT-4.3.3-5]. */
  abandon(packetId: number): boolean {
    const f = this.#inflight.get(packetId)
    if (f === undefined) return false
    this.#drop(packetId, f)
    this.pump()
    return true
  }

  /**
   * Reattaching resends every PUBREL, and every unacknowledged PUBLISH with DUP and its id
   * [MQTT-4.4.0-1], in order, as far as the new connection's Receive Maximum allows
   * [MQTT-3.3.4-9]; the rest follow as acknowledgements free the window.
   */
  attach(sink: PacketSink): void {
    this.#sink = sink
    this.#unsent.clear()
    // Every PUBREL goes out and its message still counts against the window.
    let room = this.#windowSize(sink)
    for (const f of this.#inflight.values()) if (f.state === 'await-comp') room--
    for (const [id, f] of this.#inflight) {
      if (f.state === 'await-comp') this.#write((s) => s.writePubrel(id))
      else if (room > 0 && this.#unsent.size === 0) {
        this.#write((s) => s.writePublish(f.delivery, id, true))
        room--
      } else this.#unsent.add(id)
    }
    this.pump()
  }

  detach(): void {
    this.#sink = undefined
  }

  /** Resends, then moves queued messages into the window while it, and the socket, have room. */
  pump(): void {
    const sink = this.#sink
    if (sink === undefined) return
    for (const id of this.#unsent) {
      if (!sink.canWrite() || this.#inflight.size - this.#unsent.size >= this.#windowSize(sink)) return
      this.#unsent.delete(id)
      const f = this.#inflight.get(id)
      if (f !== undefined && f.state === 'await-ack') this.#write((s) => s.writePublish(f.delivery, id, true))
    }
    while (this.#queue.length > 0 && sink.canWrite()) {
      const head = this.#queue.peek()
      if (head === undefined) break
      if (head.delivery.qos > 0 && !this.#windowOpen(sink)) break
      this.#queue.shift()
      this.#queuedBytes -= messageBytes(head.delivery.message)
      this.#deps.budget?.give(1, messageBytes(head.delivery.message))
      if (this.#isExpired(head.delivery)) {
        this.#journal?.removeDelivery(this.clientId, head.seq)
        this.#deps.drops.expired(head.delivery)
        continue
      }
      if (head.delivery.qos === 0) sink.writePublish(head.delivery, 0, false)
      else this.#send(head.seq, head.delivery, false)
    }
  }

  /**
   * Takes back a message that could not be stored and whose publisher was told so: it leaves
   * the queue, and the window if it was never sent. Returns how many copies went.
   */
  withdraw(message: Message): number {
    return this.withdrawWhere((m) => m === message)
  }

  /**
   * Takes back every queued message `unwanted` picks, and those in the window not yet
   * acknowledged (a revoked right: what the client may no longer read is not sent or resent).
   */
  withdrawWhere(unwanted: (m: Message) => boolean): number {
    let removed = 0
    const kept: Queued[] = []
    for (let q = this.#queue.shift(); q !== undefined; q = this.#queue.shift()) {
      const message = q.delivery.message
      if (unwanted(message)) {
        this.#queuedBytes -= messageBytes(message)
        this.#deps.budget?.give(1, messageBytes(message))
        this.#journal?.removeDelivery(this.clientId, q.seq)
        removed++
      } else kept.push(q)
    }
    for (const q of kept) this.#queue.push(q)
    for (const [id, f] of this.#inflight) {
      if (f.state === 'await-ack' && unwanted(f.delivery.message)) {
        this.#drop(id, f)
        removed++
      }
    }
    return removed
  }

  /** Drops everything a clean start discards [MQTT-3.1.2-4]; the store forgets the session as a whole. */
  reset(): void {
    this.#subscriptions.clear()
    this.#inflight.clear()
    this.#unsent.clear()
    this.#incomingQos2.clear()
    this.#deps.budget?.give(this.#queue.length, this.#queuedBytes)
    this.#queue.clear()
    this.#queuedBytes = 0
  }

  *queuedDeliveries(): IterableIterator<Delivery> {
    for (const q of this.#queue) yield q.delivery
  }

  #windowOpen(sink: PacketSink): boolean {
    return this.#unsent.size === 0 && this.#inflight.size < this.#windowSize(sink)
  }

  #windowSize(sink: PacketSink): number {
    return Math.min(sink.receiveMaximum, this.#deps.limits.maxInflight)
  }

  #send(seq: number, d: Delivery, isNew: boolean): void {
    const id = this.#allocateId()
    this.#inflight.set(id, { seq, delivery: d, state: 'await-ack' })
    if (this.#journal !== undefined) {
      if (isNew) this.#journal.addDelivery(this.clientId, stored(seq, d, 'await-ack', id))
      else this.#journal.updateDelivery(this.clientId, seq, 'await-ack', id)
    }
    this.#write((s) => s.writePublish(d, id, false))
  }

  /**
   * A persistent session sends a QoS 1/2 PUBLISH or PUBREL only once the state behind it is
   * committed: after a crash the client can then hold no packet id, and have seen no message,
   * that the restarted broker does not know about [MQTT-4.3.3-10], [MQTT-4.4.0-1].
   */
  #write(fn: (sink: PacketSink) => void): void {
    const sink = this.#sink
    if (sink === undefined) return
    if (this.#journal === undefined) {
      fn(sink)
      return
    }
    // A reattach before the commit resends the in-flight window itself; after a failed commit
    // the message is withdrawn, or resent on the next attach.
    this.#journal.afterCommit((error) => {
      if (error === undefined && this.#sink === sink) fn(sink)
    })
  }

  #drop(packetId: number, f: OutFlight): void {
    this.#inflight.delete(packetId)
    this.#unsent.delete(packetId)
    this.#journal?.removeDelivery(this.clientId, f.seq)
  }

  #enqueue(d: Delivery): DeliverOutcome {
    const bytes = messageBytes(d.message)
    const limits = this.#deps.limits
    if (
      this.#queue.length >= limits.maxQueuedMessages ||
      this.#queuedBytes + bytes > limits.maxQueuedBytes ||
      this.#deps.budget?.fits(bytes) === false
    ) {
      this.#deps.drops.dropped('dropped-full', d)
      return 'dropped-full'
    }
    const seq = this.#seq++
    this.#queue.push({ seq, delivery: d })
    this.#queuedBytes += bytes
    this.#deps.budget?.take(bytes)
    this.#journal?.addDelivery(this.clientId, stored(seq, d, 'queued', 0))
    return 'queued'
  }

  #isExpired(d: Delivery): boolean {
    const at = d.message.expiresAt
    return at !== undefined && at <= this.#deps.now()
  }

  /** Never reuses an id still in flight [MQTT-2.3.1-2]. */
  #allocateId(): number {
    for (;;) {
      const id = this.#nextId
      this.#nextId = id >= 0xffff ? 1 : id + 1
      if (!this.#inflight.has(id)) return id
    }
  }
}

function stored(seq: number, d: Delivery, state: 'queued' | 'await-ack', packetId: number) {
  return { seq, message: d.message, qos: d.qos, retain: d.retain, subscriptionIds: d.subscriptionIds, state, packetId }
}
