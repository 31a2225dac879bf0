import { connect as netConnect, type Socket } from 'node:net'
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Received {
  topic: string
  payload: Buffer
  packet: IPublishPacket
}

/** An MQTT.js client that is connected when the promise resolves and ended at teardown. */
export async function connectClient(t: Teardown, url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  t.teardown(() => new Promise<void>((resolve) => client.end(true, {}, () => resolve())))
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  return client
}

/** Collects every message a client receives, in order. */
export function collect(client: MqttClient): Received[] {
  const out: Received[] = []
  client.on('message', (topic, payload, packet) => out.push({ topic, payload, packet }))
  return out
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

/** A raw TCP client for sending hand-made bytes and observing what comes back. */
export interface RawClient {
  socket: Socket
  received(): Buffer
  closed: Promise<void>
  isClosed(): boolean
  send(bytes: Buffer | number[]): void
}

export async function rawClient(t: Teardown, port: number): Promise<RawClient> {
  const socket = netConnect(port, '127.0.0.1')
  t.teardown(() => {
    socket.destroy()
  })
  const chunks: Buffer[] = []
  let isClosed = false
  socket.on('data', (c) => chunks.push(c))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      isClosed = true
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  return {
    socket,
    received: () => Buffer.concat(chunks),
    closed,
    isClosed: () => isClosed,
    send: (bytes) => {
      socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
    },
  }
}

/** A minimal v3.1.1 CONNECT packet for raw tests. */
export function connectBytes(clientId: string, version: 4 | 5 = 4, keepalive = 60): Buffer {
  const id = Buffer.from(clientId)
  const props = version === 5 ? [0] : []
  const body = [0, 4, 0x4d, 0x51, 0x54, 0x54, version, 0x02, keepalive >> 8, keepalive & 0xff, ...props, id.length >> 8, id.length & 0xff, ...id]
  return Buffer.from([0x10, body.length, ...body])
}
