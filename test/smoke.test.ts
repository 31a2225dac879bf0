import t from 'tap'
import { startBroker } from './helpers/broker.js'
import { collect, connectClient, until } from './helpers/clients.js'

t.test('a QoS 1 message reaches a subscriber through a real broker', async (t) => {
  const b = await startBroker(t)
  const sub = await connectClient(t, b.url, { protocolVersion: 5 })
  const got = collect(sub)
  await sub.subscribeAsync('s/#', { qos: 1 })
  const pub = await connectClient(t, b.url)
  await pub.publishAsync('s/1', 'hi', { qos: 1 })
  await until(() => got.length === 1)
  t.equal(got[0]?.payload.toString(), 'hi')
})
