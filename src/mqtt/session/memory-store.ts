import type { Message } from './message.js'
import type { SubscriptionOptions } from './session.js'
import type { DeliveryState, SessionOwner, SessionStore, StoredDelivery, StoredSession, StoredState, StoredWill } from './store.js'

interface Record {
  owner: SessionOwner
  expiryInterval: number
  expiresAt: number | undefined
  will: StoredWill | undefined
  subscriptions: Map<string, SubscriptionOptions>
  deliveries: Map<number, StoredDelivery>
  incomingQos2: Set<number>
}

/**
 * The memory-only mode: the same records as the durable store, kept in maps, so a restart
 * starts empty and every commit is immediate.
 */
export class MemorySessionStore implements SessionStore {
  readonly durable = false
  readonly #sessions = new Map<string, Record>()
  readonly #retained = new Map<string, Message>()

  load(): StoredState {
    const sessions: StoredSession[] = []
    for (const [clientId, r] of this.#sessions) {
      sessions.push({
        clientId,
        owner: r.owner,
        expiryInterval: r.expiryInterval,
        expiresAt: r.expiresAt,
        will: r.will,
        subscriptions: new Map(r.subscriptions),
        deliveries: [...r.deliveries.values()].sort((a, b) => a.seq - b.seq),
        incomingQos2: new Set(r.incomingQos2),
      })
    }
    return { sessions, retained: [...this.#retained.values()] }
  }

  saveSession(clientId: string, owner: SessionOwner, expiryInterval: number, expiresAt: number | undefined): void {
    const r = this.#sessions.get(clientId)
    if (r !== undefined) {
      r.owner = owner
      r.expiryInterval = expiryInterval
      r.expiresAt = expiresAt
      return
    }
    this.#sessions.set(clientId, {
      owner,
      expiryInterval,
      expiresAt,
      will: undefined,
      subscriptions: new Map(),
      deliveries: new Map(),
      incomingQos2: new Set(),
    })
  }

  deleteSession(clientId: string): void {
    this.#sessions.delete(clientId)
  }

  saveWill(clientId: string, will: StoredWill | undefined): void {
    const r = this.#sessions.get(clientId)
    if (r !== undefined) r.will = will
  }

  saveSubscription(clientId: string, filter: string, options: SubscriptionOptions): void {
    this.#sessions.get(clientId)?.subscriptions.set(filter, options)
  }

  deleteSubscription(clientId: string, filter: string): void {
    this.#sessions.get(clientId)?.subscriptions.delete(filter)
  }

  addDelivery(clientId: string, delivery: StoredDelivery): void {
    this.#sessions.get(clientId)?.deliveries.set(delivery.seq, delivery)
  }

  updateDelivery(clientId: string, seq: number, state: DeliveryState, packetId: number): void {
    const deliveries = this.#sessions.get(clientId)?.deliveries
    const d = deliveries?.get(seq)
    if (deliveries !== undefined && d !== undefined) deliveries.set(seq, { ...d, state, packetId })
  }

  removeDelivery(clientId: string, seq: number): void {
    this.#sessions.get(clientId)?.deliveries.delete(seq)
  }

  addIncomingQos2(clientId: string, packetId: number): void {
    this.#sessions.get(clientId)?.incomingQos2.add(packetId)
  }

  removeIncomingQos2(clientId: string, packetId: number): void {
    this.#sessions.get(clientId)?.incomingQos2.delete(packetId)
  }

  setRetained(message: Message): void {
    this.#retained.set(message.topic, message)
  }

  deleteRetained(topic: string): void {
    this.#retained.delete(topic)
  }

  afterCommit(fn: (error: Error | undefined) => void): void {
    fn(undefined)
  }

  flush(): void {}

  close(): void {}
}
