import t from 'tap'
import type { FieldMapping } from '../../src/bridges/device-config.js'
import { FieldPublisher, type MappingConfig, mapValue, type Publication } from '../../src/bridges/serial/mapping.js'
import { FakeClock } from '../../src/core/clock.js'

const START = 1_700_000_000_000
const fm = (o: Partial<FieldMapping> = {}): FieldMapping => ({ scale: 1, offset: 0, unit: undefined, decimals: undefined, ...o })

function setup(over: Partial<MappingConfig> = {}, publish: Partial<MappingConfig['publish']> = {}) {
  const clock = new FakeClock(START)
  const out: Publication[] = []
  const config: MappingConfig = {
    device: 'th1',
    account: 'alice',
    topic: '/{account}/sensors/{device}/{field}',
    payload: 'value',
    fields: {},
    ...over,
    publish: { qos: 1, retain: false, onChange: false, minIntervalMs: 0, ...publish },
  }
  const pub = new FieldPublisher(config, clock, (p) => out.push(p))
  return { clock, out, pub, payloads: () => out.map((p) => p.payload) }
}

t.test('mapValue: scale, offset, decimals; numeric strings; pass-through and rejection of text', async (t) => {
  t.same(mapValue('215', fm({ scale: 0.1, decimals: 1 })), { ok: true, value: 21.5 })
  t.same(mapValue(100, fm({ scale: 2, offset: -273.15, decimals: 2 })), { ok: true, value: -73.15 })
  t.same(mapValue(' 1e2 ', undefined), { ok: true, value: 100 })
  t.same(mapValue('1.23456', fm({ decimals: 2 })), { ok: true, value: 1.23 })
  t.same(mapValue('-0.001', fm({ decimals: 1 })), { ok: true, value: 0 }, '-0 is normalised')
  t.same(mapValue('open', undefined), { ok: true, value: 'open' }, 'text passes through without a numeric mapping')
  t.same(mapValue(true, fm()), { ok: true, value: true })
  t.equal(mapValue('open', fm({ scale: 2 })).ok, false, 'text where a scale is configured is rejected')
  t.equal(mapValue('', undefined).ok, false)
})

t.test('topic template, value payload, qos and retain', async (t) => {
  const { out, pub } = setup({ fields: { temp: fm({ scale: 0.1, decimals: 1 }) } }, { retain: true, qos: 2 })
  t.same(pub.accept({ temp: '215', state: 'ok' }), [])
  t.same(out, [
    { field: 'temp', topic: '/alice/sensors/th1/temp', payload: '21.5', qos: 2, retain: true },
    { field: 'state', topic: '/alice/sensors/th1/state', payload: 'ok', qos: 2, retain: true },
  ])
})

t.test('json payload carries value, unit and the reading time', async (t) => {
  const { out, pub } = setup({ payload: 'json', fields: { temp: fm({ unit: '°C' }) } })
  pub.accept({ temp: 21.5, raw: 'x' })
  t.same(JSON.parse(out[0]?.payload ?? ''), { value: 21.5, unit: '°C', at: new Date(START).toISOString() })
  t.same(JSON.parse(out[1]?.payload ?? ''), { value: 'x', at: new Date(START).toISOString() }, 'no unit configured: none in the payload')
})

t.test('a field that cannot be mapped is rejected; the others in the record still publish', async (t) => {
  const { payloads, pub } = setup({ fields: { temp: fm({ scale: 2 }) } })
  t.equal(pub.accept({ temp: 'n/a', hum: '40' }).length, 1)
  t.same(payloads(), ['40'])
})

t.test('onChange publishes a field only when its mapped value changes', async (t) => {
  const { payloads, pub } = setup({ fields: { t: fm({ decimals: 0 }) } }, { onChange: true })
  for (const v of ['20.1', '20.2', '21', '21', '20.9', '22']) pub.accept({ t: v })
  t.same(payloads(), ['20', '21', '22'], 'rounding happens before the comparison')
})

t.test('minIntervalMs: at most one publish per interval per field, the newest value wins', async (t) => {
  const { clock, out, payloads, pub } = setup({}, { minIntervalMs: 1000 })
  pub.accept({ a: '1', b: 'x' })
  clock.advance(100)
  pub.accept({ a: '2' })
  clock.advance(100)
  pub.accept({ a: '3' })
  t.same(payloads(), ['1', 'x'], 'the first value of each field goes out at once')
  clock.advance(799)
  t.equal(out.length, 2, 'nothing before the interval has passed')
  clock.advance(1)
  t.same(payloads(), ['1', 'x', '3'], 'the newest waiting value at the end of the interval')
  clock.advance(5000)
  t.equal(out.length, 3, 'nothing more without new input')
  pub.accept({ a: '4' })
  t.same(payloads().at(-1), '4', 'after a quiet interval a value goes out at once')
})

t.test('minIntervalMs with onChange: a waiting value that returns to the published one is dropped', async (t) => {
  const { clock, payloads, pub } = setup({}, { minIntervalMs: 500, onChange: true })
  pub.accept({ a: '1' })
  pub.accept({ a: '2' })
  pub.accept({ a: '1' })
  clock.advance(1000)
  t.same(payloads(), ['1'])
})

t.test('dispose cancels waiting values', async (t) => {
  const { clock, payloads, pub } = setup({}, { minIntervalMs: 500 })
  pub.accept({ a: '1' })
  pub.accept({ a: '2' })
  pub.dispose()
  clock.advance(1000)
  pub.accept({ a: '3' })
  t.same(payloads(), ['1'])
})
