import type { ProtocolVersion } from '../protocol/packets.js'

/** Who is on the other end of a connection, as authentication established it. */
export interface ClientInfo {
  readonly clientId: string
  readonly username: string | undefined
  /** The account the client acts for; undefined in open mode. */
  readonly account: string | undefined
  readonly admin: boolean
  /** Accounts a handler token serves (the Cashew model); undefined for other clients. */
  readonly serves?: readonly string[] | undefined
  /** How the client proved who it is: a password change drops the clients that used one. */
  readonly via?: 'password' | 'token' | 'certificate' | undefined
  readonly remoteAddress: string
  readonly protocolVersion: ProtocolVersion
  readonly listener: string
}

export interface ConnectRequest {
  readonly clientId: string
  readonly username: string | undefined
  readonly password: Buffer | undefined
  readonly remoteAddress: string
  readonly protocolVersion: ProtocolVersion
  readonly listener: string
  /** Subject CN of a verified TLS client certificate. */
  readonly certificateCommonName: string | undefined
}

export interface Identity {
  readonly username: string | undefined
  readonly account: string | undefined
  readonly admin: boolean
  readonly serves?: readonly string[] | undefined
  readonly via?: 'password' | 'token' | 'certificate' | undefined
}

/** The client an authenticated identity is, on the connection (or request) it came by. */
export function clientOf(identity: Identity, on: Pick<ClientInfo, 'clientId' | 'remoteAddress' | 'protocolVersion' | 'listener'>): ClientInfo {
  return {
    clientId: on.clientId,
    username: identity.username,
    account: identity.account,
    admin: identity.admin,
    serves: identity.serves,
    via: identity.via,
    remoteAddress: on.remoteAddress,
    protocolVersion: on.protocolVersion,
    listener: on.listener,
  }
}

export type AuthResult =
  | { readonly ok: true; readonly identity: Identity }
  | {
      readonly ok: false
      readonly reasonCode: number
      readonly reason: string
      /** The account the attempt named, told of the failure. */
      readonly account?: string | undefined
    }

/**
 * 'filtered': the filter is accepted but only topics `canRead` allows are delivered through
 * it (a broad filter such as `#` for a client with narrower rights).
 */
export type SubscribeDecision = 'allow' | 'filtered' | 'deny'

/** The typed routing pipeline every access decision goes through. */
export interface BrokerHooks {
  readonly name: string
  authenticate(req: ConnectRequest): AuthResult | Promise<AuthResult>
  authorizePublish(client: ClientInfo, topic: string): boolean
  authorizeSubscribe(client: ClientInfo, filter: string): SubscribeDecision
  canRead(client: ClientInfo, topic: string): boolean
}
