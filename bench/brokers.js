// Starting, probing, measuring and stopping the brokers under test, and the
// bookkeeping that guarantees no broker or generator outlives the harness.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import * as m from './mqtt.js'

export const ROOT = path.resolve(import.meta.dirname, '..')
// PERCH_BIN lets one bench a perch built elsewhere (or try the harness itself).
export const PERCH_BIN = process.env.PERCH_BIN ? path.resolve(process.env.PERCH_BIN) : path.join(ROOT, 'bin', 'perch.js')
export const START_TIMEOUT_MS = 10000
// The built modules next to that perch: bench/acl-setup.js writes accounts with them.
export const PERCH_DIST = path.join(path.dirname(PERCH_BIN), '..', 'dist')
// The one password of every benchmark account (perch-acl).
export const ACL_PASSWORD = 'bench-password'

// Everything we spawn, by pid; `group` means it leads its own process group
// (brokers, so a broker's own helpers die with it).
const live = new Map()

export function track(child, group) {
  live.set(child.pid, group)
  child.once('exit', () => live.delete(child.pid))
}

export function killAll() {
  for (const [pid, group] of live) {
    try {
      process.kill(group ? -pid : pid, 'SIGKILL')
    } catch {}
  }
  live.clear()
}

// Debian installs mosquitto in /usr/sbin, which is not on a normal user's PATH.
export function mosquittoPath() {
  for (const p of ['mosquitto', '/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']) {
    const r = spawnSync(p, ['-h'], { encoding: 'utf8' })
    if (!r.error) return { bin: p, version: (r.stdout || r.stderr).split('\n')[0].trim() }
  }
  return null
}

// Settings noted in RESULTS.md: Debian defaults except what a benchmark needs.
// Mosquitto drops QoS 0 for a subscriber with more than max_queued_messages
// queued (default 1000); in fanin the generator can have 8 x 1536 in flight
// for one subscriber, so the limit is raised to measure delivery, not dropping.
// The window, not this limit, bounds the broker's memory.
export function mosquittoConf(port, nodelay = false, durableDir = undefined) {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    ...(durableDir ? ['persistence true', `persistence_location ${durableDir}/`] : ['persistence false']),
    'max_queued_messages 100000',
    'max_inflight_messages 20',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    ...(nodelay ? ['set_tcp_nodelay true'] : []),
    '',
  ].join('\n')
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// Returns { child, pid, port, httpPort, exited, logFile, t0 } where t0 is performance.now()
// taken just before exec, for the exec-to-CONNACK figure. `http` (perch only) turns on
// perch's HTTP endpoint on a free port (httpPort), for its /metrics.
export async function startBroker(name, { dir, mosquitto, nofile, nodelay, durable, http }) {
  const port = await freePort()
  let httpPort
  let cmd
  let args
  if (name === 'mosquitto') {
    const conf = path.join(dir, 'mosquitto.conf')
    writeFileSync(conf, mosquittoConf(port, nodelay, durable ? dir : undefined))
    cmd = mosquitto.bin
    args = ['-c', conf]
  } else if (name === 'aedes') {
    cmd = process.execPath
    args = [path.join(ROOT, 'bench', 'aedes-server.js'), String(port), ...(nodelay ? ['--nodelay'] : [])]
  } else if (name === 'perch' || name === 'perch-acl') {
    cmd = process.execPath
    // Like Mosquitto's connection_messages false: no log line per connection; and room for
    // the conns scenario's 20,000 clients (the default limit is 10,000).
    const conf = path.join(dir, 'perch.json')
    const cfg = perchConf(name)
    if (http) {
      httpPort = await freePort()
      cfg.http = { port: httpPort }
    }
    writeFileSync(conf, JSON.stringify(cfg))
    args = [...perchNodeFlags(), PERCH_BIN, 'start', '--config', conf, '--host', '127.0.0.1', '--port', String(port), '--data-dir', dir]
    // perch: open mode. perch-acl: accounts mode, with the accounts setupAccounts wrote into `dir`.
    if (name === 'perch') args.push('--allow-anonymous')
  } else {
    throw new Error(`unknown broker ${name}`)
  }
  if (nofile) {
    // exec keeps the pid, so RSS and kill still address the broker itself.
    args = ['-c', `ulimit -n ${nofile} && exec "$@"`, 'sh', cmd, ...args]
    cmd = 'sh'
  }
  const logFile = path.join(dir, `${name}.log`)
  const fd = openSync(logFile, 'a')
  const t0 = performance.now()
  const child = spawn(cmd, args, { cwd: ROOT, detached: true, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  const b = { name, child, pid: child.pid, port, httpPort, exited: null, logFile, t0 }
  track(child, true)
  child.on('error', (err) => {
    b.exited = `spawn failed: ${err.message}`
  })
  child.on('exit', (code, signal) => {
    b.exited ??= `exited (${signal || `code ${code}`})`
  })
  return b
}

// The node options on the launcher's `#!/usr/bin/env -S node ...` line: perch runs
// as its launcher would run it (today --disable-wasm-trap-handler, which changes
// the speed of the rule sandboxes), though the harness starts it with node itself.
export function perchNodeFlags() {
  let first = ''
  try {
    first = readFileSync(PERCH_BIN, 'utf8').split('\n', 1)[0]
  } catch {}
  const m = /^#!.*\bnode((?:\s+-\S+)*)\s*$/.exec(first)
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : []
}

// perch's --config: perch-acl differs only in auth.mode (accounts, perch's default).
export function perchConf(name) {
  return { log: { level: 'warn' }, limits: { maxConnections: 50000 }, ...(name === 'perch-acl' ? { auth: { mode: 'accounts' } } : {}) }
}

// Writes spec.accounts (all with ACL_PASSWORD) and spec.grants into dir/accounts.db
// before perch-acl starts, in a child process (bench/acl-setup.js). Pass the
// verifier a previous call returned to skip the scrypt. Resolves { verifier, ms }.
export function setupAccounts(dir, spec, verifier) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'acl-setup.js'), PERCH_DIST, dir], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    track(child, false)
    let out = ''
    let errs = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    child.stderr.on('data', (d) => {
      errs += d
    })
    const t = setTimeout(() => child.kill('SIGKILL'), 30000)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(t)
      if (code === 0) {
        try {
          return resolve(JSON.parse(out))
        } catch {}
      }
      reject(new Error(`account setup failed (${signal || `code ${code}`}): ${errs.trim().slice(-400)}`))
    })
    child.stdin.end(JSON.stringify({ password: ACL_PASSWORD, verifier, ...spec }))
  })
}

// The rule counters of one account from perch's /metrics (summed over the account's
// rules, graph rules included): { invocations, errors, dropped }, or null when the
// endpoint does not answer or lacks them.
export async function ruleMetrics(b, account) {
  if (!b.httpPort) return null
  let text
  try {
    const res = await fetch(`http://127.0.0.1:${b.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) })
    text = await res.text()
  } catch {
    return null
  }
  const out = {}
  for (const key of ['invocations', 'errors', 'dropped']) {
    const re = new RegExp(`^perch_rule_${key}_total\\{account="${account}"\\} (\\S+)$`, 'm')
    const hit = re.exec(text)
    if (!hit) return null
    out[key] = Number(hit[1])
  }
  return out
}

export function logTail(b, n = 400) {
  try {
    return readFileSync(b.logFile, 'utf8').slice(-n).trim()
  } catch {
    return ''
  }
}

export async function stopBroker(b) {
  if (b.exited) return
  const gone = new Promise((r) => b.child.once('exit', r))
  try {
    process.kill(-b.pid, 'SIGTERM')
  } catch {}
  const t = setTimeout(() => {
    try {
      process.kill(-b.pid, 'SIGKILL')
    } catch {}
  }, 2000)
  await gone
  clearTimeout(t)
}

// One CONNECT/CONNACK round trip, retried while the port refuses, bounded by
// timeoutMs. Resolves with performance.now() at CONNACK.
export function probe(b, timeoutMs = START_TIMEOUT_MS) {
  const deadline = performance.now() + timeoutMs
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (b.exited) return reject(new Error(`${b.name} ${b.exited}: ${logTail(b)}`))
      if (performance.now() > deadline) return reject(new Error(`${b.name} did not answer CONNECT within ${timeoutMs} ms`))
      const sock = net.connect({ port: b.port, host: '127.0.0.1' })
      sock.setNoDelay(true)
      let done = false
      const retry = () => {
        if (done) return
        done = true
        sock.destroy()
        setTimeout(attempt, 2)
      }
      sock.on('error', retry)
      sock.on('close', retry)
      sock.setTimeout(1000, retry)
      sock.on(
        'data',
        m.splitter((buf, i) => {
          if (done || buf[i] >> 4 !== m.CONNACK) return
          done = true
          const at = performance.now()
          sock.end(m.DISCONNECT)
          resolve(at)
        }),
      )
      sock.write(m.connect(`probe${process.pid}`))
    }
    attempt()
  })
}

function ppidOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
}

// CPU seconds (user + system) used so far by the broker process itself.
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return null
  }
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

// CPU seconds all processes on the machine have used so far, from /proc/stat:
// what is not the broker or the generator is someone else (shared machines).
export function machineBusySeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK
}

function vmRssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : 0
}

// RSS of the broker and any helper processes it started (perch may run rules
// or bridges out of process), in KB.
export function treeRssKb(pid) {
  const kids = new Map()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const pp = ppidOf(d)
      if (!kids.has(pp)) kids.set(pp, [])
      kids.get(pp).push(Number(d))
    } catch {}
  }
  let total = 0
  const todo = [pid]
  while (todo.length) {
    const p = todo.pop()
    try {
      total += vmRssKb(p)
    } catch {}
    todo.push(...(kids.get(p) || []))
  }
  return total
}

export function perchAvailable(name = 'perch') {
  if (!existsSync(PERCH_BIN)) return `${path.relative(ROOT, PERCH_BIN)} does not exist yet`
  const store = path.join(PERCH_DIST, 'auth', 'account-store.js')
  if (name === 'perch-acl' && !existsSync(store)) return `${path.relative(ROOT, store)} does not exist (build perch first)`
  return null
}

// The fd limit a broker can be given for the conns scenario: 65536 if this
// shell may raise it, else the hard limit we already have.
export function brokerFdLimit() {
  if (spawnSync('sh', ['-c', 'ulimit -n 65536']).status === 0) return 65536
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' })
  const n = Number(r.stdout.trim())
  return Number.isFinite(n) ? n : 1024
}
