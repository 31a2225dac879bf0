// Message properties as stored: User Properties are kept as an ordered list of pairs, and rows
// written before that ({name: value | values}) still read back.
import t from 'tap'
import { encodeProperties, RowDecoder } from '../../src/persistence/codec.js'

const decoder = new RowDecoder('/data/perch.db')
const row = (properties: string | null) => ({ id: 7, topic: 't', payload: Buffer.from('p'), qos: 1, retain: 0, properties, expires_at: null, origin: 'c' })

t.test('interleaved User Properties round-trip in order [MQTT-3.3.2-18]', async (t) => {
  const userProperties = [
    ['a', '1'],
    ['b', '2'],
    ['a', '3'],
    ['__proto__', 'x'],
  ] as const
  const stored = encodeProperties({ userProperties, correlationData: Buffer.from([1, 2]) })
  const back = decoder.message(row(stored)).properties
  t.same(back?.userProperties, userProperties, 'the same pairs, in the same order')
  t.same(back?.correlationData, Buffer.from([1, 2]))
})

t.test('a row written with the older {name: value | values} form reads back as a list', async (t) => {
  const back = decoder.message(row(JSON.stringify({ userProperties: { site: 'north', tag: ['b', 'a'] } }))).properties
  t.same(back?.userProperties, [
    ['site', 'north'],
    ['tag', 'b'],
    ['tag', 'a'],
  ])
})

t.test('malformed User Properties are a corrupt row naming the file and the row', async (t) => {
  for (const bad of [[['a']], [['a', 1]], ['ab'], { a: 1 }]) {
    t.throws(() => decoder.message(row(JSON.stringify({ userProperties: bad }))), { kind: 'corrupt', message: /perch\.db.*messages\.id 7.*user propert/ }, JSON.stringify(bad))
  }
})
