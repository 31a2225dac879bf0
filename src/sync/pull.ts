// One read of the central database through this gateway's views, inside one consistent snapshot:
// the counter, the keys changed since the mark, and those keys' current rows. Writes nothing.
import { err, ok, type Result } from '../core/result.js'
import { MysqlError, type MysqlSession, type Row, type SqlParam } from './mysql.js'

export interface PulledAccount {
  readonly name: string
  readonly verifier: string | null
  readonly admin: boolean
  readonly enabled: boolean
}

export interface PulledGrant {
  readonly owner: string
  readonly grantee: string
  readonly filter: string
  readonly publish: boolean
  readonly subscribe: boolean
}

export interface PulledRule {
  readonly account: string
  readonly name: string
  readonly source: string
  readonly manifest: string
  readonly enabled: boolean
  readonly version: number
}

export interface CentralClock {
  readonly v: number
  readonly epoch: string
  readonly prunedUpto: number
}

/** Why a full resync: first sync, the epoch changed, the log was pruned past the mark, the counter went back. */
export type FullReason = 'first' | 'epoch' | 'pruned' | 'behind'

export type Pull =
  | { readonly kind: 'none'; readonly clock: CentralClock }
  | {
      readonly kind: 'full'
      readonly reason: FullReason
      readonly clock: CentralClock
      readonly accounts: readonly PulledAccount[]
      readonly grants: readonly PulledGrant[]
      readonly rules: readonly PulledRule[]
    }
  | {
      readonly kind: 'incremental'
      readonly clock: CentralClock
      readonly accountKeys: readonly string[]
      readonly ruleKeys: readonly (readonly [string, string])[]
      readonly accounts: readonly PulledAccount[]
      readonly grants: readonly PulledGrant[]
      readonly rules: readonly PulledRule[]
    }

const CHUNK = 1000
const ACCOUNT_COLS = 'name, verifier, admin, enabled'
const GRANT_COLS = 'owner, grantee, filter, publish, subscribe'
const RULE_COLS = 'account, name, source, manifest, enabled, version'

/**
 * Reads what changed since `mark` (undefined: everything). The caller applies the result and
 * stores `clock.v` and `clock.epoch` as the new mark in the same transaction.
 */
export async function pull(db: MysqlSession, mark: { hwm: number; epoch: string } | undefined): Promise<Result<Pull, MysqlError>> {
  const begin = await db.execute('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ')
  if (!begin.ok) return begin
  const started = await db.execute('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
  if (!started.ok) return started
  const result = await read(db, mark)
  // Read-only: ending it cannot lose anything, and a broken connection is dropped anyway.
  const ended = await db.execute('COMMIT')
  if (!result.ok) return result
  if (!ended.ok) return ended
  return result
}

async function read(db: MysqlSession, mark: { hwm: number; epoch: string } | undefined): Promise<Result<Pull, MysqlError>> {
  const clockRows = await db.query('SELECT v, epoch, pruned_upto FROM v_sync_clock')
  if (!clockRows.ok) return clockRows
  const c = clockRows.value[0]
  if (c === undefined) return err(new MysqlError('sql', 'v_sync_clock is empty: run perch central init'))
  const me = await db.query('SELECT gateway_id FROM v_my_gateway')
  if (!me.ok) return me
  if (me.value.length === 0) return err(new MysqlError('denied', 'this MySQL user is not the user of any gateway (perch central gateway add)'))
  const clock: CentralClock = { v: Number(c.v), epoch: String(c.epoch), prunedUpto: Number(c.pruned_upto) }
  const reason = fullReason(clock, mark)
  if (reason !== undefined) {
    const accounts = await db.query(`SELECT ${ACCOUNT_COLS} FROM v_accounts`)
    if (!accounts.ok) return accounts
    const grants = await db.query(`SELECT ${GRANT_COLS} FROM v_grants`)
    if (!grants.ok) return grants
    const rules = await db.query(`SELECT ${RULE_COLS} FROM v_rules`)
    if (!rules.ok) return rules
    return ok({ kind: 'full', reason, clock, accounts: accounts.value.map(toAccount), grants: grants.value.map(toGrant), rules: rules.value.map(toRule) })
  }
  if (mark === undefined || clock.v === mark.hwm) return ok({ kind: 'none', clock })
  const keys = await db.query('SELECT DISTINCT entity, account, name FROM v_change_log WHERE seq > ? AND seq <= ?', [mark.hwm, clock.v])
  if (!keys.ok) return keys
  const accountKeys = [...new Set(keys.value.filter((k) => k.entity === 'account').map((k) => String(k.account)))]
  const ruleKeys = uniquePairs(keys.value.filter((k) => k.entity === 'rule').map((k) => [String(k.account), String(k.name)] as const))
  const accounts = await chunked(db, `SELECT ${ACCOUNT_COLS} FROM v_accounts WHERE name IN (?)`, accountKeys)
  if (!accounts.ok) return accounts
  const grants = await chunked(db, `SELECT ${GRANT_COLS} FROM v_grants WHERE owner IN (?)`, accountKeys)
  if (!grants.ok) return grants
  // An account key refreshes all of the account's rules (an assignment brings them all).
  const accountRules = await chunked(db, `SELECT ${RULE_COLS} FROM v_rules WHERE account IN (?)`, accountKeys)
  if (!accountRules.ok) return accountRules
  const rules = accountRules.value.map(toRule)
  const refreshed = new Set(accountKeys)
  const single = ruleKeys.filter(([a]) => !refreshed.has(a))
  for (let i = 0; i < single.length; i += CHUNK) {
    const part = single.slice(i, i + CHUNK)
    const rows = await db.query(`SELECT ${RULE_COLS} FROM v_rules WHERE (account, name) IN (${part.map(() => '(?, ?)').join(', ')})`, part.flat())
    if (!rows.ok) return rows
    rules.push(...rows.value.map(toRule))
  }
  return ok({ kind: 'incremental', clock, accountKeys, ruleKeys: single, accounts: accounts.value.map(toAccount), grants: grants.value.map(toGrant), rules })
}

function fullReason(clock: CentralClock, mark: { hwm: number; epoch: string } | undefined): FullReason | undefined {
  if (mark === undefined) return 'first'
  if (clock.epoch !== mark.epoch) return 'epoch'
  if (clock.v < mark.hwm) return 'behind'
  if (clock.prunedUpto > mark.hwm) return 'pruned'
  return undefined
}

async function chunked(db: MysqlSession, sql: string, keys: readonly string[]): Promise<Result<Row[], MysqlError>> {
  const out: Row[] = []
  for (let i = 0; i < keys.length; i += CHUNK) {
    const part: SqlParam = keys.slice(i, i + CHUNK)
    const rows = await db.query(sql, [part])
    if (!rows.ok) return rows
    out.push(...rows.value)
  }
  return ok(out)
}

function uniquePairs(pairs: readonly (readonly [string, string])[]): (readonly [string, string])[] {
  const seen = new Map<string, readonly [string, string]>()
  for (const p of pairs) seen.set(`${p[0]}\0${p[1]}`, p)
  return [...seen.values()]
}

const flag = (v: unknown): boolean => Number(v) !== 0

function toAccount(r: Row): PulledAccount {
  return { name: String(r.name), verifier: r.verifier === null || r.verifier === undefined ? null : String(r.verifier), admin: flag(r.admin), enabled: flag(r.enabled) }
}

function toGrant(r: Row): PulledGrant {
  return { owner: String(r.owner), grantee: String(r.grantee), filter: String(r.filter), publish: flag(r.publish), subscribe: flag(r.subscribe) }
}

function toRule(r: Row): PulledRule {
  return { account: String(r.account), name: String(r.name), source: String(r.source), manifest: String(r.manifest), enabled: flag(r.enabled), version: Number(r.version) }
}
