import t from 'tap'
import { createLogger, isLogLevel, type LogLevel } from '../../src/core/logger.js'

const NOW = Date.UTC(2024, 0, 2, 3, 4, 5, 678)

function capture(level: LogLevel, base?: Record<string, unknown>) {
  const writes: string[] = []
  const logger = createLogger(level, (line) => writes.push(line), () => NOW, base)
  const events = (): Record<string, unknown>[] => writes.map((w) => JSON.parse(w) as Record<string, unknown>)
  return { logger, writes, events }
}

t.test('one write per event, each a single JSON line with time, level label and event', async (t) => {
  const { logger, writes, events } = capture('debug')
  logger.info('broker.started', { port: 1883 })
  logger.debug('client.connected', { clientId: 'c1' })
  t.equal(writes.length, 2, 'written synchronously, one write per event')
  for (const w of writes) t.match(w, /^\{[^\n]*\}\n$/, 'exactly one line, newline-terminated')
  t.same(events(), [
    { time: '2024-01-02T03:04:05.678Z', level: 'info', event: 'broker.started', port: 1883 },
    { time: '2024-01-02T03:04:05.678Z', level: 'debug', event: 'client.connected', clientId: 'c1' },
  ])
  t.notOk('pid' in (events()[0] ?? {}) || 'hostname' in (events()[0] ?? {}), 'no pid or hostname')
})

t.test('events below the level are not written', async (t) => {
  const levels: LogLevel[] = ['debug', 'info', 'warn', 'error']
  for (const [i, level] of levels.entries()) {
    const { logger, events } = capture(level)
    for (const l of levels) logger[l](`e.${l}`)
    t.same(
      events().map((e) => e.level),
      levels.slice(i),
      `at ${level}`,
    )
  }
})

t.test('setLevel reaches the root and every child, also those made before', async (t) => {
  const { logger, events } = capture('info')
  const child = logger.child({ component: 'rules' })
  child.debug('hidden')
  logger.setLevel('debug')
  child.debug('shown', { n: 1 })
  logger.child({ component: 'later' }).debug('shown too')
  logger.setLevel('error')
  child.warn('hidden again')
  logger.error('still written')
  t.same(
    events().map((e) => e.event),
    ['shown', 'shown too', 'still written'],
  )
})

t.test('an event name is written as given, printf markers included', async (t) => {
  const { logger, events } = capture('info')
  logger.info('odd %s %d event', {})
  t.equal(events()[0]?.event, 'odd %s %d event')
})

t.test('children keep the level and add their bindings, the inner ones winning', async (t) => {
  const { logger, writes, events } = capture('info', { gateway: 'g1' })
  const store = logger.child({ component: 'store' })
  const device = store.child({ device: 'd1', kind: 'serial' }).child({ device: 'd2' })
  device.debug('not.written')
  device.info('device.read', { value: 3 })
  store.warn('store.slow')
  logger.error('top')
  t.equal(writes.length, 3)
  t.same(events(), [
    { time: '2024-01-02T03:04:05.678Z', level: 'info', event: 'device.read', gateway: 'g1', component: 'store', device: 'd2', kind: 'serial', value: 3 },
    { time: '2024-01-02T03:04:05.678Z', level: 'warn', event: 'store.slow', gateway: 'g1', component: 'store' },
    { time: '2024-01-02T03:04:05.678Z', level: 'error', event: 'top', gateway: 'g1' },
  ])
  t.equal(writes[0]?.match(/"device"/g)?.length, 1, 'a rebound key appears once')
})

t.test("an event's fields win over the bindings, and the key appears once", async (t) => {
  const { logger, writes, events } = capture('info')
  logger.child({ device: 'd1', kind: 'gpio' }).info('device.state', { device: 'other' })
  t.same(events()[0], { time: '2024-01-02T03:04:05.678Z', level: 'info', event: 'device.state', device: 'other', kind: 'gpio' })
  t.equal(writes[0]?.match(/"device"/g)?.length, 1)
})

t.test('a field named time, level or event does not replace the line’s own', async (t) => {
  const { logger, events } = capture('debug')
  logger.child({ level: 'bound' }).debug('rule.log', { level: 'info', time: 5, event: 'x' })
  t.same(events()[0], { time: '2024-01-02T03:04:05.678Z', level: 'debug', event: 'rule.log', level_: 'info', time_: 5, event_: 'x' })
})

t.test('errors are written as {message, code}, bigints as strings, at any depth', async (t) => {
  const { logger, events } = capture('info')
  const coded = Object.assign(new Error('disk full'), { code: 'ENOSPC' })
  logger.error('store.failed', {
    error: coded,
    err: new TypeError('bad'),
    seq: 12345678901234567890n,
    nested: { list: [coded, 1n], at: new Date(NOW) },
  })
  logger.child({ cause: new Error('bound'), id: 7n }).info('child.fields')
  t.same(events(), [
    {
      time: '2024-01-02T03:04:05.678Z',
      level: 'error',
      event: 'store.failed',
      error: { message: 'disk full', code: 'ENOSPC' },
      err: { message: 'bad' },
      seq: '12345678901234567890',
      nested: { list: [{ message: 'disk full', code: 'ENOSPC' }, '1'], at: '2024-01-02T03:04:05.678Z' },
    },
    { time: '2024-01-02T03:04:05.678Z', level: 'info', event: 'child.fields', cause: { message: 'bound' }, id: '7' },
  ])
})

t.test('a circular field is written, not thrown', async (t) => {
  const { logger, events } = capture('info')
  const loop: Record<string, unknown> = { name: 'a' }
  loop.self = loop
  logger.info('loop', { loop })
  t.same(events()[0]?.loop, { name: 'a', self: '[Circular]' })
})

t.test('isLogLevel knows the four levels and nothing else', async (t) => {
  for (const l of ['debug', 'info', 'warn', 'error']) t.ok(isLogLevel(l), l)
  for (const l of ['trace', 'fatal', 'toString', 'constructor', '']) t.notOk(isLogLevel(l), l)
})
