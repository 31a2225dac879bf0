import { spawn } from 'node:child_process'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface ToolResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The process ran past its time limit and was killed. */
  timedOut: boolean
}

export interface RunningTool {
  /** Output so far, split into complete lines. */
  lines(): string[]
  stdout(): string
  stderr(): string
  /** How the process ended; never rejects (a spawn failure ends with code null, its message in stderr). */
  readonly done: Promise<ToolResult>
  exited(): boolean
  /** Sends `signal` (SIGKILL unless told) if the process is still running. */
  kill(signal?: NodeJS.Signals): void
}

export interface ToolOptions {
  /** Hard limit: the process is killed with SIGKILL when it runs longer. */
  timeoutMs: number
  cwd?: string
  env?: NodeJS.ProcessEnv
}

/**
 * Spawns a command with a hard timeout, collecting its output; killed at teardown if it is
 * still running, and teardown waits for it to end.
 */
export function spawnTool(t: Teardown, command: string, args: string[], options: ToolOptions): RunningTool {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let ended = false
  let timedOut = false
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (s: string) => {
    out += s
  })
  child.stderr.on('data', (s: string) => {
    err += s
  })
  const running = (): boolean => !ended && child.exitCode === null && child.signalCode === null
  const kill = (signal: NodeJS.Signals = 'SIGKILL'): void => {
    if (running()) child.kill(signal)
  }
  const timer = setTimeout(() => {
    timedOut = true
    kill('SIGKILL')
  }, options.timeoutMs)
  const done = new Promise<ToolResult>((resolve) => {
    const end = (code: number | null, signal: NodeJS.Signals | null): void => {
      ended = true
      clearTimeout(timer)
      resolve({ code, signal, stdout: out, stderr: err, timedOut })
    }
    child.on('error', (e) => {
      err += String(e)
      end(null, null)
    })
    child.on('close', end)
  })
  t.teardown(async () => {
    kill()
    await done
  })
  return {
    lines: () => out.split('\n').slice(0, -1),
    stdout: () => out,
    stderr: () => err,
    done,
    exited: () => !running(),
    kill,
  }
}

export type MosquittoTool = 'mosquitto_pub' | 'mosquitto_sub'

/** Spawns `mosquitto_pub` or `mosquitto_sub` (see `spawnTool`). */
export function mosquitto(t: Teardown, tool: MosquittoTool, args: string[], timeoutMs = 15_000): RunningTool {
  return spawnTool(t, tool, args, { timeoutMs })
}

/** Runs mosquitto_pub to completion against 127.0.0.1:`port`; throws with its stderr when it fails. */
export async function mosquittoPub(t: Teardown, port: number, args: string[], timeoutMs = 15_000): Promise<ToolResult> {
  const r = await mosquitto(t, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), ...args], timeoutMs).done
  if (r.code !== 0) throw new Error(`mosquitto_pub ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr}`)
  return r
}
