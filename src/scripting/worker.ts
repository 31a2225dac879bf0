// Entry point of the sandbox worker thread (started by SandboxHost; see host.ts for how it is found
// both as dist/scripting/worker.js and, under the tests' TypeScript loader, as src/scripting/worker.ts).
import { parentPort, workerData } from 'node:worker_threads'
import type { WorkerOptions } from './protocol.js'
import { SandboxWorker } from './worker-loop.js'

function options(data: unknown): WorkerOptions {
  const d = data as { variant?: unknown; running?: unknown } | null
  const running = d?.running instanceof SharedArrayBuffer ? d.running : new SharedArrayBuffer(8)
  return { variant: d?.variant === 'debug' ? 'debug' : 'release', running }
}

if (parentPort !== null) {
  const worker = new SandboxWorker(parentPort, options(workerData))
  // The port's listener keeps the thread alive; the host ends it with terminate().
  void worker
}
