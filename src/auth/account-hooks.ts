import type { AuthResult, BrokerHooks, ClientInfo, ConnectRequest, Identity, SubscribeDecision } from '../mqtt/broker/hooks.js'
import { RC } from '../mqtt/protocol/reason-codes.js'
import { parseShared } from '../mqtt/topic/validate.js'
import { accountIdProblem } from './account-id.js'
import type { Acl, Principal } from './acl.js'
import type { JwtVerifier } from './jwt.js'
import type { PasswordChecker } from './password.js'
import type { FailureLimiter } from './rate-limit.js'

/** The username a JWT login gives; its password is the token. */
export const JWT_USERNAME = 'JWT'

export interface AccountHooksDeps {
  readonly passwords: PasswordChecker
  readonly jwt: JwtVerifier | undefined
  readonly byAddress: FailureLimiter
  readonly byAccount: FailureLimiter
}

type Failure = Extract<AuthResult, { ok: false }>

function fail(reasonCode: number, reason: string, account?: string): Failure {
  return { ok: false, reasonCode, reason, account }
}

/**
 * Accounts mode: every client logs in as an account (password, JWT or a TLS client
 * certificate) and acts inside the rights the current Acl gives that account.
 */
export class AccountHooks implements BrokerHooks {
  readonly name = 'accounts'
  #acl: Acl
  readonly #deps: AccountHooksDeps

  constructor(acl: Acl, deps: AccountHooksDeps) {
    this.#acl = acl
    this.#deps = deps
  }

  get acl(): Acl {
    return this.#acl
  }

  /** Swaps in recompiled rights; the caller re-decides existing subscriptions. */
  setAcl(acl: Acl): void {
    this.#acl = acl
  }

  async authenticate(req: ConnectRequest): Promise<AuthResult> {
    if (req.certificateCommonName !== undefined) return this.#byCertificate(req, req.certificateCommonName)
    const wait = this.#deps.byAddress.blockedFor(req.remoteAddress)
    if (wait > 0) return fail(RC.CONNECTION_RATE_EXCEEDED, `too many failed logins from this address: try again in ${Math.ceil(wait / 1000)} s`)
    if (req.username === undefined) return fail(RC.NOT_AUTHORIZED, 'anonymous clients are not allowed: log in with an account')
    const result = req.username === JWT_USERNAME ? await this.#byToken(req) : await this.#byPassword(req, req.username)
    if (!result.ok && result.reasonCode === RC.BAD_USERNAME_OR_PASSWORD) {
      this.#deps.byAddress.failed(req.remoteAddress)
      if (result.account !== undefined) this.#deps.byAccount.failed(result.account)
    }
    return result
  }

  authorizePublish(client: ClientInfo, topic: string): boolean {
    return this.#acl.canPublish(this.#principal(client), topic)
  }

  authorizeSubscribe(client: ClientInfo, filter: string): SubscribeDecision {
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return 'deny'
    return this.#acl.subscribeDecision(this.#principal(client), parsed.filter)
  }

  canRead(client: ClientInfo, topic: string): boolean {
    return this.#acl.canRead(this.#principal(client), topic)
  }

  /** Admin rights come from the account as it is now, not as it was when the client logged in. */
  #principal(client: ClientInfo): Principal {
    // An admin without an account is perch's own in-process client: no login can make one.
    if (!client.admin || client.account === undefined) return client
    const a = this.#acl.account(client.account)
    return a?.admin === true && a.enabled ? client : { account: client.account, admin: false, serves: client.serves }
  }

  async #byPassword(req: ConnectRequest, account: string): Promise<AuthResult> {
    if (accountIdProblem(account) !== null) return fail(RC.BAD_USERNAME_OR_PASSWORD, 'bad user name or password')
    const wait = this.#deps.byAccount.blockedFor(account)
    if (wait > 0) return fail(RC.CONNECTION_RATE_EXCEEDED, `too many failed logins for this account: try again in ${Math.ceil(wait / 1000)} s`, account)
    const row = this.#acl.account(account)
    const good = await this.#deps.passwords.verify(account, req.password ?? Buffer.alloc(0), row?.verifier)
    // Only an existing account hears of attempts on it.
    const known = row === undefined ? undefined : account
    if (!good || req.password === undefined) return fail(RC.BAD_USERNAME_OR_PASSWORD, 'bad user name or password', known)
    // Read again: the account may have changed while scrypt ran.
    const now = this.#acl.account(account)
    if (now === undefined || now.verifier !== row?.verifier) return fail(RC.BAD_USERNAME_OR_PASSWORD, 'bad user name or password', known)
    if (!now.enabled) return fail(RC.BANNED, `account "${account}" is disabled`, account)
    this.#deps.byAddress.succeeded(req.remoteAddress)
    this.#deps.byAccount.succeeded(account)
    return { ok: true, identity: { username: account, account, admin: now.admin, via: 'password' } }
  }

  async #byToken(req: ConnectRequest): Promise<AuthResult> {
    const jwt = this.#deps.jwt
    if (jwt === undefined) return fail(RC.BAD_USERNAME_OR_PASSWORD, 'JWT logins are not configured (auth.jwt)')
    const token = req.password?.toString('utf8') ?? ''
    const claims = await jwt.verify(token)
    if (!claims.ok) {
      const named = claims.error.account
      // Only an account perch knows hears of attempts on it.
      const known = named !== undefined && accountIdProblem(named) === null && this.#acl.account(named) !== undefined ? named : undefined
      return fail(RC.BAD_USERNAME_OR_PASSWORD, claims.error.reason, known)
    }
    const { account, serves } = claims.value
    const problem = accountIdProblem(account) ?? serves?.map(accountIdProblem).find((p) => p !== null) ?? null
    if (problem !== null) return fail(RC.BAD_USERNAME_OR_PASSWORD, `the token names an invalid account: ${problem}`)
    // The issuer vouches for accounts perch has not seen; one perch knows must be enabled.
    const row = this.#acl.account(account)
    if (row !== undefined && !row.enabled) return fail(RC.BANNED, `account "${account}" is disabled`, account)
    const identity: Identity = { username: JWT_USERNAME, account, admin: row?.admin === true, serves, via: 'token' }
    return { ok: true, identity }
  }

  #byCertificate(req: ConnectRequest, cn: string): AuthResult {
    if (accountIdProblem(cn) !== null) return fail(RC.NOT_AUTHORIZED, `the certificate's common name "${cn}" is not an account id`)
    if (req.username !== undefined && req.username !== cn) {
      return fail(RC.NOT_AUTHORIZED, `the user name "${req.username}" does not match the certificate's common name "${cn}"`, cn)
    }
    const row = this.#acl.account(cn)
    if (row === undefined) return fail(RC.NOT_AUTHORIZED, `no account "${cn}" for this certificate`)
    if (!row.enabled) return fail(RC.BANNED, `account "${cn}" is disabled`, cn)
    return { ok: true, identity: { username: cn, account: cn, admin: row.admin, via: 'certificate' } }
  }
}
