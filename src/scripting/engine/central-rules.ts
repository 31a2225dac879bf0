import { join } from 'node:path'
import type { Clock } from '../../core/clock.js'
import { ok, type Result } from '../../core/result.js'
import type { Disposable } from '../../core/scope.js'
import { type Database, type DbError, openSharedDatabase, type Statement } from '../../db/index.js'
import { RULE_MIGRATIONS, RULES_FILE } from './rule-store.js'

export interface CentralRule {
  readonly account: string
  readonly name: string
  readonly source: string
  readonly manifest: string
  readonly enabled: boolean
  readonly version: number
}

/**
 * A full sync replaces every central rule; an incremental one refreshes all rules of `accounts`
 * and the single rules `rules`. A refreshed key missing from `rows` is no longer visible here.
 */
export interface RulesChange {
  readonly full: boolean
  readonly accounts: readonly string[]
  readonly rules: readonly (readonly [string, string])[]
  readonly rows: readonly CentralRule[]
}

export interface RulesApplied {
  readonly installed: number
  readonly removed: number
  /** Pushed rules a newer central copy replaced. */
  readonly conflicts: number
}

interface LocalRow {
  version: number
  origin: string
  base_version: number
}

/**
 * The sync's side of `rules.db`. Central copies are kept in `central_rules`; the rule that runs
 * (`rules`) is the central copy unless a rule pushed over MQTT or the CLI is based on a central
 * version at least as new. When the central copy moves past it, the central copy wins and a
 * conflict is recorded for perch to publish. Applying the same change twice changes nothing, so
 * this file needs no mark of its own: the accounts file's mark is written after it.
 */
export class CentralRuleCache implements Disposable {
  readonly #db: Database
  readonly #clock: Clock
  readonly #s: ReturnType<typeof prepare>

  private constructor(db: Database, clock: Clock) {
    this.#db = db
    this.#clock = clock
    this.#s = prepare(db)
  }

  static open(dataDir: string, clock: Clock): Result<CentralRuleCache, DbError> {
    const file = join(dataDir, RULES_FILE)
    const db = openSharedDatabase(file, RULE_MIGRATIONS)
    return db.ok ? ok(new CentralRuleCache(db.value, clock)) : db
  }

  count(): number {
    return this.#s.count.get()?.n ?? 0
  }

  apply(change: RulesChange): RulesApplied {
    const incoming = new Map(change.rows.map((r) => [key(r.account, r.name), r]))
    let installed = 0
    let removed = 0
    let conflicts = 0
    this.#db.write(() => {
      const touched = new Set<string>(incoming.keys())
      const held = change.full ? this.#s.allCentral.all() : change.accounts.flatMap((a) => this.#s.centralOf.all(a))
      for (const r of held) touched.add(key(r.account, r.name))
      for (const [account, name] of change.rules) touched.add(key(account, name))
      const now = this.#clock.now()
      for (const k of touched) {
        const [account = '', name = ''] = k.split('\0')
        const central = incoming.get(k)
        const local = this.#s.local.get(account, name)
        if (central === undefined) {
          this.#s.removeCentral.run(account, name)
          // A pushed rule outlives its central copy; a central one goes with it.
          if (local?.origin === 'central' && this.#remove(account, name)) removed++
          continue
        }
        this.#s.putCentral.run(account, name, central.source, central.manifest, central.enabled ? 1 : 0, central.version)
        if (!central.enabled) {
          if (local?.origin === 'central' && this.#remove(account, name)) removed++
          continue
        }
        if (local?.origin === 'central' && local.base_version === central.version) continue
        if (local !== undefined && local.origin !== 'central' && local.base_version >= central.version) continue
        if (local !== undefined && local.origin !== 'central') {
          this.#s.conflict.run(account, name, now, local.version, local.origin, local.base_version, central.version)
          conflicts++
        }
        this.#s.putRule.run(account, name, central.source, central.manifest, (local?.version ?? 0) + 1, now, central.version)
        installed++
      }
    })
    return { installed, removed, conflicts }
  }

  dispose(): void {
    this.#db.close()
  }

  #remove(account: string, name: string): boolean {
    this.#s.removeLogs.run(account, name)
    return this.#s.removeRule.run(account, name) > 0
  }
}

function key(account: string, name: string): string {
  return `${account}\0${name}`
}

function prepare(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  return {
    count: s<{ n: number }>('SELECT count(*) AS n FROM central_rules'),
    allCentral: s<{ account: string; name: string }>('SELECT account, name FROM central_rules'),
    centralOf: s<{ account: string; name: string }>('SELECT account, name FROM central_rules WHERE account = ?'),
    local: s<LocalRow>('SELECT version, origin, base_version FROM rules WHERE account = ? AND name = ?'),
    putCentral: s(
      `INSERT INTO central_rules (account, name, source, manifest, enabled, version) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (account, name) DO UPDATE SET source = excluded.source, manifest = excluded.manifest,
         enabled = excluded.enabled, version = excluded.version`,
    ),
    removeCentral: s('DELETE FROM central_rules WHERE account = ? AND name = ?'),
    putRule: s(
      `INSERT INTO rules (account, name, source, manifest, version, origin, updated_at, base_version) VALUES (?, ?, ?, ?, ?, 'central', ?, ?)
       ON CONFLICT (account, name) DO UPDATE SET source = excluded.source, manifest = excluded.manifest,
         version = excluded.version, origin = 'central', updated_at = excluded.updated_at, base_version = excluded.base_version`,
    ),
    removeRule: s('DELETE FROM rules WHERE account = ? AND name = ?'),
    removeLogs: s('DELETE FROM rule_logs WHERE account = ? AND name = ?'),
    conflict: s(
      `INSERT INTO rule_conflicts (account, name, at, local_version, local_origin, base_version, central_version)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
  }
}
