// The sync worker's entry: the sync loop runs here so that MySQL round trips and SQLite applies
// never hold up the broker's event loop. It reports status to the main thread and takes
// `poke` (sync now) and `stop`.
import { parentPort, workerData } from 'node:worker_threads'
import { systemClock } from '../core/clock.js'
import { SyncLoop, type SyncLoopOptions } from './sync-loop.js'

export type ToSyncWorker = { readonly type: 'poke' } | { readonly type: 'stop' }

const port = parentPort
if (port !== null) {
  const loop = new SyncLoop(workerData as SyncLoopOptions, systemClock(), (status) => port.postMessage({ type: 'status', status }))
  port.on('message', (m: ToSyncWorker) => {
    if (m.type === 'poke') loop.poke()
    else loop.stop()
  })
  void loop.run().then(() => port.close())
}
