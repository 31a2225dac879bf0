import type { SyncStatus } from './sync-loop.js'

/** The sync's figures as `$SYS/broker/sync/...` entries. */
export function syncSysEntries(s: SyncStatus | undefined, now: number): [string, string][] {
  if (s === undefined) return [['sync/state', 'starting']]
  const age = (at: number | undefined): string => (at === undefined ? 'never' : `${Math.max(0, Math.round((now - at) / 1000))} seconds`)
  return [
    ['sync/state', s.state],
    ['sync/last-ok', s.lastOkAt === undefined ? 'never' : new Date(s.lastOkAt).toISOString()],
    ['sync/last-ok/age', age(s.lastOkAt)],
    ['sync/hwm', String(s.hwm ?? 0)],
    ['sync/lag', String(s.lag ?? 0)],
    ['sync/errors', String(s.errors)],
    ['sync/errors/consecutive', String(s.consecutiveErrors)],
    ['sync/last-error', s.lastError ?? ''],
    ['sync/full', String(s.fullSyncs)],
    ['sync/incremental', String(s.incrementalSyncs)],
    ['sync/accounts', String(s.accounts)],
    ['sync/grants', String(s.grants)],
    ['sync/rules', String(s.rules)],
  ]
}
