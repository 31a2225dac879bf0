import { spawn } from 'node:child_process'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet'
import { type RawClient, type Received, rawClient, until } from './clients.js'

/**
 * Wire-level helpers for conformance tests: packets built with mqtt-packet (or by hand),
 * answers decoded incrementally, MQTT.js clients that expose their CONNACK, and the
 * mosquitto CLIs run as child processes with a hard timeout.
 */

interface Teardown {
  teardown(fn: () => unknown): void
}

export type Version = 3 | 4 | 5

export const PACKET = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const

/** Serializes a packet for the given protocol version. */
export function encode(packet: Packet, version: Version = 4): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version })
}

/** A variable byte integer (remaining length, property length). */
export function varint(n: number): number[] {
  const out: number[] = []
  let v = n
  do {
    let byte = v % 128
    v = Math.floor(v / 128)
    if (v > 0) byte |= 0x80
    out.push(byte)
  } while (v > 0)
  return out
}

/** A packet from a fixed-header byte and a body: the remaining length is computed. */
export function frame(first: number, body: Buffer | number[]): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body)
  return Buffer.concat([Buffer.from([first, ...varint(b.length)]), b])
}

/** A length-prefixed string from raw bytes (so invalid UTF-8 can be sent). */
export function str(bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
}

/** A PUBLISH built by hand; v5 gets an empty property block. */
export function rawPublish(topic: Buffer | string, payload: Buffer | string, opts: { version?: Version; qos?: number; id?: number; first?: number } = {}): Buffer {
  const qos = opts.qos ?? 0
  const parts: Buffer[] = [str(topic)]
  if (qos > 0) parts.push(Buffer.from([(opts.id ?? 1) >> 8, (opts.id ?? 1) & 0xff]))
  if (opts.version === 5) parts.push(Buffer.from([0]))
  parts.push(typeof payload === 'string' ? Buffer.from(payload) : payload)
  return frame(opts.first ?? 0x30 | (qos << 1), Buffer.concat(parts))
}

/**
 * A CONNECT written byte by byte, for what mqtt-packet refuses to generate (empty 3.x ids,
 * bad protocol names or levels, reserved flag bits). v5 (level 5) gets a property block.
 */
export function handConnect(o: {
  clientId: string | Buffer
  protocolName?: string | Buffer
  level?: number
  flags?: number
  keepalive?: number
  props?: number[]
  /** Bytes after the client id: will properties/topic/payload, username, password. */
  tail?: Buffer
}): Buffer {
  const level = o.level ?? 4
  const ka = o.keepalive ?? 60
  const props = level === 5 ? [...varint((o.props ?? []).length), ...(o.props ?? [])] : []
  return frame(
    0x10,
    Buffer.concat([str(o.protocolName ?? (level === 3 ? 'MQIsdp' : 'MQTT')), Buffer.from([level, o.flags ?? 0x02, ka >> 8, ka & 0xff, ...props]), str(o.clientId), o.tail ?? Buffer.alloc(0)]),
  )
}

export interface Frame {
  type: number
  flags: number
  body: Buffer
}

/** Splits bytes into complete MQTT frames; a trailing partial frame is left out. */
export function frames(buf: Buffer): Frame[] {
  const out: Frame[] = []
  let pos = 0
  while (pos < buf.length) {
    let len = 0
    let mul = 1
    let i = pos + 1
    let complete = false
    for (let n = 0; n < 4 && i < buf.length; n++, i++) {
      const byte = buf[i] ?? 0
      len += (byte & 0x7f) * mul
      mul *= 128
      if ((byte & 0x80) === 0) {
        complete = true
        i++
        break
      }
    }
    if (!complete || i + len > buf.length) break
    const first = buf[pos] ?? 0
    out.push({ type: first >> 4, flags: first & 0x0f, body: buf.subarray(i, i + len) })
    pos = i + len
  }
  return out
}

/** A raw TCP connection that also decodes what the server sends, as it arrives. */
export interface Wire extends RawClient {
  readonly version: Version
  /** Every packet decoded so far, in order. */
  readonly packets: Packet[]
  sendPacket(packet: Packet): void
  /** Waits for the first packet (at or after `from`) that has this cmd and passes `pred`. */
  waitFor<C extends Packet['cmd']>(cmd: C, pred?: (p: Extract<Packet, { cmd: C }>) => boolean, ms?: number): Promise<Extract<Packet, { cmd: C }>>
  ofType<C extends Packet['cmd']>(cmd: C): Extract<Packet, { cmd: C }>[]
  /** Reason code of the DISCONNECT the server sent, if any. */
  disconnectCode(): number | undefined
}

export async function wire(t: Teardown, port: number, version: Version = 4): Promise<Wire> {
  const raw = await rawClient(t, port)
  const parser = mqttPacket.parser({ protocolVersion: version })
  const packets: Packet[] = []
  parser.on('packet', (p: Packet) => packets.push(p))
  parser.on('error', () => {})
  raw.socket.on('data', (chunk: Buffer) => parser.parse(chunk))
  const ofType = <C extends Packet['cmd']>(cmd: C): Extract<Packet, { cmd: C }>[] =>
    packets.filter((p): p is Extract<Packet, { cmd: C }> => p.cmd === cmd)
  return {
    ...raw,
    version,
    packets,
    sendPacket: (p) => raw.send(encode(p, version)),
    async waitFor(cmd, pred, ms = 5000) {
      let found: Extract<Packet, { cmd: typeof cmd }> | undefined
      await until(
        () => {
          found = ofType(cmd).find((p) => pred === undefined || pred(p))
          return found !== undefined
        },
        ms,
        `${cmd} from the server`,
      )
      if (found === undefined) throw new Error('unreachable')
      return found
    },
    ofType,
    disconnectCode() {
      const d = ofType('disconnect')[0]
      return d === undefined ? undefined : (d.reasonCode ?? 0)
    },
  }
}

export interface WireConnect extends Partial<Omit<IConnectPacket, 'cmd'>> {
  clientId: string
}

/** Opens a raw connection, sends CONNECT and waits for CONNACK. */
export async function wireConnect(
  t: Teardown,
  port: number,
  connect: WireConnect,
  version: Version = 4,
): Promise<{ w: Wire; connack: Extract<Packet, { cmd: 'connack' }> }> {
  const w = await wire(t, port, version)
  w.sendPacket({
    cmd: 'connect',
    protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: version,
    clean: true,
    keepalive: 60,
    ...connect,
  })
  const connack = await w.waitFor('connack')
  return { w, connack }
}

/** Raw SUBSCRIBE and wait for its SUBACK. */
export async function wireSubscribe(w: Wire, topic: string, qos: 0 | 1 | 2 = 0, messageId = 1): Promise<number[]> {
  w.sendPacket({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
  const suback = await w.waitFor('suback', (p) => p.messageId === messageId)
  return suback.granted.map((g) => (typeof g === 'number' ? g : ((g as { qos?: number }).qos ?? -1)))
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
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  const messages: Received[] = []
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload, packet }))
  t.teardown(() => new Promise<void>((resolve) => client.end(true, {}, () => resolve())))
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', (ack) => resolve(ack))
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  return { client, connack, messages }
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

/** Resolves once the client's stream has closed. */
export function closedPromise(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.stream?.destroyed === true) resolve()
    else client.once('close', () => resolve())
  })
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs a mosquitto CLI to completion; killed after `timeoutMs`. */
export function runCli(cmd: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 10_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

export interface CliProcess {
  /** Complete stdout lines so far. */
  lines(): string[]
  stderr(): string
  readonly pid: number | undefined
  readonly exited: Promise<CliResult>
  kill(signal?: NodeJS.Signals): void
}

/** Starts a long-running mosquitto CLI (killed at teardown and after `timeoutMs`). */
export function startCli(t: Teardown, cmd: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 20_000): CliProcess {
  const child = spawn(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const exited = new Promise<CliResult>((resolve) => {
    child.on('error', (e) => resolve({ code: null, signal: null, stdout, stderr: `${stderr}${e.message}` }))
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  return {
    lines: () => {
      const all = stdout.split('\n')
      all.pop()
      return all
    },
    stderr: () => stderr,
    pid: child.pid,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    },
  }
}

/** Parsed log events with this name. */
export function logEvents(logs: Record<string, unknown>[], event: string): Record<string, unknown>[] {
  return logs.filter((l) => l.event === event)
}
