import type { Io } from './cli.js'

export async function accountCommand(_args: readonly string[], io: Io): Promise<number> {
  io.err('perch account: not built yet\n')
  return 2
}

export async function grantCommand(_args: readonly string[], io: Io): Promise<number> {
  io.err('perch grant: not built yet\n')
  return 2
}
