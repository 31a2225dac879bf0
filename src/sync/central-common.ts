// What the central administration modules share: their error type, the schema check every
// command but `init` makes first, transactions, and lookups of gateways and accounts.
import { PerchError } from '../core/errors.js'
import { err, ok, type Result } from '../core/result.js'
import { CENTRAL_MIGRATIONS } from './central-schema.js'
import type { MysqlError, MysqlSession, Row } from './mysql.js'

/**
 * uninitialised: no perch_schema, or an older version (run `perch central init`). too-new: a
 * schema from a newer perch. unknown: no such gateway, account, grant or rule. exists: the name is
 * taken. invalid: an argument the database would refuse. busy: another init holds the database.
 * partial: a migration step broke halfway.
 */
export type CentralErrorKind = 'uninitialised' | 'too-new' | 'unknown' | 'exists' | 'invalid' | 'busy' | 'partial'

export class CentralError extends PerchError {
  readonly kind: CentralErrorKind
  constructor(kind: CentralErrorKind, message: string) {
    super(`ECENTRAL_${kind.replace('-', '_').toUpperCase()}`, message)
    this.name = 'CentralError'
    this.kind = kind
  }
}

export type CentralResult<T> = Result<T, CentralError | MysqlError>

/** The schema version this perch writes and reads. */
export const KNOWN_VERSION = CENTRAL_MIGRATIONS.length

/** How long `init` waits for another init of the same database. */
export const SCHEMA_LOCK_SECONDS = 30

/** MySQL error numbers the administration turns into its own errors. */
export const ER_DUP_ENTRY = 1062
export const ER_NO_SUCH_TABLE = 1146

/** The version in perch_schema; 0 when the table or its row is missing. */
export async function schemaVersion(s: MysqlSession): Promise<Result<number, MysqlError>> {
  const r = await s.query('SELECT version FROM perch_schema WHERE id = 1')
  if (!r.ok) return r.error.errno === ER_NO_SUCH_TABLE ? ok(0) : r
  return ok(Number(r.value[0]?.version ?? 0))
}

/** Succeeds when the database holds exactly the schema this perch knows. */
export async function requireSchema(s: MysqlSession): Promise<CentralResult<number>> {
  const v = await schemaVersion(s)
  if (!v.ok) return v
  if (v.value === 0) return err(new CentralError('uninitialised', 'the central schema is not initialised: run perch central init'))
  if (v.value < KNOWN_VERSION) {
    return err(new CentralError('uninitialised', `the central schema is at version ${v.value}, this perch needs ${KNOWN_VERSION}: run perch central init`))
  }
  if (v.value > KNOWN_VERSION) return err(tooNew(v.value))
  return ok(v.value)
}

export const tooNew = (version: number): CentralError =>
  new CentralError('too-new', `the central schema is at version ${version}, newer than this perch knows (${KNOWN_VERSION}): upgrade perch`)

/** Runs `fn` in a transaction: committed when it succeeds, rolled back when it fails. */
export async function inTransaction<T>(s: MysqlSession, fn: () => Promise<CentralResult<T>>): Promise<CentralResult<T>> {
  const begun = await s.execute('START TRANSACTION')
  if (!begun.ok) return begun
  const r = await fn()
  if (!r.ok) {
    // A broken connection rolls back on the server when it closes.
    await s.execute('ROLLBACK')
    return r
  }
  const committed = await s.execute('COMMIT')
  return committed.ok ? r : committed
}

export interface GatewayRow {
  readonly id: number
  readonly name: string
  readonly dbUser: string
}

const LOCKS = { none: '', share: ' LOCK IN SHARE MODE', update: ' FOR UPDATE' } as const

/**
 * The gateway called `name`. Inside a transaction, `share` keeps it from being removed and
 * `update` from being assigned to until the transaction ends.
 */
export async function gatewayNamed(s: MysqlSession, name: string, lock: keyof typeof LOCKS = 'none'): Promise<CentralResult<GatewayRow>> {
  const r = await s.query(`SELECT id, name, db_user FROM gateways WHERE name = ?${LOCKS[lock]}`, [name])
  if (!r.ok) return r
  const row = r.value[0]
  if (row === undefined) return err(new CentralError('unknown', `no gateway "${name}"`))
  return ok({ id: Number(row.id), name: String(row.name), dbUser: String(row.db_user) })
}

/**
 * Fails unless every account exists; inside a transaction their rows stay locked (shared) until
 * it ends, so an account cannot be removed between this check and the rows that name it.
 */
export async function requireAccounts(s: MysqlSession, names: readonly string[]): Promise<CentralResult<void>> {
  for (const name of new Set(names)) {
    const r = await s.query('SELECT name FROM accounts WHERE name = ? LOCK IN SHARE MODE', [name])
    if (!r.ok) return r
    if (r.value.length === 0) return err(new CentralError('unknown', `no account "${name}"`))
  }
  return ok(undefined)
}

export const notFound = (what: string): CentralError => new CentralError('unknown', what)

export const bool = (v: unknown): boolean => Number(v) !== 0

export const text = (row: Row, key: string): string => (row[key] === null || row[key] === undefined ? '' : String(row[key]))

/** One line for the administrator: what went wrong, in the server's words where it answered. */
export function describeCentralError(e: CentralError | MysqlError): string {
  if (e instanceof CentralError) return e.message
  switch (e.kind) {
    case 'unreachable':
      return `cannot reach the central database: ${e.message}`
    case 'denied':
      return `the central database refused the login: ${e.message}`
    case 'timeout':
      return `the central database did not answer in time: ${e.message}`
    case 'lost':
      return `lost the connection to the central database: ${e.message}`
    case 'sql':
      return `the central database answered with an error: ${e.message}`
  }
}
