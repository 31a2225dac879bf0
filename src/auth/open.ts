import type { AuthResult, BrokerHooks, ClientInfo, ConnectRequest, SubscribeDecision } from '../mqtt/broker/hooks.js'

/** Anyone may connect, publish and subscribe: for a first start, bound to 127.0.0.1. */
export class OpenHooks implements BrokerHooks {
  readonly name = 'open'

  authenticate(req: ConnectRequest): AuthResult {
    return { ok: true, identity: { username: req.username, account: undefined, admin: false } }
  }

  authorizePublish(_client: ClientInfo, _topic: string): boolean {
    return true
  }

  authorizeSubscribe(_client: ClientInfo, _filter: string): SubscribeDecision {
    return 'allow'
  }

  canRead(_client: ClientInfo, _topic: string): boolean {
    return true
  }
}
