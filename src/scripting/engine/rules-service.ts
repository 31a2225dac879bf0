import type { Clock, TimerHandle } from '../../core/clock.js'
import { ConfigError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import type { Disposable } from '../../core/scope.js'
import type { Broker } from '../../mqtt/broker/broker.js'
import { systemClient } from '../../mqtt/broker/local-client.js'
import { MODULES_WITH_TRAP_HANDLER, wasmTrapHandlerDisabled } from '../address-space.js'
import { SandboxHost } from '../host.js'
import { RuleControl } from './control.js'
import { type EngineSettings, RuleEngine } from './engine.js'
import { parseManifest } from './manifest.js'
import { RULE_ORIGINS, RuleStore, type StoredRule } from './rule-store.js'

/** Rules the store holds; others (file rules, graphs) are installed by whoever runs them. */
const STORED_ORIGINS: ReadonlySet<string> = new Set(RULE_ORIGINS)

export interface RulesSettings extends EngineSettings {
  readonly dataDir: string
  /** Where `/A/runfile/NAME` finds NAME.js (and NAME.json); none when undefined. */
  readonly rulesDir: string | undefined
  /** Seconds between checks for rules pushed with the CLI while perch runs. */
  readonly reloadIntervalMs: number
  /** The sandbox worker's watchdog (SandboxOptions.heartbeatMs); its default when absent. */
  readonly watchdogMs?: number
}

/** The settings reload() takes over while rules run. */
export type RuleLimits = Pick<RulesSettings, 'failureLimit' | 'coolOffMs' | 'reloadIntervalMs'>

/**
 * Rules as a whole: the store, the sandbox worker, the engine, the control topics, and rules
 * pushed by other processes picked up live. Started after the broker, stopped before it.
 */
export class RulesService implements Disposable {
  readonly engine: RuleEngine
  readonly store: RuleStore
  #host: Promise<SandboxHost> | undefined
  #closed = false
  readonly #control: RuleControl
  readonly #clock: Clock
  readonly #logger: Logger
  /** The engine reads the failure limits from this same object, so reload() changes them in place. */
  readonly #settings: { -readonly [K in keyof RulesSettings]: RulesSettings[K] }
  #timer: TimerHandle | undefined
  #syncing: Promise<void> | undefined
  #syncAgain = false

  private constructor(store: RuleStore, broker: Broker, clock: Clock, logger: Logger, settings: RulesSettings) {
    this.store = store
    this.#clock = clock
    this.#logger = logger
    this.#settings = { ...settings }
    const host = (): Promise<SandboxHost> => {
      this.#host ??= SandboxHost.start({ now: () => clock.now(), kvSnapshot: (account) => store.kv(account), ...(settings.watchdogMs === undefined ? {} : { heartbeatMs: settings.watchdogMs }) })
      return this.#host
    }
    this.engine = new RuleEngine(broker, host, store, clock, logger, this.#settings)
    const control = broker.openLocal(systemClient('rules-control'))
    this.#control = new RuleControl(this.engine, store, control, settings.rulesDir, logger, () => clock.now())
  }

  static async start(broker: Broker, clock: Clock, logger: Logger, settings: RulesSettings): Promise<RulesService> {
    const opened = RuleStore.open(settings.dataDir, clock)
    if (!opened.ok) throw new ConfigError(`rules: ${opened.error.message}`)
    // 32-bit V8 has no WASM trap handler, so only 64-bit ARM boards (39-bit address space) need the flag.
    if (!wasmTrapHandlerDisabled() && process.arch === 'arm64') {
      logger.warn('rules.address-space', {
        hint: `node runs without --disable-wasm-trap-handler: on a board with a 39-bit address space only about ${MODULES_WITH_TRAP_HANDLER} accounts can run rules (bin/perch.js passes the flag)`,
      })
    }
    const service = new RulesService(opened.value, broker, clock, logger, settings)
    service.store.changed()
    await service.#sync()
    service.#schedule()
    return service
  }

  /** The sandbox worker, if a rule started it. */
  get host(): Promise<SandboxHost> | undefined {
    return this.#host
  }

  async dispose(): Promise<void> {
    this.#closed = true
    this.#timer?.cancel()
    this.#timer = undefined
    this.#control.dispose()
    this.engine.dispose()
    if (this.#host !== undefined) await (await this.#host).dispose()
    this.store.dispose()
  }

  /**
   * Takes over new failure limits (from each rule's next failure on) and a new poll interval, then
   * brings the running rules in line with the store now instead of at the next poll.
   */
  async reload(limits: RuleLimits): Promise<void> {
    if (this.#closed) return
    this.#settings.failureLimit = limits.failureLimit
    this.#settings.coolOffMs = limits.coolOffMs
    if (limits.reloadIntervalMs !== this.#settings.reloadIntervalMs) {
      this.#settings.reloadIntervalMs = limits.reloadIntervalMs
      this.#schedule()
    }
    this.store.changed()
    await this.#sync()
  }

  /**
   * Makes the running rules what the store holds: new and changed versions installed, removed ones
   * stopped. A call during a sync makes one more sync after it, which reads the store afresh.
   */
  #sync(): Promise<void> {
    if (this.#syncing !== undefined) {
      this.#syncAgain = true
      return this.#syncing
    }
    const run = async (): Promise<void> => {
      try {
        do {
          this.#syncAgain = false
          await this.#syncOnce()
        } while (this.#syncAgain && !this.#closed)
      } finally {
        this.#syncing = undefined
      }
    }
    this.#syncing = Promise.resolve().then(run)
    return this.#syncing
  }

  async #syncOnce(): Promise<void> {
    if (this.#closed) return
    const stored = this.store.rules()
    const wanted = new Set(stored.map((r) => `${r.account}\0${r.name}`))
    for (const r of stored) {
      const running = this.engine.rule(r.account, r.name)
      if (running === undefined || running.version !== r.version) await this.#install(r)
    }
    for (const r of [...this.engine.rules.values()]) {
      if (STORED_ORIGINS.has(r.origin) && !wanted.has(`${r.account}\0${r.name}`)) await this.engine.uninstall(r.account, r.name)
    }
    this.#reportConflicts()
  }

  /** Central updates that replaced pushed rules, told to the account on /A/rules/NAME/conflict. */
  #reportConflicts(): void {
    for (const c of this.store.pendingConflicts()) {
      this.engine.notify(`/${c.account}/rules/${c.name}/conflict`, {
        winner: 'central',
        centralVersion: c.centralVersion,
        pushedVersion: c.localVersion,
        pushedBy: c.localOrigin,
        pushedOnCentralVersion: c.baseVersion,
        time: new Date(c.at).toISOString(),
      })
      this.#logger.warn('rule.conflict', { account: c.account, rule: c.name, centralVersion: c.centralVersion, pushedOnCentralVersion: c.baseVersion })
      this.store.conflictReported(c.id)
    }
  }

  async #install(r: StoredRule): Promise<void> {
    let manifest: unknown
    try {
      manifest = JSON.parse(r.manifest)
    } catch {
      manifest = undefined
    }
    const parsed = parseManifest(manifest, r.name, r.account)
    if (!parsed.ok) {
      this.#logger.error('rule.invalid', { account: r.account, rule: r.name, error: parsed.error })
      return
    }
    const installed = await this.engine.install({ account: r.account, name: r.name, source: r.source, manifest: parsed.value, version: r.version, origin: r.origin })
    if (!installed.ok) this.#logger.error('rule.not-loaded', { account: r.account, rule: r.name, version: r.version, error: installed.error })
  }

  /** (Re)arms the poll; the one pending timer is replaced, so a reload never makes a second chain. */
  #schedule(): void {
    this.#timer?.cancel()
    if (this.#closed) return
    this.#timer = this.#clock.setTimer(this.#settings.reloadIntervalMs, () => {
      let changed = false
      try {
        changed = this.store.changed()
      } catch (e) {
        this.#logger.error('rules.check-failed', { error: e instanceof Error ? e.message : String(e) })
      }
      const next = (): void => this.#schedule()
      if (changed) void this.#sync().then(next, next)
      else next()
    })
  }
}
