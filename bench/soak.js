// Crash soak, run by hand (not by the test suite): the crash loop of the durability tests for
// as long as you like. perch (dist/, so `npm run build` first) runs on a fixed data directory;
// a raw publisher sends QoS 1/2 messages with unique payloads to six persistent subscribers
// (offline, online, reconnecting; QoS 1 and 2; 3.1.1 and 5.0); perch is killed with SIGKILL
// at a seeded random moment, restarted on the same directory, everyone reconnects and drains.
// Checked every cycle: every message the publisher saw acknowledged (PUBACK, or PUBREC for
// QoS 2) reaches every subscriber, no QoS 2 message is delivered twice, a QoS 1 message
// arrives again only with DUP set. Exit code 1 when any check failed.
//
// usage: node bench/soak.js [--minutes 10] [--cycles N] [--seed N] [--messages 150] [--keep]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import mqttPacket from 'mqtt-packet'

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    cycles: { type: 'string' },
    seed: { type: 'string' },
    messages: { type: 'string', default: '150' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
})
if (opts.help) {
  console.log('usage: node bench/soak.js [--minutes 10] [--cycles N] [--seed N] [--messages 150] [--keep]')
  process.exit(0)
}
const SEED = Number(opts.seed ?? Math.floor(Math.random() * 2 ** 31))
const MINUTES = Number(opts.minutes)
const MAX_CYCLES = opts.cycles === undefined ? Number.POSITIVE_INFINITY : Number(opts.cycles)
const MESSAGES = Number(opts.messages)
const WINDOW = 16
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'perch.js')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
async function until(cond, ms) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) return false
    await sleep(10)
  }
  return true
}

function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** Spawns perch; `port` resolves from its perch.started log line. */
function startPerch(dataDir) {
  const child = spawn(process.execPath, [BIN, 'start', '--port', '0', '--data-dir', dataDir, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const tail = []
  let partial = ''
  let onPort
  const port = new Promise((resolve, reject) => {
    onPort = resolve
    child.on('close', (code, signal) => reject(new Error(`perch exited (${code ?? signal}) before starting: ${tail.join('\n')}`)))
  })
  port.catch(() => {})
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  port.then(() => clearTimeout(timer), () => clearTimeout(timer))
  const keep = (line) => {
    tail.push(line)
    if (tail.length > 20) tail.shift()
  }
  child.stdout.setEncoding('utf8').on('data', (s) => {
    const lines = (partial + s).split('\n')
    partial = lines.pop()
    for (const line of lines) {
      keep(line)
      if (line.includes('"perch.started"')) onPort(JSON.parse(line).listeners[0].port)
    }
  })
  child.stderr.setEncoding('utf8').on('data', (s) => keep(s))
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  return { child, exited, port }
}

/** A raw MQTT client: mqtt-packet on a socket; `onPacket` sees everything after CONNACK. */
function rawConnect(port, version, fields, onPacket) {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    const parser = mqttPacket.parser({ protocolVersion: version })
    let connack
    const client = {
      socket,
      closed: false,
      send: (p) => socket.write(mqttPacket.generate(p, { protocolVersion: version })),
    }
    parser.on('packet', (p) => {
      if (connack === undefined && p.cmd === 'connack') {
        connack = p
        const code = version === 5 ? p.reasonCode : p.returnCode
        if (code) reject(new Error(`CONNACK ${code}`))
        else resolve({ client, connack: p })
      } else onPacket(client, p)
    })
    socket.on('data', (b) => parser.parse(b))
    socket.on('error', () => {})
    socket.on('close', () => {
      client.closed = true
      if (connack === undefined) reject(new Error('closed before CONNACK'))
    })
    socket.on('connect', () => client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, keepalive: 60, ...fields }))
  })
}

const connectFields = (clientId, version, first) =>
  version === 4 ? { clientId, clean: false } : { clientId, clean: first, properties: { sessionExpiryInterval: 86_400 } }

class Subscriber {
  constructor(role, version, qos, rng, report) {
    Object.assign(this, { role, version, qos, rng, report })
    this.name = `${role}-q${qos}-v${version}`
    this.delivered = new Map()
    this.seen = new Set()
    this.pendingRel = new Map()
    this.reportedLost = new Set()
    this.client = undefined
    this.lastPacketAt = 0
    this.skipRate = 0
    this.dupRedeliveries = 0
    this.subacked = false
  }

  async connect(port, first) {
    const { client, connack } = await rawConnect(port, this.version, connectFields(`soak-${this.name}`, this.version, first), (c, p) => this.handle(c, p))
    if (!first && !connack.sessionPresent) this.report(`${this.name}: session present 0 after restart`)
    this.client = client
    if (first) {
      client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'soak/#', qos: this.qos }] })
      if (!(await until(() => this.subacked, 5000))) throw new Error(`${this.name}: no SUBACK`)
    }
  }

  async disconnect() {
    if (this.client === undefined || this.client.closed) return
    this.client.send({ cmd: 'disconnect' })
    await until(() => this.client.closed, 2000)
  }

  async churn(port, stopped) {
    while (!stopped()) {
      try {
        await this.connect(port, false)
      } catch {
        return
      }
      await sleep(20 + Math.floor(this.rng() * 80))
      if (stopped()) return
      if (this.rng() < 0.5) this.client.socket.destroy()
      else await this.disconnect()
      await sleep(Math.floor(this.rng() * 20))
    }
  }

  skip() {
    return this.skipRate > 0 && this.rng() < this.skipRate
  }

  handle(c, p) {
    this.lastPacketAt = Date.now()
    if (p.cmd === 'suback') this.subacked = true
    if (p.cmd === 'pubrel') {
      if (this.skip()) return
      this.pendingRel.delete(p.messageId)
      c.send({ cmd: 'pubcomp', messageId: p.messageId })
      return
    }
    if (p.cmd !== 'publish' || !p.topic.startsWith('soak/')) return
    const payload = p.payload.toString()
    const before = this.seen.has(payload)
    this.seen.add(payload)
    if (p.qos === 1) {
      if (before && !p.dup) this.report(`${this.name}: QoS 1 ${payload} again without DUP`)
      else if (before) this.dupRedeliveries++
      this.delivered.set(payload, (this.delivered.get(payload) ?? 0) + 1)
      if (!this.skip()) c.send({ cmd: 'puback', messageId: p.messageId })
      return
    }
    const pending = this.pendingRel.get(p.messageId)
    if (pending !== undefined) {
      if (pending !== payload) this.report(`${this.name}: packet id ${p.messageId} reused for ${payload} while ${pending} awaits PUBREL`)
      else if (!p.dup) this.report(`${this.name}: QoS 2 ${payload} resent without DUP`)
      c.send({ cmd: 'pubrec', messageId: p.messageId })
      return
    }
    if (this.skip()) return
    if (this.delivered.has(payload)) this.report(`${this.name}: QoS 2 ${payload} delivered twice`)
    this.delivered.set(payload, (this.delivered.get(payload) ?? 0) + 1)
    this.pendingRel.set(p.messageId, payload)
    c.send({ cmd: 'pubrec', messageId: p.messageId })
  }
}

class Publisher {
  constructor(version, report) {
    Object.assign(this, { version, report })
    this.inflight = new Map()
    this.acked = new Set()
    this.sent = 0
    this.nextId = 1
    this.client = undefined
  }

  async connect(port, first) {
    const { client, connack } = await rawConnect(port, this.version, connectFields(`soak-publisher-v${this.version}`, this.version, first), (c, p) => this.handle(c, p))
    if (!first && !connack.sessionPresent) this.report('publisher: session present 0 after restart')
    this.client = client
  }

  handle(c, p) {
    const m = this.inflight.get(p.messageId)
    if (m === undefined) return
    const failed = (p.reasonCode ?? 0) >= 0x80
    if (p.cmd === 'puback' && m.qos === 1) {
      this.inflight.delete(p.messageId)
      if (!failed) this.acked.add(m.payload)
    } else if (p.cmd === 'pubrec' && m.qos === 2) {
      if (failed) return void this.inflight.delete(p.messageId)
      this.acked.add(m.payload)
      m.state = 'released'
      c.send({ cmd: 'pubrel', messageId: p.messageId })
    } else if (p.cmd === 'pubcomp' && m.state === 'released') this.inflight.delete(p.messageId)
  }

  async burst(cycle, n, rng) {
    for (let i = 0; i < n; i++) {
      while (this.inflight.size >= WINDOW && !this.client.closed) await sleep(1)
      if (this.client.closed) return
      const qos = rng() < 0.5 ? 1 : 2
      const payload = `c${cycle}-${i}-q${qos}`
      let id = this.nextId
      while (this.inflight.has(id)) id = id >= 0xffff ? 1 : id + 1
      this.nextId = id >= 0xffff ? 1 : id + 1
      this.inflight.set(id, { payload, qos, state: 'sent' })
      this.sent++
      this.client.send({ cmd: 'publish', topic: `soak/q${qos}`, payload, qos, messageId: id, dup: false, retain: false })
      await sleep(2)
    }
  }

  resume() {
    for (const [messageId, m] of this.inflight) {
      if (m.qos === 1) this.inflight.delete(messageId)
      else if (m.state === 'sent') this.client.send({ cmd: 'publish', topic: 'soak/q2', payload: m.payload, qos: 2, messageId, dup: true, retain: false })
      else this.client.send({ cmd: 'pubrel', messageId })
    }
  }
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'perch-soak-'))
  const dataDir = join(work, 'data')
  const killRng = prng(SEED)
  const rng = prng(SEED ^ 0x5bd1e995)
  const violations = []
  let cycle = 0
  const report = (text) => violations.push(`cycle ${cycle}: ${text}`)
  console.log(`soak: seed ${SEED}, ${MINUTES} min${Number.isFinite(MAX_CYCLES) ? `, at most ${MAX_CYCLES} cycles` : ''}, data ${dataDir}`)

  let perch = startPerch(dataDir)
  let port = await perch.port
  const subs = [
    new Subscriber('offline', 4, 1, rng, report),
    new Subscriber('offline', 5, 2, rng, report),
    new Subscriber('online', 5, 1, rng, report),
    new Subscriber('online', 4, 2, rng, report),
    new Subscriber('reconnecting', 4, 1, rng, report),
    new Subscriber('reconnecting', 5, 2, rng, report),
  ]
  for (const s of subs) await s.connect(port, true)
  const pubs = [new Publisher(4, report), new Publisher(5, report)]
  for (const p of pubs) await p.connect(port, true)
  for (const s of subs) if (s.role === 'offline') await s.disconnect()

  const started = Date.now()
  let lost = 0
  while (Date.now() - started < MINUTES * 60_000 && cycle < MAX_CYCLES) {
    cycle++
    const before = violations.length
    let killed = false
    for (const s of subs) s.skipRate = s.role === 'reconnecting' ? 0.2 : 0
    const churning = subs.filter((s) => s.role === 'reconnecting').map((s) => s.churn(port, () => killed))
    const publishing = pubs.map((p) => p.burst(`${cycle}v${p.version}`, Math.ceil(MESSAGES / 2), rng))
    const killAfter = 50 + Math.floor(killRng() * 351)
    await sleep(killAfter)
    killed = true
    perch.child.kill('SIGKILL')
    await perch.exited
    await Promise.all([...publishing, ...churning])

    perch = startPerch(dataDir)
    try {
      port = await perch.port
    } catch (e) {
      report(`perch does not start after SIGKILL: ${e.message}`)
      break
    }
    for (const p of pubs) {
      await p.connect(port, false)
      p.resume()
    }
    for (const s of subs) {
      s.skipRate = 0
      await s.connect(port, false)
    }
    if (!(await until(() => pubs.every((p) => p.inflight.size === 0), 10_000))) report('publisher QoS 2 flows still open 10 s after restart')
    const acked = () => pubs.flatMap((p) => [...p.acked])
    const missing = (s) => acked().filter((m) => !s.delivered.has(m) && !s.reportedLost.has(m))
    const drainStart = Date.now()
    await until(() => {
      const quiet = (ms) => subs.every((s) => Date.now() - s.lastPacketAt > ms)
      return Date.now() - drainStart > 10_000 || ((quiet(1500) || subs.every((s) => missing(s).length === 0)) && quiet(250))
    }, 11_000)
    for (const s of subs) {
      const m = missing(s)
      if (m.length === 0) continue
      lost += m.length
      report(`${s.name}: ${m.length} acknowledged messages lost, e.g. ${m.slice(0, 5).join(' ')}`)
      for (const x of m) s.reportedLost.add(x)
    }
    for (const s of subs) if (s.role === 'offline') await s.disconnect()
    const total = acked().length
    const sent = pubs.reduce((n, p) => n + p.sent, 0)
    const status = violations.length === before ? 'ok' : `${violations.length - before} PROBLEMS`
    console.log(`cycle ${cycle}: killed at ${killAfter} ms; ${sent} sent, ${total} acknowledged so far; ${status}`)
    for (const v of violations.slice(before, before + 5)) console.log(`  ${v}`)
  }

  perch.child.kill('SIGTERM')
  const end = await perch.exited
  const sent = pubs.reduce((n, p) => n + p.sent, 0)
  const acked = pubs.reduce((n, p) => n + p.acked.size, 0)
  const dups = subs.reduce((n, s) => n + s.dupRedeliveries, 0)
  console.log('\nsoak summary')
  console.log(`  seed ${SEED}, ${cycle} kill/restart cycles in ${((Date.now() - started) / 60_000).toFixed(1)} min`)
  console.log(`  ${sent} messages sent, ${acked} acknowledged, ${lost} acknowledged deliveries lost, ${dups} QoS 1 redeliveries (with DUP)`)
  console.log(`  perch exit after SIGTERM: ${end.code ?? end.signal}`)
  console.log(`  ${violations.length} problems${violations.length > 0 ? ':' : ''}`)
  for (const v of violations.slice(0, 40)) console.log(`    ${v}`)
  if (opts.keep) console.log(`  data kept in ${dataDir}`)
  else rmSync(work, { recursive: true, force: true })
  process.exitCode = violations.length === 0 ? 0 : 1
}

await main()
