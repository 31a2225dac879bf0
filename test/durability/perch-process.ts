// perch as a real process for the durability tests: `node bin/perch.js start`, its JSON log
// read from stdout, killed with SIGKILL when a test wants a crash. bin/perch.js runs dist/,
// so dist/ is rebuilt first when it is missing or older than src/ (as test/cli does).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type RunningTool, spawnTool, type ToolResult } from '../helpers/cli.js'
import { until } from '../helpers/clients.js'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = join(ROOT, 'bin', 'perch.js')

interface Teardown {
  teardown(fn: () => unknown): void
}

function srcFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e)
    return statSync(p).isDirectory() ? srcFiles(p) : e.endsWith('.ts') && !e.endsWith('.d.ts') ? [p] : []
  })
}

/** Builds dist/ when a compiled file is missing or older than its source. */
export function ensureBuilt(): void {
  const src = join(ROOT, 'src')
  const stale = srcFiles(src).some((file) => {
    const out = join(ROOT, 'dist', relative(src, file)).replace(/\.ts$/, '.js')
    return !existsSync(out) || statSync(out).mtimeMs < statSync(file).mtimeMs
  })
  if (!stale) return
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
}

/** A temporary folder removed when the test ends. */
export function tempDir(t: Teardown, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** The environment without the variables that move the default data directory. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.STATE_DIRECTORY
  delete env.PERCH_DATA_DIR
  return env
}

export interface PerchProcess {
  readonly tool: RunningTool
  /** Parsed JSON log lines so far (a line that is not JSON is skipped). */
  events(): Record<string, unknown>[]
  event(name: string): Record<string, unknown> | undefined
  /** Resolves with the first listener's port once `perch.started` is logged; rejects if perch exits first. */
  started(ms?: number): Promise<number>
  /** SIGKILL, and wait for the process to be gone. */
  crash(): Promise<ToolResult>
  /** SIGTERM, and wait for a clean exit. */
  stop(): Promise<ToolResult>
}

export interface PerchOptions {
  dataDir: string
  /** Extra `start` arguments (--config FILE). */
  args?: string[]
  /** A command to run perch under, e.g. ['nsenter', '-t', PID, '-m']. */
  prefix?: string[]
  timeoutMs?: number
}

/** `node bin/perch.js start --port 0 --data-dir DIR --log-level info`, killed at teardown. */
export function spawnPerch(t: Teardown, options: PerchOptions): PerchProcess {
  const perchArgs = [BIN, 'start', '--port', '0', '--data-dir', options.dataDir, '--log-level', 'info', '--allow-anonymous', ...(options.args ?? [])]
  const [command, args] =
    options.prefix === undefined || options.prefix.length === 0
      ? [process.execPath, perchArgs]
      : [options.prefix[0] ?? '', [...options.prefix.slice(1), process.execPath, ...perchArgs]]
  const tool = spawnTool(t, command, args, { cwd: ROOT, env: cleanEnv(), timeoutMs: options.timeoutMs ?? 600_000 })
  let parsed = 0
  const events: Record<string, unknown>[] = []
  const read = (): Record<string, unknown>[] => {
    const lines = tool.lines()
    for (; parsed < lines.length; parsed++) {
      const line = lines[parsed] ?? ''
      if (line.trim() === '') continue
      try {
        events.push(JSON.parse(line) as Record<string, unknown>)
      } catch {
        // not a log line
      }
    }
    return events
  }
  return {
    tool,
    events: read,
    event: (name) => read().find((e) => e.event === name),
    async started(ms = 20_000) {
      const found = (): Record<string, unknown> | undefined => read().find((e) => e.event === 'perch.started')
      await until(() => found() !== undefined || tool.exited(), ms, `perch.started (stderr: ${tool.stderr()})`)
      const started = found()
      if (started === undefined) {
        const r = await tool.done
        throw new Error(`perch exited (${r.code ?? r.signal}) before starting: ${r.stderr}${r.stdout}`)
      }
      const port = (started.listeners as { port: number }[] | undefined)?.[0]?.port
      if (typeof port !== 'number' || port <= 0) throw new Error(`no port in ${JSON.stringify(started)}`)
      return port
    },
    async crash() {
      tool.kill('SIGKILL')
      return tool.done
    },
    async stop() {
      tool.kill('SIGTERM')
      return tool.done
    },
  }
}
