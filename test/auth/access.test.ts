// Account namespaces and grants, with real MQTT clients: account A owns /A/#, grants open
// filters of /A/ to other accounts, and nothing outside a client's rights ever reaches it.
import type { IPublishPacket } from 'mqtt'
import t from 'tap'
import { type AccountsBroker, connackCode, pubackCode, startAccountsBroker, subackCodes } from '../helpers/accounts.js'
import { connectWithAck, type Received, sleep, until } from '../helpers/clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

async function threeAccounts(t: Teardown): Promise<AccountsBroker> {
  const b = await startAccountsBroker(t)
  await b.addAccount('A', 'pw-A')
  await b.addAccount('B', 'pw-B')
  await b.addAccount('root', 'pw-root', { admin: true })
  return b
}

function login(t: Teardown, b: AccountsBroker, account: string, extra: Record<string, unknown> = {}) {
  return connectWithAck(t, b.url, { protocolVersion: 5, username: account, password: `pw-${account}`, ...extra })
}

const topics = (ms: Received[]): string[] => ms.map((m) => m.topic)

t.test('an account publishes and subscribes freely in its own namespace /A/#', async (t) => {
  const b = await threeAccounts(t)
  const a1 = await login(t, b, 'A', { clientId: 'a1' })
  const a2 = await login(t, b, 'A', { clientId: 'a2' })
  t.same(await subackCodes(a2.client, '/A/#'), [1])
  t.equal(await pubackCode(a1.client, '/A/room/1/temp', '21.5'), 0)
  t.equal(await pubackCode(a1.client, '/A', 'the namespace root'), 0)
  await until(() => a2.messages.length === 2, 5000, 'own messages')
  t.same(topics(a2.messages), ['/A/room/1/temp', '/A'])
})

t.test('attack list: broad and foreign filters never deliver another account’s messages', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  const attacker = await login(t, b, 'B')
  const filters = ['#', '+/#', '/+/x', '/+/#', '/A/#', '$share/g/#', '$share/g//A/#', '/+/+']
  const granted = await subackCodes(attacker.client, filters)
  const codes = Object.fromEntries(filters.map((f, i) => [f, granted[i]]))
  t.equal(codes['/A/#'], 0x87, 'a filter wholly inside another namespace is refused')
  t.equal(codes['$share/g//A/#'], 0x87, 'and so is its shared form')
  for (const f of ['#', '+/#', '/+/x', '/+/#', '$share/g/#', '/+/+']) t.equal(codes[f], 1, `${f} is accepted: it can match B's own topics`)
  t.same(await subackCodes(attacker.client, '$SYS/#'), [0x87], '$SYS/# is for admins only')

  for (const topic of ['/A/x', '/A/secret', '/A/x/y', '/A']) await a.client.publishAsync(topic, 'for A only', { qos: 1 })
  await a.client.publishAsync('/A/kept', 'retained secret', { qos: 1, retain: true })
  await attacker.client.publishAsync('/B/x', 'own', { qos: 1 })
  await until(() => attacker.messages.some((m) => m.topic === '/B/x'), 5000, 'B’s own message')
  await sleep(200)
  t.same(
    attacker.messages.filter((m) => !m.topic.startsWith('/B/')),
    [],
    'nothing of A leaked through any wildcard or shared subscription',
  )
  // A late broad subscription gets no foreign retained message either.
  const late = await login(t, b, 'B', { clientId: 'late' })
  await late.client.subscribeAsync('#')
  await late.client.subscribeAsync('/+/kept')
  await sleep(200)
  t.same(topics(late.messages), [], 'no foreign retained message')
})

t.test('publishing outside the namespace is dropped, counted and answered 0x87; retained ones are not kept', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  const attacker = await login(t, b, 'B')
  await a.client.subscribeAsync('/A/#')
  const before = b.app.broker.stats.publishDenied
  t.equal(await pubackCode(attacker.client, '/A/cmd', 'inject'), 0x87, 'v5 PUBACK 0x87 not authorized')
  t.equal(await pubackCode(attacker.client, '/A/cmd', 'inject retained', { retain: true }), 0x87)
  t.equal(await pubackCode(attacker.client, 'plain/topic', 'outside every namespace'), 0x87)
  t.equal(await pubackCode(attacker.client, '$SYS/broker/fake', 'x'), 0x87)
  t.equal(b.app.broker.stats.publishDenied - before, 4, 'each refusal is counted')
  t.equal(b.app.broker.router.retained.get('/A/cmd'), undefined, 'the retained message was not stored')
  await sleep(200)
  t.same(a.messages, [], 'A got nothing')
})

t.test('a will aimed at another namespace: the CONNECT is refused and no will is ever published', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  await a.client.subscribeAsync('/A/#')
  const code = await connackCode(b.url, { protocolVersion: 5, username: 'B', password: 'pw-B', will: { topic: '/A/alarm', payload: Buffer.from('fake'), qos: 1, retain: true } })
  t.equal(code, 0x87)
  const v4 = await connackCode(b.url, { protocolVersion: 4, username: 'B', password: 'pw-B', will: { topic: '/A/alarm', payload: Buffer.from('fake'), qos: 0, retain: false } })
  t.equal(v4, 5, '3.1.1: not authorized')
  // A will inside the own namespace is fine, and goes out.
  const ok = await login(t, b, 'B', { clientId: 'b-will', will: { topic: '/B/status', payload: Buffer.from('gone'), qos: 0, retain: false } })
  t.ok(ok.client.connected)
  await sleep(100)
  t.same(a.messages, [])
  t.equal(b.app.broker.router.retained.get('/A/alarm'), undefined)
})

t.test('a topic alias cannot smuggle a foreign topic', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  await a.client.subscribeAsync('/A/#')
  const attacker = await login(t, b, 'B', { topicAliasMaximum: 0 })
  // Alias 1 first names an own topic, then is re-pointed at a foreign one, then used bare.
  t.equal(await pubackCode(attacker.client, '/B/own', 'ok', { properties: { topicAlias: 1 } }), 0)
  t.equal(await pubackCode(attacker.client, '/A/smuggled', 'x', { properties: { topicAlias: 1 } }), 0x87)
  t.equal(await pubackCode(attacker.client, '', 'via the alias', { properties: { topicAlias: 1 } }), 0x87)
  await sleep(200)
  t.same(a.messages, [], 'nothing reached A')
})

t.test('grant requests over MQTT: the owner grants and revokes, the result comes on <topic>/result and the v5 response topic', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  const grantee = await login(t, b, 'B')
  await a.client.subscribeAsync('/A/+/result')
  await a.client.subscribeAsync('/A/replies/#')

  // Before the grant the filter is refused outright.
  t.same(await subackCodes(grantee.client, '/A/mytopic'), [0x87])

  await a.client.publishAsync('/A/grant_sub_topic', JSON.stringify({ name: 'mytopic', accountId: 'B' }), {
    qos: 1,
    properties: { responseTopic: '/A/replies/1', correlationData: Buffer.from('req-1') },
  })
  await until(() => a.messages.length === 2, 5000, 'result and response')
  const result = a.messages.find((m) => m.topic === '/A/grant_sub_topic/result')
  const response = a.messages.find((m) => m.topic === '/A/replies/1')
  t.same(JSON.parse(result?.payload.toString() ?? ''), { ok: true })
  t.same(JSON.parse(response?.payload.toString() ?? ''), { ok: true })
  t.same(response?.packet.properties?.correlationData, Buffer.from('req-1'), 'correlation data echoed')

  t.same(await subackCodes(grantee.client, '/A/mytopic'), [1], 'granted: the subscription is accepted')
  t.equal(await pubackCode(grantee.client, '/A/mytopic', 'no publish right yet'), 0x87)
  await a.client.publishAsync('/A/mytopic', 'hello B', { qos: 1 })
  await until(() => grantee.messages.length === 1, 5000, 'granted message')

  await a.client.publishAsync('/A/grant_pub_topic', JSON.stringify({ name: '/A/mytopic', accountId: 'B' }), { qos: 1 })
  await until(() => a.messages.some((m) => m.topic === '/A/grant_pub_topic/result'), 5000, 'pub grant result')
  t.equal(await pubackCode(grantee.client, '/A/mytopic', 'B may publish now'), 0, 'absolute names work too')

  a.messages.length = 0
  await a.client.publishAsync('/A/revoke_sub_topic', JSON.stringify({ name: 'mytopic', accountId: 'B' }), { qos: 1 })
  await until(() => a.messages.some((m) => m.topic === '/A/revoke_sub_topic/result'), 5000, 'revoke result')
  grantee.messages.length = 0
  await a.client.publishAsync('/A/mytopic', 'after the revoke', { qos: 1 })
  await sleep(200)
  t.same(grantee.messages, [], 'revoking stops delivery to the live subscription at once')
})

t.test('bad grant requests get a clear error and change nothing', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  await a.client.subscribeAsync('/A/+/result')
  const cases: [string, string, RegExp][] = [
    ['grant_sub_topic', 'not json', /not JSON/],
    ['grant_sub_topic', '[1,2]', /"name"/],
    ['grant_sub_topic', JSON.stringify({ name: 'x' }), /accountId/],
    ['grant_sub_topic', JSON.stringify({ name: 'x', accountId: 'nobody' }), /no account "nobody"/],
    ['grant_sub_topic', JSON.stringify({ name: 'x', accountId: 'a/b' }), /accountId/],
    ['grant_sub_topic', JSON.stringify({ name: '/B/x', accountId: 'B' }), /outside \/A\//],
    ['grant_sub_topic', JSON.stringify({ name: 'x/#/y', accountId: 'B' }), /"x\/#\/y"/],
    ['grant_sub_topic', JSON.stringify({ name: 'x', accountId: 'A' }), /own namespace/],
    ['revoke_pub_topic', JSON.stringify({ name: 'never', accountId: 'B' }), /no grant/],
  ]
  for (const [request, body, error] of cases) {
    a.messages.length = 0
    await a.client.publishAsync(`/A/${request}`, body, { qos: 1 })
    await until(() => a.messages.length === 1, 5000, `result of ${body}`)
    const r = JSON.parse(a.messages[0]?.payload.toString() ?? '{}') as { ok: boolean; error?: string }
    t.equal(r.ok, false, body)
    t.match(r.error, error, body)
  }
  t.same(b.app.accounts?.store.snapshot().grants, [], 'no grant was made')
})

t.test('a grant request published by a non-owner is refused and has no effect, even with publish rights on /A/#', async (t) => {
  const b = await threeAccounts(t)
  b.grant('A', 'B', '/A/#', { publish: true })
  const attacker = await login(t, b, 'B')
  t.equal(await pubackCode(attacker.client, '/A/x', 'allowed by the grant'), 0)
  t.equal(await pubackCode(attacker.client, '/A/grant_sub_topic', JSON.stringify({ name: '#', accountId: 'B' })), 0x87)
  t.equal(await pubackCode(attacker.client, '/A/grant_pub_topic', JSON.stringify({ name: '#', accountId: 'B' })), 0x87)
  t.equal(await pubackCode(attacker.client, '/A/revoke_sub_topic', '{}'), 0x87)
  t.equal(await pubackCode(attacker.client, '/A/grant_sub_topic/result', '{"ok":true}'), 0x87, 'nor fake a result')
  t.equal(await pubackCode(attacker.client, '/A/events/connected', '{}'), 0x87, 'nor fake an event')
  await sleep(100)
  t.same(
    b.app.accounts?.store.snapshot().grants.map((g) => g.filter),
    ['/A/#'],
    'only the grant A made exists',
  )
})

t.test('a response topic outside the requester’s rights gets no answer', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  const victim = await login(t, b, 'B')
  await victim.client.subscribeAsync('/B/#')
  await a.client.subscribeAsync('/A/grant_sub_topic/result')
  await a.client.publishAsync('/A/grant_sub_topic', JSON.stringify({ name: 'x', accountId: 'B' }), { qos: 1, properties: { responseTopic: '/B/inbox' } })
  await until(() => a.messages.length === 1, 5000, 'result')
  await sleep(200)
  t.same(topics(victim.messages), [], 'nothing was injected into B’s namespace')
})

t.test('a revoked grant with a live filtered subscription and an offline queue: nothing more is delivered', async (t) => {
  const b = await threeAccounts(t)
  b.grant('A', 'B', '/A/feed/#', { subscribe: true })
  const a = await login(t, b, 'A')
  // A broad filter (checked per delivery) and a persistent session with messages queued while offline.
  const live = await login(t, b, 'B', { clientId: 'b-live' })
  await live.client.subscribeAsync('#', { qos: 1 })
  const offline = await login(t, b, 'B', { clientId: 'b-offline', clean: false, properties: { sessionExpiryInterval: 600 } })
  await offline.client.subscribeAsync('/A/feed/#', { qos: 1 })
  offline.client.end(true)
  await until(() => !b.app.broker.hasLive('b-offline'), 5000, 'offline')
  await a.client.publishAsync('/A/feed/1', 'before revoke', { qos: 1 })
  // '#' also brings B's own events: only A's topics count here.
  const fromA = (ms: Received[]): string[] => topics(ms).filter((x) => x.startsWith('/A/'))
  await until(() => fromA(live.messages).length === 1, 5000, 'live delivery before revoke')
  t.equal(b.app.broker.sessions.get('b-offline')?.queued, 1, 'one message queued for the offline session')

  b.revoke('A', 'B', '/A/feed/#', { subscribe: true })
  t.equal(b.app.broker.sessions.get('b-offline')?.queued, 0, 'the queued message was taken back')
  await a.client.publishAsync('/A/feed/2', 'after revoke', { qos: 1 })
  const back = await login(t, b, 'B', { clientId: 'b-offline', clean: false, properties: { sessionExpiryInterval: 600 } })
  await sleep(300)
  t.same(fromA(live.messages), ['/A/feed/1'], 'the live subscription stopped at once')
  t.same(fromA(back.messages), [], 'the reconnecting session gets nothing of A')

  // Granting again resumes the subscriptions that were kept.
  b.grant('A', 'B', '/A/feed/#', { subscribe: true })
  await a.client.publishAsync('/A/feed/3', 'granted again', { qos: 1 })
  await until(() => fromA(back.messages).length === 1 && fromA(live.messages).length === 2, 5000, 'resumed')
})

t.test('shared subscriptions obey the same rights', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  const m1 = await login(t, b, 'B', { clientId: 'm1' })
  const m2 = await login(t, b, 'A', { clientId: 'm2' })
  await m1.client.subscribeAsync('$share/g//+/jobs')
  await m2.client.subscribeAsync('$share/g//+/jobs')
  for (let i = 0; i < 6; i++) await a.client.publishAsync('/A/jobs', `job ${i}`, { qos: 1 })
  await until(() => m2.messages.length === 6, 5000, 'every job to the member that may read it')
  t.same(m1.messages, [], 'the member without rights got none')
})

t.test('$SYS is for admins; an admin may read and publish anywhere', async (t) => {
  const b = await startAccountsBroker(t, { sys: { interval: 1 } })
  await b.addAccount('A', 'pw-A')
  await b.addAccount('root', 'pw-root', { admin: true })
  const root = await login(t, b, 'root')
  const a = await login(t, b, 'A')
  t.same(await subackCodes(root.client, '$SYS/#'), [1])
  t.same(await subackCodes(root.client, '/A/#'), [1])
  await until(() => root.messages.some((m) => m.topic.startsWith('$SYS/')), 5000, '$SYS')
  await a.client.publishAsync('/A/x', 'seen by the admin', { qos: 1 })
  await until(() => root.messages.some((m) => m.topic === '/A/x'), 5000, 'admin reads /A/')
  t.equal(await pubackCode(root.client, '/A/y', 'admin writes /A/'), 0)
  t.same(await subackCodes(a.client, '$SYS/#'), [0x87])
})

t.test('account events: connected, disconnected, auth_failed and acl_denied on /A/events/...', async (t) => {
  const b = await threeAccounts(t)
  const watcher = await login(t, b, 'A', { clientId: 'watcher' })
  await watcher.client.subscribeAsync('/A/events/#')
  const other = await login(t, b, 'B', { clientId: 'b-watch' })
  await other.client.subscribeAsync('/B/events/#')

  const c = await login(t, b, 'A', { clientId: 'device-1' })
  t.equal(await pubackCode(c.client, '/B/not-mine', 'x'), 0x87)
  await subackCodes(c.client, '/B/#')
  c.client.end()
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'A', password: 'wrong' }), 0x86)
  await until(() => watcher.messages.length >= 5, 5000, 'five events')
  const events = watcher.messages.map((m) => ({ topic: m.topic, body: JSON.parse(m.payload.toString()) as Record<string, unknown> }))
  t.match(events.find((e) => e.topic === '/A/events/connected' && e.body.clientId === 'device-1'), { body: { event: 'connected', via: 'password' } })
  t.match(events.find((e) => e.topic === '/A/events/acl_denied' && e.body.action === 'publish'), { body: { clientId: 'device-1', topic: '/B/not-mine' } })
  t.match(events.find((e) => e.topic === '/A/events/acl_denied' && e.body.action === 'subscribe'), { body: { clientId: 'device-1', topic: '/B/#' } })
  t.match(events.find((e) => e.topic === '/A/events/disconnected'), { body: { clientId: 'device-1' } })
  t.match(events.find((e) => e.topic === '/A/events/auth_failed'), { body: { reasonCode: 0x86 } })
  t.ok(events.every((e) => typeof e.body.time === 'string'), 'each event has a time')
  t.same(
    other.messages.filter((m) => !m.topic.startsWith('/B/events/')),
    [],
    'B hears nothing of A’s events',
  )
  t.notOk(
    other.messages.some((m) => (JSON.parse(m.payload.toString()) as { clientId?: string }).clientId === 'device-1'),
    'not even about A’s client touching B',
  )
})

t.test('a handler role in the store lets one account serve another', async (t) => {
  const b = await threeAccounts(t)
  await b.addAccount('C', 'pw-C')
  const store = b.app.accounts?.store
  store?.addHandler('B', 'A', 'orders/#')
  b.reload()
  const handler = await login(t, b, 'B')
  const a = await login(t, b, 'A')
  const c = await login(t, b, 'C')
  t.same(await subackCodes(handler.client, '/+/orders/#'), [1])
  await a.client.publishAsync('/A/orders/1', 'from A', { qos: 1 })
  await c.client.publishAsync('/C/orders/1', 'from C', { qos: 1 })
  await until(() => handler.messages.length === 1, 5000, 'served order')
  await sleep(200)
  t.same(topics(handler.messages), ['/A/orders/1'])
  t.equal(await pubackCode(handler.client, '/A/orders/1/reply', 'done'), 0, 'the handler may answer inside its filter')
  t.equal(await pubackCode(handler.client, '/A/other', 'no'), 0x87, 'but not outside it')
})

t.test('retained messages already stored follow the reader’s rights when it subscribes', async (t) => {
  const b = await threeAccounts(t)
  const a = await login(t, b, 'A')
  await a.client.publishAsync('/A/open/state', 'on', { qos: 1, retain: true })
  await a.client.publishAsync('/A/closed/state', 'secret', { qos: 1, retain: true })
  b.grant('A', 'B', '/A/open/#', { subscribe: true })
  const reader = await login(t, b, 'B')
  await reader.client.subscribeAsync('/+/+/state')
  await until(() => reader.messages.length === 1, 5000, 'retained')
  await sleep(200)
  t.same(topics(reader.messages), ['/A/open/state'])
  t.equal((reader.messages[0]?.packet as IPublishPacket).retain, true)
})
