// `perch status`: whether perch runs on this data directory, and its figures (clients, messages,
// sync, bridges) as its last status file has them.
import { CliFailure, DIR_OPTIONS, type Family, flag, runFamily } from './account-cli-common.js'
import type { Io } from './cli.js'
import { readStatusFile, STATUS_FILE } from './status-file.js'

const STATUS_HELP = `Usage: perch status [--json] [options]

Whether perch runs on the data directory, and its figures as it last wrote them to
${STATUS_FILE} (every sys.interval seconds): uptime, clients, messages, drops, denied
publishes, the central sync, the sensor bridges. --json prints the raw entries.

${DIR_OPTIONS}`

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists but belongs to another user (perch's service user)
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The entries shown by default, in order: the rest is in --json. */
const SHOWN: readonly (readonly [string, string])[] = [
  ['uptime', 'uptime'],
  ['clients/connected', 'clients connected'],
  ['clients/total', 'sessions'],
  ['messages/received', 'messages received'],
  ['messages/sent', 'messages sent'],
  ['messages/queued', 'messages queued'],
  ['messages/dropped', 'messages dropped'],
  ['publish/denied', 'publishes denied'],
  ['connections/refused/auth', 'logins refused'],
]

const STATUS: Family = {
  name: 'status',
  help: STATUS_HELP,
  subcommands: {
    '': {
      arity: [0, 0],
      options: { json: { type: 'boolean' } },
      run(ctx) {
        const dir = ctx.dataDir()
        const s = readStatusFile(dir)
        if (s === undefined) throw new CliFailure(`no ${STATUS_FILE} in ${dir}: perch has not run here (or runs with sys.interval 0)`)
        const ageSeconds = Math.max(0, Math.round((Date.now() - s.writtenAt) / 1000))
        const running = alive(s.pid) && ageSeconds <= Math.max(30, s.interval * 3)
        if (flag(ctx.values, 'json')) return `${JSON.stringify({ running, pid: s.pid, version: s.version, ageSeconds, entries: s.entries }, null, 2)}\n`
        const lines: [string, string][] = [
          ['perch', running ? `running (pid ${s.pid}, ${s.version})` : `not running (last seen ${ageSeconds} s ago, pid ${s.pid})`],
          ['figures from', `${new Date(s.writtenAt).toISOString()} (${ageSeconds} s ago)`],
        ]
        for (const [key, label] of SHOWN) if (s.entries[key] !== undefined) lines.push([label, s.entries[key]])
        const sync = s.entries['sync/state']
        if (sync !== undefined) lines.push(['sync', `${sync}, last ok ${s.entries['sync/last-ok'] ?? 'never'}, mark ${s.entries['sync/hwm'] ?? '-'}${s.entries['sync/last-error'] ? `, last error: ${s.entries['sync/last-error']}` : ''}`])
        const bridges = Object.keys(s.entries).filter((k) => /^bridges\/[^/]+\/state$/.test(k))
        for (const k of bridges) {
          const device = k.split('/')[1] ?? ''
          const c = (name: string): string => s.entries[`bridges/${device}/${name}`] ?? '0'
          lines.push([`device ${device}`, `${s.entries[k]}, ${c('published')} published, ${c('rejected')} rejected, ${c('disconnects')} disconnects`])
        }
        const width = Math.max(...lines.map(([k]) => k.length)) + 2
        return lines.map(([k, v]) => `${k.padEnd(width)}${v}\n`).join('')
      },
    },
  },
}

export function statusCommand(args: readonly string[], io: Io): Promise<number> {
  return runFamily(STATUS, ['', ...args], io)
}
