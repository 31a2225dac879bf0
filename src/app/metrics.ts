// The local HTTP endpoint: Prometheus text exposition on /metrics and a liveness answer on
// /healthz. Every value is read from the broker, the sync and the bridges at scrape time, into
// a registry owned by this server (never prom-client's global one).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { BridgeService } from '../bridges/service.js'
import { ConfigError, describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { DeviceGraphService } from '../features/index.js'
import type { Broker } from '../mqtt/broker/broker.js'
import type { RulesService } from '../scripting/engine/rules-service.js'
import { type HttpConfig, isLoopback } from './config.js'
import type { SyncService } from './sync-service.js'

export interface MetricsSources {
  readonly broker: Broker
  readonly sync?: SyncService | undefined
  readonly bridges?: BridgeService | undefined
  readonly rules?: RulesService | undefined
  readonly graphs?: DeviceGraphService | undefined
  /** Why perch is not ready to serve (no listeners, ...); undefined when it is. */
  readonly notReady?: (() => string | undefined) | undefined
  /** More paths on the same port (the /devices API); false when the path is not its own. */
  readonly routes?: ((req: IncomingMessage, res: ServerResponse, path: string) => Promise<boolean>) | undefined
}

type Labels = Record<string, string>
type Sample = readonly [Labels, number]

export class MetricsServer {
  readonly #server: Server
  readonly #register: Registry
  readonly #sources: MetricsSources
  #stopping = false
  #closed: Promise<void> | undefined
  readonly host: string
  readonly port: number

  private constructor(server: Server, register: Registry, sources: MetricsSources, host: string, port: number) {
    this.#server = server
    this.#register = register
    this.#sources = sources
    this.host = host
    this.port = port
  }

  /** Listens on config.host:config.port; a port in use is a start-up error. */
  static async start(config: HttpConfig, sources: MetricsSources, logger: Logger): Promise<MetricsServer> {
    const register = new Registry()
    collectDefaultMetrics({ register })
    defineMetrics(register, sources)
    let self: MetricsServer | undefined
    const server = createServer((req, res) => {
      if (self === undefined) return reply(res, 503, 'text/plain', 'starting\n')
      self.#handle(req, res).catch((e: unknown) => {
        logger.error('http.failed', { path: req.url, error: describeError(e) })
        if (!res.headersSent) reply(res, 500, 'text/plain', 'internal error\n')
        else res.destroy()
      })
    })
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(config.port, config.host, () => {
          server.off('error', reject)
          resolve()
        })
      })
    } catch (e) {
      throw new ConfigError(`http: cannot listen on ${config.host}:${config.port}: ${describeError(e)}`)
    }
    const port = (server.address() as AddressInfo).port
    self = new MetricsServer(server, register, sources, config.host, port)
    const paths = sources.routes === undefined ? ['/metrics', '/healthz'] : ['/metrics', '/healthz', '/devices']
    logger.info('http.listening', { host: config.host, port, paths })
    if (!isLoopback(config.host)) logger.warn('http.exposed', { host: config.host, hint: '/metrics has no authentication and /devices takes passwords over plain HTTP; firewall it' })
    return self
  }

  /** 200 and no reason when healthy; 503 and the reason otherwise. */
  health(): { status: 200 | 503; reason: string | undefined } {
    const reason = this.#stopping ? 'stopping' : this.#sources.notReady?.()
    return reason === undefined ? { status: 200, reason: undefined } : { status: 503, reason }
  }

  /** Answers 503 to requests still in flight, stops accepting and closes idle keep-alive sockets. */
  close(): Promise<void> {
    this.#stopping = true
    this.#closed ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      this.#server.closeIdleConnections()
    })
    return this.#closed
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (this.#sources.routes !== undefined && (await this.#sources.routes(req, res, path))) return
    if (path !== '/metrics' && path !== '/healthz') return reply(res, 404, 'text/plain', 'not found: try /metrics, /healthz or /devices\n')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      return reply(res, 405, 'text/plain', 'method not allowed\n')
    }
    if (path === '/healthz') {
      // One turn of the event loop: the answer comes after whatever I/O was already waiting.
      await new Promise<void>((resolve) => setImmediate(resolve))
      const h = this.health()
      const body = h.reason === undefined ? { status: 'ok' } : { status: 'unavailable', reason: h.reason }
      return reply(res, h.status, 'application/json', `${JSON.stringify(body)}\n`)
    }
    const text = await this.#register.metrics()
    reply(res, 200, this.#register.contentType, text)
  }
}

function reply(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

function gauge(register: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [register],
    collect() {
      this.set(read())
    },
  })
}

function gauges(register: Registry, name: string, help: string, labelNames: readonly string[], read: () => readonly Sample[]): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [register],
    collect() {
      this.reset()
      for (const [labels, value] of read()) this.set(labels, value)
    },
  })
}

/** A counter whose total is kept elsewhere (broker stats) and copied in at scrape time. */
function counter(register: Registry, name: string, help: string, labelNames: readonly string[], read: () => readonly Sample[]): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [register],
    collect() {
      this.reset()
      for (const [labels, value] of read()) this.inc(labels, value)
    },
  })
}

const one = (value: number): readonly Sample[] => [[{}, value]]

function defineMetrics(register: Registry, sources: MetricsSources): void {
  const b = sources.broker
  const s = b.stats
  gauge(register, 'perch_clients_connected', 'Clients connected now.', () => b.liveCount)
  gauge(register, 'perch_clients_maximum', 'Most clients connected at once since start.', () => s.connectionsMax)
  gauge(register, 'perch_sessions', 'Sessions kept, connected or not.', () => b.sessions.size)
  gauge(register, 'perch_subscriptions', 'Subscriptions of all sessions.', () => b.router.subscriptionCount)
  gauge(register, 'perch_retained_messages', 'Retained messages kept.', () => b.router.retained.size)
  gauge(register, 'perch_queued_messages', 'Messages queued for sessions.', () => b.budget.messages)
  gauge(register, 'perch_queued_bytes', 'Bytes of the messages queued for sessions.', () => b.budget.bytes)
  gauge(register, 'perch_start_time_seconds', 'When the broker started (Unix seconds).', () => s.startedAt / 1000)
  counter(register, 'perch_connections_total', 'Connections accepted.', [], () => one(s.connectionsTotal))
  counter(register, 'perch_messages_received_total', 'PUBLISH messages received.', [], () => one(s.messagesReceived))
  counter(register, 'perch_messages_sent_total', 'PUBLISH messages sent.', [], () => one(s.messagesSent))
  counter(register, 'perch_bytes_received_total', 'Bytes received.', [], () => one(s.bytesReceived))
  counter(register, 'perch_bytes_sent_total', 'Bytes sent.', [], () => one(s.bytesSent))
  counter(register, 'perch_messages_dropped_total', 'Messages dropped, by reason.', ['reason'], () => [
    [{ reason: 'queue-full' }, s.droppedQueueFull],
    [{ reason: 'slow-consumer' }, s.droppedSlowConsumer],
    [{ reason: 'expired' }, s.droppedExpired],
  ])
  counter(register, 'perch_publish_denied_total', 'PUBLISH refused by the ACL.', [], () => one(s.publishDenied))
  counter(register, 'perch_subscribe_denied_total', 'Subscriptions refused by the ACL.', [], () => one(s.subscribeDenied))
  counter(register, 'perch_connections_refused_total', 'Connections refused, by reason.', ['reason'], () => [
    [{ reason: 'max-connections' }, s.refusedMaxConnections],
    [{ reason: 'auth' }, s.refusedAuth],
  ])
  counter(register, 'perch_disconnects_total', 'Connections closed by perch, by reason.', ['reason'], () => [
    [{ reason: 'connect-timeout' }, s.connectTimeouts],
    [{ reason: 'keepalive-timeout' }, s.keepaliveTimeouts],
    [{ reason: 'slow-consumer' }, s.slowConsumerDisconnects],
  ])
  counter(register, 'perch_packets_too_large_total', 'Packets over the size limit.', [], () => one(s.packetsTooLarge))
  counter(register, 'perch_protocol_errors_total', 'Protocol errors.', [], () => one(s.protocolErrors))
  if (sources.sync !== undefined) defineSyncMetrics(register, sources.sync)
  if (sources.bridges !== undefined) defineBridgeMetrics(register, sources.bridges)
  if (sources.rules !== undefined) defineRuleMetrics(register, sources.rules)
  if (sources.graphs !== undefined) defineGraphMetrics(register, sources.graphs)
}

/** Registered devices (the IoTtalk model), read from their store at scrape time. */
function defineGraphMetrics(register: Registry, graphs: DeviceGraphService): void {
  const byAccount = (keys: readonly string[]): readonly Sample[] => {
    const counts = new Map<string, number>()
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1)
    return [...counts].map(([k, value]) => {
      const [account = '', presence] = k.split('\0')
      return [presence === undefined ? { account } : { account, presence }, value]
    })
  }
  gauges(register, 'perch_registered_devices', 'Registered devices, per account and presence.', ['account', 'presence'], () =>
    byAccount(graphs.store.devices().map((d) => `${d.account}\0${d.presence}`)),
  )
  gauges(register, 'perch_graph_links', 'Links of all graphs, per account.', ['account'], () => byAccount(graphs.store.links().map((l) => l.account)))
  counter(register, 'perch_presence_stale_total', 'Presence messages ignored because their rev was not the current one.', [], () =>
    one(graphs.registry.stats.stalePresence),
  )
}

function defineSyncMetrics(register: Registry, sync: SyncService): void {
  const none: readonly Sample[] = []
  gauges(register, 'perch_sync_up', 'Whether the last sync with the central database succeeded (1) or failed (0).', [], () =>
    sync.status === undefined || sync.status.state === 'starting' ? none : one(sync.status.state === 'ok' ? 1 : 0),
  )
  gauges(register, 'perch_sync_last_success_timestamp_seconds', 'When the last sync succeeded (Unix seconds).', [], () => {
    const at = sync.status?.lastOkAt
    return at === undefined ? none : one(at / 1000)
  })
  gauges(register, 'perch_sync_hwm', 'The central change counter this gateway has applied.', [], () => {
    const hwm = sync.status?.hwm
    return hwm === undefined ? none : one(hwm)
  })
  counter(register, 'perch_sync_errors_total', 'Failed sync attempts.', [], () => one(sync.status?.errors ?? 0))
}

function defineBridgeMetrics(register: Registry, bridges: BridgeService): void {
  const per = (read: (c: ReturnType<BridgeService['list']>[number]['counters']) => number) => (): readonly Sample[] =>
    bridges.list().map((d) => [{ device: d.config.name }, read(d.counters)])
  gauges(register, 'perch_device_up', 'Whether a device is online (1) or not (0).', ['device', 'kind'], () =>
    bridges.list().map((d) => [{ device: d.config.name, kind: d.config.kind }, d.state === 'online' ? 1 : 0]),
  )
  counter(register, 'perch_device_published_total', 'Messages a device published.', ['device'], per((c) => c.published))
  counter(register, 'perch_device_commands_total', 'Commands written to a device.', ['device'], per((c) => c.commands))
  counter(register, 'perch_device_rejected_total', 'Device input that was rejected.', ['device'], per((c) => c.rejected))
  counter(register, 'perch_device_disconnects_total', 'Times a device was lost.', ['device'], per((c) => c.disconnects))
  counter(register, 'perch_device_errors_total', 'Failed attempts to open a device.', ['device'], per((c) => c.errors))
}

/** Per account, summed over its rules, so the series stay as few as the accounts. */
function defineRuleMetrics(register: Registry, rules: RulesService): void {
  const per = (key: 'invocations' | 'errors' | 'dropped') => (): readonly Sample[] => {
    const sums = new Map<string, number>()
    for (const r of rules.engine.rules.values()) sums.set(r.account, (sums.get(r.account) ?? 0) + r.counters[key])
    return [...sums].map(([account, value]) => [{ account }, value])
  }
  gauges(register, 'perch_rules', 'Rules installed, per account.', ['account'], () => {
    const counts = new Map<string, number>()
    for (const r of rules.engine.rules.values()) counts.set(r.account, (counts.get(r.account) ?? 0) + 1)
    return [...counts].map(([account, value]) => [{ account }, value])
  })
  counter(register, 'perch_rule_invocations_total', 'Rule invocations, per account.', ['account'], per('invocations'))
  counter(register, 'perch_rule_errors_total', 'Failed rule invocations, per account.', ['account'], per('errors'))
  counter(register, 'perch_rule_dropped_total', 'Rule inputs dropped, per account.', ['account'], per('dropped'))
}
