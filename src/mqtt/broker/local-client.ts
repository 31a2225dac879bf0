import type { Disposable } from '../../core/scope.js'
import { createMessage, type Delivery, type Message, type QoS } from '../session/message.js'
import type { PacketSink } from '../session/ports.js'
import type { Session } from '../session/session.js'
import type { Broker } from './broker.js'
import type { ClientInfo } from './hooks.js'

/** Client ids of in-process clients start with this; CONNECT refuses it. */
export const LOCAL_CLIENT_PREFIX = '$perch/'

/** Messages an in-process client holds before it counts as a slow consumer and drops. */
const MAX_PENDING = 10_000

/** The identity of one of perch's own in-process clients: admin rights, no account. */
export function systemClient(name: string): ClientInfo {
  return { clientId: `${LOCAL_CLIENT_PREFIX}${name}`, username: undefined, account: undefined, admin: true, remoteAddress: '', protocolVersion: 5, listener: 'internal' }
}

/** The identity of an in-process client acting for an account: the account's rights, never more. */
export function accountClient(account: string, listener: string): ClientInfo {
  return { clientId: `${LOCAL_CLIENT_PREFIX}${listener}/${account}`, username: account, account, admin: false, remoteAddress: '', protocolVersion: 5, listener }
}

export type LocalHandler = (message: Message) => void

interface FilterEntry {
  readonly id: number
  readonly handlers: Set<{ handler: LocalHandler }>
}

export interface LocalPublishOptions {
  readonly qos?: QoS
  readonly retain?: boolean
  readonly properties?: Message['properties']
}

/**
 * A client inside perch (the ACL's control topics, later rules and bridges): it subscribes
 * and publishes through the same router and the same access checks as a network client. Its
 * messages are handed over after the routing that produced them has finished, never inside it.
 */
export class LocalClient implements PacketSink, Disposable {
  readonly client: ClientInfo
  readonly receiveMaximum = 65_535
  readonly #broker: Broker
  readonly #session: Session
  readonly #filters = new Map<string, FilterEntry>()
  readonly #byId = new Map<number, FilterEntry>()
  #pending: Message[] = []
  #pendingIds: (readonly number[])[] = []
  #nextId = 1
  #scheduled = false
  #closed = false

  constructor(broker: Broker, session: Session, client: ClientInfo) {
    this.#broker = broker
    this.#session = session
    this.client = client
    session.attach(this)
  }

  canWrite(): boolean {
    return !this.#closed && this.#pending.length < MAX_PENDING
  }

  writePublish(delivery: Delivery, _packetId: number, _dup: boolean): void {
    this.#pending.push(delivery.message)
    this.#pendingIds.push(delivery.subscriptionIds ?? [])
    if (this.#scheduled) return
    this.#scheduled = true
    queueMicrotask(() => this.#drain())
  }

  writePubrel(_packetId: number): void {
    // Subscriptions are QoS 0: nothing is ever in flight.
  }

  /**
   * Subscribes under this client's rights; retained messages are not replayed (a control
   * request kept as retained must not run again at every start). Several handlers may share a
   * filter: the broker sees one subscription until the last of them is disposed. Returns
   * undefined when the rights do not allow the filter.
   */
  subscribe(filter: string, handler: LocalHandler): Disposable | undefined {
    let entry = this.#filters.get(filter)
    if (entry === undefined) {
      const decision = this.#broker.hooks.authorizeSubscribe(this.client, filter)
      if (decision === 'deny') return undefined
      entry = { id: this.#nextId++, handlers: new Set() }
      this.#filters.set(filter, entry)
      this.#byId.set(entry.id, entry)
      const options = { qos: 0 as const, noLocal: false, retainAsPublished: true, retainHandling: 2 as const, subscriptionId: entry.id }
      this.#broker.subscribe(this.#session, this.client, filter, options, decision === 'filtered')
    }
    const mine = entry
    const slot = { handler }
    mine.handlers.add(slot)
    return {
      dispose: () => {
        if (!mine.handlers.delete(slot) || mine.handlers.size > 0 || this.#filters.get(filter) !== mine) return
        this.#filters.delete(filter)
        this.#byId.delete(mine.id)
        if (!this.#closed) this.#broker.unsubscribe(this.#session, this.client, filter)
      },
    }
  }

  /** Publishes under this client's rights; false when they do not cover the topic. */
  publish(topic: string, payload: Buffer | string, options: LocalPublishOptions = {}): boolean {
    if (!this.#broker.hooks.authorizePublish(this.client, topic)) {
      this.#broker.denied(this.client, 'publish', topic)
      return false
    }
    const message = createMessage({
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos: options.qos ?? 0,
      retain: options.retain ?? false,
      properties: options.properties,
      expiresAt: undefined,
      origin: this.client.clientId,
    })
    this.#broker.publish(message)
    return true
  }

  dispose(): void {
    if (this.#closed) return
    this.#closed = true
    this.#broker.closeLocal(this)
    this.#filters.clear()
    this.#byId.clear()
    this.#pending = []
    this.#pendingIds = []
  }

  get session(): Session {
    return this.#session
  }

  #drain(): void {
    this.#scheduled = false
    const messages = this.#pending
    const ids = this.#pendingIds
    this.#pending = []
    this.#pendingIds = []
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]
      if (m === undefined) continue
      for (const id of ids[i] ?? []) {
        for (const slot of this.#byId.get(id)?.handlers ?? []) {
          try {
            slot.handler(m)
          } catch (e) {
            this.#broker.localError(this.client, m.topic, e)
          }
        }
      }
    }
  }
}
