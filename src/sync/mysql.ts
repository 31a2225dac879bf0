// The only importer of mysql2. Every query has a timeout (a frozen server would otherwise hold a
// query until the kernel gives up on the TCP connection), and a connection that saw any error is
// destroyed, never reused: after a timeout its protocol state is unknown.
import { readFileSync } from 'node:fs'
import mysql from 'mysql2/promise'
import { err, ok, type Result } from '../core/result.js'
import { MysqlError, type MysqlTarget } from './mysql-url.js'

export { MysqlError, type MysqlErrorKind, type MysqlTarget, parseMysqlUrl, redact } from './mysql-url.js'

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
