import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type SpawnFn, SystemdNotifier } from '../../src/app/notify.js'
import { FakeClock } from '../../src/core/clock.js'
import { type Logger, silentLogger } from '../../src/core/logger.js'
import { fakeNotifySocket } from '../helpers/notify-socket.js'

const PID = 4242

function fakeSpawn(fail = false): { spawn: SpawnFn; calls: string[][] } {
  const calls: string[][] = []
  const spawn: SpawnFn = (command, args, _env, done) => {
    calls.push([command, ...args])
    done(fail ? new Error('spawn systemd-notify ENOENT') : null)
  }
  return { spawn, calls }
}

function notifier(env: NodeJS.ProcessEnv, spawnFn: SpawnFn, logger: Logger = silentLogger()) {
  const clock = new FakeClock()
  return { clock, n: new SystemdNotifier({ env, clock, logger, pid: PID, spawn: spawnFn }) }
}

const SYSTEMD_ENV = { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(PID) }

t.test('READY=1 with a status line after start, attributed to perch pid', async (t) => {
  const { spawn, calls } = fakeSpawn()
  const { n } = notifier(SYSTEMD_ENV, spawn)
  n.start()
  t.same(calls, [], 'nothing before ready')
  await n.ready('listening on mqtt:1883')
  t.same(calls, [['systemd-notify', `--pid=${PID}`, 'READY=1', 'STATUS=listening on mqtt:1883']])
  n.dispose()
})

t.test('WATCHDOG=1 every half of WATCHDOG_USEC, from a timer', async (t) => {
  const { spawn, calls } = fakeSpawn()
  const { n, clock } = notifier(SYSTEMD_ENV, spawn)
  t.equal(n.watchdogIntervalMs, 15_000)
  n.start()
  await n.ready('up')
  calls.length = 0
  clock.advance(14_999)
  t.same(calls, [], 'not before half the interval')
  clock.advance(1)
  t.same(calls, [['systemd-notify', `--pid=${PID}`, 'WATCHDOG=1']])
  clock.advance(15_000 * 3)
  t.equal(calls.length, 4, 'one ping per half interval')
  n.dispose()
  clock.advance(60_000)
  t.equal(calls.length, 4, 'no pings after dispose')
})

t.test('no watchdog when WATCHDOG_USEC is absent or meant for another pid', async (t) => {
  for (const env of [{ NOTIFY_SOCKET: '/s' }, { NOTIFY_SOCKET: '/s', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }]) {
    const { spawn, calls } = fakeSpawn()
    const { n, clock } = notifier(env, spawn)
    t.equal(n.watchdogIntervalMs, undefined)
    n.start()
    clock.advance(120_000)
    t.same(calls, [])
    n.dispose()
  }
})

t.test('STOPPING=1 on stop ends the pings', async (t) => {
  const { spawn, calls } = fakeSpawn()
  const { n, clock } = notifier(SYSTEMD_ENV, spawn)
  n.start()
  await n.ready('up')
  await n.stopping()
  t.same(calls.at(-1), ['systemd-notify', `--pid=${PID}`, 'STOPPING=1', 'STATUS=stopping'])
  const sent = calls.length
  clock.advance(60_000)
  t.equal(calls.length, sent, 'no WATCHDOG=1 after STOPPING=1')
  n.dispose()
  await n.status('gone')
  t.equal(calls.length, sent, 'nothing after dispose')
})

t.test('a reload is RELOADING=1 with MONOTONIC_USEC, ended by READY=1', async (t) => {
  const { spawn, calls } = fakeSpawn()
  const n = new SystemdNotifier({ env: SYSTEMD_ENV, clock: new FakeClock(), logger: silentLogger(), pid: PID, spawn, monotonicUsec: () => 1_234_567_890n })
  await n.reloading()
  await n.ready('listening on mqtt:1883')
  t.same(calls, [
    ['systemd-notify', `--pid=${PID}`, 'RELOADING=1', 'MONOTONIC_USEC=1234567890', 'STATUS=reloading'],
    ['systemd-notify', `--pid=${PID}`, 'READY=1', 'STATUS=listening on mqtt:1883'],
  ])
  const before = process.hrtime.bigint() / 1000n
  const real = fakeSpawn()
  const m = notifier(SYSTEMD_ENV, real.spawn).n
  await m.reloading()
  const sent = BigInt((real.calls[0]?.find((a) => a.startsWith('MONOTONIC_USEC=')) ?? '=0').split('=')[1] ?? '0')
  t.ok(sent >= before && sent <= process.hrtime.bigint() / 1000n, 'by default the monotonic clock in microseconds')
  n.dispose()
  m.dispose()
})

t.test('nothing at all without NOTIFY_SOCKET', async (t) => {
  const { spawn, calls } = fakeSpawn()
  const { n, clock } = notifier({ WATCHDOG_USEC: '30000000' }, spawn)
  t.equal(n.enabled, false)
  n.start()
  await n.ready('up')
  await n.status('x')
  clock.advance(120_000)
  await n.stopping()
  n.dispose()
  t.same(calls, [])
})

t.test('failures are logged once and never thrown', async (t) => {
  const warnings: string[] = []
  const logger: Logger = { ...silentLogger(), warn: (event) => warnings.push(event) }
  const { spawn, calls } = fakeSpawn(true)
  const { n, clock } = notifier(SYSTEMD_ENV, spawn, logger)
  n.start()
  await n.ready('up')
  clock.advance(60_000)
  await n.stopping()
  t.ok(calls.length > 2)
  t.same(warnings, ['perch.sd-notify-failed'])
  const throwing = notifier(SYSTEMD_ENV, () => {
    throw new Error('EAGAIN')
  }).n
  await t.resolves(throwing.ready('up'))
})

t.test('a real systemd-notify reaches a NOTIFY_SOCKET', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-notify-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const socket = await fakeNotifySocket(t, join(dir, 'notify'))
  if (typeof socket === 'string') {
    t.skip(socket, () => {})
    return
  }

  const warnings: unknown[] = []
  const logger: Logger = { ...silentLogger(), warn: (event, fields) => warnings.push({ event, fields }) }
  const n = new SystemdNotifier({ env: { NOTIFY_SOCKET: socket.path }, clock: new FakeClock(), logger, pid: process.pid })
  await n.ready('listening on mqtt:1883')
  if (warnings.length > 0) {
    t.skip(`systemd-notify refused to run outside systemd: ${JSON.stringify(warnings)}`, () => {})
    return
  }
  t.ok(await socket.waitFor(1, 10_000), 'the socket received a datagram')
  const received = socket.messages()[0]
  const message = received?.text ?? ''
  t.comment(`received: ${JSON.stringify(received)}`)
  t.match(message, /^READY=1$/m)
  t.match(message, /^STATUS=listening on mqtt:1883$/m)
  if (process.getuid?.() === 0) t.equal(received?.pid, process.pid, 'as root the datagram carries perch pid')
  n.dispose()
})
