import { join } from 'node:path'
import type { Clock } from '../core/clock.js'
import { ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { type Database, type DbError, openSharedDatabase, type Statement } from '../db/index.js'
import { accountIdProblem } from './account-id.js'
import { ACCOUNT_MIGRATIONS } from './account-schema.js'
import { ACCOUNTS_FILE, changeStatements, recordChanges } from './account-store.js'
import { parseVerifier } from './password.js'

export interface CentralAccount {
  readonly name: string
  readonly verifier: string | null
  readonly admin: boolean
  readonly enabled: boolean
}

export interface CentralGrant {
  readonly owner: string
  readonly grantee: string
  readonly filter: string
  readonly publish: boolean
  readonly subscribe: boolean
}

/** How far this gateway has read the central change log, and which history it read it from. */
export interface SyncMark {
  readonly hwm: number
  readonly epoch: string
}

/**
 * A full sync replaces every central row; an incremental one refreshes `keys`: each key's
 * account row (absent = no longer visible here: deleted, unassigned) and all its grants as owner.
 */
export interface AccountsChange {
  readonly full: boolean
  readonly keys: readonly string[]
  readonly accounts: readonly CentralAccount[]
  readonly grants: readonly CentralGrant[]
  readonly mark: SyncMark
}

export interface AccountsApplied {
  readonly upserted: number
  readonly removed: number
  readonly grants: number
  /** Rows refused here (a bad account name, a grant outside its owner's namespace), with why. */
  readonly skipped: readonly string[]
}

/**
 * The sync's side of `accounts.db`: central rows (origin 'central') applied in one transaction
 * with the mark, so a crash leaves the old rows with the old mark. Local rows (the CLI's) stay,
 * except where a central row takes over the same key. A running perch sees the commit through
 * `data_version` and applies it live.
 */
export class CentralAccountCache implements Disposable {
  readonly #db: Database
  readonly #clock: Clock
  readonly #s: ReturnType<typeof prepare>

  private constructor(db: Database, clock: Clock) {
    this.#db = db
    this.#clock = clock
    this.#s = prepare(db)
  }

  static open(dataDir: string, clock: Clock): Result<CentralAccountCache, DbError> {
    const file = join(dataDir, ACCOUNTS_FILE)
    const db = openSharedDatabase(file, ACCOUNT_MIGRATIONS)
    return db.ok ? ok(new CentralAccountCache(db.value, clock)) : db
  }

  mark(): SyncMark | undefined {
    const hwm = this.#s.state.get('hwm')?.v
    const epoch = this.#s.state.get('epoch')?.v
    return hwm === undefined || epoch === undefined ? undefined : { hwm: Number(hwm), epoch }
  }

  /** Counts of central rows here, for status. */
  counts(): { accounts: number; grants: number } {
    return { accounts: this.#s.countAccounts.get()?.n ?? 0, grants: this.#s.countGrants.get()?.n ?? 0 }
  }

  apply(change: AccountsChange): AccountsApplied {
    const skipped: string[] = []
    const accounts = change.accounts.filter((a) => {
      const problem = accountIdProblem(a.name)
      if (problem !== null) skipped.push(`account "${a.name}": ${problem}`)
      return problem === null
    })
    const visible = new Set(accounts.map((a) => a.name))
    const grants = change.grants.filter((g) => {
      const inside = g.filter.startsWith(`/${g.owner}/`) && visible.has(g.owner)
      if (!inside) skipped.push(`grant of "${g.filter}" from "${g.owner}" to "${g.grantee}": outside the owner's namespace`)
      return inside
    })
    const now = this.#clock.now()
    let removed = 0
    // Whose rights changed: a sync that only moves the mark must not make perch recompile any.
    const touched = new Set<string>()
    this.#db.write(() => {
      const gone = change.full ? this.#s.centralIds.all().map((r) => r.id) : change.keys
      // Grants are compared before and after: deleting and re-inserting the same ones is no change.
      const grantsBefore = new Map<string, string>()
      for (const id of gone) {
        for (const g of this.#s.centralGrantsOf.all(id)) grantsBefore.set(grantKey(g), g.grantee)
        this.#s.removeCentralGrantsOf.run(id)
        if (visible.has(id)) continue
        if (this.#s.local.get(id)?.origin !== 'central') continue
        touched.add(id)
        for (const r of this.#s.granteesOf.all(id)) touched.add(r.grantee)
        for (const r of this.#s.handlersServing.all(id)) touched.add(r.handler)
        this.#s.removeCentral.run(id)
        this.#s.removeGrantsOf.run(id, id)
        this.#s.removeHandlersOf.run(id, id)
        removed++
      }
      for (const a of accounts) {
        // A verifier this perch cannot read leaves the account without password logins.
        const verifier = a.verifier !== null && parseVerifier(a.verifier) !== undefined ? a.verifier : null
        if (a.verifier !== null && verifier === null) skipped.push(`account "${a.name}": its verifier is not one this perch can check`)
        if (this.#s.upsert.run(a.name, verifier, a.admin ? 1 : 0, a.enabled ? 1 : 0, now, now) > 0) touched.add(a.name)
      }
      const grantsAfter = new Map<string, string>()
      for (const g of grants) {
        this.#s.putGrant.run(g.owner, g.grantee, g.filter, g.publish ? 1 : 0, g.subscribe ? 1 : 0, now)
        grantsAfter.set(grantKey({ ...g, publish: g.publish ? 1 : 0, subscribe: g.subscribe ? 1 : 0 }), g.grantee)
      }
      for (const [k, grantee] of grantsBefore) if (!grantsAfter.has(k)) touched.add(grantee)
      for (const [k, grantee] of grantsAfter) if (!grantsBefore.has(k)) touched.add(grantee)
      if (touched.size > 0) {
        recordChanges(this.#s, touched)
        this.#s.bumpRevision.run()
      }
      this.#s.setState.run('hwm', String(change.mark.hwm))
      this.#s.setState.run('epoch', change.mark.epoch)
    })
    return { upserted: accounts.length, removed, grants: grants.length, skipped }
  }

  dispose(): void {
    this.#db.close()
  }
}

interface GrantFields {
  owner: string
  grantee: string
  filter: string
  publish: number
  subscribe: number
}

function grantKey(g: GrantFields): string {
  return `${g.owner}\0${g.grantee}\0${g.filter}\0${g.publish}${g.subscribe}`
}

function prepare(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  return {
    ...changeStatements(db),
    local: s<{ origin: string }>('SELECT origin FROM accounts WHERE id = ?'),
    state: s<{ v: string }>('SELECT v FROM sync_state WHERE k = ?'),
    setState: s('INSERT INTO sync_state (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
    centralIds: s<{ id: string }>(`SELECT id FROM accounts WHERE origin = 'central'`),
    countAccounts: s<{ n: number }>(`SELECT count(*) AS n FROM accounts WHERE origin = 'central'`),
    countGrants: s<{ n: number }>(`SELECT count(*) AS n FROM grants WHERE origin = 'central'`),
    removeCentral: s(`DELETE FROM accounts WHERE id = ? AND origin = 'central'`),
    removeCentralGrantsOf: s(`DELETE FROM grants WHERE owner = ? AND origin = 'central'`),
    centralGrantsOf: s<GrantFields>(`SELECT owner, grantee, filter, publish, subscribe FROM grants WHERE owner = ? AND origin = 'central'`),
    bumpRevision: s(`INSERT INTO sync_state (k, v) VALUES ('rev', '1') ON CONFLICT (k) DO UPDATE SET v = CAST(v AS INTEGER) + 1`),
    removeGrantsOf: s('DELETE FROM grants WHERE owner = ? OR grantee = ?'),
    removeHandlersOf: s('DELETE FROM handler_roles WHERE handler = ? OR account = ?'),
    // Unchanged rows are left alone, so a full resync of the same data changes nothing.
    upsert: s(
      `INSERT INTO accounts (id, verifier, admin, enabled, created_at, updated_at, origin) VALUES (?, ?, ?, ?, ?, ?, 'central')
       ON CONFLICT (id) DO UPDATE SET verifier = excluded.verifier, admin = excluded.admin, enabled = excluded.enabled,
         updated_at = excluded.updated_at, origin = 'central'
       WHERE verifier IS NOT excluded.verifier OR admin <> excluded.admin OR enabled <> excluded.enabled OR origin <> 'central'`,
    ),
    putGrant: s(
      `INSERT INTO grants (owner, grantee, filter, publish, subscribe, created_at, origin) VALUES (?, ?, ?, ?, ?, ?, 'central')
       ON CONFLICT (owner, grantee, filter) DO UPDATE SET publish = excluded.publish, subscribe = excluded.subscribe, origin = 'central'`,
    ),
  }
}
