// Gateways in the central database: a row in `gateways` and a MySQL user of their own that may
// SELECT from the per-gateway views and nothing else.
import { randomBytes } from 'node:crypto'
import { err, ok } from '../core/result.js'
import { CentralError, type CentralResult, ER_DUP_ENTRY, gatewayNamed, inTransaction, requireSchema, text } from './central-common.js'
import { GATEWAY_VIEWS } from './central-schema.js'
import { MysqlError, type MysqlSession, type MysqlTarget } from './mysql.js'

export const MAX_GATEWAY_NAME = 32
const GATEWAY_NAME = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_GATEWAY_NAME}}$`)
export const GATEWAY_USER_PREFIX = 'perch_gw_'
const ER_CANNOT_USER = 1396

/** Why `name` cannot name a gateway, or null when it can. */
export function gatewayNameProblem(name: string): string | null {
  return GATEWAY_NAME.test(name) ? null : `a gateway name is 1 to ${MAX_GATEWAY_NAME} letters, digits, '-' or '_'`
}

/** Why `pattern` cannot be the host part of a MySQL account, or null when it can. */
function hostPatternProblem(pattern: string): string | null {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (pattern === '' || pattern.length > 255 || /[\u0000-\u001f\u007f\s'"`]/.test(pattern)) return `"${pattern}" is not a host pattern such as %, 10.0.% or gw1.example.org`
  return null
}

export interface NewGateway {
  readonly name: string
  readonly dbUser: string
  readonly hostPattern: string
  /** The new MySQL user's password: shown once, in the gateway's config. */
  readonly password: string
}

/**
 * Adds the gateway row, creates its MySQL user `'perch_gw_NAME'@'PATTERN'` with a random password
 * and grants it SELECT on each gateway view of `database`. What fails half way is undone.
 */
export async function addGateway(s: MysqlSession, database: string, name: string, hostPattern: string): Promise<CentralResult<NewGateway>> {
  const problem = gatewayNameProblem(name) ?? hostPatternProblem(hostPattern)
  if (problem !== null) return err(new CentralError('invalid', problem))
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const dbUser = `${GATEWAY_USER_PREFIX}${name}`
  const password = randomBytes(24).toString('base64url')
  const inserted = await s.execute('INSERT INTO gateways (name, db_user) VALUES (?, ?)', [name, dbUser])
  if (!inserted.ok) {
    return inserted.error.errno === ER_DUP_ENTRY ? err(new CentralError('exists', `gateway "${name}" exists (or its MySQL user ${dbUser} is taken)`)) : inserted
  }
  const undoRow = (): Promise<unknown> => s.execute('DELETE FROM gateways WHERE name = ?', [name])
  const created = await s.execute('CREATE USER ?@? IDENTIFIED BY ?', [dbUser, hostPattern, password])
  if (!created.ok) {
    await undoRow()
    if (created.error.errno === ER_CANNOT_USER) {
      return err(new CentralError('exists', `the MySQL user '${dbUser}'@'${hostPattern}' exists already: drop it (DROP USER) or choose another gateway name`))
    }
    return err(scrubbed(created.error, password))
  }
  for (const view of GATEWAY_VIEWS) {
    const granted = await s.execute('GRANT SELECT ON ??.?? TO ?@?', [database, view, dbUser, hostPattern])
    if (!granted.ok) {
      await s.execute('DROP USER IF EXISTS ?@?', [dbUser, hostPattern])
      await undoRow()
      return granted
    }
  }
  return ok({ name, dbUser, hostPattern, password })
}

/** A server error that quotes the statement could quote the password: hide it. */
function scrubbed(e: MysqlError, secret: string): MysqlError {
  return e.message.includes(secret) ? new MysqlError(e.kind, e.message.replaceAll(secret, '***'), e.errno) : e
}

export interface GatewaySummary {
  readonly name: string
  readonly dbUser: string
  readonly accounts: number
}

/** Every gateway with its MySQL user and how many accounts are assigned to it, by name. */
export async function listGateways(s: MysqlSession): Promise<CentralResult<GatewaySummary[]>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const r = await s.query(
    `SELECT g.name, g.db_user, COUNT(ga.account) AS n FROM gateways g
       LEFT JOIN gateway_accounts ga ON ga.gateway_id = g.id GROUP BY g.id, g.name, g.db_user ORDER BY g.name`,
  )
  if (!r.ok) return r
  return ok(r.value.map((row) => ({ name: text(row, 'name'), dbUser: text(row, 'db_user'), accounts: Number(row.n ?? 0) })))
}

export interface RemovedGateway {
  readonly users: readonly string[]
  readonly accounts: number
}

/**
 * Drops the gateway's MySQL user (every host pattern of it) and ends its sessions, then
 * deletes its assignments one row at a time (their triggers log each one) and the gateway row.
 */
export async function removeGateway(s: MysqlSession, name: string): Promise<CentralResult<RemovedGateway>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const gateway = await gatewayNamed(s, name)
  if (!gateway.ok) return gateway
  const { dbUser } = gateway.value
  // mysql.user needs a privilege the administrator may lack: then the default pattern is tried.
  const hosts = await s.query('SELECT Host FROM mysql.user WHERE User = ?', [dbUser])
  const patterns = hosts.ok ? hosts.value.map((h) => text(h, 'Host')) : ['%']
  const users: string[] = []
  for (const host of patterns) {
    const dropped = await s.execute('DROP USER IF EXISTS ?@?', [dbUser, host])
    if (!dropped.ok) return dropped
    users.push(`'${dbUser}'@'${host}'`)
  }
  await endSessions(s, dbUser)
  const removed = await inTransaction(s, async () => {
    // Locked first: an assignment under way commits before the list is read, or finds no gateway.
    const locked = await gatewayNamed(s, name, 'update')
    if (!locked.ok) return locked
    const { id } = locked.value
    const assigned = await s.query('SELECT account FROM gateway_accounts WHERE gateway_id = ? FOR UPDATE', [id])
    if (!assigned.ok) return assigned
    for (const row of assigned.value) {
      const r = await s.execute('DELETE FROM gateway_accounts WHERE gateway_id = ? AND account = ?', [id, text(row, 'account')])
      if (!r.ok) return r
    }
    const r = await s.execute('DELETE FROM gateways WHERE id = ?', [id])
    return r.ok ? ok(assigned.value.length) : r
  })
  if (!removed.ok) return removed
  return ok({ users, accounts: removed.value })
}

/** A dropped user's open sessions go on until they end: end them (best effort, needs a privilege). */
async function endSessions(s: MysqlSession, dbUser: string): Promise<void> {
  const sessions = await s.query('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?', [dbUser])
  if (!sessions.ok) return
  for (const row of sessions.value) await s.execute('KILL CONNECTION ?', [Number(row.ID)])
}

/**
 * The config a new gateway runs with (`perch start --config FILE`): its own login to `database`
 * at host:port (where the gateway reaches the server, which may not be where the admin does), TLS
 * as the admin URL asks (a CA file is the admin's, so a private CA is left to the gateway's config).
 */
export function gatewayConfig(admin: MysqlTarget, g: NewGateway, host: string, port: number): { sync: { url: string; gateway: string } } {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
  const tls = admin.tls === undefined ? '' : admin.tls.verify ? '?ssl=1' : '?ssl=insecure'
  const url = `mysql://${encodeURIComponent(g.dbUser)}:${encodeURIComponent(g.password)}@${h}:${port}/${encodeURIComponent(admin.database)}${tls}`
  return { sync: { url, gateway: g.name } }
}
