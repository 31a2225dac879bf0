import { describeError } from '../core/errors.js'
import type { Io } from './cli.js'

/**
 * The opening every `perch NAME SUB [options]` command shares: no subcommand, help, an unknown
 * subcommand and bad options end it with an exit code; otherwise it goes on with the
 * subcommand and its parsed options.
 */
export function subcommand<S extends string, P extends { values: { help?: boolean | undefined } }>(
  name: string,
  help: string,
  subs: readonly S[],
  args: readonly string[],
  io: Io,
  parse: (rest: readonly string[]) => P,
): number | { sub: S; parsed: P } {
  const [sub, ...rest] = args
  if (sub === undefined) {
    io.err(help)
    return 2
  }
  if (sub === '-h' || sub === '--help' || sub === 'help') {
    io.out(help)
    return 0
  }
  const known = subs.find((s) => s === sub)
  if (known === undefined) {
    io.err(`perch ${name}: unknown command "${sub}"\n\n${help}`)
    return 2
  }
  let parsed: P
  try {
    parsed = parse(rest)
  } catch (e) {
    io.err(`perch ${name} ${sub}: ${describeError(e)}\n\n${help}`)
    return 2
  }
  if (parsed.values.help === true) {
    io.out(help)
    return 0
  }
  return { sub: known, parsed }
}
