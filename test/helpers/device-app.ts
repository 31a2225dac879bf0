// A device application as the IoTtalk reference writes one, in MQTT.js: it registers over HTTP,
// goes online on its uplink (retained, with a will that says offline), and follows the signals on
// its downlink: CONNECT of an input feature starts sending readings on the topic given, CONNECT
// of an output feature subscribes to it, DISCONNECT stops either; each signal is answered.
import mqtt, { type MqttClient } from 'mqtt'
import { until } from './clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Signal {
  command: string
  id: string
  idf?: string
  odf?: string
  topic: string
}

export interface Registered {
  state: string
  id: string
  rev: string
  ctrl_chans: [string, string]
  topics: { idf: Record<string, string>; odf: Record<string, string> }
  presence_topic: string
}

export interface HttpAnswer {
  status: number
  body: Record<string, unknown>
}

/** An HTTP request to perch's /devices API with Basic credentials (or a bearer token). */
export async function devicesRequest(
  port: number,
  method: string,
  path: string,
  options: { user?: string; password?: string; token?: string; body?: unknown; rawBody?: string; contentType?: string } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = { 'content-type': options.contentType ?? 'application/json' }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  else if (options.user !== undefined) headers.authorization = `Basic ${Buffer.from(`${options.user}:${options.password ?? ''}`).toString('base64')}`
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
  const text = await res.text()
  let parsed: Record<string, unknown>
  try {
    parsed = JSON.parse(text) as Record<string, unknown>
  } catch {
    parsed = { text }
  }
  return { status: res.status, body: parsed }
}

export class DeviceApp {
  readonly id: string
  readonly registration: Registered
  readonly signals: Signal[] = []
  /** Data received on output features: [feature, payload]. */
  readonly received: [string, string][] = []
  /** Readings sent on input features. */
  sent = 0
  client: MqttClient | undefined
  readonly #url: string
  readonly #credentials: { username: string; password: string }
  readonly #senders = new Map<string, NodeJS.Timeout>()
  readonly #outputs = new Map<string, string>()
  #reading: () => number

  private constructor(id: string, registration: Registered, url: string, credentials: { username: string; password: string }, reading: () => number) {
    this.id = id
    this.registration = registration
    this.#url = url
    this.#credentials = credentials
    this.#reading = reading
  }

  /** Registers over HTTP and connects; `reading` makes each value an input feature sends. */
  static async start(
    t: Teardown,
    where: { url: string; httpPort: number },
    credentials: { username: string; password: string },
    id: string,
    body: Record<string, unknown>,
    reading: () => number = () => 0,
  ): Promise<DeviceApp> {
    const r = await devicesRequest(where.httpPort, 'PUT', `/devices/${id}`, { user: credentials.username, password: credentials.password, body })
    if (r.status !== 200) throw new Error(`registration of ${id} failed: ${r.status} ${JSON.stringify(r.body)}`)
    const app = new DeviceApp(id, r.body as unknown as Registered, where.url, credentials, reading)
    t.teardown(() => app.kill())
    await app.connect()
    return app
  }

  get uplink(): string {
    return this.registration.ctrl_chans[0]
  }

  get downlink(): string {
    return this.registration.ctrl_chans[1]
  }

  /** Connects with a will that marks the device offline, then goes online and listens for signals. */
  async connect(): Promise<void> {
    const { rev } = this.registration
    const client = mqtt.connect(this.#url, {
      ...this.#credentials,
      protocolVersion: 5,
      reconnectPeriod: 0,
      will: { topic: this.uplink, payload: Buffer.from(JSON.stringify({ state: 'offline', rev })), qos: 1, retain: true },
    })
    this.client = client
    client.on('error', () => {})
    client.on('message', (topic, payload) => this.#message(topic, payload.toString()))
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
    })
    await client.subscribeAsync(this.downlink, { qos: 2 })
    await client.publishAsync(this.uplink, JSON.stringify({ state: 'online', rev }), { qos: 1, retain: true })
  }

  /** The connection dies without a DISCONNECT (the will fires). */
  kill(): void {
    for (const timer of this.#senders.values()) clearInterval(timer)
    this.#senders.clear()
    this.#outputs.clear()
    this.client?.stream.destroy()
    this.client?.end(true)
    this.client = undefined
  }

  async waitFor(what: string, cond: (app: DeviceApp) => boolean, ms = 10_000): Promise<void> {
    await until(() => cond(this), ms, `${this.registration.id}: ${what}`)
  }

  sending(feature: string): boolean {
    return this.#senders.has(feature)
  }

  #message(topic: string, payload: string): void {
    const client = this.client
    if (client === undefined) return
    if (topic !== this.downlink) {
      const feature = this.#outputs.get(topic)
      if (feature !== undefined) this.received.push([feature, payload])
      return
    }
    const signal = JSON.parse(payload) as Signal
    this.signals.push(signal)
    const feature = signal.idf ?? signal.odf ?? ''
    if (signal.command === 'CONNECT' && signal.idf !== undefined) {
      clearInterval(this.#senders.get(feature))
      this.#senders.set(
        feature,
        setInterval(() => {
          this.sent++
          client.publish(signal.topic, String(this.#reading()))
        }, 20),
      )
    } else if (signal.command === 'CONNECT' && signal.odf !== undefined) {
      this.#outputs.set(signal.topic, feature)
      client.subscribe(signal.topic, { qos: 0 })
    } else if (signal.command === 'DISCONNECT') {
      clearInterval(this.#senders.get(feature))
      this.#senders.delete(feature)
      if (signal.odf !== undefined) {
        this.#outputs.delete(signal.topic)
        client.unsubscribe(signal.topic)
      }
    }
    client.publish(this.uplink, JSON.stringify({ ...signal, state: 'ok' }), { qos: 1 })
  }
}
