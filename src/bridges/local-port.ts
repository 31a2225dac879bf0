import type { Disposable } from '../core/scope.js'
import type { Broker } from '../mqtt/broker/broker.js'
import { LOCAL_CLIENT_PREFIX, type LocalClient } from '../mqtt/broker/local-client.js'
import type { BridgePort } from './types.js'

/**
 * A bridge's way into MQTT: an in-process client named `$perch/bridge/<device>` acting as the
 * device's account (not as an admin), so the account's ACL decides what it may publish and read.
 */
export class LocalBridgePort implements BridgePort, Disposable {
  readonly account: string
  readonly #client: LocalClient

  constructor(broker: Broker, device: string, account: string) {
    this.account = account
    this.#client = broker.openLocal({
      clientId: `${LOCAL_CLIENT_PREFIX}bridge/${device}`,
      username: account,
      account,
      admin: false,
      remoteAddress: '',
      protocolVersion: 5,
      listener: 'internal',
    })
  }

  publish(topic: string, payload: string | Buffer, options: { qos: 0 | 1 | 2; retain: boolean }): boolean {
    return this.#client.publish(topic, payload, options)
  }

  subscribe(filter: string, handler: (topic: string, payload: Buffer) => void): Disposable | undefined {
    return this.#client.subscribe(filter, (m) => handler(m.topic, m.payload))
  }

  dispose(): void {
    this.#client.dispose()
  }
}
