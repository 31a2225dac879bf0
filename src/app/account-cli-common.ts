import { mkdirSync } from 'node:fs'
import { type ParseArgsConfig, parseArgs } from 'node:util'
import { AccountStore } from '../auth/account-store.js'
import { systemClock } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Result } from '../core/result.js'
import { DbError } from '../db/index.js'
import type { Io } from './cli.js'
import { defaultConfig, loadConfigFile } from './config.js'

/** The options every command of a family takes. */
export const DIR_OPTIONS = `Options:
  --data-dir DIR   state directory (default: dataDir of --config, else
                   $STATE_DIRECTORY, $PERCH_DATA_DIR or ./perch-data)
  --config FILE    JSON config file whose dataDir to use
  -h, --help       show this help
`

export const STORE_OPTIONS = `${DIR_OPTIONS}
These commands work while perch runs: it applies changes within about a second
(auth.reloadInterval), disconnecting the clients of disabled or removed accounts.
`

export type Options = NonNullable<ParseArgsConfig['options']>
export type Values = Readonly<Record<string, unknown>>

/** Something the user can fix (unknown account, bad name): exit 1 with the message. */
export class CliFailure extends Error {}

/** A command line that does not fit the command: exit 2 with the usage. */
export class UsageError extends Error {}

export interface Context {
  readonly positionals: readonly string[]
  readonly values: Values
  /** The data directory, created (0750) on first use. */
  dataDir(): string
  /** Opens the store on first use; the runner closes it. */
  store(): AccountStore
}

export interface Subcommand {
  /** Fewest and most positional arguments. */
  readonly arity: readonly [number, number]
  readonly options: Options
  /** Returns what to print on stdout. */
  run(ctx: Context): Promise<string> | string
}

export interface Family {
  /** `account` or `grant`, as in `perch account ...`. */
  readonly name: string
  readonly help: string
  readonly subcommands: Readonly<Record<string, Subcommand>>
}

const COMMON: Options = {
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
}

export function str(values: Values, key: string): string | undefined {
  const v = values[key]
  return typeof v === 'string' ? v : undefined
}

export function flag(values: Values, key: string): boolean {
  return values[key] === true
}

/** Parses `args` for one subcommand of `family`, runs it, and turns its failures into exit codes. */
export async function runFamily(family: Family, args: readonly string[], io: Io): Promise<number> {
  const prefix = `perch ${family.name}`
  const [name, ...rest] = args
  if (name === '-h' || name === '--help' || name === 'help') {
    io.out(family.help)
    return 0
  }
  const sub = name !== undefined && Object.hasOwn(family.subcommands, name) ? family.subcommands[name] : undefined
  if (sub === undefined) {
    io.err(`${name === undefined ? '' : `${prefix}: unknown command "${name}"\n\n`}${family.help}`)
    return 2
  }
  let parsed: { positionals: string[]; values: Values }
  try {
    parsed = parseArgs({ args: rest, options: { ...COMMON, ...sub.options }, strict: true, allowPositionals: true })
  } catch (e) {
    io.err(`${prefix} ${name}: ${describeError(e)}\n\n${family.help}`)
    return 2
  }
  const { positionals, values } = parsed
  if (flag(values, 'help')) {
    io.out(family.help)
    return 0
  }
  const [min, max] = sub.arity
  if (positionals.length < min || positionals.length > max) {
    const expected = min === max ? `${min}` : min === 0 ? `at most ${max}` : `${min} to ${max}`
    io.err(`${prefix} ${name}: expected ${expected} argument${max === 1 ? '' : 's'}, got ${positionals.length}\n\n${family.help}`)
    return 2
  }
  let dir: string | undefined
  let opened: AccountStore | undefined
  const ctx: Context = {
    positionals,
    values,
    dataDir() {
      if (dir === undefined) dir = createdDir(dataDir(values, io.env))
      return dir
    },
    store() {
      if (opened === undefined) opened = openStore(ctx.dataDir())
      return opened
    },
  }
  try {
    io.out(await sub.run(ctx))
    return 0
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${prefix} ${name}: ${e.message}\n\n${family.help}`)
      return 2
    }
    // DbError: busy (a long write elsewhere), corrupt or unreadable file; its message names the file.
    if (e instanceof CliFailure || e instanceof DbError || e instanceof ConfigError) {
      io.err(`${prefix}: ${e.message}\n`)
      return 1
    }
    throw e
  } finally {
    opened?.dispose()
  }
}

/** `--data-dir`, else the config file's `dataDir`, else the default (which honours $STATE_DIRECTORY). */
function dataDir(values: Values, env: NodeJS.ProcessEnv): string {
  const given = str(values, 'data-dir')
  if (given !== undefined) return given
  const base = defaultConfig(env)
  const file = str(values, 'config')
  if (file === undefined) return base.dataDir
  const loaded = loadConfigFile(file, base)
  if (loaded instanceof ConfigError) throw loaded
  return loaded.dataDir
}

function createdDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 })
  } catch (e) {
    throw new CliFailure(`cannot create data directory ${dir}: ${describeError(e)}`)
  }
  return dir
}

function openStore(dir: string): AccountStore {
  const opened = AccountStore.open(dir, systemClock())
  if (!opened.ok) throw opened.error
  return opened.value
}

/** Left-aligned columns under a header; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .concat('\n')
  return [header, ...rows].map(line).join('')
}

/** The value of a store change, or its refusal as a CliFailure. */
export function check<T>(r: Result<T, string>): T {
  if (!r.ok) throw new CliFailure(r.error)
  return r.value
}

export const yesNo = (b: boolean): string => (b ? 'yes' : 'no')
