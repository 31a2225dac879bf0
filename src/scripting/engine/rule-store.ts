import { join } from 'node:path'
import type { Clock } from '../../core/clock.js'
import { ok, type Result } from '../../core/result.js'
import type { Disposable } from '../../core/scope.js'
import { type Database, type DbError, openSharedDatabase, type Statement } from '../../db/index.js'

export const RULES_FILE = 'rules.db'

/** Where a rule came from: pushed over MQTT, pushed with the CLI, or synced from the central database. */
export const RULE_ORIGINS = ['mqtt', 'cli', 'central'] as const
export type RuleOrigin = (typeof RULE_ORIGINS)[number]

export interface StoredRule {
  readonly account: string
  readonly name: string
  readonly source: string
  /** The manifest as JSON text, validated when it was stored. */
  readonly manifest: string
  readonly version: number
  readonly origin: RuleOrigin
  readonly updatedAt: number
}

/** A pushed rule that a newer central copy replaced, not yet reported. */
export interface RuleConflict {
  readonly id: number
  readonly account: string
  readonly name: string
  readonly at: number
  readonly localVersion: number
  readonly localOrigin: string
  readonly baseVersion: number
  readonly centralVersion: number
}

export interface RuleLogLine {
  readonly at: number
  readonly level: string
  readonly message: string
}

export const RULE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE rules (
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     source TEXT NOT NULL,
     manifest TEXT NOT NULL,
     version INTEGER NOT NULL,
     origin TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (account, name)
   ) WITHOUT ROWID;
   CREATE TABLE kv (
     account TEXT NOT NULL,
     key TEXT NOT NULL,
     value TEXT NOT NULL,
     PRIMARY KEY (account, key)
   ) WITHOUT ROWID;
   CREATE TABLE rule_logs (
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     seq INTEGER NOT NULL,
     at INTEGER NOT NULL,
     level TEXT NOT NULL,
     message TEXT NOT NULL,
     PRIMARY KEY (account, name, seq)
   ) WITHOUT ROWID;`,
  // The central copies of rules (kept apart: a pushed rule may override one), the central version
  // each local rule is based on, and the conflicts to report when a central update wins.
  `ALTER TABLE rules ADD COLUMN base_version INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE central_rules (
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     source TEXT NOT NULL,
     manifest TEXT NOT NULL,
     enabled INTEGER NOT NULL,
     version INTEGER NOT NULL,
     PRIMARY KEY (account, name)
   ) WITHOUT ROWID;
   CREATE TABLE rule_conflicts (
     id INTEGER PRIMARY KEY,
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     at INTEGER NOT NULL,
     local_version INTEGER NOT NULL,
     local_origin TEXT NOT NULL,
     base_version INTEGER NOT NULL,
     central_version INTEGER NOT NULL,
     published INTEGER NOT NULL DEFAULT 0
   );`,
]

/** Log lines kept per rule; older ones are pruned when new ones are written. */
export const LOG_LINES_KEPT = 1000

interface RawRule {
  account: string
  name: string
  source: string
  manifest: string
  version: number
  origin: string
  updated_at: number
}

/**
 * Rules, their KV stores and their recent log lines in `rules.db`. Not locked exclusively: the
 * CLI pushes rules while perch runs, and perch notices through `changed()`.
 */
export class RuleStore implements Disposable {
  readonly #db: Database
  readonly #clock: Clock
  readonly #s: ReturnType<typeof prepare>
  #dataVersion = -1

  private constructor(db: Database, clock: Clock) {
    this.#db = db
    this.#clock = clock
    this.#s = prepare(db)
  }

  static open(dataDir: string, clock: Clock): Result<RuleStore, DbError> {
    // Rule sources and KV values are the accounts' data: readable by perch's user alone.
    const file = join(dataDir, RULES_FILE)
    const db = openSharedDatabase(file, RULE_MIGRATIONS)
    return db.ok ? ok(new RuleStore(db.value, clock)) : db
  }

  /** True once after another process committed since the last call (this one's KV flushes do not count). */
  changed(): boolean {
    const v = Number(this.#db.pragma('data_version'))
    if (v === this.#dataVersion) return false
    this.#dataVersion = v
    return true
  }

  rules(account?: string): StoredRule[] {
    return (account === undefined ? this.#s.all.all() : this.#s.ofAccount.all(account)).map(toRule)
  }

  rule(account: string, name: string): StoredRule | undefined {
    const r = this.#s.one.get(account, name)
    return r === undefined ? undefined : toRule(r)
  }

  /**
   * Stores a new version of a rule; returns it. A pushed rule is based on the central copy it
   * replaces (if any): it stays until the central copy moves past that version.
   */
  put(account: string, name: string, source: string, manifest: string, origin: RuleOrigin): StoredRule {
    return this.#db.write(() => {
      const version = (this.#s.one.get(account, name)?.version ?? 0) + 1
      const now = this.#clock.now()
      const base = this.#s.centralVersion.get(account, name)?.version ?? 0
      this.#s.put.run(account, name, source, manifest, version, origin, now, base)
      return { account, name, source, manifest, version, origin, updatedAt: now }
    })
  }

  /** Removes a rule with its log; false when there was none. */
  remove(account: string, name: string): boolean {
    return this.#db.write(() => {
      this.#s.removeLogs.run(account, name)
      return this.#s.remove.run(account, name) > 0
    })
  }

  pendingConflicts(): RuleConflict[] {
    return this.#s.conflicts.all()
  }

  conflictReported(id: number): void {
    this.#s.conflictReported.run(id)
  }

  kv(account: string): Record<string, string> {
    const out: Record<string, string> = {}
    for (const r of this.#s.kv.all(account)) out[r.key] = r.value
    return out
  }

  /** Applies KV changes (null deletes) and log lines in one transaction: the write-behind flush. */
  flush(kv: ReadonlyMap<string, ReadonlyMap<string, string | null>>, logs: readonly { account: string; name: string; line: RuleLogLine }[]): void {
    if (kv.size === 0 && logs.length === 0) return
    this.#db.write(() => {
      for (const [account, changes] of kv) {
        for (const [key, value] of changes) {
          if (value === null) this.#s.kvDelete.run(account, key)
          else this.#s.kvPut.run(account, key, value)
        }
      }
      const touched = new Set<string>()
      for (const { account, name, line } of logs) {
        const seq = (this.#s.lastLog.get(account, name)?.seq ?? 0) + 1
        this.#s.log.run(account, name, seq, line.at, line.level, line.message)
        touched.add(`${account}\0${name}`)
      }
      for (const key of touched) {
        const [account = '', name = ''] = key.split('\0')
        const last = this.#s.lastLog.get(account, name)?.seq ?? 0
        this.#s.pruneLogs.run(account, name, last - LOG_LINES_KEPT)
      }
    })
  }

  logs(account: string, name: string, limit: number): RuleLogLine[] {
    return this.#s.logs.all(account, name, limit).reverse()
  }

  dispose(): void {
    this.#db.close()
  }

}

function prepare(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  const cols = 'account, name, source, manifest, version, origin, updated_at'
  return {
    all: s<RawRule>(`SELECT ${cols} FROM rules ORDER BY account, name`),
    ofAccount: s<RawRule>(`SELECT ${cols} FROM rules WHERE account = ? ORDER BY name`),
    one: s<RawRule>(`SELECT ${cols} FROM rules WHERE account = ? AND name = ?`),
    put: s(
      `INSERT INTO rules (${cols}, base_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account, name) DO UPDATE SET source = excluded.source, manifest = excluded.manifest,
         version = excluded.version, origin = excluded.origin, updated_at = excluded.updated_at, base_version = excluded.base_version`,
    ),
    conflicts: s<RuleConflict>(
      `SELECT id, account, name, at, local_version AS localVersion, local_origin AS localOrigin, base_version AS baseVersion,
         central_version AS centralVersion FROM rule_conflicts WHERE published = 0 ORDER BY id`,
    ),
    conflictReported: s('UPDATE rule_conflicts SET published = 1 WHERE id = ?'),
    centralVersion: s<{ version: number }>('SELECT version FROM central_rules WHERE account = ? AND name = ?'),
    remove: s('DELETE FROM rules WHERE account = ? AND name = ?'),
    kv: s<{ key: string; value: string }>('SELECT key, value FROM kv WHERE account = ?'),
    kvPut: s('INSERT INTO kv (account, key, value) VALUES (?, ?, ?) ON CONFLICT (account, key) DO UPDATE SET value = excluded.value'),
    kvDelete: s('DELETE FROM kv WHERE account = ? AND key = ?'),
    lastLog: s<{ seq: number }>('SELECT max(seq) AS seq FROM rule_logs WHERE account = ? AND name = ?'),
    log: s('INSERT INTO rule_logs (account, name, seq, at, level, message) VALUES (?, ?, ?, ?, ?, ?)'),
    pruneLogs: s('DELETE FROM rule_logs WHERE account = ? AND name = ? AND seq <= ?'),
    removeLogs: s('DELETE FROM rule_logs WHERE account = ? AND name = ?'),
    logs: s<RuleLogLine>('SELECT at, level, message FROM rule_logs WHERE account = ? AND name = ? ORDER BY seq DESC LIMIT ?'),
  }
}

function toRule(r: RawRule): StoredRule {
  const origin: RuleOrigin = r.origin === 'cli' || r.origin === 'central' ? r.origin : 'mqtt'
  return { account: r.account, name: r.name, source: r.source, manifest: r.manifest, version: r.version, origin, updatedAt: r.updated_at }
}
