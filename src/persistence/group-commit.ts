import type { Clock, TimerHandle } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { RingQueue } from '../core/ring-queue.js'
import { type Database, type DbError, toDbError } from '../db/index.js'

export type CommitCallback = (error: Error | undefined) => void

export interface GroupCommitOptions {
  /** A transaction is committed this long after its first write... */
  readonly intervalMs: number
  /** ...or once it holds this many writes, whichever comes first. */
  readonly maxWrites: number
  /** After a failed batch, its writes are tried again this long later (if nothing else wrote). */
  readonly retryMs?: number
  /** At most this many failed writes wait to be retried; beyond that the oldest are given up. */
  readonly maxBacklog?: number
}

/** Counters for tests, $SYS and benchmarks. */
export interface CommitStats {
  /** Transactions committed. */
  commits: number
  /** Writes recorded (one per store call). */
  writes: number
  /** Batches that failed and were rolled back. */
  failures: number
  /** Writes of failed batches waiting to be applied again. */
  backlog: number
}

type Write = () => void

/** Told how each transaction ended, so state kept beside the database can follow it. */
export interface TransactionHooks {
  committed(): void
  rolledBack(): void
}

const NO_HOOKS: TransactionHooks = { committed: () => {}, rolledBack: () => {} }

/** A full disk, an I/O error or a lock can pass; a bug or a damaged file does not. */
const isTransient = (e: DbError): boolean => e.kind === 'full' || e.kind === 'io' || e.kind === 'busy'

/**
 * Group commit: the first write after a commit opens a transaction and starts the interval;
 * every write runs inside it at once; the transaction commits when the interval ends or
 * after `maxWrites` writes. Then the callbacks registered meanwhile run in order.
 *
 * A failure (SQLITE_FULL, an I/O error) in a write or in COMMIT rolls the transaction back,
 * and the batch fails as a whole: later writes of the same batch wait, and every callback up
 * to the batch's end is called with the error, so nothing registered after a lost write is
 * ever told it is durable. The batch's state changes are kept, in order, and applied again,
 * with the writes made meanwhile, by the next transaction `retryMs` later, so a removal or a
 * subscription made while the disk was full is not forgotten once space returns. Writes marked
 * `retry: false` (a message added to a queue or the retained store, whose publisher is told it
 * was not stored) are given up: retrying them would need the very space that is missing.
 *
 * A retry commits the kept writes in a transaction of their own before the writes made while
 * they waited: otherwise a publisher sending every few hundred milliseconds puts a new message
 * into every retry, and while the disk stays too full for that message its failure rolls the
 * kept writes back each time, so the removals that would free the space never land.
 */
export class GroupCommit {
  readonly stats: CommitStats = { commits: 0, writes: 0, failures: 0, backlog: 0 }
  readonly #db: Database
  readonly #clock: Clock
  readonly #logger: Logger
  readonly #intervalMs: number
  readonly #maxWrites: number
  readonly #retryMs: number
  readonly #maxBacklog: number
  readonly #beforeCommit: () => void
  readonly #hooks: TransactionHooks
  /** Writes of the open transaction (or of the failed batch), in order. */
  #batch: Write[] = []
  /** Writes of failed batches, all retryable, committed on their own by the next retry. */
  #backlog: Write[] = []
  /** Writes made while a backlog waits for its retry; they follow it, in a second transaction. */
  #waiting: Write[] = []
  readonly #noRetry = new WeakSet<Write>()
  #open = false
  /** The current batch failed; it ends, with this error, at the next commit point. */
  #failure: DbError | undefined
  #writes = 0
  #timer: TimerHandle | undefined
  #pending: CommitCallback[] = []
  /** Callbacks whose batch has ended, with its outcome, waiting to be called in order. */
  readonly #released = new RingQueue<{ fn: CommitCallback; error: Error | undefined }>()
  #draining = false
  #drainQueued = false
  #closed = false

  constructor(db: Database, clock: Clock, logger: Logger, options: GroupCommitOptions, beforeCommit: () => void, hooks = NO_HOOKS) {
    this.#db = db
    this.#clock = clock
    this.#logger = logger
    this.#intervalMs = options.intervalMs
    this.#maxWrites = options.maxWrites
    this.#retryMs = options.retryMs ?? 1000
    this.#maxBacklog = options.maxBacklog ?? 100_000
    this.#beforeCommit = beforeCommit
    this.#hooks = hooks
  }

  /** True while a batch is open (or failed and not yet ended). */
  get pending(): boolean {
    return this.#open || this.#failure !== undefined
  }

  /**
   * Runs one store write inside the current transaction, opening one if needed. With `retry`
   * false the write is given up, not retried, if its batch fails.
   */
  write(fn: Write, retry = true): void {
    if (this.#closed) return
    this.stats.writes++
    if (!retry) this.#noRetry.add(fn)
    if (!this.pending && this.#backlog.length > 0) {
      // A batch failed moments ago: wait behind its writes for the retry (a backoff, so a full
      // disk costs one attempt per retry interval, not one per write).
      this.#waiting.push(fn)
      this.stats.backlog = this.#backlog.length + this.#waiting.length
      return
    }
    this.#batch.push(fn)
    if (this.#failure === undefined) {
      try {
        if (!this.#open) this.#begin()
        this.#apply(fn)
      } catch (e) {
        this.#failed(toDbError(e, this.#db.file))
      }
    }
    if (++this.#writes >= this.#maxWrites) this.#end(true)
  }

  afterCommit(fn: CommitCallback): void {
    if (this.#closed) fn(new Error(`session store is closed: ${this.#db.file}`))
    else if (this.pending || this.#backlog.length > 0) this.#pending.push(fn)
    else if (this.#draining || this.#released.length > 0) this.#released.push({ fn, error: undefined })
    else fn(undefined)
  }

  /** Ends the current batch now (retrying a backlog) and runs every callback that was waiting. */
  flush(): void {
    if (this.pending) this.#end(false)
    else if (this.#backlog.length > 0) this.#retry()
    else this.#drain()
  }

  close(): void {
    if (this.#closed) return
    this.flush()
    this.#closed = true
    this.#timer?.cancel()
    const lost = this.#backlog.length + this.#waiting.length
    if (lost > 0) this.#logger.error('store.backlog-lost', { file: this.#db.file, writes: lost })
  }

  /**
   * Opens a transaction. After a failure, first commits the kept writes on their own, then
   * applies the writes that waited behind them.
   */
  #begin(): void {
    this.#timer?.cancel()
    this.#timer = undefined
    if (this.#backlog.length > 0) this.#commitBacklog()
    this.#db.exec('BEGIN IMMEDIATE')
    this.#open = true
    this.#arm(this.#intervalMs)
    if (this.#waiting.length === 0) return
    const waiting = this.#waiting
    this.#waiting = []
    this.stats.backlog = 0
    this.#batch = [...waiting, ...this.#batch]
    for (const w of waiting) this.#apply(w)
  }

  /** Throws if the kept writes still cannot commit; they stay kept, with the waiting ones behind. */
  #commitBacklog(): void {
    this.#db.exec('BEGIN IMMEDIATE')
    try {
      for (const w of this.#backlog) this.#apply(w)
      this.#beforeCommit()
      this.#db.exec('COMMIT')
    } catch (e) {
      this.#db.rollback()
      this.#hooks.rolledBack()
      throw e
    }
    this.stats.commits++
    this.#hooks.committed()
    this.#backlog = []
    this.stats.backlog = this.#waiting.length
  }

  /**
   * Runs one write. A statement error that leaves the transaction open (a constraint, a bug)
   * is logged and drops only that write; anything else is thrown to fail the batch.
   */
  #apply(w: Write): void {
    try {
      w()
    } catch (e) {
      const error = toDbError(e, this.#db.file)
      if (!this.#db.inTransaction || isTransient(error)) throw error
      this.#batch = this.#batch.filter((x) => x !== w)
      this.#logger.error('store.write-failed', { file: this.#db.file, code: error.code, error: error.message })
    }
  }

  #arm(ms: number): void {
    this.#timer ??= this.#clock.setTimer(ms, () => {
      this.#timer = undefined
      if (this.pending) this.#end(false)
      else this.#retry()
    })
  }

  /** Applies a backlog on its own when no new write came to carry it. */
  #retry(): void {
    try {
      this.#begin()
    } catch (e) {
      this.#failed(toDbError(e, this.#db.file))
    }
    this.#end(false)
  }

  /** The batch failed: roll back; it ends, reporting the error, at its commit point. */
  #failed(error: DbError): void {
    this.#db.rollback()
    this.#hooks.rolledBack()
    this.#open = false
    this.#failure = error
    this.#arm(this.#intervalMs)
  }

  /**
   * Commits (or reports the failure of) the current batch and releases its callbacks: at
   * once from a timer or flush, after the current call stack when a write filled the batch,
   * so a callback never runs in the middle of the broker's routing.
   */
  #end(deferred: boolean): void {
    this.#timer?.cancel()
    this.#timer = undefined
    let error: DbError | undefined = this.#failure
    if (error === undefined && this.#open) {
      try {
        this.#beforeCommit()
        this.#db.exec('COMMIT')
        this.stats.commits++
        this.#hooks.committed()
      } catch (e) {
        error = toDbError(e, this.#db.file)
        this.#db.rollback()
        this.#hooks.rolledBack()
      }
    }
    if (error !== undefined) this.#keepForRetry(error)
    this.#batch = []
    this.#open = false
    this.#failure = undefined
    this.#writes = 0
    const callbacks = this.#pending
    this.#pending = []
    for (const fn of callbacks) this.#released.push({ fn, error })
    if (!deferred) this.#drain()
    else if (!this.#drainQueued) {
      this.#drainQueued = true
      queueMicrotask(() => {
        this.#drainQueued = false
        this.#drain()
      })
    }
  }

  #keepForRetry(error: DbError): void {
    this.stats.failures++
    // Outside a retry the kept and waiting lists are empty: a batch opens only once they are gone.
    let backlog = [...this.#backlog, ...this.#waiting, ...this.#batch].filter((w) => !this.#noRetry.has(w))
    this.#waiting = []
    if (backlog.length > this.#maxBacklog) {
      this.#logger.error('store.backlog-dropped', { file: this.#db.file, writes: backlog.length - this.#maxBacklog })
      backlog = backlog.slice(backlog.length - this.#maxBacklog)
    }
    this.#backlog = backlog
    this.stats.backlog = backlog.length
    this.#logger.error('store.commit-failed', { file: this.#db.file, code: error.code, error: error.message, retrying: backlog.length })
    if (backlog.length > 0) this.#arm(Math.max(this.#retryMs, this.#intervalMs))
  }

  #drain(): void {
    if (this.#draining) return
    this.#draining = true
    try {
      for (let r = this.#released.shift(); r !== undefined; r = this.#released.shift()) {
        try {
          r.fn(r.error)
        } catch (e) {
          this.#logger.error('store.callback-failed', { error: e instanceof Error ? e.message : String(e) })
        }
      }
    } finally {
      this.#draining = false
    }
  }
}
