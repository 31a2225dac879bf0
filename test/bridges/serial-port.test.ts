import t from 'tap'
import { backoffDelay, classifyPortError, ManagedSerialPort } from '../../src/bridges/serial/serial-port.js'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'

t.test('backoff: exponential cap with full jitter, bounded by maxMs', async (t) => {
  t.equal(backoffDelay(0, 100, 1000, () => 0.999), 99)
  t.equal(backoffDelay(3, 100, 1000, () => 0.999), 799)
  t.equal(backoffDelay(10, 100, 1000, () => 0.999), 999)
  t.equal(backoffDelay(1000, 100, 1000, () => 0.5), 500, 'no overflow for long outages')
  t.equal(backoffDelay(5, 100, 1000, () => 0), 0)
})

t.test('ENOTTY is tolerated; anything else rebuilds the port', async (t) => {
  t.equal(classifyPortError(Object.assign(new Error('ioctl'), { code: 'ENOTTY' })), 'ignore')
  t.equal(classifyPortError(new Error('Inappropriate ioctl for device')), 'ignore')
  t.equal(classifyPortError(Object.assign(new Error('io'), { code: 'EIO' })), 'disconnected')
  t.equal(classifyPortError(Object.assign(new Error('bad fd'), { disconnected: true })), 'disconnected')
})

t.test('a missing device: writes are refused, attempts back off on the injected clock, dispose stops them', async (t) => {
  const clock = new FakeClock()
  const failures: string[] = []
  const port = new ManagedSerialPort(
    { path: '/nonexistent/perch-tty', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, reconnect: { initialMs: 100, maxMs: 400 }, random: () => 0.5 },
    clock,
    silentLogger(),
    { data: () => {}, online: () => t.fail('never online'), offline: () => t.fail('never lost'), attemptFailed: (r) => failures.push(r) },
  )
  port.start()
  const w = await port.write(Buffer.from('x'))
  t.equal(w.ok ? 'ok' : w.error.code, 'ESERIAL_OFFLINE', 'a write while not connected is refused at once')
  const settle = () => new Promise((r) => setTimeout(r, 20))
  await settle()
  t.equal(failures.length, 1)
  t.match(failures[0], /ENOENT/)
  t.equal(port.state, 'waiting')
  clock.advance(49)
  await settle()
  t.equal(failures.length, 1, 'the first retry waits half of 100 ms (jitter 0.5)')
  clock.advance(1)
  await settle()
  t.equal(failures.length, 2)
  await port.dispose()
  clock.advance(10_000)
  await settle()
  t.equal(failures.length, 2, 'no attempt after dispose')
  t.equal(port.state, 'disposed')
})

t.test('dispose while an attempt is resolving the path: nothing is opened afterwards', async (t) => {
  const clock = new FakeClock()
  let events = 0
  const port = new ManagedSerialPort(
    { path: '/dev/null', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, reconnect: { initialMs: 100, maxMs: 400 } },
    clock,
    silentLogger(),
    { data: () => {}, online: () => events++, offline: () => events++, attemptFailed: () => events++ },
  )
  port.start()
  await port.dispose()
  await new Promise((r) => setTimeout(r, 50))
  t.equal(events, 0, 'no attempt outcome after dispose')
  t.equal(port.state, 'disposed')
})
