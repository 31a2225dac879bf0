// The device registration API (the IoTtalk model) with real requests against a real perch: PUT,
// GET and DELETE /devices/{id} and GET /devices on the HTTP port (Basic and bearer JWT logins,
// ?account= checked against the ACL, every way a body is refused), and the same registration on
// the MQTT request topics /<account>/devices/put|delete/{id} and /<account>/devices/list.
import { randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { type AccountsBroker, pubackCode, startAccountsBroker } from '../helpers/accounts.js'
import { connectClient } from '../helpers/clients.js'
import { devicesRequest, type HttpAnswer } from '../helpers/device-app.js'
import { request } from '../helpers/graphs.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

t.setTimeout(60_000)

const SECRET = '0123456789abcdef0123'
const A = { user: 'A', password: 'pw-A' }
const B = { user: 'B', password: 'pw-B' }
const ROOT = { user: 'root', password: 'pw-root' }

const BODY = { name: 'BetaCat', idf_list: [['meow', ['dB']]], odf_list: [['luma', ['lux']]], accept_protos: ['mqtt'], profile: { model: 'AI' } }

interface Perch {
  b: AccountsBroker
  port: number
  /** An MQTT client logged in as A. */
  mqttA: MqttClient
  /** The device as perch's store has it (undefined when none is stored). */
  stored(id: string): { account: string; rev: string; name: string } | undefined
}

/** Accounts mode with graphs, the HTTP port and JWT logins; A, B and an admin; no login rate limit. */
async function perch(t: Teardown): Promise<Perch> {
  const b = await startAccountsBroker(t, {
    rules: { enabled: true },
    graphs: { enabled: true },
    http: { port: 0, host: '127.0.0.1' },
    auth: { jwt: { secret: SECRET, accountClaim: 'sub', clockTolerance: 0 }, rateLimit: { addressFailures: 10_000, accountFailures: 10_000, window: 60, block: 60 } },
  })
  await b.addAccount('A', 'pw-A')
  await b.addAccount('B', 'pw-B')
  await b.addAccount('root', 'pw-root', { admin: true })
  const port = b.app.metrics?.port
  if (port === undefined) throw new Error('no HTTP port')
  const mqttA = await connectClient(t, b.url, { username: 'A', password: 'pw-A', protocolVersion: 5 })
  return { b, port, mqttA, stored: (id) => b.app.graphs?.store.device(id) }
}

/** A request with no help: the status, the parsed body and the headers. */
async function raw(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<HttpAnswer & { headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers }
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

function sign(claims: Record<string, unknown>, secret = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(secret))
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

t.test('register, read, list, register again and remove a device', async (t) => {
  const { b, port, mqttA, stored } = await perch(t)
  const id = randomUUID()
  const upper = id.toUpperCase()
  const put = await devicesRequest(port, 'PUT', `/devices/${upper}`, { ...A, body: BODY })
  t.equal(put.status, 200, JSON.stringify(put.body))
  t.match(put.body, {
    state: 'ok',
    id,
    account: 'A',
    name: 'BetaCat',
    ctrl_chans: [`/A/devices/${id}/ctrl/up`, `/A/devices/${id}/ctrl/down`],
    topics: { idf: { meow: `/A/devices/${id}/idf/meow` }, odf: { luma: `/A/devices/${id}/odf/luma` } },
    presence_topic: `/A/devices/${id}/state`,
  })
  t.equal(put.body.id, id, 'the id in the answer is lower-cased')
  const rev = put.body.rev
  t.type(rev, 'string')
  t.not(rev, '', 'a revision token')
  t.match(stored(id), { account: 'A', name: 'BetaCat', rev }, 'the device is stored under A with that rev')

  const got = await devicesRequest(port, 'GET', `/devices/${id}`, A)
  t.equal(got.status, 200)
  t.match(got.body, { state: 'ok', id, account: 'A', name: 'BetaCat', idf_list: [['meow', ['dB']]], odf_list: [['luma', ['lux']]], accept_protos: ['mqtt'], profile: { model: 'AI' }, presence: 'offline' })
  t.equal((await devicesRequest(port, 'GET', `/devices/${upper}`, A)).status, 200, 'the upper-case id finds it too')

  // B's own device is not in A's list.
  const other = randomUUID()
  t.equal((await devicesRequest(port, 'PUT', `/devices/${other}`, { ...B, body: { name: 'Lamp', odf_list: ['luma'] } })).status, 200)
  const second = randomUUID()
  t.equal((await devicesRequest(port, 'PUT', `/devices/${second}`, { ...A, body: { name: 'Lamp', odf_list: ['luma'] } })).status, 200)
  const list = await devicesRequest(port, 'GET', '/devices', A)
  t.equal(list.status, 200)
  t.equal(list.body.state, 'ok')
  const ids = (list.body.devices as { id: string; account: string }[]).map((d) => d.id).sort()
  t.same(ids, [id, second].sort(), "A's list holds A's two devices, not B's")
  const listB = await devicesRequest(port, 'GET', '/devices', B)
  t.same((listB.body.devices as { id: string }[]).map((d) => d.id), [other], "B's list holds B's device only")

  const again = await devicesRequest(port, 'PUT', `/devices/${id}`, { ...A, body: { ...BODY, name: 'BetaCat 2' } })
  t.equal(again.status, 200)
  t.type(again.body.rev, 'string')
  t.not(again.body.rev, rev, 'a registration again issues a new rev')
  t.match(stored(id), { name: 'BetaCat 2', rev: again.body.rev })

  // Presence: the device says online on its uplink; perch keeps a retained record on the state topic.
  const state = `/A/devices/${id}/state`
  await mqttA.publishAsync(`/A/devices/${id}/ctrl/up`, JSON.stringify({ state: 'online', rev: again.body.rev }), { qos: 1, retain: true })
  const listed = await request(mqttA, '/A/devices/list', {})
  t.match(listed, { state: 'ok' }, 'a request after the uplink fences it')
  t.equal(b.app.graphs?.store.device(id)?.presence, 'online')
  t.match(JSON.parse(b.app.broker.router.retained.get(state)?.payload.toString() ?? '{}'), { state: 'online', rev: again.body.rev }, 'perch retains the presence')

  const del = await devicesRequest(port, 'DELETE', `/devices/${id}`, A)
  t.equal(del.status, 200)
  t.match(del.body, { state: 'ok', da_id: id, removed_links: 0 })
  t.equal(stored(id), undefined, 'the device is gone from the store')
  t.equal(b.app.broker.router.retained.get(state), undefined, 'its retained state is cleared')
  const gone = await devicesRequest(port, 'GET', `/devices/${id}`, A)
  t.equal(gone.status, 404)
  t.match(gone.body, { state: 'error', error: /no device/ })
  t.equal((await devicesRequest(port, 'DELETE', `/devices/${id}`, A)).status, 404, 'removing it twice: 404')
  t.same(
    ((await devicesRequest(port, 'GET', '/devices', A)).body.devices as { id: string }[]).map((d) => d.id),
    [second],
    'the list no longer has it',
  )
})

t.test('login: Basic with the account password, or a bearer JWT', async (t) => {
  const { port, stored } = await perch(t)
  const id = randomUUID()
  const body = JSON.stringify(BODY)
  const json = { 'content-type': 'application/json' }

  const none = await raw(port, 'PUT', `/devices/${id}`, json, body)
  t.equal(none.status, 401, 'no Authorization: 401')
  t.match(none.headers.get('www-authenticate'), /^Basic realm="perch"/, 'with a challenge')
  t.match(none.body, { state: 'error', error: /log in/ })

  const wrong = await raw(port, 'PUT', `/devices/${id}`, { ...json, authorization: basic('A', 'not-pw-A') }, body)
  t.equal(wrong.status, 401, 'a wrong password: 401')
  t.match(wrong.headers.get('www-authenticate'), /Basic/)
  t.equal((await raw(port, 'PUT', `/devices/${id}`, { ...json, authorization: basic('nobody', 'pw-A') }, body)).status, 401, 'an unknown account: 401')

  const malformed = await raw(port, 'PUT', `/devices/${id}`, { ...json, authorization: `Basic ${Buffer.from('no colon here').toString('base64')}` }, body)
  t.equal(malformed.status, 401, 'Basic without a colon: 401')
  t.match(malformed.body, { error: /malformed/ })
  t.equal((await raw(port, 'PUT', `/devices/${id}`, { ...json, authorization: 'Digest username="A"' }, body)).status, 401, 'another scheme: 401')
  t.equal((await raw(port, 'PUT', `/devices/${id}`, { ...json, authorization: 'Bearer' }, body)).status, 401, 'Bearer without a token: 401')
  t.equal(stored(id), undefined, 'none of them registered anything')

  const expired = await devicesRequest(port, 'PUT', `/devices/${id}`, { token: await sign({ sub: 'A', exp: nowSeconds() - 60 }), body: BODY })
  t.equal(expired.status, 401, 'an expired token: 401')
  t.match(expired.body, { error: /expired/ })
  const forged = await devicesRequest(port, 'PUT', `/devices/${id}`, { token: await sign({ sub: 'A', exp: nowSeconds() + 3600 }, 'not-the-right-secret-at-all'), body: BODY })
  t.equal(forged.status, 401, 'a token signed with another secret: 401')
  t.equal((await devicesRequest(port, 'PUT', `/devices/${id}`, { token: 'not.a.jwt', body: BODY })).status, 401, 'garbage for a token: 401')
  t.equal(stored(id), undefined, 'no refused token registered anything')

  const token = await sign({ sub: 'A', exp: nowSeconds() + 3600 })
  const ok = await devicesRequest(port, 'PUT', `/devices/${id}`, { token, body: BODY })
  t.equal(ok.status, 200, `a valid HS256 token registers: ${JSON.stringify(ok.body)}`)
  t.match(ok.body, { state: 'ok', id, account: 'A', presence_topic: `/A/devices/${id}/state` })
  t.match(stored(id), { account: 'A' }, "the device is in the token's account")
  t.equal((await devicesRequest(port, 'GET', `/devices/${id}`, { token })).status, 200, 'and the token reads it back')
  t.equal((await devicesRequest(port, 'GET', `/devices/${id}`, { ...A })).status, 200, 'as does Basic for the same account')
})

t.test('access: another account needs the ACL; an admin may; foreign devices stay foreign', async (t) => {
  const { b, port, stored } = await perch(t)
  const id = randomUUID()

  const refused = await devicesRequest(port, 'PUT', `/devices/${id}?account=A`, { ...B, body: BODY })
  t.equal(refused.status, 403, 'B may not register under A')
  t.match(refused.body, { state: 'error', error: /may not register devices in A/ })
  t.equal(stored(id), undefined)
  t.equal((await devicesRequest(port, 'GET', '/devices?account=A', B)).status, 403, 'nor list A')

  b.grant('A', 'B', '/A/devices/#', { publish: true })
  const granted = await devicesRequest(port, 'PUT', `/devices/${id}?account=A`, { ...B, body: BODY })
  t.equal(granted.status, 200, `with publish on /A/devices/# B registers under A: ${JSON.stringify(granted.body)}`)
  t.match(granted.body, { account: 'A', ctrl_chans: [`/A/devices/${id}/ctrl/up`, `/A/devices/${id}/ctrl/down`] })
  t.match(stored(id), { account: 'A' }, 'the device belongs to A')
  t.same(
    ((await devicesRequest(port, 'GET', '/devices', A)).body.devices as { id: string }[]).map((d) => d.id),
    [id],
    "it is in A's list",
  )
  t.same((await devicesRequest(port, 'GET', '/devices', B)).body.devices, [], "and not in B's")
  b.revoke('A', 'B', '/A/devices/#', { publish: true })
  t.equal((await devicesRequest(port, 'PUT', `/devices/${id}?account=A`, { ...B, body: BODY })).status, 403, 'once revoked, refused again')

  const byAdmin = randomUUID()
  const admin = await devicesRequest(port, 'PUT', `/devices/${byAdmin}?account=A`, { ...ROOT, body: BODY })
  t.equal(admin.status, 200, `an admin registers under A: ${JSON.stringify(admin.body)}`)
  t.match(stored(byAdmin), { account: 'A' })
  t.equal((await devicesRequest(port, 'GET', '/devices?account=A', ROOT)).status, 200, 'and lists A')

  // A's device, seen from B without rights on A.
  const readByB = await devicesRequest(port, 'GET', `/devices/${id}`, B)
  t.equal(readByB.status, 404, "B cannot see A's device: 404, as if there were none")
  t.notMatch(readByB.body, { name: 'BetaCat' })
  t.equal((await devicesRequest(port, 'GET', `/devices/${id}?account=A`, B)).status, 404, 'not with ?account=A either')
  t.equal((await devicesRequest(port, 'DELETE', `/devices/${id}`, B)).status, 404, "B's DELETE finds no such device in B")
  t.equal((await devicesRequest(port, 'DELETE', `/devices/${id}?account=A`, B)).status, 403, 'and may not remove in A')
  t.match(stored(id), { account: 'A' }, 'the device is still there')

  const taken = await devicesRequest(port, 'PUT', `/devices/${id}`, { ...B, body: { name: 'Impostor', idf_list: ['x'] } })
  t.equal(taken.status, 409, 'B registering an id A owns: 409')
  t.match(taken.body, { state: 'error', error: /another account/ })
  t.match(stored(id), { account: 'A', name: 'BetaCat' }, 'the device is unchanged')

  t.equal((await devicesRequest(port, 'GET', '/devices?account=', A)).status, 403, 'an empty ?account= is refused')
  t.equal((await devicesRequest(port, 'GET', '/devices?account=A%2Fx', A)).status, 403, 'an account with a slash is refused')
})

t.test('bad requests are refused with a clear error and store nothing', async (t) => {
  const { port, stored } = await perch(t)
  const cases: [string, unknown, RegExp][] = [
    ['a JSON array', [BODY], /JSON object/],
    ['a JSON string', 'BetaCat', /JSON object/],
    ['no name', { idf_list: ['meow'] }, /"name"/],
    ['an empty name', { name: '  ', idf_list: ['meow'] }, /"name"/],
    ['no features', { name: 'x' }, /at least one feature/],
    ['empty feature lists', { name: 'x', idf_list: [], odf_list: [] }, /at least one feature/],
    ['a feature name with a slash', { name: 'x', idf_list: [['a/b', []]] }, /feature name "a\/b"/],
    ['a feature name with +', { name: 'x', odf_list: ['a+'] }, /feature name "a\+"/],
    ['a feature name with #', { name: 'x', odf_list: ['#'] }, /feature name "#"/],
    ['duplicate feature names', { name: 'x', idf_list: ['meow', ['meow', ['dB']]] }, /"meow" is listed twice/],
    ['types that are not strings', { name: 'x', idf_list: [['meow', [1]]] }, /types of "meow"/],
    ['accept_protos without mqtt', { ...BODY, accept_protos: ['http'] }, /must include "mqtt"/],
    ['accept_protos not a list', { ...BODY, accept_protos: 'mqtt' }, /array of strings/],
    ['unknown keys', { ...BODY, colour: 'red', size: 2 }, /unknown keys "colour", "size"/],
    ['a profile that is not an object', { ...BODY, profile: [1] }, /"profile"/],
    ['a body id that is another device', { ...BODY, id: randomUUID() }, /is not the device id/],
    ['a body id that is not a UUID', { ...BODY, id: 'BetaCat' }, /is not the device id/],
  ]
  for (const [what, body, error] of cases) {
    const id = randomUUID()
    const r = await devicesRequest(port, 'PUT', `/devices/${id}`, { ...A, body })
    t.equal(r.status, 400, `${what}: 400`)
    t.match(r.body, { state: 'error', error }, `${what}: ${JSON.stringify(r.body.error)}`)
    t.equal(stored(id), undefined, `${what}: nothing stored`)
    t.equal((await devicesRequest(port, 'GET', `/devices/${id}`, A)).status, 404, `${what}: GET finds nothing`)
  }

  const same = randomUUID()
  t.equal((await devicesRequest(port, 'PUT', `/devices/${same}`, { ...A, body: { ...BODY, id: same.toUpperCase() } })).status, 200, 'a body id that is the device id (any case) is fine')

  const notJson = randomUUID()
  const r = await devicesRequest(port, 'PUT', `/devices/${notJson}`, { ...A, rawBody: '{"name": "BetaCat",' })
  t.equal(r.status, 400, 'not JSON: 400')
  t.match(r.body, { state: 'error', error: /not JSON/ })
  t.equal(stored(notJson), undefined)
  const empty = await devicesRequest(port, 'PUT', `/devices/${notJson}`, { ...A, rawBody: '' })
  t.equal(empty.status, 400, 'an empty body: 400')
  t.equal(stored(notJson), undefined)

  const notUuid = await devicesRequest(port, 'PUT', '/devices/betacat', { ...A, body: BODY })
  t.equal(notUuid.status, 400, 'a path id that is not a UUID: 400')
  t.match(notUuid.body, { error: /"betacat" is not a UUID/ })
  t.equal((await devicesRequest(port, 'GET', '/devices/betacat', A)).status, 400, 'GET of it too')
  t.equal((await devicesRequest(port, 'DELETE', '/devices/betacat', A)).status, 400, 'DELETE of it too')
  t.same(
    ((await devicesRequest(port, 'GET', '/devices', A)).body.devices as { id: string }[]).map((d) => d.id),
    [same],
    'the only device stored is the good one',
  )

  const big = randomUUID()
  const large = await devicesRequest(port, 'PUT', `/devices/${big}`, { ...A, body: { ...BODY, profile: { pad: 'x'.repeat(70_000) } } })
  t.equal(large.status, 413, 'a body over 64 KB: 413')
  t.match(large.body, { state: 'error', error: /larger than 65536 bytes/ })
  t.equal(stored(big), undefined)
  // Far over the limit: still a 413, and the connection is not left half-read (later requests
  // are answered, and perch stops at the end of the test).
  const huge = await devicesRequest(port, 'PUT', `/devices/${big}`, { ...A, rawBody: `{"name": "${'x'.repeat(4_000_000)}"}` })
  t.equal(huge.status, 413, 'a 4 MB body: 413')
  t.equal(stored(big), undefined)
  t.equal((await devicesRequest(port, 'GET', '/devices', A)).status, 200, 'the next request is answered')

  const typed = randomUUID()
  const text = await devicesRequest(port, 'PUT', `/devices/${typed}`, { ...A, body: BODY, contentType: 'text/plain' })
  t.equal(text.status, 415, 'text/plain: 415')
  t.match(text.body, { error: /application\/json, not text\/plain/ })
  t.equal((await devicesRequest(port, 'PUT', `/devices/${typed}`, { ...A, body: BODY, contentType: 'application/jsonx' })).status, 415, 'application/jsonx: 415')
  t.equal(stored(typed), undefined)
  t.equal((await devicesRequest(port, 'PUT', `/devices/${typed}`, { ...A, body: BODY, contentType: 'application/json; charset=utf-8' })).status, 200, 'application/json with a charset is fine')

  const deeper = await devicesRequest(port, 'GET', `/devices/${typed}/state`, A)
  t.equal(deeper.status, 404, 'a path below /devices/{id}: 404')
  t.match(deeper.body, { state: 'error', error: /not found/ })
  t.equal((await devicesRequest(port, 'PUT', `/devices/${randomUUID()}/x`, { ...A, body: BODY })).status, 404)

  const post = await raw(port, 'POST', `/devices/${typed}`, { 'content-type': 'application/json', authorization: basic('A', 'pw-A') }, JSON.stringify(BODY))
  t.equal(post.status, 405, 'POST /devices/{id}: 405')
  t.equal(post.headers.get('allow'), 'GET, PUT, DELETE', 'with Allow')
  const putAll = await raw(port, 'PUT', '/devices', { 'content-type': 'application/json', authorization: basic('A', 'pw-A') }, JSON.stringify(BODY))
  t.equal(putAll.status, 405, 'PUT /devices: 405')
  t.equal(putAll.headers.get('allow'), 'GET')
  t.equal((await raw(port, 'DELETE', '/devices', { authorization: basic('A', 'pw-A') })).status, 405, 'DELETE /devices: 405')
  t.equal((await raw(port, 'PATCH', `/devices/${typed}`, { authorization: basic('A', 'pw-A') })).status, 405, 'PATCH: 405')
})

/**
 * Publishes `payload` on a device request topic and takes the first answer on `<topic>/result`.
 * The topic names the device, so the answer is matched by its topic: a successful put answers
 * with the device's `id`, which takes the place of a request id.
 */
async function deviceRequest(client: MqttClient, topic: string, payload: string): Promise<Record<string, unknown>> {
  await client.subscribeAsync(`${topic}/result`, { qos: 1 })
  const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer on ${topic}/result`)), 15_000)
    const on = (topic_: string, body: Buffer): void => {
      if (topic_ !== `${topic}/result`) return
      clearTimeout(timer)
      client.off('message', on)
      resolve(JSON.parse(body.toString()) as Record<string, unknown>)
    }
    client.on('message', on)
  })
  await client.publishAsync(topic, payload, { qos: 1 })
  const got = await answer
  await client.unsubscribeAsync(`${topic}/result`)
  return got
}

t.test('registration over MQTT: put, list and delete on the request topics', async (t) => {
  const { b, mqttA, port, stored } = await perch(t)
  const id = randomUUID()
  const topic = `/A/devices/put/${id}`
  const put = await deviceRequest(mqttA, topic, JSON.stringify(BODY))
  t.match(put, { state: 'ok', id, account: 'A', name: 'BetaCat', ctrl_chans: [`/A/devices/${id}/ctrl/up`, `/A/devices/${id}/ctrl/down`], presence_topic: `/A/devices/${id}/state` }, JSON.stringify(put))
  t.match(put.topics, { idf: { meow: `/A/devices/${id}/idf/meow` }, odf: { luma: `/A/devices/${id}/odf/luma` } })
  t.type(put.rev, 'string')
  t.match(stored(id), { account: 'A', rev: put.rev }, 'the device is stored')
  t.equal((await devicesRequest(port, 'GET', `/devices/${id}`, A)).status, 200, 'and the HTTP API sees it')

  const again = await deviceRequest(mqttA, topic, JSON.stringify({ ...BODY, id, idf_list: [['meow', ['dB']], ['purr', []]] }))
  t.match(again, { state: 'ok', id }, 'registered again, with the device id in the body')
  t.type(again.rev, 'string')
  t.not(again.rev, put.rev, 'a new rev')
  t.match(stored(id), { rev: again.rev })

  // A request id in the body is echoed in place of the device id (which the topic names).
  const third = await request(mqttA, topic, { ...BODY, idf_list: [['meow', ['dB']], ['purr', []]] })
  t.match(third, { state: 'ok', ctrl_chans: [`/A/devices/${id}/ctrl/up`, `/A/devices/${id}/ctrl/down`] }, 'a put with a request id registers')
  t.match(String(third.id), /^r\d+$/, `and its answer carries the request id (${String(third.id)})`)

  const badId = randomUUID()
  const bad = await request(mqttA, `/A/devices/put/${badId}`, { name: 'x', idf_list: ['a/b'] })
  t.match(bad, { state: 'error', status: 400, error: /feature name "a\/b"/ }, 'a malformed registration is answered with an error')
  t.equal(stored(badId), undefined)
  t.match(await request(mqttA, `/A/devices/put/${randomUUID()}`, { name: 'x' }), { state: 'error', status: 400, error: /at least one feature/ }, 'no features: 400')
  const notJsonId = randomUUID()
  t.match(await deviceRequest(mqttA, `/A/devices/put/${notJsonId}`, 'not json'), { state: 'error', status: 400 }, 'a body that is not JSON: 400')
  t.equal(stored(notJsonId), undefined)
  t.match(await request(mqttA, '/A/devices/put/betacat', BODY), { state: 'error', status: 400, error: /not a UUID/ }, 'a topic id that is not a UUID: 400')

  const other = randomUUID()
  t.match(await deviceRequest(mqttA, `/A/devices/put/${other}`, JSON.stringify({ name: 'Lamp', odf_list: ['luma'] })), { state: 'ok', id: other })
  const listed = await request(mqttA, '/A/devices/list', {})
  t.equal(listed.state, 'ok')
  const devices = listed.devices as { id: string; account: string; idf_list: unknown }[]
  t.same(devices.map((d) => d.id).sort(), [id, other].sort(), 'list answers both devices')
  t.same(devices.find((d) => d.id === id)?.idf_list, [['meow', ['dB']], ['purr', []]], 'as last registered')

  // B may not publish on A's request topics: nothing stored, and B's own list stays empty.
  const mqttB = await connectClient(t, b.url, { username: 'B', password: 'pw-B', protocolVersion: 5 })
  const foreign = randomUUID()
  t.equal(await pubackCode(mqttB, `/A/devices/put/${foreign}`, JSON.stringify(BODY)), 0x87, "B may not publish on A's request topic")
  t.equal(await pubackCode(mqttB, `/A/devices/delete/${id}`, '{}'), 0x87, 'nor on its delete topic')
  t.same((await request(mqttB, '/B/devices/list', {})).devices, [], "B's list is empty")
  t.equal(stored(foreign), undefined)
  t.match(stored(id), { account: 'A' })

  const removed = await request(mqttA, `/A/devices/delete/${id}`, {})
  t.match(removed, { state: 'ok', da_id: id, removed_links: 0 }, 'delete answers ok, with the request id echoed')
  t.match(removed.id, /^r\d+$/)
  t.equal(stored(id), undefined, 'and removes the device')
  t.equal((await devicesRequest(port, 'GET', `/devices/${id}`, A)).status, 404, 'the HTTP API no longer finds it')
  t.match(await request(mqttA, `/A/devices/delete/${id}`, {}), { state: 'error', status: 404 }, 'deleting it again: 404')
  t.same(((await request(mqttA, '/A/devices/list', {})).devices as { id: string }[]).map((d) => d.id), [other], 'the list has the other one left')
})
