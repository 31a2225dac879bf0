// The perch command line as users run it: `node bin/perch.js`, which runs dist/. Importing this
// builds dist/ first when it is missing or older than src/ (CI builds before testing; this keeps
// a local run from testing a stale build).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = join(ROOT, 'bin', 'perch.js')

function srcFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e)
    return statSync(p).isDirectory() ? srcFiles(p) : e.endsWith('.ts') && !e.endsWith('.d.ts') ? [p] : []
  })
}

function distIsCurrent(): boolean {
  const src = join(ROOT, 'src')
  for (const file of srcFiles(src)) {
    const out = join(ROOT, 'dist', relative(src, file)).replace(/\.ts$/, '.js')
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(file).mtimeMs) return false
  }
  return true
}

if (!distIsCurrent()) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
}

/**
 * The environment without the variables that move the default data directory, and without
 * tap's NODE_OPTIONS: users do not run perch under tap's loaders, which double each start-up.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_OPTIONS
  if (extra.STATE_DIRECTORY === undefined) delete env.STATE_DIRECTORY
  if (extra.PERCH_DATA_DIR === undefined) delete env.PERCH_DATA_DIR
  return env
}
