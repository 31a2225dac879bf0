// Rules in the central database. The caller compiles and validates a rule before it is pushed;
// the triggers give every insert or update a new version and log it for the account's gateways.
import { err, ok } from '../core/result.js'
import { bool, type CentralResult, inTransaction, notFound, requireAccounts, requireSchema, text } from './central-common.js'
import type { MysqlSession } from './mysql.js'

const noRule = (account: string, name: string) => notFound(`no rule "${name}" of account "${account}"`)

/** Stores the rule (a new one enabled, an existing one keeps its enabled flag); returns its new version. */
export async function pushRule(s: MysqlSession, account: string, name: string, source: string, manifest: string): Promise<CentralResult<number>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  return inTransaction(s, async () => {
    const a = await requireAccounts(s, [account])
    if (!a.ok) return a
    const r = await s.execute(
      `INSERT INTO rules (account, name, source, manifest) VALUES (?, ?, ?, ?)
         ON DUPLICATE KEY UPDATE source = VALUES(source), manifest = VALUES(manifest)`,
      [account, name, source, manifest],
    )
    if (!r.ok) return r
    const v = await s.query('SELECT version FROM rules WHERE account = ? AND name = ?', [account, name])
    if (!v.ok) return v
    const row = v.value[0]
    return row === undefined ? err(noRule(account, name)) : ok(Number(row.version))
  })
}

export async function removeRule(s: MysqlSession, account: string, name: string): Promise<CentralResult<void>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const r = await s.execute('DELETE FROM rules WHERE account = ? AND name = ?', [account, name])
  if (!r.ok) return r
  return r.value.affectedRows === 0 ? err(noRule(account, name)) : ok(undefined)
}

/** Enables or disables the rule; returns its new version. */
export async function setRuleEnabled(s: MysqlSession, account: string, name: string, enabled: boolean): Promise<CentralResult<number>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  return inTransaction(s, async () => {
    const r = await s.execute('UPDATE rules SET enabled = ? WHERE account = ? AND name = ?', [enabled ? 1 : 0, account, name])
    if (!r.ok) return r
    if (r.value.affectedRows === 0) return err(noRule(account, name))
    const v = await s.query('SELECT version FROM rules WHERE account = ? AND name = ?', [account, name])
    if (!v.ok) return v
    return ok(Number(v.value[0]?.version ?? 0))
  })
}

export interface CentralRule {
  readonly account: string
  readonly name: string
  readonly version: number
  readonly enabled: boolean
  readonly bytes: number
  readonly updated: string
}

/** Every rule, or those of `account`, without their sources. */
export async function listRules(s: MysqlSession, account?: string): Promise<CentralResult<CentralRule[]>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const r = await s.query(
    'SELECT account, name, version, enabled, LENGTH(source) AS bytes, updated_at FROM rules WHERE ? IS NULL OR account = ? ORDER BY account, name',
    [account ?? null, account ?? null],
  )
  if (!r.ok) return r
  return ok(
    r.value.map((row) => ({
      account: text(row, 'account'),
      name: text(row, 'name'),
      version: Number(row.version),
      enabled: bool(row.enabled),
      bytes: Number(row.bytes),
      updated: text(row, 'updated_at'),
    })),
  )
}
