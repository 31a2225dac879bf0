import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AccountService } from '../auth/accounts.js'
import type { MysqlUsersHooks } from '../auth/mysql-users-hooks.js'
import type { BridgeService, DevicesChange } from '../bridges/service.js'
import type { Clock } from '../core/clock.js'
import { DeadlineQueue } from '../core/deadlines.js'
import { ConfigError, describeError, PerchError } from '../core/errors.js'
import type { Logger, LogLevel } from '../core/logger.js'
import { err, ok, type Result } from '../core/result.js'
import type { DeviceGraphService } from '../features/index.js'
import { Broker } from '../mqtt/broker/broker.js'
import { SysPublisher } from '../mqtt/broker/sys.js'
import type { SessionStore } from '../mqtt/session/store.js'
import type { ConnectionLimits, TransportServices } from '../mqtt/transport/context.js'
import { ImmediateFlusher } from '../mqtt/transport/flusher.js'
import { ConnectionSet, listen, type RunningListener } from '../mqtt/transport/listeners.js'
import { type RuleLimits, RulesService, type RulesSettings } from '../scripting/engine/rules-service.js'
import { buildHooks, openAccounts } from './auth-setup.js'
import { DeviceBridges } from './bridges.js'
import type { PerchConfig } from './config.js'
import { devicesRoutes, openGraphs } from './graphs.js'
import type { MetricsServer } from './metrics.js'
import { SystemdNotifier } from './notify.js'
import { planReload } from './reload-plan.js'
import { writeStatusFile } from './status-file.js'
import { openSessionStore } from './store.js'
import type { SyncService } from './sync-service.js'
import { syncSysEntries } from './sync-sys.js'
import { connectionLimits, listenerSpec } from './transport-setup.js'

export interface AppDeps {
  readonly clock: Clock
  readonly logger: Logger
  readonly version: string
  /** Changes the level of `logger` and its children, so a reload can apply `log.level`. */
  readonly setLogLevel?: ((level: LogLevel) => void) | undefined
}

/** What one reload did; it is also logged as `perch.reload`. */
export interface ReloadReport {
  /** Changed config keys now in effect (dotted paths). */
  readonly applied: readonly string[]
  /** Changed config keys that wait for a restart. */
  readonly needsRestart: readonly string[]
  /** Undefined when devices are disabled or their reload failed. */
  readonly devices: DevicesChange | undefined
  /** Rules running afterwards; undefined when rules are disabled or their reload failed. */
  readonly rules: number | undefined
  /** Parts whose reload threw; they keep what they ran before. */
  readonly failed: readonly { readonly part: string; readonly error: string }[]
}

/**
 * The composition root: builds every part from the config, starts them in order and stops
 * them in reverse (stop accepting, tell clients, release timers).
 */
export class App {
  readonly broker: Broker
  readonly listeners: readonly RunningListener[]
  readonly #connections: ConnectionSet
  readonly #deadlines: DeadlineQueue
  #sys: SysPublisher | undefined
  readonly #logger: Logger
  /** Where sessions and retained messages are kept (SQLite unless persistence.mode is memory). */
  readonly store: SessionStore
  /** Accounts mode only. */
  readonly accounts: AccountService | undefined
  /** auth.mode mysql-users only. */
  readonly mysqlUsers: MysqlUsersHooks | undefined
  /** When rules are enabled. */
  readonly rules: RulesService | undefined
  /** When a central database is configured. */
  readonly sync: SyncService | undefined
  /** Registered devices and their graphs, unless graphs.enabled is false. */
  readonly graphs: DeviceGraphService | undefined
  /** The sensor bridges, unless devices.enabled is false. */
  readonly bridges: BridgeService | undefined
  /** The /metrics and /healthz endpoint, when http is configured. */
  readonly metrics: MetricsServer | undefined
  #stopping: Promise<void> | undefined
  #notifier: SystemdNotifier | undefined
  /** What runs: the start config, with the live keys of each reload since taken over. */
  #config: PerchConfig
  /** Shared with every connection: reload() changes the live ones in place. */
  readonly #limits: ConnectionLimits
  readonly #devices: DeviceBridges | undefined
  readonly #clock: Clock
  readonly #version: string
  #setLogLevel: ((level: LogLevel) => void) | undefined
  #reloading: Promise<unknown> = Promise.resolve()
  #status = ''

  private constructor(parts: {
    config: PerchConfig
    limits: ConnectionLimits
    clock: Clock
    version: string
    broker: Broker
    listeners: RunningListener[]
    connections: ConnectionSet
    deadlines: DeadlineQueue
    sys: SysPublisher | undefined
    logger: Logger
    store: SessionStore
    accounts: AccountService | undefined
    mysqlUsers: MysqlUsersHooks | undefined
    rules: RulesService | undefined
    sync: SyncService | undefined
    graphs: DeviceGraphService | undefined
    devices: DeviceBridges | undefined
    metrics: MetricsServer | undefined
  }) {
    this.graphs = parts.graphs
    this.#config = parts.config
    this.#limits = parts.limits
    this.#clock = parts.clock
    this.#version = parts.version
    this.metrics = parts.metrics
    this.accounts = parts.accounts
    this.mysqlUsers = parts.mysqlUsers
    this.rules = parts.rules
    this.sync = parts.sync
    this.#devices = parts.devices
    this.bridges = parts.devices?.service
    this.broker = parts.broker
    this.listeners = parts.listeners
    this.#connections = parts.connections
    this.#deadlines = parts.deadlines
    this.#sys = parts.sys
    this.#logger = parts.logger
    this.store = parts.store
  }

  static async start(config: PerchConfig, deps: AppDeps): Promise<App> {
    const { clock, logger } = deps
    try {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o750 })
    } catch (e) {
      throw new ConfigError(`data directory ${config.dataDir}: ${describeError(e)}`)
    }
    const specs = config.listeners.map(listenerSpec)
    const deadlines = new DeadlineQueue(clock)
    const limits = connectionLimits(config)
    const accounts = config.auth.mode === 'accounts' ? await openAccounts(config, clock, logger) : undefined
    // The modules behind optional parts (mysql2, prom-client) load only when the config asks
    // for that part: each costs a few MB of resident memory on a board that never uses it.
    const mysqlUsers = config.auth.mode === 'mysql-users' ? (await import('./mysql-users.js')).openMysqlUsers(config, clock, logger) : undefined
    const { store, state } = openSessionStore(config, clock, logger)
    const broker = new Broker({
      hooks: accounts?.hooks ?? mysqlUsers ?? buildHooks(config),
      store,
      clock,
      deadlines,
      logger,
      limits: {
        maxInflight: config.limits.maxInflight,
        maxQueuedMessages: config.limits.maxQueuedMessages,
        maxQueuedBytes: config.limits.maxQueuedBytes,
        maxSessionExpiry: config.limits.maxSessionExpiry,
        maxQueuedMessagesTotal: config.limits.maxQueuedMessagesTotal,
        maxQueuedBytesTotal: config.limits.maxQueuedBytesTotal,
      },
    })
    const restored = broker.restore(state)
    accounts?.attach(broker)
    if (restored.sessions > 0 || restored.retained > 0 || restored.expired > 0) logger.info('sessions.restored', restored)
    broker.events.on((e) => {
      if (e.type === 'client.disconnected') logger.info('client.disconnected', { clientId: e.client.clientId, reason: e.reason })
      else if (e.type === 'session.expired') logger.info('session.expired', { clientId: e.clientId })
    })
    const services: TransportServices = {
      broker,
      clock,
      logger,
      limits,
      flusher: new ImmediateFlusher(),
      newClientId: () => `perch-${randomBytes(9).toString('base64url')}`,
    }
    const connections = new ConnectionSet(services)
    const listeners: RunningListener[] = []
    // What started so far is stopped again when a later part fails.
    const abort = async (e: unknown): Promise<never> => {
      await Promise.all(listeners.map((l) => l.close()))
      accounts?.dispose()
      mysqlUsers?.dispose()
      broker.dispose()
      deadlines.dispose()
      store.close()
      throw e
    }
    try {
      for (const spec of specs) listeners.push(await listen(spec, connections))
    } catch (e) {
      await abort(new ConfigError(`cannot listen: ${describeError(e)}`))
    }
    let rules: RulesService | undefined
    try {
      rules = config.rules.enabled ? await startRules(config, broker, clock, logger) : undefined
    } catch (e) {
      await abort(e)
    }
    const graphsPart = await openGraphs(config, broker, rules, clock, logger)
    const graphs = graphsPart.service
    let sync: SyncService | undefined
    try {
      sync = config.sync === undefined ? undefined : (await import('./sync-service.js')).SyncService.start(config.sync, config.dataDir, clock, logger)
    } catch (e) {
      await graphs?.dispose()
      await rules?.dispose()
      await abort(e)
    }
    // Sensors are not worth failing the gateway for: a broken device file or bridge is logged and skipped.
    let devices: DeviceBridges | undefined
    try {
      devices = await DeviceBridges.start(config, broker, clock, logger)
    } catch (e) {
      logger.error('bridges.start-failed', { error: describeError(e) })
    }
    const bridges = devices?.service
    const sys = startSys(config, { broker, clock, version: deps.version, sync, bridges })
    let metrics: MetricsServer | undefined
    if (config.http !== undefined) {
      try {
        const sources = { broker, sync, bridges, rules, graphs, routes: devicesRoutes(graphsPart, broker), notReady: () => (listeners.length > 0 ? undefined : 'no listeners') }
        const { MetricsServer } = await import('./metrics.js')
        metrics = await MetricsServer.start(config.http, sources, logger)
      } catch (e) {
        sys?.dispose()
        await devices?.dispose()
        await sync?.dispose()
        await graphs?.dispose()
        await rules?.dispose()
        await abort(e)
      }
    }
    logger.info('perch.started', {
      version: deps.version,
      pid: process.pid,
      dataDir: config.dataDir,
      persistence: config.persistence.mode,
      auth: broker.hooks.name,
      listeners: listeners.map((l) => ({ name: l.spec.name, kind: l.spec.kind, host: l.spec.host, port: l.port })),
    })
    const app = new App({
      config,
      limits,
      clock,
      version: deps.version,
      broker,
      listeners,
      connections,
      deadlines,
      sys,
      logger,
      store,
      accounts,
      mysqlUsers,
      rules,
      sync,
      graphs,
      devices,
      metrics,
    })
    app.#setLogLevel = deps.setLogLevel
    app.#status = `listening on ${listeners.map((l) => `${l.spec.name}:${l.port}`).join(', ')}`
    app.#notifier = new SystemdNotifier({ env: process.env, clock, logger, pid: process.pid })
    app.#notifier.start()
    await app.#notifier.ready(app.#status)
    return app
  }

  /**
   * Takes over a re-read config without closing a client connection (planReload names the live
   * keys), and re-reads the rules store and the devices directory even when the config is the
   * same. A config that failed to load changes nothing. Calls queue; systemd sees each one as
   * RELOADING=1 ... READY=1.
   */
  reload(next: PerchConfig | ConfigError): Promise<Result<ReloadReport, PerchError>> {
    const run = this.#reloading.then(() => this.#reload(next))
    this.#reloading = run.catch(() => undefined)
    return run
  }

  async #reload(next: PerchConfig | ConfigError): Promise<Result<ReloadReport, PerchError>> {
    if (this.#stopping !== undefined) return err(new PerchError('ESTOPPING', 'perch is stopping'))
    await this.#notifier?.reloading()
    try {
      if (next instanceof ConfigError) {
        this.#logger.error('perch.reload-failed', { error: next.message, hint: 'perch keeps running with the configuration it had' })
        return err(next)
      }
      return ok(await this.#apply(next))
    } finally {
      await this.#notifier?.ready(this.#status)
    }
  }

  async #apply(next: PerchConfig): Promise<ReloadReport> {
    const previous = this.#config
    const plan = planReload(previous, next, this.#setLogLevel !== undefined)
    const config = plan.config
    this.#config = config
    // Only the live limits differ between `config` and what runs, so the rest are rewritten unchanged.
    Object.assign(this.#limits, connectionLimits(config))
    if (config.log.level !== previous.log.level) this.#setLogLevel?.(config.log.level)
    if (config.sys.interval !== previous.sys.interval) {
      this.#sys?.dispose()
      this.#sys = startSys(config, { broker: this.broker, clock: this.#clock, version: this.#version, sync: this.sync, bridges: this.bridges })
    }
    const failed: { part: string; error: string }[] = []
    const attempt = async <T>(part: string, fn: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await fn()
      } catch (e) {
        failed.push({ part, error: describeError(e) })
        return undefined
      }
    }
    const { rules } = this
    const deviceBridges = this.#devices
    const running = rules === undefined ? undefined : await attempt('rules', () => rules.reload(ruleLimits(config)).then(() => rules.engine.rules.size))
    const devices = deviceBridges === undefined ? undefined : await attempt('devices', () => deviceBridges.reload(config))
    const report: ReloadReport = { applied: plan.applied, needsRestart: plan.needsRestart, devices, rules: running, failed }
    const fields = {
      applied: report.applied,
      needsRestart: report.needsRestart,
      devices: devices === undefined ? undefined : { ...devices, unchanged: devices.unchanged.length },
      rules: running,
      failed: failed.length > 0 ? failed : undefined,
      hint: report.needsRestart.length > 0 ? 'the keys in needsRestart take effect when perch restarts' : undefined,
    }
    if (failed.length > 0) this.#logger.error('perch.reload', fields)
    else if (report.needsRestart.length > 0) this.#logger.warn('perch.reload', fields)
    else this.#logger.info('perch.reload', fields)
    return report
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    // A reload under way finishes first; the ones queued behind it see #stopping and do nothing.
    await this.#reloading
    await this.#notifier?.stopping()
    this.#logger.info('perch.stopping', { clients: this.broker.liveCount })
    const closing = [this.metrics?.close(), ...this.listeners.map((l) => l.close())]
    this.#connections.shutdown()
    await Promise.all(closing)
    this.#sys?.dispose()
    await this.#devices?.dispose()
    await this.sync?.dispose()
    await this.graphs?.dispose()
    await this.rules?.dispose()
    this.accounts?.dispose()
    this.mysqlUsers?.dispose()
    this.broker.dispose()
    this.#deadlines.dispose()
    this.store.flush()
    this.store.close()
    this.#notifier?.dispose()
    this.#logger.info('perch.stopped', {})
  }
}

function startRules(config: PerchConfig, broker: Broker, clock: Clock, logger: Logger): Promise<RulesService> {
  const settings: RulesSettings = {
    dataDir: config.dataDir,
    rulesDir: config.rules.dir ?? fileURLToPath(new URL('../../rules', import.meta.url)),
    flushIntervalMs: 100,
    watchdogMs: config.rules.watchdog * 1000,
    ...ruleLimits(config),
  }
  return RulesService.start(broker, clock, logger, settings)
}

function ruleLimits(config: PerchConfig): RuleLimits {
  const r = config.rules
  return { failureLimit: r.failureLimit, coolOffMs: r.coolOff * 1000, reloadIntervalMs: r.reloadInterval * 1000 }
}

/** The $SYS publisher, started (none when sys.interval is 0), with the sync's and the bridges' entries. */
function startSys(
  config: PerchConfig,
  parts: { broker: Broker; clock: Clock; version: string; sync: SyncService | undefined; bridges: BridgeService | undefined },
): SysPublisher | undefined {
  const { broker, clock, version, sync, bridges } = parts
  if (config.sys.interval <= 0) return undefined
  const sys = new SysPublisher(broker, clock, config.sys.interval * 1000, version)
  if (sync !== undefined) sys.addSource(() => syncSysEntries(sync.status, clock.now()))
  if (bridges !== undefined) sys.addSource(() => bridges.sysEntries())
  sys.onPublish((entries) =>
    writeStatusFile(config.dataDir, { pid: process.pid, version, writtenAt: clock.now(), interval: config.sys.interval, entries: Object.fromEntries(entries) }),
  )
  sys.start()
  return sys
}
