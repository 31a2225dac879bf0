import type { Disposable } from '../../core/scope.js'
import type { ClientInfo } from './hooks.js'

/** Broker events, for logs, $SYS and (later) rules that subscribe to them. */
export type BrokerEvent =
  | { readonly type: 'client.connected'; readonly client: ClientInfo; readonly sessionPresent: boolean }
  | { readonly type: 'client.disconnected'; readonly client: ClientInfo; readonly reason: string }
  | { readonly type: 'client.subscribed'; readonly client: ClientInfo; readonly filter: string; readonly qos: number }
  | { readonly type: 'client.unsubscribed'; readonly client: ClientInfo; readonly filter: string }
  | { readonly type: 'session.expired'; readonly clientId: string }
  | {
      readonly type: 'auth.failed'
      readonly clientId: string
      readonly username: string | undefined
      /** The account the attempt was for, when it named one. */
      readonly account: string | undefined
      readonly remoteAddress: string
      readonly reasonCode: number
      readonly reason: string
    }
  | { readonly type: 'access.denied'; readonly client: ClientInfo; readonly action: 'publish' | 'subscribe' | 'will'; readonly topic: string }

export type BrokerEventListener = (event: BrokerEvent) => void

export class BrokerEvents {
  readonly #listeners = new Set<BrokerEventListener>()

  on(listener: BrokerEventListener): Disposable {
    this.#listeners.add(listener)
    return { dispose: () => this.#listeners.delete(listener) }
  }

  emit(event: BrokerEvent): void {
    for (const l of this.#listeners) l(event)
  }

  get active(): boolean {
    return this.#listeners.size > 0
  }
}
