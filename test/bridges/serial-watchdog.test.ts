// The path watchdog: a device path that comes to lead to another device (a USB adapter that
// re-enumerated) produces no event on the open port; only the watchdog notices. The bridge must
// drop the old port, re-resolve the path and read from the new device.
import { appendFileSync, realpathSync, renameSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { until } from '../helpers/clients.js'
import { payloadsOn, rig, startSocat } from '../helpers/socat.js'

const VALUE = '/alice/sensors/dev1/value'
const STATUS = '/alice/devices/dev1/status'

t.test('the watchdog follows a path that now leads to another device', async (t) => {
  const r = await rig(t)
  const other = await startSocat(t, join(r.dir, 'ttyGW2'), join(r.dir, 'ttySIM2'))
  r.bridge.start()
  await until(() => r.lastStatus()?.state === 'online', 10_000, 'online')
  r.simWrite('1\n')
  await until(() => payloadsOn(r.messages, VALUE).length === 1, 5000, 'a reading from the first device')

  // Re-point the configured link atomically, as udev does for /dev/serial/by-id on re-enumeration.
  const tmp = join(r.dir, 'ttyGW.new')
  symlinkSync(realpathSync(other.dev), tmp)
  renameSync(tmp, r.dev)
  const moved = Date.now()
  const watchdogSaid = () =>
    payloadsOn(r.messages, STATUS).some((p) => (JSON.parse(p) as { lastError: string | null }).lastError?.startsWith('watchdog:') === true)
  await until(watchdogSaid, 5000, 'the watchdog to report the change')
  await until(() => r.lastStatus()?.state === 'online', 5000, 'online on the new device')
  t.comment(`the switch was seen and the new device opened ${Date.now() - moved} ms after the link moved`)
  t.equal(r.bridge.status().counters.disconnects, 1)

  r.simWrite('2\n') // the old device: no longer read
  appendFileSync(other.sim, '3\n')
  await until(() => payloadsOn(r.messages, VALUE).includes('3'), 5000, 'a reading from the new device')
  t.same(payloadsOn(r.messages, VALUE), ['1', '3'])
})
