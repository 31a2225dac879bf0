import { ConfigError } from '../core/errors.js'
import type { Io } from './cli.js'
import { defaultConfig, loadConfigFile } from './config.js'

/** perch config: print the defaults, check a file. */
export function configCommand(args: readonly string[], io: Io): number {
  const [sub, file] = args
  if (sub === 'defaults') {
    io.out(`${JSON.stringify(defaultConfig(io.env), null, 2)}\n`)
    return 0
  }
  if (sub === 'check' && file !== undefined) {
    const loaded = loadConfigFile(file, defaultConfig(io.env))
    if (loaded instanceof ConfigError) {
      io.err(`perch: ${loaded.message}\n`)
      return 1
    }
    io.out(`${JSON.stringify(loaded, null, 2)}\n`)
    return 0
  }
  io.err('Usage: perch config defaults | perch config check FILE\n')
  return 2
}
