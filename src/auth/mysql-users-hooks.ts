import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import type { Disposable } from '../core/scope.js'
import type { AuthResult, BrokerHooks, ClientInfo, ConnectRequest, SubscribeDecision } from '../mqtt/broker/hooks.js'
import { RC } from '../mqtt/protocol/reason-codes.js'
import { parseShared } from '../mqtt/topic/validate.js'
import { accountIdProblem } from './account-id.js'
import { Acl } from './acl.js'
import type { LoginCache } from './login-cache.js'
import { hashPassword, PasswordChecker } from './password.js'
import { FailureLimiter, type RateLimitSettings } from './rate-limit.js'

/**
 * What the server said to a login attempt. refused: wrong password, no such user, no access to
 * the database (`locked`: the account is locked or blocked after too many errors).
 * unreachable: no answer (refused connection, timeout, lost, too many connections).
 * failed: any other error from the server.
 */
export type LoginVerdict =
  | { readonly kind: 'accepted' }
  | { readonly kind: 'refused'; readonly locked: boolean; readonly detail: string }
  | { readonly kind: 'unreachable'; readonly detail: string }
  | { readonly kind: 'failed'; readonly detail: string }

/** Logs `user` in on the server with `password`, on a connection of its own, and closes it. */
export type LoginProbe = (user: string, password: string) => Promise<LoginVerdict>

export interface MysqlUsersSettings {
  /** Where logins are checked, without credentials, for logs. */
  readonly target: string
  /** How long after its last online check a cached login is accepted while the server is unreachable. */
  readonly trustPeriodMs: number
  readonly byAddress: RateLimitSettings
  readonly byAccount: RateLimitSettings
  /** Once the server was unreachable, logins use the cache this long before one tries the server again. */
  readonly retryMs: number
  /** A password the server refused is refused locally this long, so a client retrying it never reaches the server. */
  readonly refusedMemoryMs: number
}

export interface MysqlUsersDeps {
  readonly probe: LoginProbe
  readonly cache: LoginCache
  readonly clock: Clock
  readonly logger: Logger
}

type Failure = Extract<AuthResult, { ok: false }>

function fail(reasonCode: number, reason: string, account?: string): Failure {
  return { ok: false, reasonCode, reason, account }
}

const BAD_LOGIN = 'bad user name or password'
/** Refused passwords remembered per user, and users tracked; the oldest go first. */
const REFUSED_PER_USER = 4
const REFUSED_USERS = 10_000

/**
 * auth.mode mysql-users: the accounts are the users of a MySQL server. A login is checked by
 * logging in there; a salted verifier of each accepted password is cached, so that a user seen
 * online can log in for `trustPeriodMs` while the server cannot be reached. The server's own
 * password hashes are never read. Rights: account A owns `/A/#`, as in accounts mode.
 */
export class MysqlUsersHooks implements BrokerHooks, Disposable {
  readonly name = 'mysql-users'
  readonly #settings: MysqlUsersSettings
  readonly #deps: MysqlUsersDeps
  readonly #acl = new Acl({ accounts: [], grants: [], handlers: [] })
  readonly #passwords = new PasswordChecker()
  readonly #byAddress: FailureLimiter
  readonly #byAccount: FailureLimiter
  readonly #refused: RefusedPasswords
  /** Per user with checks in flight: the newest check whose outcome was written, so an older one never overwrites it. */
  readonly #order = new Map<string, { inflight: number; applied: number }>()
  #seq = 0
  /** Set while the server is unreachable. */
  #offline: { triedAt: number; trying: boolean } | undefined
  #disposed = false

  constructor(settings: MysqlUsersSettings, deps: MysqlUsersDeps) {
    this.#settings = settings
    this.#deps = deps
    const now = (): number => deps.clock.now()
    this.#byAddress = new FailureLimiter(settings.byAddress, now)
    this.#byAccount = new FailureLimiter(settings.byAccount, now)
    this.#refused = new RefusedPasswords(settings.refusedMemoryMs, now)
  }

  /** True while logins are checked against the cache because the server did not answer. */
  get offline(): boolean {
    return this.#offline !== undefined
  }

  async authenticate(req: ConnectRequest): Promise<AuthResult> {
    if (this.#disposed) return fail(RC.SERVER_UNAVAILABLE, 'perch is stopping')
    const wait = this.#byAddress.blockedFor(req.remoteAddress)
    if (wait > 0) return fail(RC.CONNECTION_RATE_EXCEEDED, `too many failed logins from this address: try again in ${Math.ceil(wait / 1000)} s`)
    const user = req.username
    if (user === undefined) return fail(RC.NOT_AUTHORIZED, 'anonymous clients are not allowed: log in as a MySQL user')
    const result = await this.#login(req, user)
    if (!result.ok && result.reasonCode === RC.BAD_USERNAME_OR_PASSWORD) {
      this.#byAddress.failed(req.remoteAddress)
      if (result.account !== undefined) this.#byAccount.failed(result.account)
    }
    return result
  }

  authorizePublish(client: ClientInfo, topic: string): boolean {
    return this.#acl.canPublish(client, topic)
  }

  authorizeSubscribe(client: ClientInfo, filter: string): SubscribeDecision {
    const parsed = parseShared(filter)
    if (parsed.kind === 'invalid') return 'deny'
    return this.#acl.subscribeDecision(client, parsed.filter)
  }

  canRead(client: ClientInfo, topic: string): boolean {
    return this.#acl.canRead(client, topic)
  }

  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    this.#deps.cache.dispose()
  }

  async #login(req: ConnectRequest, user: string): Promise<AuthResult> {
    if (accountIdProblem(user) !== null) return fail(RC.BAD_USERNAME_OR_PASSWORD, BAD_LOGIN)
    const wait = this.#byAccount.blockedFor(user)
    if (wait > 0) return fail(RC.CONNECTION_RATE_EXCEEDED, `too many failed logins for this user: try again in ${Math.ceil(wait / 1000)} s`, user)
    const password = req.password
    const text = password === undefined ? undefined : utf8(password)
    // A user without a password is not an account, and a password MySQL cannot be sent is no password.
    if (password === undefined || text === undefined || text.length === 0) return fail(RC.BAD_USERNAME_OR_PASSWORD, BAD_LOGIN, user)
    if (this.#refused.has(user, password)) return fail(RC.BAD_USERNAME_OR_PASSWORD, BAD_LOGIN, user)

    const offline = this.#offline
    if (offline !== undefined) {
      // A clock that jumped back counts as time passed: the next try is never put off for long.
      const since = this.#deps.clock.now() - offline.triedAt
      if (offline.trying || (since >= 0 && since < this.#settings.retryMs)) return this.#fromCache(req, user, password)
      offline.trying = true
    }
    const started = this.#deps.clock.now()
    const seq = this.#begin(user)
    try {
      const verdict = await this.#deps.probe(user, text)
      if (verdict.kind === 'unreachable') {
        this.#unreachable(verdict.detail)
        return this.#fromCache(req, user, password)
      }
      this.#reachable()
      if (verdict.kind === 'failed') {
        this.#deps.logger.error('auth.mysql-failed', { target: this.#settings.target, account: user, error: verdict.detail })
        return fail(RC.SERVER_UNAVAILABLE, 'the MySQL server could not check this login')
      }
      if (verdict.kind === 'refused') {
        await this.#refusedBy(user, password, verdict.locked, seq)
        return fail(RC.BAD_USERNAME_OR_PASSWORD, BAD_LOGIN, user)
      }
      await this.#remember(user, password, started, seq)
      return this.#succeeded(req, user)
    } finally {
      if (offline !== undefined) offline.trying = false
      this.#end(user)
    }
  }

  /** The server accepted: cache a verifier (a new one only when the password is not the cached one). */
  async #remember(user: string, password: Buffer, at: number, seq: number): Promise<void> {
    this.#refused.clear(user)
    if (this.#disposed) return
    try {
      const cache = this.#deps.cache
      const cached = cache.get(user)
      if (cached !== undefined && (await this.#passwords.verify(user, password, cached.verifier))) {
        // Writes are skipped for logins checked again soon after: a reconnecting fleet costs no disk sync per login.
        const touchMs = Math.min(60_000, this.#settings.trustPeriodMs / 10)
        if ((at - cached.verifiedAt >= touchMs || at < cached.verifiedAt) && this.#mayWrite(user, seq)) cache.touch(user, at)
        return
      }
      const verifier = await hashPassword(password)
      if (this.#mayWrite(user, seq)) cache.put(user, verifier, at)
    } catch (e) {
      this.#deps.logger.error('auth.login-cache-failed', { account: user, error: e instanceof Error ? e.message : String(e) })
    }
  }

  /**
   * The server refused. The cached login goes when the account is locked, or when the refused
   * password is the cached one (changed, user dropped or no longer allowed on the database): a
   * stranger's wrong guess must not erase a real user's offline login.
   */
  async #refusedBy(user: string, password: Buffer, locked: boolean, seq: number): Promise<void> {
    if (!locked) this.#refused.add(user, password)
    try {
      const cached = this.#disposed ? undefined : this.#deps.cache.get(user)
      if (cached === undefined) return
      const stale = locked || (await this.#passwords.verify(user, password, cached.verifier))
      if (stale && this.#mayWrite(user, seq) && this.#deps.cache.remove(user)) {
        this.#passwords.forget(user)
        this.#deps.logger.info('auth.login-cache-dropped', { account: user, reason: locked ? 'account locked' : 'password refused' })
      }
    } catch (e) {
      this.#deps.logger.error('auth.login-cache-failed', { account: user, error: e instanceof Error ? e.message : String(e) })
    }
  }

  /** The server cannot be asked: a login checked online within the trust period, on a clock that did not go back. */
  async #fromCache(req: ConnectRequest, user: string, password: Buffer): Promise<AuthResult> {
    let cached: ReturnType<LoginCache['get']>
    let highWater: number
    try {
      if (this.#disposed) return fail(RC.SERVER_UNAVAILABLE, 'perch is stopping')
      cached = this.#deps.cache.get(user)
      highWater = this.#deps.cache.highWater
    } catch (e) {
      this.#deps.logger.error('auth.login-cache-failed', { account: user, error: e instanceof Error ? e.message : String(e) })
      return fail(RC.SERVER_UNAVAILABLE, 'the MySQL server is unreachable and the login cache cannot be read')
    }
    // Checked first and for everyone (an unknown user costs the same): the answer to a wrong
    // password does not tell whether the user ever logged in here.
    const good = await this.#passwords.verify(user, password, cached?.verifier)
    if (!good || cached === undefined) return fail(RC.BAD_USERNAME_OR_PASSWORD, BAD_LOGIN, user)
    const now = this.#deps.clock.now()
    if (now < highWater) {
      this.#deps.logger.warn('auth.clock-untrusted', { account: user, behindMs: highWater - now })
      return fail(RC.SERVER_UNAVAILABLE, 'the MySQL server is unreachable and the clock is behind the last online login: offline logins wait until it catches up')
    }
    const age = now - cached.verifiedAt
    if (age >= this.#settings.trustPeriodMs) {
      return fail(RC.SERVER_UNAVAILABLE, 'the MySQL server is unreachable and this login was last checked online too long ago')
    }
    this.#deps.logger.info('auth.offline-login', { account: user, ageMs: age })
    return this.#succeeded(req, user)
  }

  #succeeded(req: ConnectRequest, user: string): AuthResult {
    this.#byAddress.succeeded(req.remoteAddress)
    this.#byAccount.succeeded(user)
    return { ok: true, identity: { username: user, account: user, admin: false, via: 'password' } }
  }

  #unreachable(detail: string): void {
    const now = this.#deps.clock.now()
    const offline = this.#offline
    if (offline === undefined) this.#offline = { triedAt: now, trying: false }
    else offline.triedAt = now
    this.#deps.logger.warn('auth.mysql-unreachable', { target: this.#settings.target, error: detail, fallback: 'login cache' })
  }

  #reachable(): void {
    if (this.#offline === undefined) return
    this.#offline = undefined
    this.#deps.logger.info('auth.mysql-reachable', { target: this.#settings.target })
  }

  #begin(user: string): number {
    const seq = ++this.#seq
    const o = this.#order.get(user)
    if (o === undefined) this.#order.set(user, { inflight: 1, applied: 0 })
    else o.inflight++
    return seq
  }

  /** Whether a check that started as `seq` may still write: no newer check of this user has. */
  #mayWrite(user: string, seq: number): boolean {
    if (this.#disposed) return false
    const o = this.#order.get(user)
    if (o === undefined || o.applied > seq) return false
    o.applied = seq
    return true
  }

  #end(user: string): void {
    const o = this.#order.get(user)
    if (o !== undefined && --o.inflight === 0) this.#order.delete(user)
  }
}

function utf8(bytes: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return undefined
  }
}

/**
 * Passwords the server refused, per user, as HMACs under a key of this process: a client that
 * keeps retrying a stale password is answered here instead of adding to the server's count of
 * password errors (MariaDB's max_password_errors locks the account for every host).
 */
class RefusedPasswords {
  readonly #key = randomBytes(32)
  readonly #ttlMs: number
  readonly #now: () => number
  readonly #users = new Map<string, { mac: Buffer; until: number }[]>()

  constructor(ttlMs: number, now: () => number) {
    this.#ttlMs = ttlMs
    this.#now = now
  }

  has(user: string, password: Buffer): boolean {
    const list = this.#users.get(user)
    if (list === undefined) return false
    const now = this.#now()
    const live = list.filter((e) => e.until > now)
    if (live.length === 0) {
      this.#users.delete(user)
      return false
    }
    if (live.length !== list.length) this.#users.set(user, live)
    const mac = this.#mac(user, password)
    return live.some((e) => timingSafeEqual(e.mac, mac))
  }

  add(user: string, password: Buffer): void {
    if (this.#ttlMs <= 0) return
    const list = this.#users.get(user) ?? []
    this.#users.delete(user)
    list.push({ mac: this.#mac(user, password), until: this.#now() + this.#ttlMs })
    if (list.length > REFUSED_PER_USER) list.shift()
    if (this.#users.size >= REFUSED_USERS) {
      const oldest = this.#users.keys().next().value
      if (oldest !== undefined) this.#users.delete(oldest)
    }
    this.#users.set(user, list)
  }

  clear(user: string): void {
    this.#users.delete(user)
  }

  #mac(user: string, password: Buffer): Buffer {
    return createHmac('sha256', this.#key).update(user).update('\0').update(password).digest()
  }
}
