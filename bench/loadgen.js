// Load generator, forked by run.js so its CPU is not charged to the harness or
// the broker. It receives one job over IPC, reports one result, and exits.
// Every loop is bounded in time: the watchdog below ends the process even if
// the broker stalls mid-run.
import net from 'node:net'
import * as m from './mqtt.js'

const PAYLOAD = 64
const CONNECT_TIMEOUT_MS = 15000
// Throughput subscribers drain their sockets once per tick instead of on every
// wakeup. Read eagerly, a subscriber sleeps in epoll and every small write by
// the broker has to wake it (a cross-CPU wakeup, costly in a VM), which charges
// the broker for the generator's idleness and costs the generator a read per
// two or three messages. Draining per tick, as a busy client would, measured
// Mosquitto fanin 300k -> 420k msg/s and generator CPU 0.7 -> 0.1 cores here.
const DRAIN_MS = 1

function fail(message) {
  if (process.connected) process.send({ type: 'error', message }, () => process.exit(1))
  else process.exit(1)
}

// A parent that dies (even by SIGKILL) closes the IPC channel: never linger.
process.on('disconnect', () => process.exit(0))
process.on('uncaughtException', (err) => fail(err.stack || String(err)))

function cores(cpu, wallMs) {
  return (cpu.user + cpu.system) / 1000 / wallMs
}

// Opens one client, sends CONNECT (plus `extra` in the same write), and
// resolves after CONNACK and, when `extra` subscribes, after SUBACK.
function open(port, clientId, { clean = true, sub = null, subQos = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' })
    sock.setNoDelay(true)
    let want = sub ? m.SUBACK : m.CONNACK
    const feed = m.splitter((buf, i) => {
      const type = buf[i] >> 4
      if (type === m.CONNACK && buf[i + 3] !== 0) reject(new Error(`CONNACK refused, code ${buf[i + 3]}`))
      if (type === m.SUBACK && buf[i + 4] === 0x80) reject(new Error(`SUBACK refused for ${sub}`))
      if (type === want) {
        want = -1
        sock.removeListener('data', feed)
        sock.removeListener('error', reject)
        resolve(sock)
      }
    })
    sock.on('data', feed)
    sock.on('error', reject)
    const hello = [m.connect(clientId, { clean })]
    if (sub) hello.push(m.subscribe(sub, subQos))
    sock.write(Buffer.concat(hello))
  })
}

function onLost(sock, st, who) {
  sock.on('error', () => {})
  sock.on('close', () => {
    if (st.running) fail(`${who} connection closed by the broker during the run`)
  })
}

async function throughput(job) {
  const { port, subs, pubs, qos, inflight, rate, latency, warmupMs, windowMs } = job
  const clean = job.clean !== false
  const tag = `lg${process.pid}`
  const st = { running: true, recv: 0, sent: 0, measuring: false }
  const maxSamples = latency ? Math.ceil((rate * windowMs) / 1000) * 2 + 10000 : 0
  const lat = new Float64Array(maxSamples)
  let nLat = 0
  let chunkNow = 0n

  const drainTick = !latency && job.drainTick !== false
  const paused = []
  if (drainTick) {
    const t = setInterval(() => {
      for (const sock of paused) sock.resume()
      paused.length = 0
    }, DRAIN_MS)
    t.unref()
  }
  const subSocks = await Promise.all(
    subs.map((filter, i) => open(port, `${tag}-s${i}`, { clean, sub: filter, subQos: qos })),
  )
  for (const sock of subSocks) {
    onLost(sock, st, 'subscriber')
    // Acks for a whole chunk go out in one write; sized so it never overflows.
    let acks = Buffer.allocUnsafe(qos ? 65536 : 0)
    let nAcks = 0
    const feed = m.splitter((buf, i) => {
      if (buf[i] >> 4 !== m.PUBLISH) return
      st.recv++
      if (qos) {
        const off = m.payloadOffset(buf, i)
        acks[nAcks] = 0x40
        acks[nAcks + 1] = 2
        acks[nAcks + 2] = buf[off - 2]
        acks[nAcks + 3] = buf[off - 1]
        nAcks += 4
      }
      if (latency && st.measuring && nLat < maxSamples) {
        const sentAt = buf.readBigUInt64BE(m.payloadOffset(buf, i))
        lat[nLat++] = Number(chunkNow - sentAt) / 1000
      }
    })
    sock.on('data', (chunk) => {
      if (latency) chunkNow = process.hrtime.bigint()
      if (qos && acks.length < chunk.length + 8) acks = Buffer.allocUnsafe(chunk.length * 2)
      feed(chunk)
      if (nAcks > 0) {
        sock.write(Buffer.from(acks.subarray(0, nAcks)))
        nAcks = 0
      }
      // A short read means the socket is drained: wait for the next tick.
      if (drainTick && chunk.length < 65536) {
        sock.pause()
        paused.push(sock)
      }
    })
  }

  const pubSocks = await Promise.all(pubs.map((_, i) => open(port, `${tag}-p${i}`, { clean })))
  pubSocks.forEach((sock) => {
    onLost(sock, st, 'publisher')
  })
  const payload = Buffer.alloc(PAYLOAD, 0x61)
  const start = performance.now()

  if (latency) {
    // Paced: each 1 ms tick sends what the schedule says is due, so a late tick
    // catches up (no coordinated omission); the send time goes in the payload.
    const templates = pubs.map((t) => m.publish(t, payload))
    let scheduled = 0
    let rr = 0
    const counts = new Array(pubs.length).fill(0)
    const timer = setInterval(() => {
      if (!st.running) return clearInterval(timer)
      const due = Math.min(Math.floor(((performance.now() - start) * rate) / 1000) - scheduled, rate)
      if (due <= 0) return
      counts.fill(0)
      for (let k = 0; k < due; k++) counts[(rr + k) % pubs.length]++
      rr = (rr + due) % pubs.length
      scheduled += due
      for (let p = 0; p < pubs.length; p++) {
        const tpl = templates[p]
        const n = counts[p]
        if (n === 0) continue
        const out = Buffer.allocUnsafe(n * tpl.length)
        const off = m.payloadOffset(tpl, 0)
        const now = process.hrtime.bigint()
        for (let k = 0; k < n; k++) {
          tpl.copy(out, k * tpl.length)
          out.writeBigUInt64BE(now, k * tpl.length + off)
        }
        pubSocks[p].write(out)
        st.sent += n
      }
    }, 1)
  } else if (qos === 0) {
    // Unpaced: ~64 KB of identical PUBLISH packets per write, refilled on drain.
    pubs.forEach((topic, p) => {
      const one = m.publish(topic, payload)
      const per = Math.floor(65536 / one.length)
      const batch = Buffer.concat(new Array(per).fill(one))
      const sock = pubSocks[p]
      const pump = () => {
        for (let k = 0; k < 8 && st.running; k++) {
          st.sent += per
          if (!sock.write(batch)) return void sock.once('drain', pump)
        }
        if (st.running) setImmediate(pump)
      }
      pump()
    })
  } else {
    // QoS 1 window: a ring of pre-serialized packets with ids 1..RING; each
    // PUBACK frees one slot and the next packets of the ring go out in one write.
    const RING = 1024
    pubs.forEach((topic, p) => {
      const size = m.publish(topic, payload, 1).length
      const ring = Buffer.concat(Array.from({ length: RING }, (_, k) => m.publish(topic, payload, k + 1)))
      const sock = pubSocks[p]
      let next = 0
      const send = (n) => {
        if (!st.running) return
        st.sent += n
        while (n > 0) {
          const k = Math.min(n, RING - next)
          sock.write(ring.subarray(next * size, (next + k) * size))
          next = (next + k) % RING
          n -= k
        }
      }
      let acked = 0
      const feed = m.splitter((buf, i) => {
        if (buf[i] >> 4 === m.PUBACK) acked++
      })
      sock.on('data', (chunk) => {
        feed(chunk)
        if (acked > 0) {
          const n = acked
          acked = 0
          send(n)
        }
      })
      send(inflight)
    })
  }

  await new Promise((r) => setTimeout(r, warmupMs))
  const r0 = st.recv
  const s0 = st.sent
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  process.send({ type: 'window' })
  st.measuring = true
  await new Promise((r) => setTimeout(r, windowMs))
  st.measuring = false
  const wall = performance.now() - t0
  const cpu = cores(process.cpuUsage(c0), wall)
  const recv = st.recv - r0
  const sent = st.sent - s0
  st.running = false
  const result = { type: 'result', recvPerSec: (recv * 1000) / wall, sentPerSec: (sent * 1000) / wall, cpu }
  if (latency) {
    const s = lat.subarray(0, nLat).sort()
    const q = (x) => (nLat ? s[Math.min(nLat - 1, Math.ceil(x * nLat) - 1)] : null)
    Object.assign(result, { samples: nLat, p50: q(0.5), p99: q(0.99), p999: q(0.999) })
  }
  for (const sock of [...subSocks, ...pubSocks]) sock.destroy()
  process.send(result, () => process.exit(0))
}

// Idle connections, opened with a bounded number of handshakes in flight so
// the broker's accept queue does not overflow into SYN retransmits (1 s each).
function conns(job) {
  const { port, count, concurrency } = job
  const tag = `lg${process.pid}`
  const kept = []
  let started = 0
  let ok = 0
  let failed = 0
  let firstError = null
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  const done = () => {
    const wall = performance.now() - t0
    process.send({ type: 'connected', ok, failed, firstError, ms: wall, cpu: cores(process.cpuUsage(c0), wall) })
  }
  const next = () => {
    if (started >= count) return
    const i = started++
    open(port, `${tag}-c${i}`).then(
      (sock) => {
        sock.on('error', () => {})
        kept.push(sock)
        ok++
        if (ok + failed === count) done()
        else next()
      },
      (err) => {
        failed++
        firstError ??= err.message
        if (ok + failed === count) done()
        else next()
      },
    )
  }
  for (let k = 0; k < Math.min(concurrency, count); k++) next()
}

process.on('message', (job) => {
  if (job.cmd === 'exit') process.exit(0)
  if (job.cmd === 'go') return conns(job)
  const deadline = CONNECT_TIMEOUT_MS + job.warmupMs + job.windowMs + 5000
  setTimeout(() => fail('loadgen watchdog: clients did not connect or the run stalled'), deadline).unref()
  if (job.mode === 'throughput') throughput(job).catch((err) => fail(err.message))
})

process.send({ type: 'up' })
