// Release tarballs on a gateway: their sizes, the time from exec to the first CONNACK and the
// idle RSS of the release's own `bin/perch` (x64 natively, arm64 and armhf under qemu-user
// with a Raspberry Pi CPU model), next to Mosquitto's, measured natively in the same run.
// Usage: node bench/dist.js [--reps N] [--idle SECONDS] [--out bench/RESULTS.md]
// Needs the tarballs of scripts/dist.sh in dist/; targets without a tarball are skipped.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { connect } from './mqtt.js'
import { machine, median, prependSection, sh } from './report.js'

const { values } = parseArgs({ options: { reps: { type: 'string', default: '5' }, idle: { type: 'string', default: '10' }, out: { type: 'string' } } })
const REPS = Number(values.reps)
const IDLE_MS = Number(values.idle) * 1000
const ROOT = new URL('..', import.meta.url).pathname
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version
const QEMU = {
  arm64: { bin: 'qemu-aarch64-static', cpu: 'cortex-a53', prefix: '/usr/aarch64-linux-gnu' },
  armhf: { bin: 'qemu-arm-static', cpu: 'cortex-a7', prefix: '/usr/arm-linux-gnueabihf' },
}
/** A 3.1.1 CONNECT (clean session, keepalive 60) as the admin account. */
function connectPacket(password) {
  return connect('bench1', { keepalive: 60, username: 'admin', password })
}

/** The first start writes admin-password into the data directory; undefined until it has. */
function adminPassword(dataDir) {
  try {
    return /^password: (.+)$/m.exec(readFileSync(join(dataDir, 'admin-password'), 'utf8'))?.[1]
  } catch {
    return undefined
  }
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Resolves with the CONNACK's return code, or null when nothing listens yet. */
function tryConnack(port, packet) {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: '127.0.0.1', port })
    const done = (v) => {
      sock.destroy()
      resolve(v)
    }
    sock.once('connect', () => sock.write(packet))
    sock.once('data', (d) => done(d[0] === 0x20 ? d[3] : null))
    sock.once('error', () => done(null))
    sock.setTimeout(5000, () => done(null))
  })
}

function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : null
}

/** Starts a broker, polls until a CONNACK arrives, idles, reads RSS, stops it. */
async function measure(cmd, args, env, port, packet) {
  const t0 = performance.now()
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  let code = null
  while (code === null) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}: ${stderr}`)
    code = await tryConnack(port, packet())
    if (code === null) await new Promise((r) => setTimeout(r, 5))
    if (performance.now() - t0 > 120_000) throw new Error(`${cmd}: no CONNACK within 120 s`)
  }
  const connackMs = performance.now() - t0
  if (code !== 0) throw new Error(`${cmd}: CONNACK return code ${code}`)
  await new Promise((r) => setTimeout(r, IDLE_MS))
  const rss = rssMb(child.pid)
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  return { connackMs, rss }
}

/** RSS of the bundled Node doing nothing (a timer), as the floor under perch's figure. */
async function bareNodeRss(target, release) {
  const node = join(release, 'node/bin/node')
  const script = ['-e', 'setInterval(() => {}, 1000)']
  const q = QEMU[target]
  const child = target === 'x64' ? spawn(node, script, { stdio: 'ignore' }) : spawn(q.bin, [node, ...script], { env: { ...process.env, QEMU_CPU: q.cpu, QEMU_LD_PREFIX: q.prefix }, stdio: 'ignore' })
  await new Promise((r) => setTimeout(r, IDLE_MS + (target === 'x64' ? 500 : 5000)))
  const rss = rssMb(child.pid)
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
  return rss
}

function unpack(target) {
  const tarball = join(ROOT, 'dist', `perch-${VERSION}-linux-${target}.tar.xz`)
  if (!existsSync(tarball)) return undefined
  const dir = mkdtempSync(join(tmpdir(), `perch-bench-${target}-`))
  spawnSync('tar', ['-xJf', tarball, '-C', dir])
  return { tarball, dir, release: join(dir, 'perch') }
}

async function perchRun(target, release, dataDir, port) {
  // The embedded defaults (accounts mode): the CONNECT waits for the admin password file,
  // which the first start writes before it listens.
  const args = ['start', '--port', String(port), '--data-dir', dataDir]
  const packet = () => connectPacket(adminPassword(dataDir) ?? 'not-yet')
  if (target === 'x64') return measure(join(release, 'bin/perch'), args, {}, port, packet)
  const q = QEMU[target]
  // The launcher's own Node flags and malloc setting, since qemu runs the bundled node directly.
  const flags = /^NODE_FLAGS="(.*)"$/m.exec(readFileSync(join(release, 'bin/perch'), 'utf8'))?.[1]?.split(' ').filter(Boolean) ?? []
  const node = [join(release, 'node/bin/node'), ...flags, join(release, 'app/bin/perch.js')]
  const env = { QEMU_CPU: q.cpu, QEMU_LD_PREFIX: q.prefix, MALLOC_MMAP_THRESHOLD_: /MALLOC_MMAP_THRESHOLD_:=(\d+)/.exec(readFileSync(join(release, 'bin/perch'), 'utf8'))?.[1] ?? '' }
  return measure(q.bin, [...node, ...args], env, port, packet)
}

const started = Date.now()
const rows = []
const sizes = []
const mosq = { first: [], rss: [] }
for (const target of ['x64', 'arm64', 'armhf']) {
  const u = unpack(target)
  if (u === undefined) continue
  if (target !== 'x64' && !existsSync(`/usr/bin/${QEMU[target].bin}`)) continue
  const bytes = statSync(u.tarball).size
  const unpacked = Number(sh(`du -sb ${u.release} | cut -f1`))
  const node = Number(sh(`stat -c %s ${u.release}/node/bin/node`))
  const app = Number(sh(`du -sb ${u.release}/app | cut -f1`))
  sizes.push({ target, bytes, unpacked, node, app })
  const first = []
  const restart = []
  const rss = []
  const rssRestart = []
  const bare = []
  for (let i = 0; i < REPS; i++) {
    bare.push(await bareNodeRss(target, u.release))
    const data = mkdtempSync(join(tmpdir(), 'perch-bench-data-'))
    // The first start creates the databases; the second opens them, as after a reboot.
    const a = await perchRun(target, u.release, data, await freePort())
    const b = await perchRun(target, u.release, data, await freePort())
    first.push(a.connackMs)
    restart.push(b.connackMs)
    rss.push(a.rss)
    rssRestart.push(b.rss)
    rmSync(data, { recursive: true, force: true })
    if (target === 'x64') {
      const port = await freePort()
      // Mosquitto without a password file lets anonymous clients in; it ignores the credentials.
      const m = await measure('mosquitto', ['-p', String(port)], {}, port, () => connectPacket('x'))
      mosq.first.push(m.connackMs)
      mosq.rss.push(m.rss)
    }
    process.stderr.write(`${target} rep ${i + 1}: first ${a.connackMs.toFixed(0)} ms, restart ${b.connackMs.toFixed(0)} ms, RSS ${a.rss?.toFixed(1)} / ${b.rss?.toFixed(1)} MB\n`)
  }
  rows.push({ target, first, restart, rss, rssRestart, bare })
  rmSync(u.dir, { recursive: true, force: true })
}
if (rows.length === 0) {
  console.error(`no tarball in dist/ (scripts/dist.sh x64 arm64 makes them)`)
  process.exit(1)
}

const f = (x, d = 0) => (x === null ? '-' : x.toFixed(d))
const mb = (b) => (b / 1048576).toFixed(1)
const mosqFirst = median(mosq.first)
const mosqRss = median(mosq.rss)
const where = (t) => (t === 'x64' ? 'x64, native' : `${t}, qemu-user ${QEMU[t].cpu}`)
const lines = [
  `## ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: release tarballs, start-up and idle memory`,
  '',
  `- command: \`node bench/dist.js --reps ${REPS} --idle ${IDLE_MS / 1000}${values.out ? ` --out ${values.out}` : ''}\` (${Math.round((Date.now() - started) / 1000)} s in all)`,
  `- machine: ${machine()}; load average ${sh("cut -d' ' -f1-3 /proc/loadavg")} when the run ended`,
  `- versions: perch ${VERSION} (${sh('git rev-parse --short HEAD')}); tarballs from \`scripts/dist.sh\`; ${sh('mosquitto -h | head -1')}; ${sh('qemu-aarch64-static --version | head -1')}`,
  `- method: each target's tarball is unpacked once; each rep runs the release's own \`bin/perch start\` on its embedded defaults (accounts mode, rules and devices on; under qemu-user: its bundled node with the launcher's flags) twice on one fresh data directory, first start (databases and the admin account created) and restart (databases opened); "exec -> CONNACK" is from spawn until a 3.1.1 CONNECT as admin, sent by polling every 5 ms, is answered with CONNACK 0; RSS is VmRSS ${IDLE_MS / 1000} s after that CONNACK with no client connected (the first start's login ran scrypt; the restart's was answered from the login cache); "bare Node" is the release's own node running only a timer, measured the same way, the floor under perch's figure (most of it is the node binary's own pages). Under qemu-user the RSS is the emulator's process, with its translated-code cache included, and the time is emulated; a real Pi 3/4 runs natively and is faster. Mosquitto runs natively on x64 with \`-p PORT\`, the same way. Medians of ${REPS} reps.`,
  '',
  '| tarball | .tar.xz | unpacked | of which Node | of which app + node_modules | target ≤ 25 MB compressed |',
  '| --- | --- | --- | --- | --- | --- |',
  ...sizes.map((s) => `| perch-${VERSION}-linux-${s.target}.tar.xz | **${mb(s.bytes)} MB** | ${mb(s.unpacked)} MB | ${mb(s.node)} MB | ${mb(s.app)} MB | ${s.bytes <= 25 * 1048576 ? 'met' : 'MISSED'} |`),
  '',
  '| where | exec -> CONNACK, first start (ms) | exec -> CONNACK, restart (ms) | idle RSS, first start (MB) | idle RSS, restart (MB) | bare Node idle RSS (MB) | ratio to Mosquitto (first start / RSS) | target RSS ≤ 60 MB | per rep: first / restart (ms) / RSS first / restart (MB) |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) => {
    const rss = median(r.rss)
    const ratio = r.target === 'x64' && mosqFirst !== null && mosqRss !== null ? `${(median(r.first) / mosqFirst).toFixed(1)}x / ${(rss / mosqRss).toFixed(1)}x` : '-'
    const reps = r.first.map((x, i) => `${f(x)} / ${f(r.restart[i])} / ${f(r.rss[i], 1)} / ${f(r.rssRestart[i], 1)}`).join('; ')
    const worst = Math.max(rss, median(r.rssRestart))
    return `| perch, ${where(r.target)} | **${f(median(r.first))}** | ${f(median(r.restart))} | **${f(rss, 1)}** | ${f(median(r.rssRestart), 1)} | ${f(median(r.bare), 1)} | ${ratio} | ${worst <= 60 ? 'met' : 'MISSED'} | ${reps} |`
  }),
  `| Mosquitto, x64, native | ${f(mosqFirst, 1)} | - | ${f(mosqRss, 1)} | - | - | 1 | - | ${mosq.first.map((x, i) => `${f(x, 1)} / ${f(mosq.rss[i], 1)}`).join('; ')} |`,
  '',
]
const section = lines.join('\n')
console.log(section)
if (values.out) prependSection(values.out, section)
