import t from 'tap'
import { startAccountsBroker } from '../helpers/accounts.js'
import { connectWithAck, until } from '../helpers/clients.js'

t.test('push a rule, trigger it, read its result', async (t) => {
  const b = await startAccountsBroker(t, { rules: { enabled: true } })
  await b.addAccount('A', 'pw-A')
  const a = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'A', password: 'pw-A' })
  await a.client.subscribeAsync('/A/#')
  const source = `export function onMessage(msg) { const v = JSON.parse(msg.payload); publish('out/f', JSON.stringify({ f: v.c * 9 / 5 + 32 })); return { seen: msg.topic } }`
  await a.client.publishAsync('/A/scripts/put/c2f', JSON.stringify({ source, manifest: { triggers: { topics: ['in/c'] } } }), { qos: 1 })
  await until(() => a.messages.some((m) => m.topic === '/A/scripts/put/c2f/result'), 10000, 'push result')
  console.log(a.messages.map((m) => [m.topic, m.payload.toString()]))
  await a.client.publishAsync('/A/in/c', JSON.stringify({ c: 100 }), { qos: 1 })
  await until(() => a.messages.some((m) => m.topic === '/A/out/f'), 10000, 'rule output')
  await a.client.publishAsync('/A/run/c2f', JSON.stringify({ c: 0 }), { qos: 1 })
  await until(() => a.messages.some((m) => m.topic === '/A/run/c2f/result'), 10000, 'run result')
  console.log(a.messages.map((m) => [m.topic, m.payload.toString()]))
})
