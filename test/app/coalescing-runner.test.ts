// Reload requests while a reload runs fold into one more run.
import t from 'tap'
import { CoalescingRunner } from '../../src/app/coalescing-runner.js'

/** A task whose runs end only when the test says so. */
function gatedTask(): { task: () => Promise<void>; runs: number; finish(): void; running(): boolean } {
  const gates: (() => void)[] = []
  const state = {
    runs: 0,
    task: (): Promise<void> => {
      state.runs++
      return new Promise<void>((resolve) => gates.push(resolve))
    },
    finish: (): void => gates.shift()?.(),
    running: (): boolean => gates.length > 0,
  }
  return state
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

t.test('requests during a run make exactly one more run, after it', async (t) => {
  const g = gatedTask()
  const runner = new CoalescingRunner(
    () => g.task(),
    (e) => t.fail(String(e)),
  )
  const first = runner.request()
  await turn()
  t.equal(g.runs, 1)
  const queued = [runner.request(), runner.request(), runner.request()]
  await turn()
  t.equal(g.runs, 1, 'nothing starts while a run is in progress')
  g.finish()
  await turn()
  t.equal(g.runs, 2, 'one more run for the three requests')
  t.ok(runner.busy)
  g.finish()
  await Promise.all([first, ...queued])
  t.equal(g.runs, 2)
  t.notOk(runner.busy)
  const later = runner.request()
  await turn()
  t.equal(g.runs, 3, 'a request after the runs ended starts a new one')
  g.finish()
  await later
})

t.test('a run that throws is reported and the queued run still happens', async (t) => {
  const errors: unknown[] = []
  let runs = 0
  const runner = new CoalescingRunner(
    async () => {
      runs++
      if (runs === 1) throw new Error('bad file')
    },
    (e) => errors.push(e),
  )
  const a = runner.request()
  const b = runner.request()
  await Promise.all([a, b])
  t.equal(runs, 2)
  t.match(errors, [{ message: 'bad file' }])
  t.equal(errors.length, 1)
})

t.test('a task that throws at once does not wedge the runner', async (t) => {
  const errors: unknown[] = []
  let runs = 0
  const runner = new CoalescingRunner(
    () => {
      runs++
      throw new Error('sync')
    },
    (e) => errors.push(e),
  )
  await runner.request()
  await runner.request()
  t.equal(runs, 2)
  t.equal(errors.length, 2)
  t.notOk(runner.busy)
})
