// Micro-benchmark of the rule sandbox host over dist/ (build first: npx tsc -p tsconfig.build.json).
// Prints rule invocations (messages handled by onMessage) per second for batches of 1, 10 and 100
// messages, with many batches in flight as the broker would have them.
//   node bench/rules-sandbox.js [seconds per case, default 3]
import { SandboxHost } from '../dist/scripting/index.js'

const seconds = Number(process.argv[2] ?? 3)
const RULE = `
export function onMessage(msg) {
  const v = JSON.parse(msg.payload)
  publish('out/' + msg.topic, { f: v.c * 9 / 5 + 32, at: now() })
}`
const PAYLOAD = JSON.stringify({ c: 21.5, unit: 'C', sensor: 'greenhouse-1', seq: 12345 })

const host = await SandboxHost.start({ now: () => Date.now() })
const loaded = await host.load({ account: 'bench', name: 'convert', source: RULE, limits: { timeMs: 50, maxPublishes: 100 } })
if (!loaded.ok) throw new Error(loaded.error.message)

async function run(batchSize, ms) {
  const batch = Array.from({ length: batchSize }, (_, i) => ({ kind: 'message', topic: `t/${i}`, payload: PAYLOAD }))
  // Enough batches in flight to keep the worker busy, bounded so memory stays flat.
  const inFlight = Math.max(4, Math.ceil(256 / batchSize))
  let messages = 0
  let failures = 0
  const end = performance.now() + ms
  const cpu0 = process.cpuUsage()
  const elu0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  async function lane() {
    while (performance.now() < end) {
      const r = await host.invoke('bench', 'convert', batch)
      if (r.ok) messages += batchSize
      else failures++
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const elu = performance.eventLoopUtilization(elu0)
  return { messages, failures, wall, cpu: (cpu.user + cpu.system) / 1e6, mainBusy: elu.utilization }
}

await run(10, 500) // warm-up
console.log(`node ${process.version}, ${seconds} s per case`)
// process CPU counts both threads; main busy is the broker thread's event-loop utilization
console.log('batch  invocations/s  batches/s  process CPU  main busy  failures')
for (const size of [1, 10, 100]) {
  const r = await run(size, seconds * 1000)
  const perSec = r.messages / r.wall
  console.log(
    `${String(size).padStart(5)}  ${Math.round(perSec).toLocaleString('en-US').padStart(13)}  ${Math.round(perSec / size).toLocaleString('en-US').padStart(9)}  ${`${Math.round((100 * r.cpu) / r.wall)} %`.padStart(11)}  ${`${Math.round(100 * r.mainBusy)} %`.padStart(9)}  ${r.failures}`,
  )
}
const report = await host.dispose()
if (report.disposeErrors.length > 0 || report.leaks.length > 0) console.log('dispose report', report)
