// The central schema's upkeep: creating and upgrading it, a new epoch after a restore, pruning
// the change log, and a summary of its state.
import { err, ok } from '../core/result.js'
import {
  CentralError,
  type CentralResult,
  KNOWN_VERSION,
  requireSchema,
  SCHEMA_LOCK_SECONDS,
  schemaVersion,
  text,
  tooNew,
} from './central-common.js'
import { type GatewaySummary, listGateways } from './central-gateways.js'
import { CENTRAL_MIGRATIONS, SCHEMA_TABLE } from './central-schema.js'
import type { MysqlSession } from './mysql.js'

export interface InitReport {
  readonly from: number
  readonly to: number
}

/**
 * Creates perch_schema and applies the missing steps, one statement at a time, recording the
 * version after each step (DDL commits on its own in MySQL: a step cannot be rolled back). A
 * named lock keeps two inits of the same database from applying a step twice.
 */
export async function initSchema(s: MysqlSession): Promise<CentralResult<InitReport>> {
  const lock = await s.query('SELECT GET_LOCK(CONCAT(?, DATABASE()), ?) AS got', ['perch_central_init:', SCHEMA_LOCK_SECONDS])
  if (!lock.ok) return lock
  if (Number(lock.value[0]?.got) !== 1) return err(new CentralError('busy', `another perch central init holds this database (waited ${SCHEMA_LOCK_SECONDS} s)`))
  try {
    return await migrate(s)
  } finally {
    await s.query('SELECT RELEASE_LOCK(CONCAT(?, DATABASE()))', ['perch_central_init:'])
  }
}

async function migrate(s: MysqlSession): Promise<CentralResult<InitReport>> {
  for (const sql of [SCHEMA_TABLE, 'INSERT IGNORE INTO perch_schema (id, version) VALUES (1, 0)']) {
    const r = await s.execute(sql)
    if (!r.ok) return r
  }
  const current = await schemaVersion(s)
  if (!current.ok) return current
  const from = current.value
  if (from > KNOWN_VERSION) return err(tooNew(from))
  for (let step = from; step < KNOWN_VERSION; step++) {
    const statements = CENTRAL_MIGRATIONS[step] ?? []
    for (const [i, sql] of statements.entries()) {
      const r = await s.execute(sql)
      if (!r.ok) {
        return err(
          new CentralError(
            'partial',
            `step ${step + 1}, statement ${i + 1} of ${statements.length} failed: ${r.error.message}; ` +
              `the schema stays at version ${step}${i === 0 ? '' : ' with this step half applied: restore the database (or drop what the step created) before running init again'}`,
          ),
        )
      }
    }
    const recorded = await s.execute('UPDATE perch_schema SET version = ? WHERE id = 1', [step + 1])
    if (!recorded.ok) return recorded
  }
  return ok({ from, to: KNOWN_VERSION })
}

export interface Status {
  readonly version: number
  readonly counter: number
  readonly epoch: string
  readonly prunedUpto: number
  readonly changeLogRows: number
  readonly accounts: number
  readonly gateways: readonly GatewaySummary[]
}

export async function status(s: MysqlSession): Promise<CentralResult<Status>> {
  const version = await requireSchema(s)
  if (!version.ok) return version
  const clock = await s.query(
    `SELECT c.v, c.epoch, p.pruned_upto, (SELECT COUNT(*) FROM change_log) AS log_rows, (SELECT COUNT(*) FROM accounts) AS accounts
       FROM sync_clock c JOIN sync_prune p ON p.id = 1 WHERE c.id = 1`,
  )
  if (!clock.ok) return clock
  const gateways = await listGateways(s)
  if (!gateways.ok) return gateways
  const c = clock.value[0] ?? {}
  return ok({
    version: version.value,
    counter: Number(c.v ?? 0),
    epoch: text(c, 'epoch'),
    prunedUpto: Number(c.pruned_upto ?? 0),
    changeLogRows: Number(c.log_rows ?? 0),
    accounts: Number(c.accounts ?? 0),
    gateways: gateways.value,
  })
}

/** A new epoch: every gateway drops what it took from central and loads it again. */
export async function resetEpoch(s: MysqlSession): Promise<CentralResult<{ before: string; after: string }>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const before = await s.query('SELECT epoch FROM sync_clock WHERE id = 1')
  if (!before.ok) return before
  const changed = await s.execute('UPDATE sync_clock SET epoch = UUID() WHERE id = 1')
  if (!changed.ok) return changed
  const after = await s.query('SELECT epoch FROM sync_clock WHERE id = 1')
  if (!after.ok) return after
  return ok({ before: text(before.value[0] ?? {}, 'epoch'), after: text(after.value[0] ?? {}, 'epoch') })
}

export const PRUNE_BATCH = 10_000

export interface PruneReport {
  readonly removed: number
  readonly prunedUpto: number
}

/**
 * Deletes change-log rows with seq <= max(seq) - keep, in batches (short locks). pruned_upto is
 * raised first: a gateway whose position is below it resyncs in full, so it never mistakes a
 * pruned stretch of the log for a quiet one, even while the deletes are under way.
 */
export async function prune(s: MysqlSession, keep: number): Promise<CentralResult<PruneReport>> {
  const checked = await requireSchema(s)
  if (!checked.ok) return checked
  const max = await s.query('SELECT COALESCE(MAX(seq), 0) AS m FROM change_log')
  if (!max.ok) return max
  const upto = Number(max.value[0]?.m ?? 0) - keep
  const current = await s.query('SELECT pruned_upto FROM sync_prune WHERE id = 1')
  if (!current.ok) return current
  const already = Number(current.value[0]?.pruned_upto ?? 0)
  if (upto <= 0) return ok({ removed: 0, prunedUpto: already })
  const raised = await s.execute('UPDATE sync_prune SET pruned_upto = GREATEST(pruned_upto, ?) WHERE id = 1', [upto])
  if (!raised.ok) return raised
  let removed = 0
  for (;;) {
    const r = await s.execute('DELETE FROM change_log WHERE seq <= ? LIMIT ?', [upto, PRUNE_BATCH])
    if (!r.ok) return r
    removed += r.value.affectedRows
    if (r.value.affectedRows < PRUNE_BATCH) break
  }
  return ok({ removed, prunedUpto: Math.max(already, upto) })
}
