// The README's IoTtalk example, run as written: examples/iottalk/betacat.mjs (the device
// application) and examples/iottalk/api.sh (the graph, with mosquitto_pub), against a real perch.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { spawnTool } from '../helpers/cli.js'
import { until } from '../helpers/clients.js'
import { graphBroker } from '../helpers/graphs.js'

t.setTimeout(90_000)

const BETACAT = 'df682f01-7c3a-49fd-8f5f-72ce0b6e68c0'
const files = ['examples/iottalk/betacat.mjs', 'examples/iottalk/api.sh']

t.test('the README shows the example files as they are', async (t) => {
  const readme = readFileSync('README.md', 'utf8')
  for (const f of files) t.ok(readme.includes(readFileSync(f, 'utf8').trim()), `README.md contains ${f} verbatim`)
})

t.test('BetaCat and api.sh: the output feature prints int(x) ** 2 of the input feature', async (t) => {
  const { b, httpPort } = await graphBroker(t)
  const env = {
    ...process.env,
    PERCH_HTTP: `http://127.0.0.1:${httpPort}`,
    PERCH_MQTT: b.url,
    PERCH_HOST: '127.0.0.1',
    PERCH_PORT: String(b.port),
    PERCH_ACCOUNT: 'A',
    PERCH_PASSWORD: 'pw-A',
  }
  const betacat = spawnTool(t, process.execPath, ['examples/iottalk/betacat.mjs'], { timeoutMs: 60_000, env })
  await until(() => b.app.graphs?.store.device(BETACAT)?.presence === 'online' || betacat.exited(), 15_000, `BetaCat online (${betacat.stderr()})`)
  t.equal(b.app.graphs?.store.device(BETACAT)?.presence, 'online', 'BetaCat registered and went online')
  const api = await spawnTool(t, 'sh', ['examples/iottalk/api.sh'], { timeoutMs: 30_000, env }).done
  t.equal(api.code, 0, `api.sh ran: ${api.stderr}`)
  const squares = (): number[] =>
    betacat
      .lines()
      .filter((l) => l.startsWith(`/A/devices/${BETACAT}/odf/meow `))
      .map((l) => Number(l.split(' ')[1]))
  const links = (): number => b.app.graphs?.store.links('A', '1').length ?? 0
  await until(() => links() === 2 && b.app.graphs?.store.graph('A', '1')?.join !== null, 10_000, 'the graph built')
  const joinedFrom = squares().length
  await until(() => squares().length >= joinedFrom + 5, 15_000, `values on the output feature (${betacat.stderr()})`)
  const after = squares().slice(joinedFrom + 1)
  t.ok(after.length >= 4, `${after.length} values after the join was set`)
  t.ok(
    after.every((v) => Number.isInteger(Math.sqrt(v)) && Math.sqrt(v) < 100),
    `each is the square of a reading below 100: ${after.slice(0, 6).join(', ')}`,
  )
  t.same(
    b.app.graphs?.store.signals(BETACAT).map((s) => [s.kind, s.command, s.state]),
    [
      ['idf', 'CONNECT', 'ok'],
      ['odf', 'CONNECT', 'ok'],
    ],
    'BetaCat answered both CONNECTs',
  )
  betacat.kill('SIGTERM')
})
