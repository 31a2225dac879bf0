// The perch command line as users run it: `node bin/perch.js`, which runs dist/. Importing this
// builds dist/ first when it is missing or older than src/ (CI builds before testing; this keeps
// a local run from testing a stale build).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type RunningTool, spawnTool, type ToolResult } from './cli.js'
import { until } from './clients.js'

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

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Runs `perch ARGS` in `cwd` to completion; bounded so a hang fails instead of stalling. */
export async function runPerch(t: Teardown, cwd: string, args: string[], env: Record<string, string> = {}): Promise<ToolResult> {
  const r = await spawnTool(t, process.execPath, [BIN, ...args], { cwd, env: cleanEnv(env), timeoutMs: 30_000 }).done
  if (r.timedOut) throw new Error(`perch ${args.join(' ')} did not exit; stdout: ${r.stdout} stderr: ${r.stderr}`)
  return r
}

export interface RunningPerch {
  tool: RunningTool
  /** Parsed JSON log lines from stdout so far. */
  events(): Record<string, unknown>[]
  event(name: string): Record<string, unknown> | undefined
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts a long-running `perch start ARGS` in `cwd` and reads its JSON log; killed at teardown if still alive. */
export function startPerch(t: Teardown, cwd: string, args: string[], timeoutMs = 90_000): RunningPerch {
  const tool = spawnTool(t, process.execPath, [BIN, 'start', ...args], { cwd, env: cleanEnv(), timeoutMs })
  const events = (): Record<string, unknown>[] =>
    tool
      .lines()
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    tool,
    events,
    event: (name) => events().find((e) => e.event === name),
    exited: tool.done.then(({ code, signal }) => ({ code, signal })),
  }
}

/** Waits for `perch.started` and returns the port of the first listener. */
export async function startedPort(p: RunningPerch): Promise<number> {
  await until(() => p.event('perch.started') !== undefined || p.tool.exited(), 20_000, `perch.started (stderr: ${p.tool.stderr()})`)
  const started = p.event('perch.started')
  if (started === undefined) throw new Error(`perch exited before starting: ${p.tool.stdout()} ${p.tool.stderr()}`)
  const port = (started.listeners as { port: number }[] | undefined)?.[0]?.port
  if (typeof port !== 'number' || port <= 0) throw new Error(`no port in ${JSON.stringify(started)}`)
  return port
}
