// Listeners (MQTT 4.2 network connections): TLS with and without client certificates,
// MQTT over WebSocket (v4 and v5), and several listeners feeding one broker.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IClientOptions, MqttClient } from 'mqtt'
import mqtt from 'mqtt'
import type { Test } from 'tap'
import t from 'tap'
import { systemClock } from '../../src/core/clock.js'
import { DeadlineQueue } from '../../src/core/deadlines.js'
import { silentLogger } from '../../src/core/logger.js'
import { Broker } from '../../src/mqtt/broker/broker.js'
import type { AuthResult, BrokerHooks, ConnectRequest } from '../../src/mqtt/broker/hooks.js'
import { MemorySessionStore } from '../../src/mqtt/session/memory-store.js'
import { ImmediateFlusher } from '../../src/mqtt/transport/flusher.js'
import { ConnectionSet, listen } from '../../src/mqtt/transport/listeners.js'
import { startBroker } from '../helpers/broker.js'
import { collect, connectClient, until } from '../helpers/clients.js'

// ---------------------------------------------------------------------------------------------
// A throwaway PKI: a CA, a server certificate for 127.0.0.1/localhost, a client certificate
// with CN=device-7 signed by the CA, and a client certificate signed by an unrelated CA.

interface Pki {
  dir: string
  caCert: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
  rogueCert: string
  rogueKey: string
}

function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'perch-pki-'))
  const p = (name: string): string => join(dir, name)
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const selfSignedCa = (name: string, cn: string): void => {
    openssl('req', '-x509', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`), '-days', '2', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  }
  const leaf = (name: string, cn: string, ca: string, ext: string): void => {
    writeFileSync(p(`${name}.ext`), ext)
    openssl('req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`)
    openssl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${ca}.crt`), '-CAkey', p(`${ca}.key`), '-CAcreateserial',
      '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`))
  }
  selfSignedCa('ca', 'perch test CA')
  selfSignedCa('rogue-ca', 'rogue CA')
  leaf('server', 'localhost', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  leaf('client', 'device-7', 'ca', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n')
  leaf('rogue', 'device-7', 'rogue-ca', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n')
  return {
    dir,
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    rogueCert: p('rogue.crt'),
    rogueKey: p('rogue.key'),
  }
}

const pki = makePki()
t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }))
const read = (path: string): Buffer => readFileSync(path)

/** Resolves once the client is refused (error or close before CONNACK); fails if it connects. */
async function refused(t: { teardown(fn: () => unknown): void }, url: string, options: IClientOptions): Promise<string> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  t.teardown(() => new Promise<void>((resolve) => client.end(true, {}, () => resolve())))
  return new Promise<string>((resolve, reject) => {
    client.once('connect', () => reject(new Error('connected, but should have been refused')))
    client.once('error', (e) => resolve(e.message))
    client.once('close', () => resolve('closed'))
  })
}

async function exchange(t: Test, from: MqttClient, to: MqttClient, topic: string): Promise<void> {
  const got = collect(to)
  await to.subscribeAsync(topic, { qos: 1 })
  await from.publishAsync(topic, `to ${topic}`, { qos: 1 })
  await until(() => got.some((m) => m.topic === topic), 5000, `message on ${topic}`)
  t.equal(got.find((m) => m.topic === topic)?.payload.toString(), `to ${topic}`)
}

// ---------------------------------------------------------------------------------------------
// TLS

t.test('TLS listener: a client that verifies the server certificate connects, publishes and receives', async (t) => {
  const b = await startBroker(t, { listeners: [{ name: 'tls', kind: 'tls', port: 0, cert: pki.serverCert, key: pki.serverKey }] })
  const port = b.ports.tls
  t.ok(port !== undefined && port > 0, 'port 0 was given a real port')
  const url = `mqtts://127.0.0.1:${port}`
  const opts = { ca: read(pki.caCert), rejectUnauthorized: true }
  for (const protocolVersion of [4, 5] as const) {
    const c = await connectClient(t, url, { ...opts, protocolVersion, clientId: `tls-v${protocolVersion}` })
    const got = collect(c)
    await c.subscribeAsync(`tls/${protocolVersion}`, { qos: 1 })
    await c.publishAsync(`tls/${protocolVersion}`, 'over tls', { qos: 1 })
    await until(() => got.length === 1, 5000, 'own message back')
    t.equal(got[0]?.payload.toString(), 'over tls', `v${protocolVersion}`)
  }
  const connected = b.logs.filter((l) => l.event === 'client.connected')
  t.ok(
    connected.length === 2 && connected.every((l) => l.listener === 'tls'),
    'clients are attributed to the tls listener',
  )
})

t.test('TLS listener: a client that does not trust the server certificate refuses it', async (t) => {
  const b = await startBroker(t, { listeners: [{ name: 'tls', kind: 'tls', port: 0, cert: pki.serverCert, key: pki.serverKey }] })
  const why = await refused(t, `mqtts://127.0.0.1:${b.ports.tls}`, { rejectUnauthorized: true })
  t.match(why, /certificate|closed/i)
  t.equal(b.app.broker.stats.connectionsTotal, 0)
})

t.test('TLS listener: plain MQTT on the TLS port gets no CONNACK', async (t) => {
  const b = await startBroker(t, { listeners: [{ name: 'tls', kind: 'tls', port: 0, cert: pki.serverCert, key: pki.serverKey }] })
  await refused(t, `mqtt://127.0.0.1:${b.ports.tls}`, {})
  t.equal(b.app.broker.stats.connectionsTotal, 0)
})

t.test('TLS listener with requireClientCert: no certificate or a foreign one is rejected, a CA-signed one works', async (t) => {
  const b = await startBroker(t, {
    listeners: [{ name: 'mtls', kind: 'tls', port: 0, cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requireClientCert: true }],
  })
  const url = `mqtts://127.0.0.1:${b.ports.mtls}`
  const trust = { ca: read(pki.caCert), rejectUnauthorized: true }
  await refused(t, url, { ...trust, clientId: 'no-cert' })
  await refused(t, url, { ...trust, clientId: 'rogue', cert: read(pki.rogueCert), key: read(pki.rogueKey) })
  t.equal(b.app.broker.stats.connectionsTotal, 0, 'neither reached CONNECT')
  const c = await connectClient(t, url, { ...trust, clientId: 'device', protocolVersion: 5, cert: read(pki.clientCert), key: read(pki.clientKey) })
  const got = collect(c)
  await c.subscribeAsync('mtls/x', { qos: 1 })
  await c.publishAsync('mtls/x', 'ok', { qos: 1 })
  await until(() => got.length === 1, 5000, 'message')
  t.equal(got[0]?.payload.toString(), 'ok')
})

/**
 * Neither built-in hooks object records the certificate CN, so this wires the real listener and
 * broker (the parts App.start composes) with hooks that record every ConnectRequest.
 */
async function recordingTlsBroker(t: Test, requireClientCert: boolean): Promise<{ url: string; seen: ConnectRequest[] }> {
  const seen: ConnectRequest[] = []
  const hooks: BrokerHooks = {
    name: 'recording',
    authenticate(req: ConnectRequest): AuthResult {
      seen.push(req)
      return { ok: true, identity: { username: req.username, account: undefined, admin: false } }
    },
    authorizePublish: () => true,
    authorizeSubscribe: () => 'allow',
    canRead: () => true,
  }
  const clock = systemClock()
  const logger = silentLogger()
  const deadlines = new DeadlineQueue(clock)
  const broker = new Broker({
    hooks,
    store: new MemorySessionStore(),
    clock,
    deadlines,
    logger,
    limits: {
      maxInflight: 32,
      maxQueuedMessages: 100,
      maxQueuedBytes: 1_000_000,
      maxSessionExpiry: 3600,
      maxQueuedMessagesTotal: 10_000,
      maxQueuedBytesTotal: 100_000_000,
    },
  })
  const connections = new ConnectionSet({
    broker,
    clock,
    logger,
    flusher: new ImmediateFlusher(),
    newClientId: () => 'assigned',
    limits: {
      maxPacketSize: 1_048_576,
      connectTimeoutMs: 10_000,
      maxKeepalive: 65_535,
      receiveMaximum: 100,
      topicAliasMaximum: 0,
      maxTopicLength: 1024,
      maxTopicLevels: 32,
      maxWriteBuffer: 1_048_576,
      slowConsumerPolicy: 'drop',
      maxConnections: 100,
    },
  })
  const listener = await listen(
    {
      name: 'mtls',
      kind: 'tls',
      host: '127.0.0.1',
      port: 0,
      path: '/mqtt',
      tls: { cert: read(pki.serverCert), key: read(pki.serverKey), ca: read(pki.caCert), requireClientCert },
    },
    connections,
  )
  t.teardown(async () => {
    connections.shutdown()
    await listener.close()
    broker.dispose()
    deadlines.dispose()
  })
  return { url: `mqtts://127.0.0.1:${listener.port}`, seen }
}

t.test('TLS listener with requireClientCert: the certificate CN reaches authentication', async (t) => {
  const { url, seen } = await recordingTlsBroker(t, true)
  await connectClient(t, url, { ca: read(pki.caCert), cert: read(pki.clientCert), key: read(pki.clientKey), clientId: 'cn-check', username: 'u1' })
  t.equal(seen.length, 1)
  t.equal(seen[0]?.certificateCommonName, 'device-7')
  t.equal(seen[0]?.listener, 'mtls')
  t.equal(seen[0]?.username, 'u1', 'the CONNECT username is passed alongside, not replaced')
})

t.test('TLS listener without requireClientCert passes no CN, even when a client offers a certificate', async (t) => {
  const { url, seen } = await recordingTlsBroker(t, false)
  await connectClient(t, url, { ca: read(pki.caCert), cert: read(pki.clientCert), key: read(pki.clientKey), clientId: 'no-cn' })
  t.equal(seen.length, 1)
  t.equal(seen[0]?.certificateCommonName, undefined, 'an unverified certificate names nobody')
})

// ---------------------------------------------------------------------------------------------
// WebSocket

t.test('WebSocket listener: v4 and v5 clients publish and subscribe over ws://HOST:PORT/mqtt', async (t) => {
  const b = await startBroker(t, { listeners: [{ name: 'ws', kind: 'ws', port: 0, path: '/mqtt' }] })
  const url = `ws://127.0.0.1:${b.ports.ws}/mqtt`
  const v4 = await connectClient(t, url, { protocolVersion: 4, clientId: 'ws4' })
  const v5 = await connectClient(t, url, { protocolVersion: 5, clientId: 'ws5' })
  await exchange(t, v4, v5, 'ws/from-v4')
  await exchange(t, v5, v4, 'ws/from-v5')
  // A larger payload crosses several WebSocket frames' worth of data intact.
  const got = collect(v5)
  const big = Buffer.alloc(200_000, 7)
  await v5.subscribeAsync('ws/big', { qos: 1 })
  await v4.publishAsync('ws/big', big, { qos: 1 })
  await until(() => got.some((m) => m.topic === 'ws/big'), 5000, 'big message')
  t.ok(got.find((m) => m.topic === 'ws/big')?.payload.equals(big), '200 kB payload intact')
})

t.test('WebSocket listener: only its path upgrades', async (t) => {
  const b = await startBroker(t, { listeners: [{ name: 'ws', kind: 'ws', port: 0, path: '/mqtt' }] })
  await refused(t, `ws://127.0.0.1:${b.ports.ws}/other`, { protocolVersion: 5 })
  t.equal(b.app.broker.stats.connectionsTotal, 0)
  const res = await fetch(`http://127.0.0.1:${b.ports.ws}/mqtt`)
  t.equal(res.status, 426, 'a plain HTTP request is told to upgrade')
  await res.text()
})

// ---------------------------------------------------------------------------------------------
// All listeners feed one broker

t.test('TCP, WebSocket and TLS clients of one broker exchange messages both ways', async (t) => {
  const b = await startBroker(t, {
    listeners: [
      { name: 'tcp', kind: 'tcp', host: '127.0.0.1', port: 0 },
      { name: 'ws', kind: 'ws', port: 0, path: '/mqtt' },
      { name: 'tls', kind: 'tls', port: 0, cert: pki.serverCert, key: pki.serverKey },
    ],
  })
  const ports = [b.ports.tcp, b.ports.ws, b.ports.tls]
  t.equal(new Set(ports).size, 3, 'three listeners on three ports')
  const tcp = await connectClient(t, `mqtt://127.0.0.1:${b.ports.tcp}`, { protocolVersion: 5, clientId: 'over-tcp' })
  const ws = await connectClient(t, `ws://127.0.0.1:${b.ports.ws}/mqtt`, { protocolVersion: 4, clientId: 'over-ws' })
  const tls = await connectClient(t, `mqtts://127.0.0.1:${b.ports.tls}`, { ca: read(pki.caCert), clientId: 'over-tls' })
  t.equal(b.app.broker.liveCount, 3, 'one broker holds all three clients')
  await exchange(t, tcp, ws, 'x/tcp-to-ws')
  await exchange(t, ws, tcp, 'x/ws-to-tcp')
  await exchange(t, tls, ws, 'x/tls-to-ws')
  await exchange(t, ws, tls, 'x/ws-to-tls')
  const byListener = new Map(b.logs.filter((l) => l.event === 'client.connected').map((l) => [l.clientId, l.listener]))
  t.same(Object.fromEntries(byListener), { 'over-tcp': 'tcp', 'over-ws': 'ws', 'over-tls': 'tls' })
})

t.test('[MQTT-3.1.4-3] a client id taken over from another listener disconnects the first connection', async (t) => {
  const b = await startBroker(t, {
    listeners: [
      { name: 'tcp', kind: 'tcp', host: '127.0.0.1', port: 0 },
      { name: 'ws', kind: 'ws', port: 0, path: '/mqtt' },
    ],
  })
  const first = await connectClient(t, `mqtt://127.0.0.1:${b.ports.tcp}`, { protocolVersion: 5, clientId: 'same' })
  const reasons: number[] = []
  first.on('disconnect', (p) => reasons.push(p.reasonCode ?? 0))
  await connectClient(t, `ws://127.0.0.1:${b.ports.ws}/mqtt`, { protocolVersion: 5, clientId: 'same' })
  await until(() => reasons.length === 1, 5000, 'DISCONNECT to the first connection')
  t.equal(reasons[0], 0x8e, 'session taken over')
  t.equal(b.app.broker.liveCount, 1)
})
