// `perch sync status`: how this gateway's central sync stands, read from the data directory
// (sync-status.json, which the running perch rewrites after every attempt, and the mark kept
// in accounts.db), so it works whether perch runs or not.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CentralAccountCache } from '../auth/central-accounts.js'
import { systemClock } from '../core/clock.js'
import { CliFailure, DIR_OPTIONS, type Family, flag, runFamily } from './account-cli-common.js'
import type { Io } from './cli.js'
import { SYNC_STATUS_FILE, type SyncStatus } from './sync-loop.js'

const SYNC_HELP = `Usage: perch sync status [--json] [options]

How this gateway's sync with the central database stands: state, the last success and the
last error, the change-log mark, how many central accounts, grants and rules the local
cache holds (--json for scripts: "state" is ok, error or starting).

${DIR_OPTIONS}`

function readStatus(dir: string): SyncStatus | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, SYNC_STATUS_FILE), 'utf8')) as SyncStatus
  } catch {
    return undefined
  }
}

const when = (at: number | undefined, now: number): string =>
  at === undefined ? 'never' : `${new Date(at).toISOString()} (${Math.max(0, Math.round((now - at) / 1000))} s ago)`

const SYNC: Family = {
  name: 'sync',
  help: SYNC_HELP,
  subcommands: {
    status: {
      arity: [0, 0],
      options: { json: { type: 'boolean' } },
      run(ctx) {
        const dir = ctx.dataDir()
        const cache = CentralAccountCache.open(dir, systemClock())
        if (!cache.ok) throw new CliFailure(cache.error.message)
        const mark = cache.value.mark()
        const counts = cache.value.counts()
        cache.value.dispose()
        const s = readStatus(dir)
        if (s === undefined && mark === undefined) throw new CliFailure(`no sync has run in ${dir}: configure "sync" (perch central gateway add prints a config) and start perch`)
        const now = Date.now()
        const report = {
          state: s?.state ?? 'unknown',
          gateway: s?.gateway,
          lastOk: s?.lastOkAt === undefined ? undefined : new Date(s.lastOkAt).toISOString(),
          lastAttempt: s?.lastAttemptAt === undefined ? undefined : new Date(s.lastAttemptAt).toISOString(),
          lastError: s?.lastError,
          consecutiveErrors: s?.consecutiveErrors ?? 0,
          errors: s?.errors ?? 0,
          mark: mark?.hwm,
          epoch: mark?.epoch,
          lagSeconds: s?.lastOkAt === undefined ? undefined : Math.max(0, Math.round((now - s.lastOkAt) / 1000)),
          fullSyncs: s?.fullSyncs ?? 0,
          incrementalSyncs: s?.incrementalSyncs ?? 0,
          accounts: counts.accounts,
          grants: counts.grants,
          rules: s?.rules ?? 0,
        }
        if (flag(ctx.values, 'json')) return `${JSON.stringify(report, null, 2)}\n`
        const lines = [
          ['state', report.state],
          ['gateway', report.gateway ?? '-'],
          ['last success', when(s?.lastOkAt, now)],
          ['last attempt', when(s?.lastAttemptAt, now)],
          ['last error', report.lastError ?? '-'],
          ['errors', `${report.errors} (${report.consecutiveErrors} in a row)`],
          ['mark', report.mark === undefined ? '-' : `${report.mark} (epoch ${report.epoch})`],
          ['syncs', `${report.fullSyncs} full, ${report.incrementalSyncs} incremental since perch started`],
          ['cached', `${report.accounts} accounts, ${report.grants} grants, ${report.rules} rules from central`],
        ]
        return lines.map(([k, v]) => `${(k ?? '').padEnd(14)}${v}\n`).join('')
      },
    },
  },
}

export function syncCommand(args: readonly string[], io: Io): Promise<number> {
  return runFamily(SYNC, args, io)
}
