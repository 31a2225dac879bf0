// Unplug and replug: socat is killed (SIGKILL, then SIGTERM) while the simulated device is
// sending, then started again on the same link names. The bridge must report offline, stay cheap
// while the device is gone (a hung-up tty can make the binding spin on 0-byte reads), refuse
// commands during the outage and never replay them to the new device, and come back online.
import { closeSync, constants, openSync, rmSync, writeSync } from 'node:fs'
import t from 'tap'
import { sleep, until } from '../helpers/clients.js'
import { openSimReader, payloadsOn, rig, startSocat } from '../helpers/socat.js'

const VALUE = '/alice/sensors/dev1/value'

/**
 * After SIGKILL socat leaves its links dangling at /dev/pts/N, and once freed that number is
 * handed to the next pty opened on the machine (another test's socat running in parallel): the
 * links are removed at once, as udev removes /dev/serial/by-id links on unplug.
 */
function unlinkPair(dev: string, sim: string): void {
  rmSync(dev, { force: true })
  rmSync(sim, { force: true })
}
const CMD = '/alice/devices/dev1/cmd'

t.test('the bridge survives SIGKILL and SIGTERM of the device while data flows', async (t) => {
  const r = await rig(t, { command: { topic: '/{account}/devices/{device}/cmd', append: '\n', encoding: 'utf8' } })
  // The simulated sensor: a line every 10 ms, opened without O_CREAT (a removed link must not
  // become a regular file), errors ignored while the device is gone.
  let n = 0
  let paused = false
  const writer = setInterval(() => {
    if (paused) return
    try {
      const fd = openSync(r.sim, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK)
      try {
        writeSync(fd, `${++n}\n`)
      } finally {
        closeSync(fd)
      }
    } catch {
      // gone
    }
  }, 10)
  t.teardown(() => clearInterval(writer))

  r.bridge.start()
  await until(() => r.lastStatus()?.state === 'online', 10_000, 'online')
  await until(() => payloadsOn(r.messages, VALUE).length >= 5, 5000, 'data flowing')

  let pair = r.pair
  let reader = openSimReader(t, r.sim)
  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    const before = r.bridge.status().counters
    const killedAt = Date.now()
    reader.close()
    paused = true
    await pair.kill(signal)
    unlinkPair(r.dev, r.sim)
    paused = false

    await until(() => r.lastStatus()?.state === 'offline', 10_000, `offline after ${signal}`)
    const detectMs = Date.now() - killedAt
    t.ok(r.lastStatus()?.lastError, `the status says why (${r.lastStatus()?.lastError})`)
    t.equal(r.bridge.status().counters.disconnects, before.disconnects + 1, 'one disconnect counted')

    // The outage: the process must stay cheap while the device is gone.
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    // A command during the outage is refused, not queued.
    await r.client.publishAsync(CMD, `STALE-${signal}`, { qos: 1 })
    await until(() => r.logs.some((l) => l.includes('command while the device is offline')), 5000, 'the command to be refused')
    await sleep(2500)
    const used = process.cpuUsage(cpu0)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    const cores = (used.user + used.system) / 1e6 / seconds
    t.comment(`${signal}: offline ${detectMs} ms after the kill; CPU during the outage ${cores.toFixed(3)} core over ${seconds.toFixed(2)} s`)
    t.ok(cores < 0.3, `CPU during the outage stays low (${cores.toFixed(3)} core)`)
    t.equal(r.bridge.status().state, 'offline')
    t.ok(r.bridge.status().counters.errors > before.errors, 'reconnect attempts fail while the device is gone')

    // Replug on the same link names; listen on the new device before the bridge reopens.
    pair = await startSocat(t, r.dev, r.sim)
    reader = openSimReader(t, r.sim)
    const seen = payloadsOn(r.messages, VALUE).length
    await until(() => r.lastStatus()?.state === 'online', 10_000, `online again after ${signal}`)
    await until(() => payloadsOn(r.messages, VALUE).length >= seen + 5, 5000, 'data flowing again')

    await r.client.publishAsync(CMD, `FRESH-${signal}`, { qos: 1 })
    await until(() => reader.received().toString().includes(`FRESH-${signal}\n`), 5000, 'the fresh command on the new device')
    t.equal(reader.received().toString(), `FRESH-${signal}\n`, 'the command sent during the outage never reached the new device')
  }
  const values = payloadsOn(r.messages, VALUE).map(Number)
  t.ok(
    values.every((v) => Number.isInteger(v) && v > 0),
    'every published reading is a whole line',
  )
})

t.test('a hang-up right after open (where the binding may spin without any event) is caught and the spin stops', async (t) => {
  const r = await rig(t)
  r.bridge.start()
  let pair = r.pair
  const reasons: string[] = []
  for (let round = 0; round < 4; round++) {
    await until(() => r.lastStatus()?.state === 'online', 10_000, `online (round ${round})`)
    r.simWrite(`${round}\n`)
    await pair.kill('SIGKILL')
    unlinkPair(r.dev, r.sim)
    const killedAt = Date.now()
    await until(() => r.lastStatus()?.state === 'offline', 5000, `offline (round ${round})`)
    const detectMs = Date.now() - killedAt
    reasons.push(`${r.lastStatus()?.lastError ?? '?'} after ${detectMs} ms`)
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await sleep(1200)
    const used = process.cpuUsage(cpu0)
    const cores = (used.user + used.system) / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9)
    t.ok(cores < 0.3, `round ${round}: CPU after detection ${cores.toFixed(3)} core`)
    pair = await startSocat(t, r.dev, r.sim)
  }
  t.comment(`detections: ${reasons.join('; ')}`)
  await until(() => r.lastStatus()?.state === 'online', 10_000, 'online at the end')
})
