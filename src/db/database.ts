import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from 'node:fs'
import BetterSqlite3 from 'better-sqlite3'
import { err, ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { DbError, toDbError } from './errors.js'
import { spaceBudget } from './files.js'
import { runMigrations } from './migrate.js'

/** What a statement parameter or a column may hold. */
export type SqlValue = string | number | bigint | Buffer | null

export type Synchronous = 'full' | 'normal'

export interface OpenOptions {
  /** FULL syncs the WAL at every commit (survives power loss); NORMAL only at checkpoints. */
  readonly synchronous: Synchronous
  /** Schema steps in order; step i brings `user_version` from i to i + 1. */
  readonly migrations: readonly string[]
  readonly busyTimeoutMs?: number
  /**
   * Keep the file within the free space found at open (see `spaceBudget`): the database then
   * reports itself full (SQLITE_FULL) while the file system still has room to delete, commit
   * and checkpoint, so draining a queue frees space again. Off by default.
   */
  readonly fitFreeSpace?: boolean
  /**
   * Hold the file for this process alone (the default). Off for a database other processes
   * (the CLI) write while perch runs: they then see each other's commits.
   */
  readonly exclusive?: boolean
  /** Create a missing file with this mode (its -wal and -shm get the same): 0o600 for secrets. */
  readonly createMode?: number
}

/**
 * One prepared statement, created once and run many times. A failure is thrown as a DbError
 * that names the file: the only exception callers need to catch.
 */
export class Statement<R> {
  readonly #stmt: BetterSqlite3.Statement<SqlValue[], R>
  readonly #file: string

  constructor(stmt: BetterSqlite3.Statement<SqlValue[], R>, file: string) {
    this.#stmt = stmt
    this.#file = file
  }

  /** Returns how many rows changed. */
  run(...params: SqlValue[]): number {
    try {
      return this.#stmt.run(...params).changes
    } catch (e) {
      throw toDbError(e, this.#file)
    }
  }

  get(...params: SqlValue[]): R | undefined {
    try {
      return this.#stmt.get(...params)
    } catch (e) {
      throw toDbError(e, this.#file)
    }
  }

  all(...params: SqlValue[]): R[] {
    try {
      return this.#stmt.all(...params)
    } catch (e) {
      throw toDbError(e, this.#file)
    }
  }
}

/** An open SQLite database in WAL mode; disposing it closes it. */
export class Database implements Disposable {
  readonly file: string
  /** The size the file may grow to, when `fitFreeSpace` capped it. */
  maxBytes: number | undefined
  readonly #db: BetterSqlite3.Database

  constructor(db: BetterSqlite3.Database, file: string) {
    this.#db = db
    this.file = file
  }

  get open(): boolean {
    return this.#db.open
  }

  get inTransaction(): boolean {
    return this.#db.open && this.#db.inTransaction
  }

  /** Rows come back as objects keyed by column name, typed by the caller's `R`. */
  prepare<R = unknown>(sql: string): Statement<R> {
    try {
      return new Statement(this.#db.prepare<SqlValue[], R>(sql), this.file)
    } catch (e) {
      throw toDbError(e, this.file)
    }
  }

  exec(sql: string): void {
    try {
      this.#db.exec(sql)
    } catch (e) {
      throw toDbError(e, this.file)
    }
  }

  /** The single value a pragma returns (`user_version`, `journal_mode`). */
  pragma(source: string): unknown {
    try {
      return this.#db.pragma(source, { simple: true })
    } catch (e) {
      throw toDbError(e, this.file)
    }
  }

  /** Every row a pragma returns, first column only (`quick_check`). */
  pragmaList(source: string): unknown[] {
    try {
      const rows = this.#db.pragma(source)
      return Array.isArray(rows) ? rows.map((r: unknown) => (typeof r === 'object' && r !== null ? Object.values(r)[0] : r)) : []
    } catch (e) {
      throw toDbError(e, this.file)
    }
  }

  /**
   * Runs `fn` in a write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so a
   * busy file waits here, not halfway through) and commits; rolls back if `fn` throws.
   */
  write<T>(fn: () => T): T {
    this.exec('BEGIN IMMEDIATE')
    try {
      const r = fn()
      this.exec('COMMIT')
      return r
    } finally {
      this.rollback()
    }
  }

  /** Ends an open transaction without applying it; never throws. */
  rollback(): void {
    try {
      if (this.inTransaction) this.#db.exec('ROLLBACK')
    } catch {
      // SQLite may already have rolled back on its own (SQLITE_FULL, SQLITE_IOERR).
    }
  }

  close(): void {
    if (!this.#db.open) return
    this.rollback()
    this.#db.close()
  }

  dispose(): void {
    this.close()
  }
}

/**
 * Opens (creating if missing) the database at `file`: exclusive locking, WAL, the configured
 * `synchronous` and a busy timeout on every open (an existing WAL file would otherwise reopen as NORMAL),
 * an integrity check, then the schema migrations. Every failure names the file.
 */
export function openDatabase(file: string, options: OpenOptions): Result<Database, DbError> {
  if (options.createMode !== undefined) {
    try {
      closeSync(openSync(file, 'wx', options.createMode))
    } catch {
      // it exists already, or the directory is unusable, which the open below reports
    }
  }
  const unreadable = checkAccess(file)
  if (unreadable !== undefined) return err(unreadable)
  let raw: BetterSqlite3.Database | undefined
  try {
    raw = new BetterSqlite3(file)
    const db = new Database(raw, file)
    db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 2000)}`)
    // One process owns the file: a second perch on the same data directory fails to open it
    // (SQLITE_BUSY), and the WAL index lives in memory, so no -shm file is written.
    if (options.exclusive !== false) db.pragma('locking_mode = EXCLUSIVE')
    const mode = db.pragma('journal_mode = WAL')
    if (mode !== 'wal') throw new DbError('io', file, `journal_mode is ${String(mode)}, WAL is required`)
    db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    if (options.fitFreeSpace === true) {
      const pageSize = Number(db.pragma('page_size'))
      const budget = spaceBudget(file, pageSize, Number(db.pragma('page_count')))
      if (budget !== undefined) {
        db.maxBytes = Number(db.pragma(`max_page_count = ${budget.maxPages}`)) * pageSize
        db.pragma(`wal_autocheckpoint = ${budget.walPages}`)
      }
    }
    const problems = db.pragmaList('quick_check').filter((line) => line !== 'ok')
    if (problems.length > 0) {
      throw new DbError('corrupt', file, `quick_check: ${problems.slice(0, 3).map(String).join('; ')}`)
    }
    runMigrations(db, options.migrations)
    return ok(db)
  } catch (e) {
    try {
      raw?.close()
    } catch {
      // already failing; the first error is the one to report
    }
    return err(toDbError(e, file))
  }
}

/**
 * What can be told before SQLite touches the file: SQLite reports a file it may not open as
 * "unable to open database file" (say which and why), and a file without the SQLite header is
 * refused here, so its -wal is left exactly as it was for whoever examines it.
 */
function checkAccess(file: string): DbError | undefined {
  if (!existsSync(file)) return undefined
  try {
    const stat = statSync(file)
    if (stat.isDirectory()) return new DbError('unreadable', file, 'it is a directory')
    accessSync(file, constants.R_OK | constants.W_OK)
    if (stat.size === 0) return undefined
    const header = Buffer.from('SQLite format 3\0', 'latin1')
    const head = Buffer.alloc(header.length)
    const fd = openSync(file, 'r')
    try {
      readSync(fd, head, 0, head.length, 0)
    } finally {
      closeSync(fd)
    }
    return head.equals(header) ? undefined : new DbError('not-a-database', file, 'no SQLite header')
  } catch (e) {
    return toDbError(e, file)
  }
}

/**
 * A database shared between processes (perch, its CLI, the sync worker): not locked exclusively,
 * synchronous FULL, a 5 s busy timeout, and created readable by its owner alone.
 */
export function openSharedDatabase(file: string, migrations: readonly string[]): Result<Database, DbError> {
  return openDatabase(file, { synchronous: 'full', migrations, exclusive: false, busyTimeoutMs: 5000, createMode: 0o600 })
}
