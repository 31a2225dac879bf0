import { readFileSync } from 'node:fs'
import { LoginCache } from '../auth/login-cache.js'
import { type LoginVerdict, MysqlUsersHooks } from '../auth/mysql-users-hooks.js'
import type { Clock } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Result } from '../core/result.js'
import { type MysqlError, type MysqlTarget, parseMysqlUrl, redact, tryLogin } from '../sync/mysql.js'
import type { PerchConfig } from './config.js'

/** MariaDB/MySQL errors that mean the account itself is locked or blocked, whatever the password. */
const LOCKED_ERRNOS = new Set([3118, 4150, 4151])
/** ER_CON_COUNT_ERROR: the server is full; it did not judge the password. */
const TOO_MANY_CONNECTIONS = 1040

/** How long logins use the cache after the server did not answer, before one tries it again. */
const RETRY_MS = 1000
/** How long a password the server refused is refused locally. */
const REFUSED_MEMORY_MS = 5 * 60_000

/**
 * auth.mode mysql-users: logins are login attempts on the configured server (its URL's own user
 * and password are not used), with `login-cache.db` in the data directory for offline logins.
 */
export function openMysqlUsers(config: PerchConfig, clock: Clock, logger: Logger): MysqlUsersHooks {
  const m = config.auth.mysqlUsers
  if (m === undefined) throw new ConfigError('auth.mode "mysql-users" needs auth.mysqlUsers')
  const url = m.urlFile === undefined ? (m.url ?? '') : readUrl(m.urlFile)
  const timeoutMs = m.connectTimeout * 1000
  const parsed = parseMysqlUrl(withUser(url), { connectTimeoutMs: timeoutMs, queryTimeoutMs: timeoutMs })
  if (!parsed.ok) throw new ConfigError(`auth.mysqlUsers: ${parsed.error.message}`)
  const target = parsed.value
  const cache = LoginCache.open(config.dataDir, `${target.host}:${target.port}/${target.database}`)
  if (!cache.ok) throw new ConfigError(`auth.mysqlUsers: ${cache.error.message}`)
  const r = config.auth.rateLimit
  return new MysqlUsersHooks(
    {
      target: redact(url),
      trustPeriodMs: m.trustPeriod * 1000,
      byAddress: { maxFailures: r.addressFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      byAccount: { maxFailures: r.accountFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      retryMs: RETRY_MS,
      refusedMemoryMs: REFUSED_MEMORY_MS,
    },
    { probe: (user, password) => probe(target, user, password), cache: cache.value, clock, logger },
  )
}

async function probe(target: MysqlTarget, user: string, password: string): Promise<LoginVerdict> {
  return verdictOf(await tryLogin(target, user, password))
}

export function verdictOf(r: Result<void, MysqlError>): LoginVerdict {
  if (r.ok) return { kind: 'accepted' }
  const e = r.error
  switch (e.kind) {
    case 'denied':
      return { kind: 'refused', locked: e.errno !== undefined && LOCKED_ERRNOS.has(e.errno), detail: e.message }
    case 'unreachable':
    case 'timeout':
    case 'lost':
      return { kind: 'unreachable', detail: e.message }
    case 'sql':
      return e.errno === TOO_MANY_CONNECTIONS ? { kind: 'unreachable', detail: e.message } : { kind: 'failed', detail: e.message }
  }
}

/** The URL's user is not used for logins, so it may be left out. */
function withUser(url: string): string {
  return url.replace(/^mysql:\/\/(?=[^@/]*(\/|$))/, 'mysql://login@')
}

function readUrl(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (e) {
    throw new ConfigError(`auth.mysqlUsers.urlFile ${file}: ${describeError(e)}`)
  }
}
