// `perch devices check|list|show`: validates device files without starting anything, shows the
// configured devices with their live state when perch runs (from the status file it keeps), and
// the registered devices (devices-cli-registered.ts).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { formatFileError } from '../bridges/boards.js'
import { describeDevice, type LoadResult, loadDevicePaths, loadDevicesDir } from '../bridges/config-loader.js'
import type { DeviceConfig } from '../bridges/device-config.js'
import type { DevicesStatusFile } from '../bridges/service.js'
import { describeError } from '../core/errors.js'
import { table } from './account-cli-common.js'
import { DEVICES_STATUS_FILE, devicesDir, resolveBoard } from './bridges.js'
import type { Io } from './cli.js'
import { subcommand } from './cli-subcommand.js'
import type { PerchConfig } from './config.js'
import { cliConfig, readRegistered, registeredJson, registeredText, showDevice } from './devices-cli-registered.js'

export const DEVICES_HELP = `Usage: perch devices check [PATH...] [options]
       perch devices list [--json] [--account A] [options]
       perch devices show ID [--json] [options]

check  validates device files (files or folders; default: the configured devices
       directory, devices.dir, else <dataDir>/devices) without starting anything.
       Exits 1 naming each bad file with the key and the reason; 0 with one line
       per good file.
list   the configured devices (kind, account, topics, enabled) and, while perch
       runs, their live state and counters (from <dataDir>/${DEVICES_STATUS_FILE});
       then the registered devices (id, account, name, presence and since when,
       input and output features), from <dataDir>/features.db, which perch
       keeps current while it runs. --json adds them under "registered".
show   one registered device by id: name, account, profile, its features with
       their data topics, its control and presence topics, presence, rev, the
       links that involve it and the last CONNECT/DISCONNECT sent to each of its
       features with the device's answer. Exits 1 for an unknown device, 2 for
       an id that is not a UUID.

Options:
  --config FILE    JSON config file (its dataDir and devices section)
  --data-dir DIR   state directory (default: dataDir of --config, else
                   $STATE_DIRECTORY, $PERCH_DATA_DIR or ./perch-data)
  --board NAME     board profile for GPIO devices that name none (default:
                   devices.board, else detected from /proc/device-tree/model)
  --account A      list: only the registered devices of account A
  --json           list, show: print JSON
  -h, --help       show this help
`

export async function devicesCommand(args: readonly string[], io: Io): Promise<number> {
  const opened = subcommand('devices', DEVICES_HELP, ['check', 'list', 'show'] as const, args, io, parse)
  if (typeof opened === 'number') return opened
  const { sub, parsed } = opened
  const { values, positionals } = parsed
  const usage = usageProblem(sub, positionals, values)
  if (usage !== undefined) {
    io.err(`perch devices ${sub}: ${usage}\n\n${DEVICES_HELP}`)
    return 2
  }
  let config: PerchConfig
  try {
    config = cliConfig(values, io.env)
  } catch (e) {
    io.err(`perch devices: ${describeError(e)}\n`)
    return 1
  }
  if (sub === 'show') return showDevice(config.dataDir, positionals[0] ?? '', values.json === true, io)
  const board = values.board ?? resolveBoard(config).board
  return sub === 'check' ? check(config, board, positionals, io) : list(config, board, values.json === true, values.account, io)
}

function usageProblem(sub: 'check' | 'list' | 'show', positionals: readonly string[], values: ReturnType<typeof parse>['values']): string | undefined {
  if (sub === 'list' && positionals.length > 0) return 'takes no arguments'
  if (sub === 'show' && positionals.length !== 1) return `expected one device id, got ${positionals.length} arguments`
  if (sub !== 'list' && values.account !== undefined) return '--account applies to list only'
  if (sub === 'show' && values.board !== undefined) return '--board applies to check and list only'
  return undefined
}

function parse(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      board: { type: 'string' },
      account: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}

function check(config: PerchConfig, board: string, paths: readonly string[], io: Io): number {
  let result: LoadResult
  if (paths.length === 0) {
    const dir = devicesDir(config)
    if (!existsSync(dir)) {
      io.out(`no devices directory at ${dir}: nothing to check\n`)
      return 0
    }
    result = loadDevicesDir(dir, { board })
    if (result.files.length === 0) io.out(`no device files (*.json) in ${dir}\n`)
  } else {
    result = loadDevicePaths(paths, { board })
  }
  const bad = new Set(result.errors.map((e) => e.file))
  for (const e of result.errors) io.err(`${formatFileError(e)}\n`)
  for (const d of result.devices) io.out(`ok  ${d.file}: ${describeDevice(d)}\n`)
  if (bad.size > 0) {
    io.err(`${bad.size} bad file${bad.size === 1 ? '' : 's'}, ${result.devices.length} good\n`)
    return 1
  }
  return 0
}

type DeviceStatus = DevicesStatusFile['devices'][number]

interface LiveStatus {
  readonly running: boolean
  readonly file: DevicesStatusFile | undefined
  readonly why: string
}

/** Reads the status file; perch counts as running when it is fresh, not marked stopped, and its pid lives. */
function readStatus(config: PerchConfig, now: number): LiveStatus {
  const path = join(config.dataDir, DEVICES_STATUS_FILE)
  let file: DevicesStatusFile
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as DevicesStatusFile
  } catch {
    return { running: false, file: undefined, why: `no ${path}` }
  }
  if (file.stoppedAt !== undefined && file.stoppedAt !== null) return { running: false, file, why: `perch stopped at ${new Date(file.stoppedAt).toISOString()}` }
  if (now - file.writtenAt > 3 * file.heartbeatMs) return { running: false, file, why: `${path} is stale (written ${new Date(file.writtenAt).toISOString()})` }
  if (!pidAlive(file.pid)) return { running: false, file, why: `process ${file.pid} is gone` }
  return { running: true, file, why: '' }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function topicsOf(d: DeviceConfig): string[] {
  switch (d.kind) {
    case 'serial':
      return d.command === undefined ? [d.topic] : [d.topic, d.command.topic]
    case 'gpio':
      return [...d.inputs.map((i) => i.topic), ...d.outputs.map((o) => o.topic)]
    case 'onewire':
      return [d.topic]
  }
}

function list(config: PerchConfig, board: string, json: boolean, account: string | undefined, io: Io): number {
  const dir = devicesDir(config)
  const loaded = loadDevicesDir(dir, { board })
  const live = readStatus(config, Date.now())
  const registered = readRegistered(config.dataDir, account)
  if (!registered.ok) {
    io.err(`perch devices list: ${registered.error.message}\n`)
    return 1
  }
  const statusOf = (name: string) => (live.running ? live.file?.devices.find((s) => s.device === name) : undefined)
  if (json) {
    const devices = loaded.devices.map((d) => ({ ...d, status: statusOf(d.name) ?? null }))
    const out = { dir, board, running: live.running, devices, problems: loaded.errors, registered: registeredJson(registered.value) }
    io.out(`${JSON.stringify(out, null, 2)}\n`)
    return 0
  }
  if (loaded.devices.length === 0 && loaded.errors.length === 0) io.out(`no devices in ${dir}\n`)
  else listSensors(loaded, live, statusOf, io)
  io.out(`\n${registeredText(registered.value)}`)
  return 0
}

function listSensors(loaded: LoadResult, live: LiveStatus, statusOf: (name: string) => DeviceStatus | undefined, io: Io): void {
  const header = ['DEVICE', 'KIND', 'ACCOUNT', 'ENABLED', 'STATE', 'PUBLISHED', 'REJECTED', 'DISCONNECTS', 'TOPICS']
  const rows = loaded.devices.map((d) => {
    const s = statusOf(d.name)
    const n = (v: number | undefined): string => (v === undefined ? '-' : String(v))
    return [
      d.name,
      d.kind,
      d.account,
      d.enabled ? 'yes' : 'no',
      s === undefined ? '-' : s.state,
      n(s?.counters.published),
      n(s?.counters.rejected),
      n(s?.counters.disconnects),
      topicsOf(d).join(' '),
    ]
  })
  io.out(table(header, rows))
  if (!live.running) io.out(`\nperch is not running (${live.why}): no live state\n`)
  else {
    const errors = loaded.devices.flatMap((d) => {
      const e = statusOf(d.name)?.lastError
      return e === undefined || e === null ? [] : [`  ${d.name}: ${e}\n`]
    })
    if (errors.length > 0) io.out(`\nlast errors:\n${errors.join('')}`)
  }
  if (loaded.errors.length > 0) {
    io.out(`\ninvalid files (skipped; see perch devices check):\n${loaded.errors.map((e) => `  ${formatFileError(e)}\n`).join('')}`)
  }
}
