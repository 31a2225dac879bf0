import type { Clock } from '../../core/clock.js'
import type { DeadlineHandle, DeadlineQueue } from '../../core/deadlines.js'
import type { Logger } from '../../core/logger.js'
import type { Disposable } from '../../core/scope.js'
import { createMessage, type Delivery, type Message } from '../session/message.js'
import type { SessionStore } from '../session/ports.js'
import { type DeliverOutcome, type DropCounter, NEVER_EXPIRES, Session, type SessionLimits, type SubscriptionOptions } from '../session/session.js'
import { parseShared } from '../topic/validate.js'
import { BrokerEvents } from './events.js'
import type { BrokerHooks, ClientInfo } from './hooks.js'
import { type DirectEntry, Router } from './router.js'
import { BrokerStats } from './stats.js'

export interface BrokerLimits extends SessionLimits {
  /** Upper bound on any session's expiry interval, in seconds. */
  maxSessionExpiry: number
}

/** The broker's view of a live connection. */
export interface ClientLink {
  readonly client: ClientInfo
  /**
   * Closes the connection because another one took its client id [MQTT-3.1.4-3]; must call
   * `broker.closeSession` for this link before it returns.
   */
  takeOver(): void
}

export interface Will {
  readonly message: Message
  readonly delaySeconds: number
  /** v5 Message Expiry of the will, counted from when it is published. */
  readonly expirySeconds: number | undefined
}

export interface OpenRequest {
  readonly cleanStart: boolean
  readonly expiryInterval: number
  readonly will: Will | undefined
}

export interface CloseRequest {
  readonly publishWill: boolean
  /** v5 DISCONNECT may change the expiry interval [MQTT-3.14.2-2]. */
  readonly expiryInterval: number | undefined
  readonly reason: string
}

export interface BrokerDeps {
  readonly hooks: BrokerHooks
  readonly store: SessionStore
  readonly clock: Clock
  readonly deadlines: DeadlineQueue
  readonly logger: Logger
  readonly limits: BrokerLimits
}

const DROP_LOG_INTERVAL_MS = 10_000

interface LiveLink {
  readonly link: ClientLink
  readonly session: Session
  readonly will: Will | undefined
}

/**
 * The registry of sessions and live connections: session takeover, clean start, session
 * expiry and wills (with v5 will delay), all on absolute deadlines; publishing into the router.
 */
export class Broker implements Disposable {
  readonly stats: BrokerStats
  readonly events = new BrokerEvents()
  readonly router: Router
  readonly sessions: SessionStore
  readonly #deps: BrokerDeps
  readonly #live = new Map<string, LiveLink>()
  readonly #expiries = new Map<string, DeadlineHandle>()
  readonly #wills = new Map<string, { handle: DeadlineHandle; fire: () => void }>()
  readonly #drops: DropCounter
  #nextDropLog = 0
  readonly #deliver = (session: Session, d: Delivery): void => {
    session.deliver(d)
  }

  constructor(deps: BrokerDeps) {
    this.#deps = deps
    this.sessions = deps.store
    this.router = new Router(deps.hooks)
    this.stats = new BrokerStats(deps.clock.now())
    this.#drops = {
      dropped: (reason, d) => this.#countDrop(reason, d),
      expired: () => {
        this.stats.droppedExpired++
      },
    }
  }

  get hooks(): BrokerHooks {
    return this.#deps.hooks
  }

  get liveCount(): number {
    return this.#live.size
  }

  hasLive(clientId: string): boolean {
    return this.#live.has(clientId)
  }

  isLive(link: ClientLink): boolean {
    return this.#live.get(link.client.clientId)?.link === link
  }

  /** Attaches a connection to its session, taking over any older connection first. */
  openSession(link: ClientLink, req: OpenRequest): { session: Session; sessionPresent: boolean; expiryInterval: number } {
    const id = link.client.clientId
    this.#live.get(id)?.link.takeOver()
    // A reconnect to the session before the will delay ends cancels the will [MQTT-3.1.3-9];
    // a clean start ends that session instead, and a session's end publishes it [MQTT-3.1.2-8].
    const pendingWill = this.#wills.get(id)
    pendingWill?.handle.cancel()
    this.#wills.delete(id)
    if (pendingWill !== undefined && req.cleanStart) pendingWill.fire()
    this.#expiries.get(id)?.cancel()
    this.#expiries.delete(id)
    const expiryInterval = Math.min(req.expiryInterval, this.#deps.limits.maxSessionExpiry)
    let session = this.sessions.get(id)
    if (session !== undefined && req.cleanStart) {
      this.#removeSession(session)
      session = undefined
    }
    const sessionPresent = session !== undefined
    if (session === undefined) {
      session = new Session(id, expiryInterval, this.#deps.limits, this.#drops, () => this.#deps.clock.now())
      this.sessions.put(session)
    }
    session.expiryInterval = expiryInterval
    this.#live.set(id, { link, session, will: req.will })
    return { session, sessionPresent, expiryInterval }
  }

  /** Releases a connection; its will and session expiry are scheduled on absolute deadlines. */
  closeSession(link: ClientLink, req: CloseRequest): void {
    const id = link.client.clientId
    const live = this.#live.get(id)
    if (live === undefined || live.link !== link) return
    this.#live.delete(id)
    const { session, will } = live
    session.detach()
    if (req.expiryInterval !== undefined) session.expiryInterval = Math.min(req.expiryInterval, this.#deps.limits.maxSessionExpiry)
    const expiry = session.expiryInterval
    if (will !== undefined && req.publishWill) {
      const delay = Math.min(will.delaySeconds, expiry)
      if (delay <= 0) this.#publishWill(link.client, will)
      else {
        const fire = (): void => {
          this.#wills.delete(id)
          this.#publishWill(link.client, will)
        }
        this.#wills.set(id, { handle: this.#deps.deadlines.at(this.#deps.clock.now() + delay * 1000, fire), fire })
      }
    }
    if (expiry === 0) this.#removeSession(session)
    else if (expiry !== NEVER_EXPIRES) {
      this.#expiries.set(
        id,
        this.#deps.deadlines.at(this.#deps.clock.now() + expiry * 1000, () => this.#expire(session)),
      )
    }
    this.events.emit({ type: 'client.disconnected', client: link.client, reason: req.reason })
  }

  /** Routes a message that passed authorization; returns how many sessions it matched. */
  publish(message: Message, counted = true): number {
    if (counted) this.stats.messagesReceived++
    if (message.retain) {
      // An empty retained payload clears the topic and is itself not stored [MQTT-3.3.1-10], [MQTT-3.3.1-11].
      if (message.payload.length === 0) this.router.retained.delete(message.topic)
      else this.router.retained.set(message.topic, message)
    }
    return this.router.route(message, this.#deliver)
  }

  subscribe(session: Session, client: ClientInfo, filter: string, options: SubscriptionOptions, filtered: boolean): boolean {
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return false
    const group = parsed.kind === 'shared' ? parsed.group : undefined
    const entry: DirectEntry = { kind: 'direct', session, options, reader: filtered ? client : undefined }
    const isNew = !session.subscriptions.has(filter)
    this.router.add(parsed.filter, group, entry)
    session.subscriptions.set(filter, options)
    this.events.emit({ type: 'client.subscribed', client, filter, qos: options.qos })
    return isNew
  }

  /** Sends retained messages for a new subscription [MQTT-3.3.1-9], honouring retain handling [MQTT-3.8.3-5]. */
  sendRetained(session: Session, client: ClientInfo, filter: string, options: SubscriptionOptions, isNew: boolean, filtered: boolean): void {
    if (options.retainHandling === 2 || (options.retainHandling === 1 && !isNew)) return
    const parsed = parseShared(filter)
    if (parsed.kind !== 'plain') return // shared subscriptions get no retained messages [MQTT-4.8.2-...]
    const now = this.#deps.clock.now()
    const hooks = this.#deps.hooks
    const id = options.subscriptionId
    const found: Message[] = []
    this.router.retained.match(parsed.filter, (topic, message) => {
      if (message.expiresAt !== undefined && message.expiresAt <= now) {
        this.router.retained.delete(topic)
        return
      }
      if (filtered && !hooks.canRead(client, topic)) return
      found.push(message)
    })
    for (const message of found) {
      session.deliver({ message, qos: Math.min(options.qos, message.qos) as 0 | 1 | 2, retain: true, subscriptionIds: id === undefined ? undefined : [id] })
    }
  }

  unsubscribe(session: Session, client: ClientInfo, filter: string): boolean {
    if (!session.subscriptions.delete(filter)) return false
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return false
    this.router.remove(parsed.filter, parsed.kind === 'shared' ? parsed.group : undefined, session.clientId)
    this.events.emit({ type: 'client.unsubscribed', client, filter })
    return true
  }

  dispose(): void {
    for (const w of this.#wills.values()) w.handle.cancel()
    for (const h of this.#expiries.values()) h.cancel()
    this.#wills.clear()
    this.#expiries.clear()
  }

  #publishWill(client: ClientInfo, will: Will): void {
    if (!this.#deps.hooks.authorizePublish(client, will.message.topic)) {
      this.stats.publishDenied++
      this.#deps.logger.warn('will.denied', { clientId: client.clientId, topic: will.message.topic })
      return
    }
    this.stats.willsPublished++
    const m = will.message
    const expiresAt = will.expirySeconds === undefined ? undefined : this.#deps.clock.now() + will.expirySeconds * 1000
    this.publish(expiresAt === undefined ? m : createMessage({ ...m, expiresAt }))
  }

  #expire(session: Session): void {
    const id = session.clientId
    this.#expiries.delete(id)
    if (this.#live.has(id)) return
    const pendingWill = this.#wills.get(id)
    if (pendingWill !== undefined) {
      // The will goes out when the session ends, if that comes before its delay [MQTT-3.1.3-9].
      pendingWill.handle.cancel()
      pendingWill.fire()
    }
    this.stats.sessionsExpired++
    this.#removeSession(session)
    this.events.emit({ type: 'session.expired', clientId: id })
  }

  #removeSession(session: Session): void {
    for (const filter of [...session.subscriptions.keys()]) {
      const parsed = parseShared(filter)
      if (parsed.kind !== 'invalid') {
        this.router.remove(parsed.filter, parsed.kind === 'shared' ? parsed.group : undefined, session.clientId)
      }
    }
    session.reset()
    this.sessions.delete(session.clientId)
  }

  /** Counts every drop; logs at most one line per interval so a flood of drops cannot flood the log. */
  #countDrop(reason: DeliverOutcome, d: Delivery): void {
    if (reason === 'dropped-full') this.stats.droppedQueueFull++
    else if (reason === 'dropped-slow') this.stats.droppedSlowConsumer++
    const now = this.#deps.clock.now()
    if (now < this.#nextDropLog) return
    this.#nextDropLog = now + DROP_LOG_INTERVAL_MS
    this.#deps.logger.warn('message.dropped', {
      reason,
      topic: d.message.topic,
      queueFull: this.stats.droppedQueueFull,
      slowConsumer: this.stats.droppedSlowConsumer,
    })
  }
}
