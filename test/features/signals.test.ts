// The control channel on its own, with a fake clock: CONNECT and DISCONNECT as links come and go,
// an unanswered signal sent again with its id, and recorded as unanswered in the end.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { FakeClock } from '../../src/core/clock.js'
import { silentLogger } from '../../src/core/logger.js'
import { endpointKey, SIGNAL_ATTEMPTS, SIGNAL_RETRY_MS, Signaller } from '../../src/features/signals.js'
import { FeatureStore } from '../../src/features/store.js'

const DEVICE = '0c4f2e8a-1b3d-4c5e-9f60-718293a4b5c6'
const DOWN = `/A/devices/${DEVICE}/ctrl/down`

function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'perch-signals-'))
  const opened = FeatureStore.open(dir)
  if (!opened.ok) throw opened.error
  const store = opened.value
  t.teardown(() => {
    store.dispose()
    rmSync(dir, { recursive: true, force: true })
  })
  store.register(DEVICE, 'A', { name: 'Cat', features: [{ kind: 'idf', name: 'meow', types: [] }, { kind: 'odf', name: 'purr', types: [] }], acceptProtos: ['mqtt'], profile: {} }, 'rev', 0)
  const clock = new FakeClock()
  const sent: { topic: string; body: Record<string, unknown> }[] = []
  const signals = new Signaller(store, (topic, body) => sent.push({ topic, body }), clock, silentLogger())
  t.teardown(() => signals.dispose())
  return { store, clock, sent, signals }
}

const meow = endpointKey({ device: DEVICE, kind: 'idf', feature: 'meow' })
const purr = endpointKey({ device: DEVICE, kind: 'odf', feature: 'purr' })

t.test('a signal is sent again with its id until the device answers', async (t) => {
  const { store, clock, sent, signals } = setup(t)
  store.setPresence(DEVICE, 'online', 0)
  signals.changed(new Set(), new Set([meow]))
  t.same(sent.map((s) => [s.topic, s.body.command, s.body.idf, s.body.topic]), [[DOWN, 'CONNECT', 'meow', `/A/devices/${DEVICE}/idf/meow`]])
  const id = sent[0]?.body.id
  clock.advance(SIGNAL_RETRY_MS)
  t.equal(sent.length, 2, 'unanswered: sent again')
  t.equal(sent[1]?.body.id, id, 'with the same id')
  t.equal(signals.reply(DEVICE, { ...sent[1]?.body, state: 'ok' }), true, 'the answer is taken')
  t.match(store.signals(DEVICE), [{ feature: 'meow', command: 'CONNECT', state: 'ok', error: null }])
  clock.advance(SIGNAL_RETRY_MS * 3)
  t.equal(sent.length, 2, 'answered: not sent again')
  t.equal(signals.reply(DEVICE, { ...sent[1]?.body, state: 'ok' }), false, 'a second answer to it is ignored')
  t.equal(signals.reply(DEVICE, { command: 'CONNECT', id: 'someone-else', state: 'ok' }), false, 'an answer to no signal is ignored')
})

t.test(`a signal never answered is recorded as unanswered after ${SIGNAL_ATTEMPTS} attempts`, async (t) => {
  const { store, clock, sent, signals } = setup(t)
  store.setPresence(DEVICE, 'online', 0)
  signals.changed(new Set(), new Set([purr]))
  clock.advance(SIGNAL_RETRY_MS * (SIGNAL_ATTEMPTS + 3))
  t.equal(sent.length, SIGNAL_ATTEMPTS, `sent ${SIGNAL_ATTEMPTS} times in all`)
  t.match(store.signals(DEVICE), [{ feature: 'purr', state: 'error', error: `no answer after ${SIGNAL_ATTEMPTS} attempts` }])
})

t.test('an error answer is recorded with its reason; a device that goes offline is not chased', async (t) => {
  const { store, clock, sent, signals } = setup(t)
  store.setPresence(DEVICE, 'online', 0)
  signals.changed(new Set(), new Set([meow, purr]))
  t.equal(sent.length, 2)
  const odf = sent.find((s) => s.body.odf === 'purr')
  signals.reply(DEVICE, { ...odf?.body, state: 'error', reason: 'no such display' })
  t.match(store.signals(DEVICE).find((s) => s.feature === 'purr'), { state: 'error', error: 'no such display' })
  store.setPresence(DEVICE, 'offline', 1)
  clock.advance(SIGNAL_RETRY_MS * 2)
  t.equal(sent.length, 2, 'no retry to an offline device')
  signals.changed(new Set([meow, purr]), new Set([purr]))
  t.equal(sent.length, 2, 'an offline device gets no DISCONNECT')
  t.match(store.signals(DEVICE).find((s) => s.feature === 'meow'), { command: 'DISCONNECT', state: 'pending' })
})
