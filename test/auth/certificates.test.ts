// TLS client-certificate logins with real clients: on a listener that requires a client
// certificate, a verified certificate's common name is the account; what else may or may not
// come with it, and what never gets past the handshake.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type IClientOptions } from 'mqtt'
import t from 'tap'
import { type AccountsBroker, connackCode, pubackCode, startAccountsBroker, subackCodes } from '../helpers/accounts.js'
import { logEvents } from '../helpers/broker.js'
import { connectWithAck, until } from '../helpers/clients.js'

interface Pem {
  cert: Buffer
  key: Buffer
}

interface Pki {
  dir: string
  caFile: string
  ca: Buffer
  /** Client certificates by common name, signed by the CA. */
  clients: Record<string, Pem>
  /** A certificate for CN=alice from a CA the listener does not trust. */
  stranger: Pem
}

const openssl = (dir: string, args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

function selfSignedCa(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`])
}

function issue(dir: string, ca: string, name: string, subject: string, extensions: string): Pem {
  writeFileSync(join(dir, `${name}.ext`), extensions)
  openssl(dir, ['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', String(Date.now()), '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`])
  return { cert: readFileSync(join(dir, `${name}.pem`)), key: readFileSync(join(dir, `${name}.key`)) }
}

const CLIENT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n'

/** A CA, a server certificate for 127.0.0.1 and client certificates, in a directory removed at teardown. */
function makePki(t: { teardown(fn: () => unknown): void }, commonNames: string[]): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'perch-pki-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  selfSignedCa(dir, 'ca')
  issue(dir, 'ca', 'server', '/CN=127.0.0.1', 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  const clients: Record<string, Pem> = {}
  for (const cn of commonNames) clients[cn] = issue(dir, 'ca', `client-${cn}`, `/CN=${cn}/O=perch tests`, CLIENT_EXT)
  selfSignedCa(dir, 'other-ca')
  const stranger = issue(dir, 'other-ca', 'stranger', '/CN=alice', CLIENT_EXT)
  return { dir, caFile: join(dir, 'ca.pem'), ca: readFileSync(join(dir, 'ca.pem')), clients, stranger }
}

interface CertBroker {
  b: AccountsBroker
  pki: Pki
  tlsUrl: string
  /** MQTT.js options for the TLS listener, with the client certificate of `cn` when given. */
  tls(cn?: string, extra?: IClientOptions): IClientOptions
}

/** Accounts alice and bob, carol disabled; a TLS listener that requires client certificates. */
async function certBroker(t: { teardown(fn: () => unknown): void }): Promise<CertBroker> {
  const pki = makePki(t, ['alice', 'nobody', 'carol'])
  const d = pki.dir
  const b = await startAccountsBroker(t, {
    listeners: [
      { name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 },
      { name: 'tls', kind: 'tls', host: '127.0.0.1', port: 0, cert: join(d, 'server.pem'), key: join(d, 'server.key'), ca: pki.caFile, requireClientCert: true },
    ],
  })
  await b.addAccount('alice', 'pw-alice')
  await b.addAccount('bob', 'pw-bob')
  await b.addAccount('carol', 'pw-carol', { enabled: false })
  const port = b.ports.tls
  if (port === undefined) throw new Error('no tls listener')
  return {
    b,
    pki,
    tlsUrl: `mqtts://127.0.0.1:${port}`,
    tls(cn, extra = {}) {
      const pem = cn === undefined ? undefined : pki.clients[cn]
      if (cn !== undefined && pem === undefined) throw new Error(`no certificate for ${cn}`)
      // The server certificate is checked against the test CA (it names IP 127.0.0.1).
      return { protocolVersion: 5, ca: pki.ca, rejectUnauthorized: true, ...(pem === undefined ? {} : { cert: pem.cert, key: pem.key }), ...extra }
    },
  }
}

/** How a connection attempt ended: the CONNACK code, or the error that ended it before any CONNACK. */
function attempt(url: string, options: IClientOptions): Promise<{ connack: number } | { error: string }> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
    let settled = false
    const done = (r: { connack: number } | { error: string }): void => {
      if (settled) return
      settled = true
      c.end(true)
      resolve(r)
    }
    c.on('connect', () => done({ connack: 0 }))
    c.on('error', (e) => {
      const code = (e as { code?: unknown }).code
      done(typeof code === 'number' ? { connack: code } : { error: String(typeof code === 'string' ? code : e.message) })
    })
    c.on('close', () => done({ error: 'closed without CONNACK' }))
  })
}

t.test('a certificate for an existing account logs in without a user name and acts as that account', async (t) => {
  const { b, tlsUrl, tls } = await certBroker(t)
  const alice = await connectWithAck(t, tlsUrl, tls('alice', { clientId: 'alice-cert' }))
  t.ok(alice.client.connected)
  t.match(logEvents(b.logs, 'client.connected').find((l) => l.clientId === 'alice-cert'), { username: 'alice', listener: 'tls' })

  t.same(await subackCodes(alice.client, '/alice/data/#'), [1], 'subscribes in its namespace')
  t.same(await subackCodes(alice.client, '/bob/#'), [0x87], 'not in another')
  t.equal(await pubackCode(alice.client, '/alice/data/x', 'by certificate'), 0)
  await until(() => alice.messages.some((m) => m.topic === '/alice/data/x'), 5000, 'own message')
  t.equal(await pubackCode(alice.client, '/bob/x', 'foreign'), 0x87, 'publishes nowhere else')

  // The same account logged in by password sees what the certificate client publishes.
  const byPassword = await connectWithAck(t, b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' })
  await byPassword.client.subscribeAsync('/alice/events/connected', { qos: 1 })
  await connectWithAck(t, tlsUrl, tls('alice', { clientId: 'alice-cert-2', protocolVersion: 4 }))
  const events = () => byPassword.messages.map((m) => JSON.parse(m.payload.toString()) as Record<string, unknown>)
  await until(() => events().some((e) => e.clientId === 'alice-cert-2'), 5000, 'the connected event')
  t.match(
    events().find((e) => e.clientId === 'alice-cert-2'),
    { event: 'connected', via: 'certificate', listener: 'tls', protocolVersion: 4 },
  )
})

t.test('a certificate with the matching user name logs in; the password is not what counts', async (t) => {
  const { tlsUrl, tls } = await certBroker(t)
  t.equal(await connackCode(tlsUrl, tls('alice', { username: 'alice' })), 0)
  t.equal(await connackCode(tlsUrl, tls('alice', { username: 'alice', password: 'pw-alice' })), 0)
  t.equal(await connackCode(tlsUrl, tls('alice', { username: 'alice', password: 'anything' })), 0)
  t.equal(await connackCode(tlsUrl, tls('alice', { username: 'alice', protocolVersion: 4 })), 0, '3.1.1')
})

t.test('a user name that differs from the certificate is refused with 0x87, even with that account’s password', async (t) => {
  const { b, tlsUrl, tls } = await certBroker(t)
  for (const options of [{ username: 'bob' }, { username: 'bob', password: 'pw-bob' }, { username: 'JWT', password: 'x.y.z' }]) {
    t.equal(await connackCode(tlsUrl, tls('alice', options)), 0x87, JSON.stringify(options))
    t.equal(await connackCode(tlsUrl, tls('alice', { ...options, protocolVersion: 4 })), 5, `${JSON.stringify(options)}: 3.1.1`)
  }
  t.match(logEvents(b.logs, 'connect.refused').at(-1), { reason: /does not match the certificate/ })
})

t.test('a certificate for an account perch does not know is refused with 0x87', async (t) => {
  const { b, tlsUrl, tls } = await certBroker(t)
  t.equal(await connackCode(tlsUrl, tls('nobody')), 0x87)
  t.equal(await connackCode(tlsUrl, tls('nobody', { protocolVersion: 4 })), 5, '3.1.1: not authorized')
  t.match(logEvents(b.logs, 'connect.refused').at(-1), { reason: /no account "nobody"/ })
})

t.test('a certificate for a disabled account is refused with 0x8A', async (t) => {
  const { b, tlsUrl, tls } = await certBroker(t)
  t.equal(await connackCode(tlsUrl, tls('carol')), 0x8a)
  t.equal(await connackCode(tlsUrl, tls('carol', { protocolVersion: 4 })), 5, '3.1.1: not authorized')
  t.match(logEvents(b.logs, 'connect.refused').at(-1), { reason: /disabled/ })
  // Enabled again, the same certificate gets in.
  const store = b.app.accounts?.store
  if (store === undefined) throw new Error('no account store')
  const enabled = store.setEnabled('carol', true)
  t.ok(enabled.ok)
  b.reload()
  t.equal(await connackCode(tlsUrl, tls('carol')), 0)
})

t.test('without a client certificate the TLS handshake is refused and no CONNACK is sent', async (t) => {
  const { b, tlsUrl, tls } = await certBroker(t)
  for (const options of [{}, { username: 'alice', password: 'pw-alice' }]) {
    const r = await attempt(tlsUrl, tls(undefined, options))
    t.ok('error' in r, `${JSON.stringify(options)}: the connection fails (${'error' in r ? r.error : `CONNACK ${r.connack}`})`)
  }
  t.same(logEvents(b.logs, 'client.connected'), [], 'no client got in')
  t.same(logEvents(b.logs, 'connect.refused'), [], 'no CONNECT was even read')
  // The plain listener still takes password logins.
  t.equal(await connackCode(b.url, { protocolVersion: 5, username: 'alice', password: 'pw-alice' }), 0)
})

t.test('a certificate from a CA the listener does not trust is refused at the handshake', async (t) => {
  const { b, pki, tlsUrl, tls } = await certBroker(t)
  const r = await attempt(tlsUrl, tls(undefined, { cert: pki.stranger.cert, key: pki.stranger.key }))
  t.ok('error' in r, `the connection fails (${'error' in r ? r.error : `CONNACK ${r.connack}`})`)
  t.same(logEvents(b.logs, 'client.connected'), [])
  t.same(logEvents(b.logs, 'connect.refused'), [])
})
