// The main-thread side of the rule sandboxes: owns one worker thread, keeps every loaded rule's
// spec so it can start a replacement worker with the same rules, and kills a worker that stops
// answering (a single native built-in cannot be interrupted from inside QuickJS).
import { Worker } from 'node:worker_threads'
import { err, ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { DEFAULT_HEARTBEAT_MS, heartbeatMs, type ResolvedSpec, resolveSpec } from './limits.js'
import { LoadedSpecs } from './loaded-specs.js'
import { encodeBatch, type Reply, type Request, type WorkerMessage, type WorkerOptions } from './protocol.js'
import type { QuickJSVariantName } from './quickjs.js'
import type { DisposeReport, InvokeResult, LoadError, RuleInput, RuleSpec, SandboxStats } from './types.js'

export interface SandboxHostOptions {
  /** The host clock: what `now()` returns inside rules (one value per batch). */
  readonly now: () => number
  /**
   * Patience of the watchdog, ms (default 1000; never less than 4x the largest rule time limit).
   * A worker that has unanswered requests and posts nothing for this long is terminated and
   * replaced, and its rules are loaded again.
   */
  readonly heartbeatMs?: number
  /** An account's rule KV store, read when the account's first rule is loaded into a worker. */
  readonly kvSnapshot?: (account: string) => Readonly<Record<string, string>>
  /** `debug` only for leak tests (a devDependency). */
  readonly variant?: QuickJSVariantName
}

type Settle = (reply: Reply | undefined) => void

interface Pending {
  readonly request: Exclude<Request, { t: 'kv' }>
  readonly settle: Settle
  posted: boolean
  /** A reload of a known rule into a new worker (nobody awaits it). */
  readonly reload?: ResolvedSpec
}

/** Ready within this long or the worker is replaced (it is normally ready in tens of ms). */
const READY_TIMEOUT_MS = 30_000
const RESPAWN_PAUSE_MS = 1000
const BUILD_HEARTBEATS = 10

function crashed(message: string): InvokeResult {
  return { ok: false, error: { code: 'crashed', message } }
}

/**
 * Tests import the TypeScript sources through tap's loader; a worker started from there inherits
 * the loader with process.execArgv, so it can be started from the .ts file next to this one. The
 * built package runs dist/scripting/worker.js.
 */
function workerUrl(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url)
}

export class SandboxHost implements Disposable {
  readonly #options: SandboxHostOptions
  readonly #variant: QuickJSVariantName
  readonly #specs = new LoadedSpecs()
  /** Accounts whose KV snapshot the current worker has. */
  readonly #seeded = new Set<string>()
  readonly #pending = new Map<number, Pending>()
  #outbox: Request[] = []
  #flushScheduled = false
  #nextId = 1
  #worker: Worker | undefined
  /** The request the worker is executing (see WorkerOptions.running). */
  #running = new Int32Array(new SharedArrayBuffer(8))
  #ready = false
  #spawnedAt = 0
  #lastProgress = 0
  #posted = 0
  #largestTimeMs = 0
  #disposed = false
  #watchdog: NodeJS.Timeout | undefined
  #respawn: NodeJS.Timeout | undefined
  #onReady: { resolve: () => void; reject: (e: Error) => void } | undefined
  #modulesRecycled = 0
  #disposeFailures = 0
  #workerRestarts = 0
  #rulesDropped = 0

  private constructor(options: SandboxHostOptions) {
    this.#options = options
    this.#variant = options.variant ?? 'release'
  }

  /** Starts the worker; resolves when it is ready for requests. */
  static async start(options: SandboxHostOptions): Promise<SandboxHost> {
    const host = new SandboxHost(options)
    const ready = new Promise<void>((resolve, reject) => {
      host.#onReady = { resolve, reject }
    })
    host.#spawn()
    try {
      await ready
    } catch (e) {
      await host.dispose()
      throw e
    }
    host.#watchdog = setInterval(() => host.#check(), Math.min(250, host.#heartbeat() / 4))
    host.#watchdog.unref()
    return host
  }

  /**
   * Compiles and checks a rule in its account's sandbox; only if that worked does it replace the
   * running rule of the same name (a broken replacement leaves the old one running).
   */
  async load(spec: RuleSpec): Promise<Result<void, LoadError>> {
    this.#assertLive()
    const resolved = resolveSpec(spec)
    if (!resolved.ok) return resolved
    const s = resolved.value
    this.#largestTimeMs = Math.max(this.#largestTimeMs, s.limits.timeMs)
    const reply = await this.#request({ t: 'load', id: this.#nextId++, spec: s, now: this.#options.now() })
    if (reply === undefined) return err({ code: 'invalid', message: 'the sandbox worker crashed while loading the rule and was restarted' })
    if (reply.t !== 'load') return err({ code: 'invalid', message: 'unexpected reply from the sandbox worker' })
    if (!reply.result.ok) return err(reply.result.error)
    this.#specs.set(s)
    return ok(undefined)
  }

  async unload(account: string, name: string): Promise<void> {
    this.#assertLive()
    this.#specs.remove(account, name)
    await this.#request({ t: 'unload', id: this.#nextId++, account, name })
  }

  /** Runs one batch of inputs through a rule; its effects are all applied, or none. */
  async invoke(account: string, name: string, inputs: readonly RuleInput[]): Promise<InvokeResult> {
    this.#assertLive()
    if (inputs.length === 0) return { ok: true, effects: [], returned: undefined }
    const now = this.#options.now()
    const { batch, kinds } = encodeBatch(now, inputs)
    const reply = await this.#request({
      t: 'invoke',
      id: this.#nextId++,
      account,
      name,
      batch,
      now,
      inputs: inputs.length,
      kinds,
      capMs: Math.floor(this.#heartbeat() / 4),
    })
    if (reply === undefined) return crashed('the sandbox worker was stopped (a call ran far past its time limit, or it crashed) and restarted')
    return reply.t === 'invoke' ? reply.result : crashed('unexpected reply from the sandbox worker')
  }

  /**
   * Tells the worker's KV cache about changes made outside the rules (null deletes). Rules' own
   * writes need no update: the worker applied them when their batch succeeded.
   */
  updateKv(account: string, changes: Readonly<Record<string, string | null>>): void {
    this.#assertLive()
    this.#enqueue({ t: 'kv', account, changes: Object.entries(changes) })
  }

  stats(): SandboxStats {
    return {
      modulesRecycled: this.#modulesRecycled,
      workerRestarts: this.#workerRestarts,
      disposeFailures: this.#disposeFailures,
      rulesDropped: this.#rulesDropped,
      accounts: this.#specs.accounts,
      rules: this.#specs.rules,
      inFlight: this.#pending.size,
    }
  }

  /**
   * Disposes every rule inside the worker, then ends it. The report lists dispose failures
   * (QuickJS asserts on leaked handles) and, with the debug variant, leaked allocations.
   */
  async dispose(): Promise<DisposeReport> {
    if (this.#disposed) return { disposeErrors: [], leaks: [] }
    this.#disposed = true
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog)
    if (this.#respawn !== undefined) clearTimeout(this.#respawn)
    let report: DisposeReport = { disposeErrors: [], leaks: [] }
    if (this.#worker !== undefined && this.#ready) {
      const closing = this.#request({ t: 'close', id: this.#nextId++ })
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), this.#heartbeat())
      })
      const reply = await Promise.race([closing, timeout])
      clearTimeout(timer)
      if (reply?.t === 'close') report = reply.report
      else report.disposeErrors.push('the sandbox worker did not answer close in time')
    }
    await this.#stop()
    for (const p of this.#pending.values()) p.settle(undefined)
    this.#pending.clear()
    this.#outbox = []
    return report
  }

  // --- requests -------------------------------------------------------------------------------

  #request(request: Exclude<Request, { t: 'kv' }>): Promise<Reply | undefined> {
    return new Promise((settle) => {
      this.#pending.set(request.id, { request, settle, posted: false })
      this.#enqueue(request)
    })
  }

  #enqueue(request: Request): void {
    this.#outbox.push(request)
    if (!this.#flushScheduled && this.#ready) {
      this.#flushScheduled = true
      queueMicrotask(() => this.#flush())
    }
  }

  /** Everything queued in one tick goes to the worker as one message. */
  #flush(): void {
    this.#flushScheduled = false
    const worker = this.#worker
    if (worker === undefined || !this.#ready || this.#outbox.length === 0) return
    const out: Request[] = []
    for (const r of this.#outbox) {
      if (r.t === 'kv') {
        // An account not seeded yet gets the whole store with its first load instead.
        if (this.#seeded.has(r.account)) out.push(r)
        continue
      }
      if (r.t === 'load' && !this.#seeded.has(r.spec.account)) {
        this.#seeded.add(r.spec.account)
        out.push({ ...r, kv: this.#options.kvSnapshot?.(r.spec.account) ?? {} })
      } else out.push(r)
      const p = this.#pending.get(r.id)
      if (p !== undefined) p.posted = true
      if (this.#posted++ === 0) this.#lastProgress = performance.now()
    }
    this.#outbox = []
    worker.postMessage(out)
  }

  #onMessage(message: WorkerMessage): void {
    this.#lastProgress = performance.now()
    if ('ready' in message) {
      this.#ready = true
      this.#onReady?.resolve()
      this.#onReady = undefined
      this.#flush()
      return
    }
    this.#modulesRecycled += message.recycled
    this.#disposeFailures += message.disposeFailures
    for (const reply of message.replies) {
      const p = this.#pending.get(reply.id)
      if (p === undefined) continue
      this.#pending.delete(reply.id)
      this.#posted--
      p.settle(reply)
    }
  }

  // --- the worker's life ------------------------------------------------------------------------

  #spawn(): void {
    // Slot 0: the id of the request running in the worker; slot 1: 1 while it builds a module.
    const running = new SharedArrayBuffer(8)
    this.#running = new Int32Array(running)
    const options: WorkerOptions = { variant: this.#variant, running }
    // execArgv is inherited (tap's TypeScript loader in tests). V8 rejects
    // --disable-wasm-trap-handler here: the launcher must pass it to node itself.
    const worker = new Worker(workerUrl(), { workerData: options, resourceLimits: { stackSizeMb: 8 } })
    this.#worker = worker
    this.#ready = false
    this.#posted = 0
    this.#spawnedAt = performance.now()
    worker.on('message', (m: WorkerMessage) => this.#onMessage(m))
    worker.on('error', (e: Error) => this.#lost(worker, e))
    worker.on('exit', (code: number) => this.#lost(worker, new Error(`sandbox worker exited with code ${code}`)))
  }

  #lost(worker: Worker, e: Error): void {
    if (worker !== this.#worker || this.#disposed) return
    if (this.#onReady !== undefined) {
      // Never came up (e.g. the worker file cannot be loaded): start() reports it.
      this.#onReady.reject(e)
      this.#onReady = undefined
      return
    }
    // A worker that dies before it is even ready would die again at once: pause before the next.
    this.#restart(this.#ready ? 0 : RESPAWN_PAUSE_MS)
  }

  #check(): void {
    if (this.#disposed || this.#worker === undefined) return
    const now = performance.now()
    if (!this.#ready) {
      if (now - this.#spawnedAt > READY_TIMEOUT_MS) this.#restart()
      return
    }
    if (this.#posted > 0 && now - this.#lastProgress > this.#budget()) this.#restart()
  }

  /**
   * Kills the worker and starts a new one with every rule loaded again. The request that was
   * running fails (`crashed`); everything else the old worker had is sent again, since its answers
   * were never seen (effects are only applied by whoever receives them). If the stuck request was
   * a reload after an earlier restart, its rule is dropped, so a rule that hangs at load time
   * cannot restart the worker forever.
   */
  #restart(pauseMs = 0): void {
    this.#workerRestarts++
    const running = Atomics.load(this.#running, 0)
    void this.#stop()
    const posted = [...this.#pending.values()].filter((p) => p.posted).sort((a, b) => a.request.id - b.request.id)
    const retry: Request[] = []
    for (const p of posted) {
      const culprit = p.request.id === running
      if (p.reload !== undefined) {
        // Reloads are issued afresh below, from the specs.
        this.#pending.delete(p.request.id)
        if (culprit) this.#dropSpec(p.reload)
      } else if (culprit) {
        this.#pending.delete(p.request.id)
        p.settle(undefined)
      } else {
        p.posted = false
        retry.push(p.request)
      }
    }
    const queued: Request[] = []
    for (const r of this.#outbox) {
      if (r.t !== 'kv' && this.#pending.get(r.id)?.reload !== undefined) this.#pending.delete(r.id)
      else queued.push(r)
    }
    this.#outbox = []
    this.#seeded.clear()
    for (const spec of [...this.#specs.all()]) this.#reload(spec)
    for (const r of retry) this.#outbox.push(r)
    for (const r of queued) this.#outbox.push(r)
    if (pauseMs === 0) this.#spawn()
    else {
      this.#respawn = setTimeout(() => {
        this.#respawn = undefined
        if (!this.#disposed) this.#spawn()
      }, pauseMs)
    }
  }

  #reload(spec: ResolvedSpec): void {
    const request: Request = { t: 'load', id: this.#nextId++, spec, now: this.#options.now() }
    this.#pending.set(request.id, {
      request,
      posted: false,
      reload: spec,
      settle: (reply) => {
        // It loaded before; failing now (or at dispose) loses it.
        if (reply !== undefined && !(reply.t === 'load' && reply.result.ok)) this.#dropSpec(spec)
      },
    })
    this.#outbox.push(request)
  }

  #dropSpec(spec: ResolvedSpec): void {
    if (this.#specs.get(spec.account, spec.name) !== spec) return // replaced meanwhile
    this.#specs.remove(spec.account, spec.name)
    this.#rulesDropped++
  }

  async #stop(): Promise<void> {
    const worker = this.#worker
    this.#worker = undefined
    this.#ready = false
    if (worker === undefined) return
    worker.removeAllListeners()
    worker.on('error', () => {}) // late errors of a worker being terminated are not news
    await worker.terminate()
  }

  /**
   * Building an account's QuickJS module (compiling and instantiating the WebAssembly) cannot be
   * interrupted and takes seconds on a slow board or under emulation: it gets ten heartbeats.
   * Rule code is bounded by interpreter ticks and keeps the plain heartbeat.
   */
  #budget(): number {
    return Atomics.load(this.#running, 1) === 1 ? BUILD_HEARTBEATS * this.#heartbeat() : this.#heartbeat()
  }

  #heartbeat(): number {
    return heartbeatMs(this.#options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, this.#largestTimeMs)
  }

  #assertLive(): void {
    if (this.#disposed) throw new Error('the sandbox host is disposed')
  }
}
