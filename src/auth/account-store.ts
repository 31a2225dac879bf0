import { join } from 'node:path'
import type { Clock } from '../core/clock.js'
import { err, ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { type Database, type DbError, openSharedDatabase, type Statement } from '../db/index.js'
import { ACCOUNT_MIGRATIONS } from './account-schema.js'

export const ACCOUNTS_FILE = 'accounts.db'

export interface AccountRow {
  readonly id: string
  /** Undefined for an account that cannot log in with a password (JWT or certificates only). */
  readonly verifier: string | undefined
  readonly admin: boolean
  readonly enabled: boolean
  readonly createdAt: number
}

export interface GrantRow {
  readonly owner: string
  readonly grantee: string
  /** A filter inside `/<owner>/`. */
  readonly filter: string
  readonly publish: boolean
  readonly subscribe: boolean
}

/** A handler serves an account: it may read and publish `/<account>/<filter>`. */
export interface HandlerRow {
  readonly handler: string
  readonly account: string
  readonly filter: string
}

export interface AccountSnapshot {
  readonly accounts: readonly AccountRow[]
  readonly grants: readonly GrantRow[]
  readonly handlers: readonly HandlerRow[]
}

export type Rights = { readonly publish: boolean; readonly subscribe: boolean }

interface RawAccount {
  id: string
  verifier: string | null
  admin: number
  enabled: number
  created_at: number
}
interface RawGrant {
  owner: string
  grantee: string
  filter: string
  publish: number
  subscribe: number
}

/**
 * Accounts, grants and handler roles in `accounts.db` of the data directory. Not locked
 * exclusively: the CLI writes it while perch runs, and perch notices through `changed()`.
 */
export class AccountStore implements Disposable {
  readonly #db: Database
  readonly #clock: Clock
  readonly #s: ReturnType<typeof prepare>
  #dataVersion = -1
  // data_version counts only other connections' commits; this one's are counted here.
  #localWrites = 0

  private constructor(db: Database, clock: Clock) {
    this.#db = db
    this.#clock = clock
    this.#s = prepare(db)
  }

  static open(dataDir: string, clock: Clock): Result<AccountStore, DbError> {
    // Password verifiers: readable by perch's user alone.
    const file = join(dataDir, ACCOUNTS_FILE)
    const db = openSharedDatabase(file, ACCOUNT_MIGRATIONS)
    return db.ok ? ok(new AccountStore(db.value, clock)) : db
  }

  get file(): string {
    return this.#db.file
  }

  /**
   * Counts commits that changed accounts, grants or handler roles (not the sync's mark alone):
   * a reload is due only when it moved.
   */
  revision(): number {
    return Number(this.#s.state.get('rev')?.v ?? 0)
  }

  /** The central change-log mark these rows are at; undefined without a central sync. */
  syncMark(): number | undefined {
    const v = this.#s.state.get('hwm')?.v
    return v === undefined ? undefined : Number(v)
  }

  /**
   * The accounts whose rights changed after change `seq`, and the newest change; undefined when
   * the log no longer reaches back that far (or `seq` is from another file): reload everything.
   */
  changesSince(seq: number): { accounts: Set<string>; last: number } | undefined {
    return this.#read(() => {
      const last = this.#s.lastChange.get()?.seq ?? 0
      if (seq > last) return undefined
      if (seq === last) return { accounts: new Set<string>(), last }
      const first = this.#s.firstChange.get()?.seq ?? 0
      if (first > seq + 1) return undefined
      return { accounts: new Set(this.#s.changedSince.all(seq).map((r) => r.account)), last }
    })
  }

  /** The newest change, for a full reload to start from. */
  lastChange(): number {
    return this.#s.lastChange.get()?.seq ?? 0
  }

  /** What decides the rights of `ids`: their rows, the grants they hold, the accounts they serve. */
  partial(ids: ReadonlySet<string>): AccountSnapshot {
    return this.#read(() => {
      const list = [...ids]
      return {
        accounts: list.flatMap((id) => {
          const r = this.#s.account.get(id)
          return r === undefined ? [] : [toAccount(r)]
        }),
        grants: list.flatMap((id) => this.#s.grantsTo.all(id).map(toGrant)),
        handlers: list.flatMap((id) => this.#s.handlersOf.all(id)),
      }
    })
  }

  /** True once after anyone (this process or another) committed since the last call. */
  changed(): boolean {
    const v = Number(this.#db.pragma('data_version')) + this.#localWrites
    if (v === this.#dataVersion) return false
    this.#dataVersion = v
    return true
  }

  snapshot(): AccountSnapshot {
    return this.#read(() => ({
      accounts: this.#s.accounts.all().map(toAccount),
      grants: this.#s.grants.all().map(toGrant),
      handlers: this.#s.handlers.all(),
    }))
  }

  account(id: string): AccountRow | undefined {
    const r = this.#s.account.get(id)
    return r === undefined ? undefined : toAccount(r)
  }

  accountCount(): number {
    return this.#s.countAccounts.get()?.n ?? 0
  }

  addAccount(id: string, verifier: string | undefined, admin: boolean): Result<void, string> {
    return this.#write(() => {
      if (this.#s.account.get(id) !== undefined) return err(`account "${id}" exists`)
      const now = this.#clock.now()
      this.#s.addAccount.run(id, verifier ?? null, admin ? 1 : 0, now, now)
      this.#touched(id)
      return ok(undefined)
    })
  }

  setVerifier(id: string, verifier: string | undefined): Result<void, string> {
    return this.#write(() => this.#changed(this.#s.setVerifier.run(verifier ?? null, this.#clock.now(), id), id))
  }

  setEnabled(id: string, enabled: boolean): Result<void, string> {
    return this.#write(() => this.#changed(this.#s.setEnabled.run(enabled ? 1 : 0, this.#clock.now(), id), id))
  }

  setAdmin(id: string, admin: boolean): Result<void, string> {
    return this.#write(() => this.#changed(this.#s.setAdmin.run(admin ? 1 : 0, this.#clock.now(), id), id))
  }

  /** Removes the account with its grants (given and received) and its handler roles. */
  removeAccount(id: string): Result<void, string> {
    return this.#write(() => {
      if (this.#s.removeAccount.run(id) === 0) return err(`no account "${id}"`)
      this.#touched(id, ...this.#s.granteesOf.all(id).map((r) => r.grantee), ...this.#s.handlersServing.all(id).map((r) => r.handler))
      this.#s.removeGrantsOf.run(id, id)
      this.#s.removeHandlersOf.run(id, id)
      return ok(undefined)
    })
  }

  /** Adds rights to a grant (creating it); rights already held stay. */
  addGrant(owner: string, grantee: string, filter: string, rights: Rights): Result<GrantRow, string> {
    return this.#write(() => {
      const old = this.#s.grant.get(owner, grantee, filter)
      const publish = rights.publish || old?.publish === 1
      const subscribe = rights.subscribe || old?.subscribe === 1
      this.#s.putGrant.run(owner, grantee, filter, publish ? 1 : 0, subscribe ? 1 : 0, this.#clock.now())
      this.#touched(grantee)
      return ok({ owner, grantee, filter, publish, subscribe })
    })
  }

  /** Takes rights away from a grant, deleting it when none remain; an error when it did not exist. */
  removeGrant(owner: string, grantee: string, filter: string, rights: Rights): Result<GrantRow | undefined, string> {
    return this.#write(() => {
      const old = this.#s.grant.get(owner, grantee, filter)
      if (old === undefined) return err(`no grant of "${filter}" from "${owner}" to "${grantee}"`)
      this.#touched(grantee)
      const publish = old.publish === 1 && !rights.publish
      const subscribe = old.subscribe === 1 && !rights.subscribe
      if (!publish && !subscribe) {
        this.#s.removeGrant.run(owner, grantee, filter)
        return ok(undefined)
      }
      this.#s.putGrant.run(owner, grantee, filter, publish ? 1 : 0, subscribe ? 1 : 0, this.#clock.now())
      return ok({ owner, grantee, filter, publish, subscribe })
    })
  }

  addHandler(handler: string, account: string, filter: string): Result<void, string> {
    return this.#write(() => {
      this.#s.putHandler.run(handler, account, filter, this.#clock.now())
      this.#touched(handler)
      return ok(undefined)
    })
  }

  removeHandler(handler: string, account: string, filter: string): Result<void, string> {
    return this.#write(() => {
      if (this.#s.removeHandler.run(handler, account, filter) === 0) return err(`"${handler}" does not serve "${account}" on "${filter}"`)
      this.#touched(handler)
      return ok(undefined)
    })
  }

  dispose(): void {
    this.#db.close()
  }

  #changed(changes: number, id: string): Result<void, string> {
    if (changes === 0) return err(`no account "${id}"`)
    this.#touched(id)
    return ok(undefined)
  }

  #touched(...ids: string[]): void {
    recordChanges(this.#s, ids)
  }

  #read<T>(fn: () => T): T {
    this.#db.exec('BEGIN')
    try {
      return fn()
    } finally {
      this.#db.rollback()
    }
  }

  /** One transaction per change; a DbError (busy, full, read-only) propagates to the caller. */
  #write<T>(fn: () => Result<T, string>): Result<T, string> {
    this.#db.exec('BEGIN IMMEDIATE')
    let done = false
    try {
      const r = fn()
      if (r.ok) {
        this.#s.bumpRevision.run()
        this.#db.exec('COMMIT')
        this.#localWrites++
        done = true
      }
      return r
    } finally {
      if (!done) this.#db.rollback()
    }
  }
}

function prepare(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  return {
    state: s<{ v: string }>('SELECT v FROM sync_state WHERE k = ?'),
    bumpRevision: s(`INSERT INTO sync_state (k, v) VALUES ('rev', '1') ON CONFLICT (k) DO UPDATE SET v = CAST(v AS INTEGER) + 1`),
    ...changeStatements(db),
    grantsTo: s<RawGrant>('SELECT owner, grantee, filter, publish, subscribe FROM grants WHERE grantee = ?'),
    handlersOf: s<HandlerRow>('SELECT handler, account, filter FROM handler_roles WHERE handler = ?'),
    accounts: s<RawAccount>('SELECT id, verifier, admin, enabled, created_at FROM accounts ORDER BY id'),
    account: s<RawAccount>('SELECT id, verifier, admin, enabled, created_at FROM accounts WHERE id = ?'),
    countAccounts: s<{ n: number }>('SELECT count(*) AS n FROM accounts'),
    addAccount: s('INSERT INTO accounts (id, verifier, admin, enabled, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?)'),
    setVerifier: s('UPDATE accounts SET verifier = ?, updated_at = ? WHERE id = ?'),
    setEnabled: s('UPDATE accounts SET enabled = ?, updated_at = ? WHERE id = ?'),
    setAdmin: s('UPDATE accounts SET admin = ?, updated_at = ? WHERE id = ?'),
    removeAccount: s('DELETE FROM accounts WHERE id = ?'),
    removeGrantsOf: s('DELETE FROM grants WHERE owner = ? OR grantee = ?'),
    removeHandlersOf: s('DELETE FROM handler_roles WHERE handler = ? OR account = ?'),
    grants: s<RawGrant>('SELECT owner, grantee, filter, publish, subscribe FROM grants ORDER BY owner, grantee, filter'),
    grant: s<RawGrant>('SELECT owner, grantee, filter, publish, subscribe FROM grants WHERE owner = ? AND grantee = ? AND filter = ?'),
    putGrant: s(
      `INSERT INTO grants (owner, grantee, filter, publish, subscribe, created_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (owner, grantee, filter) DO UPDATE SET publish = excluded.publish, subscribe = excluded.subscribe`,
    ),
    removeGrant: s('DELETE FROM grants WHERE owner = ? AND grantee = ? AND filter = ?'),
    handlers: s<HandlerRow>('SELECT handler, account, filter FROM handler_roles ORDER BY handler, account, filter'),
    putHandler: s('INSERT OR IGNORE INTO handler_roles (handler, account, filter, created_at) VALUES (?, ?, ?, ?)'),
    removeHandler: s('DELETE FROM handler_roles WHERE handler = ? AND account = ? AND filter = ?'),
  }
}

/** Rows of account_changes kept: a perch further behind than this reloads everything. */
const CHANGES_KEPT = 10_000

/** The statements every writer of accounts.db uses to log whose rights it changed. */
export function changeStatements(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  return {
    logChange: s('INSERT INTO account_changes (account) VALUES (?)'),
    pruneChanges: s('DELETE FROM account_changes WHERE seq <= (SELECT max(seq) FROM account_changes) - ?'),
    lastChange: s<{ seq: number }>('SELECT max(seq) AS seq FROM account_changes'),
    firstChange: s<{ seq: number }>('SELECT min(seq) AS seq FROM account_changes'),
    changedSince: s<{ account: string }>('SELECT DISTINCT account FROM account_changes WHERE seq > ?'),
    granteesOf: s<{ grantee: string }>('SELECT DISTINCT grantee FROM grants WHERE owner = ?'),
    handlersServing: s<{ handler: string }>('SELECT DISTINCT handler FROM handler_roles WHERE account = ?'),
  }
}

/** Logs `ids` as changed (inside the caller's transaction) and prunes the log. */
export function recordChanges(s: ReturnType<typeof changeStatements>, ids: Iterable<string>): void {
  const unique = new Set(ids)
  for (const id of unique) s.logChange.run(id)
  if (unique.size > 0) s.pruneChanges.run(CHANGES_KEPT)
}

function toAccount(r: RawAccount): AccountRow {
  return { id: r.id, verifier: r.verifier ?? undefined, admin: r.admin === 1, enabled: r.enabled === 1, createdAt: r.created_at }
}

function toGrant(r: RawGrant): GrantRow {
  return { owner: r.owner, grantee: r.grantee, filter: r.filter, publish: r.publish === 1, subscribe: r.subscribe === 1 }
}
