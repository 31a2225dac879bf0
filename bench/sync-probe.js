// The latency probe of bench/sync.js, a process of its own (forked with IPC): one MQTT client
// logged in to perch, subscribed to its own topic, publishing a QoS 0 message to it every
// PERIOD ms and timing each round trip. Times are wall-clock milliseconds
// (performance.timeOrigin + performance.now()), comparable with the parent's and perch's.
// Usage: fork('bench/sync-probe.js', [PORT, USER, PASSWORD, TOPIC, PERIOD_MS])
// Sends { type: 'ready', at } once subscribed; answers { type: 'stats', id, from, to } with
// { type: 'stats', id, ...figures } for the messages sent in [from, to]; exits on { type: 'stop' }.
import net from 'node:net'
import * as m from './mqtt.js'

const [port, user, password, topic, periodArg] = process.argv.slice(2)
const PERIOD = Number(periodArg) || 5
const MAX = 200000 // messages: 1,000 s at 5 ms, far more than a run sends
const LOST_AFTER_MS = 2000
const now = () => performance.timeOrigin + performance.now()

const sentAt = new Float64Array(MAX)
const rtt = new Float64Array(MAX).fill(-1)
const lag = new Float64Array(MAX) // how late the timer fired for each send
let seq = 0
let ready = false

// perch may not listen yet when the probe starts: retry every 5 ms until it does (bounded).
let sock
let stopping = false
const connectDeadline = now() + 30000
function connect() {
  const s = net.connect({ port: Number(port), host: '127.0.0.1' })
  s.setNoDelay(true)
  let answered = false
  s.on('error', (e) => {
    if (answered) return fail(`probe socket: ${e.message}`)
    if (now() > connectDeadline) return fail(`probe: no CONNACK within 30 s (${e.message})`)
    s.destroy()
    setTimeout(connect, 5)
  })
  s.on('close', () => {
    if (answered && !stopping) fail('probe: perch closed the connection')
  })
  s.on(
    'data',
    m.splitter((buf, i, len) => {
      const type = buf[i] >> 4
      if (type === m.PUBLISH) {
        const at = now()
        const n = buf.readUInt32BE(m.payloadOffset(buf, i))
        if (n < MAX && rtt[n] < 0) rtt[n] = at - sentAt[n]
      } else if (type === m.CONNACK) {
        answered = true
        if (buf[i + 3] !== 0) fail(`probe: CONNACK refused (${buf[i + 3]})`)
        s.write(m.subscribe(topic, 0))
      } else if (type === m.SUBACK) {
        if (buf[i + len - 1] === 0x80) fail(`probe: SUBACK refused ${topic}`)
        ready = true
        process.send({ type: 'ready', at: now() })
        start()
      }
    }),
  )
  s.write(m.connect(`sync-probe-${process.pid}`, { username: user, password, keepalive: 60 }))
  sock = s
}
connect()

function fail(msg) {
  process.send?.({ type: 'error', message: msg })
  process.exit(1)
}

// Self-correcting ticks: the k-th message is due at t0 + k * PERIOD; a late timer sends one
// message (no burst to catch up) and the lateness is recorded.
function start() {
  const t0 = now()
  const payload = Buffer.alloc(64)
  const tick = () => {
    if (stopping || seq >= MAX) return
    const at = now()
    const due = t0 + seq * PERIOD
    payload.writeUInt32BE(seq, 0)
    sentAt[seq] = at
    lag[seq] = Math.max(0, at - due)
    seq++
    sock.write(m.publish(topic, payload))
    // the next due time after now
    const k = Math.max(seq, Math.ceil((now() - t0) / PERIOD))
    if (k > seq) seq = Math.min(k, MAX) // skipped slots: not sent, not counted
    setTimeout(tick, Math.max(0, t0 + seq * PERIOD - now()))
  }
  tick()
}

function pct(sorted, p) {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

// Figures for the messages sent in [from, to]: round-trip percentiles (ms), lost ones (no answer
// after LOST_AFTER_MS), how many took over SLOW_MS, the worst few with their send times (to line
// them up with perch's log), and how late the probe's own timer fired (its own stalls).
const SLOW_MS = 10
function stats(from, to) {
  const t = now()
  const rtts = []
  const worst = []
  let sent = 0
  let lost = 0
  let pending = 0
  let slow = 0
  let maxLag = 0
  for (let i = 0; i < seq; i++) {
    if (sentAt[i] === 0 || sentAt[i] < from || sentAt[i] > to) continue
    sent++
    if (lag[i] > maxLag) maxLag = lag[i]
    if (rtt[i] >= 0) {
      rtts.push(rtt[i])
      if (rtt[i] > SLOW_MS) slow++
      worst.push([sentAt[i], rtt[i]])
      if (worst.length > 40) {
        worst.sort((a, b) => b[1] - a[1])
        worst.length = 5
      }
    } else if (t - sentAt[i] > LOST_AFTER_MS) lost++
    else pending++
  }
  rtts.sort((a, b) => a - b)
  worst.sort((a, b) => b[1] - a[1])
  return {
    sent,
    received: rtts.length,
    lost,
    pending,
    slow,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    p999: pct(rtts, 99.9),
    max: rtts.length ? rtts[rtts.length - 1] : null,
    worst: worst.slice(0, 5).map(([at, ms]) => ({ at, ms })),
    maxTimerLag: maxLag,
  }
}

process.on('message', (msg) => {
  if (msg.type === 'stats') process.send({ type: 'stats', id: msg.id, ready, ...stats(msg.from, msg.to) })
  else if (msg.type === 'stop') {
    stopping = true
    sock.end(m.DISCONNECT)
    setTimeout(() => process.exit(0), 50)
  }
})
process.on('disconnect', () => process.exit(0))
