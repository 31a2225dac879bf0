import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { App } from '../../src/app/app.js'
import { defaultConfig, type PerchConfig, resolveConfig } from '../../src/app/config.js'
import { systemClock } from '../../src/core/clock.js'
import { createLogger } from '../../src/core/logger.js'

export interface TestBroker {
  app: App
  port: number
  /** Port of each listener by name. */
  ports: Record<string, number>
  config: PerchConfig
  /** Parsed JSON log events written so far. */
  logs: Record<string, unknown>[]
  url: string
  stop(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] }

export interface StartOptions {
  /**
   * Run on this data directory (a restart: what an earlier broker kept there is loaded) and
   * leave it in place when stopped; by default each broker gets a fresh one, removed at stop.
   */
  dataDir?: string
}

/**
 * Starts a real perch (TCP on 127.0.0.1, a free port) in this process with the given config
 * overrides, validated exactly as a config file would be. Stopped when the test ends.
 */
export async function startBroker(t: Teardown, overrides: DeepPartial<PerchConfig> = {}, options: StartOptions = {}): Promise<TestBroker> {
  const ownDir = options.dataDir === undefined
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'perch-test-'))
  // Open mode unless a test asks for accounts: most tests are about the protocol, not access.
  // Rules and device graphs only when asked for: their internal subscriptions would show in counts.
  const input = { listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 }], sys: { interval: 0 }, ...overrides, auth: { mode: 'open', ...overrides.auth }, rules: { enabled: false, ...overrides.rules }, graphs: { enabled: false, ...overrides.graphs }, dataDir }
  const resolved = resolveConfig(input, defaultConfig(), 'test config')
  if (!resolved.ok) throw resolved.error
  const config = resolved.value
  const logs: Record<string, unknown>[] = []
  const clock = systemClock()
  const logger = createLogger('debug', (line) => logs.push(JSON.parse(line) as Record<string, unknown>), () => clock.now())
  const app = await App.start(config, { clock, logger, version: 'test' })
  const ports: Record<string, number> = {}
  for (const l of app.listeners) ports[l.spec.name] = l.port
  const port = app.listeners[0]?.port ?? 0
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await app.stop()
    if (ownDir) rmSync(dataDir, { recursive: true, force: true })
  }
  t.teardown(stop)
  return { app, port, ports, config, logs, url: `mqtt://127.0.0.1:${port}`, stop }
}

/** Parsed log events with this name. */
export function logEvents(logs: Record<string, unknown>[], event: string): Record<string, unknown>[] {
  return logs.filter((l) => l.event === event)
}
