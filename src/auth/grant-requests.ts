import type { Disposable } from '../core/scope.js'
import type { Broker } from '../mqtt/broker/broker.js'
import type { LocalClient } from '../mqtt/broker/local-client.js'
import type { Message } from '../mqtt/session/message.js'
import { validTopicFilter } from '../mqtt/topic/validate.js'
import { accountIdProblem, ownerOf } from './account-id.js'
import type { AccountStore, Rights } from './account-store.js'

const REQUESTS: Record<string, { grant: boolean; rights: Rights }> = {
  grant_sub_topic: { grant: true, rights: { publish: false, subscribe: true } },
  grant_pub_topic: { grant: true, rights: { publish: true, subscribe: false } },
  revoke_sub_topic: { grant: false, rights: { publish: false, subscribe: true } },
  revoke_pub_topic: { grant: false, rights: { publish: true, subscribe: false } },
}

export interface GrantLimits {
  readonly maxTopicLength: number
  readonly maxTopicLevels: number
}

/**
 * Grants over MQTT, as the reference process engine has them: `{"name": "mytopic",
 * "accountId": "B"}` published to `/A/grant_sub_topic` (or `grant_pub_topic`,
 * `revoke_sub_topic`, `revoke_pub_topic`). Only A or an admin can publish there (the Acl sees
 * to it). The answer goes to `<request topic>/result` and to the v5 response topic.
 */
export class GrantRequests implements Disposable {
  readonly #subscriptions: Disposable[] = []
  readonly #broker: Broker
  readonly #local: LocalClient
  readonly #store: AccountStore
  readonly #limits: GrantLimits
  readonly #changed: (grantee: string) => void

  constructor(broker: Broker, local: LocalClient, store: AccountStore, limits: GrantLimits, changed: (grantee: string) => void) {
    this.#broker = broker
    this.#local = local
    this.#store = store
    this.#limits = limits
    this.#changed = changed
    for (const name of Object.keys(REQUESTS)) {
      const sub = local.subscribe(`/+/${name}`, (m) => this.#handle(m, name))
      if (sub !== undefined) this.#subscriptions.push(sub)
    }
  }

  dispose(): void {
    for (const s of this.#subscriptions.splice(0)) s.dispose()
  }

  #handle(message: Message, name: string): void {
    const owner = ownerOf(message.topic)
    const kind = REQUESTS[name]
    if (owner === undefined || kind === undefined) return
    const result = this.#apply(owner, kind, message.payload)
    const body = JSON.stringify(result === null ? { ok: true } : { ok: false, error: result })
    this.#local.publish(`${message.topic}/result`, body, { qos: 1 })
    const responseTopic = message.properties?.responseTopic
    if (responseTopic !== undefined && this.#mayAnswerAt(message, owner, responseTopic)) {
      const correlationData = message.properties?.correlationData
      this.#local.publish(responseTopic, body, { qos: 1, properties: correlationData === undefined ? undefined : { correlationData } })
    }
  }

  /** Null on success, else what is wrong. */
  #apply(owner: string, kind: { grant: boolean; rights: Rights }, payload: Buffer): string | null {
    let body: unknown
    try {
      body = JSON.parse(payload.toString('utf8'))
    } catch {
      return 'the request is not JSON: expected {"name": "<topic or filter>", "accountId": "<account>"}'
    }
    if (typeof body !== 'object' || body === null) return 'the request must be a JSON object'
    const { name, accountId } = body as { name?: unknown; accountId?: unknown }
    if (typeof name !== 'string' || name.length === 0) return `"name" must be a topic or filter under /${owner}/`
    if (typeof accountId !== 'string') return '"accountId" must name the account to grant to'
    const idProblem = accountIdProblem(accountId)
    if (idProblem !== null) return `"accountId": ${idProblem}`
    if (accountId === owner) return 'an account already has every right in its own namespace'
    // A relative name lies under the owner's namespace, as in the reference engine.
    const filter = name.startsWith('/') ? name : `/${owner}/${name}`
    if (!filter.startsWith(`/${owner}/`)) return `"${name}" is outside /${owner}/: an account grants only its own topics`
    const invalid = validTopicFilter(filter, this.#limits.maxTopicLength, this.#limits.maxTopicLevels)
    if (invalid !== null) return `"${name}": ${invalid}`
    if (this.#store.account(accountId) === undefined) return `no account "${accountId}"`
    let r: { ok: boolean; error?: string }
    try {
      r = kind.grant ? this.#store.addGrant(owner, accountId, filter, kind.rights) : this.#store.removeGrant(owner, accountId, filter, kind.rights)
    } catch (e) {
      return `not stored: ${e instanceof Error ? e.message : String(e)}`
    }
    if (!r.ok) return r.error ?? 'failed'
    this.#changed(accountId)
    return null
  }

  /** A response topic inside the owner's namespace, or one the requester may publish to: no injection elsewhere. */
  #mayAnswerAt(message: Message, owner: string, topic: string): boolean {
    if (ownerOf(topic) === owner) return true
    const requester = this.#broker.clientOf(message.origin)
    return requester !== undefined && this.#broker.hooks.authorizePublish(requester, topic)
  }
}
