import t from 'tap'
import type { SerialFraming } from '../../src/bridges/device-config.js'
import { createFramer, type Framer, type RawRecord } from '../../src/bridges/serial/framing.js'

function framer(f: SerialFraming, max?: number): Framer {
  const r = createFramer(f, max)
  if (!r.ok) throw r.error
  return r.value
}

/** Feeds `input` split at every possible single boundary and in one piece; all must agree. */
function allSplits(f: SerialFraming, input: Buffer): { records: RawRecord[]; rejected: number }[] {
  const out: { records: RawRecord[]; rejected: number }[] = []
  for (let cut = 0; cut <= input.length; cut++) {
    const fr = framer(f)
    const a = fr.push(input.subarray(0, cut))
    const b = fr.push(input.subarray(cut))
    out.push({ records: [...a.records, ...b.records], rejected: a.rejected.length + b.rejected.length })
  }
  return out
}

t.test('lines: one field per line, CRLF tolerated, empty lines skipped, any chunking', async (t) => {
  const f: SerialFraming = { type: 'lines', delimiter: '\n', field: 'temp' }
  const input = Buffer.from('21.5\r\n\n22\npartial')
  for (const r of allSplits(f, input)) {
    t.same(r.records, [{ temp: '21.5' }, { temp: '22' }])
    t.equal(r.rejected, 0)
  }
  const fr = framer(f)
  t.same(fr.push(Buffer.from('1')).records, [])
  t.same(fr.push(Buffer.from('2')).records, [])
  t.same(fr.push(Buffer.from('3\n')).records, [{ temp: '123' }], 'a line spread over three chunks')
})

t.test('lines: a multi-byte delimiter split across chunks', async (t) => {
  const f: SerialFraming = { type: 'lines', delimiter: '\r\n', field: 'v' }
  for (const r of allSplits(f, Buffer.from('a\r\nbb\r\n'))) t.same(r.records, [{ v: 'a' }, { v: 'bb' }])
})

t.test('delimited: fields in order; a wrong field count is rejected', async (t) => {
  const f: SerialFraming = { type: 'delimited', delimiter: '\n', separator: ',', fields: ['id', 'temp', 'hum'] }
  for (const r of allSplits(f, Buffer.from('T1, 21.5,40\nT2,1\nT3,2,3\n'))) {
    t.same(r.records, [
      { id: 'T1', temp: '21.5', hum: '40' },
      { id: 'T3', temp: '2', hum: '3' },
    ])
    t.equal(r.rejected, 1)
  }
})

t.test('regex: named groups are the fields; unmatched lines are rejected', async (t) => {
  const f: SerialFraming = { type: 'regex', delimiter: '\n', pattern: '^T=(?<temp>-?[0-9.]+) H=(?<hum>[0-9.]+)(?: S=(?<state>\\w+))?$' }
  for (const r of allSplits(f, Buffer.from('T=21.5 H=40\nnoise\nT=-3 H=90 S=ok\n'))) {
    t.same(r.records, [{ temp: '21.5', hum: '40' }, { temp: '-3', hum: '90', state: 'ok' }])
    t.equal(r.rejected, 1)
  }
  const bad = createFramer({ type: 'regex', delimiter: '\n', pattern: '(' })
  t.equal(bad.ok, false, 'an invalid pattern is a config error')
})

t.test('json: top-level scalars only; invalid JSON and non-objects are rejected', async (t) => {
  const f: SerialFraming = { type: 'json', delimiter: '\n' }
  const input = Buffer.from('{"t":21.5,"ok":true,"name":"x","nested":{"a":1},"list":[1]}\n{bad\n[1,2]\n{"nested":{}}\n{"h":40}\n')
  for (const r of allSplits(f, input)) {
    t.same(r.records, [{ t: 21.5, ok: true, name: 'x' }, { h: 40 }])
    t.equal(r.rejected, 3)
  }
})

t.test('an oversize line is dropped and counted once; the buffer stays bounded; the next line is fine', async (t) => {
  const fr = framer({ type: 'lines', delimiter: '\n', field: 'v' }, 1024)
  let rejected = 0
  const big = Buffer.alloc(300, 'x')
  for (let i = 0; i < 100; i++) rejected += fr.push(big).rejected.length // 30 KB with no delimiter
  t.equal(rejected, 1, 'one rejection for one oversize line')
  const out = fr.push(Buffer.from('xxx\nok\n'))
  t.same(out.records, [{ v: 'ok' }], 'the tail of the oversize line is dropped, the next line kept')
  t.equal(out.rejected.length, 0)
  // An oversize line that arrives whole within one chunk.
  const whole = fr.push(Buffer.concat([Buffer.alloc(2000, 'y'), Buffer.from('\nfine\n')]))
  t.same(whole.records, [{ v: 'fine' }])
  t.equal(whole.rejected.length, 1)
})

t.test('binary: typed fields at offsets, header re-sync after garbage and a torn frame', async (t) => {
  const f: SerialFraming = {
    type: 'binary',
    length: 9,
    header: 'aa55',
    fields: [
      { name: 'temp', offset: 2, type: 'int16be' },
      { name: 'hum', offset: 4, type: 'uint8' },
      { name: 'v', offset: 5, type: 'floatle' },
    ],
  }
  const frame = (temp: number, hum: number, v: number): Buffer => {
    const b = Buffer.alloc(9)
    b[0] = 0xaa
    b[1] = 0x55
    b.writeInt16BE(temp, 2)
    b.writeUInt8(hum, 4)
    b.writeFloatLE(v, 5)
    return b
  }
  const input = Buffer.concat([Buffer.from([0x01, 0x02, 0xaa]), frame(215, 40, 1.5), frame(-30, 90, 0.25), Buffer.from([0xaa, 0x55, 0x00]), frame(7, 1, 2)])
  // There is no checksum: the torn frame (aa 55 00) is completed with the next frame's bytes, and
  // the remaining bytes of that frame are dropped as garbage until a header shows up again.
  for (const r of allSplits(f, input)) {
    t.same(r.records.slice(0, 2), [
      { temp: 215, hum: 40, v: 1.5 },
      { temp: -30, hum: 90, v: 0.25 },
    ])
    t.ok(r.rejected >= 1, 'the leading garbage is counted')
  }
  const fr = framer(f)
  t.same(fr.push(Buffer.from([0x00, 0xaa])).records, [], 'a possible header start is kept')
  t.same(fr.push(frame(1, 2, 3).subarray(1)).records, [{ temp: 1, hum: 2, v: 3 }], 'and completed by the next chunk')
  const bad = createFramer({ type: 'binary', length: 4, header: undefined, fields: [{ name: 'x', offset: 2, type: 'uint32be' }] })
  t.equal(bad.ok, false, 'a field past the frame end is a config error')
})

t.test('binary without header: consecutive fixed-length frames across chunks', async (t) => {
  const f: SerialFraming = { type: 'binary', length: 2, header: undefined, fields: [{ name: 'n', offset: 0, type: 'uint16le' }] }
  for (const r of allSplits(f, Buffer.from([1, 0, 2, 0, 3]))) t.same(r.records, [{ n: 1 }, { n: 2 }])
})

t.test('reset forgets a partial frame', async (t) => {
  const fr = framer({ type: 'lines', delimiter: '\n', field: 'v' })
  fr.push(Buffer.from('stale-half'))
  fr.reset()
  t.same(fr.push(Buffer.from('new\n')).records, [{ v: 'new' }])
})
