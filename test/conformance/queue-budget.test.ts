import t from 'tap'
import { startBroker } from '../helpers/broker.js'
import { connectWithAck, until } from '../helpers/clients.js'

t.test('limits.maxQueuedMessagesTotal bounds the queues of all sessions together; drops are counted and in $SYS', async (t) => {
  const b = await startBroker(t, { limits: { maxQueuedMessages: 100, maxQueuedMessagesTotal: 5 } })
  const broker = b.app.broker
  for (const id of ['qa', 'qb']) {
    const { client } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: id, clean: false })
    await client.subscribeAsync('budget/t', { qos: 1 })
    await client.endAsync()
    await until(() => !broker.hasLive(id), 5000, `${id} offline`)
  }
  const { client: pub } = await connectWithAck(t, b.url, { clientId: 'budget-pub' })
  for (let i = 1; i <= 4; i++) await pub.publishAsync('budget/t', `m${i}`, { qos: 1 })
  // 4 messages for 2 sessions: 8 copies, of which 5 fit the shared budget.
  t.equal(broker.budget.messages, 5, 'five copies queued in all')
  t.equal((broker.sessions.get('qa')?.queued ?? 0) + (broker.sessions.get('qb')?.queued ?? 0), 5)
  t.equal(broker.stats.droppedQueueFull, 3, 'three copies dropped and counted')

  const qaQueued = broker.sessions.get('qa')?.queued ?? 0
  const qbQueued = broker.sessions.get('qb')?.queued ?? 0
  t.ok(qaQueued > 0, 'qa holds part of the budget')
  const { messages } = await connectWithAck(t, b.url, { protocolVersion: 4, clientId: 'qa', clean: false })
  await until(() => messages.length === qaQueued, 5000, 'qa receives what was queued for it')
  t.equal(broker.budget.messages, qbQueued, 'draining one session returns its share of the budget')
  await pub.publishAsync('budget/t', 'after', { qos: 1 })
  await until(() => messages.some((m) => m.payload.toString() === 'after'), 5000, 'new message after the drain')
  t.equal(broker.sessions.get('qb')?.queued, qbQueued + 1, 'qb queues again once there is room')
  t.equal(broker.budget.messages, qbQueued + 1)
})
