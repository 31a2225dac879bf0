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

// Every socket reads into this one buffer (Node's `onread`): no allocation per
// read and no 64 KB per idle connection. Safe because packets are consumed
// synchronously in the callback and the splitter copies any partial packet.
const READ_BUF = 65536
const readBuf = Buffer.allocUnsafe(READ_BUF)
let readAt = 0n

// c.onPacket(buf, start, length) sees each whole packet; c.afterRead(n) runs
// after each read, and returning false stops reading until c.sock.resume()
// (with `onread`, unlike a plain pause(), that really stops the reads).
function client(port, localAddress = undefined) {
  const c = { sock: null, onPacket: () => {}, afterRead: null, stamp: false }
  const feed = m.splitter((buf, i, len) => c.onPacket(buf, i, len))
  const callback = (n, buf) => {
    if (c.stamp) readAt = process.hrtime.bigint()
    feed(buf.subarray(0, n))
    return c.afterRead ? c.afterRead(n) : true
  }
  c.sock = net.connect({ port, host: '127.0.0.1', localAddress, onread: { buffer: readBuf, callback } })
  c.sock.setNoDelay(true)
  return c
}

// Opens one client with CONNECT (and SUBSCRIBE, in the same write); resolves
// with the client after CONNACK, or SUBACK when subscribing. `login` is
// { username, password } for perch's accounts mode.
function open(port, clientId, { clean = true, sub = null, subQos = 0, localAddress, login } = {}) {
  return new Promise((resolve, reject) => {
    const c = client(port, localAddress)
    const want = sub ? m.SUBACK : m.CONNACK
    const closed = () => reject(new Error('connection closed before CONNACK/SUBACK'))
    c.onPacket = (buf, i) => {
      const type = buf[i] >> 4
      if (type === m.CONNACK && buf[i + 3] !== 0) reject(new Error(`CONNACK refused, code ${buf[i + 3]}`))
      if (type === m.SUBACK && buf[i + 4] === 0x80) reject(new Error(`SUBACK refused for ${sub}`))
      if (type === want) {
        c.onPacket = () => {}
        c.sock.removeListener('error', reject)
        c.sock.removeListener('close', closed)
        resolve(c)
      }
    }
    c.sock.on('error', reject)
    c.sock.on('close', closed)
    const hello = [m.connect(clientId, { clean, ...login })]
    if (sub) hello.push(m.subscribe(sub, subQos))
    c.sock.write(Buffer.concat(hello))
  })
}

// Accounts mode: `filter` must be refused (SUBACK 0x80) for `login`, or the
// run is not measuring an ACL at all.
async function expectDenied(port, clientId, login, filter) {
  const c = await open(port, clientId, { login })
  try {
    const code = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no SUBACK for the refused filter ${filter}`)), 5000)
      c.onPacket = (buf, i) => {
        if (buf[i] >> 4 !== m.SUBACK) return
        clearTimeout(t)
        resolve(buf[i + 4])
      }
      c.sock.on('close', () => reject(new Error(`closed before SUBACK for ${filter}`)))
      c.sock.write(m.subscribe(filter, 0, 7))
    })
    if (code !== 0x80) throw new Error(`account ${login.username} was granted ${filter} (SUBACK ${code}): ACLs are not enforced`)
  } finally {
    c.sock.on('error', () => {})
    c.sock.destroy()
  }
}

// The rules scenario: a client of the rule's account that asks perch for its
// rules on `list` (`/A/scripts/list`, answered on `<list>/result`). ask()
// resolves with the entry of rule `name` ({ running, suspended, counters,
// lastError }), or null when perch has no such rule stored.
async function ruleWatcher(port, clientId, login, list, name) {
  const c = await open(port, clientId, { login, sub: `${list}/result` })
  c.sock.on('error', () => {})
  let answered = () => {}
  c.onPacket = (buf, i, len) => {
    if (buf[i] >> 4 === m.PUBLISH) answered(buf.toString('utf8', m.payloadOffset(buf, i), i + len))
  }
  const ask = () =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer on ${list}/result within 5 s (are rules enabled in perch?)`)), 5000)
      answered = (text) => {
        clearTimeout(t)
        answered = () => {}
        const a = JSON.parse(text)
        if (!a.ok) return reject(new Error(`${list} answered ${text}`))
        resolve(a.rules.find((r) => r.name === name) ?? null)
      }
      c.sock.write(m.publish(list, Buffer.alloc(0)))
    })
  return { ask, close: () => c.sock.destroy() }
}

// Resolves once rule `name` runs (perch installs stored rules just after it
// starts listening); throws with the reason when it does not within 10 s.
async function awaitRule(watcher, name) {
  const deadline = performance.now() + 10000
  for (;;) {
    const r = await watcher.ask()
    if (r?.running && !r.suspended) return
    if (performance.now() > deadline) {
      if (!r) throw new Error(`rule ${name} is not stored in rules.db (scripts/list does not list it)`)
      throw new Error(`rule ${name} is stored but not ${r.running ? 'running (suspended)' : 'running'}: it did not load${r.lastError ? ` (last error: ${r.lastError})` : '; see rule.not-loaded in the broker log'}`)
    }
    await new Promise((res) => setTimeout(res, 100))
  }
}

// The topic of the PUBLISH starting at buf[i].
function topicOf(buf, i) {
  let j = i + 1
  while (buf[j] & 0x80) j++
  j++
  return buf.toString('utf8', j + 2, j + 2 + ((buf[j] << 8) | buf[j + 1]))
}

// The graph scenario: a client of the graph's account that asks perch for graph
// `topic` (`/A/graph/NAME`, op list, answered on `<topic>/result`) and counts the
// failures of the graph's functions, which perch publishes on `<topic>/error`.
// ask(ms) resolves with the answer ({ state, runs, links, ... }), or null when
// none came within ms (the graph service subscribes only once it has rebuilt
// the stored graphs, a moment after perch starts listening).
async function graphWatcher(port, clientId, login, topic) {
  const c = await open(port, clientId, { login, sub: `${topic}/result` })
  c.sock.on('error', () => {})
  const errorTopic = `${topic}/error`
  const w = { errors: 0, lastError: null }
  let answered = () => {}
  c.onPacket = (buf, i, len) => {
    if (buf[i] >> 4 !== m.PUBLISH) return
    const text = buf.toString('utf8', m.payloadOffset(buf, i), i + len)
    if (topicOf(buf, i) !== errorTopic) return answered(text)
    w.errors++
    w.lastError = text
  }
  c.sock.write(m.subscribe(errorTopic, 0, 2))
  w.ask = (ms) =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        answered = () => {}
        resolve(null)
      }, ms)
      answered = (text) => {
        clearTimeout(t)
        answered = () => {}
        resolve(JSON.parse(text))
      }
      c.sock.write(m.publish(topic, Buffer.from('{"op":"list","id":"bench"}')))
    })
  w.close = () => c.sock.destroy()
  return w
}

// Resolves once the graph is stored and runs (an input and an output linked, rules
// enabled); throws with the reason when it does not within 10 s.
async function awaitGraph(watcher, topic) {
  const deadline = performance.now() + 10000
  for (;;) {
    const a = await watcher.ask(1000)
    if (a?.state === 'ok' && a.runs) return
    if (a && a.state !== 'ok') throw new Error(`${topic} answered ${JSON.stringify(a)}: the graph is not stored in features.db`)
    if (performance.now() > deadline) {
      if (!a) throw new Error(`no answer on ${topic}/result within 10 s (are graphs enabled in perch?)`)
      throw new Error(`${topic} lists the graph but it does not run (runs: false; rules disabled, or no input or output linked): ${JSON.stringify(a)}`)
    }
    await new Promise((res) => setTimeout(res, 100))
  }
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
  const st = { running: true, recv: 0, sent: 0, stalls: 0, measuring: false, lostNow: () => 0 }
  let kick = () => {}
  const maxSamples = latency ? Math.ceil((rate * windowMs) / 1000) * 2 + 10000 : 0
  const lat = new Float64Array(maxSamples)
  let nLat = 0

  const windowed = !latency && qos === 0
  // QoS 0 windowed publishers write BATCH packets at a time (job.batch, default 64).
  const BATCH = job.batch || 64
  const recvBy = new Float64Array(pubs.length)
  // job.pooled: the outputs do not tell which publisher's input they came from (a
  // graph joins all inputs into one output topic), so they are credited in the
  // order the batches were sent: `inFlight` holds the publisher of each batch not yet
  // answered, oldest first. A credit never lands on a publisher with nothing in
  // flight, so the window stays pubs x maxAhead, and a publisher whose batch is
  // answered writes again at once.
  const inFlight = []
  let inFlightHead = 0
  let inFlightUsed = 0
  const drainTick = !latency
  const paused = []
  if (drainTick) {
    const t = setInterval(() => {
      for (const sock of paused) sock.resume()
      paused.length = 0
    }, job.tickMs || DRAIN_MS)
    t.unref()
  }
  // Accounts mode: client i logs in as its own account (job.subUsers[i] /
  // job.pubUsers[i]), all with one password. The first login of each account
  // costs one scrypt in the broker; all of it happens before the warm-up.
  const login = (users, i) => (users ? { username: users[i], password: job.password } : undefined)
  const subClients = await Promise.all(
    subs.map((filter, i) => open(port, `${tag}-s${i}`, { clean, sub: filter, subQos: qos, login: login(job.subUsers, i) })),
  )
  for (const c of subClients) {
    onLost(c.sock, st, 'subscriber')
    // A read of at most READ_BUF bytes holds at most READ_BUF / 4 packets,
    // so one ack per packet always fits.
    const acks = Buffer.allocUnsafe(qos ? READ_BUF + 8 : 0)
    let nAcks = 0
    c.stamp = latency
    c.onPacket = (buf, i) => {
      if (buf[i] >> 4 !== m.PUBLISH) return
      st.recv++
      if (windowed && job.pooled) {
        if (inFlightHead < inFlight.length) {
          recvBy[inFlight[inFlightHead]]++
          if (++inFlightUsed === BATCH) {
            inFlightUsed = 0
            if (++inFlightHead === 4096) {
              inFlight.splice(0, inFlightHead)
              inFlightHead = 0
            }
          }
        }
      } else if (windowed && job.topicIndex) recvBy[m.topicIndex(buf, i)]++
      else if (windowed) {
        const off = m.payloadOffset(buf, i)
        recvBy[(buf[off + 8] << 8) | buf[off + 9]]++
      }
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
        lat[nLat++] = Number(readAt - sentAt) / 1000
      }
    }
    c.afterRead = (n) => {
      kick()
      if (nAcks > 0) {
        c.sock.write(Buffer.from(acks.subarray(0, nAcks)))
        nAcks = 0
      }
      // A short read means the socket is drained: wait for the next tick.
      if (drainTick && n < READ_BUF) {
        paused.push(c.sock)
        return false
      }
      return true
    }
  }

  const pubClients = await Promise.all(pubs.map((_, i) => open(port, `${tag}-p${i}`, { clean, login: login(job.pubUsers, i) })))
  if (job.denied) await expectDenied(port, `${tag}-denied`, login(job.subUsers, 0), job.denied)
  // Rules: the rule must run before the load starts, or the run fails here.
  const rule = job.rule ? await ruleWatcher(port, `${tag}-rules`, login(job.subUsers, 0), job.rule.list, job.rule.name) : null
  if (rule) await awaitRule(rule, job.rule.name)
  // Graphs: the graph must run before the load starts, or the run fails here.
  const graph = job.graph ? await graphWatcher(port, `${tag}-graph`, login(job.subUsers, 0), job.graph.topic) : null
  if (graph) await awaitGraph(graph, job.graph.topic)
  for (const c of pubClients) onLost(c.sock, st, 'publisher')
  const pubSocks = pubClients.map((c) => c.sock)
  // job.payload (the rules scenario's JSON, the graph scenario's number) replaces
  // the 64 bytes; the publisher's index then comes back in the topic
  // (job.topicIndex), or not at all (job.pooled).
  const payload = job.payload !== undefined ? Buffer.from(job.payload) : Buffer.alloc(PAYLOAD, 0x61)
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
    // Windowed: publisher p stays at most job.maxAhead messages ahead of what
    // subscribers received from it (divided by fan-out; p rides in payload
    // bytes 8-9), in writes of BATCH packets. An open-loop blast measures
    // collapse under overload instead (Aedes overflows its stack with 50
    // publishers), and a broker that drops QoS 0 would look faster than one
    // that delivers. Per publisher, so one connection stuck on a delayed ACK
    // does not starve the others. A window stuck for STALL_MS is presumed
    // lost and reopened, so a dropping broker cannot hang the run; messages
    // that turn up later are taken back off the lost count, so a broker that
    // was only slow (a busy machine) is not pushed past the window for good.
    const STALL_MS = 1000
    const fan = job.fanout || 1
    const n = pubs.length
    const sent = new Float64Array(n)
    const lost = new Float64Array(n)
    const seen = new Float64Array(n).fill(-1)
    const movedAt = new Float64Array(n).fill(performance.now())
    const batches = pubs.map((t, p) => {
      const one = m.publish(t, payload)
      if (!job.topicIndex && !job.pooled) one.writeUInt16BE(p, m.payloadOffset(one, 0) + 8)
      return Buffer.concat(new Array(BATCH).fill(one))
    })
    const ahead = (p) => {
      const a = sent[p] - lost[p] - Math.floor(recvBy[p] / fan)
      if (a < 0) lost[p] += a
      return Math.max(a, 0)
    }
    st.lostNow = () => lost.reduce((x, y) => x + y, 0)
    let scheduled = false
    const pump = () => {
      scheduled = false
      let more = false
      for (let p = 0; p < n && st.running; p++) {
        const sock = pubSocks[p]
        // Bounded: at most maxAhead / BATCH writes per publisher per turn.
        while (ahead(p) + BATCH <= job.maxAhead && !sock.writableNeedDrain) {
          sock.write(batches[p])
          sent[p] += BATCH
          st.sent += BATCH
          if (job.pooled) inFlight.push(p)
        }
        more ||= ahead(p) + BATCH <= job.maxAhead && !sock.writableNeedDrain
      }
      if (more) kick()
    }
    kick = () => {
      if (!scheduled && st.running) {
        scheduled = true
        setImmediate(pump)
      }
    }
    for (const sock of pubSocks) sock.on('drain', kick)
    const stall = setInterval(() => {
      if (!st.running) return clearInterval(stall)
      const now = performance.now()
      for (let p = 0; p < n; p++) {
        if (recvBy[p] !== seen[p]) {
          seen[p] = recvBy[p]
          movedAt[p] = now
        } else if (now - movedAt[p] > STALL_MS && ahead(p) + BATCH > job.maxAhead) {
          if (st.measuring) st.stalls++
          lost[p] += ahead(p)
          movedAt[p] = now
          kick()
        }
      }
    }, 10)
    kick()
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
      pubClients[p].onPacket = (buf, i) => {
        if (buf[i] >> 4 === m.PUBACK) acked++
      }
      // Acks are read once per drain tick too, so a publisher refills its
      // window in one write per tick, not one write per PUBACK.
      pubClients[p].afterRead = (n) => {
        if (acked > 0) {
          const k = acked
          acked = 0
          send(k)
        }
        if (drainTick && n < READ_BUF) {
          paused.push(sock)
          return false
        }
        return true
      }
      send(inflight)
    })
  }

  await new Promise((r) => setTimeout(r, warmupMs))
  if (rule && st.recv === 0) {
    const r = await rule.ask()
    throw new Error(`the subscriber received nothing from rule ${job.rule.name} during the ${warmupMs} ms warm-up, though scripts/list says it runs (counters ${JSON.stringify(r?.counters)}, last error ${r?.lastError ?? 'none'})`)
  }
  if (graph && st.recv === 0) {
    throw new Error(`the subscriber received nothing from graph ${job.graph.topic} during the ${warmupMs} ms warm-up, though it says it runs (${graph.errors} failure(s) published on ${job.graph.topic}/error${graph.lastError ? `, the last: ${graph.lastError}` : ''})`)
  }
  const r0 = st.recv
  const s0 = st.sent
  const l0 = st.lostNow()
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
  const lost = Math.max(0, st.lostNow() - l0)
  st.running = false
  const result = { type: 'result', recvPerSec: (recv * 1000) / wall, sentPerSec: (sent * 1000) / wall, lost, stalls: st.stalls, cpu }
  if (latency) {
    const s = lat.subarray(0, nLat).sort()
    const q = (x) => (nLat ? s[Math.min(nLat - 1, Math.ceil(x * nLat) - 1)] : null)
    Object.assign(result, { samples: nLat, p50: q(0.5), p99: q(0.99), p999: q(0.999) })
  }
  if (rule) {
    // Counters since the rule started (warm-up included): dropped and errors should be 0.
    result.rule = (await rule.ask())?.counters
    rule.close()
  }
  if (graph) {
    // Inputs published over the whole run (warm-up included) and the graph's failures.
    result.graph = { sent: st.sent, errors: graph.errors, lastError: graph.lastError }
    graph.close()
  }
  for (const c of [...subClients, ...pubClients]) c.sock.destroy()
  process.send(result, () => process.exit(0))
}

// Idle connections, opened with a bounded number of handshakes in flight so
// the broker's accept queue does not overflow into SYN retransmits (1 s each).
// Source addresses rotate over 127.0.<proc>.1-200: with 20k connections from
// one address, finding a free ephemeral port makes connect() itself the
// bottleneck (19k connections from 4 processes: 4.4 s from one address, 2.3 s
// spread out).
function conns(job) {
  const { port, count, concurrency, proc } = job
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
    open(port, `${tag}-c${i}`, { localAddress: `127.0.${1 + proc}.${1 + (i % 200)}` }).then(
      (c) => {
        c.sock.on('error', () => {})
        kept.push(c.sock)
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
