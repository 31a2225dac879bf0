import { spawn } from 'node:child_process'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface ToolResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface RunningTool {
  /** Output so far, split into complete lines. */
  lines(): string[]
  stdout(): string
  stderr(): string
  readonly done: Promise<ToolResult>
  exited(): boolean
  kill(): void
}

/**
 * Spawns `mosquitto_pub` or `mosquitto_sub` with a hard timeout (the process is killed when
 * it runs over, and at test teardown). Never rejects: the result says how it ended.
 */
export function mosquitto(t: Teardown, tool: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 15_000): RunningTool {
  const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' })
  let out = ''
  let err = ''
  let exited = false
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (s: string) => {
    out += s
  })
  child.stderr.on('data', (s: string) => {
    err += s
  })
  const done = new Promise<ToolResult>((resolve) => {
    child.on('error', (e) => {
      err += String(e)
      exited = true
      resolve({ code: null, signal: null, stdout: out, stderr: err })
    })
    child.on('close', (code, signal) => {
      exited = true
      resolve({ code, signal, stdout: out, stderr: err })
    })
  })
  const kill = (): void => {
    if (!exited) child.kill('SIGKILL')
  }
  t.teardown(kill)
  return {
    lines: () => out.split('\n').slice(0, -1),
    stdout: () => out,
    stderr: () => err,
    done,
    exited: () => exited,
    kill,
  }
}

/** Runs mosquitto_pub to completion; throws with its stderr when it fails. */
export async function mosquittoPub(t: Teardown, port: number, args: string[], timeoutMs = 15_000): Promise<ToolResult> {
  const r = await mosquitto(t, 'mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), ...args], timeoutMs).done
  if (r.code !== 0) throw new Error(`mosquitto_pub ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr}`)
  return r
}
