// JWT logins (username "JWT", the token as password) with real clients: what a token lets a
// client do, every way a token is refused, public-key algorithms, and Cashew handler tokens.
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose'
import type { IClientOptions } from 'mqtt'
import t from 'tap'
import { App } from '../../src/app/app.js'
import { defaultConfig, type JwtConfig, resolveConfig } from '../../src/app/config.js'
import { systemClock } from '../../src/core/clock.js'
import { createLogger } from '../../src/core/logger.js'
import { type AccountsBroker, connackCode, pubackCode, startAccountsBroker, subackCodes } from '../helpers/accounts.js'
import { logEvents } from '../helpers/broker.js'
import { connectWithAck, type Received, until } from '../helpers/clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const SECRET = '0123456789abcdef0123'
const secretKey = new TextEncoder().encode(SECRET)

const nowSeconds = (): number => Math.floor(Date.now() / 1000)
const inAnHour = (): number => nowSeconds() + 3600

type SigningKey = Parameters<SignJWT['sign']>[0]

/** A signed token carrying exactly `claims` (no exp unless given). */
function sign(claims: JWTPayload, key: SigningKey = secretKey, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(key)
}

const b64url = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')

/** An unsecured token: header `{"alg":"none"}` and an empty signature. */
function unsigned(claims: JWTPayload): string {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`
}

/**
 * Accounts mode with JWT logins configured as a config file would (accountClaim and
 * clockTolerance left to their defaults unless given); failures are not rate-limited here, so
 * one broker can take many.
 */
function jwtBroker(t: Teardown, jwt: Partial<JwtConfig> | null = { secret: SECRET }): Promise<AccountsBroker> {
  const rateLimit = { addressFailures: 10_000, accountFailures: 10_000, window: 60, block: 60 }
  // The helper's type wants the defaulted keys too; the config file (and resolveConfig) does not.
  return startAccountsBroker(t, { auth: { ...(jwt === null ? {} : { jwt: jwt as JwtConfig }), rateLimit } })
}

const asToken = (token: string, protocolVersion: 4 | 5 = 5): IClientOptions => ({ protocolVersion, username: 'JWT', password: token })

let seq = 0

/** The CONNACK code a token login gets, and the reason perch logged when it refused it. */
async function tokenLogin(b: AccountsBroker, token: string, protocolVersion: 4 | 5 = 5): Promise<{ code: number; reason: unknown }> {
  const clientId = `jwt-probe-${++seq}`
  const code = await connackCode(b.url, { ...asToken(token, protocolVersion), clientId })
  const refused = logEvents(b.logs, 'connect.refused').find((l) => l.clientId === clientId)
  return { code, reason: refused?.reason }
}

const topics = (ms: Received[]): string[] => ms.map((m) => m.topic)

t.test('a valid HS256 token logs in as its account (5.0 and 3.1.1) and acts only in that namespace', async (t) => {
  const b = await jwtBroker(t)
  const token = await sign({ sub: 'A', exp: inAnHour() })
  t.equal(await connackCode(b.url, asToken(token, 4)), 0, '3.1.1 accepted')

  const v5 = await connectWithAck(t, b.url, { ...asToken(token), clientId: 'a-v5' })
  const v4 = await connectWithAck(t, b.url, { ...asToken(token, 4), clientId: 'a-v4' })
  t.same(await subackCodes(v5.client, '/A/#'), [1], 'subscribes in its own namespace')
  t.same(await subackCodes(v5.client, '/B/#'), [0x87], 'not in another')
  t.equal(await pubackCode(v5.client, '/B/x', 'foreign'), 0x87, 'nor publishes there')
  t.equal(await pubackCode(v5.client, '/A/x', 'own v5'), 0)
  await v4.client.publishAsync('/A/y', 'own 3.1.1', { qos: 1 })
  await until(() => v5.messages.length === 4, 5000, 'both own messages and the two acl_denied events')
  t.same(topics(v5.messages).sort(), ['/A/events/acl_denied', '/A/events/acl_denied', '/A/x', '/A/y'], 'the refusals are reported to the account')
  t.match(logEvents(b.logs, 'client.connected').find((l) => l.clientId === 'a-v5'), { username: 'JWT' })
})

t.test('an account the issuer vouches for need not exist in perch', async (t) => {
  const b = await jwtBroker(t)
  const { client, messages } = await connectWithAck(t, b.url, asToken(await sign({ sub: 'newcomer', exp: inAnHour() })))
  await client.subscribeAsync('/newcomer/#', { qos: 1 })
  t.equal(await pubackCode(client, '/newcomer/hello', 'hi'), 0)
  await until(() => messages.length === 1, 5000, 'own message')
  t.equal(await pubackCode(client, '/A/hello', 'hi'), 0x87)
})

t.test('expired and not-yet-valid tokens are refused with 0x86 (3.1.1: 4) and say why', async (t) => {
  const b = await jwtBroker(t)
  const expired = await sign({ sub: 'A', exp: nowSeconds() - 60 })
  const v5 = await tokenLogin(b, expired)
  t.equal(v5.code, 0x86)
  t.match(v5.reason, /expired/)
  t.equal((await tokenLogin(b, expired, 4)).code, 4, '3.1.1: bad user name or password')

  const early = await sign({ sub: 'A', nbf: inAnHour(), exp: inAnHour() + 3600 })
  const notYet = await tokenLogin(b, early)
  t.equal(notYet.code, 0x86)
  t.match(notYet.reason, /not valid yet/)
  t.equal((await tokenLogin(b, early, 4)).code, 4)
})

t.test('clockTolerance lets a token that expired moments ago in', async (t) => {
  const b = await jwtBroker(t, { secret: SECRET, clockTolerance: 120 })
  t.equal((await tokenLogin(b, await sign({ sub: 'A', exp: nowSeconds() - 30 }))).code, 0)
  t.equal((await tokenLogin(b, await sign({ sub: 'A', exp: nowSeconds() - 600 }))).code, 0x86, 'beyond the tolerance it is refused')
})

t.test('forged and malformed tokens are refused with 0x86', async (t) => {
  const b = await jwtBroker(t)
  const exp = inAnHour()
  const cases: [string, string][] = [
    ['signed with another secret', await sign({ sub: 'A', exp }, new TextEncoder().encode('not-the-right-secret-at-all'))],
    ['alg none', unsigned({ sub: 'A', exp })],
    ['alg none, signature kept', `${unsigned({ sub: 'A', exp })}${(await sign({ sub: 'A', exp })).split('.')[2]}`],
    ['no exp', await sign({ sub: 'A' })],
    ['no account claim', await sign({ exp })],
    ['account claim is a number', await sign({ sub: 42, exp } as unknown as JWTPayload)],
    ['payload tampered after signing', tamper(await sign({ sub: 'B', exp }), { sub: 'A', exp })],
    ['not a JWT at all', 'hello'],
    ['empty password', ''],
  ]
  for (const [what, token] of cases) {
    const r = await tokenLogin(b, token)
    t.equal(r.code, 0x86, what)
    t.type(r.reason, 'string', `${what}: a reason is given`)
    t.equal((await tokenLogin(b, token, 4)).code, 4, `${what}: 3.1.1`)
  }
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'JWT' }), 0x86, 'no password at all')
})

/** The token with its payload replaced and the old signature kept. */
function tamper(token: string, claims: JWTPayload): string {
  const [header, , signature] = token.split('.')
  return `${header}.${b64url(claims)}.${signature}`
}

t.test('an account claim that is not exactly one topic level is refused', async (t) => {
  const b = await jwtBroker(t)
  for (const sub of ['A/B', '/A', 'A/', '+', '#', 'A+', '', '$SYS', 'JWT', 'with space']) {
    const r = await tokenLogin(b, await sign({ sub, exp: inAnHour() }))
    t.equal(r.code, 0x86, JSON.stringify(sub))
  }
})

t.test('accountClaim picks the claim that names the account', async (t) => {
  const b = await jwtBroker(t, { secret: SECRET, accountClaim: 'account' })
  const token = await sign({ account: 'A', sub: 'someone-else', exp: inAnHour() })
  const { client } = await connectWithAck(t, b.url, asToken(token))
  t.equal(await pubackCode(client, '/A/x', 'as A'), 0, 'acts as the account claim')
  t.equal(await pubackCode(client, '/someone-else/x', 'not as sub'), 0x87, 'not as sub')
  const r = await tokenLogin(b, await sign({ sub: 'A', exp: inAnHour() }))
  t.equal(r.code, 0x86, 'a token without the configured claim is refused')
  t.match(r.reason, /"account" claim/)
})

t.test('RS256 and ES256 tokens are verified with publicKeyFile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-jwt-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const alg of ['RS256', 'ES256'] as const) {
    const keys = await generateKeyPair(alg)
    const other = await generateKeyPair(alg)
    const file = join(dir, `${alg}.pem`)
    writeFileSync(file, await exportSPKI(keys.publicKey))
    const b = await jwtBroker(t, { publicKeyFile: file })
    const exp = inAnHour()
    const { client } = await connectWithAck(t, b.url, asToken(await sign({ sub: 'A', exp }, keys.privateKey, alg)))
    t.equal(await pubackCode(client, '/A/x', alg), 0, `${alg}: logs in and acts as A`)
    t.equal(await pubackCode(client, '/B/x', alg), 0x87, `${alg}: only as A`)
    t.equal((await tokenLogin(b, await sign({ sub: 'A', exp }, keys.privateKey, alg), 4)).code, 0, `${alg}: 3.1.1`)
    t.equal((await tokenLogin(b, await sign({ sub: 'A', exp }, other.privateKey, alg))).code, 0x86, `${alg}: another key's signature is refused`)
    t.equal((await tokenLogin(b, await sign({ sub: 'A', exp: nowSeconds() - 60 }, keys.privateKey, alg))).code, 0x86, `${alg}: expired`)
    t.equal((await tokenLogin(b, await sign({ sub: 'A', exp }))).code, 0x86, `${alg}: HS256 is not accepted when only a public key is configured`)
    t.equal((await tokenLogin(b, unsigned({ sub: 'A', exp }))).code, 0x86, `${alg}: alg none`)
  }
})

t.test('perch refuses to start with a public key no RS256 or ES256 token can be verified with', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-jwt-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const spki = { type: 'spki', format: 'pem' } as const
  const pkcs8 = { type: 'pkcs8', format: 'pem' } as const
  const keys: [string, string, RegExp][] = [
    ['a P-384 EC key', generateKeyPairSync('ec', { namedCurve: 'secp384r1', publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }).publicKey, /P-256/],
    ['a 1024-bit RSA key', generateKeyPairSync('rsa', { modulusLength: 1024, publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }).publicKey, /2048/],
    ['an Ed25519 key', generateKeyPairSync('ed25519', { publicKeyEncoding: spki, privateKeyEncoding: pkcs8 }).publicKey, /not supported/],
    ['not a key at all', 'hello', /auth\.jwt/],
  ]
  for (const [i, [what, pem, reason]] of keys.entries()) {
    const publicKeyFile = join(dir, `key-${i}.pem`)
    writeFileSync(publicKeyFile, pem)
    const input = { listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 }], auth: { mode: 'accounts', jwt: { publicKeyFile } }, dataDir: join(dir, `data-${i}`) }
    const config = resolveConfig(input, defaultConfig(), 'test config')
    if (!config.ok) throw config.error
    const clock = systemClock()
    const started = App.start(config.value, { clock, logger: createLogger('error', () => {}, () => clock.now()), version: 'test' })
    t.teardown(() => started.then((app) => app.stop(), () => undefined))
    await t.rejects(started, { message: /auth\.jwt/ }, `${what}: refused at start`)
    await t.rejects(started, { message: reason }, `${what}: says why`)
  }
})

t.test('an HS256 token keyed with the public key PEM is refused when only publicKeyFile is configured', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-jwt-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const alg of ['RS256', 'ES256'] as const) {
    const keys = await generateKeyPair(alg)
    const pem = await exportSPKI(keys.publicKey)
    const file = join(dir, `${alg}.pem`)
    writeFileSync(file, pem)
    const b = await jwtBroker(t, { publicKeyFile: file })
    const exp = inAnHour()
    for (const text of [pem, pem.trim()]) {
      const r = await tokenLogin(b, await sign({ sub: 'A', exp }, new TextEncoder().encode(text)))
      t.equal(r.code, 0x86, `${alg}: key confusion refused`)
    }
    t.equal((await tokenLogin(b, await sign({ sub: 'A', exp }, keys.privateKey, alg))).code, 0, `${alg}: the real signature still works`)
  }
})

t.test('a token for a disabled account is refused with 0x8A (3.1.1: 5); an enabled known account keeps its admin flag', async (t) => {
  const b = await jwtBroker(t)
  await b.addAccount('off', 'pw-off', { enabled: false })
  await b.addAccount('root', 'pw-root', { admin: true })
  const off = await sign({ sub: 'off', exp: inAnHour() })
  const r = await tokenLogin(b, off)
  t.equal(r.code, 0x8a)
  t.match(r.reason, /disabled/)
  t.equal((await tokenLogin(b, off, 4)).code, 5)
  const { client } = await connectWithAck(t, b.url, asToken(await sign({ sub: 'root', exp: inAnHour() })))
  t.same(await subackCodes(client, '$SYS/#'), [1], 'the admin account logged in by token is an admin')
})

t.test('a JWT login is refused with 0x86 when auth.jwt is not configured', async (t) => {
  const b = await jwtBroker(t, null)
  const token = await sign({ sub: 'A', exp: inAnHour() })
  const r = await tokenLogin(b, token)
  t.equal(r.code, 0x86)
  t.match(r.reason, /not configured/)
  t.equal((await tokenLogin(b, token, 4)).code, 4)
})

t.test('issuer and audience must match when configured', async (t) => {
  const b = await jwtBroker(t, { secret: SECRET, issuer: 'https://issuer.example', audience: 'perch' })
  const exp = inAnHour()
  t.equal((await tokenLogin(b, await sign({ sub: 'A', iss: 'https://issuer.example', aud: 'perch', exp }))).code, 0, 'both match')
  t.equal((await tokenLogin(b, await sign({ sub: 'A', iss: 'https://issuer.example', aud: ['other', 'perch'], exp }))).code, 0, 'perch among the audiences')
  const cases: [string, JWTPayload][] = [
    ['wrong issuer', { sub: 'A', iss: 'https://evil.example', aud: 'perch', exp }],
    ['no issuer', { sub: 'A', aud: 'perch', exp }],
    ['wrong audience', { sub: 'A', iss: 'https://issuer.example', aud: 'someone-else', exp }],
    ['no audience', { sub: 'A', iss: 'https://issuer.example', exp }],
  ]
  for (const [what, claims] of cases) t.equal((await tokenLogin(b, await sign(claims))).code, 0x86, what)
})

/** Password accounts A, B and C, each with a client publishing on its own namespace. */
async function pingers(t: Teardown, b: AccountsBroker) {
  const out: Record<string, Awaited<ReturnType<typeof connectWithAck>>> = {}
  for (const id of ['A', 'B', 'C']) {
    await b.addAccount(id, `pw-${id}`)
    out[id] = await connectWithAck(t, b.url, { protocolVersion: 5, username: id, password: `pw-${id}`, clientId: `pinger-${id}` })
  }
  return out
}

/**
 * Publishes /<id>/ping for each id in order, each acknowledged before the next: a ping that got
 * through would reach a subscriber before the ones published after it.
 */
async function pingAll(ps: Awaited<ReturnType<typeof pingers>>, order: string[]): Promise<void> {
  for (const id of order) {
    const p = ps[id]
    if (p === undefined) throw new Error(`no pinger ${id}`)
    const code = await pubackCode(p.client, `/${id}/ping`, `ping from ${id}`)
    if (code !== 0) throw new Error(`${id} could not ping its own namespace: 0x${code.toString(16)}`)
  }
}

const handlerClaims = [
  ['a list', ['A', 'B']],
  ['an object', { name: 'pong-service', accounts: ['A', 'B'] }],
] as const

for (const [form, handler] of handlerClaims) {
  t.test(`a handler token (claim as ${form}) reads and publishes in the accounts it serves, and only those`, async (t) => {
    const b = await jwtBroker(t)
    const ps = await pingers(t, b)
    const h = await connectWithAck(t, b.url, asToken(await sign({ sub: 'H', handler, exp: inAnHour() })))
    t.same(await subackCodes(h.client, '/+/ping'), [1], 'the wildcard subscription is accepted')
    t.same(await subackCodes(h.client, ['/A/#', '/B/#', '/C/#']), [1, 1, 0x87], 'served namespaces may be subscribed whole, others not')
    await h.client.unsubscribeAsync(['/A/#', '/B/#'])

    await pingAll(ps, ['C', 'A', 'B'])
    await until(() => h.messages.length >= 2, 5000, 'the served pings')
    t.same(topics(h.messages), ['/A/ping', '/B/ping'], 'pings of A and B, none of C')

    const a = ps.A
    if (a === undefined) throw new Error('no pinger A')
    await a.client.subscribeAsync('/A/pong', { qos: 1 })
    t.equal(await pubackCode(h.client, '/A/pong', 'pong'), 0, 'publishes into a served namespace')
    await until(() => a.messages.some((m) => m.topic === '/A/pong'), 5000, 'A to get the pong')
    t.equal(await pubackCode(h.client, '/C/pong', 'pong'), 0x87, 'not into an unserved one')
    t.equal(await pubackCode(h.client, '/A/grant_sub_topic', JSON.stringify({ name: '#', accountId: 'H' })), 0x87, 'grant requests stay with the owner')
    t.equal(await pubackCode(h.client, '/A/events/connected', '{}'), 0x87, 'events stay with perch')
  })
}

t.test('a token without a handler claim reads only its own account through /+/ping', async (t) => {
  const b = await jwtBroker(t)
  const ps = await pingers(t, b)
  const own = await connectWithAck(t, b.url, asToken(await sign({ sub: 'A', exp: inAnHour() })))
  t.same(await subackCodes(own.client, '/+/ping'), [1])
  await pingAll(ps, ['B', 'C', 'A'])
  await until(() => own.messages.length >= 1, 5000, 'its own ping')
  t.same(topics(own.messages), ['/A/ping'])
  t.equal(await pubackCode(own.client, '/B/pong', 'pong'), 0x87)
})

t.test('a malformed handler claim, or one naming an invalid account, is refused', async (t) => {
  const b = await jwtBroker(t)
  const exp = inAnHour()
  const cases: [string, unknown][] = [
    ['a string', 'A'],
    ['a list with a number', ['A', 1]],
    ['an object without accounts', { name: 'x' }],
    ['an account with a wildcard', ['A', '#']],
    ['an account with a slash', ['A/B']],
    ['an empty account', ['']],
  ]
  for (const [what, handler] of cases) {
    t.equal((await tokenLogin(b, await sign({ sub: 'H', handler, exp }))).code, 0x86, what)
  }
})

t.test('a genuine but expired token for a known account is told to that account; forged or unknown ones to nobody', async (t) => {
  const b = await jwtBroker(t)
  await b.addAccount('root', 'pw-root', { admin: true })
  await b.addAccount('known', 'pw-known')
  await b.addAccount('off', 'pw-off', { enabled: false })
  const admin = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'root', password: 'pw-root' })
  await admin.client.subscribeAsync('/+/events/auth_failed', { qos: 1 })
  t.equal((await tokenLogin(b, await sign({ sub: 'ghost', exp: nowSeconds() - 60 }))).code, 0x86)
  t.equal((await tokenLogin(b, await sign({ sub: 'known', exp: inAnHour() }, new TextEncoder().encode('a-wrong-secret-1234')))).code, 0x86)
  t.equal((await tokenLogin(b, await sign({ sub: 'known', exp: nowSeconds() - 60 }))).code, 0x86)
  // A refusal that names a known account comes last, so it arrives after any event the others caused.
  t.equal((await tokenLogin(b, await sign({ sub: 'off', exp: inAnHour() }))).code, 0x8a)
  await until(() => admin.messages.length >= 2, 5000, 'two auth_failed events')
  t.same(topics(admin.messages), ['/known/events/auth_failed', '/off/events/auth_failed'])
  t.match(JSON.parse(admin.messages[0]?.payload.toString() ?? '{}'), { event: 'auth_failed', reasonCode: 0x86, reason: /expired/ })
  t.match(JSON.parse(admin.messages[1]?.payload.toString() ?? '{}'), { event: 'auth_failed', reasonCode: 0x8a })
})
