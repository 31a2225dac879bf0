import { request } from 'node:http'
import t from 'tap'
import { runCli } from '../../src/app/cli.js'
import { defaultConfig, resolveConfig } from '../../src/app/config.js'
import { MetricsServer } from '../../src/app/metrics.js'
import { createLogger } from '../../src/core/logger.js'
import { logEvents, startBroker } from '../helpers/broker.js'
import { connectClient, until } from '../helpers/clients.js'

/** The value of one sample line (`name{labels} value`) in a text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

function metricsPort(port: number | undefined): number {
  if (port === undefined) throw new Error('no metrics endpoint')
  return port
}

t.test('/metrics exposes broker counters read at scrape time, with process metrics', async (t) => {
  const b = await startBroker(t, { http: { port: 0, host: '127.0.0.1' } })
  const port = metricsPort(b.app.metrics?.port)
  t.match(logEvents(b.logs, 'http.listening')[0], { host: '127.0.0.1', port })
  const client = await connectClient(t, b.url)
  await client.subscribeAsync('m/#', { qos: 1 })
  await client.publishAsync('m/a', 'one', { qos: 1, retain: true })
  await until(() => b.app.broker.stats.messagesSent >= 1)

  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain/)
  const text = await res.text()
  t.equal(sample(text, 'perch_clients_connected'), 1)
  t.equal(sample(text, 'perch_sessions'), 1)
  t.equal(sample(text, 'perch_subscriptions'), 1)
  t.equal(sample(text, 'perch_retained_messages'), 1)
  t.ok((sample(text, 'perch_messages_received_total') ?? 0) >= 1, 'messages received counted')
  t.ok((sample(text, 'perch_messages_sent_total') ?? 0) >= 1, 'messages sent counted')
  t.equal(sample(text, 'perch_messages_dropped_total{reason="queue-full"}'), 0)
  t.equal(sample(text, 'perch_connections_refused_total{reason="auth"}'), 0)
  t.equal(sample(text, 'perch_queued_messages'), 0)
  t.match(text, '# TYPE perch_messages_received_total counter')
  t.match(text, '# TYPE perch_clients_connected gauge')
  t.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 0, 'default process metrics')
  t.notMatch(text, 'perch_sync_up', 'no sync series without a sync')

  // Values move between scrapes: they are read when scraped, not when perch started.
  await client.publishAsync('m/b', 'two', { qos: 1 })
  await client.endAsync()
  await until(() => b.app.broker.liveCount === 0)
  const later = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.equal(sample(later, 'perch_clients_connected'), 0)
  t.ok((sample(later, 'perch_messages_received_total') ?? 0) > (sample(text, 'perch_messages_received_total') ?? 0))
})

t.test('/healthz answers 200 ok; other paths 404; other methods 405', async (t) => {
  const b = await startBroker(t, { http: { port: 0, host: '127.0.0.1' } })
  const base = `http://127.0.0.1:${metricsPort(b.app.metrics?.port)}`
  const health = await fetch(`${base}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  const missing = await fetch(`${base}/nope`)
  t.equal(missing.status, 404)
  await missing.text()
  const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })
  t.equal(post.status, 405)
  t.equal(post.headers.get('allow'), 'GET, HEAD')
  await post.text()
})

t.test('/healthz answers 503 with the reason when perch is not ready, and once it stops', async (t) => {
  const b = await startBroker(t)
  t.equal(b.app.metrics, undefined, 'no endpoint unless http is configured')
  const logger = createLogger('error', () => {}, () => Date.now())
  const server = await MetricsServer.start({ port: 0, host: '127.0.0.1' }, { broker: b.app.broker, notReady: () => 'no listeners' }, logger)
  t.teardown(() => server.close())
  const res = await fetch(`http://127.0.0.1:${server.port}/healthz`)
  t.equal(res.status, 503)
  t.same(await res.json(), { status: 'unavailable', reason: 'no listeners' })
  await server.close()
  t.same(server.health(), { status: 503, reason: 'stopping' })
})

t.test('the endpoint closes when perch stops', async (t) => {
  const b = await startBroker(t, { http: { port: 0, host: '127.0.0.1' } })
  const port = metricsPort(b.app.metrics?.port)
  await b.stop()
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/healthz' }, (res) => {
      res.resume()
      resolve(undefined)
    })
    req.on('error', (e) => resolve(e))
    req.end()
  })
  t.equal(error?.code, 'ECONNREFUSED')
})

t.test('config: http is off when absent; host defaults to 127.0.0.1; a bad section is refused by key', async (t) => {
  const base = defaultConfig()
  const off = resolveConfig({}, base, 'test')
  t.equal(off.ok && off.value.http, undefined)
  const on = resolveConfig({ http: { port: 9464 } }, base, 'test')
  t.same(on.ok && on.value.http, { port: 9464, host: '127.0.0.1' })
  const exposed = resolveConfig({ http: { port: 9464, host: '0.0.0.0' } }, base, 'test')
  t.same(exposed.ok && exposed.value.http, { port: 9464, host: '0.0.0.0' }, 'a host set in the config is honoured')
  for (const bad of [{ http: { host: '127.0.0.1' } }, { http: { port: 70_000 } }, { http: { port: '9464' } }, { http: { port: 1, path: '/x' } }]) {
    const r = resolveConfig(bad, base, 'config file x.json')
    t.notOk(r.ok, JSON.stringify(bad))
    if (!r.ok) t.match(r.error.message, /^config file x\.json: .*http/)
  }
})

t.test('perch start --http-port refuses a bad port before starting', async (t) => {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(['start', '--http-port', '99999'], { out: (s) => out.push(s), err: (s) => err.push(s), env: {} })
  t.equal(code, 1)
  t.match(err.join(''), '--http-port: "99999" is not a port number')
  const help: string[] = []
  await runCli(['start', '--help'], { out: (s) => help.push(s), err: () => {}, env: {} })
  t.match(help.join(''), '--http-port N')
})
