import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock, TimerHandle } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { err, ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { DbError } from '../db/index.js'
import type { Broker } from '../mqtt/broker/broker.js'
import type { ClientInfo } from '../mqtt/broker/hooks.js'
import { LOCAL_CLIENT_PREFIX, type LocalClient, systemClient } from '../mqtt/broker/local-client.js'
import { RC } from '../mqtt/protocol/reason-codes.js'
import { AccountEvents } from './account-events.js'
import { AccountHooks } from './account-hooks.js'
import { AccountStore } from './account-store.js'
import { Acl } from './acl.js'
import { type GrantLimits, GrantRequests } from './grant-requests.js'
import type { JwtSettings, JwtVerifier } from './jwt.js'
import { hashPassword, PasswordChecker, randomPassword } from './password.js'
import { FailureLimiter, type RateLimitSettings } from './rate-limit.js'

export const ADMIN_PASSWORD_FILE = 'admin-password'
const FIRST_ADMIN = 'admin'

export interface AccountSettings {
  readonly dataDir: string
  readonly jwt: JwtSettings | undefined
  readonly byAddress: RateLimitSettings
  readonly byAccount: RateLimitSettings
  readonly reloadIntervalMs: number
  readonly limits: GrantLimits
}

/**
 * Accounts mode as a whole: the account store, the compiled Acl behind AccountHooks, grant
 * requests over MQTT, account events, and changes made by other processes picked up live.
 * Any change re-decides existing subscriptions and drops the clients of a disabled, removed
 * or demoted account, and those that logged in with a password since changed.
 */
export class AccountService implements Disposable {
  readonly hooks: AccountHooks
  readonly store: AccountStore
  readonly #settings: AccountSettings
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #passwords: PasswordChecker
  readonly #parts: Disposable[] = []
  #broker: Broker | undefined
  #timer: TimerHandle | undefined
  #lastError: string | undefined
  #revision = -1
  #syncMark: number | undefined
  /** The account_changes row the rights in force include. */
  #lastChange = 0

  private constructor(store: AccountStore, settings: AccountSettings, clock: Clock, logger: Logger, jwt: JwtVerifier | undefined) {
    this.store = store
    this.#settings = settings
    this.#clock = clock
    this.#logger = logger
    this.#passwords = new PasswordChecker()
    const now = (): number => clock.now()
    store.changed()
    this.#lastChange = store.lastChange()
    this.hooks = new AccountHooks(new Acl(store.snapshot()), {
      passwords: this.#passwords,
      jwt,
      byAddress: new FailureLimiter(settings.byAddress, now),
      byAccount: new FailureLimiter(settings.byAccount, now),
    })
  }

  /** Opens the store; on a first start (no accounts at all) creates an admin with a random password. */
  static async open(settings: AccountSettings, clock: Clock, logger: Logger): Promise<Result<AccountService, DbError>> {
    let jwt: JwtVerifier | undefined
    if (settings.jwt !== undefined) {
      // jose loads only when JWT logins are configured: most gateways never verify a token.
      const { JwtVerifier } = await import('./jwt.js')
      try {
        jwt = new JwtVerifier(settings.jwt, () => clock.now())
      } catch (e) {
        throw new ConfigError(`auth.jwt: ${describeError(e)}`)
      }
    }
    const opened = AccountStore.open(settings.dataDir, clock)
    if (!opened.ok) return opened
    const store = opened.value
    try {
      if (store.accountCount() === 0) await createFirstAdmin(store, settings.dataDir, logger)
      return ok(new AccountService(store, settings, clock, logger, jwt))
    } catch (e) {
      store.dispose()
      if (e instanceof DbError) return err(e)
      throw e
    }
  }

  /** Starts serving grant requests and events on `broker`, and watching for outside changes. */
  attach(broker: Broker): void {
    this.#broker = broker
    const local: LocalClient = broker.openLocal(systemClient('acl'))
    this.#parts.push(local)
    this.#parts.push(new GrantRequests(broker, local, this.store, this.#settings.limits, () => this.reload('grant request')))
    this.#parts.push(new AccountEvents(broker.events, local, this.#clock))
    this.#schedule()
  }

  /**
   * Recompiles the rights that changed since the last reload (all of them when the change log
   * does not reach back, or when many changed) and applies them to the live clients and sessions
   * of the accounts concerned.
   */
  reload(cause: string, everything = false): void {
    const old = this.hooks.acl
    let next: Acl
    /** Whose rights may have changed; undefined: anyone's. */
    let affected: ReadonlySet<string> | undefined
    try {
      this.store.changed()
      // Read before the rows: a write in between makes the next check reload again, never skip.
      const revision = this.store.revision()
      const mark = this.store.syncMark()
      const changes = everything ? undefined : this.store.changesSince(this.#lastChange)
      if (changes === undefined || changes.accounts.size > PATCH_LIMIT) {
        const last = this.store.lastChange()
        next = new Acl(this.store.snapshot())
        this.#lastChange = last
      } else {
        next = Acl.patched(old, changes.accounts, this.store.partial(changes.accounts))
        this.#lastChange = changes.last
        affected = changes.accounts
      }
      this.#revision = revision
      this.#syncMark = mark
    } catch (e) {
      // The last rights stay in force: a locked or damaged file must not open or close anything.
      const message = e instanceof Error ? e.message : String(e)
      if (message !== this.#lastError) this.#logger.error('accounts.reload-failed', { error: message })
      this.#lastError = message
      return
    }
    this.#lastError = undefined
    this.hooks.setAcl(next)
    const broker = this.#broker
    if (broker === undefined) return
    const concerned = (c: ClientInfo): boolean => affected === undefined || (c.account !== undefined && affected.has(c.account))
    const dropped = (c: ClientInfo): string | undefined => {
      if (c.account === undefined || c.clientId.startsWith(LOCAL_CLIENT_PREFIX) || !concerned(c)) return undefined
      const before = old.account(c.account)
      const now = next.account(c.account)
      if (before === undefined) return undefined
      if (now === undefined) return 'account removed'
      if (!now.enabled) return 'account disabled'
      if (now.admin !== before.admin) return 'account rights changed'
      if (c.via === 'password' && now.verifier !== before.verifier) return 'password changed'
      return undefined
    }
    for (const id of affected ?? old.accounts.keys()) if (next.account(id)?.verifier !== old.account(id)?.verifier) this.#passwords.forget(id)
    const kicked = broker.kick((c) => dropped(c) !== undefined, RC.ADMINISTRATIVE_ACTION, 'account changed')
    const withdrawn = broker.reauthorize(concerned)
    this.#logger.info('accounts.reloaded', { cause, accounts: next.accounts.size, changed: affected?.size ?? 'all', kicked, withdrawn })
  }

  /** The central change-log mark of the rights in force (what the sync had applied when they were read). */
  get syncMark(): number | undefined {
    return this.#syncMark
  }

  dispose(): void {
    this.#timer?.cancel()
    this.#timer = undefined
    for (const p of this.#parts.splice(0).reverse()) p.dispose()
    this.store.dispose()
  }

  /**
   * Another process committed. Recompiling every right costs ~0.1 s per 10,000 accounts on the
   * event loop, so a commit that moved only the sync's mark just records it.
   */
  #changedOutside(): void {
    const mark = this.store.syncMark()
    // After a failed reload, or when the tables cannot be read, reload it all: that reports or recovers.
    const suspect = this.#lastError !== undefined || !this.#readable()
    if (!suspect && this.store.revision() === this.#revision) {
      this.#syncMark = mark
      return
    }
    this.reload('accounts changed outside perch', suspect)
  }

  #readable(): boolean {
    try {
      this.store.accountCount()
      return true
    } catch {
      return false
    }
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimer(this.#settings.reloadIntervalMs, () => {
      try {
        if (this.store.changed()) this.#changedOutside()
      } catch (e) {
        this.#logger.error('accounts.check-failed', { error: e instanceof Error ? e.message : String(e) })
      }
      this.#schedule()
    })
  }
}

/** Beyond this many changed accounts a full recompile is as cheap as patching. */
const PATCH_LIMIT = 2000

async function createFirstAdmin(store: AccountStore, dataDir: string, logger: Logger): Promise<void> {
  const password = randomPassword()
  const added = store.addAccount(FIRST_ADMIN, await hashPassword(password), true)
  if (!added.ok) return
  const file = join(dataDir, ADMIN_PASSWORD_FILE)
  writeFileSync(file, `account: ${FIRST_ADMIN}\npassword: ${password}\n`, { mode: 0o600 })
  chmodSync(file, 0o600)
  logger.warn('accounts.admin-created', { account: FIRST_ADMIN, passwordFile: file, hint: 'log in as this admin, create accounts (perch account add), then delete the file' })
}
