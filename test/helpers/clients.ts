import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Received {
  topic: string
  payload: Buffer
  packet: IPublishPacket
}

/** Starts an MQTT.js client, ended at teardown; `connack` settles with the CONNECT outcome. */
function start(t: Teardown, url: string, options: IClientOptions): { client: MqttClient; connack: Promise<IConnackPacket> } {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  t.teardown(() => new Promise<void>((resolve) => client.end(true, {}, () => resolve())))
  const connack = new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', (ack) => resolve(ack))
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  return { client, connack }
}

/** An MQTT.js client that is connected when the promise resolves and ended at teardown. */
export async function connectClient(t: Teardown, url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const { client, connack } = start(t, url, options)
  await connack
  return client
}

/**
 * An MQTT.js client plus the CONNACK it got and every message it receives: the collector is
 * attached before CONNECT goes out, so messages queued for a resumed session are not missed.
 */
export async function connectWithAck(
  t: Teardown,
  url: string,
  options: IClientOptions = {},
): Promise<{ client: MqttClient; connack: IConnackPacket; messages: Received[] }> {
  const { client, connack } = start(t, url, options)
  const messages = collect(client)
  return { client, connack: await connack, messages }
}

/** Collects every message a client receives, in order. */
export function collect(client: MqttClient): Received[] {
  const out: Received[] = []
  client.on('message', (topic, payload, packet) => out.push({ topic, payload, packet }))
  return out
}

/** Resolves once the client's stream has closed. */
export function closedPromise(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.stream?.destroyed === true) resolve()
    else client.once('close', () => resolve())
  })
}

let healthySeq = 0

/**
 * A subscriber and a publisher that stay connected while bad clients come and go; `check`
 * proves the broker still routes for them (a fresh message published and received).
 */
export async function healthyPair(t: Teardown, url: string): Promise<{ check(): Promise<void>; sub: MqttClient; pub: MqttClient }> {
  const tag = `healthy-${process.pid}-${++healthySeq}`
  const { client: sub, messages } = await connectWithAck(t, url, { protocolVersion: 5, clientId: `${tag}-sub` })
  const { client: pub } = await connectWithAck(t, url, { protocolVersion: 4, clientId: `${tag}-pub` })
  await sub.subscribeAsync(`${tag}/#`, { qos: 1 })
  let n = 0
  return {
    sub,
    pub,
    async check() {
      const payload = `alive-${++n}`
      await pub.publishAsync(`${tag}/ping`, payload, { qos: 1 })
      await until(() => messages.some((m) => m.payload.toString() === payload), 5000, `healthy client to receive ${payload}`)
    },
  }
}

/** Waits until `cond` holds, polling; fails after `ms`. Not a timing assertion, a bound. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
