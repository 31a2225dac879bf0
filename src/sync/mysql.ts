// The only importer of mysql2. Every query has a timeout (a frozen server would otherwise hold a
// query until the kernel gives up on the TCP connection), and a connection that saw any error is
// destroyed, never reused: after a timeout its protocol state is unknown.
import { readFileSync } from 'node:fs'
import mysql from 'mysql2/promise'
import { PerchError } from '../core/errors.js'
import { err, ok, type Result } from '../core/result.js'

export interface MysqlTarget {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: string
  readonly database: string
  /** TLS to the server: a CA file to trust (else the system's), and whether to verify it. */
  readonly tls?: { readonly caFile?: string | undefined; readonly verify: boolean } | undefined
  readonly connectTimeoutMs: number
  readonly queryTimeoutMs: number
}

/**
 * unreachable: no connection (refused, DNS, connect timeout). timeout: a query outlived its
 * timeout. lost: the connection broke. denied: wrong user or password (MySQL 1045), or the
 * account is locked or blocked. sql: the server refused the statement (syntax, privileges, schema).
 */
export type MysqlErrorKind = 'unreachable' | 'timeout' | 'lost' | 'denied' | 'sql'

export class MysqlError extends PerchError {
  readonly kind: MysqlErrorKind
  /** The server's error number, when the server answered. */
  readonly errno: number | undefined
  constructor(kind: MysqlErrorKind, message: string, errno?: number) {
    super(`EMYSQL_${kind.toUpperCase()}`, message)
    this.name = 'MysqlError'
    this.kind = kind
    this.errno = errno
  }
}

export type Row = Record<string, unknown>
export type SqlParam = string | number | bigint | boolean | null | readonly (string | number)[]

export interface Written {
  readonly affectedRows: number
  readonly insertId: number
}

const DENIED_ERRNOS = new Set([
  1045, // ER_ACCESS_DENIED_ERROR
  1044, // ER_DBACCESS_DENIED_ERROR
  3118, // ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
  4150, // MariaDB: user is blocked because of too many credential errors
  4151, // MariaDB: access denied, this account is locked
])

/** Parses `mysql://user:password@host:port/database`; `?ssl=1` asks for TLS with verification. */
export function parseMysqlUrl(url: string, timeouts: { connectTimeoutMs: number; queryTimeoutMs: number }): Result<MysqlTarget, MysqlError> {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return err(new MysqlError('sql', `not a URL: ${redact(url)} (expected mysql://user:password@host:port/database)`))
  }
  if (u.protocol !== 'mysql:') return err(new MysqlError('sql', `${redact(url)}: the scheme must be mysql://`))
  const [database, user, password] = [u.pathname.replace(/^\//, ''), u.username, u.password].map(decoded)
  if (database === undefined || user === undefined || password === undefined) {
    return err(new MysqlError('sql', `${redact(url)}: a malformed %-escape in the user, password or database`))
  }
  if (database === '' || database.includes('/')) return err(new MysqlError('sql', `${redact(url)}: name one database, as in mysql://user:password@host/central`))
  if (user === '') return err(new MysqlError('sql', `${redact(url)}: needs a user name`))
  const ssl = u.searchParams.get('ssl')
  return ok({
    host: u.hostname === '' ? '127.0.0.1' : u.hostname,
    port: u.port === '' ? 3306 : Number(u.port),
    user,
    password,
    database,
    tls: ssl === null || ssl === '0' ? undefined : { caFile: u.searchParams.get('ca') ?? undefined, verify: ssl !== 'insecure' },
    ...timeouts,
  })
}

/**
 * The URL with its password hidden, for messages: whatever the scheme (a mistyped one too), and
 * up to the last '@', since a password may hold an unescaped '@' (more hidden is still safe).
 */
export function redact(url: string): string {
  return url.replace(/^((?:[A-Za-z][A-Za-z0-9+.-]*:\/\/|(?![^:]*:\/\/))[^:/@\s]*:)\S*@/, '$1***@')
}

/** A %-decoded URL part, or undefined when its escapes are malformed (decodeURIComponent throws). */
function decoded(part: string): string | undefined {
  try {
    return decodeURIComponent(part)
  } catch {
    return undefined
  }
}

/** One connection with a timeout on every query; destroyed after any error. */
export class MysqlSession {
  readonly #conn: mysql.Connection
  readonly #queryTimeoutMs: number
  #broken = false

  private constructor(conn: mysql.Connection, queryTimeoutMs: number) {
    this.#conn = conn
    this.#queryTimeoutMs = queryTimeoutMs
    // An idle connection that breaks emits 'error'; without a listener that would crash the process.
    conn.on('error', () => {
      this.#broken = true
    })
  }

  static async open(target: MysqlTarget, options: { multipleStatements?: boolean } = {}): Promise<Result<MysqlSession, MysqlError>> {
    let ssl: mysql.SslOptions | undefined
    if (target.tls !== undefined) {
      try {
        ssl = { rejectUnauthorized: target.tls.verify, ...(target.tls.caFile === undefined ? {} : { ca: readFileSync(target.tls.caFile, 'utf8') }) }
      } catch (e) {
        return err(new MysqlError('unreachable', `cannot read the CA file ${target.tls.caFile}: ${e instanceof Error ? e.message : String(e)}`))
      }
    }
    try {
      const conn = await mysql.createConnection({
        host: target.host,
        port: target.port,
        user: target.user,
        password: target.password,
        database: target.database,
        connectTimeout: target.connectTimeoutMs,
        supportBigNumbers: true,
        bigNumberStrings: false,
        dateStrings: true,
        charset: 'utf8mb4_bin',
        multipleStatements: options.multipleStatements ?? false,
        ...(ssl === undefined ? {} : { ssl }),
      })
      return ok(new MysqlSession(conn, target.queryTimeoutMs))
    } catch (e) {
      return err(toMysqlError(e, `${target.user}@${target.host}:${target.port}/${target.database}`, true))
    }
  }

  get broken(): boolean {
    return this.#broken
  }

  /** Rows of a SELECT (or an empty list for other statements). */
  async query(sql: string, params: readonly SqlParam[] = [], timeoutMs = this.#queryTimeoutMs): Promise<Result<Row[], MysqlError>> {
    const r = await this.#run(sql, params, timeoutMs)
    if (!r.ok) return r
    return ok(Array.isArray(r.value) ? (r.value as Row[]) : [])
  }

  /** A statement that changes something: how many rows, and the AUTO_INCREMENT id it made. */
  async execute(sql: string, params: readonly SqlParam[] = [], timeoutMs = this.#queryTimeoutMs): Promise<Result<Written, MysqlError>> {
    const r = await this.#run(sql, params, timeoutMs)
    if (!r.ok) return r
    const h = r.value as { affectedRows?: number; insertId?: number }
    return ok({ affectedRows: Number(h.affectedRows ?? 0), insertId: Number(h.insertId ?? 0) })
  }

  /** Closes politely when healthy, destroys otherwise; never throws. */
  async close(): Promise<void> {
    if (this.#broken) {
      this.destroy()
      return
    }
    try {
      await Promise.race([this.#conn.end(), new Promise((resolve) => setTimeout(resolve, 1000).unref())])
    } catch {
      // closing anyway
    }
    this.destroy()
  }

  destroy(): void {
    this.#broken = true
    try {
      this.#conn.destroy()
    } catch {
      // already gone
    }
  }

  async #run(sql: string, params: readonly SqlParam[], timeoutMs: number): Promise<Result<unknown, MysqlError>> {
    if (this.#broken) return err(new MysqlError('lost', 'the connection was closed after an earlier error'))
    try {
      const [result] = await this.#conn.query({ sql, timeout: timeoutMs }, params as unknown[])
      return ok(result)
    } catch (e) {
      const error = toMysqlError(e, undefined, false)
      // A statement the server refused leaves the connection usable; anything else does not.
      if (error.kind !== 'sql') this.destroy()
      return err(error)
    }
  }
}

/**
 * Tries to log in as `user` with `password` on a connection of its own (never a shared one: after
 * a failed change of user a connection stays logged in as the previous user), then closes it.
 */
export async function tryLogin(target: MysqlTarget, user: string, password: string): Promise<Result<void, MysqlError>> {
  const opened = await MysqlSession.open({ ...target, user, password })
  if (!opened.ok) return opened
  await opened.value.close()
  return ok(undefined)
}

function toMysqlError(e: unknown, where: string | undefined, connecting: boolean): MysqlError {
  const x = e as { code?: string; errno?: number; message?: string; fatal?: boolean }
  const message = `${where === undefined ? '' : `${where}: `}${x.message ?? String(e)}`
  // Server errors are numbered 1000-1999 (and 3000+, 4000+ for newer ones); client-side ones have no errno.
  const fromServer = x.errno !== undefined && x.errno >= 1000 && (x.errno < 2000 || x.errno >= 3000)
  if (x.errno !== undefined && DENIED_ERRNOS.has(x.errno)) return new MysqlError('denied', message, x.errno)
  if (x.code === 'PROTOCOL_SEQUENCE_TIMEOUT') return new MysqlError('timeout', message)
  if (connecting) return new MysqlError(fromServer ? 'sql' : 'unreachable', message, x.errno)
  if (x.fatal === true || x.code === 'PROTOCOL_CONNECTION_LOST' || x.code === 'ECONNRESET' || x.code === 'EPIPE') {
    return new MysqlError('lost', message, x.errno)
  }
  return new MysqlError(fromServer ? 'sql' : 'lost', message, x.errno)
}
