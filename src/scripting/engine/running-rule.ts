import { RingQueue } from '../../core/ring-queue.js'
import type { Disposable } from '../../core/scope.js'
import type { RuleInput } from '../types.js'
import type { RuleManifest } from './manifest.js'

/** One input waiting for its rule; a `run` request wants the handler's return value published. */
export interface Queued {
  readonly input: RuleInput
  readonly resultTopic?: string | undefined
}

export interface RuleCounters {
  invocations: number
  inputs: number
  errors: number
  /** Inputs dropped: the inbox was full, or the rule was suspended. */
  dropped: number
  publishesDenied: number
}

/** A loaded rule on the broker side: its triggers, its bounded inbox and its failure state. */
export class RunningRule implements Disposable {
  readonly account: string
  readonly name: string
  manifest: RuleManifest
  version: number
  origin: string
  readonly counters: RuleCounters = { invocations: 0, inputs: 0, errors: 0, dropped: 0, publishesDenied: 0 }
  /** Consecutive failed invocations; reset by a success. */
  failures = 0
  suspendedUntil = 0
  /** Batches sent to the sandbox and not yet answered. */
  inFlight = 0
  lastError: string | undefined
  /** Where failures are published instead of /<account>/rules/<name>/error. */
  errorTopic: string | undefined
  readonly #inbox = new RingQueue<Queued>()
  #triggers: Disposable[] = []

  constructor(account: string, name: string, manifest: RuleManifest, version: number, origin: string) {
    this.account = account
    this.name = name
    this.manifest = manifest
    this.version = version
    this.origin = origin
  }

  get queued(): number {
    return this.#inbox.length
  }

  /** Drop-oldest: the newest readings matter most to a rule, and memory stays bounded. */
  enqueue(q: Queued, now: number): void {
    if (now < this.suspendedUntil) {
      this.counters.dropped++
      return
    }
    if (this.#inbox.length >= this.manifest.inbox) {
      this.#inbox.shift()
      this.counters.dropped++
    }
    this.#inbox.push(q)
  }

  /**
   * The next batch: up to `batch` inputs; a `run` request goes alone, since only the return
   * value of a call's last input comes back.
   */
  nextBatch(): Queued[] {
    const out: Queued[] = []
    for (let q = this.#inbox.peek(); q !== undefined && out.length < this.manifest.batch; q = this.#inbox.peek()) {
      if (q.resultTopic !== undefined && out.length > 0) break
      out.push(q)
      this.#inbox.shift()
      if (q.resultTopic !== undefined) break
    }
    return out
  }

  clearInbox(): number {
    const n = this.#inbox.length
    this.#inbox.clear()
    this.counters.dropped += n
    return n
  }

  setTriggers(triggers: Disposable[]): void {
    for (const t of this.#triggers) t.dispose()
    this.#triggers = triggers
  }

  dispose(): void {
    this.setTriggers([])
    this.#inbox.clear()
  }
}
