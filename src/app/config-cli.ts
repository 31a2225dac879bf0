import { statSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError, describeError } from '../core/errors.js'
import type { Io } from './cli.js'
import { defaultConfig, loadConfigFile } from './config.js'
import { commentedConfig } from './config-template.js'

const USAGE = `Usage: perch config defaults          print the embedded defaults as JSON
       perch config check FILE        validate FILE and print the effective configuration
       perch config init [FILE] [--force]
                                      write the defaults as a commented config file (to
                                      stdout without FILE); --force replaces an existing FILE
`

/** perch config: print the defaults, check a file, write a commented one. */
export function configCommand(args: readonly string[], io: Io): number {
  const [sub, ...rest] = args
  if (sub === 'defaults') {
    io.out(`${JSON.stringify(defaultConfig(io.env), null, 2)}\n`)
    return 0
  }
  const file = rest[0]
  if (sub === 'check' && file !== undefined) {
    const loaded = loadConfigFile(file, defaultConfig(io.env))
    if (loaded instanceof ConfigError) {
      io.err(`perch: ${loaded.message}\n`)
      return 1
    }
    io.out(`${JSON.stringify(loaded, null, 2)}\n`)
    return 0
  }
  if (sub === 'init') return initCommand(rest, io)
  if (sub === '-h' || sub === '--help' || sub === 'help') {
    io.out(USAGE)
    return 0
  }
  io.err(USAGE)
  return 2
}

function initCommand(args: readonly string[], io: Io): number {
  let parsed: ReturnType<typeof parseInit>
  try {
    parsed = parseInit(args)
  } catch (e) {
    io.err(`perch config init: ${describeError(e)}\n\n${USAGE}`)
    return 2
  }
  const { positionals, values } = parsed
  if (positionals.length > 1) {
    io.err(`perch config init: one FILE at most, not ${positionals.length}\n\n${USAGE}`)
    return 2
  }
  const text = commentedConfig(defaultConfig(io.env))
  const file = positionals[0]
  if (file === undefined) {
    io.out(text)
    return 0
  }
  const path = resolve(file)
  try {
    // 0640: the service's group reads it; a config file may come to hold secrets (jwt, sync url).
    // 'wx' refuses an existing file in the same call that creates it.
    writeFileSync(path, text, { mode: 0o640, flag: values.force === true ? 'w' : 'wx' })
  } catch (e) {
    io.err(`perch config init: ${writeFailure(e, path)}\n`)
    return 1
  }
  io.out(`perch: wrote the default configuration to ${path}\n`)
  return 0
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function parseInit(args: readonly string[]) {
  return parseArgs({ args: [...args], strict: true, allowPositionals: true, options: { force: { type: 'boolean', short: 'f' } } })
}

function writeFailure(e: unknown, path: string): string {
  const code = e instanceof Error && 'code' in e ? e.code : undefined
  if (code === 'EISDIR' || (code === 'EEXIST' && isDirectory(path))) return `${path} is a directory`
  if (code === 'EEXIST') return `${path} already exists; use --force to replace it`
  if (code === 'ENOENT') return `cannot write ${path}: its directory does not exist`
  if (code === 'EACCES' || code === 'EPERM') return `cannot write ${path}: permission denied`
  return `cannot write ${path}: ${describeError(e)}`
}
