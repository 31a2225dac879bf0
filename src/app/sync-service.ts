// The main thread's side of the central sync: starts the sync worker, keeps its latest status
// for $SYS, the metrics and the logs, and stops it. A worker that dies is started again.
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import type { Clock, TimerHandle } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Disposable } from '../core/scope.js'
import { parseMysqlUrl, redact } from '../sync/mysql-url.js'
import type { SyncConfig } from './config.js'
import type { SyncLoopOptions, SyncStatus } from './sync-loop.js'
import type { ToSyncWorker } from './sync-worker.js'

const RESTART_DELAY_MS = 5000
const STOP_GRACE_MS = 5000

function workerUrl(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './sync-worker.ts' : './sync-worker.js', import.meta.url)
}

export class SyncService implements Disposable {
  readonly #options: SyncLoopOptions
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #where: string
  #worker: Worker | undefined
  #status: SyncStatus | undefined
  #stopping = false
  #restart: TimerHandle | undefined
  readonly #listeners = new Set<(s: SyncStatus) => void>()

  private constructor(options: SyncLoopOptions, where: string, clock: Clock, logger: Logger) {
    this.#options = options
    this.#where = where
    this.#clock = clock
    this.#logger = logger
  }

  /** Checks the configuration (a bad URL is a start-up error) and starts the worker. */
  static start(config: SyncConfig, dataDir: string, clock: Clock, logger: Logger): SyncService {
    const url = config.urlFile === undefined ? (config.url ?? '') : readUrlFile(config.urlFile)
    const target = parseMysqlUrl(url, { connectTimeoutMs: config.connectTimeout * 1000, queryTimeoutMs: config.queryTimeout * 1000 })
    if (!target.ok) throw new ConfigError(`sync: ${target.error.message}`)
    const options: SyncLoopOptions = {
      dataDir,
      target: target.value,
      gateway: config.gateway,
      intervalMs: config.interval * 1000,
      maxBackoffMs: config.maxBackoff * 1000,
    }
    const service = new SyncService(options, redact(url), clock, logger)
    service.#spawn()
    logger.info('sync.started', { central: service.#where, gateway: config.gateway, interval: config.interval })
    return service
  }

  get status(): SyncStatus | undefined {
    return this.#status
  }

  /** Called with every status the worker reports; returns the undo. */
  onStatus(fn: (s: SyncStatus) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Sync now rather than at the next interval (an MQTT poke, a test). */
  poke(): void {
    this.#worker?.postMessage({ type: 'poke' } satisfies ToSyncWorker)
  }

  async dispose(): Promise<void> {
    this.#stopping = true
    this.#restart?.cancel()
    const w = this.#worker
    if (w === undefined) return
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()))
    w.postMessage({ type: 'stop' } satisfies ToSyncWorker)
    const timer = setTimeout(() => void w.terminate(), STOP_GRACE_MS)
    await exited
    clearTimeout(timer)
  }

  #spawn(): void {
    const w = new Worker(workerUrl(), { workerData: this.#options })
    this.#worker = w
    w.on('message', (m: { type: 'status'; status: SyncStatus }) => this.#onStatus(m.status))
    w.on('error', (e) => this.#logger.error('sync.worker-crashed', { error: describeError(e) }))
    w.on('exit', (code) => {
      this.#worker = undefined
      if (this.#stopping) return
      this.#logger.error('sync.worker-exited', { code, restartInMs: RESTART_DELAY_MS })
      this.#restart = this.#clock.setTimer(RESTART_DELAY_MS, () => this.#spawn())
    })
  }

  #onStatus(s: SyncStatus): void {
    const before = this.#status
    this.#status = s
    if (s.state === 'error' && before?.state !== 'error') {
      this.#logger.warn('sync.failing', { central: this.#where, error: s.lastError, hint: 'serving from the local cache; retrying with backoff' })
    } else if (s.state === 'ok' && before?.state !== 'ok') {
      this.#logger.info('sync.ok', { hwm: s.hwm, accounts: s.accounts, grants: s.grants, rules: s.rules })
    }
    if (s.skipped.length > 0 && s.lastOkAt !== before?.lastOkAt) this.#logger.warn('sync.skipped-rows', { rows: s.skipped })
    for (const fn of this.#listeners) fn(s)
  }
}

function readUrlFile(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (e) {
    throw new ConfigError(`sync.urlFile ${file}: ${describeError(e)}`)
  }
}
