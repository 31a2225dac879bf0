// The sandbox worker: serves the host's requests in order, one at a time. Guest code only ever
// runs on this thread, so the broker's event loop never waits for a rule, and a native call that
// ignores every deadline ('x'.repeat(2**28) under a large cap) costs the worker, not the broker.
import type { MessagePort } from 'node:worker_threads'
import { AccountSandboxes, type SandboxCounters } from './account.js'
import { KvCache } from './kv-cache.js'
import type { Reply, Request, WorkerMessage, WorkerOptions } from './protocol.js'
import { QuickJSFactory } from './quickjs.js'
import type { DisposeReport, InvokeResult } from './types.js'

/** Post at least this often while busy, so the host's watchdog sees progress between requests. */
const PROGRESS_MS = 25
/**
 * Post replies in slices of this many while more requests are queued, so the host handles the
 * first answers (and sends more work) while the worker is still busy with the rest.
 */
const REPLY_SLICE = 32

export class SandboxWorker {
  readonly #port: MessagePort
  readonly #factory: QuickJSFactory
  readonly #accounts = new Map<string, AccountSandboxes>()
  /** Per account, for the worker's lifetime: the host seeds each account once per worker. */
  readonly #kv = new Map<string, KvCache>()
  readonly #running: Int32Array
  #queue: Request[] = []
  #head = 0
  #draining = false
  #outbox: Reply[] = []
  #recycled = 0
  readonly #counters: SandboxCounters = { disposeFailures: 0 }
  #lastPost = performance.now()
  /** The host clock as of the latest request that carried it (for rules restarted later). */
  #now = 0

  constructor(port: MessagePort, options: WorkerOptions) {
    this.#port = port
    this.#running = new Int32Array(options.running)
    // Slot 1 tells the host's watchdog that a module is being built (see SandboxHost#budget).
    this.#factory = new QuickJSFactory(options.variant, (building) => Atomics.store(this.#running, 1, building ? 1 : 0))
    port.on('message', (requests: Request[]) => {
      for (const r of requests) this.#queue.push(r)
      if (!this.#draining) void this.#drain()
    })
    this.#post({ ready: true })
  }

  async #drain(): Promise<void> {
    this.#draining = true
    try {
      while (this.#head < this.#queue.length) {
        const request = this.#queue[this.#head++]
        if (request === undefined) continue
        Atomics.store(this.#running, 0, request.t === 'kv' ? 0 : request.id)
        const pending = this.#handle(request)
        if (pending !== undefined) await pending
        Atomics.store(this.#running, 0, 0)
        this.#progress()
      }
      this.#queue = []
      this.#head = 0
      this.#flush()
    } finally {
      this.#draining = false
    }
  }

  /** Synchronous for invocations (the hot path); a promise only when a module has to be built. */
  #handle(request: Request): Promise<void> | undefined {
    switch (request.t) {
      case 'invoke': {
        this.#now = request.now
        const account = this.#accounts.get(request.account)
        let result: InvokeResult
        try {
          result =
            account === undefined
              ? { ok: false, error: { code: 'no-handler', message: `no rule '${request.name}' is loaded for this account` } }
              : account.invoke(request)
        } catch {
          result = { ok: false, error: { code: 'crashed', message: 'the sandbox host failed' } }
        }
        this.#outbox.push({ id: request.id, t: 'invoke', result })
        return account?.needsRebuild === true ? this.#rebuild(account, request.now) : undefined
      }
      case 'load':
        return this.#load(request)
      case 'unload': {
        const account = this.#accounts.get(request.account)
        if (account !== undefined) {
          account.unload(request.name)
          if (account.ruleCount === 0) this.#dropAccount(account)
        }
        this.#outbox.push({ id: request.id, t: 'unload' })
        return account?.needsRebuild === true && account.ruleCount > 0 ? this.#rebuild(account, this.#now) : undefined
      }
      case 'kv':
        this.#kv.get(request.account)?.update(request.changes)
        return undefined
      case 'close': {
        const report: DisposeReport = { disposeErrors: [], leaks: [] }
        for (const account of this.#accounts.values()) account.close(report)
        this.#accounts.clear()
        this.#outbox.push({ id: request.id, t: 'close', report })
        this.#flush()
        return undefined
      }
    }
  }

  async #load(request: Extract<Request, { t: 'load' }>): Promise<void> {
    this.#now = request.now
    const name = request.spec.account
    let kv = this.#kv.get(name)
    if (kv === undefined) {
      kv = new KvCache(request.kv ?? {})
      this.#kv.set(name, kv)
    }
    let account = this.#accounts.get(name)
    if (account === undefined) {
      account = new AccountSandboxes(name, this.#factory, kv, this.#counters)
      this.#accounts.set(name, account)
    }
    let result: Extract<Reply, { t: 'load' }>['result']
    try {
      const loaded = await account.load(request.spec, request.now)
      result = loaded.ok ? { ok: true } : { ok: false, error: loaded.error }
    } catch {
      result = { ok: false, error: { code: 'invalid', message: 'the sandbox host failed while loading the rule' } }
    }
    if (account.ruleCount === 0) this.#dropAccount(account)
    this.#outbox.push({ id: request.id, t: 'load', result })
    if (account.needsRebuild && account.ruleCount > 0) await this.#rebuild(account, request.now)
  }

  async #rebuild(account: AccountSandboxes, now: number): Promise<void> {
    this.#recycled++
    this.#flush() // the answer that triggered the rebuild should not wait for it
    await account.rebuild(now, () => this.#progress())
  }

  #dropAccount(account: AccountSandboxes): void {
    account.close({ disposeErrors: [], leaks: [] })
    this.#accounts.delete(account.account)
  }

  #progress(): void {
    if (this.#outbox.length >= REPLY_SLICE || performance.now() - this.#lastPost >= PROGRESS_MS) this.#flush(true)
  }

  #flush(heartbeat = false): void {
    if (this.#outbox.length === 0 && this.#recycled === 0 && this.#counters.disposeFailures === 0 && !heartbeat) return
    const message: WorkerMessage = { replies: this.#outbox, recycled: this.#recycled, disposeFailures: this.#counters.disposeFailures }
    this.#outbox = []
    this.#recycled = 0
    this.#counters.disposeFailures = 0
    this.#post(message)
  }

  #post(message: WorkerMessage): void {
    this.#lastPost = performance.now()
    this.#port.postMessage(message)
  }
}
