// The gateway's sync loop, run inside the sync worker: pull from the central views, apply to
// rules.db and then accounts.db (whose transaction carries the mark), wait, repeat; on any error
// drop the connection and back off with full jitter. Nothing here throws: errors become status.
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CentralAccountCache } from '../auth/central-accounts.js'
import type { Clock } from '../core/clock.js'
import { describeError } from '../core/errors.js'
import { CentralRuleCache } from '../scripting/engine/central-rules.js'
import { MysqlSession, type MysqlTarget } from '../sync/mysql.js'
import { type Pull, pull } from '../sync/pull.js'

export const SYNC_STATUS_FILE = 'sync-status.json'

export interface SyncStatus {
  readonly gateway: string | undefined
  /** starting: no attempt finished yet; ok: the last attempt succeeded; error: it failed. */
  readonly state: 'starting' | 'ok' | 'error'
  readonly lastOkAt: number | undefined
  readonly lastAttemptAt: number | undefined
  readonly lastError: string | undefined
  readonly consecutiveErrors: number
  readonly errors: number
  /** The central counter this cache is at, and how far central was ahead at the last read. */
  readonly hwm: number | undefined
  readonly epoch: string | undefined
  readonly centralCounter: number | undefined
  readonly lag: number | undefined
  readonly fullSyncs: number
  readonly incrementalSyncs: number
  readonly lastFullReason: string | undefined
  readonly lastDurationMs: number | undefined
  readonly nextAttemptAt: number | undefined
  readonly accounts: number
  readonly grants: number
  readonly rules: number
  readonly skipped: readonly string[]
}

export interface SyncLoopOptions {
  readonly dataDir: string
  readonly target: MysqlTarget
  readonly gateway: string | undefined
  readonly intervalMs: number
  readonly maxBackoffMs: number
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

const FIRST_BACKOFF_MS = 500

export class SyncLoop {
  readonly #o: SyncLoopOptions
  readonly #clock: Clock
  readonly #report: (s: SyncStatus) => void
  readonly #status: Mutable<SyncStatus>
  #session: MysqlSession | undefined
  #caches: { accounts: CentralAccountCache; rules: CentralRuleCache } | undefined
  #stopped = false
  #wake: (() => void) | undefined
  #poked = false

  constructor(options: SyncLoopOptions, clock: Clock, report: (s: SyncStatus) => void) {
    this.#o = options
    this.#clock = clock
    this.#report = report
    this.#status = {
      gateway: options.gateway,
      state: 'starting',
      lastOkAt: undefined,
      lastAttemptAt: undefined,
      lastError: undefined,
      consecutiveErrors: 0,
      errors: 0,
      hwm: undefined,
      epoch: undefined,
      centralCounter: undefined,
      lag: undefined,
      fullSyncs: 0,
      incrementalSyncs: 0,
      lastFullReason: undefined,
      lastDurationMs: undefined,
      nextAttemptAt: undefined,
      accounts: 0,
      grants: 0,
      rules: 0,
      skipped: [],
    }
  }

  async run(): Promise<void> {
    while (!this.#stopped) {
      const ok = await this.#attempt()
      const wait = ok ? this.#o.intervalMs : this.#backoff()
      this.#status.nextAttemptAt = this.#clock.now() + wait
      this.#publish()
      await this.#sleep(wait)
    }
    this.#session?.destroy()
    this.#closeCaches()
  }

  /** Syncs now instead of at the next interval. */
  poke(): void {
    this.#poked = true
    this.#wake?.()
  }

  stop(): void {
    this.#stopped = true
    this.#wake?.()
  }

  async #attempt(): Promise<boolean> {
    const started = this.#clock.now()
    this.#status.lastAttemptAt = started
    try {
      if (this.#session === undefined || this.#session.broken) {
        this.#session?.destroy()
        this.#session = undefined
        const opened = await MysqlSession.open(this.#o.target)
        if (!opened.ok) return this.#failed(opened.error.message)
        this.#session = opened.value
      }
      const local = this.#withCaches((accounts, rules) => ({ mark: accounts.mark(), counts: { ...accounts.counts(), rules: rules.count() } }))
      this.#counts(local.counts)
      const pulled = await pull(this.#session, local.mark)
      if (!pulled.ok) {
        if (pulled.error.kind !== 'sql') {
          this.#session.destroy()
          this.#session = undefined
        }
        return this.#failed(pulled.error.message)
      }
      this.#applyPull(pulled.value)
      const s = this.#status
      s.state = 'ok'
      s.lastOkAt = this.#clock.now()
      s.lastError = undefined
      s.consecutiveErrors = 0
      s.lastDurationMs = s.lastOkAt - started
      return true
    } catch (e) {
      // A local failure (the disk, a locked database): the central side may be fine.
      return this.#failed(`applying to the local cache: ${describeError(e)}`)
    }
  }

  #applyPull(p: Pull): void {
    const s = this.#status
    s.centralCounter = p.clock.v
    if (p.kind === 'none') {
      s.hwm = p.clock.v
      s.epoch = p.clock.epoch
      s.lag = 0
      return
    }
    const full = p.kind === 'full'
    const mark = { hwm: p.clock.v, epoch: p.clock.epoch }
    const applied = this.#withCaches((accounts, rules) => {
      rules.apply({
        full,
        accounts: full ? [] : p.accountKeys,
        rules: full ? [] : p.ruleKeys,
        rows: p.rules,
      })
      const a = accounts.apply({ full, keys: full ? [] : p.accountKeys, accounts: p.accounts, grants: p.grants, mark })
      return { skipped: a.skipped, counts: { ...accounts.counts(), rules: rules.count() } }
    })
    if (full) {
      s.fullSyncs++
      s.lastFullReason = p.reason
    } else s.incrementalSyncs++
    s.hwm = mark.hwm
    s.epoch = mark.epoch
    s.lag = 0
    this.#counts(applied.counts)
    s.skipped = applied.skipped.slice(0, 20)
  }

  /** Both caches, opened on first use and kept; closed after a local failure, to start clean. */
  #withCaches<T>(fn: (accounts: CentralAccountCache, rules: CentralRuleCache) => T): T {
    if (this.#caches === undefined) {
      const accounts = CentralAccountCache.open(this.#o.dataDir, this.#clock)
      if (!accounts.ok) throw accounts.error
      const rules = CentralRuleCache.open(this.#o.dataDir, this.#clock)
      if (!rules.ok) {
        accounts.value.dispose()
        throw rules.error
      }
      this.#caches = { accounts: accounts.value, rules: rules.value }
    }
    try {
      return fn(this.#caches.accounts, this.#caches.rules)
    } catch (e) {
      this.#closeCaches()
      throw e
    }
  }

  #closeCaches(): void {
    this.#caches?.rules.dispose()
    this.#caches?.accounts.dispose()
    this.#caches = undefined
  }

  #counts(c: { accounts: number; grants: number; rules: number }): void {
    this.#status.accounts = c.accounts
    this.#status.grants = c.grants
    this.#status.rules = c.rules
  }

  #failed(message: string): false {
    const s = this.#status
    s.state = 'error'
    s.lastError = message
    s.consecutiveErrors++
    s.errors++
    return false
  }

  /** Exponential, capped, with full jitter: a fleet that lost central together does not return together. */
  #backoff(): number {
    const ceiling = Math.min(this.#o.maxBackoffMs, FIRST_BACKOFF_MS * 2 ** Math.min(this.#status.consecutiveErrors - 1, 20))
    return Math.max(100, Math.round(Math.random() * ceiling))
  }

  #publish(): void {
    const snapshot: SyncStatus = { ...this.#status }
    this.#report(snapshot)
    try {
      const file = join(this.#o.dataDir, SYNC_STATUS_FILE)
      writeFileSync(`${file}.tmp`, `${JSON.stringify(snapshot, null, 2)}\n`, { mode: 0o600 })
      renameSync(`${file}.tmp`, file)
    } catch {
      // status on disk is a convenience for `perch sync status`; the sync itself went on
    }
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopped) return
    if (this.#poked) {
      this.#poked = false
      return
    }
    await new Promise<void>((resolve) => {
      const timer = this.#clock.setTimer(ms, () => {
        this.#wake = undefined
        resolve()
      })
      this.#wake = () => {
        timer.cancel()
        this.#wake = undefined
        this.#poked = false
        resolve()
      }
    })
  }
}
