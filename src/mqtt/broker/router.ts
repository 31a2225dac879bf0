import type { Delivery, Message, QoS } from '../session/message.js'
import type { Session, SubscriptionOptions } from '../session/session.js'
import { RetainedTree } from '../topic/retained.js'
import { SubscriptionTrie } from '../topic/trie.js'
import type { BrokerHooks, ClientInfo } from './hooks.js'

/** One session's subscription to one filter. */
export interface DirectEntry {
  readonly kind: 'direct'
  readonly session: Session
  readonly options: SubscriptionOptions
  /**
   * Set when only topics the reader may read are to be delivered through this filter; changed
   * in place when access rights change, so cached matches follow at once.
   */
  reader: ClientInfo | undefined
}

/** A `$share/group/filter` group: each message goes to one member, round-robin [MQTT-4.8.2]. */
export interface SharedEntry {
  readonly kind: 'shared'
  readonly members: DirectEntry[]
  next: number
}

type Entry = DirectEntry | SharedEntry

interface Target {
  session: Session
  qos: QoS
  retain: boolean
  ids: number[] | undefined
}

/** Topics whose matching entries are remembered; the cache is dropped on any subscription change. */
const MATCH_CACHE_TOPICS = 4096

export interface RouteResult {
  matched: number
}

/**
 * Matches a message against all subscriptions, folds overlapping subscriptions of one
 * session into a single delivery with the highest QoS and every subscription identifier
 * [MQTT-3.3.4-2], [MQTT-3.3.4-5], and hands each session its Delivery. Synchronous.
 */
export class Router {
  readonly #trie = new SubscriptionTrie<Entry>()
  readonly retained = new RetainedTree<Message>()
  readonly #hooks: BrokerHooks
  readonly #targets = new Map<Session, Target>()
  readonly #shared: DirectEntry[] = []
  #message: Message | undefined
  /** IoT traffic repeats the same topics; remembering their matches skips the trie walk. */
  readonly #matchCache = new Map<string, Entry[]>()
  #matching: Entry[] = []
  readonly #gather = (entry: Entry): void => {
    this.#matching.push(entry)
  }

  constructor(hooks: BrokerHooks) {
    this.#hooks = hooks
  }

  get subscriptionCount(): number {
    return this.#trie.size
  }

  route(message: Message, onDeliver: (session: Session, d: Delivery) => void): number {
    this.#message = message
    const entries = this.#entriesFor(message.topic)
    if (entries.length === 0) return 0
    if (entries.length === 1 && entries[0]?.kind === 'direct') return this.#routeOne(entries[0], message, onDeliver)
    for (const e of entries) this.#collect(e)
    let matched = 0
    for (const t of this.#targets.values()) {
      matched++
      onDeliver(t.session, { message, qos: t.qos, retain: t.retain, subscriptionIds: t.ids })
    }
    for (const e of this.#shared) {
      matched++
      onDeliver(e.session, this.#deliveryFor(e, message))
    }
    this.#targets.clear()
    this.#shared.length = 0
    this.#message = undefined
    return matched
  }

  /**
   * Retained messages for a new subscription to `filter`, only those `reader` may read when
   * given; expired ones are dropped from the tree and listed, for the store to forget too.
   */
  retainedFor(filter: string, reader: ClientInfo | undefined, now: number): { found: Message[]; expired: string[] } {
    const found: Message[] = []
    const expired: string[] = []
    this.retained.match(filter, (topic, message) => {
      if (message.expiresAt !== undefined && message.expiresAt <= now) expired.push(topic)
      else if (reader === undefined || this.#hooks.canRead(reader, topic)) found.push(message)
    })
    for (const topic of expired) this.retained.delete(topic)
    return { found, expired }
  }

  #entriesFor(topic: string): Entry[] {
    const cached = this.#matchCache.get(topic)
    if (cached !== undefined) return cached
    this.#matching = []
    this.#trie.match(topic, this.#gather)
    const found = this.#matching
    if (this.#matchCache.size >= MATCH_CACHE_TOPICS) this.#matchCache.clear()
    this.#matchCache.set(topic, found)
    return found
  }

  /** The common case, one plain subscription: no folding needed. */
  #routeOne(e: DirectEntry, message: Message, onDeliver: (session: Session, d: Delivery) => void): number {
    this.#message = undefined
    if (e.options.noLocal && e.session.clientId === message.origin) return 0
    if (e.reader !== undefined && !this.#hooks.canRead(e.reader, message.topic)) return 0
    onDeliver(e.session, this.#deliveryFor(e, message))
    return 1
  }

  add(filter: string, group: string | undefined, entry: DirectEntry): boolean {
    this.#matchCache.clear()
    const clientId = entry.session.clientId
    if (group === undefined) return this.#trie.add(filter, clientId, entry)
    const key = `$share/${group}`
    const existing = this.#trie.get(filter, key)
    if (existing === undefined || existing.kind !== 'shared') {
      this.#trie.add(filter, key, { kind: 'shared', members: [entry], next: 0 })
      return true
    }
    const i = existing.members.findIndex((m) => m.session.clientId === clientId)
    if (i >= 0) {
      existing.members[i] = entry
      return false
    }
    existing.members.push(entry)
    return true
  }

  /** Drops remembered matches (after readers changed). */
  forgetMatches(): void {
    this.#matchCache.clear()
  }

  /** A session's entry for a filter, plain or in a shared group. */
  entry(filter: string, group: string | undefined, clientId: string): DirectEntry | undefined {
    if (group === undefined) {
      const e = this.#trie.get(filter, clientId)
      return e?.kind === 'direct' ? e : undefined
    }
    const existing = this.#trie.get(filter, `$share/${group}`)
    return existing?.kind === 'shared' ? existing.members.find((m) => m.session.clientId === clientId) : undefined
  }

  remove(filter: string, group: string | undefined, clientId: string): boolean {
    this.#matchCache.clear()
    if (group === undefined) return this.#trie.remove(filter, clientId) !== undefined
    const key = `$share/${group}`
    const existing = this.#trie.get(filter, key)
    if (existing === undefined || existing.kind !== 'shared') return false
    const i = existing.members.findIndex((m) => m.session.clientId === clientId)
    if (i < 0) return false
    existing.members.splice(i, 1)
    if (existing.members.length === 0) this.#trie.remove(filter, key)
    return true
  }

  #collect(entry: Entry): void {
    const message = this.#message
    if (message === undefined) return
    if (entry.kind === 'shared') {
      const member = this.#pickMember(entry, message)
      if (member !== undefined) this.#shared.push(member)
      return
    }
    if (entry.options.noLocal && entry.session.clientId === message.origin) return
    if (entry.reader !== undefined && !this.#hooks.canRead(entry.reader, message.topic)) return
    const qos = Math.min(entry.options.qos, message.qos) as QoS
    const retain = entry.options.retainAsPublished && message.retain
    const id = entry.options.subscriptionId
    const t = this.#targets.get(entry.session)
    if (t === undefined) {
      this.#targets.set(entry.session, { session: entry.session, qos, retain, ids: id === undefined ? undefined : [id] })
      return
    }
    if (qos > t.qos) t.qos = qos
    if (retain) t.retain = true
    if (id !== undefined) {
      if (t.ids === undefined) t.ids = [id]
      else t.ids.push(id)
    }
  }

  /** Prefers connected members, so a message is not parked with an offline one. */
  #pickMember(group: SharedEntry, message: Message): DirectEntry | undefined {
    const n = group.members.length
    let fallback: DirectEntry | undefined
    for (let i = 0; i < n; i++) {
      const idx = (group.next + i) % n
      const m = group.members[idx]
      if (m === undefined) continue
      if (m.reader !== undefined && !this.#hooks.canRead(m.reader, message.topic)) continue
      if (m.session.connected) {
        group.next = (idx + 1) % n
        return m
      }
      fallback ??= m
    }
    if (fallback !== undefined) group.next = (group.next + 1) % n
    return fallback
  }

  #deliveryFor(e: DirectEntry, message: Message): Delivery {
    const id = e.options.subscriptionId
    return {
      message,
      qos: Math.min(e.options.qos, message.qos) as QoS,
      retain: e.options.retainAsPublished && message.retain,
      subscriptionIds: id === undefined ? undefined : [id],
    }
  }
}
