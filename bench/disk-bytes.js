// Bytes perch writes to disk per 1,000 QoS 1 messages queued for one offline persistent
// subscriber (issue 3, "SD-card friendliness"). Runs `node bin/perch.js start` (build first:
// npm run build) on a fresh data directory and reads the broker process's write_bytes from
// /proc/<pid>/io (bytes it sent to the block layer: page-granular, fsync'd WAL frames and
// checkpoints included, file-system journal excluded) around the publishing, plus the growth
// of perch.db and perch.db-wal.
// Usage: node bench/disk-bytes.js [--messages 1000] [--payload 100] [--synchronous full|normal]
//        [--window 1|N] [--interval-ms 5]
// --window 1 waits for each PUBACK before the next PUBLISH (one commit per message, the worst
// case); a larger window keeps that many QoS 1 messages in flight (group commit batches them).
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import mqtt from 'mqtt'

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000' },
    payload: { type: 'string', default: '100' },
    synchronous: { type: 'string', default: 'full' },
    window: { type: 'string', default: '1' },
    'interval-ms': { type: 'string', default: '5' },
  },
})
const N = Number(values.messages)
const PAYLOAD = Buffer.alloc(Number(values.payload), 0x61)
const WINDOW = Math.max(1, Number(values.window))
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'perch.js')

const dir = mkdtempSync(join(tmpdir(), 'perch-disk-bytes-'))
const config = join(dir, 'perch.json')
writeFileSync(config, JSON.stringify({ sys: { interval: 0 }, persistence: { synchronous: values.synchronous, commitIntervalMs: Number(values['interval-ms']) } }))
const perch = spawn(process.execPath, [BIN, 'start', '--port', '0', '--data-dir', join(dir, 'data'), '--config', config, '--log-level', 'info'], {
  stdio: ['ignore', 'pipe', 'inherit'],
})
const port = await new Promise((resolve, reject) => {
  let out = ''
  perch.stdout.setEncoding('utf8')
  perch.stdout.on('data', (s) => {
    out += s
    const m = /"event":"perch\.started".*?"port":(\d+)/.exec(out)
    if (m) resolve(Number(m[1]))
  })
  perch.once('exit', (code) => reject(new Error(`perch exited ${code}: ${out}`)))
})

const writeBytes = () => Number(/write_bytes: (\d+)/.exec(readFileSync(`/proc/${perch.pid}/io`, 'utf8'))?.[1] ?? Number.NaN)
const fileBytes = () => ['perch.db', 'perch.db-wal'].reduce((sum, f) => sum + (existsSync(join(dir, 'data', f)) ? statSync(join(dir, 'data', f)).size : 0), 0)
const url = `mqtt://127.0.0.1:${port}`
const connect = (opts) =>
  new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, ...opts })
    c.once('connect', () => resolve(c))
    c.once('error', reject)
  })

try {
  const sub = await connect({ protocolVersion: 4, clientId: 'disk-sub', clean: false })
  await sub.subscribeAsync('disk/#', { qos: 1 })
  await sub.endAsync()
  const pub = await connect({ protocolVersion: 4, clientId: 'disk-pub' })
  await pub.publishAsync('disk/warmup', PAYLOAD, { qos: 1 })
  await new Promise((r) => setTimeout(r, 200))
  const before = { io: writeBytes(), files: fileBytes() }
  const started = process.hrtime.bigint()
  let next = 0
  const worker = async () => {
    while (next < N) {
      const i = next++
      await pub.publishAsync(`disk/${i}`, PAYLOAD, { qos: 1 })
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, worker))
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  await new Promise((r) => setTimeout(r, 200))
  const after = { io: writeBytes(), files: fileBytes() }
  await pub.endAsync()
  const per1000 = (v) => Math.round((v * 1000) / N)
  console.log(
    JSON.stringify({
      messages: N,
      payloadBytes: PAYLOAD.length,
      synchronous: values.synchronous,
      window: WINDOW,
      commitIntervalMs: Number(values['interval-ms']),
      seconds: +(ms / 1000).toFixed(2),
      writeBytesPer1000: per1000(after.io - before.io),
      fileGrowthPer1000: per1000(after.files - before.files),
      bytesPerMessage: Math.round((after.io - before.io) / N),
    }),
  )
} finally {
  perch.kill('SIGTERM')
  await new Promise((r) => perch.once('exit', r))
  rmSync(dir, { recursive: true, force: true })
}
