import { join } from 'node:path'
import { err, ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { type Database, DbError, openDatabase, type Statement } from '../db/index.js'

export const LOGIN_CACHE_FILE = 'login-cache.db'

/** Step i brings `user_version` from i to i + 1. */
export const LOGIN_CACHE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE logins (
     username TEXT PRIMARY KEY NOT NULL,
     verifier TEXT NOT NULL,
     verified_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE meta (
     key TEXT PRIMARY KEY NOT NULL,
     value TEXT NOT NULL
   ) WITHOUT ROWID;`,
]

export interface CachedLogin {
  /** A salted scrypt verifier of the password the server last accepted (see `hashPassword`). */
  readonly verifier: string
  /** When the server accepted it (ms, the injected clock). */
  readonly verifiedAt: number
}

/**
 * Logins a MySQL server accepted, kept in `login-cache.db` (mode 0600) so that the same users can
 * log in while the server cannot be reached. Holds salted verifiers only, never the server's
 * hashes. The highest `verified_at` ever written is kept apart from the rows (deleting a row
 * does not lower it): a clock reading below it means the clock went back.
 */
export class LoginCache implements Disposable {
  readonly #db: Database
  readonly #s: ReturnType<typeof prepare>
  #highWater: number

  private constructor(db: Database) {
    this.#db = db
    this.#s = prepare(db)
    this.#highWater = Number(this.#s.getMeta.get('high_water')?.value ?? 0)
  }

  /**
   * Opens (creating) the cache in `dataDir`. `server` names where the logins were checked
   * (host:port/database): the cache of another server is emptied, not trusted.
   */
  static open(dataDir: string, server: string): Result<LoginCache, DbError> {
    const file = join(dataDir, LOGIN_CACHE_FILE)
    const opened = openDatabase(file, { synchronous: 'full', migrations: LOGIN_CACHE_MIGRATIONS, createMode: 0o600 })
    if (!opened.ok) return opened
    try {
      const cache = new LoginCache(opened.value)
      cache.#bindTo(server)
      return ok(cache)
    } catch (e) {
      opened.value.close()
      if (e instanceof DbError) return err(e)
      throw e
    }
  }

  get file(): string {
    return this.#db.file
  }

  /** The highest `verified_at` ever stored. */
  get highWater(): number {
    return this.#highWater
  }

  get(username: string): CachedLogin | undefined {
    const r = this.#s.get.get(username)
    return r === undefined ? undefined : { verifier: r.verifier, verifiedAt: r.verified_at }
  }

  /** Stores the verifier of a password the server accepted at `verifiedAt`. */
  put(username: string, verifier: string, verifiedAt: number): void {
    this.#db.write(() => {
      this.#s.put.run(username, verifier, verifiedAt)
      this.#raise(verifiedAt)
    })
  }

  /** Moves `verified_at` forward for a password the server accepted again. */
  touch(username: string, verifiedAt: number): void {
    this.#db.write(() => {
      this.#s.touch.run(verifiedAt, username)
      this.#raise(verifiedAt)
    })
  }

  /** Forgets a user's login; true when there was one. */
  remove(username: string): boolean {
    return this.#s.remove.run(username) > 0
  }

  /** How many logins are cached. */
  get size(): number {
    return this.#s.count.get()?.n ?? 0
  }

  dispose(): void {
    this.#db.close()
  }

  #raise(at: number): void {
    if (at <= this.#highWater) return
    this.#s.putMeta.run('high_water', String(at))
    this.#highWater = at
  }

  #bindTo(server: string): void {
    const known = this.#s.getMeta.get('server')?.value
    if (known === server) return
    this.#db.write(() => {
      this.#s.clear.run()
      this.#s.putMeta.run('server', server)
    })
  }

}

function prepare(db: Database) {
  const s = <R = unknown>(sql: string): Statement<R> => db.prepare<R>(sql)
  return {
    get: s<{ verifier: string; verified_at: number }>('SELECT verifier, verified_at FROM logins WHERE username = ?'),
    put: s('INSERT INTO logins (username, verifier, verified_at) VALUES (?, ?, ?) ON CONFLICT (username) DO UPDATE SET verifier = excluded.verifier, verified_at = excluded.verified_at'),
    touch: s('UPDATE logins SET verified_at = ? WHERE username = ?'),
    remove: s('DELETE FROM logins WHERE username = ?'),
    clear: s('DELETE FROM logins'),
    count: s<{ n: number }>('SELECT count(*) AS n FROM logins'),
    getMeta: s<{ value: string }>('SELECT value FROM meta WHERE key = ?'),
    putMeta: s('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  }
}
