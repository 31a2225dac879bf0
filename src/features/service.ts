import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import type { Disposable } from '../core/scope.js'
import type { Broker } from '../mqtt/broker/broker.js'
import { accountClient, type LocalClient, systemClient } from '../mqtt/broker/local-client.js'
import type { Message } from '../mqtt/session/message.js'
import { GRAPH_NAME } from './compile.js'
import { GraphApi, type GraphSandbox } from './graph-api.js'
import { describeDevice, type FeatureKind } from './model.js'
import { DeviceRegistry } from './registry.js'
import { Signaller } from './signals.js'
import type { FeatureStore } from './store.js'

/**
 * Registered devices and their graphs on the broker: the request topics
 * (`/A/devices/put/ID`, `/A/devices/delete/ID`, `/A/devices/list`, `/A/graph/NAME`,
 * `/A/graphs/list`, answered on `<topic>/result`), the devices' uplinks, and the control
 * signals. Requests run one at a time, in the order they arrived.
 */
export class DeviceGraphService {
  readonly registry: DeviceRegistry
  readonly graphs: GraphApi
  readonly store: FeatureStore
  readonly #local: LocalClient
  readonly #broker: Broker
  readonly #logger: Logger
  readonly #subscriptions: Disposable[] = []
  readonly #signals: Signaller
  #queue: Promise<void> = Promise.resolve()
  #closed = false

  private constructor(broker: Broker, store: FeatureStore, sandbox: GraphSandbox | undefined, clock: Clock, logger: Logger) {
    this.#broker = broker
    this.store = store
    this.#logger = logger
    this.#local = broker.openLocal(systemClient('devices'))
    const now = (): number => clock.now()
    const signals = new Signaller(store, (topic, body) => this.#local.publish(topic, JSON.stringify(body), { qos: 2 }), clock, logger)
    this.#signals = signals
    this.graphs = new GraphApi({ store, sandbox, signals, rights: (account, kind, topic) => this.#rights(account, kind, topic), now, logger })
    this.registry = new DeviceRegistry({
      store,
      signals,
      now,
      logger,
      publishState: (topic, body) => this.#local.publish(topic, body, { qos: 1, retain: true }),
      linksDropped: (links) => this.graphs.refresh(links),
    })
  }

  /** Marks every device offline, rebuilds the stored graphs and starts listening. */
  static async start(broker: Broker, store: FeatureStore, sandbox: GraphSandbox | undefined, clock: Clock, logger: Logger): Promise<DeviceGraphService> {
    const service = new DeviceGraphService(broker, store, sandbox, clock, logger)
    service.registry.startOffline()
    await service.graphs.restore()
    service.#listen()
    return service
  }

  /** Runs `fn` after every request before it; HTTP requests queue here too. */
  serialize<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.#queue.then(fn)
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  /** Stops taking requests, lets the ones under way finish (before the sandbox stops), and closes the store. */
  async dispose(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const s of this.#subscriptions.splice(0)) s.dispose()
    await this.#queue
    this.#signals.dispose()
    this.#local.dispose()
    this.store.dispose()
  }

  #listen(): void {
    // Over MQTT a body's "id" is the request's id (echoed); the device id is in the topic.
    this.#on('/+/devices/put/+', ([account, , , id], m) =>
      this.#answered(m, async (body) => this.#result(await this.registry.register(account, id, withoutId(body))), 'device'),
    )
    this.#on('/+/devices/delete/+', ([account, , , id], m) => this.#answered(m, async () => this.#result(await this.registry.remove(account, id)), 'device'))
    this.#on('/+/devices/list', ([account], m) => this.#answered(m, () => ({ state: 'ok', devices: this.store.devices(account).map(describeDevice) }), 'device'))
    this.#on('/+/devices/+/ctrl/up', ([account, , id], m) => {
      void this.serialize(() => this.registry.uplink(account, id, m.payload.toString('utf8')))
    })
    this.#on('/+/graph/+', ([account, , graph], m) =>
      this.#answered(
        m,
        async (body) => {
          if (!GRAPH_NAME.test(graph)) return { state: 'error', error: `graph name "${graph}": letters, digits, '_' and '-', at most 48` }
          if (typeof body !== 'object' || body === null || Array.isArray(body)) return { state: 'error', error: 'a graph request is a JSON object with "op"' }
          return this.graphs.handle(account, graph, body as Record<string, unknown>)
        },
        'graph',
      ),
    )
    this.#on('/+/graphs/list', ([account], m) =>
      this.#answered(m, () => ({ state: 'ok', graphs: this.store.graphs(account).map((g) => this.graphs.list(account, g.name)) }), 'graph'),
    )
  }

  /** Subscribes a filter; the handler gets the topic's levels after the leading slash. */
  #on(filter: string, fn: (levels: [string, string, string, string], m: Message) => void): void {
    const sub = this.#local.subscribe(filter, (m) => {
      const [account = '', a = '', b = '', c = ''] = m.topic.slice(1).split('/')
      fn([account, a, b, c], m)
    })
    if (sub !== undefined) this.#subscriptions.push(sub)
  }

  /** Runs a request (its payload read as JSON once: undefined when it is not) and publishes the answer on <topic>/result. */
  #answered(m: Message, fn: (body: unknown) => Promise<Record<string, unknown>> | Record<string, unknown>, what: string): void {
    const body = parseJson(m)
    const requestId = requestIdOf(body)
    void this.serialize(async () => {
      let answer: Record<string, unknown>
      try {
        answer = await fn(body)
      } catch (e) {
        this.#logger.error(`${what}.request-failed`, { topic: m.topic, error: e instanceof Error ? e.message : String(e) })
        answer = { state: 'error', error: 'internal error' }
      }
      if (this.#closed) return
      this.#local.publish(`${m.topic}/result`, JSON.stringify(requestId === undefined ? answer : { ...answer, id: requestId }), { qos: 1 })
    })
  }

  #result(r: { ok: true; value: Record<string, unknown> } | { ok: false; error: { status: number; error: string } }): Record<string, unknown> {
    return r.ok ? r.value : { state: 'error', status: r.error.status, error: r.error.error }
  }

  #rights(account: string, kind: FeatureKind, topic: string): string | undefined {
    const hooks = this.#broker.hooks
    const client = accountClient(account, 'graphs')
    if (kind === 'odf') return hooks.authorizePublish(client, topic) ? undefined : 'no right to publish there'
    const decision = hooks.authorizeSubscribe(client, topic)
    return decision === 'deny' || (decision === 'filtered' && !hooks.canRead(client, topic)) ? 'no right to read it' : undefined
  }
}

function parseJson(m: Message): unknown {
  try {
    return JSON.parse(m.payload.toString('utf8'))
  } catch {
    return undefined
  }
}

function withoutId(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body
  const { id: _, ...rest } = body as Record<string, unknown>
  return rest
}

/** The `id` of a JSON request, echoed in its answer (in place of any `id` of its own). */
function requestIdOf(body: unknown): unknown {
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as { id?: unknown }).id : undefined
}
