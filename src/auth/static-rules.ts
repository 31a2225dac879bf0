import type { AuthResult, BrokerHooks, ClientInfo, ConnectRequest, SubscribeDecision } from '../mqtt/broker/hooks.js'
import { RC } from '../mqtt/protocol/reason-codes.js'
import { matchesFilter } from '../mqtt/topic/match.js'
import { filterCovers, filtersOverlap } from '../mqtt/topic/relations.js'
import { parseShared } from '../mqtt/topic/validate.js'

const UNSAFE_IN_LEVEL = /[/+#]/

export type Access = 'publish' | 'subscribe' | 'both'

export interface StaticRule {
  readonly action: 'allow' | 'deny'
  readonly access: Access
  /** A topic filter; `{username}` and `{clientid}` are replaced by the client's own. */
  readonly topic: string
  /** The rule applies to this username only; to everyone when absent. */
  readonly username: string | undefined
}

export interface StaticRulesConfig {
  readonly rules: readonly StaticRule[]
  readonly defaultAction: 'allow' | 'deny'
  readonly allowAnonymous: boolean
}

/**
 * Access from an ordered rule list: the first rule whose filter matches a topic decides,
 * otherwise the default. Usernames are taken as given: password checks come with accounts.
 */
export class StaticRuleHooks implements BrokerHooks {
  readonly name = 'static'
  readonly #config: StaticRulesConfig

  constructor(config: StaticRulesConfig) {
    this.#config = config
  }

  authenticate(req: ConnectRequest): AuthResult {
    if (req.username === undefined && !this.#config.allowAnonymous) {
      return { ok: false, reasonCode: RC.NOT_AUTHORIZED, reason: 'anonymous clients are not allowed' }
    }
    return { ok: true, identity: { username: req.username, account: undefined, admin: false } }
  }

  authorizePublish(client: ClientInfo, topic: string): boolean {
    return this.#decideTopic(client, 'publish', topic)
  }

  canRead(client: ClientInfo, topic: string): boolean {
    return this.#decideTopic(client, 'subscribe', topic)
  }

  /**
   * 'allow' or 'deny' when the first rule that overlaps the filter covers all of it (so it is
   * the first match for every topic the filter can see); 'filtered' when rules split it.
   */
  authorizeSubscribe(client: ClientInfo, filter: string): SubscribeDecision {
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return 'deny'
    const inner = parsed.filter
    const rules = this.#applicable(client, 'subscribe')
    const first = rules.find((r) => filtersOverlap(r.topic, inner))
    if (first === undefined) return this.#config.defaultAction
    if (filterCovers(first.topic, inner)) return first.action
    const anyAllowed = this.#config.defaultAction === 'allow' || rules.some((r) => r.action === 'allow' && filtersOverlap(r.topic, inner))
    return anyAllowed ? 'filtered' : 'deny'
  }

  #decideTopic(client: ClientInfo, access: 'publish' | 'subscribe', topic: string): boolean {
    for (const r of this.#applicable(client, access)) {
      if (matchesFilter(r.topic, topic)) return r.action === 'allow'
    }
    return this.#config.defaultAction === 'allow'
  }

  #applicable(client: ClientInfo, access: 'publish' | 'subscribe'): StaticRule[] {
    const out: StaticRule[] = []
    for (const r of this.#config.rules) {
      if (r.access !== 'both' && r.access !== access) continue
      if (r.username !== undefined && r.username !== client.username) continue
      if (!r.topic.includes('{')) {
        out.push(r)
        continue
      }
      const username = client.username
      const unusable = (name: string | undefined): boolean => name === undefined || name === '' || UNSAFE_IN_LEVEL.test(name)
      if ((r.topic.includes('{username}') && unusable(username)) || (r.topic.includes('{clientid}') && unusable(client.clientId))) {
        // A name with '/', '+' or '#' would widen the rule, a missing one would leave its level
        // empty: such a client gets nothing from an allow rule, and a deny rule denies it all.
        if (r.action === 'deny') out.push({ ...r, topic: '#' })
        continue
      }
      out.push({ ...r, topic: r.topic.replaceAll('{username}', username ?? '').replaceAll('{clientid}', client.clientId) })
    }
    return out
  }
}
