// Issue 3, "Durable sessions: nothing acknowledged is ever lost", damaged state: a corrupt,
// truncated or unreadable database gives a clear error naming the file (never a silent empty
// broker); with persistence.onCorrupt 'move-aside' perch moves it aside, says so loudly and
// starts fresh. A full disk (a 1 MB tmpfs mounted inside `unshare -m`) fails publishes with
// a clear reason (v5 PUBACK 0x97, a close in 3.1.1), perch keeps serving, publishing works
// again once space is freed, and the store is not corrupted: after a SIGKILL and a restart
// everything acknowledged is still there.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IPubackPacket } from 'mqtt-packet'
import type { Test } from 'tap'
import t from 'tap'
import { spawnTool } from '../helpers/cli.js'
import { collect, connectClient, connectWithAck, until } from '../helpers/clients.js'
import { Wire } from '../helpers/raw-client.js'
import { ensureBuilt, type PerchProcess, spawnPerch, tempDir } from './perch-process.js'

ensureBuilt()
t.setTimeout(240_000)

const DB = 'perch.db'
const work = tempDir(t, 'perch-damaged-')

/** Every string in a log event, deeply: where a file name may be mentioned. */
function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v)) return v.flatMap(strings)
  if (typeof v === 'object' && v !== null) return Object.values(v).flatMap(strings)
  return []
}

/** Deterministic garbage (no 'SQLite format 3' by chance). */
function garbage(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  let x = seed >>> 0
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

function overwrite(file: string, at: number, bytes: Buffer): void {
  const content = readFileSync(file)
  bytes.copy(content, at)
  writeFileSync(file, content)
}

const SEED_MESSAGES = 300

/**
 * A data directory with real state: a persistent subscriber (v5, 1 h expiry) with
 * SEED_MESSAGES queued 1 KB QoS 1 messages and 50 retained messages, perch stopped cleanly.
 */
async function seededDir(t: Test): Promise<string> {
  const dir = join(work, 'seed')
  const perch = spawnPerch(t, { dataDir: dir })
  const url = `mqtt://127.0.0.1:${await perch.started()}`
  const sub = await connectClient(t, url, { protocolVersion: 5, clientId: 'damaged-sub', clean: true, properties: { sessionExpiryInterval: 3600 } })
  await sub.subscribeAsync('seed/#', { qos: 1 })
  await sub.endAsync()
  const pub = await connectClient(t, url, { protocolVersion: 4, clientId: 'damaged-pub' })
  const body = 'x'.repeat(1000)
  await Promise.all(Array.from({ length: SEED_MESSAGES }, (_, i) => pub.publishAsync(`seed/q/${i}`, `${i}:${body}`, { qos: 1 })))
  await Promise.all(Array.from({ length: 50 }, (_, i) => pub.publishAsync(`seed/r/${i}`, `retained ${i}`, { qos: 1, retain: true })))
  await pub.endAsync()
  const stopped = await perch.stop()
  if (stopped.code !== 0) throw new Error(`seeding perch did not stop cleanly: ${stopped.code ?? stopped.signal} ${stopped.stderr}`)
  const size = statSync(join(dir, DB)).size
  if (size < 100_000) throw new Error(`${DB} is only ${size} bytes after seeding`)
  return dir
}

let seeded: Promise<string> | undefined
let copies = 0
/** A fresh copy of the seeded data directory. */
async function copyOfSeed(t: Test): Promise<string> {
  seeded ??= seededDir(t)
  const dir = join(work, `copy-${++copies}`)
  cpSync(await seeded, dir, { recursive: true })
  return dir
}

interface Damage {
  name: string
  damage(file: string): void
}

const DAMAGES: Damage[] = [
  { name: 'garbage over the header', damage: (f) => overwrite(f, 0, garbage(100, 1)) },
  { name: 'garbage over 16 KB in the middle', damage: (f) => overwrite(f, Math.floor(statSync(f).size / 2) - 8192, garbage(16_384, 2)) },
  { name: 'truncated to half its size', damage: (f) => truncateSync(f, Math.floor(statSync(f).size / 2) + 123) },
]

/** Runs perch to its end on a data directory that must not start; bounded. */
async function mustNotStart(t: Test, dataDir: string, args: string[] = []): Promise<{ code: number | null; text: string; perch: PerchProcess }> {
  const perch = spawnPerch(t, { dataDir, args, timeoutMs: 30_000 })
  await until(() => perch.tool.exited() || perch.event('perch.started') !== undefined, 25_000, 'perch to exit or start')
  if (!perch.tool.exited()) {
    await perch.crash()
    return { code: null, text: `STARTED: ${perch.tool.stdout()}`, perch }
  }
  const r = await perch.tool.done
  return { code: r.code, text: `${r.stderr}\n${r.stdout}`, perch }
}

t.test('control: an undamaged copy of the seeded directory starts with its session and queue intact', async (t) => {
  const dir = await copyOfSeed(t)
  const perch = spawnPerch(t, { dataDir: dir })
  const url = `mqtt://127.0.0.1:${await perch.started()}`
  const { connack, messages } = await connectWithAck(t, url, { protocolVersion: 5, clientId: 'damaged-sub', clean: false, properties: { sessionExpiryInterval: 3600 } })
  t.equal(connack.sessionPresent, true, 'the persistent session is back')
  // seed/# also matched the 50 retained messages, so they were queued too.
  await until(() => messages.length >= SEED_MESSAGES + 50, 10_000, `${SEED_MESSAGES + 50} queued messages`)
  t.equal(new Set(messages.map((m) => m.topic)).size, SEED_MESSAGES + 50, 'every queued message is delivered')
  const probe = await connectClient(t, url, { protocolVersion: 4, clientId: 'damaged-probe' })
  const got = collect(probe)
  await probe.subscribeAsync('seed/r/#', { qos: 1 })
  await until(() => got.length >= 50, 5000, '50 retained messages')
  t.equal(got.length, 50, 'the retained messages are back')
})

for (const d of DAMAGES) {
  t.test(`a database with ${d.name}: perch exits non-zero with an error naming the file and the recovery switch, never a silent empty broker`, async (t) => {
    const dir = await copyOfSeed(t)
    const file = join(dir, DB)
    d.damage(file)
    const damaged = readFileSync(file)
    const r = await mustNotStart(t, dir)
    t.not(r.code, 0, `perch does not start (${r.code === null ? 'it started' : `exit ${r.code}`})`)
    t.notOk(r.perch.event('perch.started'), 'no perch.started')
    t.match(r.text, file, 'the error names the database file')
    t.match(r.text, /onCorrupt|move-aside/, 'the error mentions the recovery switch (persistence.onCorrupt: move-aside)')
    t.ok(existsSync(file) && readFileSync(file).equals(damaged), 'the damaged file is left as it was')
  })

  t.test(`a database with ${d.name} and persistence.onCorrupt 'move-aside': perch moves it aside, says so loudly, starts fresh and serves`, async (t) => {
    const dir = await copyOfSeed(t)
    const file = join(dir, DB)
    d.damage(file)
    const damaged = readFileSync(file)
    const config = join(dir, '..', `move-aside-${copies}.json`)
    writeFileSync(config, JSON.stringify({ persistence: { onCorrupt: 'move-aside' } }))
    const perch = spawnPerch(t, { dataDir: dir, args: ['--config', config] })
    const port = await perch.started()
    const loud = perch.events().filter((e) => e.level === 'warn' || e.level === 'error')
    const named = loud.flatMap(strings).join('\n')
    const moved = readdirSync(dir).filter((f) => f.startsWith(DB) && f !== DB && f !== `${DB}-wal` && f !== `${DB}-shm`)
    t.ok(moved.length > 0, `the damaged file was moved aside within ${dir} (found: ${readdirSync(dir).join(', ')})`)
    const movedFile = moved.find((f) => readFileSync(join(dir, f)).equals(damaged))
    t.ok(movedFile, 'the moved file holds the damaged bytes, untouched')
    t.ok(movedFile !== undefined && named.includes(movedFile), `a warn/error log line names the moved file (${movedFile ?? '?'}): ${JSON.stringify(loud)}`)
    t.ok(named.includes(file) || named.includes(DB), 'and the database it replaced')
    t.ok(existsSync(file), 'a fresh database was created')
    // It serves: the old session is gone (fresh state), new clients work end to end.
    const url = `mqtt://127.0.0.1:${port}`
    const { connack } = await connectWithAck(t, url, { protocolVersion: 5, clientId: 'damaged-sub', clean: false, properties: { sessionExpiryInterval: 3600 } })
    t.equal(connack.sessionPresent, false, 'the state in the damaged file is not pretended to be there')
    const sub = await connectClient(t, url, { protocolVersion: 4, clientId: 'fresh-sub', clean: false })
    const got = collect(sub)
    await sub.subscribeAsync('fresh/#', { qos: 1 })
    const pub = await connectClient(t, url, { protocolVersion: 5, clientId: 'fresh-pub' })
    await pub.publishAsync('fresh/1', 'after moving aside', { qos: 1 })
    await until(() => got.length === 1, 5000, 'a message through the fresh broker')
    t.equal(got[0]?.payload.toString(), 'after moving aside')
    const stopped = await perch.stop()
    t.equal(stopped.code, 0, 'and stops cleanly')
  })
}

t.test('an unreadable database (a directory where perch.db should be): a clear error naming the file, non-zero exit', async (t) => {
  const dir = await copyOfSeed(t)
  const file = join(dir, DB)
  rmSync(file)
  for (const f of [`${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
  mkdirSync(file)
  const r = await mustNotStart(t, dir)
  t.not(r.code, 0, `perch does not start (${r.code === null ? 'it started' : `exit ${r.code}`})`)
  t.match(r.text, file, 'the error names the database file')
  t.ok(statSync(file).isDirectory(), 'and leaves it alone')
})

const asRoot = process.getuid?.() === 0
t.test('an unreadable database (chmod 000): a clear error naming the file, non-zero exit', { skip: asRoot ? 'tests run as root, for whom chmod 000 does not stop reading (the directory case above covers an unopenable file)' : false }, async (t) => {
  const dir = await copyOfSeed(t)
  const file = join(dir, DB)
  execFileSync('chmod', ['000', file])
  const r = await mustNotStart(t, dir)
  t.not(r.code, 0)
  t.match(r.text, file, 'the error names the database file')
})

// ---------------------------------------------------------------------------------------------
// A full disk

/** Whether a tmpfs can be mounted in a private mount namespace here; the reason if not. */
function tmpfsProblem(): string | undefined {
  const dir = join(work, 'probe')
  mkdirSync(dir, { recursive: true })
  const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs '${dir}' && test "$(df -k '${dir}' | tail -1 | awk '{print $2}')" -le 1024`], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  if (r.error !== undefined) return `unshare is not available: ${r.error.message}`
  if (r.status !== 0) return `cannot mount a tmpfs inside unshare -m: ${r.stderr.trim() || `exit ${r.status}`}`
  const n = spawnSync('nsenter', ['--version'], { encoding: 'utf8' })
  if (n.error !== undefined) return `nsenter is not available: ${n.error.message}`
  return undefined
}

const TMPFS_PROBLEM = tmpfsProblem()
if (TMPFS_PROBLEM !== undefined) t.comment(`full-disk tests skipped: ${TMPFS_PROBLEM}`)

/**
 * A 1 MB tmpfs at `dir`, visible only inside a private mount namespace held open by a
 * sleeping process; perch runs in it through nsenter (the returned prefix), so the tmpfs
 * outlives a perch restart. It goes away with the holder at teardown.
 */
async function tmpfsNamespace(t: Test, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true })
  const holder = spawnTool(t, 'unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs '${dir}' && echo "mounted $$" && exec sleep 600`], {
    timeoutMs: 600_000,
  })
  await until(() => /mounted \d+/.test(holder.stdout()) || holder.exited(), 10_000, `the tmpfs namespace (${holder.stderr()})`)
  const pid = /mounted (\d+)/.exec(holder.stdout())?.[1]
  if (pid === undefined) throw new Error(`no namespace: ${holder.stderr()}`)
  return ['nsenter', '-t', pid, '-m']
}

/** Runs a command inside the namespace; throws when it fails. */
function inNamespace(prefix: string[], args: string[]): string {
  const r = spawnSync(prefix[0] ?? 'nsenter', [...prefix.slice(1), ...args], { encoding: 'utf8', timeout: 20_000 })
  if (r.error !== undefined || r.status !== 0) throw new Error(`${args.join(' ')}: ${r.error?.message ?? r.stderr}`)
  return r.stdout
}

let checks = 0
/** Copies the database files out of the tmpfs and runs PRAGMA integrity_check on the copy. */
function integrityCheck(t: Test, prefix: string[], dir: string): void {
  const out = join(work, `integrity-${++checks}`)
  mkdirSync(out)
  inNamespace(prefix, ['sh', '-c', `cp '${dir}'/${DB}* '${out}/'`])
  const r = spawnSync('sqlite3', [join(out, DB), 'PRAGMA integrity_check'], { encoding: 'utf8', timeout: 20_000 })
  if (r.error !== undefined) t.comment(`no sqlite3 for an integrity check: ${r.error.message}`)
  else t.equal(`${r.stdout.trim()}${r.stderr.trim()}`, 'ok', 'PRAGMA integrity_check on a copy of the database: ok')
}

const BIG = 48 * 1024
const FILLER_KB = 320
const bigPayload = (tag: string): string => `${tag}:`.padEnd(BIG, '.')
const tagOf = (payload: Buffer): string => payload.toString().split(':')[0] ?? ''
const ok = (ack: IPubackPacket): boolean => (ack.reasonCode ?? 0) < 0x80

/** Publishes one QoS 1 message on a raw v5 wire and returns its PUBACK. */
async function publishV5(wire: Wire, id: number, topic: string, payload: string): Promise<IPubackPacket> {
  wire.send({ cmd: 'publish', topic, payload, qos: 1, messageId: id, dup: false, retain: false })
  return wire.take('puback', (p) => p.messageId === id, 15_000)
}

/** Publishes until one is acknowledged or `ms` pass; the tags acknowledged. */
async function publishUntilAcked(wire: Wire, nextId: () => number, tag: string, ms: number): Promise<{ acked: boolean; tries: number }> {
  const end = Date.now() + ms
  let tries = 0
  while (Date.now() < end) {
    tries++
    if (ok(await publishV5(wire, nextId(), `full/${tag}`, bigPayload(`${tag}-${tries}`)))) return { acked: true, tries }
    await new Promise((r) => setTimeout(r, 250))
  }
  return { acked: false, tries }
}

t.test(
  'a full disk (1 MB tmpfs): v5 PUBACK 0x97 for what is not stored, a 3.1.1 publisher is disconnected, perch keeps serving, works again once space is freed, and the store survives a SIGKILL',
  { skip: TMPFS_PROBLEM ?? false },
  async (t) => {
    const dir = join(work, 'tmpfs')
    const prefix = await tmpfsNamespace(t, dir)
    // Room an operator can free later: a filler file on the same tmpfs.
    inNamespace(prefix, ['dd', 'if=/dev/zero', `of=${dir}/filler`, 'bs=1k', `count=${FILLER_KB}`])
    let perch = spawnPerch(t, { dataDir: dir, prefix })
    let port = await perch.started()
    const subOptions = { protocolVersion: 5 as const, clientId: 'full-sub', properties: { sessionExpiryInterval: 3600 } }
    const first = await connectClient(t, `mqtt://127.0.0.1:${port}`, { ...subOptions, clean: true })
    await first.subscribeAsync('full/#', { qos: 1 })
    await first.endAsync()

    // Fill the disk: 48 KB QoS 1 messages for the offline persistent subscriber.
    const { wire: pub } = await Wire.connect(t, port, 5, { clientId: 'full-pub-v5' })
    let id = 0
    const nextId = (): number => ++id
    const acked: string[] = []
    const refusedCodes: number[] = []
    const refused: string[] = []
    for (let i = 0; i < 60 && refusedCodes.length < 3; i++) {
      const ack = await publishV5(pub, nextId(), `full/${i}`, bigPayload(`fill-${i}`))
      if (ok(ack)) acked.push(`fill-${i}`)
      else {
        refusedCodes.push(ack.reasonCode ?? 0)
        refused.push(`fill-${i}`)
      }
    }
    t.ok(acked.length > 0, `${acked.length} messages stored before the disk was full`)
    t.ok(refusedCodes.length > 0, `the v5 publisher was refused once the disk filled (${refusedCodes.length} refusals)`)
    t.same([...new Set(refusedCodes)], [0x97], 'every refusal is PUBACK 0x97 quota exceeded')
    t.notOk(pub.isClosed(), 'the v5 publisher stays connected')

    // A 3.1.1 publisher has no reason code: its connection is closed.
    const { wire: old } = await Wire.connect(t, port, 4, { clientId: 'full-pub-v4' })
    for (let i = 0; i < 5 && !old.isClosed(); i++) {
      old.send({ cmd: 'publish', topic: `full/v4/${i}`, payload: bigPayload(`v4-${i}`), qos: 1, messageId: 100 + i, dup: false, retain: false })
      await Promise.race([old.closed, new Promise((r) => setTimeout(r, 3000))])
      if (old.peek('puback', (p) => p.messageId === 100 + i) !== undefined) acked.push(`v4-${i}`)
    }
    t.ok(old.isClosed(), 'the 3.1.1 publisher is disconnected instead of acknowledged')

    // perch keeps running and serving.
    t.notOk(perch.tool.exited(), 'perch is still running')
    const live = await connectClient(t, `mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: 'full-live' })
    const liveGot = collect(live)
    await live.subscribeAsync('live/#', { qos: 0 })
    await live.publishAsync('live/x', 'still serving', { qos: 0 })
    await until(() => liveGot.length === 1, 5000, 'a QoS 0 message through the full broker')
    t.pass('a new client connects and QoS 0 messages flow while the disk is full')

    // The subscriber drains its queue: nothing acknowledged is missing, and that frees space.
    const drained = await connectWithAck(t, `mqtt://127.0.0.1:${port}`, { ...subOptions, clean: false })
    t.equal(drained.connack.sessionPresent, true, 'the subscriber session survived the full disk')
    const drainedTags = (): Set<string> => new Set(drained.messages.map((m) => tagOf(m.payload)))
    await until(() => acked.every((a) => drainedTags().has(a)), 15_000, 'every acknowledged message').catch(() => {})
    t.same(
      acked.filter((a) => !drainedTags().has(a)),
      [],
      `every message acknowledged before the disk filled is delivered (${acked.length})`,
    )
    t.same(
      refused.filter((r) => drainedTags().has(r)),
      [],
      'the messages refused with 0x97 are not delivered: the publisher was told they were not stored (and may send them again)',
    )
    await drained.client.endAsync()
    const afterDrain = await publishUntilAcked(pub, nextId, 'after-drain', 5000)
    t.ok(afterDrain.acked, `publishing works again once the subscriber drained its queue (${afterDrain.tries} tries over 5 s)`)
    const after: string[] = afterDrain.acked ? [`after-drain-${afterDrain.tries}`] : []

    // The operator frees space (the filler file): publishing works, and keeps working.
    inNamespace(prefix, ['rm', `${dir}/filler`])
    const afterRm = await publishUntilAcked(pub, nextId, 'after-rm', 5000)
    t.ok(afterRm.acked, `publishing works again once ${FILLER_KB} KB were freed on the disk (${afterRm.tries} tries)`)
    if (afterRm.acked) after.push(`after-rm-${afterRm.tries}`)
    for (let i = 0; i < 3; i++) {
      const ack = await publishV5(pub, nextId(), `full/more/${i}`, bigPayload(`more-${i}`))
      t.ok(ok(ack), `a 48 KB message ${i + 1}/3 after freeing ${FILLER_KB} KB: PUBACK ${ack.reasonCode ?? 0}`)
      if (ok(ack)) after.push(`more-${i}`)
    }

    // SIGKILL and restart on the same tmpfs: the store is intact, nothing acknowledged is lost.
    const crashed = await perch.crash()
    t.equal(crashed.signal, 'SIGKILL', 'perch killed with SIGKILL')
    perch = spawnPerch(t, { dataDir: dir, prefix })
    try {
      port = await perch.started()
    } catch (e) {
      t.fail(`perch does not start again on the same (tmpfs) directory: ${String(e)}`)
      return
    }
    const back = await connectWithAck(t, `mqtt://127.0.0.1:${port}`, { ...subOptions, clean: false })
    t.equal(back.connack.sessionPresent, true, 'the session is back after the restart')
    const backTags = (): Set<string> => new Set(back.messages.map((m) => tagOf(m.payload)))
    await until(() => after.every((a) => backTags().has(a)), 10_000, 'the messages acknowledged after freeing space').catch(() => {})
    t.same(
      after.filter((a) => !backTags().has(a)),
      [],
      `every message acknowledged after freeing space is there after SIGKILL and restart (${after.length})`,
    )
    const before = drainedTags()
    t.same(
      back.messages.filter((m) => !m.packet.dup && before.has(tagOf(m.payload))).map((m) => m.topic),
      [],
      'a message delivered (and acknowledged) before the restart comes back only with DUP, if at all [MQTT-3.3.1-1]',
    )
    await back.client.endAsync()
    const stopped = await perch.stop()
    t.equal(stopped.code, 0, 'perch stops cleanly')
    integrityCheck(t, prefix, dir)
  },
)

t.test(
  'a full disk, then SIGKILL while it is still full: perch starts again, every acknowledged message is there, the store is intact',
  { skip: TMPFS_PROBLEM ?? false },
  async (t) => {
    const dir = join(work, 'tmpfs-kill')
    const prefix = await tmpfsNamespace(t, dir)
    let perch = spawnPerch(t, { dataDir: dir, prefix })
    let port = await perch.started()
    const subOptions = { protocolVersion: 4 as const, clientId: 'full-kill-sub', clean: false }
    const first = await connectClient(t, `mqtt://127.0.0.1:${port}`, subOptions)
    await first.subscribeAsync('kill/#', { qos: 1 })
    await first.endAsync()
    const { wire: pub } = await Wire.connect(t, port, 5, { clientId: 'full-kill-pub' })
    const acked: string[] = []
    let refused = 0
    for (let i = 0; i < 60 && refused < 2; i++) {
      const ack = await publishV5(pub, i + 1, `kill/${i}`, bigPayload(`k-${i}`))
      if (ok(ack)) acked.push(`k-${i}`)
      else refused++
    }
    t.ok(refused > 0 && acked.length > 0, `the disk filled: ${acked.length} stored, then refused`)
    await perch.crash()
    perch = spawnPerch(t, { dataDir: dir, prefix })
    try {
      port = await perch.started()
    } catch (e) {
      t.fail(`perch does not start again on the full disk: ${String(e)}`)
      return
    }
    const back = await connectWithAck(t, `mqtt://127.0.0.1:${port}`, subOptions)
    t.equal(back.connack.sessionPresent, true, 'the session is back')
    const tags = (): Set<string> => new Set(back.messages.map((m) => tagOf(m.payload)))
    await until(() => acked.every((a) => tags().has(a)), 15_000, 'every acknowledged message').catch(() => {})
    t.same(
      acked.filter((a) => !tags().has(a)),
      [],
      `every message acknowledged before the kill is delivered after the restart (${acked.length})`,
    )
    await back.client.endAsync()
    const stopped = await perch.stop()
    t.equal(stopped.code, 0, 'perch stops cleanly')
    integrityCheck(t, prefix, dir)
  },
)
