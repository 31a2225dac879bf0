// Issue 3, "Durable sessions: nothing acknowledged is ever lost": crash tests with real
// processes. perch runs as `node bin/perch.js start` on a fixed data directory; a raw publisher
// sends QoS 1 and QoS 2 messages with unique payloads to six persistent subscribers (offline,
// online and reconnecting, at QoS 1 and QoS 2, 3.1.1 and 5.0) and perch is killed with SIGKILL
// at a random moment (seeded) while it works, then restarted on the same data directory.
// After each restart, every message the publisher saw acknowledged (PUBACK, or PUBREC for
// QoS 2) must reach every subscriber; a QoS 2 message is never delivered twice; a QoS 1
// message arrives again only with DUP set. Messages never acknowledged may or may not arrive.
//
// The clients are raw (test/helpers/raw-client.ts `Wire`), and behave as compliant clients
// whose own state survives the broker's crash: the publisher resends its unacknowledged QoS 2
// PUBLISH (DUP=1, same id) and its PUBRELs on reconnect [MQTT-4.4.0-1] (a QoS 1 message it saw
// no PUBACK for is abandoned instead: resending it would be a new publication the broker
// cannot tell from the first, so the check "QoS 1 duplicates only with DUP" would not hold for
// a correct broker); a QoS 2 subscriber keeps the ids it sent PUBREC for until PUBREL and
// never passes a PUBLISH with such an id on twice [MQTT-4.3.3-10].
//
// Reproduce with PERCH_CRASH_SEED=N (printed in every failure); PERCH_CRASH_CYCLES sets the
// cycles per group (two groups). The longer loop is bench/soak.js.
import { join } from 'node:path'
import type { IConnectPacket, Packet } from 'mqtt-packet'
import type { Test } from 'tap'
import t from 'tap'
import { sleep, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { ensureBuilt, type PerchProcess, spawnPerch, tempDir } from './perch-process.js'

ensureBuilt()

const SEED = Number(process.env.PERCH_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
const CYCLES = Number(process.env.PERCH_CRASH_CYCLES ?? 11)
/** Messages the publisher tries to send per cycle; the kill usually lands before it is done. */
const MESSAGES = 150
/** Unacknowledged PUBLISH the publisher keeps in flight. */
const WINDOW = 16
/** Kill perch this long after publishing starts (ms, seeded). */
const KILL_MIN = 50
const KILL_MAX = 400
/** A subscriber that has had nothing for this long is taken to be drained. */
const QUIET_MS = 2500
const DRAIN_MAX_MS = 15_000

t.setTimeout(300_000)
t.comment(`crash test seed ${SEED} (PERCH_CRASH_SEED=${SEED} to reproduce), ${CYCLES} cycles per group`)

/** mulberry32: a small seeded PRNG, [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296
  }
}

type Version = 4 | 5
type Role = 'offline' | 'online' | 'reconnecting'

function connectFields(clientId: string, version: Version, first: boolean): Omit<IConnectPacket, 'cmd'> {
  // 3.1.1: CleanSession=0 from the start. 5.0: Clean Start on the very first connect only, and
  // a long Session Expiry Interval so the session is persistent.
  if (version === 4) return { clientId, clean: false }
  return { clientId, clean: first, properties: { sessionExpiryInterval: 86_400 } }
}

/** Calls `handle` for every packet the broker sends on `wire`, in order, from the first. */
function onPackets(wire: Wire, handle: (p: Packet) => void): void {
  let cursor = 0
  const pump = (): void => {
    while (cursor < wire.packets.length) {
      const p = wire.packets[cursor++]
      if (p !== undefined) handle(p)
    }
  }
  pump()
  // Registered after Wire's own 'data' listener, so its parser has already run.
  wire.socket.on('data', pump)
}

/** A persistent subscriber to crash/# that behaves as a compliant receiver whose state outlives the broker. */
class Subscriber {
  /** Deliveries passed on to the application, by payload. */
  readonly delivered = new Map<string, number>()
  /** Every payload received at all (delivered or not). */
  readonly seen = new Set<string>()
  /** QoS 2: ids we sent PUBREC for and have not seen PUBREL for, with their payload. */
  readonly pendingRel = new Map<number, string>()
  readonly reportedLost = new Set<string>()
  wire: Wire | undefined
  lastPacketAt = 0
  /** Chance of leaving a PUBLISH or PUBREL unanswered (the connection then drops). */
  skipRate = 0
  /** QoS 1 redeliveries that came with DUP, QoS 2 resends of a pending id answered without delivering. */
  dupRedeliveries = 0
  dedupedResends = 0
  /** Which perch process (1 = the first, +1 per restart) is serving; for the diagnostics. */
  run = 1
  /** Every receipt of a payload: perch run, packet id, DUP. */
  readonly receipts = new Map<string, string[]>()
  /** What the publisher knows about a payload, for the diagnostics. */
  describe: (payload: string) => string = () => ''

  constructor(
    readonly t: Test,
    readonly role: Role,
    readonly version: Version,
    readonly qos: 1 | 2,
    readonly rng: () => number,
    readonly report: (text: string) => void,
  ) {}

  get name(): string {
    return `${this.role}-q${this.qos}-v${this.version}`
  }

  connected(): boolean {
    return this.wire !== undefined && !this.wire.isClosed()
  }

  async connect(port: number, first: boolean): Promise<void> {
    const { wire, connack } = await Wire.connect(this.t, port, this.version, connectFields(`crash-${this.name}`, this.version, first))
    if (!first && !connack.sessionPresent) {
      this.report(`${this.name}: CONNACK Session Present 0, its persistent session is gone [MQTT-3.2.2-2]`)
    }
    this.wire = wire
    onPackets(wire, (p) => this.#handle(wire, p))
    if (first) {
      const suback = await wire.subscribe([{ topic: 'crash/#', qos: this.qos }], 1)
      if (suback.granted[0] !== this.qos) throw new Error(`${this.name}: SUBACK granted ${String(suback.granted[0])}`)
    }
  }

  async disconnect(): Promise<void> {
    await this.wire?.disconnect()
  }

  /** Connects, stays a little, drops or disconnects, again and again until `stopped`. */
  async churn(port: number, stopped: () => boolean): Promise<void> {
    while (!stopped()) {
      try {
        await this.connect(port, false)
      } catch {
        return // perch went down under the handshake
      }
      await sleep(20 + Math.floor(this.rng() * 80))
      if (stopped()) return
      if (this.rng() < 0.5) await this.wire?.drop()
      else await this.wire?.disconnect()
      await sleep(Math.floor(this.rng() * 20))
    }
  }

  #skip(): boolean {
    return this.skipRate > 0 && this.rng() < this.skipRate
  }

  #handle(wire: Wire, p: Packet): void {
    this.lastPacketAt = Date.now()
    if (p.cmd === 'pubrel') {
      if (this.#skip()) return
      const id = p.messageId ?? 0
      this.pendingRel.delete(id)
      wire.send({ cmd: 'pubcomp', messageId: id })
      return
    }
    if (p.cmd !== 'publish' || !p.topic.startsWith('crash/')) return
    const payload = p.payload.toString()
    const id = p.messageId ?? 0
    const before = this.seen.has(payload)
    this.seen.add(payload)
    const receipts = this.receipts.get(payload) ?? []
    receipts.push(`run ${this.run} id ${id}${p.dup ? ' DUP' : ''}`)
    this.receipts.set(payload, receipts)
    const history = (): string => `(received: ${receipts.join(', ')}; ${this.describe(payload)})`
    if (p.qos === 1) {
      if (before && !p.dup) this.report(`${this.name}: QoS 1 ${payload} arrived again without DUP ${history()} [MQTT-3.3.1-1] [MQTT-4.4.0-1]`)
      else if (before) this.dupRedeliveries++
      this.delivered.set(payload, (this.delivered.get(payload) ?? 0) + 1)
      if (!this.#skip()) wire.send({ cmd: 'puback', messageId: id })
      return
    }
    if (p.qos !== 2) {
      this.report(`${this.name}: ${payload} arrived at QoS ${p.qos}`)
      return
    }
    const pending = this.pendingRel.get(id)
    if (pending !== undefined) {
      // A resend of a PUBLISH we already took: PUBREC again, never delivered twice [MQTT-4.3.3-10].
      if (pending !== payload) {
        this.report(
          `${this.name}: packet id ${id} reused for ${payload} while ${pending} still awaits PUBREL; a compliant receiver drops ${payload} ${history()} [MQTT-2.2.1-3] [MQTT-4.3.3-10]`,
        )
      } else if (!p.dup) this.report(`${this.name}: QoS 2 ${payload} resent without DUP ${history()} [MQTT-3.3.1-1]`)
      else this.dedupedResends++
      wire.send({ cmd: 'pubrec', messageId: id })
      return
    }
    if (this.#skip()) return // not taken: no PUBREC, not delivered; the broker must resend it
    if (before && !p.dup) this.report(`${this.name}: QoS 2 ${payload} arrived again without DUP ${history()} [MQTT-3.3.1-1]`)
    const count = (this.delivered.get(payload) ?? 0) + 1
    if (count > 1) this.report(`${this.name}: QoS 2 ${payload} delivered ${count} times ${history()} [MQTT-4.3.3-2] [MQTT-4.3.3-10] [MQTT-4.4.0-1]`)
    this.delivered.set(payload, count)
    this.pendingRel.set(id, payload)
    wire.send({ cmd: 'pubrec', messageId: id })
  }
}

interface OutMessage {
  readonly payload: string
  readonly qos: 1 | 2
  /** QoS 2: 'released' once PUBREC came and PUBREL went out. */
  state: 'sent' | 'released'
}

/** A persistent publisher recording which messages the broker acknowledged. */
class Publisher {
  readonly inflight = new Map<number, OutMessage>()
  /** Payloads acknowledged: PUBACK, or PUBREC for QoS 2, without a failure reason code. */
  readonly acked = new Set<string>()
  sent = 0
  refused = 0
  abandoned = 0
  run = 1
  /** For the diagnostics: the perch run that acknowledged a payload; payloads resent after a restart. */
  readonly ackedIn = new Map<string, number>()
  readonly resent = new Set<string>()
  wire: Wire | undefined
  #nextId = 1

  constructor(
    readonly t: Test,
    readonly version: Version,
    readonly report: (text: string) => void,
  ) {}

  async connect(port: number, first: boolean): Promise<void> {
    const { wire, connack } = await Wire.connect(this.t, port, this.version, connectFields(`crash-publisher-v${this.version}`, this.version, first))
    if (!first && !connack.sessionPresent) this.report('publisher: CONNACK Session Present 0, its persistent session is gone [MQTT-3.2.2-2]')
    this.wire = wire
    onPackets(wire, (p) => this.#handle(wire, p))
  }

  alive(): boolean {
    return this.wire !== undefined && !this.wire.isClosed()
  }

  #handle(wire: Wire, p: Packet): void {
    if (p.cmd !== 'puback' && p.cmd !== 'pubrec' && p.cmd !== 'pubcomp') return
    const id = p.messageId ?? 0
    const m = this.inflight.get(id)
    if (m === undefined) return
    const failed = (p.reasonCode ?? 0) >= 0x80
    if (p.cmd === 'puback' && m.qos === 1) {
      this.inflight.delete(id)
      if (failed) this.refused++
      else {
        this.acked.add(m.payload)
        this.ackedIn.set(m.payload, this.run)
      }
    } else if (p.cmd === 'pubrec' && m.qos === 2) {
      if (failed) {
        this.inflight.delete(id)
        this.refused++
        return
      }
      this.acked.add(m.payload)
      if (!this.ackedIn.has(m.payload)) this.ackedIn.set(m.payload, this.run)
      m.state = 'released'
      wire.send({ cmd: 'pubrel', messageId: id })
    } else if (p.cmd === 'pubcomp' && m.state === 'released') this.inflight.delete(id)
  }

  #allocateId(): number {
    for (;;) {
      const id = this.#nextId
      this.#nextId = id >= 0xffff ? 1 : id + 1
      if (!this.inflight.has(id)) return id
    }
  }

  /** Publishes up to `n` messages, paced, at most WINDOW in flight; stops when the connection goes. */
  async burst(cycle: number, n: number, rng: () => number): Promise<void> {
    for (let i = 0; i < n; i++) {
      while (this.inflight.size >= WINDOW && this.alive()) await sleep(1)
      const wire = this.wire
      if (wire === undefined || !this.alive()) return
      const qos = rng() < 0.5 ? 1 : 2
      const payload = `c${cycle}-${i}-q${qos}`
      const messageId = this.#allocateId()
      this.inflight.set(messageId, { payload, qos, state: 'sent' })
      this.sent++
      wire.send({ cmd: 'publish', topic: `crash/q${qos}`, payload, qos, messageId, dup: false, retain: false })
      await sleep(2)
    }
  }

  /**
   * After reconnecting: resend every unacknowledged QoS 2 PUBLISH with DUP=1 and its id, and
   * every PUBREL [MQTT-4.4.0-1]; QoS 1 messages without PUBACK are abandoned (see the top).
   */
  resume(): void {
    const wire = this.wire
    if (wire === undefined) return
    for (const [messageId, m] of this.inflight) {
      if (m.qos === 1) {
        this.inflight.delete(messageId)
        this.abandoned++
      } else if (m.state === 'sent') {
        this.resent.add(m.payload)
        wire.send({ cmd: 'publish', topic: `crash/q${m.qos}`, payload: m.payload, qos: 2, messageId, dup: true, retain: false })
      } else wire.send({ cmd: 'pubrel', messageId })
    }
  }
}

interface Group {
  label: string
  seed: number
  publisherVersion: Version
  cycles: number
}

async function crashLoop(t: Test, g: Group): Promise<void> {
  const killRng = prng(g.seed)
  const rng = prng(g.seed ^ 0x5bd1e995)
  const dataDir = join(tempDir(t, 'perch-crash-'), 'data')
  let violations: string[] = []
  const report = (text: string): void => {
    violations.push(text)
  }

  let perch: PerchProcess = spawnPerch(t, { dataDir })
  let port = await perch.started()
  const subs: Subscriber[] = [
    new Subscriber(t, 'offline', 4, 1, rng, report),
    new Subscriber(t, 'offline', 5, 2, rng, report),
    new Subscriber(t, 'online', 5, 1, rng, report),
    new Subscriber(t, 'online', 4, 2, rng, report),
    new Subscriber(t, 'reconnecting', 4, 1, rng, report),
    new Subscriber(t, 'reconnecting', 5, 2, rng, report),
  ]
  for (const s of subs) await s.connect(port, true)
  const pub = new Publisher(t, g.publisherVersion, report)
  let run = 1
  const describe = (payload: string): string => {
    const ackedIn = pub.ackedIn.get(payload)
    const acked = ackedIn === undefined ? 'not acknowledged (so far)' : `acknowledged by run ${ackedIn}`
    return `publisher: ${acked}${pub.resent.has(payload) ? ', resent with DUP after a restart' : ''}`
  }
  for (const s of subs) s.describe = describe
  await pub.connect(port, true)
  for (const s of subs) if (s.role !== 'online') await s.disconnect()
  t.same(violations, [], `${g.label} seed ${g.seed}: setup`)

  for (let cycle = 1; cycle <= g.cycles; cycle++) {
    const where = `${g.label}, cycle ${cycle}/${g.cycles}, seed ${g.seed} (PERCH_CRASH_SEED=${SEED})`
    violations = []
    const ackedBefore = pub.acked.size
    const sentBefore = pub.sent

    // Publish while the reconnecting subscribers come and go; SIGKILL perch in the middle.
    let killed = false
    for (const s of subs) s.skipRate = s.role === 'reconnecting' ? 0.2 : 0
    const churning = subs.filter((s) => s.role === 'reconnecting').map((s) => s.churn(port, () => killed))
    const publishing = pub.burst(cycle, MESSAGES, rng)
    const killAfter = KILL_MIN + Math.floor(killRng() * (KILL_MAX - KILL_MIN + 1))
    await sleep(killAfter)
    killed = true
    const ackedAtKill = pub.acked.size
    const crashed = await perch.crash()
    t.equal(crashed.signal, 'SIGKILL', `${where}: perch killed ${killAfter} ms into publishing`)
    await Promise.all([publishing, ...churning])

    // Restart on the same data directory; everyone reconnects and drains.
    perch = spawnPerch(t, { dataDir })
    run++
    pub.run = run
    for (const s of subs) s.run = run
    try {
      port = await perch.started()
    } catch (e) {
      t.fail(`${where}: perch does not start again after SIGKILL: ${String(e)}`)
      return
    }
    await pub.connect(port, false)
    pub.resume()
    for (const s of subs) s.skipRate = 0
    for (const s of subs) await s.connect(port, false)
    try {
      await until(() => pub.inflight.size === 0, DRAIN_MAX_MS, 'the publisher QoS 2 flows to complete')
    } catch {
      report(`publisher: ${pub.inflight.size} QoS 2 flows still open ${DRAIN_MAX_MS} ms after the restart (PUBREC/PUBCOMP missing)`)
    }
    const missing = (s: Subscriber): string[] => [...pub.acked].filter((p) => !s.delivered.has(p) && !s.reportedLost.has(p))
    const drainStart = Date.now()
    const settled = (): boolean => {
      const quiet = subs.every((s) => Date.now() - s.lastPacketAt > QUIET_MS)
      return (quiet || subs.every((s) => missing(s).length === 0)) && subs.every((s) => Date.now() - s.lastPacketAt > 250)
    }
    await until(() => settled() || Date.now() - drainStart > DRAIN_MAX_MS, DRAIN_MAX_MS + 1000, 'the subscribers to drain')
    for (const s of subs) {
      const lost = missing(s)
      if (lost.length === 0) continue
      report(`${s.name}: ${lost.length} acknowledged messages never arrived, e.g. ${lost.slice(0, 8).join(' ')} [MQTT-4.3.2-2] [MQTT-4.3.3-2]`)
      for (const p of lost) s.reportedLost.add(p)
    }

    t.comment(
      `${where}: killed after ${killAfter} ms; sent ${pub.sent - sentBefore}, acknowledged ${ackedAtKill - ackedBefore} before the kill and ${pub.acked.size - ackedAtKill} after (QoS 2 resends); ` +
        `QoS 1 redelivered with DUP ${subs.reduce((n, s) => n + s.dupRedeliveries, 0)}, QoS 2 resends not delivered twice ${subs.reduce((n, s) => n + s.dedupedResends, 0)} (so far)`,
    )
    t.same(
      violations,
      [],
      `${where}: every acknowledged message reached all six persistent subscribers, no QoS 2 message twice, QoS 1 again only with DUP`,
    )
    for (const s of subs) if (s.role === 'offline') await s.disconnect()
  }

  const stopped = await perch.stop()
  t.equal(stopped.code, 0, `${g.label}: perch stops cleanly after the last restart`)
  t.ok(pub.acked.size > 0, `${g.label}: ${pub.acked.size} messages acknowledged over ${g.cycles} crashes (${pub.refused} refused, ${pub.abandoned} QoS 1 never acknowledged)`)
}

t.test(
  `nothing acknowledged is ever lost: a 3.1.1 publisher, perch killed with SIGKILL ${CYCLES} times; acknowledged QoS 1/2 messages reach offline, online and reconnecting persistent subscribers, QoS 2 exactly once, QoS 1 duplicates only with DUP [MQTT-4.3.2-2] [MQTT-4.3.3-2] [MQTT-4.4.0-1] [MQTT-3.3.1-1]`,
  (t) => crashLoop(t, { label: '3.1.1 publisher', seed: SEED, publisherVersion: 4, cycles: CYCLES }),
)

t.test(
  `nothing acknowledged is ever lost: a 5.0 publisher, perch killed with SIGKILL ${CYCLES} times; acknowledged QoS 1/2 messages reach offline, online and reconnecting persistent subscribers, QoS 2 exactly once, QoS 1 duplicates only with DUP [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-10] [MQTT-4.4.0-1]`,
  (t) => crashLoop(t, { label: '5.0 publisher', seed: (SEED + 1) % 2 ** 31, publisherVersion: 5, cycles: CYCLES }),
)
