// Benchmark harness: perch against Mosquitto and Aedes, side by side, in one run.
// Rules are in /work/shared/PERFORMANCE.md; how to read the output is at the top
// of bench/RESULTS.md. Usage: node bench/run.js --help
import { fork, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as br from './brokers.js'

const USAGE = `usage: node bench/run.js [SCENARIO ...] [--reps N] [--brokers perch,mosquitto,aedes] [--out FILE]
scenarios: fanin fanout pairs pairs-qos1 latency conns idle (default: all)
--reps N      repetitions per broker, interleaved (default 3, at least 1)
--brokers     comma-separated subset (default perch,mosquitto,aedes)
--out FILE    also prepend the report to FILE (e.g. bench/RESULTS.md), keeping history`

const WARMUP_MS = 1000
const WINDOW_MS = 3000
const CONNS = 20000
const CONN_PROCS = 4
const SUSPECT_CPU = 0.5
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i))

const k = (v) => `${Math.round(v / 1000)}k`
const int = (v) => String(Math.round(v))
const fix = (d) => (v) => v.toFixed(d)
const rate = (key, label) => [key, label, 'higher', k]

const SCENARIOS = {
  fanin: {
    shape: '8 publishers -> 1 subscriber on bench/+, QoS 0',
    job: { subs: ['bench/+'], pubs: range(8, (i) => `bench/${i}`), qos: 0 },
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  fanout: {
    shape: '1 publisher -> 50 subscribers on one topic, QoS 0',
    job: { subs: range(50, () => 'bench/fanout'), pubs: ['bench/fanout'], qos: 0 },
    metrics: [rate('recvPerSec', 'deliveries/s')],
  },
  pairs: {
    shape: '50 publisher/subscriber pairs on distinct topics, QoS 0',
    job: { subs: range(50, (i) => `bench/p${i}`), pubs: range(50, (i) => `bench/p${i}`), qos: 0 },
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  'pairs-qos1': {
    shape: '50 pairs, QoS 1 both ways, 16 unacknowledged per publisher, persistent sessions',
    job: { subs: range(50, (i) => `bench/p${i}`), pubs: range(50, (i) => `bench/p${i}`), qos: 1, inflight: 16, clean: false },
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  latency: {
    shape: 'fanin paced at 20,000 msg/s total; send time in the payload',
    job: { subs: ['bench/+'], pubs: range(8, (i) => `bench/${i}`), qos: 0, rate: 20000, latency: true },
    metrics: [
      ['p50', 'p50 latency (us)', 'lower', int],
      ['p99', 'p99 latency (us)', 'lower', int],
      ['p999', 'p999 latency (us)', 'lower', int],
      rate('recvPerSec', 'msg/s received (paced 20k)'),
    ],
  },
  conns: {
    shape: `${CONNS} idle connections from ${CONN_PROCS} generator processes`,
    metrics: [
      ['connectS', 'time to connect all (s)', 'lower', fix(2)],
      ['kbPerConn', 'RSS per connection (KB)', 'lower', fix(2)],
      ['rssMB', 'RSS with all connected (MB)', 'lower', fix(1)],
    ],
  },
  idle: {
    shape: 'broker alone after start',
    metrics: [
      ['rssMB', 'RSS idle (MB)', 'lower', fix(1)],
      ['startMs', 'exec to first CONNACK (ms)', 'lower', int],
    ],
  },
}
const BROKERS = ['perch', 'mosquitto', 'aedes']
const LABEL = { perch: 'perch', mosquitto: 'Mosquitto', aedes: 'Aedes' }

function parseArgs(argv) {
  const o = { scenarios: [], reps: 3, brokers: BROKERS, out: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--help' || a === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else if (a === '--reps') o.reps = Number(val())
    else if (a === '--brokers') o.brokers = val().split(',').filter(Boolean)
    else if (a === '--out') o.out = val()
    else if (SCENARIOS[a]) o.scenarios.push(a)
    else throw new Error(`unknown argument or scenario: ${a}`)
  }
  if (!Number.isInteger(o.reps) || o.reps < 1 || o.reps > 50) throw new Error('--reps must be an integer from 1 to 50')
  for (const b of o.brokers) if (!BROKERS.includes(b)) throw new Error(`unknown broker ${b}`)
  if (o.brokers.length === 0) throw new Error('--brokers is empty')
  if (o.scenarios.length === 0) o.scenarios = Object.keys(SCENARIOS)
  return o
}

// --- generator processes ---------------------------------------------------

// Resolves with the next IPC message whose type is in `types`; an 'error'
// message, an early exit or the timeout reject instead.
function nextMessage(child, types, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(t)
      child.off('message', onMsg)
      child.off('exit', onExit)
    }
    const onMsg = (msg) => {
      if (msg.type === 'error') {
        cleanup()
        reject(new Error(`load generator: ${msg.message}`))
      } else if (types.includes(msg.type)) {
        cleanup()
        resolve(msg)
      }
    }
    const onExit = (code) => {
      cleanup()
      reject(new Error(`load generator exited (code ${code}) waiting for ${what}`))
    }
    const t = setTimeout(() => {
      cleanup()
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
    }, timeoutMs)
    child.on('message', onMsg)
    child.on('exit', onExit)
  })
}

async function forkGenerators(n) {
  const gens = range(n, () => {
    const child = fork(path.join(br.ROOT, 'bench', 'loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    br.track(child, false)
    return child
  })
  await Promise.all(gens.map((g) => nextMessage(g, ['up'], 10000, 'generator start')))
  return gens
}

function killGenerators(gens) {
  for (const g of gens) if (g.exitCode === null && g.signalCode === null) g.kill('SIGKILL')
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// --- scenarios ---------------------------------------------------------------

async function runThroughput(b, sc) {
  const [gen] = await forkGenerators(1)
  try {
    gen.send({ mode: 'throughput', port: b.port, warmupMs: WARMUP_MS, windowMs: WINDOW_MS, ...sc.job })
    // Broker CPU over the same window tells whether the broker was saturated.
    await nextMessage(gen, ['window'], 15000 + WARMUP_MS + 5000, 'measurement window')
    const cpu0 = br.cpuSeconds(b.pid)
    const w0 = performance.now()
    const r = await nextMessage(gen, ['result'], WINDOW_MS + 10000, 'result')
    const brokerCpu = (br.cpuSeconds(b.pid) - cpu0) / ((performance.now() - w0) / 1000)
    const values = { recvPerSec: r.recvPerSec }
    if (sc.job.latency) Object.assign(values, { p50: r.p50, p99: r.p99, p999: r.p999 })
    const note = r.sentPerSec > r.recvPerSec * 1.05 && !sc.job.latency ? `sent ${k(r.sentPerSec)}/s` : null
    return { values, cpu: r.cpu, brokerCpu, note }
  } finally {
    killGenerators([gen])
  }
}

async function runConns(b, count) {
  await sleep(500)
  const before = br.treeRssKb(b.pid)
  const gens = await forkGenerators(CONN_PROCS)
  try {
    const share = Math.ceil(count / CONN_PROCS)
    const t0 = performance.now()
    const done = gens.map((g, i) => nextMessage(g, ['connected'], 120000, 'connections'))
    gens.forEach((g, i) => {
      g.send({ cmd: 'go', port: b.port, count: Math.min(share, count - i * share), concurrency: 25 })
    })
    const rs = await Promise.all(done)
    const ms = performance.now() - t0
    await sleep(1000)
    const after = br.treeRssKb(b.pid)
    const ok = rs.reduce((s, r) => s + r.ok, 0)
    const failed = rs.reduce((s, r) => s + r.failed, 0)
    const cpu = rs.reduce((s, r) => s + r.cpu, 0)
    if (ok === 0) throw new Error(`no connection succeeded: ${rs.find((r) => r.firstError)?.firstError}`)
    const note = failed ? `${failed} of ${count} failed (${rs.find((r) => r.firstError).firstError})` : null
    return { values: { connectS: ms / 1000, kbPerConn: (after - before) / ok, rssMB: after / 1024 }, cpu, note }
  } finally {
    killGenerators(gens)
  }
}

async function runIdle(b, connackAt) {
  const startMs = connackAt - b.t0
  await sleep(1000)
  return { values: { rssMB: br.treeRssKb(b.pid) / 1024, startMs }, cpu: null, note: null }
}

async function runOne(name, scName, ctx) {
  const sc = SCENARIOS[scName]
  const dir = mkdtempSync(path.join(ctx.tmp, `${name}-`))
  const nofile = scName === 'conns' ? ctx.fdLimit : 0
  const b = await br.startBroker(name, { dir, mosquitto: ctx.mosquitto, nofile })
  try {
    let connackAt
    try {
      connackAt = await br.probe(b)
    } catch (err) {
      err.startup = true
      throw err
    }
    let r
    if (scName === 'idle') r = await runIdle(b, connackAt)
    else if (scName === 'conns') r = await runConns(b, ctx.conns)
    else r = await runThroughput(b, sc)
    if (b.exited) throw new Error(`${name} ${b.exited} during the run: ${br.logTail(b)}`)
    return r
  } catch (err) {
    if (b.exited && !err.startup) err.message += ` (${name} ${b.exited}: ${br.logTail(b)})`
    throw err
  } finally {
    await br.stopBroker(b)
    rmSync(dir, { recursive: true, force: true })
  }
}

// --- report ------------------------------------------------------------------

function median(xs) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const h = s.length >> 1
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2
}

function sh(cmd) {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' })
  return (r.stdout || '').trim()
}

function machine() {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))
  const mem = sh("free -h | awk '/^Mem:/ {print $2}'")
  return `nproc ${sh('nproc')}, ${mem} RAM (free -h total), ${cpu ? cpu[1].trim() : os.cpus()[0]?.model}`
}

function report(opts, ctx, results) {
  const bs = opts.brokers
  const others = bs.includes('mosquitto') ? bs.filter((b) => b !== 'mosquitto') : []
  const cellFor = (scName, b, key, fmt) => {
    if (b === 'perch' && ctx.perchDown) return 'n/a'
    const reps = results[scName][b]
    const v = median(reps.map((r) => r.values?.[key]))
    if (v === null) return 'failed'
    const cpu = median(reps.map((r) => r.cpu))
    const okReps = reps.filter((r) => r.values).length
    return `${fmt(v)}${cpu !== null && cpu > SUSPECT_CPU ? ' ⚠' : ''}${okReps < reps.length ? ` (${okReps}/${reps.length} reps)` : ''}`
  }
  const lines = []
  const head = ['scenario', 'metric', 'better', ...bs.map((b) => LABEL[b]), ...others.map((b) => `${LABEL[b]} / Mosquitto`)]
  lines.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`)
  for (const scName of opts.scenarios) {
    for (const [key, label, better, fmt] of SCENARIOS[scName].metrics) {
      const row = [scName, label, better]
      for (const b of bs) row.push(cellFor(scName, b, key, fmt))
      const base = median(results[scName].mosquitto?.map((r) => r.values?.[key]) ?? [])
      for (const b of others) {
        const v = b === 'perch' && ctx.perchDown ? null : median(results[scName][b].map((r) => r.values?.[key]))
        row.push(v !== null && base ? `${(v / base).toFixed(2)} x` : 'n/a')
      }
      lines.push(`| ${row.join(' | ')} |`)
    }
  }

  const detail = [
    '| scenario | broker | first metric, per rep | generator CPU (cores), per rep | broker CPU (cores), per rep |',
    '| --- | --- | --- | --- | --- |',
  ]
  const notes = []
  for (const scName of opts.scenarios) {
    const [key, , , fmt] = SCENARIOS[scName].metrics[0]
    for (const b of bs) {
      const reps = results[scName][b]
      if (reps.length === 0) continue
      const vals = reps.map((r) => (r.values ? fmt(r.values[key]) : 'failed')).join(', ')
      const cores = (x) => (typeof x === 'number' ? x.toFixed(2) : '-')
      const cpus = reps.map((r) => cores(r.cpu)).join(', ')
      const bcpus = reps.map((r) => cores(r.brokerCpu)).join(', ')
      detail.push(`| ${scName} | ${LABEL[b]} | ${vals} | ${cpus} | ${bcpus} |`)
      reps.forEach((r, i) => {
        if (r.error) notes.push(`${scName}, ${LABEL[b]}, rep ${i + 1}: failed: ${r.error}`)
        else if (r.note) notes.push(`${scName}, ${LABEL[b]}, rep ${i + 1}: ${r.note}`)
      })
    }
  }

  const scList = opts.scenarios.map((s) => `${s} (${SCENARIOS[s].shape})`).join('; ')
  const out = [
    `## ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: ${opts.scenarios.join(', ')}`,
    '',
    `- command: \`${ctx.command}\``,
    `- machine: ${machine()}`,
    `- versions: Node ${process.version}; ${ctx.mosquitto ? ctx.mosquitto.version : 'mosquitto not used'}; aedes ${ctx.aedesVersion}; perch: ${ctx.perchDown ? `not available (${ctx.perchDown})` : bs.includes('perch') ? `bin/perch.js (package ${ctx.perchVersion})` : 'not run'}`,
    `- method: ${opts.reps} rep(s), brokers interleaved, medians; a fresh broker per run; throughput counted at the subscribers over ${WINDOW_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up; 64-byte payloads`,
    `- scenarios: ${scList}`,
    '',
    ...lines,
    '',
    '⚠ = the load generator used more than half a core (median): the figure may be limited by the generator, not the broker.',
    '',
    'Notes:',
    '',
    `- Mosquitto config: ${br.mosquittoConf('PORT').trim().split('\n').join('; ')}. Aedes: default options, in-memory persistence (bench/aedes-server.js). perch: \`node bin/perch.js start --host 127.0.0.1 --port PORT --data-dir TMPDIR --allow-anonymous\`.`,
  ]
  if (opts.scenarios.includes('conns')) {
    out.push(
      `- conns: ${ctx.conns} connections (broker fd limit ${ctx.fdLimit}${ctx.conns < CONNS ? `; ${CONNS} would not fit, so the count is capped` : ''}), keepalive 600 s, at most 100 handshakes in flight; RSS per connection = (RSS after all connected + 1 s - RSS before) / connections. The ⚠ flag there concerns the connect time only.`,
    )
  }
  if (opts.scenarios.includes('pairs-qos1') && bs.includes('perch') && !ctx.perchDown) {
    out.push('- pairs-qos1, perch: not-yet-durable: run with the defaults of `perch start`; acks are not verified to follow a commit.')
  }
  if (opts.scenarios.includes('latency')) out.push('- latency: publishers and subscriber in one generator process, one 1 ms pacing tick; send time = process.hrtime.bigint() written into the payload just before the write.')
  for (const n of notes) out.push(`- ${n}`)
  out.push('', '<details><summary>per-rep figures</summary>', '', ...detail, '', '</details>', '')
  return out.join('\n')
}

const MARKER = '<!-- bench/run.js inserts new runs below this line, newest first -->'

function prepend(file, section) {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(MARKER)
  const text = at >= 0 ? `${old.slice(0, at + MARKER.length)}\n\n${section}\n${old.slice(at + MARKER.length).replace(/^\n+/, '')}` : `${section}\n${old}`
  writeFileSync(file, text)
}

// --- main --------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const ctx = {
    command: ['node bench/run.js', ...process.argv.slice(2)].join(' '),
    tmp: mkdtempSync(path.join(os.tmpdir(), 'perch-bench-')),
    mosquitto: null,
    perchDown: null,
    aedesVersion: JSON.parse(readFileSync(path.join(br.ROOT, 'node_modules', 'aedes', 'package.json'), 'utf8')).version,
    perchVersion: JSON.parse(readFileSync(path.join(br.ROOT, 'package.json'), 'utf8')).version,
    fdLimit: br.brokerFdLimit(),
  }
  process.on('exit', () => rmSync(ctx.tmp, { recursive: true, force: true }))
  ctx.conns = Math.min(CONNS, ctx.fdLimit - 64)
  if (opts.brokers.includes('mosquitto')) {
    ctx.mosquitto = br.mosquittoPath()
    if (!ctx.mosquitto) {
      console.error('bench: mosquitto not found (looked on PATH and in /usr/sbin). Every figure is a ratio to Mosquitto: install it (Debian: apt-get install -y mosquitto) or pass --brokers without mosquitto.')
      process.exit(2)
    }
  }
  if (opts.brokers.includes('perch')) ctx.perchDown = br.perchAvailable()

  const results = {}
  for (const scName of opts.scenarios) {
    results[scName] = Object.fromEntries(opts.brokers.map((b) => [b, []]))
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const name of opts.brokers) {
        if (name === 'perch' && ctx.perchDown) continue
        const tag = `[${scName} ${rep}/${opts.reps}] ${name}`
        try {
          const r = await runOne(name, scName, ctx)
          results[scName][name].push(r)
          const [key, label, , fmt] = SCENARIOS[scName].metrics[0]
          const cpu = r.cpu === null ? '' : ` (generator ${r.cpu.toFixed(2)} cores${r.brokerCpu != null ? `, broker ${r.brokerCpu.toFixed(2)}` : ''})`
          console.error(`${tag}: ${fmt(r.values[key])} ${label}${cpu}${r.note ? `; ${r.note}` : ''}`)
        } catch (err) {
          if (name === 'perch' && err.startup) {
            ctx.perchDown = `did not start: ${err.message}`.slice(0, 300)
            console.error(`${tag}: not available: ${ctx.perchDown}`)
            continue
          }
          results[scName][name].push({ error: err.message.replace(/\s+/g, ' ').slice(0, 300) })
          console.error(`${tag}: failed: ${err.message}`)
        }
      }
    }
  }
  const section = report(opts, ctx, results)
  console.log(section)
  if (opts.out) {
    prepend(opts.out, section)
    console.error(`bench: prepended to ${opts.out}`)
  }
}

process.on('exit', br.killAll)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`bench: ${sig}, stopping brokers and generators`)
    process.exit(130)
  })
}
main().catch((err) => {
  console.error(`bench: ${err.message}`)
  process.exit(1)
})
