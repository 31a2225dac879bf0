// A central database's location: the mysql:// URL parsed and redacted, and the error type of
// every MySQL operation. Kept apart from mysql.ts so that the main thread, which only checks the
// URL and names the server in messages, does not load mysql2 (the sync runs in a worker).
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
