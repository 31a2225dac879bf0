import type { Clock } from '../../core/clock.js'
import type { DeadlineHandle, DeadlineQueue } from '../../core/deadlines.js'
import type { Logger } from '../../core/logger.js'
import type { Disposable } from '../../core/scope.js'
import { QueueBudget } from '../session/budget.js'
import { createMessage, type Delivery, type Message } from '../session/message.js'
import {
  type DeliverOutcome,
  type DropCounter,
  NEVER_EXPIRES,
  Session,
  type SessionDeps,
  type SessionLimits,
  type SubscriptionOptions,
} from '../session/session.js'
import type { SessionStore, StoredSession, StoredState } from '../session/store.js'
import { parseShared } from '../topic/validate.js'
import { BrokerEvents } from './events.js'
import type { BrokerHooks, ClientInfo } from './hooks.js'
import { LocalClient } from './local-client.js'
import { ownerOf, planRestore, storedWill } from './restored.js'
import { type DirectEntry, Router } from './router.js'
import { BrokerStats } from './stats.js'

export interface BrokerLimits extends SessionLimits {
  /** Upper bound on any session's expiry interval, in seconds. */
  maxSessionExpiry: number
  /** Messages and bytes queued across all sessions together. */
  maxQueuedMessagesTotal: number
  maxQueuedBytesTotal: number
}

/** The broker's view of a live connection. */
export interface ClientLink {
  readonly client: ClientInfo
  /**
   * Closes the connection because another one took its client id [MQTT-3.1.4-3]; must call
   * `broker.closeSession` for this link before it returns.
   */
  takeOver(): void
  /** Closes the connection with a v5 reason code (an administrative action). */
  disconnect(reasonCode: number, reason: string): void
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
  readonly sessions = new Map<string, Session>()
  readonly budget: QueueBudget
  readonly #store: SessionStore
  readonly #sessionDeps: SessionDeps
  readonly #deps: BrokerDeps
  readonly #live = new Map<string, LiveLink>()
  /** Whom each session acts for: its connection's client, or the stored owner while offline. */
  readonly #owners = new Map<string, ClientInfo>()
  readonly #locals = new Map<string, LocalClient>()
  readonly #expiries = new Map<string, DeadlineHandle>()
  readonly #wills = new Map<string, { handle: DeadlineHandle; fire: () => void }>()
  readonly #drops: DropCounter
  #nextDropLog = 0
  readonly #deliver = (session: Session, d: Delivery): void => {
    session.deliver(d)
  }

  constructor(deps: BrokerDeps) {
    this.#deps = deps
    this.#store = deps.store
    this.router = new Router(deps.hooks)
    this.stats = new BrokerStats(deps.clock.now())
    this.#drops = {
      dropped: (reason, d) => this.#countDrop(reason, d),
      expired: () => {
        this.stats.droppedExpired++
      },
    }
    this.budget = new QueueBudget(deps.limits.maxQueuedMessagesTotal, deps.limits.maxQueuedBytesTotal)
    this.#sessionDeps = { limits: deps.limits, drops: this.#drops, now: () => deps.clock.now(), store: deps.store, budget: this.budget }
  }

  /** Runs `fn` once everything recorded so far is durable: how acks keep the durability promise. */
  afterCommit(fn: (error: Error | undefined) => void): void {
    this.#store.afterCommit(fn)
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
      session = new Session(id, expiryInterval, this.#sessionDeps)
      this.sessions.set(id, session)
    }
    session.expiryInterval = expiryInterval
    if (session.persistent) {
      // Recorded as connected (no deadline): after a crash its will goes out and its expiry restarts.
      this.#store.saveSession(id, ownerOf(link.client), expiryInterval, undefined)
      this.#store.saveWill(id, req.will === undefined ? undefined : storedWill(req.will, undefined))
    }
    this.#live.set(id, { link, session, will: req.will })
    this.#owners.set(id, link.client)
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
    const now = this.#deps.clock.now()
    let pendingAt: number | undefined
    if (will !== undefined && req.publishWill) {
      const delay = Math.min(will.delaySeconds, expiry)
      if (delay <= 0) this.#publishWill(link.client, will)
      else {
        pendingAt = now + delay * 1000
        this.#scheduleWill(link.client, will, pendingAt)
      }
    }
    if (expiry === 0) this.#removeSession(session)
    else {
      const expiresAt = expiry === NEVER_EXPIRES ? undefined : now + expiry * 1000
      if (expiresAt !== undefined) this.#scheduleExpiry(session, expiresAt)
      if (session.persistent) {
        this.#store.saveSession(id, ownerOf(link.client), expiry, expiresAt)
        this.#store.saveWill(id, pendingAt === undefined || will === undefined ? undefined : storedWill(will, pendingAt))
      }
    }
    this.events.emit({ type: 'client.disconnected', client: link.client, reason: req.reason })
  }

  /** Routes a message that passed authorization; returns how many sessions it matched. */
  publish(message: Message, counted = true): number {
    if (counted) this.stats.messagesReceived++
    if (message.retain) {
      // $SYS statistics are rebuilt at every start: keeping them would mean a disk write per interval.
      const durable = !message.topic.startsWith('$SYS/')
      // An empty retained payload clears the topic and is itself not stored [MQTT-3.3.1-10], [MQTT-3.3.1-11].
      if (message.payload.length === 0) {
        if (this.router.retained.delete(message.topic) && durable) this.#store.deleteRetained(message.topic)
      } else {
        this.router.retained.set(message.topic, message)
        if (durable) this.#store.setRetained(message)
      }
    }
    return this.router.route(message, this.#deliver)
  }

  /** Takes back a message the store could not keep, from every persistent session and the retained store. */
  withdraw(message: Message): void {
    for (const session of this.sessions.values()) if (session.persistent) session.withdraw(message)
    if (message.retain && this.router.retained.get(message.topic) === message) {
      this.router.retained.delete(message.topic)
      this.#store.deleteRetained(message.topic)
    }
  }

  subscribe(session: Session, client: ClientInfo, filter: string, options: SubscriptionOptions, filtered: boolean): boolean {
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return false
    const group = parsed.kind === 'shared' ? parsed.group : undefined
    const entry: DirectEntry = { kind: 'direct', session, options, reader: filtered ? client : undefined }
    this.router.add(parsed.filter, group, entry)
    const isNew = session.subscribe(filter, options)
    this.events.emit({ type: 'client.subscribed', client, filter, qos: options.qos })
    return isNew
  }

  /** Sends retained messages for a new subscription [MQTT-3.3.1-9], honouring retain handling [MQTT-3.8.3-5]. */
  sendRetained(session: Session, client: ClientInfo, filter: string, options: SubscriptionOptions, isNew: boolean, filtered: boolean): void {
    if (options.retainHandling === 2 || (options.retainHandling === 1 && !isNew)) return
    const parsed = parseShared(filter)
    if (parsed.kind !== 'plain') return // shared subscriptions get no retained messages [MQTT-4.8.2-...]
    const id = options.subscriptionId
    const { found, expired } = this.router.retainedFor(parsed.filter, filtered ? client : undefined, this.#deps.clock.now())
    for (const topic of expired) this.#store.deleteRetained(topic)
    for (const message of found) {
      session.deliver({ message, qos: Math.min(options.qos, message.qos) as 0 | 1 | 2, retain: true, subscriptionIds: id === undefined ? undefined : [id] })
    }
  }

  unsubscribe(session: Session, client: ClientInfo, filter: string): boolean {
    if (!session.unsubscribe(filter)) return false
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return false
    this.router.remove(parsed.filter, parsed.kind === 'shared' ? parsed.group : undefined, session.clientId)
    this.events.emit({ type: 'client.unsubscribed', client, filter })
    return true
  }

  /**
   * Brings back what the store kept: retained messages, and persistent sessions with their
   * subscriptions (re-authorized under today's rules), queues, in-flight state, wills and
   * expiry deadlines. What expired while perch was down is dropped now.
   */
  restore(state: StoredState): { sessions: number; expired: number; retained: number } {
    const now = this.#deps.clock.now()
    let retained = 0
    for (const m of state.retained) {
      if (m.expiresAt !== undefined && m.expiresAt <= now) this.#store.deleteRetained(m.topic)
      else {
        this.router.retained.set(m.topic, m)
        retained++
      }
    }
    let expired = 0
    // Wills that fell due while perch was down go out once every session is back to receive them.
    const due: (() => void)[] = []
    for (const s of state.sessions) {
      if (this.#restoreSession(s, now, due)) continue
      expired++
      this.events.emit({ type: 'session.expired', clientId: s.clientId })
    }
    for (const publish of due) publish()
    return { sessions: this.sessions.size, expired, retained }
  }

  /** False when the session had ended while perch was down. */
  #restoreSession(s: StoredSession, now: number, due: (() => void)[]): boolean {
    const { client, expiresAt, will, willAt } = planRestore(s, now)
    if (expiresAt !== undefined && expiresAt <= now) {
      if (will !== undefined) due.push(() => this.#publishWill(client, will))
      this.#store.deleteSession(s.clientId)
      this.stats.sessionsExpired++
      return false
    }
    const session = new Session(s.clientId, s.expiryInterval, this.#sessionDeps)
    session.restore(s)
    this.sessions.set(s.clientId, session)
    this.#owners.set(s.clientId, client)
    const hooks = this.#deps.hooks
    for (const [filter, options] of s.subscriptions) {
      const parsed = parseShared(filter)
      if (parsed.kind === 'invalid') {
        session.unsubscribe(filter)
        continue
      }
      // As after a live revoke: a subscription no longer allowed stays, delivering only what
      // its owner may read (nothing, until a grant gives it back).
      const reader = hooks.authorizeSubscribe(client, filter) === 'allow' ? undefined : client
      this.router.add(parsed.filter, parsed.kind === 'shared' ? parsed.group : undefined, { kind: 'direct', session, options, reader })
    }
    const unreadable = session.withdrawWhere((m) => !hooks.canRead(client, m.topic))
    if (unreadable > 0) this.#deps.logger.info('session.withdrawn', { clientId: s.clientId, messages: unreadable, reason: 'no longer readable' })
    if (expiresAt !== undefined) this.#scheduleExpiry(session, expiresAt)
    if (will !== undefined) {
      if (willAt <= now) {
        due.push(() => this.#publishWill(client, will))
        this.#store.saveWill(s.clientId, undefined)
      } else {
        this.#scheduleWill(client, will, willAt)
        if (s.will?.publishAt === undefined) this.#store.saveWill(s.clientId, storedWill(will, willAt))
      }
    }
    if (s.expiresAt === undefined) this.#store.saveSession(s.clientId, s.owner, s.expiryInterval, expiresAt)
    return true
  }

  /** The client a live connection or in-process client with this id acts for. */
  clientOf(clientId: string): ClientInfo | undefined {
    return this.#live.get(clientId)?.link.client ?? this.#locals.get(clientId)?.client
  }

  /** An in-process client with `client`'s identity; its id must start with LOCAL_CLIENT_PREFIX. */
  openLocal(client: ClientInfo): LocalClient {
    this.#locals.get(client.clientId)?.dispose()
    const local = new LocalClient(this, new Session(client.clientId, 0, this.#sessionDeps), client)
    this.#locals.set(client.clientId, local)
    return local
  }

  closeLocal(local: LocalClient): void {
    if (this.#locals.get(local.client.clientId) !== local) return
    this.#locals.delete(local.client.clientId)
    this.#removeSession(local.session)
  }

  /** Reports a handler of an in-process client that threw: the message is lost, perch goes on. */
  localError(client: ClientInfo, topic: string, error: unknown): void {
    this.#deps.logger.error('local.handler-failed', { clientId: client.clientId, topic, error: error instanceof Error ? error.message : String(error) })
  }

  /** Counts and reports a publish or subscription the client's rights do not allow. */
  denied(client: ClientInfo, action: 'publish' | 'subscribe' | 'will', topic: string): void {
    if (action !== 'subscribe') this.stats.publishDenied++
    this.#deps.logger.debug(`${action}.denied`, { clientId: client.clientId, topic })
    this.events.emit({ type: 'access.denied', client, action, topic })
  }

  /**
   * Decides every subscription of the clients `affected` picks again under the current rights,
   * and takes back what they may no longer read from their queues: a revoked grant stops
   * delivery at once. A subscription no longer allowed stays, delivering nothing, so a grant
   * given back resumes it. Returns how many messages were taken back.
   */
  reauthorize(affected: (client: ClientInfo) => boolean): number {
    const hooks = this.#deps.hooks
    let withdrawn = 0
    const sessions: [Session, ClientInfo][] = []
    for (const [id, session] of this.sessions) {
      const client = this.#owners.get(id)
      if (client !== undefined && affected(client)) sessions.push([session, client])
    }
    for (const local of this.#locals.values()) if (affected(local.client)) sessions.push([local.session, local.client])
    for (const [session, client] of sessions) {
      for (const filter of session.subscriptions.keys()) {
        const parsed = parseShared(filter)
        if (parsed.kind === 'invalid') continue
        const entry = this.router.entry(parsed.filter, parsed.kind === 'shared' ? parsed.group : undefined, session.clientId)
        if (entry !== undefined) entry.reader = hooks.authorizeSubscribe(client, filter) === 'allow' ? undefined : client
      }
      withdrawn += session.withdrawWhere((m) => !hooks.canRead(client, m.topic))
    }
    this.router.forgetMatches()
    return withdrawn
  }

  /** Disconnects the live clients `which` picks (a disabled or removed account); returns how many. */
  kick(which: (client: ClientInfo) => boolean, reasonCode: number, reason: string): number {
    const links = [...this.#live.values()].filter((l) => which(l.link.client))
    for (const l of links) l.link.disconnect(reasonCode, reason)
    return links.length
  }

  #scheduleWill(client: ClientInfo, will: Will, at: number): void {
    const id = client.clientId
    const fire = (): void => {
      this.#wills.delete(id)
      this.#publishWill(client, will)
      if (this.sessions.get(id)?.persistent === true) this.#store.saveWill(id, undefined)
    }
    this.#wills.set(id, { handle: this.#deps.deadlines.at(at, fire), fire })
  }

  #scheduleExpiry(session: Session, at: number): void {
    this.#expiries.set(session.clientId, this.#deps.deadlines.at(at, () => this.#expire(session)))
  }

  dispose(): void {
    for (const w of this.#wills.values()) w.handle.cancel()
    for (const h of this.#expiries.values()) h.cancel()
    this.#wills.clear()
    this.#expiries.clear()
  }

  #publishWill(client: ClientInfo, will: Will): void {
    if (!this.#deps.hooks.authorizePublish(client, will.message.topic)) {
      this.denied(client, 'will', will.message.topic)
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
    this.#owners.delete(session.clientId)
    if (session.persistent) this.#store.deleteSession(session.clientId)
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
