// Accounts, their assignment to gateways, and grants in the central database. Callers validate
// names and filters and compute verifiers; these functions keep the rows consistent (children are
// written only while their accounts are locked) and say what is missing. The triggers log every
// change for the gateways concerned.
import { err, ok } from '../core/result.js'
import {
  bool,
  CentralError,
  type CentralResult,
  ER_DUP_ENTRY,
  gatewayNamed,
  inTransaction,
  notFound,
  requireAccounts,
  requireSchema,
  text,
} from './central-common.js'
import type { MysqlSession, Written } from './mysql.js'

const noAccount = (name: string): CentralError => notFound(`no account "${name}"`)

/** Checks the schema, then runs `fn`. */
async function checked<T>(s: MysqlSession, fn: () => Promise<CentralResult<T>>): Promise<CentralResult<T>> {
  const v = await requireSchema(s)
  return v.ok ? fn() : v
}

/** A write that must touch one row: `missing` when it touched none. */
function one(r: CentralResult<Written>, missing: () => CentralError): CentralResult<void> {
  if (!r.ok) return r
  return r.value.affectedRows === 0 ? err(missing()) : ok(undefined)
}

// ---------------------------------------------------------------------------------------------
// Accounts

export function addAccount(s: MysqlSession, name: string, verifier: string, flags: { admin: boolean; enabled: boolean }): Promise<CentralResult<void>> {
  return checked(s, async () => {
    const r = await s.execute('INSERT INTO accounts (name, verifier, admin, enabled) VALUES (?, ?, ?, ?)', [
      name,
      verifier,
      flags.admin ? 1 : 0,
      flags.enabled ? 1 : 0,
    ])
    if (!r.ok && r.error.errno === ER_DUP_ENTRY) return err(new CentralError('exists', `account "${name}" exists`))
    return r.ok ? ok(undefined) : r
  })
}

export interface CentralAccount {
  readonly name: string
  readonly admin: boolean
  readonly enabled: boolean
  readonly version: number
  readonly gateways: readonly string[]
  readonly updated: string
}

/** Every account, or those assigned to `gateway`, by name, with the gateways each is on. */
export function listAccounts(s: MysqlSession, gateway?: string): Promise<CentralResult<CentralAccount[]>> {
  return checked(s, async () => {
    if (gateway !== undefined) {
      const g = await gatewayNamed(s, gateway)
      if (!g.ok) return g
    }
    const r = await s.query(
      `SELECT a.name, a.admin, a.enabled, a.version, a.updated_at,
              (SELECT GROUP_CONCAT(g.name ORDER BY g.name SEPARATOR '\\n') FROM gateway_accounts ga
                 JOIN gateways g ON g.id = ga.gateway_id WHERE ga.account = a.name) AS gws
         FROM accounts a
        WHERE ? IS NULL OR a.name IN (SELECT ga.account FROM gateway_accounts ga JOIN gateways g ON g.id = ga.gateway_id WHERE g.name = ?)
        ORDER BY a.name`,
      [gateway ?? null, gateway ?? null],
    )
    if (!r.ok) return r
    return ok(
      r.value.map((row) => ({
        name: text(row, 'name'),
        admin: bool(row.admin),
        enabled: bool(row.enabled),
        version: Number(row.version),
        gateways: text(row, 'gws') === '' ? [] : text(row, 'gws').split('\n'),
        updated: text(row, 'updated_at'),
      })),
    )
  })
}

export function setVerifier(s: MysqlSession, name: string, verifier: string): Promise<CentralResult<void>> {
  return checked(s, async () => one(await s.execute('UPDATE accounts SET verifier = ? WHERE name = ?', [verifier, name]), () => noAccount(name)))
}

export function setAccountEnabled(s: MysqlSession, name: string, enabled: boolean): Promise<CentralResult<void>> {
  return checked(s, async () => one(await s.execute('UPDATE accounts SET enabled = ? WHERE name = ?', [enabled ? 1 : 0, name]), () => noAccount(name)))
}

/** Deletes the account; its triggers delete its grants (given and received), rules and assignments. */
export function removeAccount(s: MysqlSession, name: string): Promise<CentralResult<void>> {
  return checked(s, async () => one(await s.execute('DELETE FROM accounts WHERE name = ?', [name]), () => noAccount(name)))
}

// ---------------------------------------------------------------------------------------------
// Assignments

export function assign(s: MysqlSession, gateway: string, account: string): Promise<CentralResult<void>> {
  return checked(s, () =>
    inTransaction(s, async () => {
      const g = await gatewayNamed(s, gateway, 'share')
      if (!g.ok) return g
      const a = await requireAccounts(s, [account])
      if (!a.ok) return a
      const r = await s.execute('INSERT INTO gateway_accounts (gateway_id, account) VALUES (?, ?)', [g.value.id, account])
      if (!r.ok && r.error.errno === ER_DUP_ENTRY) return err(new CentralError('exists', `account "${account}" is already assigned to gateway "${gateway}"`))
      return r.ok ? ok(undefined) : r
    }),
  )
}

export function unassign(s: MysqlSession, gateway: string, account: string): Promise<CentralResult<void>> {
  return checked(s, async () => {
    const g = await gatewayNamed(s, gateway)
    if (!g.ok) return g
    const r = await s.execute('DELETE FROM gateway_accounts WHERE gateway_id = ? AND account = ?', [g.value.id, account])
    return one(r, () => notFound(`account "${account}" is not assigned to gateway "${gateway}"`))
  })
}

// ---------------------------------------------------------------------------------------------
// Grants

export interface Rights {
  readonly publish: boolean
  readonly subscribe: boolean
}

export interface CentralGrant extends Rights {
  readonly owner: string
  readonly grantee: string
  readonly filter: string
}

const GRANT_KEY = 'owner = ? AND grantee = ? AND filter = ?'

/** Adds the rights to the grant (made when missing); returns the grant's rights now. */
export function addGrant(s: MysqlSession, owner: string, grantee: string, filter: string, rights: Rights): Promise<CentralResult<Rights>> {
  return checked(s, () =>
    inTransaction(s, async () => {
      const a = await requireAccounts(s, [owner, grantee])
      if (!a.ok) return a
      const r = await s.execute(
        `INSERT INTO grants (owner, grantee, filter, publish, subscribe) VALUES (?, ?, ?, ?, ?)
           ON DUPLICATE KEY UPDATE publish = GREATEST(publish, VALUES(publish)), subscribe = GREATEST(subscribe, VALUES(subscribe))`,
        [owner, grantee, filter, rights.publish ? 1 : 0, rights.subscribe ? 1 : 0],
      )
      if (!r.ok) return r
      const now = await grantRights(s, owner, grantee, filter)
      if (!now.ok) return now
      return now.value === undefined ? err(notFound(`no grant of ${filter} from ${owner} to ${grantee} after adding it`)) : ok(now.value)
    }),
  )
}

async function grantRights(s: MysqlSession, owner: string, grantee: string, filter: string, lock = ''): Promise<CentralResult<Rights | undefined>> {
  const r = await s.query(`SELECT publish, subscribe FROM grants WHERE ${GRANT_KEY}${lock}`, [owner, grantee, filter])
  if (!r.ok) return r
  const row = r.value[0]
  return ok(row === undefined ? undefined : { publish: bool(row.publish), subscribe: bool(row.subscribe) })
}

/** Takes the rights away; the grant is deleted when none is left. Returns what is left, if any. */
export function removeGrant(s: MysqlSession, owner: string, grantee: string, filter: string, rights: Rights): Promise<CentralResult<Rights | undefined>> {
  return checked(s, () =>
    inTransaction(s, async () => {
      const had = await grantRights(s, owner, grantee, filter, ' FOR UPDATE')
      if (!had.ok) return had
      if (had.value === undefined) return err(notFound(`no grant of ${filter} from ${owner} to ${grantee}`))
      const left = { publish: had.value.publish && !rights.publish, subscribe: had.value.subscribe && !rights.subscribe }
      const key = [owner, grantee, filter]
      const r =
        left.publish || left.subscribe
          ? await s.execute(`UPDATE grants SET publish = ?, subscribe = ? WHERE ${GRANT_KEY}`, [left.publish ? 1 : 0, left.subscribe ? 1 : 0, ...key])
          : await s.execute(`DELETE FROM grants WHERE ${GRANT_KEY}`, key)
      if (!r.ok) return r
      return ok(left.publish || left.subscribe ? left : undefined)
    }),
  )
}

/** Every grant, or those `account` gives or receives. */
export function listGrants(s: MysqlSession, account?: string): Promise<CentralResult<CentralGrant[]>> {
  return checked(s, async () => {
    const r = await s.query('SELECT owner, grantee, filter, publish, subscribe FROM grants WHERE ? IS NULL OR owner = ? OR grantee = ? ORDER BY owner, grantee, filter', [
      account ?? null,
      account ?? null,
      account ?? null,
    ])
    if (!r.ok) return r
    return ok(
      r.value.map((row) => ({
        owner: text(row, 'owner'),
        grantee: text(row, 'grantee'),
        filter: text(row, 'filter'),
        publish: bool(row.publish),
        subscribe: bool(row.subscribe),
      })),
    )
  })
}
