import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { AccountService } from '../auth/accounts.js'
import type { JwtSettings } from '../auth/jwt.js'
import type { MysqlUsersHooks } from '../auth/mysql-users-hooks.js'
import { OpenHooks } from '../auth/open.js'
import { StaticRuleHooks } from '../auth/static-rules.js'
import type { BridgeService } from '../bridges/service.js'
import type { Clock } from '../core/clock.js'
import { DeadlineQueue } from '../core/deadlines.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { Broker } from '../mqtt/broker/broker.js'
import type { BrokerHooks } from '../mqtt/broker/hooks.js'
import { SysPublisher } from '../mqtt/broker/sys.js'
import type { SessionStore } from '../mqtt/session/store.js'
import type { ConnectionLimits, TransportServices } from '../mqtt/transport/context.js'
import { ImmediateFlusher } from '../mqtt/transport/flusher.js'
import { ConnectionSet, type ListenerSpec, listen, type RunningListener } from '../mqtt/transport/listeners.js'
import { RulesService } from '../scripting/engine/rules-service.js'
import { startBridges } from './bridges.js'
import type { ListenerConfig, PerchConfig } from './config.js'
import { MetricsServer } from './metrics.js'
import { openMysqlUsers } from './mysql-users.js'
import { SystemdNotifier } from './notify.js'
import { writeStatusFile } from './status-file.js'
import { openSessionStore } from './store.js'
import { SyncService } from './sync-service.js'
import { syncSysEntries } from './sync-sys.js'

export interface AppDeps {
  readonly clock: Clock
  readonly logger: Logger
  readonly version: string
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
  readonly #sys: SysPublisher | undefined
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
  /** The sensor bridges, unless devices.enabled is false. */
  readonly bridges: BridgeService | undefined
  /** The /metrics and /healthz endpoint, when http is configured. */
  readonly metrics: MetricsServer | undefined
  #stopping: Promise<void> | undefined
  #notifier: SystemdNotifier | undefined

  private constructor(parts: {
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
    bridges: BridgeService | undefined
    metrics: MetricsServer | undefined
  }) {
    this.metrics = parts.metrics
    this.accounts = parts.accounts
    this.mysqlUsers = parts.mysqlUsers
    this.rules = parts.rules
    this.sync = parts.sync
    this.bridges = parts.bridges
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
    const mysqlUsers = config.auth.mode === 'mysql-users' ? openMysqlUsers(config, clock, logger) : undefined
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
    let sync: SyncService | undefined
    try {
      sync = config.sync === undefined ? undefined : SyncService.start(config.sync, config.dataDir, clock, logger)
    } catch (e) {
      await rules?.dispose()
      await abort(e)
    }
    // Sensors are not worth failing the gateway for: a broken device file or bridge is logged and skipped.
    let bridges: BridgeService | undefined
    try {
      bridges = await startBridges(config, broker, clock, logger)
    } catch (e) {
      logger.error('bridges.start-failed', { error: describeError(e) })
    }
    const sys = config.sys.interval > 0 ? new SysPublisher(broker, clock, config.sys.interval * 1000, deps.version) : undefined
    if (sync !== undefined) sys?.addSource(() => syncSysEntries(sync.status, clock.now()))
    if (bridges !== undefined) sys?.addSource(() => bridges.sysEntries())
    sys?.onPublish((entries) =>
      writeStatusFile(config.dataDir, { pid: process.pid, version: deps.version, writtenAt: clock.now(), interval: config.sys.interval, entries: Object.fromEntries(entries) }),
    )
    sys?.start()
    let metrics: MetricsServer | undefined
    if (config.http !== undefined) {
      const sources = { broker, sync, bridges, rules, notReady: () => (listeners.length > 0 ? undefined : 'no listeners') }
      try {
        metrics = await MetricsServer.start(config.http, sources, logger)
      } catch (e) {
        sys?.dispose()
        await bridges?.dispose()
        await sync?.dispose()
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
    const app = new App({ broker, listeners, connections, deadlines, sys, logger, store, accounts, mysqlUsers, rules, sync, bridges, metrics })
    app.#notifier = new SystemdNotifier({ env: process.env, clock, logger, pid: process.pid })
    app.#notifier.start()
    await app.#notifier.ready(`listening on ${listeners.map((l) => `${l.spec.name}:${l.port}`).join(', ')}`)
    return app
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    await this.#notifier?.stopping()
    this.#logger.info('perch.stopping', { clients: this.broker.liveCount })
    const closing = [this.metrics?.close(), ...this.listeners.map((l) => l.close())]
    this.#connections.shutdown()
    await Promise.all(closing)
    this.#sys?.dispose()
    await this.bridges?.dispose()
    await this.sync?.dispose()
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
  const r = config.rules
  return RulesService.start(broker, clock, logger, {
    dataDir: config.dataDir,
    rulesDir: r.dir ?? fileURLToPath(new URL('../../rules', import.meta.url)),
    failureLimit: r.failureLimit,
    coolOffMs: r.coolOff * 1000,
    flushIntervalMs: 100,
    reloadIntervalMs: r.reloadInterval * 1000,
  })
}

async function openAccounts(config: PerchConfig, clock: Clock, logger: Logger): Promise<AccountService> {
  const a = config.auth
  const r = a.rateLimit
  const opened = await AccountService.open(
    {
      dataDir: config.dataDir,
      jwt: jwtSettings(config),
      byAddress: { maxFailures: r.addressFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      byAccount: { maxFailures: r.accountFailures, windowMs: r.window * 1000, blockMs: r.block * 1000 },
      reloadIntervalMs: a.reloadInterval * 1000,
      limits: { maxTopicLength: config.limits.maxTopicLength, maxTopicLevels: config.limits.maxTopicLevels },
    },
    clock,
    logger,
  )
  if (!opened.ok) throw new ConfigError(`accounts: ${opened.error.message}`)
  return opened.value
}

function jwtSettings(config: PerchConfig): JwtSettings | undefined {
  const j = config.auth.jwt
  if (j === undefined) return undefined
  const secret = j.secretFile === undefined ? j.secret : readText(j.secretFile, 'auth.jwt.secretFile').trim()
  if (secret !== undefined && Buffer.byteLength(secret) < 16) throw new ConfigError('auth.jwt: the secret must have at least 16 bytes')
  const publicKey = j.publicKeyFile === undefined ? undefined : readText(j.publicKeyFile, 'auth.jwt.publicKeyFile')
  return { secret, publicKey, accountClaim: j.accountClaim, issuer: j.issuer, audience: j.audience, clockToleranceSeconds: j.clockTolerance }
}

function readText(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (e) {
    throw new ConfigError(`${key} ${path}: ${describeError(e)}`)
  }
}

function buildHooks(config: PerchConfig): BrokerHooks {
  if (config.auth.mode === 'open') return new OpenHooks()
  return new StaticRuleHooks({
    allowAnonymous: config.auth.allowAnonymous,
    defaultAction: config.auth.defaultAction,
    rules: config.auth.rules.map((r) => ({ action: r.action, access: r.access, topic: r.topic, username: r.username })),
  })
}

function connectionLimits(config: PerchConfig): ConnectionLimits {
  const l = config.limits
  return {
    maxPacketSize: l.maxPacketSize,
    connectTimeoutMs: l.connectTimeout * 1000,
    maxKeepalive: l.maxKeepalive,
    receiveMaximum: l.receiveMaximum,
    topicAliasMaximum: l.topicAliasMaximum,
    maxTopicLength: l.maxTopicLength,
    maxTopicLevels: l.maxTopicLevels,
    maxWriteBuffer: l.maxWriteBuffer,
    slowConsumerPolicy: l.slowConsumerPolicy,
    maxConnections: l.maxConnections,
  }
}

function listenerSpec(l: ListenerConfig): ListenerSpec {
  return {
    name: l.name ?? `${l.kind}-${l.port}`,
    kind: l.kind,
    host: l.host ?? '127.0.0.1',
    port: l.port,
    path: l.path ?? '/mqtt',
    tls:
      l.kind === 'tls' && l.cert !== undefined && l.key !== undefined
        ? {
            cert: readPem(l.cert, 'cert'),
            key: readPem(l.key, 'key'),
            ca: l.ca === undefined ? undefined : readPem(l.ca, 'ca'),
            requireClientCert: l.requireClientCert === true,
          }
        : undefined,
  }
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (e) {
    throw new ConfigError(`tls ${what} file ${path}: ${describeError(e)}`)
  }
}
