import type { Clock } from '../core/clock.js'
import type { Disposable } from '../core/scope.js'
import type { BrokerEvent, BrokerEvents } from '../mqtt/broker/events.js'
import type { LocalClient } from '../mqtt/broker/local-client.js'

interface Outgoing {
  topic: string
  body: Record<string, unknown>
}

/**
 * Tells each account what happens to it, as JSON on `/<account>/events/<kind>`: connected,
 * disconnected, auth_failed and acl_denied. Only perch publishes there; the account reads it.
 * Events are published after the code that raised them returns, never inside routing.
 */
export class AccountEvents implements Disposable {
  readonly #local: LocalClient
  readonly #clock: Clock
  readonly #subscription: Disposable
  #pending: Outgoing[] = []

  constructor(events: BrokerEvents, local: LocalClient, clock: Clock) {
    this.#local = local
    this.#clock = clock
    this.#subscription = events.on((e) => this.#on(e))
  }

  dispose(): void {
    this.#subscription.dispose()
    this.#pending = []
  }

  #on(e: BrokerEvent): void {
    const out = toEvent(e)
    if (out === undefined) return
    out.body.time = new Date(this.#clock.now()).toISOString()
    this.#pending.push(out)
    if (this.#pending.length === 1) queueMicrotask(() => this.#flush())
  }

  #flush(): void {
    const batch = this.#pending
    this.#pending = []
    for (const o of batch) this.#local.publish(o.topic, JSON.stringify(o.body))
  }
}

function toEvent(e: BrokerEvent): Outgoing | undefined {
  switch (e.type) {
    case 'client.connected': {
      const c = e.client
      if (c.account === undefined) return undefined
      return {
        topic: `/${c.account}/events/connected`,
        body: { event: 'connected', clientId: c.clientId, address: c.remoteAddress, listener: c.listener, protocolVersion: c.protocolVersion, via: c.via, sessionPresent: e.sessionPresent },
      }
    }
    case 'client.disconnected': {
      const c = e.client
      if (c.account === undefined) return undefined
      return { topic: `/${c.account}/events/disconnected`, body: { event: 'disconnected', clientId: c.clientId, address: c.remoteAddress, reason: e.reason } }
    }
    case 'auth.failed':
      if (e.account === undefined) return undefined
      return {
        topic: `/${e.account}/events/auth_failed`,
        body: { event: 'auth_failed', clientId: e.clientId, address: e.remoteAddress, reasonCode: e.reasonCode, reason: e.reason },
      }
    case 'access.denied': {
      const c = e.client
      if (c.account === undefined || c.clientId.startsWith('$perch/acl')) return undefined
      return { topic: `/${c.account}/events/acl_denied`, body: { event: 'acl_denied', clientId: c.clientId, action: e.action, topic: e.topic } }
    }
    default:
      return undefined
  }
}
