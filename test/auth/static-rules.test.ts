// StaticRuleHooks: ordered rules, first match wins, placeholders, 'filtered' subscriptions;
// then the same rules through a real broker.
import type { IClientOptions, MqttClient, Packet } from 'mqtt'
import mqtt from 'mqtt'
import t from 'tap'
import { type StaticRule, StaticRuleHooks } from '../../src/auth/static-rules.js'
import type { ClientInfo } from '../../src/mqtt/broker/hooks.js'
import { matchesFilter } from '../../src/mqtt/topic/match.js'
import { startBroker } from '../helpers/broker.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { mulberry32, pick } from '../topic/fixtures/random.js'

type RuleIn = Omit<StaticRule, 'username'> & { username?: string }

function hooks(rules: RuleIn[], defaultAction: 'allow' | 'deny' = 'deny', allowAnonymous = true): StaticRuleHooks {
  return new StaticRuleHooks({ rules: rules.map((r) => ({ username: undefined, ...r })), defaultAction, allowAnonymous })
}

function client(username: string | undefined, clientId = 'c1'): ClientInfo {
  return { clientId, username, account: undefined, admin: false, remoteAddress: '127.0.0.1', protocolVersion: 5, listener: 'mqtt' }
}

const allow = (topic: string, access: RuleIn['access'] = 'both', username?: string): RuleIn =>
  username === undefined ? { action: 'allow', access, topic } : { action: 'allow', access, topic, username }
const deny = (topic: string, access: RuleIn['access'] = 'both', username?: string): RuleIn =>
  username === undefined ? { action: 'deny', access, topic } : { action: 'deny', access, topic, username }

const connectRequest = (username: string | undefined) => ({
  clientId: 'c1',
  username,
  password: undefined,
  remoteAddress: '127.0.0.1',
  protocolVersion: 5 as const,
  listener: 'mqtt',
  certificateCommonName: undefined,
})

// ---------------------------------------------------------------------------------------------
// Unit tests

t.test('the first matching rule wins', async (t) => {
  const h = hooks([deny('a/secret'), allow('a/#')])
  const c = client('u')
  t.notOk(h.authorizePublish(c, 'a/secret'))
  t.ok(h.authorizePublish(c, 'a/open'))
  t.ok(h.authorizePublish(c, 'a'), "'a/#' matches its parent [MQTT-4.7.1-2]")
  const reversed = hooks([allow('a/#'), deny('a/secret')])
  t.ok(reversed.authorizePublish(c, 'a/secret'), 'the same rules in the other order')
  t.ok(reversed.canRead(c, 'a/secret'))
})

t.test('the default action decides when no rule matches', async (t) => {
  const c = client('u')
  t.notOk(hooks([allow('a/#')], 'deny').authorizePublish(c, 'b'))
  t.ok(hooks([deny('a/#')], 'allow').authorizePublish(c, 'b'))
  t.notOk(hooks([], 'deny').canRead(c, 'x'))
  t.ok(hooks([], 'allow').canRead(c, 'x'))
  t.equal(hooks([], 'deny').authorizeSubscribe(c, 'x/#'), 'deny')
  t.equal(hooks([], 'allow').authorizeSubscribe(c, 'x/#'), 'allow')
})

t.test('rules apply to their access kind only', async (t) => {
  const h = hooks([allow('pub/#', 'publish'), allow('sub/#', 'subscribe'), allow('both/#', 'both')])
  const c = client('u')
  t.ok(h.authorizePublish(c, 'pub/x'))
  t.notOk(h.canRead(c, 'pub/x'))
  t.equal(h.authorizeSubscribe(c, 'pub/x'), 'deny')
  t.notOk(h.authorizePublish(c, 'sub/x'))
  t.ok(h.canRead(c, 'sub/x'))
  t.equal(h.authorizeSubscribe(c, 'sub/#'), 'allow')
  t.ok(h.authorizePublish(c, 'both/x'))
  t.ok(h.canRead(c, 'both/x'))
})

t.test('a rule with a username applies to that user only', async (t) => {
  const h = hooks([allow('admin/#', 'both', 'root')])
  t.ok(h.authorizePublish(client('root'), 'admin/x'))
  t.notOk(h.authorizePublish(client('Root'), 'admin/x'), 'usernames are case-sensitive')
  t.notOk(h.authorizePublish(client('alice'), 'admin/x'))
  t.notOk(h.authorizePublish(client(undefined), 'admin/x'))
})

t.test('{username} and {clientid} placeholders are replaced by the client’s own', async (t) => {
  const h = hooks([allow('users/{username}/#'), allow('devices/{clientid}/+', 'publish')])
  const alice = client('alice', 'dev-1')
  t.ok(h.authorizePublish(alice, 'users/alice/x'))
  t.ok(h.canRead(alice, 'users/alice'))
  t.notOk(h.authorizePublish(alice, 'users/bob/x'))
  t.notOk(h.canRead(alice, 'users/bob/x'))
  t.ok(h.authorizePublish(alice, 'devices/dev-1/temp'))
  t.notOk(h.authorizePublish(alice, 'devices/dev-2/temp'))
  t.notOk(h.canRead(alice, 'devices/dev-1/temp'), 'the clientid rule is publish-only')
  t.equal(h.authorizeSubscribe(alice, 'users/alice/#'), 'allow')
  t.equal(h.authorizeSubscribe(alice, 'users/+/#'), 'filtered')
  t.equal(h.authorizeSubscribe(alice, 'users/bob/#'), 'deny')
})

t.test("a username with '/', '+' or '#' gets nothing from placeholder rules", async (t) => {
  const h = hooks([allow('users/{username}/#'), allow('public/#')])
  for (const name of ['a/b', '+', '#', 'x+y', 'al#ce', '/']) {
    const c = client(name)
    t.notOk(h.authorizePublish(c, `users/${name}/x`), `${name}: not the literal substitution`)
    t.notOk(h.authorizePublish(c, 'users/other/x'), `${name}: not another user's topic`)
    t.notOk(h.canRead(c, 'users/a/b/x'), `${name}: no read through a widened rule`)
    t.equal(h.authorizeSubscribe(c, 'users/#'), 'deny', `${name}: no subscription under users/`)
    // The unusable rule is skipped, not turned into a deny-all shadowing the rules after it.
    t.ok(h.authorizePublish(c, 'public/x'), `${name}: later rules still apply`)
    t.ok(h.canRead(c, 'public/x'))
  }
  const byClientId = hooks([allow('devices/{clientid}/#'), allow('public/#')])
  t.notOk(byClientId.authorizePublish(client('u', 'site/+'), 'devices/site/x/y'), "a clientid with '/' or '+' likewise")
  t.ok(byClientId.authorizePublish(client('u', 'site/+'), 'public/x'))
  t.ok(
    hooks([allow('users/{username}/#')]).authorizePublish(client('alice', 'odd/id#'), 'users/alice/x'),
    'an unsafe clientid does not spoil a {username} rule',
  )
})

t.test('a deny rule with a placeholder still denies a client whose name cannot fill it', async (t) => {
  const h = hooks([deny('users/{username}/private'), allow('users/#')])
  t.notOk(h.authorizePublish(client('a+b'), 'users/a+b/private'))
  t.notOk(h.authorizePublish(client('a/b'), 'users/a/b/private'), 'the deny is not escaped by a slash')
  t.notOk(h.authorizePublish(client('a/b'), 'users/x/private'))
  t.ok(h.authorizePublish(client('alice'), 'users/bob/private'), 'an ordinary name denies only its own topic')
  t.notOk(h.authorizePublish(client('alice'), 'users/alice/private'))
})

t.test('an anonymous client gets nothing from a {username} rule', async (t) => {
  const h = hooks([allow('users/{username}/#')])
  t.notOk(h.authorizePublish(client(undefined), 'users//x'))
  t.notOk(h.canRead(client(undefined), 'users//x'))
  t.notOk(h.authorizePublish(client(''), 'users//x'))
})

t.test("'filtered' for a filter broader than the rules; 'allow'/'deny' when one rule decides all of it", async (t) => {
  const h = hooks([deny('public/secret'), allow('public/#', 'subscribe')])
  const c = client('u')
  t.equal(h.authorizeSubscribe(c, '#'), 'filtered', "'#' reaches public/ and more")
  t.equal(h.authorizeSubscribe(c, 'public/#'), 'filtered', 'public/secret is inside it and denied')
  t.equal(h.authorizeSubscribe(c, 'public/+/x'), 'allow', 'wholly inside public/# and past the deny')
  t.equal(h.authorizeSubscribe(c, 'public/secret'), 'deny')
  t.equal(h.authorizeSubscribe(c, 'private/#'), 'deny', 'no rule reaches it: the default')
  t.equal(h.authorizeSubscribe(c, '$SYS/#'), 'deny', "[MQTT-4.7.2-1] '#' rules do not reach $ topics")
  t.equal(h.authorizeSubscribe(c, '$share/g/#'), 'filtered', 'a shared subscription is judged by its filter')
  t.equal(h.authorizeSubscribe(c, '$share/g/public/a'), 'allow')
  t.equal(h.authorizeSubscribe(c, '$share//x'), 'deny', 'an invalid shared filter')
  t.equal(hooks([deny('a/#')], 'deny').authorizeSubscribe(c, '#'), 'deny', 'nothing in it is allowed')
  t.equal(hooks([deny('a/#')], 'allow').authorizeSubscribe(c, '#'), 'filtered')
})

t.test('property: an allow or deny subscription decision agrees with canRead on every topic it matches', async (t) => {
  const LEVELS = ['a', 'b', '$x', '+']
  const TOPIC_LEVELS = ['a', 'b', '$x', 'c']
  const topics: string[] = []
  const grow = (levels: string[]): void => {
    if (levels.length > 0) topics.push(levels.join('/'))
    if (levels.length < 4) for (const l of TOPIC_LEVELS) grow([...levels, l])
  }
  grow([])
  const rng = mulberry32(11)
  const randomFilter = (): string => {
    const n = 1 + Math.floor(rng() * 3)
    const levels = Array.from({ length: n }, () => pick(rng, LEVELS))
    if (rng() < 0.4) levels.push('#')
    return levels.join('/')
  }
  const bad: string[] = []
  let decided = 0
  let filtered = 0
  for (let i = 0; i < 3000; i++) {
    const rules = Array.from({ length: 1 + Math.floor(rng() * 4) }, () => (rng() < 0.5 ? allow(randomFilter()) : deny(randomFilter())))
    const h = hooks(rules, rng() < 0.5 ? 'allow' : 'deny')
    const filter = randomFilter()
    const c = client('u')
    const decision = h.authorizeSubscribe(c, filter)
    if (decision === 'filtered') {
      filtered++
      continue
    }
    decided++
    for (const topic of topics) {
      if (!matchesFilter(filter, topic)) continue
      if (h.canRead(c, topic) !== (decision === 'allow')) {
        bad.push(`${JSON.stringify(rules.map((r) => `${r.action} ${r.topic}`))} ${filter}: ${decision} but canRead(${topic}) says otherwise`)
        break
      }
    }
  }
  t.same(bad.slice(0, 10), [])
  t.ok(decided > 300 && filtered > 300, `decided ${decided}, filtered ${filtered}`)
})

t.test('authenticate: anonymous clients only when allowed', async (t) => {
  const closed = hooks([], 'allow', false)
  const refused = closed.authenticate(connectRequest(undefined))
  t.equal(refused.ok, false)
  t.equal(refused.ok ? 0 : refused.reasonCode, 0x87)
  t.ok(closed.authenticate(connectRequest('alice')).ok, 'a client with a username is let in')
  t.ok(hooks([], 'allow', true).authenticate(connectRequest(undefined)).ok)
})

// ---------------------------------------------------------------------------------------------
// Through a real broker

interface Observed {
  client: MqttClient
  packets: Packet[]
  closed(): boolean
}

/** Connects and records every packet the client receives; resolves after CONNACK, whatever its code. */
async function connectObserved(t: { teardown(fn: () => unknown): void }, url: string, options: IClientOptions): Promise<Observed> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  const packets: Packet[] = []
  client.on('packetreceive', (p) => packets.push(p))
  client.on('error', () => {})
  let closed = false
  client.on('close', () => {
    closed = true
  })
  t.teardown(() => new Promise<void>((resolve) => client.end(true, {}, () => resolve())))
  await until(() => packets.some((p) => p.cmd === 'connack'), 5000, 'CONNACK')
  return { client, packets, closed: () => closed }
}

const publicOnly = {
  auth: {
    mode: 'static' as const,
    allowAnonymous: true,
    defaultAction: 'deny' as const,
    rules: [
      { action: 'allow' as const, access: 'subscribe' as const, topic: 'public/#' },
      { action: 'allow' as const, access: 'publish' as const, topic: 'public/#' },
      { action: 'allow' as const, access: 'publish' as const, topic: 'private/#', username: 'writer' },
      { action: 'allow' as const, access: 'both' as const, topic: 'users/{username}/#' },
    ],
  },
}

function subackCodes(o: Observed): number[][] {
  return o.packets.flatMap((p) => (p.cmd === 'suback' ? [p.granted.map((g) => (typeof g === 'number' ? g : -1))] : []))
}

t.test('[MQTT-3.9.3-1] a denied subscription gets SUBACK 0x87 in v5 and 0x80 in 3.1.1', async (t) => {
  const b = await startBroker(t, publicOnly)
  for (const [version, code] of [
    [5, 0x87],
    [4, 0x80],
  ] as const) {
    const o = await connectObserved(t, b.url, { protocolVersion: version, clientId: `sub-v${version}` })
    o.client.subscribe(['private/x', 'public/x'], { qos: 1 }, () => {})
    await until(() => subackCodes(o).length === 1, 5000, 'SUBACK')
    t.same(subackCodes(o)[0], [code, 1], `v${version}: denied, then granted QoS 1`)
  }
  t.equal(b.app.broker.stats.subscribeDenied, 2)
})

t.test('a denied publish is dropped and counted; v5 QoS 1 gets PUBACK 0x87', async (t) => {
  const b = await startBroker(t, publicOnly)
  const sub = await connectClient(t, b.url, { protocolVersion: 5, username: 'writer', clientId: 'watcher' })
  const got = collect(sub)
  // The writer may publish to private/ but nobody may read it; '#' is filtered to public/.
  await sub.subscribeAsync(['#', 'users/writer/#'], { qos: 1 })
  const pub = await connectObserved(t, b.url, { protocolVersion: 5, clientId: 'pub5' })
  pub.client.publish('private/x', 'denied-q1', { qos: 1 }, () => {})
  pub.client.publish('private/y', 'denied-q0', { qos: 0 })
  pub.client.publish('public/sentinel', 'sentinel', { qos: 1 }, () => {})
  await until(() => got.some((m) => m.topic === 'public/sentinel'), 5000, 'sentinel')
  await until(() => pub.packets.filter((p) => p.cmd === 'puback').length === 2, 5000, 'PUBACKs')
  const pubacks = pub.packets.flatMap((p) => (p.cmd === 'puback' ? [p.reasonCode ?? 0] : []))
  t.same(pubacks.sort(), [0, 0x87], 'the denied QoS 1 message gets 0x87, the allowed one success')
  t.same(
    got.map((m) => m.topic),
    ['public/sentinel'],
    'the denied messages reached nobody',
  )
  t.equal(b.app.broker.stats.publishDenied, 2)

  const pub4 = await connectObserved(t, b.url, { protocolVersion: 4, clientId: 'pub4' })
  pub4.client.publish('private/z', 'denied-v4', { qos: 1 }, () => {})
  await until(() => pub4.packets.some((p) => p.cmd === 'puback'), 5000, 'v4 PUBACK')
  t.equal(b.app.broker.stats.publishDenied, 3, '3.1.1: acknowledged (it has no negative PUBACK) and dropped')
})

t.test("a broad '#' subscription by a client allowed only public/# is accepted but sees only public/", async (t) => {
  const b = await startBroker(t, publicOnly)
  const writer = await connectClient(t, b.url, { protocolVersion: 5, username: 'writer', clientId: 'writer' })
  await writer.publishAsync('private/retained', 'secret', { qos: 1, retain: true })
  await writer.publishAsync('public/retained', 'open', { qos: 1, retain: true })
  const sub = await connectObserved(t, b.url, { protocolVersion: 5, clientId: 'broad' })
  const got = collect(sub.client)
  sub.client.subscribe('#', { qos: 1 }, () => {})
  await until(() => subackCodes(sub).length === 1, 5000, 'SUBACK')
  t.same(subackCodes(sub)[0], [1], 'the filter is granted')
  await until(() => got.some((m) => m.topic === 'public/retained'), 5000, 'public retained message')
  await writer.publishAsync('private/live', 'secret', { qos: 1 })
  await writer.publishAsync('users/writer/x', 'not for broad', { qos: 1 })
  await writer.publishAsync('public/live', 'open', { qos: 1 })
  await writer.publishAsync('public/sentinel', 'end', { qos: 1 })
  await until(() => got.some((m) => m.topic === 'public/sentinel'), 5000, 'sentinel')
  t.same(
    got.map((m) => m.topic),
    ['public/retained', 'public/live', 'public/sentinel'],
  )
  t.ok(
    got.every((m) => m.payload.toString() !== 'secret'),
    'nothing private leaked',
  )
})

t.test('{username} rules through the broker: each user reaches only their own subtree', async (t) => {
  const b = await startBroker(t, publicOnly)
  const alice = await connectClient(t, b.url, { protocolVersion: 5, username: 'alice', clientId: 'alice' })
  const gotAlice = collect(alice)
  await alice.subscribeAsync('users/+/inbox', { qos: 1 }) // filtered: only users/alice/inbox
  const bob = await connectObserved(t, b.url, { protocolVersion: 5, username: 'bob', clientId: 'bob' })
  bob.client.publish('users/alice/inbox', 'from bob', { qos: 1 }, () => {})
  bob.client.publish('users/bob/inbox', 'to himself', { qos: 1 }, () => {})
  await until(() => bob.packets.filter((p) => p.cmd === 'puback').length === 2, 5000, 'PUBACKs')
  await alice.publishAsync('users/alice/inbox', 'note to self', { qos: 1 })
  await until(() => gotAlice.length >= 1, 5000, 'alice message')
  await alice.publishAsync('public/sentinel', '', { qos: 1 })
  t.same(
    gotAlice.map((m) => m.payload.toString()),
    ['note to self'],
  )
  const codes = bob.packets.flatMap((p) => (p.cmd === 'puback' ? [p.reasonCode ?? 0] : []))
  t.ok(codes.includes(0x87), "bob may not publish into alice's subtree")
})

t.test('[MQTT-3.2.2-7] [MQTT-3.2.2-5] anonymous clients are refused when allowAnonymous is false: CONNACK 0x87 v5, 5 in 3.1.1', async (t) => {
  const b = await startBroker(t, { auth: { ...publicOnly.auth, allowAnonymous: false } })
  for (const [version, code] of [
    [5, 0x87],
    [4, 5],
  ] as const) {
    const o = await connectObserved(t, b.url, { protocolVersion: version, clientId: `anon-v${version}` })
    const connack = o.packets.find((p) => p.cmd === 'connack')
    const rc = connack?.cmd === 'connack' ? (version === 5 ? connack.reasonCode : connack.returnCode) : undefined
    t.equal(rc, code, `v${version}`)
    await until(o.closed, 5000, 'the server closes the connection after a refusing CONNACK')
  }
  t.equal(b.app.broker.stats.refusedAuth, 2)
  const named = await connectClient(t, b.url, { protocolVersion: 5, username: 'someone' })
  t.ok(named.connected, 'a client with a username still connects')
})
