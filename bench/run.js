// Benchmark harness: perch against Mosquitto and Aedes, side by side, in one run.
// Rules are in /work/shared/PERFORMANCE.md; how to read the output is at the top
// of bench/RESULTS.md. Usage: node bench/run.js --help
import { fork } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as br from './brokers.js'
import { machine, median, prependSection } from './report.js'

const USAGE = `usage: node bench/run.js [SCENARIO ...] [--reps N] [--brokers perch,perch-acl,mosquitto,aedes] [--out FILE]
scenarios: fanin fanout pairs pairs-qos1 latency conns idle rules graph (default: all)
--reps N      repetitions per broker, interleaved (default 3, at least 1)
--brokers     comma-separated subset (default perch,perch-acl,mosquitto,aedes);
              perch runs in open mode, perch-acl in accounts mode with ACLs;
              rules and graph run on perch-acl only (the others have neither)
--out FILE    also prepend the report to FILE (e.g. bench/RESULTS.md), keeping history`

const WARMUP_MS = 1000
const WINDOW_MS = 3000
const CONNS = 20000
const CONN_PROCS = 4
const SUSPECT_CPU = 0.5
const NOISY_CPU = 0.3
const DRAIN_TICK_MS = 1
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i))

const k = (v) => `${Math.round(v / 1000)}k`
const int = (v) => String(Math.round(v))
const fix = (d) => (v) => v.toFixed(d)
const rate = (key, label) => [key, label, 'higher', k]

// perch-acl (perch in accounts mode) runs the same scenarios with every client
// logged in as its own account and its topics inside account namespaces, so
// perch accounts / perch open is the cost of logins and ACLs. `job` overrides
// the open-mode job's topics and adds the accounts (subUsers[i], pubUsers[i]);
// `accounts` and `grants` go into accounts.db before perch starts; `denied` is
// a filter the first subscriber's account must be refused (checked before the
// warm-up, so a run that enforces nothing fails instead of looking fast).
const subGrant = (owner, grantee, filter) => ({ owner, grantee, filter, subscribe: true, publish: false })
const PAIRS = 50
const aclPairs = () => ({
  shape: `publisher of pair i is account p<i> publishing /p<i>/t, its subscriber account s<i> subscribes /p<i>/t with a subscribe grant of /p<i>/t from p<i> (${2 * PAIRS} accounts, ${PAIRS} grants; decided once per subscription)`,
  job: { subs: range(PAIRS, (i) => `/p${i}/t`), pubs: range(PAIRS, (i) => `/p${i}/t`), subUsers: range(PAIRS, (i) => `s${i}`), pubUsers: range(PAIRS, (i) => `p${i}`), denied: '/p1/t' },
  accounts: [...range(PAIRS, (i) => `p${i}`), ...range(PAIRS, (i) => `s${i}`)],
  grants: range(PAIRS, (i) => subGrant(`p${i}`, `s${i}`, `/p${i}/t`)),
})
const aclFanin = () => ({
  shape: 'publisher i is account pub<i> publishing /pub<i>/x; the subscriber, account sub, subscribes /+/x with a subscribe grant of /pub<i>/x from each publisher (9 accounts, 8 grants); no single grant covers /+/x, so perch checks the ACL per delivery',
  job: { subs: ['/+/x'], pubs: range(8, (i) => `/pub${i}/x`), subUsers: ['sub'], pubUsers: range(8, (i) => `pub${i}`), denied: '/pub0/denied' },
  accounts: ['sub', ...range(8, (i) => `pub${i}`)],
  grants: range(8, (i) => subGrant(`pub${i}`, 'sub', `/pub${i}/x`)),
})
const aclFanout = () => ({
  shape: 'the publisher is account pub publishing /pub/fanout; subscriber i is account s<i> subscribing /pub/fanout with a subscribe grant of it from pub (51 accounts, 50 grants; decided once per subscription)',
  job: { subs: range(50, () => '/pub/fanout'), pubs: ['/pub/fanout'], subUsers: range(50, (i) => `s${i}`), pubUsers: ['pub'], denied: '/pub/denied' },
  accounts: ['pub', ...range(50, (i) => `s${i}`)],
  grants: range(50, (i) => subGrant('pub', `s${i}`, '/pub/fanout')),
})

// The rules scenario's rule (issue 5): account A's c2f turns /A/in/<i> into /A/out/<i>.
const RULE = {
  account: 'A',
  name: 'c2f',
  source: "export function onMessage(m) { const v = JSON.parse(m.payload); publish('out/' + m.topic.slice(m.topic.lastIndexOf('/') + 1), JSON.stringify({ f: v.c * 9 / 5 + 32 })) }",
  manifest: JSON.stringify({ name: 'c2f', triggers: { topics: ['in/+'] }, limits: {}, inbox: 10000, batch: 100 }),
}
// 8 x 512 in flight: the rule's inbox (10,000, drop-oldest) holds them twice over, so
// a window the load generator reopens after a 1 s stall (a starved broker) still fits
// (8 x 1024 did not: a busy machine's stalls cost ~4,000 dropped inputs).
const RULE_AHEAD = 512

// The graph scenario's graph (the IoTtalk device model): account A's graph `temps`
// links the input feature Temperature of 8 registered thermometers, each through
// the IDF function, to a join over all 8 and on to the output feature Sum of a
// display device. The link order is the order of the join's arguments.
const devId = (n) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const GRAPH_IN = range(8, (i) => ({ id: devId(i + 1), name: `thermo${i}`, features: [{ kind: 'idf', name: 'Temperature', types: ['C'] }] }))
const GRAPH_OUT = { id: devId(100), name: 'display', features: [{ kind: 'odf', name: 'Sum', types: ['C'] }] }
const GRAPH = {
  account: 'A',
  name: 'temps',
  devices: [...GRAPH_IN, GRAPH_OUT],
  join: 'function run(...xs) { return xs.reduce((a, b) => a + b, 0) }',
  links: [
    ...GRAPH_IN.map((d) => ({ device: d.id, kind: 'idf', feature: 'Temperature', func: 'function run(x) { return Math.trunc(Number(x)) }' })),
    { device: GRAPH_OUT.id, kind: 'odf', feature: 'Sum', func: null },
  ],
}
const featureTopic = (d, kind, name) => `/${GRAPH.account}/devices/${d.id}/${kind}/${name}`
// The graph's rule has perch's default inbox (1,000 inputs, drop-oldest) and takes
// batches of 10; the outputs do not tell which publisher they answer, so they are
// credited in send order (loadgen job.pooled). 8 x 96 = 768 in flight at most: a
// window the load generator reopens after a 1 s stall adds at most 96, so two still
// fit in the inbox. The publishers write 32 packets at a time, so each writes again
// once a third of its window is answered (with 64 ahead in writes of 64, a publisher
// waited for its whole batch, and short runs on a busy machine delivered about a
// fifth less).
const GRAPH_AHEAD = 96
const GRAPH_BATCH = 32

const SCENARIOS = {
  fanin: {
    shape: '8 publishers -> 1 subscriber on bench/+, QoS 0',
    how: 'each publisher at most 1536 messages ahead of the subscriber',
    job: { subs: ['bench/+'], pubs: range(8, (i) => `bench/${i}`), qos: 0, maxAhead: 1536 },
    acl: aclFanin(),
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  fanout: {
    shape: '1 publisher -> 50 subscribers on one topic, QoS 0',
    how: 'the publisher at most 2048 messages ahead of the average subscriber',
    job: { subs: range(50, () => 'bench/fanout'), pubs: ['bench/fanout'], qos: 0, maxAhead: 2048, fanout: 50 },
    acl: aclFanout(),
    metrics: [rate('recvPerSec', 'deliveries/s')],
  },
  pairs: {
    shape: '50 publisher/subscriber pairs on distinct topics, QoS 0',
    // Aedes collapses to ~15k msg/s once ~12k messages are queued in it
    // (measured with 256 per pair); 192 still saturates Mosquitto.
    how: 'each publisher at most 192 messages ahead of its subscriber',
    job: { subs: range(50, (i) => `bench/p${i}`), pubs: range(50, (i) => `bench/p${i}`), qos: 0, maxAhead: 192 },
    acl: aclPairs(),
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  'pairs-qos1': {
    shape: '50 pairs, QoS 1 both ways, 16 unacknowledged per publisher, persistent sessions',
    // A 2 ms tick halves the generator's syscalls (0.65 -> 0.35 cores) at the
    // cost of a ceiling of 50 x 16 messages per tick, ~2x Mosquitto here.
    how: 'clients read and ack once per 2 ms tick, so the scenario cannot report more than ~400k msg/s',
    job: { subs: range(50, (i) => `bench/p${i}`), pubs: range(50, (i) => `bench/p${i}`), qos: 1, inflight: 16, clean: false, tickMs: 2 },
    acl: aclPairs(),
    durable: true,
    metrics: [rate('recvPerSec', 'msg/s received')],
  },
  latency: {
    shape: 'fanin paced at 20,000 msg/s total; send time in the payload',
    how: 'sent in 1 ms ticks (~20 messages per tick over the 8 publishers), subscriber reads at once, brokers with TCP_NODELAY (Mosquitto set_tcp_nodelay true, Aedes noDelay); publishers and subscriber in one process, send time = process.hrtime.bigint() written into the payload just before the write',
    job: { subs: ['bench/+'], pubs: range(8, (i) => `bench/${i}`), qos: 0, rate: 20000, latency: true },
    acl: aclFanin(),
    // Nagle on the broker against the subscriber's delayed ACK stalls some
    // runs by 40 ms (p99 jumps from ~0.4 ms to ~35 ms, run to run); latency is
    // measured with the brokers' own TCP_NODELAY switch on.
    nodelay: true,
    metrics: [
      ['p50', 'p50 latency (us)', 'lower', int],
      ['p99', 'p99 latency (us)', 'lower', int],
      ['p999', 'p999 latency (us)', 'lower', int],
      rate('recvPerSec', 'msg/s received (paced 20k)'),
    ],
  },
  conns: {
    shape: `${CONNS} idle connections from ${CONN_PROCS} generator processes`,
    // No `acl`: one account per connection means 20,000 first logins, one
    // scrypt each (tens of ms): that measures scrypt, not the broker.
    aclSkip: `not run: one account per connection would mean ${CONNS} first logins at one scrypt each (tens of ms apiece), a measure of scrypt, not of the broker`,
    metrics: [
      ['connectS', 'time to connect all (s)', 'lower', fix(2)],
      // Memory does not depend on how fast the generator is: never flagged.
      ['kbPerConn', 'RSS per connection (KB)', 'lower', fix(2), false],
      ['rssMB', 'RSS with all connected (MB)', 'lower', fix(1), false],
    ],
  },
  idle: {
    shape: 'broker alone after start',
    // One account, so perch does not create (and scrypt) its first admin at start;
    // the probe connects anonymously and its refusal is the first CONNACK.
    acl: { shape: 'one account in accounts.db; the first CONNACK is the refusal of the anonymous probe', accounts: ['bench'], grants: [] },
    metrics: [
      ['rssMB', 'RSS idle (MB)', 'lower', fix(1)],
      ['startMs', 'exec to first CONNACK (ms)', 'lower', int],
    ],
  },
  rules: {
    shape: `8 publishers -> rule -> 1 subscriber, QoS 0: the publishers send {"c":21.5} to /A/in/<i>, rule ${RULE.name} of account A (triggers in/+, inbox 10000, batch 100) publishes {"f":70.7} to /A/out/<i> for each, the subscriber reads /A/out/+`,
    how: `each publisher at most ${RULE_AHEAD} messages ahead of the subscriber, 8 x ${RULE_AHEAD} in all, under half the rule's inbox of 10,000 (drop-oldest), so none is dropped, even when a stalled window is reopened (the rule's dropped counter is in the notes); before the load the run asks /A/scripts/list until the rule runs (10 s at most), and fails if it does not or if the subscriber receives nothing in the warm-up`,
    // Only perch has rules, and only in accounts mode (a rule belongs to an account).
    only: 'perch-acl',
    skip: 'the rules scenario runs on perch accounts only: Mosquitto and Aedes have no rules, and a rule belongs to an account',
    job: { subs: ['/A/out/+'], pubs: range(8, (i) => `/A/in/${i}`), qos: 0, maxAhead: RULE_AHEAD, payload: '{"c":21.5}', topicIndex: true, rule: { list: '/A/scripts/list', name: RULE.name } },
    acl: {
      shape: `every client logs in as account A (one account, no grants); the rule is stored in TMPDIR/rules.db by bench/acl-setup.js with perch's own RuleStore before perch starts, and perch loads it at start; instead of a refused filter, the run checks that the rule runs`,
      job: { subUsers: ['A'], pubUsers: range(8, () => 'A') },
      accounts: ['A'],
      grants: [],
      rules: [RULE],
    },
    metrics: [
      rate('recvPerSec', 'rule outputs/s (publish -> rule -> publish)'),
      ['cpuPerK', 'broker CPU-s per 1000 rule inputs', 'lower', (v) => v.toPrecision(3)],
    ],
  },
  graph: {
    shape: `8 publishers -> device graph -> 1 subscriber, QoS 0: the publishers send 21.5 to the input feature Temperature of 8 registered devices (/A/devices/<id>/idf/Temperature); graph ${GRAPH.name} of account A links each through the IDF function \`${GRAPH.links[0].func}\` to the join \`${GRAPH.join}\`, which perch calls with the latest value of every input once each has one, so each input gives one output, 168 (8 x 21), published to the output feature Sum of a display device (/A/devices/<id>/odf/Sum), which the subscriber reads`,
    how: `the outputs do not name the input they answer, so the subscriber's receipts are credited to the publishers in the order their writes were sent (the join's first inputs, before every input has a value, give no output: the window stays at most 7 short); each publisher writes ${GRAPH_BATCH} packets at a time and stays at most ${GRAPH_AHEAD} messages ahead, 8 x ${GRAPH_AHEAD} = ${8 * GRAPH_AHEAD} in all, under the graph rule's inbox of 1,000 (perch's default, drop-oldest; batches of 10) with room for two windows reopened after a stall, so none is dropped (the rule counters of account A, read from perch's /metrics after the window, are in the notes); before the load the run asks /A/graph/${GRAPH.name} (op list) until it answers runs: true (10 s at most), and fails if it does not or if the subscriber receives nothing in the warm-up`,
    only: 'perch-acl',
    skip: 'the graph scenario runs on perch accounts only: Mosquitto and Aedes have no device graphs, and a graph belongs to an account',
    job: {
      subs: [featureTopic(GRAPH_OUT, 'odf', 'Sum')],
      pubs: GRAPH_IN.map((d) => featureTopic(d, 'idf', 'Temperature')),
      qos: 0,
      maxAhead: GRAPH_AHEAD,
      batch: GRAPH_BATCH,
      payload: '21.5',
      pooled: true,
      graph: { topic: `/${GRAPH.account}/graph/${GRAPH.name}` },
    },
    // perch's HTTP endpoint, for the rule counters on /metrics.
    http: true,
    acl: {
      shape: `every client logs in as account A (one account, no grants); the 9 devices, the 2 functions and graph ${GRAPH.name} (8 input links, the join, 1 output link) are stored in TMPDIR/features.db by bench/acl-setup.js with perch's own FeatureStore before perch starts, and perch rebuilds the graph at start (one rule, graph.${GRAPH.name}, in account A's sandbox); perch.json also has \`"http":{"port":PORT}\` for /metrics; instead of a refused filter, the run checks that the graph runs`,
      job: { subUsers: ['A'], pubUsers: range(8, () => 'A') },
      accounts: ['A'],
      grants: [],
      graphs: [GRAPH],
    },
    metrics: [
      rate('recvPerSec', 'graph outputs/s (publish -> IDF -> join -> publish)'),
      ['cpuPerK', 'broker CPU-s per 1000 graph inputs', 'lower', (v) => v.toPrecision(3)],
    ],
  },
}
const BROKERS = ['perch', 'perch-acl', 'mosquitto', 'aedes']
const LABEL = { perch: 'perch', 'perch-acl': 'perch accounts', mosquitto: 'Mosquitto', aedes: 'Aedes' }
const isPerch = (name) => name === 'perch' || name === 'perch-acl'

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
  const job = b.name === 'perch-acl' ? { ...sc.job, ...sc.acl.job, password: br.ACL_PASSWORD } : sc.job
  try {
    gen.send({ mode: 'throughput', port: b.port, warmupMs: WARMUP_MS, windowMs: WINDOW_MS, tickMs: DRAIN_TICK_MS, ...job })
    // Broker CPU over the same window tells whether the broker was saturated.
    await nextMessage(gen, ['window'], 15000 + WARMUP_MS + 5000, 'measurement window')
    const cpu0 = br.cpuSeconds(b.pid)
    const all0 = br.machineBusySeconds()
    const w0 = performance.now()
    const r = await nextMessage(gen, ['result'], WINDOW_MS + 10000, 'result')
    const secs = (performance.now() - w0) / 1000
    const brokerCpu = (br.cpuSeconds(b.pid) - cpu0) / secs
    const otherCpu = Math.max(0, (br.machineBusySeconds() - all0) / secs - brokerCpu - r.cpu)
    const values = { recvPerSec: r.recvPerSec }
    if (sc.job.latency) Object.assign(values, { p50: r.p50, p99: r.p99, p999: r.p999 })
    // One input per output: broker CPU-seconds per second / outputs per second.
    if (sc.job.rule || sc.job.graph) values.cpuPerK = (brokerCpu * 1000) / r.recvPerSec
    // A slow (descheduled) broker stalls windows too: late messages still count.
    const notes = []
    if (r.stalls) notes.push(`${r.stalls} window stall(s) of 1 s, ${r.lost} messages still missing at the end`)
    if (sc.job.rule) {
      const c = r.rule
      notes.push(c ? `rule counters over the whole run: ${c.inputs} inputs in ${c.invocations} sandbox calls (${(c.inputs / c.invocations).toFixed(1)} per call), ${c.dropped} dropped, ${c.errors} errors, ${c.publishesDenied} publishes denied` : 'no rule counters at the end')
    }
    if (sc.job.graph) {
      const c = await br.ruleMetrics(b, GRAPH.account)
      const g = r.graph
      const sent = g ? `${g.sent} inputs published over the whole run` : 'no graph figures at the end'
      const counters = c ? `rule counters of account A on /metrics: ${c.invocations} sandbox calls (about ${g ? (g.sent / c.invocations).toFixed(1) : '?'} inputs per call), ${c.dropped} dropped, ${c.errors} errors` : 'no rule counters on /metrics'
      const errors = g ? `${g.errors} failure(s) on ${sc.job.graph.topic}/error${g.lastError ? ` (the last: ${g.lastError.slice(0, 200)})` : ''}` : ''
      notes.push([sent, counters, errors].filter(Boolean).join(', '))
    }
    const note = notes.length ? notes.join('; ') : null
    return { values, cpu: r.cpu, brokerCpu, otherCpu, note }
  } finally {
    killGenerators([gen])
  }
}

// The broker is stopped before the generators (runOne's `after`), so the
// TIME_WAIT entries land on the broker's side, keyed by a port no later run
// uses, instead of eating the clients' ephemeral ports for the next runs.
async function runConns(b, count, after) {
  await sleep(500)
  const before = br.treeRssKb(b.pid)
  const gens = await forkGenerators(CONN_PROCS)
  after.push(() => killGenerators(gens))
  const share = Math.ceil(count / CONN_PROCS)
  const t0 = performance.now()
  const done = gens.map((g) => nextMessage(g, ['connected'], 120000, 'connections'))
  gens.forEach((g, i) => {
    g.send({ cmd: 'go', port: b.port, count: Math.min(share, count - i * share), concurrency: 25, proc: i })
  })
  const rs = await Promise.all(done)
  const ms = performance.now() - t0
  await sleep(1000)
  const rss = br.treeRssKb(b.pid)
  const ok = rs.reduce((s, r) => s + r.ok, 0)
  const failed = rs.reduce((s, r) => s + r.failed, 0)
  const cpu = rs.reduce((s, r) => s + r.cpu, 0)
  if (ok === 0) throw new Error(`no connection succeeded: ${rs.find((r) => r.firstError)?.firstError}`)
  const note = failed ? `${failed} of ${count} failed (${rs.find((r) => r.firstError).firstError})` : null
  return { values: { connectS: ms / 1000, kbPerConn: (rss - before) / ok, rssMB: rss / 1024 }, cpu, note }
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
  if (name === 'perch-acl') {
    try {
      const r = await br.setupAccounts(dir, { accounts: sc.acl.accounts, grants: sc.acl.grants, rules: sc.acl.rules, graphs: sc.acl.graphs }, ctx.verifier)
      ctx.verifier = r.verifier
    } catch (err) {
      rmSync(dir, { recursive: true, force: true })
      err.startup = true
      throw err
    }
  }
  const b = await br.startBroker(name, { dir, mosquitto: ctx.mosquitto, nofile, nodelay: !!sc.nodelay, durable: !!sc.durable, http: !!sc.http && isPerch(name) })
  const after = []
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
    else if (scName === 'conns') r = await runConns(b, ctx.conns, after)
    else r = await runThroughput(b, sc)
    if (b.exited) throw new Error(`${name} ${b.exited} during the run: ${br.logTail(b)}`)
    return r
  } catch (err) {
    if (b.exited && !err.startup) err.message += ` (${name} ${b.exited}: ${br.logTail(b)})`
    // Why a rule or graph did not load (rule.not-loaded, rule.invalid, graph.not-loaded) is in perch's log.
    else if ((sc.job?.rule || sc.job?.graph) && br.logTail(b)) err.message += ` (${name} log: ${br.logTail(b)})`
    throw err
  } finally {
    await br.stopBroker(b)
    for (const f of after) f()
    rmSync(dir, { recursive: true, force: true })
  }
}

// --- report ------------------------------------------------------------------




function report(opts, ctx, results) {
  const bs = opts.brokers
  const others = bs.includes('mosquitto') ? bs.filter((b) => b !== 'mosquitto') : []
  // The issue's check: perch in accounts mode within 10 % of perch in open mode.
  const aclRatio = bs.includes('perch') && bs.includes('perch-acl')
  const cellFor = (scName, b, key, fmt, load) => {
    const reps = results[scName][b]
    if (reps.length === 0) return 'n/a'
    const v = median(reps.map((r) => r.values?.[key]))
    if (v === null) return 'failed'
    const cpu = median(reps.map((r) => r.cpu))
    const other = median(reps.map((r) => r.otherCpu))
    const okReps = reps.filter((r) => r.values).length
    const flag = load !== false && ((cpu !== null && cpu > SUSPECT_CPU) || (other !== null && other > NOISY_CPU)) ? ' ⚠' : ''
    return `${fmt(v)}${flag}${okReps < reps.length ? ` (${okReps}/${reps.length} reps)` : ''}`
  }
  const lines = []
  const head = ['scenario', 'metric', 'better', ...bs.map((b) => LABEL[b]), ...others.map((b) => `${LABEL[b]} / Mosquitto`)]
  if (aclRatio) head.push(`${LABEL['perch-acl']} / perch open`)
  lines.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`)
  for (const scName of opts.scenarios) {
    for (const [key, label, better, fmt, load] of SCENARIOS[scName].metrics) {
      const row = [scName, label, better]
      for (const b of bs) row.push(cellFor(scName, b, key, fmt, load))
      const base = median(results[scName].mosquitto?.map((r) => r.values?.[key]) ?? [])
      for (const b of others) {
        const v = median(results[scName][b].map((r) => r.values?.[key]))
        row.push(v !== null && base ? `${(v / base).toFixed(2)} x` : 'n/a')
      }
      if (aclRatio) {
        const v = median(results[scName]['perch-acl'].map((r) => r.values?.[key]))
        const open = median(results[scName].perch.map((r) => r.values?.[key]))
        row.push(v !== null && open ? `${(v / open).toFixed(2)} x` : 'n/a')
      }
      lines.push(`| ${row.join(' | ')} |`)
    }
  }

  const detail = [
    '| scenario | broker | first metric, per rep | CPU cores, per rep: generator / broker / other processes |',
    '| --- | --- | --- | --- |',
  ]
  const notes = []
  for (const scName of opts.scenarios) {
    const [key, , , fmt] = SCENARIOS[scName].metrics[0]
    for (const b of bs) {
      const reps = results[scName][b]
      if (reps.length === 0) continue
      const vals = reps.map((r) => (r.values ? fmt(r.values[key]) : 'failed')).join(', ')
      const cores = (x) => (typeof x === 'number' ? x.toFixed(2) : '-')
      const cpus = reps.map((r) => `${cores(r.cpu)} / ${cores(r.brokerCpu)} / ${cores(r.otherCpu)}`).join(', ')
      detail.push(`| ${scName} | ${LABEL[b]} | ${vals} | ${cpus} |`)
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
    `- versions: Node ${process.version}; ${ctx.mosquitto ? ctx.mosquitto.version : 'mosquitto not used'}; aedes ${ctx.aedesVersion}; perch: ${!bs.some(isPerch) ? 'not run' : `package ${ctx.perchVersion}${bs.filter((b) => isPerch(b) && ctx.down[b]).map((b) => `, ${LABEL[b]} not available (${ctx.down[b]})`).join('')}`}`,
    `- method: ${opts.reps} rep(s), brokers interleaved, medians; a fresh broker per run; throughput counted at the subscribers over ${WINDOW_MS / 1000} s after ${WARMUP_MS / 1000} s warm-up; 64-byte payloads${opts.scenarios.includes('rules') ? ' (rules: the JSON in its description)' : ''}${opts.scenarios.includes('graph') ? ' (graph: the number in its description)' : ''}`,
    `- scenarios: ${scList}`,
    '',
    ...lines,
    '',
    `⚠ = suspect: the load generator used more than ${SUSPECT_CPU} core, or other processes on this shared machine more than ${NOISY_CPU} core, during the measurement (medians; per-rep figures below).`,
    '',
    'Notes:',
    '',
    `- Mosquitto config: ${br.mosquittoConf('PORT').trim().split('\n').join('; ')}. Aedes: default options, in-memory persistence (bench/aedes-server.js). perch: \`node ${[...br.perchNodeFlags(), ''].join(' ')}bin/perch.js start --config perch.json --host 127.0.0.1 --port PORT --data-dir TMPDIR --allow-anonymous\` (open mode), perch.json \`${JSON.stringify(br.perchConf('perch'))}\`.`,
  ]
  if (bs.includes('perch-acl')) {
    out.push(
      `- perch accounts: the same perch without \`--allow-anonymous\`, perch.json \`${JSON.stringify(br.perchConf('perch-acl'))}\`; before it starts, bench/acl-setup.js writes the scenario's accounts (one per load-generator client, all with one password, so one scrypt verifier) and subscribe grants into TMPDIR/accounts.db with perch's own AccountStore. Every client logs in with user name = its account; the first login of each account costs perch one scrypt, all before the warm-up. Publishers publish inside their own namespace (\`/<account>/...\`), subscribers read other accounts' topics through grants, and each run first checks that a filter without a grant is refused (SUBACK 0x80). perch accounts / perch open is the cost of accounts and ACLs (the issue asks for at most 10 %: a ratio of at least 0.90 x where higher is better, at most 1.10 x where lower is).`,
    )
    for (const scName of opts.scenarios) {
      const sc = SCENARIOS[scName]
      out.push(`- perch accounts, ${scName}: ${sc.acl ? sc.acl.shape : sc.aclSkip}.`)
    }
  }
  if (opts.scenarios.includes('rules')) {
    const micro = existsSync(path.join(br.ROOT, 'bench', 'rules-sandbox.js'))
      ? ' The sandbox alone, without the broker and MQTT, is measured by the micro-benchmark `node bench/rules-sandbox.js` (rule invocations per second for batches of 1, 10 and 100 through the sandbox host).'
      : ''
    out.push(
      `- rules: perch accounts only, so no Mosquitto or Aedes figure and no ratio in this row (they have no rules). Rule outputs/s = rule invocations per second end to end (one input, one output each); issue 5's first-step target is at least 50,000. Broker CPU-s per 1000 rule inputs = the broker process's CPU (all threads: the event loop and the sandbox worker) over the window / outputs per second x 1000, so it includes receiving each input and delivering each output over MQTT, not only the sandbox.${micro} perch runs with the node options of its launcher's #! line (\`${br.perchNodeFlags().join(' ') || 'none'}\`).`,
    )
  }
  if (opts.scenarios.includes('graph')) {
    out.push(
      `- graph: perch accounts only, so no Mosquitto or Aedes figure and no ratio in this row (they have no device graphs). Graph outputs/s = outputs the subscriber receives per second end to end, one per input: each input goes through its IDF function and the join (a graph is one rule, graph.NAME, in its account's sandbox, its functions in one module). Broker CPU-s per 1000 graph inputs = the broker process's CPU (all threads) over the window / outputs per second x 1000, as for rules; set against the rules row, it is the cost of the graph's generated module (JSON decoding, the functions, the join over the 8 latest values) and of its batches of 10 where the rule takes 100.`,
    )
  }
  if (opts.scenarios.includes('conns')) {
    out.push(
      `- conns: ${ctx.conns} connections (broker fd limit ${ctx.fdLimit}${ctx.conns < CONNS ? `; ${CONNS} would not fit, so the count is capped` : ''}), keepalive 600 s, at most 100 handshakes in flight; RSS per connection = (RSS after all connected + 1 s - RSS before) / connections; client source addresses spread over 127.0.x.y.`,
    )
  }
  if (results['pairs-qos1'] && bs.some((b) => isPerch(b) && results['pairs-qos1'][b].some((r) => r.values))) {
    out.push(
      '- pairs-qos1: durable on both sides: Mosquitto with `persistence true` (it snapshots periodically and acknowledges before writing), perch with its SQLite store (`synchronous=FULL`, group commit; every PUBACK follows the commit of the message for its persistent subscriber).',
    )
  }
  out.push(
    `- load generator (bench/loadgen.js): pre-serialized packets, throughput subscribers read once per ${DRAIN_TICK_MS} ms tick; QoS 0 publishers write 64 packets at a time and stay a bounded number of messages ahead of their subscribers (below); a window stuck for 1 s is presumed lost and reopened, so a broker that drops QoS 0 cannot hang the run.`,
  )
  for (const scName of opts.scenarios) if (SCENARIOS[scName].how) out.push(`- ${scName}: ${SCENARIOS[scName].how}.`)
  for (const n of notes) out.push(`- ${n}`)
  out.push('', '<details><summary>per-rep figures</summary>', '', ...detail, '', '</details>', '')
  return out.join('\n')
}


// --- main --------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const ctx = {
    command: ['node bench/run.js', ...process.argv.slice(2)].join(' '),
    tmp: mkdtempSync(path.join(os.tmpdir(), 'perch-bench-')),
    mosquitto: null,
    // Why a perch variant cannot run (not built, did not start), by broker name.
    down: {},
    // The scrypt verifier bench/acl-setup.js made the first time, reused after.
    verifier: undefined,
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
  for (const b of opts.brokers) if (isPerch(b)) ctx.down[b] = br.perchAvailable(b)

  const results = {}
  for (const scName of opts.scenarios) {
    results[scName] = Object.fromEntries(opts.brokers.map((b) => [b, []]))
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const name of opts.brokers) {
        if (ctx.down[name]) continue
        const tag = `[${scName} ${rep}/${opts.reps}] ${name}`
        if (name === 'perch-acl' && !SCENARIOS[scName].acl) {
          if (rep === 1) console.error(`${tag}: skipped: ${SCENARIOS[scName].aclSkip}`)
          continue
        }
        if (SCENARIOS[scName].only && name !== SCENARIOS[scName].only) {
          if (rep === 1) console.error(`${tag}: skipped: ${SCENARIOS[scName].skip}`)
          continue
        }
        try {
          const r = await runOne(name, scName, ctx)
          results[scName][name].push(r)
          const [key, label, , fmt] = SCENARIOS[scName].metrics[0]
          const cpu = r.cpu === null ? '' : ` (cores: generator ${r.cpu.toFixed(2)}${r.brokerCpu != null ? `, broker ${r.brokerCpu.toFixed(2)}, others ${r.otherCpu.toFixed(2)}` : ''})`
          console.error(`${tag}: ${fmt(r.values[key])} ${label}${cpu}${r.note ? `; ${r.note}` : ''}`)
        } catch (err) {
          if (isPerch(name) && err.startup) {
            ctx.down[name] = `did not start: ${err.message}`.slice(0, 300)
            console.error(`${tag}: not available: ${ctx.down[name]}`)
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
    prependSection(opts.out, section)
    console.error(`bench: prepended to ${opts.out}`)
  }
}

process.on('exit', br.killAll)
process.on('uncaughtException', (err) => {
  console.error(err)
  process.exit(1)
})
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
