import type { SubscribeDecision } from '../mqtt/broker/hooks.js'
import { matchesFilter } from '../mqtt/topic/match.js'
import { filterCovers, filtersOverlap } from '../mqtt/topic/relations.js'
import { ownerOf } from './account-id.js'
import type { AccountRow, AccountSnapshot } from './account-store.js'

/** Who asks: the account a client acts for, and the accounts a handler token serves. */
export interface Principal {
  readonly account: string | undefined
  readonly admin: boolean
  /** Accounts served by a handler token (the JWT `handler` claim). */
  readonly serves?: readonly string[] | undefined
}

/** Topics remembered per account; the cache starts over when full. */
const READ_CACHE_TOPICS = 4096

/**
 * Levels under `/<account>/` that only the owner may publish to: the grant requests and rule
 * pushes (a grantee with publish rights on `/A/#` must not grant itself more or run its own
 * code as A), and `events` and `rules` (rule errors), which only perch writes.
 */
const OWNER_ONLY = ['grant_sub_topic', 'grant_pub_topic', 'revoke_sub_topic', 'revoke_pub_topic', 'scripts']
const SYSTEM_ONLY = ['events', 'rules']

interface Granted {
  readonly publish: string[]
  readonly subscribe: string[]
}

function levelIs(topic: string, from: number, names: readonly string[]): boolean {
  for (const n of names) {
    if (topic.startsWith(n, from)) {
      const end = from + n.length
      if (end === topic.length || topic.charCodeAt(end) === 47) return true
    }
  }
  return false
}

/**
 * The account rights compiled from a snapshot: account A owns `/A/#`; grants add filters of
 * other namespaces; handler roles add whole or partial namespaces to read and publish;
 * admins may do anything; `$` topics are for admins only.
 */
export class Acl {
  readonly #accounts = new Map<string, AccountRow>()
  /** grantee -> owner -> filters. */
  readonly #grants = new Map<string, Map<string, Granted>>()
  /** handler -> account -> filters. */
  readonly #handlers = new Map<string, Map<string, string[]>>()
  /**
   * account -> topic -> readable, for subscriptions checked per delivery: IoT traffic repeats
   * its topics, and a new Acl (any change of rights) starts with empty caches.
   */
  readonly #reads = new Map<string, Map<string, boolean>>()

  constructor(snapshot: AccountSnapshot) {
    for (const a of snapshot.accounts) this.#accounts.set(a.id, a)
    for (const g of snapshot.grants) {
      const granted = entry(entry(this.#grants, g.grantee, () => new Map<string, Granted>()), g.owner, () => ({ publish: [], subscribe: [] }))
      if (g.publish) granted.publish.push(g.filter)
      if (g.subscribe) granted.subscribe.push(g.filter)
    }
    for (const h of snapshot.handlers) {
      entry(entry(this.#handlers, h.handler, () => new Map<string, string[]>()), h.account, () => []).push(`/${h.account}/${h.filter}`)
    }
  }

  /**
   * A copy of `old` with the rights of `ids` taken from `part` (their rows, the grants they hold,
   * the accounts they serve): what a full compile of the store would give, at the cost of the
   * changed accounts. Read caches of the others are kept.
   */
  static patched(old: Acl, ids: ReadonlySet<string>, part: AccountSnapshot): Acl {
    const next = new Acl(part)
    for (const [id, row] of old.#accounts) if (!ids.has(id)) next.#accounts.set(id, row)
    for (const [grantee, owners] of old.#grants) if (!ids.has(grantee)) next.#grants.set(grantee, owners)
    for (const [handler, served] of old.#handlers) if (!ids.has(handler)) next.#handlers.set(handler, served)
    for (const [id, cache] of old.#reads) if (!ids.has(id)) next.#reads.set(id, cache)
    return next
  }

  account(id: string): AccountRow | undefined {
    return this.#accounts.get(id)
  }

  get accounts(): ReadonlyMap<string, AccountRow> {
    return this.#accounts
  }

  /** Hot path: called for every PUBLISH. */
  canPublish(p: Principal, topic: string): boolean {
    if (p.admin) return true
    const a = p.account
    if (a === undefined) return false
    if (topic.charCodeAt(0) === 47 && topic.startsWith(a, 1) && (topic.length === a.length + 1 || topic.charCodeAt(a.length + 1) === 47)) {
      return !levelIs(topic, a.length + 2, SYSTEM_ONLY)
    }
    const owner = ownerOf(topic)
    if (owner === undefined) return false
    const from = owner.length + 2
    if (levelIs(topic, from, OWNER_ONLY) || levelIs(topic, from, SYSTEM_ONLY)) return false
    return this.#served(p, owner, topic) || anyMatch(this.#grants.get(a)?.get(owner)?.publish, topic)
  }

  /** Per delivery, for subscriptions that are not wholly inside a readable subtree. */
  canRead(p: Principal, topic: string): boolean {
    if (p.admin) return true
    const a = p.account
    if (a === undefined) return false
    // Handler tokens carry their own rights: not cached under the account.
    if (p.serves !== undefined) return this.#decideRead(p, a, topic)
    const cache = entry(this.#reads, a, () => new Map<string, boolean>())
    const known = cache.get(topic)
    if (known !== undefined) return known
    const readable = this.#decideRead(p, a, topic)
    if (cache.size >= READ_CACHE_TOPICS) cache.clear()
    cache.set(topic, readable)
    return readable
  }

  #decideRead(p: Principal, a: string, topic: string): boolean {
    const owner = ownerOf(topic)
    if (owner === undefined) return false
    if (owner === a) return true
    return this.#served(p, owner, topic) || anyMatch(this.#grants.get(a)?.get(owner)?.subscribe, topic)
  }

  /** Decided once per subscription: 'allow' when the filter lies inside one readable region. */
  subscribeDecision(p: Principal, filter: string): SubscribeDecision {
    if (p.admin) return 'allow'
    const regions = this.#readRegions(p)
    if (regions.some((r) => filterCovers(r, filter))) return 'allow'
    return regions.some((r) => filtersOverlap(r, filter)) ? 'filtered' : 'deny'
  }

  /** Everything `p` may read, as filters. */
  #readRegions(p: Principal): string[] {
    const a = p.account
    if (a === undefined) return []
    const out = [`/${a}/#`]
    for (const s of p.serves ?? []) out.push(`/${s}/#`)
    for (const filters of this.#handlers.get(a)?.values() ?? []) out.push(...filters)
    for (const g of this.#grants.get(a)?.values() ?? []) out.push(...g.subscribe)
    return out
  }

  #served(p: Principal, owner: string, topic: string): boolean {
    if (p.serves?.includes(owner) === true) return true
    const a = p.account
    return a !== undefined && anyMatch(this.#handlers.get(a)?.get(owner), topic)
  }
}

function entry<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let v = map.get(key)
  if (v === undefined) {
    v = create()
    map.set(key, v)
  }
  return v
}

function anyMatch(filters: readonly string[] | undefined, topic: string): boolean {
  if (filters === undefined) return false
  for (const f of filters) if (matchesFilter(f, topic)) return true
  return false
}
