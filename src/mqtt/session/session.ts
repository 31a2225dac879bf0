import { RingQueue } from '../../core/ring-queue.js'
import type { Delivery, QoS } from './message.js'
import { messageBytes } from './message.js'
import type { PacketSink } from './ports.js'

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
  readonly delivery: Delivery
  state: OutState
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
 * of incoming QoS 2 messages awaiting PUBREL.
 */
export class Session {
  readonly clientId: string
  /** Seconds the session outlives its connection; NEVER_EXPIRES for 3.1.1 persistent sessions. */
  expiryInterval: number
  readonly subscriptions = new Map<string, SubscriptionOptions>()
  /** Insertion-ordered, so redelivery after reconnect keeps the original order [MQTT-4.6.0-1]. */
  readonly inflight = new Map<number, OutFlight>()
  readonly incomingQos2 = new Set<number>()
  /** In-flight ids whose PUBLISH awaits room in a new connection's window to be resent. */
  readonly #unsent = new Set<number>()
  readonly #queue = new RingQueue<Delivery>()
  #queuedBytes = 0
  #sink: PacketSink | undefined
  #nextId = 1
  readonly #limits: SessionLimits
  readonly #drops: DropCounter
  readonly #now: () => number

  constructor(clientId: string, expiryInterval: number, limits: SessionLimits, drops: DropCounter, now: () => number) {
    this.clientId = clientId
    this.expiryInterval = expiryInterval
    this.#limits = limits
    this.#drops = drops
    this.#now = now
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

  /** Hot path: called by the router for every matching message. */
  deliver(d: Delivery): DeliverOutcome {
    const sink = this.#sink
    if (d.qos === 0) {
      if (sink === undefined) return 'dropped-offline'
      if (!sink.canWrite()) {
        this.#drops.dropped('dropped-slow', d)
        return 'dropped-slow'
      }
      sink.writePublish(d, 0, false)
      return 'sent'
    }
    if (sink !== undefined && this.#queue.length === 0 && this.#windowOpen(sink) && sink.canWrite()) {
      this.#send(sink, d)
      return 'sent'
    }
    return this.#enqueue(d)
  }

  /** PUBACK or PUBCOMP: the slot is free [MQTT-4.3.2-4], [MQTT-4.3.3-13]. */
  complete(packetId: number, expected: OutState): boolean {
    const f = this.inflight.get(packetId)
    if (f === undefined || f.state !== expected) return false
    this.inflight.delete(packetId)
    this.#unsent.delete(packetId)
    this.pump()
    return true
  }

  /** PUBREC: the message is owned by the receiver; answer with PUBREL [MQTT-4.3.3-4]. */
  received(packetId: number): boolean {
    const f = this.inflight.get(packetId)
    if (f === undefined) return false
    f.state = 'await-comp'
    this.#unsent.delete(packetId)
    this.#sink?.writePubrel(packetId)
    return true
  }

  /** PUBREC with an error code ends the flow for that id [MQTT-4.3.3-5]. */
  abandon(packetId: number): boolean {
    const had = this.inflight.delete(packetId)
    this.#unsent.delete(packetId)
    if (had) this.pump()
    return had
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
    for (const f of this.inflight.values()) if (f.state === 'await-comp') room--
    for (const [id, f] of this.inflight) {
      if (f.state === 'await-comp') sink.writePubrel(id)
      else if (room > 0 && this.#unsent.size === 0) {
        sink.writePublish(f.delivery, id, true)
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
      if (!sink.canWrite() || this.inflight.size - this.#unsent.size >= this.#windowSize(sink)) return
      this.#unsent.delete(id)
      const f = this.inflight.get(id)
      if (f !== undefined && f.state === 'await-ack') sink.writePublish(f.delivery, id, true)
    }
    while (this.#queue.length > 0 && sink.canWrite()) {
      const head = this.#queue.peek()
      if (head === undefined) break
      if (head.qos > 0 && !this.#windowOpen(sink)) break
      this.#queue.shift()
      this.#queuedBytes -= messageBytes(head.message)
      if (this.#isExpired(head)) {
        this.#drops.expired(head)
        continue
      }
      if (head.qos === 0) sink.writePublish(head, 0, false)
      else this.#send(sink, head)
    }
  }

  /** Drops everything a clean start discards [MQTT-3.1.2-4]. */
  reset(): void {
    this.subscriptions.clear()
    this.inflight.clear()
    this.#unsent.clear()
    this.incomingQos2.clear()
    this.#queue.clear()
    this.#queuedBytes = 0
  }

  *queuedDeliveries(): IterableIterator<Delivery> {
    yield* this.#queue
  }

  #windowOpen(sink: PacketSink): boolean {
    return this.#unsent.size === 0 && this.inflight.size < this.#windowSize(sink)
  }

  #windowSize(sink: PacketSink): number {
    return Math.min(sink.receiveMaximum, this.#limits.maxInflight)
  }

  #send(sink: PacketSink, d: Delivery): void {
    const id = this.#allocateId()
    this.inflight.set(id, { delivery: d, state: 'await-ack' })
    sink.writePublish(d, id, false)
  }

  #enqueue(d: Delivery): DeliverOutcome {
    const bytes = messageBytes(d.message)
    if (this.#queue.length >= this.#limits.maxQueuedMessages || this.#queuedBytes + bytes > this.#limits.maxQueuedBytes) {
      this.#drops.dropped('dropped-full', d)
      return 'dropped-full'
    }
    this.#queue.push(d)
    this.#queuedBytes += bytes
    return 'queued'
  }

  #isExpired(d: Delivery): boolean {
    const at = d.message.expiresAt
    return at !== undefined && at <= this.#now()
  }

  /** Never reuses an id still in flight [MQTT-2.3.1-2]. */
  #allocateId(): number {
    for (;;) {
      const id = this.#nextId
      this.#nextId = id >= 0xffff ? 1 : id + 1
      if (!this.inflight.has(id)) return id
    }
  }
}
