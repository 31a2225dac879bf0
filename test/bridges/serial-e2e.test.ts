// Each framing end to end: bytes written on the simulated side of a real pty pair reach a real
// MQTT.js subscriber through a real perch; commands go back to the device; the ACL applies.
import t from 'tap'
import { connectWithAck, until } from '../helpers/clients.js'
import { openSimReader, payloadsOn, type Rig, rig } from '../helpers/socat.js'

async function online(r: Rig): Promise<void> {
  r.bridge.start()
  await until(() => r.lastStatus()?.state === 'online', 10_000, 'the bridge to report online')
}

t.test('lines, with scale/offset/decimals and the value payload', async (t) => {
  const r = await rig(t, { fields: { value: { scale: 0.1, offset: 1, unit: '°C', decimals: 1 } } })
  await online(r)
  r.simWrite('215\n2')
  r.simWrite('20\r\nnot-a-number\n')
  const topic = '/alice/sensors/dev1/value'
  await until(() => payloadsOn(r.messages, topic).length >= 2, 5000, 'two readings')
  t.same(payloadsOn(r.messages, topic), ['22.5', '23'])
  await until(() => r.bridge.status().counters.rejected === 1, 2000, 'the text line to be rejected')
  t.equal(r.bridge.status().counters.published, 2)
})

t.test('delimited fields', async (t) => {
  const r = await rig(t, { framing: { type: 'delimited', delimiter: '\n', separator: ';', fields: ['temp', 'hum'] } })
  await online(r)
  r.simWrite('21.5;40\n22;41\n')
  await until(() => payloadsOn(r.messages, '/alice/sensors/dev1/hum').length === 2, 5000, 'two humidity readings')
  t.same(payloadsOn(r.messages, '/alice/sensors/dev1/temp'), ['21.5', '22'])
  t.same(payloadsOn(r.messages, '/alice/sensors/dev1/hum'), ['40', '41'])
})

t.test('regex named groups, and a custom topic template', async (t) => {
  const r = await rig(t, {
    framing: { type: 'regex', delimiter: '\n', pattern: '^T=(?<temp>[-0-9.]+) S=(?<state>\\w+)$' },
    topic: '/{account}/{device}/{field}',
  })
  await online(r)
  r.simWrite('garbage\nT=-4.5 S=open\n')
  await until(() => payloadsOn(r.messages, '/alice/dev1/state').length === 1, 5000, 'the state reading')
  t.same(payloadsOn(r.messages, '/alice/dev1/temp'), ['-4.5'])
  t.same(payloadsOn(r.messages, '/alice/dev1/state'), ['open'])
  t.equal(r.bridge.status().counters.rejected, 1, 'the unmatched line')
})

t.test('json lines with the json payload, retained', async (t) => {
  const r = await rig(t, {
    framing: { type: 'json', delimiter: '\n' },
    payload: 'json',
    fields: { t: { scale: 1, offset: 0, unit: 'C', decimals: undefined } },
    publish: { qos: 1, retain: true, onChange: false, minIntervalMs: 0 },
  })
  await online(r)
  r.simWrite('{"t":21.5,"ok":true}\n')
  await until(() => payloadsOn(r.messages, '/alice/sensors/dev1/ok').length === 1, 5000, 'the json reading')
  const body = JSON.parse(payloadsOn(r.messages, '/alice/sensors/dev1/t')[0] ?? '') as { value: number; unit: string; at: string }
  t.equal(body.value, 21.5)
  t.equal(body.unit, 'C')
  t.ok(Math.abs(Date.parse(body.at) - Date.now()) < 10_000, 'at is the reading time')
  // A late subscriber gets the retained reading.
  const late = await connectWithAck(t, r.b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice', clientId: 'alice-late' })
  await late.client.subscribeAsync('/alice/sensors/dev1/t', { qos: 1 })
  await until(() => late.messages.length === 1, 5000, 'the retained reading')
  t.equal(late.messages[0]?.packet.retain, true)
})

t.test('binary frames with a header, re-synchronised after line noise', async (t) => {
  const r = await rig(t, {
    framing: {
      type: 'binary',
      length: 6,
      header: 'aa55',
      fields: [
        { name: 'temp', offset: 2, type: 'int16le' },
        { name: 'hum', offset: 4, type: 'uint16be' },
      ],
    },
    fields: { temp: { scale: 0.01, offset: 0, unit: undefined, decimals: 2 } },
  })
  await online(r)
  const frame = (temp: number, hum: number): Buffer => {
    const b = Buffer.from([0xaa, 0x55, 0, 0, 0, 0])
    b.writeInt16LE(temp, 2)
    b.writeUInt16BE(hum, 4)
    return b
  }
  r.simWrite(Buffer.concat([Buffer.from([0x13, 0x37]), frame(2150, 40), Buffer.from([0x00]), frame(-325, 512)]))
  await until(() => payloadsOn(r.messages, '/alice/sensors/dev1/hum').length === 2, 5000, 'two frames')
  t.same(payloadsOn(r.messages, '/alice/sensors/dev1/temp'), ['21.5', '-3.25'])
  t.same(payloadsOn(r.messages, '/alice/sensors/dev1/hum'), ['40', '512'])
  t.equal(r.bridge.status().counters.rejected, 2, 'two runs of noise')
})

t.test('commands: text with append and hex, written to the device; bad hex is rejected', async (t) => {
  const r = await rig(t, { command: { topic: '/{account}/devices/{device}/cmd', append: '\r\n', encoding: 'utf8' } })
  const reader = openSimReader(t, r.sim)
  await online(r)
  await r.client.publishAsync('/alice/devices/dev1/cmd', 'LED ON', { qos: 1 })
  await until(() => reader.received().toString() === 'LED ON\r\n', 5000, 'the command on the device side')
  await until(() => r.bridge.status().counters.commands === 1, 5000, 'the write to complete')

  const h = await rig(t, { name: 'dev2', command: { topic: '/{account}/devices/{device}/cmd', append: '', encoding: 'hex' } })
  const hexReader = openSimReader(t, h.sim)
  await online(h)
  await h.client.publishAsync('/alice/devices/dev2/cmd', '01 02 fF', { qos: 1 })
  await until(() => hexReader.received().length === 3, 5000, 'three bytes')
  t.same([...hexReader.received()], [1, 2, 255])
  await h.client.publishAsync('/alice/devices/dev2/cmd', 'zz', { qos: 1 })
  await until(() => h.bridge.status().counters.rejected === 1, 5000, 'the bad hex to be rejected')
  t.equal(hexReader.received().length, 3, 'nothing written for it')
})

t.test('ACL: a device of account alice configured with a topic outside /alice/ is refused and counted', async (t) => {
  const r = await rig(t, { topic: '/bob/sensors/{device}/{field}' })
  await r.b.addAccount('bob', 'pw-bob')
  const bob = await connectWithAck(t, r.b.url, { protocolVersion: 5, username: 'bob', password: 'pw-bob', clientId: 'bob-sub' })
  await bob.client.subscribeAsync('/bob/#', { qos: 1 })
  await online(r)
  r.simWrite('1\n2\n3\n')
  await until(() => r.bridge.status().counters.rejected === 3, 5000, 'three refused publishes')
  t.equal(r.bridge.status().counters.published, 0)
  t.same(bob.messages, [], "nothing reached bob's namespace")
  t.equal(r.lastStatus()?.state, 'online', 'the status topic inside /alice/ is still published')
})

t.test('dispose publishes offline with lastError "stopped" and closes the port', async (t) => {
  const r = await rig(t)
  await online(r)
  await r.bridge.dispose()
  await until(() => r.lastStatus()?.lastError === 'stopped', 5000, 'the stopped status')
  t.equal(r.lastStatus()?.state, 'offline')
  t.equal(r.bridge.status().state, 'stopped')
  // The port lock is released: a second bridge on the same path comes online.
  const again = await rig(t, { name: 'dev3', path: r.dev })
  await online(again)
  t.pass('reopened')
})
