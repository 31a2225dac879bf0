// Central sync benchmark: a gateway perch pulling 10,000 accounts, 20,000 grants and 1,000 rules
// from a throwaway MariaDB, then 1,000 changes, while a latency probe publishes through the
// broker every 5 ms. Rules of measurement: /work/shared/PERFORMANCE.md; the sync design:
// /work/shared/notes/sync.md. Usage: node bench/sync.js --help
import { fork, spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import * as br from './brokers.js'
import { machine, median, prependSection } from './report.js'
import { MARIADB_OPTIONS, mariadbVersion, startMariaDb } from './sync-mariadb.js'

const USAGE = `usage: node bench/sync.js [--reps N] [--out FILE] [--rule-accounts N] [--keep-logs DIR]
--reps N           repetitions, each with a fresh central database and a fresh perch data dir (default 3)
--out FILE         also prepend the report to FILE (e.g. bench/RESULTS.md), keeping history
--rule-accounts N  spread the 1,000 rules over N accounts (default 1000: one rule per account)
--keep-logs DIR    copy perch's log of each rep into DIR
SYNC_BENCH_PERCH_FLAGS adds node options to perch (e.g. --cpu-prof --cpu-prof-dir=DIR).
Needs mariadbd and mariadb-install-db (Debian: apt-get install mariadb-server) and a built perch
(npx tsc -p tsconfig.build.json).`

// The central data set: gateway g1 sees ACCOUNTS accounts, two grants each, and RULES rules
// spread evenly over --rule-accounts of them; gateway g2 has OTHER_ACCOUNTS accounts (and their
// grants and OTHER_RULES rules) that g1 must not see.
const ACCOUNTS = 10000
const RULES = 1000
const OTHER_ACCOUNTS = 2000
const OTHER_RULES = 100
const BATCH = 1000
const PASSWORD = 'bench-password'
const PROBE_USER = 'probe'
const PROBE_PASSWORD = 'probe-password'
const PROBE_PERIOD_MS = 5
const SYNC_INTERVAL_S = 1
const IDLE_GAP_MS = 1000
const IDLE_MAX_MS = 15000
const TAIL_MS = 500
const DONE_TIMEOUT_MS = 120000
const RULE_SOURCE = "export function onMessage(msg) { publish('out', msg.payload) }"
const RULE_MANIFEST = JSON.stringify({ triggers: { topics: ['in/#'] } })

const wall = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const range = (n, f) => Array.from({ length: n }, (_, i) => f(i))
const acc = (i) => `a${String(i).padStart(5, '0')}`
const other = (i) => `b${String(i).padStart(5, '0')}`

// --- cleanup: everything started is killed, every temp dir removed, even on failure ----------

const dirs = new Set()
let mariadb
let perch
let probe

function cleanupNow() {
  try {
    probe?.kill('SIGKILL')
  } catch {}
  br.killAll()
  try {
    if (mariadb?.pid) process.kill(mariadb.pid, 'SIGKILL')
  } catch {}
  for (const d of [...dirs, ...(mariadb ? [mariadb.dir] : [])]) rmSync(d, { recursive: true, force: true })
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\n${sig}: cleaning up`)
    cleanupNow()
    process.exit(130)
  })
}

// --- args -------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { reps: 3, out: undefined, ruleAccounts: RULES, keepLogs: undefined }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else if (a === '--reps') opts.reps = Number(argv[++i])
    else if (a === '--out') opts.out = argv[++i]
    else if (a === '--rule-accounts') opts.ruleAccounts = Number(argv[++i])
    else if (a === '--keep-logs') opts.keepLogs = path.resolve(argv[++i])
    else {
      console.error(`unknown argument ${a}\n${USAGE}`)
      process.exit(2)
    }
  }
  if (!Number.isInteger(opts.reps) || opts.reps < 1) {
    console.error('--reps takes a whole number of at least 1')
    process.exit(2)
  }
  if (!Number.isInteger(opts.ruleAccounts) || opts.ruleAccounts < 1 || opts.ruleAccounts > RULES) {
    console.error(`--rule-accounts takes a whole number from 1 to ${RULES}`)
    process.exit(2)
  }
  if (opts.out === '') opts.out = undefined
  return opts
}

// --- central ----------------------------------------------------------------------------------

const load = (rel) => import(pathToFileURL(path.join(br.PERCH_DIST, rel)).href)

async function insertRows(conn, sql, rows) {
  for (let i = 0; i < rows.length; i += BATCH) await conn.query(sql, [rows.slice(i, i + BATCH)])
}

async function inTransaction(conn, fn) {
  await conn.beginTransaction()
  try {
    await fn()
    await conn.commit()
  } catch (e) {
    await conn.rollback().catch(() => {})
    throw e
  }
}

async function counter(conn) {
  const [[row]] = await conn.query('SELECT v FROM sync_clock WHERE id = 1')
  return Number(row.v)
}

// A fresh central database for one rep: schema, gateways g1 and g2 with their MySQL users, and
// the data set. Returns what the gateway needs and how long the fill took.
async function createCentral(rep, schema, verifier, plan) {
  const db = `central_r${rep}`
  const users = { g1: `gw1_r${rep}`, g2: `gw2_r${rep}` }
  const gwPassword = `gw-secret-${rep}`
  const root = await mariadb.root()
  try {
    await root.query(`CREATE DATABASE ${db}`)
    await root.query(`USE ${db}`)
    const t0 = performance.now()
    for (const stmt of schema.CENTRAL_MIGRATIONS[0]) await root.query(stmt)
    await root.query(schema.SCHEMA_TABLE)
    await root.query('INSERT INTO perch_schema (id, version) VALUES (1, ?)', [schema.CENTRAL_MIGRATIONS.length])
    const gw = {}
    for (const [name, user] of Object.entries(users)) {
      const [r] = await root.query('INSERT INTO gateways (name, db_user) VALUES (?, ?)', [name, user])
      gw[name] = r.insertId
      await root.query(`CREATE USER '${user}'@'%' IDENTIFIED BY '${gwPassword}'`)
      for (const v of schema.GATEWAY_VIEWS) await root.query(`GRANT SELECT ON ${db}.${v} TO '${user}'@'%'`)
    }
    const schemaMs = performance.now() - t0

    const t1 = performance.now()
    const fill = async (gwId, n, name, rules) => {
      await inTransaction(root, () =>
        insertRows(
          root,
          'INSERT INTO accounts (name, verifier) VALUES ?',
          range(n, (i) => [name(i), verifier]),
        ),
      )
      await inTransaction(root, () =>
        insertRows(
          root,
          'INSERT INTO gateway_accounts (gateway_id, account) VALUES ?',
          range(n, (i) => [gwId, name(i)]),
        ),
      )
      // Two grants per account, to other accounts, inside the owner's namespace.
      const grants = range(n, (i) => [
        [name(i), name((i + 1) % n), `/${name(i)}/out/#`, 0, 1],
        [name(i), name((i + 7) % n), `/${name(i)}/cmd/+`, 1, 0],
      ]).flat()
      await inTransaction(root, () => insertRows(root, 'INSERT INTO grants (owner, grantee, filter, publish, subscribe) VALUES ?', grants))
      const rows = rules.map((x) => [x.account, x.name, RULE_SOURCE, RULE_MANIFEST])
      await inTransaction(root, () => insertRows(root, 'INSERT INTO rules (account, name, source, manifest) VALUES ?', rows))
    }
    await fill(gw.g1, ACCOUNTS, acc, plan.rules)
    await fill(gw.g2, OTHER_ACCOUNTS, other, spreadRules(OTHER_RULES, OTHER_RULES, OTHER_ACCOUNTS, other))
    const fillMs = performance.now() - t1
    const [[{ n: logRows }]] = await root.query('SELECT COUNT(*) AS n FROM change_log')
    return {
      db,
      gw,
      url: `mysql://${users.g1}:${gwPassword}@127.0.0.1:${mariadb.port}/${db}`,
      users,
      schemaMs,
      fillMs,
      counter: await counter(root),
      logRows: Number(logRows),
    }
  } finally {
    await root.end()
  }
}

async function dropCentral(central) {
  const root = await mariadb.root()
  try {
    await root.query(`DROP DATABASE ${central.db}`)
    for (const u of Object.values(central.users)) await root.query(`DROP USER '${u}'@'%'`)
  } finally {
    await root.end()
  }
}

// `count` rules over `over` of the `n` accounts, evenly spaced: rule k on account (k mod over) * n / over.
function spreadRules(count, over, n, name) {
  const step = Math.floor(n / over)
  return range(count, (k) => ({ account: name((k % over) * step), name: `r${k}` }))
}

// The data set and the 1,000 changes, in six transactions (one per kind): 400 password
// changes, 200 grants added (200 owners), 100 grants deleted, 100 rules edited, 100 accounts
// added and assigned, 100 accounts un-assigned (with the rules they have). With the default
// spread the keys are disjoint: 1,000 keys for g1.
function makePlan(ruleAccounts) {
  const rules = spreadRules(RULES, ruleAccounts, ACCOUNTS, acc)
  const unassigned = range(100, (i) => acc(ACCOUNTS - 100 + i))
  const gone = new Set(unassigned)
  return {
    ruleAccounts,
    rules,
    changes: {
      passwords: range(400, (i) => acc(1 + 2 * i)), // odd accounts 1..799
      grantAdds: range(200, (i) => 1000 + i),
      grantDels: range(100, (i) => 2000 + i),
      ruleEdits: rules
        .slice(300)
        .filter((x) => !gone.has(x.account))
        .slice(0, 100),
      added: range(100, (i) => `c${String(i).padStart(5, '0')}`),
      unassigned,
    },
    unassignedRules: rules.filter((x) => gone.has(x.account)).length,
  }
}

async function applyChanges(central, verifier2, verifier, changes) {
  const root = await mariadb.root(central.db)
  try {
    const t0 = wall()
    await inTransaction(root, () => root.query('UPDATE accounts SET verifier = ? WHERE name IN (?)', [verifier2, changes.passwords]))
    await inTransaction(root, () =>
      root.query('INSERT INTO grants (owner, grantee, filter, publish, subscribe) VALUES ?', [changes.grantAdds.map((i) => [acc(i), acc(i + 2), `/${acc(i)}/extra`, 1, 1])]),
    )
    await inTransaction(root, () =>
      root.query('DELETE FROM grants WHERE (owner, grantee, filter) IN (?)', [changes.grantDels.map((i) => [acc(i), acc((i + 1) % ACCOUNTS), `/${acc(i)}/out/#`])]),
    )
    await inTransaction(root, () =>
      root.query("UPDATE rules SET source = CONCAT(source, ' // v2') WHERE (account, name) IN (?)", [changes.ruleEdits.map((x) => [x.account, x.name])]),
    )
    await inTransaction(root, async () => {
      await root.query('INSERT INTO accounts (name, verifier) VALUES ?', [changes.added.map((n) => [n, verifier])])
      await root.query('INSERT INTO gateway_accounts (gateway_id, account) VALUES ?', [changes.added.map((n) => [central.gw.g1, n])])
    })
    await inTransaction(root, () => root.query('DELETE FROM gateway_accounts WHERE gateway_id = ? AND account IN (?)', [central.gw.g1, changes.unassigned]))
    const t1 = wall()
    return { t0, t1, counter: await counter(root) }
  } finally {
    await root.end()
  }
}

// --- perch --------------------------------------------------------------------------------------

// perch's log, read as it grows: one JSON event per line, with its time in ms.
class LogTail {
  constructor(file) {
    this.file = file
    this.offset = 0
    this.rest = ''
    this.events = []
  }

  poll() {
    let fd
    try {
      fd = openSync(this.file, 'r')
    } catch {
      return this.events
    }
    try {
      const buf = Buffer.alloc(1 << 20)
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, this.offset)
        if (n <= 0) break
        this.offset += n
        const lines = (this.rest + buf.toString('utf8', 0, n)).split('\n')
        this.rest = lines.pop()
        for (const line of lines) {
          if (!line.startsWith('{')) continue
          try {
            const e = JSON.parse(line)
            e.t = Date.parse(e.time)
            this.events.push(e)
          } catch {}
        }
      }
    } finally {
      closeSync(fd)
    }
    return this.events
  }

  count(event, since = 0) {
    return this.events.filter((e) => e.event === event && e.t >= since).length
  }

  last(event, since = 0) {
    let t
    for (const e of this.events) if (e.event === event && e.t >= since) t = e.t
    return t
  }
}

function readStatus(dataDir) {
  try {
    return JSON.parse(readFileSync(path.join(dataDir, 'sync-status.json'), 'utf8'))
  } catch {
    return undefined
  }
}

async function waitFor(what, fn, timeoutMs = DONE_TIMEOUT_MS, stepMs = 10) {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const v = fn()
    if (v) return v
    if (perch?.exited) throw new Error(`perch ${perch.exited} while waiting for ${what}: ${br.logTail(perch, 1500)}`)
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(stepMs)
  }
}

function runCli(args) {
  const r = spawnSync(process.execPath, [...br.perchNodeFlags(), br.PERCH_BIN, ...args], { cwd: br.ROOT, encoding: 'utf8', timeout: 30000 })
  if (r.status !== 0) throw new Error(`perch ${args.join(' ')} failed: ${(r.stderr || r.stdout || r.error?.message || '').trim()}`)
  return r.stdout
}

// The probe's figures for [from, to].
let statsId = 0
function probeStats(from, to) {
  const id = ++statsId
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the latency probe did not answer')), 5000)
    const on = (m) => {
      if (m.type === 'stats' && m.id === id) {
        clearTimeout(t)
        probe.off('message', on)
        resolve(m)
      }
    }
    probe.on('message', on)
    probe.send({ type: 'stats', id, from, to })
  })
}

const cpu = (pid) => (pid ? (br.cpuSeconds(pid) ?? 0) : 0)
function cpuMark() {
  return { perch: cpu(perch?.pid), mariadb: cpu(mariadb?.pid), machine: br.machineBusySeconds(), at: wall() }
}
function cpuSpan(a, b) {
  const secs = (b.at - a.at) / 1000
  const p = b.perch - a.perch
  const d = b.mariadb - a.mariadb
  // Cores: CPU-seconds per second of the window. "others" is everything but perch and mariadbd
  // (the probe and this harness included).
  return { perch: p / secs, mariadb: d / secs, others: Math.max(0, b.machine - a.machine - p - d) / secs }
}

function fileSize(f) {
  try {
    return statSync(f).size
  } catch {
    return 0
  }
}

const EXPECTED_ACCOUNTS = ACCOUNTS + 1 // with the probe's local account

function vmRssKb(pid) {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
  } catch {
    return 0
  }
}

// Node options for perch on top of its launcher's (SYNC_BENCH_PERCH_FLAGS, e.g. --cpu-prof
// --cpu-prof-dir=/tmp/prof, to see where the broker's stalls come from).
const EXTRA_PERCH_FLAGS = (process.env.SYNC_BENCH_PERCH_FLAGS ?? '').split(/\s+/).filter(Boolean)

async function runRep(rep, central, verifiers, opts, plan) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'perch-bench-sync-'))
  dirs.add(dataDir)
  const r = { rep, central: { fillMs: central.fillMs, counter: central.counter, logRows: central.logRows } }
  let rssTimer
  try {
    runCli(['account', 'add', PROBE_USER, '--password', PROBE_PASSWORD, '--data-dir', dataDir])
    const conf = path.join(dataDir, 'perch.json')
    writeFileSync(
      conf,
      JSON.stringify({ log: { level: 'info' }, auth: { mode: 'accounts' }, sync: { url: central.url, interval: SYNC_INTERVAL_S } }, null, 2),
    )
    const port = await br.freePort()
    const logFile = path.join(dataDir, 'perch.log')
    const log = new LogTail(logFile)

    // The probe starts first and retries until perch listens, so it is connected as early as it can.
    probe = fork(path.join(br.ROOT, 'bench', 'sync-probe.js'), [String(port), PROBE_USER, PROBE_PASSWORD, `/${PROBE_USER}/lat`, String(PROBE_PERIOD_MS)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    let probeReadyAt
    let probeError
    probe.on('message', (m) => {
      if (m.type === 'ready') probeReadyAt = m.at
      else if (m.type === 'error') probeError = m.message
    })

    const fd = openSync(logFile, 'a')
    const tExec = wall()
    const child = spawn(
      process.execPath,
      [...br.perchNodeFlags(), ...EXTRA_PERCH_FLAGS, br.PERCH_BIN, 'start', '--config', conf, '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir],
      { cwd: br.ROOT, detached: true, stdio: ['ignore', fd, fd] },
    )
    closeSync(fd)
    perch = { name: 'perch', child, pid: child.pid, exited: null, logFile }
    br.track(child, true)
    child.on('exit', (code, signal) => {
      perch.exited ??= `exited (${signal || `code ${code}`})`
    })
    const cpu0 = { perch: 0, mariadb: cpu(mariadb.pid), machine: br.machineBusySeconds(), at: tExec }
    // perch's RSS over time, to tell what the accounts and what the rule sandboxes take.
    const rss = []
    rssTimer = setInterval(() => rss.push([wall(), vmRssKb(child.pid)]), 100)
    const rssAt = (t) => rss.findLast(([at]) => at <= t)?.[1] ?? 0

    // 1. The initial (full) sync: the worker's status reaches central's counter.
    const st = await waitFor('the initial sync (sync-status.json hwm = central counter)', () => {
      if (probeError) throw new Error(probeError)
      const s = readStatus(dataDir)
      return s && s.state === 'ok' && s.hwm === central.counter ? s : undefined
    })
    // 2. ...and the broker runs on it: accounts reloaded, every rule installed (or refused).
    const reloadedAll = (e) => e.event === 'accounts.reloaded' && e.accounts >= EXPECTED_ACCOUNTS
    await waitFor('perch to load the synced accounts and rules', () => {
      log.poll()
      return log.events.some(reloadedAll) && log.count('rule.installed') + log.count('rule.not-loaded') >= plan.rules.length
    })
    await waitFor('the latency probe', () => probeReadyAt || probeError, 10000)
    if (probeError) throw new Error(probeError)
    const accountsLive = log.events.find(reloadedAll).t
    const rulesLive = Math.max(log.last('rule.installed') ?? 0, log.last('rule.not-loaded') ?? 0)
    // Phase windows: the sync and the accounts reload, then what is left of loading the rules.
    const w1End = Math.max(accountsLive, st.lastOkAt) + TAIL_MS
    const w2End = Math.max(w1End, rulesLive + TAIL_MS)
    await sleep(Math.max(0, w2End - wall()))
    const cpu1 = cpuMark()
    r.initial = {
      attemptStart: st.lastAttemptAt - tExec,
      probeReady: probeReadyAt - tExec,
      done: st.lastOkAt - tExec,
      lastDurationMs: st.lastDurationMs,
      fullSyncs: st.fullSyncs,
      errors: st.errors,
      counts: { accounts: st.accounts, grants: st.grants, rules: st.rules },
      accountsLive: accountsLive - tExec,
      rulesLive: rulesLive - tExec,
      rulesInstalled: log.count('rule.installed'),
      rulesRefused: log.count('rule.not-loaded'),
      firstRuleAt: (log.events.find((e) => e.event === 'rule.installed')?.t ?? Number.NaN) - tExec,
      reloads: log.events.filter((e) => e.event === 'accounts.reloaded').map((e) => ({ t: e.t - tExec, accounts: e.accounts })),
      w1: w1End - tExec,
      w2: w2End - tExec,
      latency: await probeStats(tExec, w2End),
      latency1: await probeStats(tExec, w1End),
      latency2: await probeStats(w1End, w2End),
      cpu: cpuSpan(cpu0, cpu1),
    }
    r.rss = { ready: rssAt(probeReadyAt), accountsLive: rssAt(accountsLive + 150), end: vmRssKb(child.pid), peak: Math.max(...rss.map(([, kb]) => kb)) }
    r.files = Object.fromEntries(['accounts.db', 'accounts.db-wal', 'rules.db', 'rules.db-wal'].map((f) => [f, fileSize(path.join(dataDir, f))]))

    // 3. An idle window as long as the probe's part of the initial one (capped), after a gap.
    const idleLen = Math.min(w2End - probeReadyAt, IDLE_MAX_MS)
    await sleep(IDLE_GAP_MS)
    const idle0 = cpuMark()
    await sleep(idleLen)
    const idle1 = cpuMark()
    r.idle = { window: idleLen, latency: await probeStats(idle0.at, idle1.at), cpu: cpuSpan(idle0, idle1) }

    // 4. 1,000 changes at central; wait for the worker and then the broker.
    const seenReloads = log.count('accounts.reloaded')
    const ch0 = cpuMark()
    const c = await applyChanges(central, verifiers.second, verifiers.first, plan.changes)
    const st2 = await waitFor('the incremental sync to reach the new counter', () => {
      const s = readStatus(dataDir)
      return s && s.state === 'ok' && s.hwm >= c.counter ? s : undefined
    })
    const reloadAfter = () =>
      log.events
        .filter((e) => e.event === 'accounts.reloaded')
        .slice(seenReloads)
        .find((e) => e.t >= st2.lastOkAt - 5)
    await waitFor('perch to apply the changes', () => {
      log.poll()
      return reloadAfter() && log.count('rule.installed', c.t0) >= plan.changes.ruleEdits.length && log.count('rule.removed', c.t0) >= plan.unassignedRules
    })
    const accountsLive2 = reloadAfter().t
    const rulesLive2 = Math.max(log.last('rule.installed', c.t0), log.last('rule.removed', c.t0))
    const changeEnd = Math.max(accountsLive2, rulesLive2, st2.lastOkAt) + TAIL_MS
    await sleep(Math.max(0, changeEnd - wall()))
    const ch1 = cpuMark()
    r.changes = {
      commitMs: c.t1 - c.t0,
      done: st2.lastOkAt - c.t1,
      lastDurationMs: st2.lastDurationMs,
      incrementalSyncs: st2.incrementalSyncs,
      fullSyncs: st2.fullSyncs,
      counts: { accounts: st2.accounts, grants: st2.grants, rules: st2.rules },
      accountsLive: accountsLive2 - c.t1,
      rulesLive: rulesLive2 - c.t1,
      window: changeEnd - c.t0,
      latency: await probeStats(c.t0, changeEnd),
      cpu: cpuSpan(ch0, ch1),
      ticks: c.counter - central.counter,
    }
    r.events = log.events
      .filter((e) => e.level === 'warn' || e.level === 'error')
      .map((e) => `${e.event}${e.error ? `: ${String(e.error.message ?? e.error).slice(0, 120)}` : ''}`)
    r.tExec = tExec
    r.changeT0 = c.t0
    r.changeT1 = c.t1
    if (opts.keepLogs) writeFileSync(path.join(opts.keepLogs, `perch-rep${rep}.log`), readFileSync(logFile))
    return r
  } finally {
    clearInterval(rssTimer)
    if (probe && probe.exitCode === null) {
      const gone = new Promise((res) => probe.once('exit', res))
      probe.send({ type: 'stop' })
      await Promise.race([gone, sleep(2000)])
      probe.kill('SIGKILL')
    }
    probe = undefined
    if (perch) await br.stopBroker(perch)
    perch = undefined
    rmSync(dataDir, { recursive: true, force: true })
    dirs.delete(dataDir)
  }
}

// --- report -------------------------------------------------------------------------------------




function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(br.ROOT, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

const ms = (v) => (v === null || v === undefined ? '-' : v >= 100 ? String(Math.round(v)) : v >= 10 ? v.toFixed(1) : v.toFixed(2))
const secs = (v) => (v === null || v === undefined ? '-' : (v / 1000).toFixed(2))
const mb = (v) => (v === null || v === undefined ? '-' : (v / 1024).toFixed(0))
const mib = (bytes) => (bytes / 1048576).toFixed(2)
const lat = (L) => `${ms(L.p50)} / ${ms(L.p99)} / ${ms(L.max)}`
const cores = (v) => (typeof v === 'number' ? v.toFixed(2) : '-')
const NOISY = 0.3

// One row: the label, the median, every rep.
function row(reps, label, get, fmt) {
  const vals = reps.map(get)
  return `| ${label} | ${fmt(median(vals))} | ${vals.map(fmt).join(', ')} |`
}
function latRow(reps, label, get) {
  const Ls = reps.map(get)
  const m = { p50: median(Ls.map((L) => L.p50)), p99: median(Ls.map((L) => L.p99)), max: median(Ls.map((L) => L.max)) }
  return `| ${label} | ${lat(m)} | ${Ls.map(lat).join('; ')} |`
}

// Probe messages over 10 ms, per window: initial (both phases) / idle / changes.
function slowRow(reps) {
  const three = (r) => [r.initial.latency.slow, r.idle.latency.slow, r.changes.latency.slow]
  const med = [0, 1, 2].map((k) => median(reps.map((r) => three(r)[k])))
  return `| probe messages slower than 10 ms: initial / idle / changes | ${med.join(' / ')} | ${reps.map((r) => three(r).join(' / ')).join('; ')} |`
}

function renderReport(server, plan, reps, started, totalMs, loadAvg) {
  const command = ['node bench/sync.js', ...process.argv.slice(2)].join(' ')
  const fileRow = (f) => (r) => r.files[f] + r.files[`${f}-wal`]
  const noisy = (get) => (median(reps.map(get)) > NOISY ? ' ⚠' : '')
  const lines = [
    `## ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC: central sync`,
    '',
    `- command: \`${command}\` (${(totalMs / 1000).toFixed(0)} s in all)`,
    `- machine: ${machine()}; load average ${loadAvg} when the run started`,
    `- versions: Node ${process.version}; MariaDB ${server.version.replace(/^.*Ver\s+(\S+).*$/, '$1')}; mysql2 ${pkgVersion('mysql2')}; better-sqlite3 ${pkgVersion('better-sqlite3')}; perch: package ${pkgVersion('..')}`,
    `- method: ${reps.length} rep(s), each with a fresh central database and a fresh perch data dir, medians; times from the sync's own status (\`sync-status.json\`: lastAttemptAt, lastOkAt, lastDurationMs) and perch's log (\`accounts.reloaded\`, \`rule.installed\`, \`rule.removed\`), all wall-clock ms on one machine`,
    `- data: gateway g1 is assigned ${ACCOUNTS.toLocaleString('en')} accounts (one scrypt verifier shared by all), ${(2 * ACCOUNTS).toLocaleString('en')} grants (two per account, to other accounts, filters under the owner) and ${RULES.toLocaleString('en')} rules (\`${RULE_SOURCE}\`, manifest \`${RULE_MANIFEST}\`) on ${plan.ruleAccounts.toLocaleString('en')} accounts; gateway g2 has ${OTHER_ACCOUNTS.toLocaleString('en')} accounts, ${(2 * OTHER_ACCOUNTS).toLocaleString('en')} grants and ${OTHER_RULES} rules that g1 does not see; central counter after the fill ${reps[0].central.counter.toLocaleString('en')}, change_log ${reps[0].central.logRows.toLocaleString('en')} rows`,
    '',
    '| measure | median | per rep |',
    '| --- | --- | --- |',
    row(reps, 'central fill: multi-row INSERTs in 8 transactions, triggers per row (s)', (r) => r.central.fillMs, secs),
    row(reps, 'initial: perch exec -> first sync attempt starts (ms)', (r) => r.initial.attemptStart, ms),
    row(reps, '**initial: perch exec -> sync done** (status hwm = central counter) (ms)', (r) => r.initial.done, ms),
    row(reps, "initial: the sync's lastDurationMs (connect, fetch, apply in the worker) (ms)", (r) => r.initial.lastDurationMs, ms),
    row(reps, 'initial: perch exec -> accounts live in the broker (`accounts.reloaded`) (ms)', (r) => r.initial.accountsLive, ms),
    row(reps, `initial: perch exec -> all ${RULES.toLocaleString('en')} rules running (last \`rule.installed\`) (ms)`, (r) => r.initial.rulesLive, ms),
    latRow(reps, `**probe p50 / p99 / max (ms): initial sync + accounts reload**${noisy((r) => r.initial.cpu.others)}`, (r) => r.initial.latency1),
    latRow(reps, `probe p50 / p99 / max (ms): rules loading, after that`, (r) => r.initial.latency2),
    latRow(reps, `probe p50 / p99 / max (ms): idle, after it${noisy((r) => r.idle.cpu.others)}`, (r) => r.idle.latency),
    slowRow(reps),
    row(reps, 'perch RSS when the probe connected (MB)', (r) => r.rss.ready, mb),
    row(reps, 'perch RSS after the accounts reload (MB)', (r) => r.rss.accountsLive, mb),
    row(reps, '**perch RSS after the initial sync, rules running (MB)**', (r) => r.rss.end, mb),
    row(reps, 'accounts.db + WAL (MiB)', fileRow('accounts.db'), (v) => (v === null ? '-' : mib(v))),
    row(reps, 'rules.db + WAL (MiB)', fileRow('rules.db'), (v) => (v === null ? '-' : mib(v))),
    row(reps, '1,000 changes: 6 transactions at central (ms)', (r) => r.changes.commitMs, ms),
    row(reps, '**changes: last commit -> sync done** (status hwm = new counter) (ms)', (r) => r.changes.done, ms),
    row(reps, "changes: the sync's lastDurationMs (ms)", (r) => r.changes.lastDurationMs, ms),
    row(reps, 'changes: last commit -> accounts live in the broker (ms)', (r) => r.changes.accountsLive, ms),
    row(reps, 'changes: last commit -> rules updated and removed (ms)', (r) => r.changes.rulesLive, ms),
    latRow(reps, `**probe p50 / p99 / max (ms): changes**${noisy((r) => r.changes.cpu.others)}`, (r) => r.changes.latency),
    '',
    `⚠ = other processes on this shared machine used more than ${NOISY} core during that window (median); the per-rep CPU table below has the figures.`,
    '',
    'Notes:',
    '',
    `- MariaDB, started by the bench: \`mariadbd --no-defaults ${MARIADB_OPTIONS.join(' ')}\` on a free loopback port, no binlog, the central schema of dist/sync/central-schema.js; gateway users \`gw1\`/\`gw2\` (per rep) with SELECT on the gateway views only. perch: \`node ${br.perchNodeFlags().join(' ')} bin/perch.js start --config perch.json --host 127.0.0.1 --port PORT --data-dir TMPDIR\`, perch.json \`${JSON.stringify({ log: { level: 'info' }, auth: { mode: 'accounts' }, sync: { url: 'mysql://gw1:...@127.0.0.1:PORT/central', interval: SYNC_INTERVAL_S } })}\`, defaults otherwise (auth.reloadInterval and rules.reloadInterval 1 s: the broker polls accounts.db and rules.db for the worker's commits once a second, so "live" trails "sync done" by up to 1 s by design).`,
    `- probe (bench/sync-probe.js, its own process): one MQTT 3.1.1 client logged in as a local account \`${PROBE_USER}\` (added with \`perch account add\` before the start), subscribed to \`/${PROBE_USER}/lat\` and publishing a 64-byte QoS 0 message there every ${PROBE_PERIOD_MS} ms (self-correcting timer, no catch-up bursts); round trip = send to receive on the same socket. It starts before perch and retries until perch answers, so it is connected from about the time the sync starts (per rep below). "initial sync + accounts reload" = from the probe's first message to ${TAIL_MS} ms after the later of sync done and \`accounts.reloaded\`; "rules loading" = from there to ${TAIL_MS} ms after the last \`rule.installed\`; "idle" = ${IDLE_GAP_MS / 1000} s later, as long as both (at most ${IDLE_MAX_MS / 1000} s), only the 1 s no-op sync polls; "changes" = from the first change's transaction to ${TAIL_MS} ms after the broker applied the last one. A message with no answer after 2 s counts as lost (none were, unless a rep says so below).`,
    `- changes (keys for g1 in brackets): 400 password changes (400) in one UPDATE, 200 grants added (200 owners), 100 grants deleted (100), 100 rules edited (100 rule keys), 100 accounts added and assigned (100), 100 accounts un-assigned (100; ${plan.unassignedRules} of them have a rule); ${reps[0].changes.ticks.toLocaleString('en')} counter ticks; each kind is one transaction. The broker part is done when \`accounts.reloaded\` follows the sync and ${plan.changes.ruleEdits.length} \`rule.installed\` and ${plan.unassignedRules} \`rule.removed\` events are logged.`,
    '- RSS is VmRSS of the perch process (all its threads: broker, sync worker, rule sandbox worker), sampled every 100 ms. SQLite sizes are the database file plus its WAL after the initial sync (the rows are still in the WAL at that point).',
  ]
  const detail = [
    '| rep | probe connected / attempt start / sync done / accounts live / rules live (ms after exec) | worst probe round trips in the initial window (ms after exec: ms) | worst in the changes window (ms after last commit: ms) | perch / mariadbd / other CPU cores: initial; idle; changes | probe timer lateness max (ms): initial / idle / changes | status counts after the changes |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  const notes = []
  for (const r of reps) {
    const i = r.initial
    const c = r.changes
    const worst = (L, t0) => L.worst.map((w) => `${Math.round(w.at - t0)}: ${ms(w.ms)}`).join(', ')
    const cpus = (x) => `${cores(x.perch)} / ${cores(x.mariadb)} / ${cores(x.others)}`
    detail.push(
      `| ${r.rep} | ${[i.probeReady, i.attemptStart, i.done, i.accountsLive, i.rulesLive].map((v) => Math.round(v)).join(' / ')} | ${worst(i.latency, r.tExec)} | ${worst(c.latency, r.changeT1)} | ${cpus(i.cpu)}; ${cpus(r.idle.cpu)}; ${cpus(c.cpu)} | ${[i.latency, r.idle.latency, c.latency].map((L) => ms(L.maxTimerLag)).join(' / ')} | ${c.counts.accounts} accounts, ${c.counts.grants} grants, ${c.counts.rules} rules (${c.fullSyncs} full sync, ${c.incrementalSyncs} incremental) |`,
    )
    const lost = i.latency.lost + r.idle.latency.lost + c.latency.lost
    if (lost) notes.push(`rep ${r.rep}: ${lost} probe messages lost`)
    if (i.rulesRefused) notes.push(`rep ${r.rep}: ${i.rulesRefused} rules refused by perch (\`rule.not-loaded\`)`)
    if (i.errors) notes.push(`rep ${r.rep}: ${i.errors} failed sync attempts before the initial sync`)
    if (i.probeReady > i.attemptStart) notes.push(`rep ${r.rep}: the probe connected ${Math.round(i.probeReady - i.attemptStart)} ms after the first sync attempt started`)
    if (r.events.length) notes.push(`rep ${r.rep}: perch warned: ${[...new Set(r.events)].slice(0, 5).join('; ')}`)
  }
  for (const n of notes) lines.push(`- ${n}`)
  lines.push('', '<details><summary>per-rep figures</summary>', '', ...detail, '', '</details>', '')
  return lines.join('\n')
}


// --- main ---------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const server = mariadbVersion()
  if (!server) {
    console.error('bench/sync.js needs MariaDB: mariadbd was not found (Debian: apt-get install mariadb-server).')
    process.exit(1)
  }
  for (const f of ['sync/central-schema.js', 'auth/password.js', 'app/sync-worker.js']) {
    if (!existsSync(path.join(br.PERCH_DIST, f))) {
      console.error(`${path.relative(br.ROOT, path.join(br.PERCH_DIST, f))} is missing: build perch first (npx tsc -p tsconfig.build.json)`)
      process.exit(1)
    }
  }
  const schema = await load('sync/central-schema.js')
  const { hashPassword } = await load('auth/password.js')
  const started = new Date()
  const loadAvg = os.loadavg().map((x) => x.toFixed(1)).join(' ')
  const plan = makePlan(opts.ruleAccounts)
  const t0 = performance.now()
  // One verifier for every account (one scrypt), and a second one for the password changes.
  const verifiers = { first: await hashPassword(PASSWORD), second: await hashPassword(`${PASSWORD}-2`) }
  console.error('starting MariaDB...')
  mariadb = await startMariaDb({ bin: server.bin })
  const reps = []
  try {
    for (let rep = 1; rep <= opts.reps; rep++) {
      console.error(`rep ${rep}/${opts.reps}: filling central...`)
      const central = await createCentral(rep, schema, verifiers.first, plan)
      console.error(`rep ${rep}/${opts.reps}: central filled in ${(central.fillMs / 1000).toFixed(1)} s (counter ${central.counter}); perch...`)
      reps.push(await runRep(rep, central, verifiers, opts, plan))
      await dropCentral(central)
    }
  } finally {
    await mariadb.stop()
  }
  const report = renderReport(server, plan, reps, started, performance.now() - t0, loadAvg)
  console.log(report)
  if (opts.out) prependSection(opts.out, report)
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench/sync.js failed: ${e?.stack ?? e}`)
    cleanupNow()
    process.exit(1)
  },
)
