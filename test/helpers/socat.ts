import { type ChildProcess, spawn } from 'node:child_process'
import { appendFileSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ReadStream } from 'node:tty'
import type { SerialDevice } from '../../src/bridges/device-config.js'
import { LocalBridgePort } from '../../src/bridges/local-port.js'
import { createSerialBridge, type SerialBridgeOptions } from '../../src/bridges/serial/index.js'
import type { Bridge } from '../../src/bridges/types.js'
import { systemClock } from '../../src/core/clock.js'
import { createLogger } from '../../src/core/logger.js'
import { type AccountsBroker, startAccountsBroker } from './accounts.js'
import { connectWithAck, type Received } from './clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface PtyPair {
  readonly dev: string
  readonly sim: string
  readonly proc: ChildProcess
  /** Kills socat with `signal` and resolves when it has exited. */
  kill(signal: NodeJS.Signals): Promise<void>
}

/**
 * A real pty pair: `dev` for the code under test, `sim` for the test's simulated device. Resolves
 * when socat prints "starting data transfer loop"; killed at teardown if still running.
 */
export function startSocat(t: Teardown, dev: string, sim: string): Promise<PtyPair> {
  return new Promise((resolve, reject) => {
    const proc = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${dev}`, `pty,raw,echo=0,link=${sim}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let exited = proc.exitCode !== null
    const exit = new Promise<void>((r) => proc.once('exit', () => r()))
    proc.once('exit', () => {
      exited = true
    })
    t.teardown(() => {
      if (!exited) proc.kill('SIGKILL')
      return exit
    })
    let buf = ''
    let ready = false
    proc.stderr?.on('data', (d: Buffer) => {
      if (ready) return
      buf += d.toString()
      if (/starting data transfer loop/.test(buf)) {
        ready = true
        resolve({
          dev,
          sim,
          proc,
          kill(signal) {
            if (!exited) proc.kill(signal)
            return exit
          },
        })
      }
    })
    proc.once('exit', (code) => {
      if (!ready) reject(new Error(`socat exited ${code}: ${buf}`))
    })
    proc.once('error', reject)
  })
}

/** The simulated device's side, read without blocking a thread: every byte it receives. */
export function openSimReader(t: Teardown, sim: string): { received: () => Buffer; close: () => void } {
  const fd = openSync(sim, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK)
  const stream = new ReadStream(fd)
  const chunks: Buffer[] = []
  stream.on('data', (d: Buffer | string) => chunks.push(Buffer.isBuffer(d) ? d : Buffer.from(d)))
  stream.on('error', () => {})
  let closed = false
  const close = (): void => {
    if (closed) return
    closed = true
    stream.destroy()
  }
  t.teardown(close)
  return { received: () => Buffer.concat(chunks), close }
}

// A serial bridge rig: a socat pty pair, a real perch in accounts mode, a bridge publishing as
// the device's account, and an MQTT.js subscriber of that account.

export function serialDevice(path: string, over: Partial<SerialDevice> = {}): SerialDevice {
  return {
    kind: 'serial',
    name: 'dev1',
    account: 'alice',
    enabled: true,
    file: 'dev1.json',
    path,
    baudRate: 9600,
    dataBits: 8,
    parity: 'none',
    stopBits: 1,
    framing: { type: 'lines', delimiter: '\n', field: 'value' },
    topic: '/{account}/sensors/{device}/{field}',
    payload: 'value',
    fields: {},
    publish: { qos: 0, retain: false, onChange: false, minIntervalMs: 0 },
    command: undefined,
    reconnect: { initialMs: 100, maxMs: 1000 },
    ...over,
  }
}

export interface Rig {
  b: AccountsBroker
  pair: PtyPair
  dev: string
  sim: string
  dir: string
  bridge: Bridge
  logs: string[]
  /** Messages the account's own MQTT.js subscriber received (on /alice/#). */
  messages: Received[]
  client: Awaited<ReturnType<typeof connectWithAck>>['client']
  /** Writes bytes on the simulated device's side (open, write, close: nothing held open). */
  simWrite(data: string | Buffer): void
  /** The latest status JSON seen on the status topic. */
  lastStatus(): { state: string; lastError: string | null } | undefined
}

export async function rig(t: Teardown, over: Partial<SerialDevice> = {}, options: SerialBridgeOptions = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'perch-serial-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const dev = join(dir, 'ttyGW')
  const sim = join(dir, 'ttySIM')
  const pair = await startSocat(t, dev, sim)
  const b = await startAccountsBroker(t)
  await b.addAccount('alice', 'pw-alice')
  const { client, messages } = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice', clientId: 'alice-sub' })
  await client.subscribeAsync('/alice/#', { qos: 1 })
  const config = serialDevice(dev, over)
  const port = new LocalBridgePort(b.app.broker, config.name, config.account)
  const logs: string[] = []
  const clock = systemClock()
  const bridge = createSerialBridge(config, { port, clock, logger: createLogger('debug', (l) => logs.push(l), () => clock.now()) }, options)
  t.teardown(async () => {
    await bridge.dispose()
    port.dispose()
  })
  const statusTopic = `/alice/devices/${config.name}/status`
  return {
    b,
    pair,
    dev,
    sim,
    dir,
    bridge,
    logs,
    messages,
    client,
    simWrite(data) {
      appendFileSync(sim, data)
    },
    lastStatus() {
      const m = messages.filter((x) => x.topic === statusTopic).at(-1)
      return m === undefined ? undefined : (JSON.parse(m.payload.toString()) as { state: string; lastError: string | null })
    },
  }
}

export function payloadsOn(messages: readonly Received[], topic: string): string[] {
  return messages.filter((m) => m.topic === topic).map((m) => m.payload.toString())
}
