// `perch status` reads the figures a running perch writes to its data directory.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connectWithAck } from '../helpers/clients.js'
import { runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'

t.test('perch status: running with its figures, then not running once stopped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-status-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const none = await runPerch(t, dir, ['status', '--data-dir', dir])
  t.equal(none.code, 1, 'no status file yet')
  t.match(none.stderr, /perch has not run here/)
  const config = join(dir, 'perch.json')
  writeFileSync(config, JSON.stringify({ sys: { interval: 1 }, log: { level: 'warn' } }))
  const perch = startPerch(t, dir, ['--config', config, '--data-dir', dir, '--port', '0', '--allow-anonymous', '--log-level', 'info'])
  const port = await startedPort(perch)
  const c = await connectWithAck(t, `mqtt://127.0.0.1:${port}`, { protocolVersion: 5 })
  await c.client.publishAsync('x/y', 'z', { qos: 1 })
  let json: { running?: boolean; entries?: Record<string, string> } = {}
  for (let i = 0; i < 50 && json.entries?.['clients/connected'] !== '1'; i++) {
    const r = await runPerch(t, dir, ['status', '--json', '--data-dir', dir])
    json = JSON.parse(r.stdout || '{}')
    if (json.entries?.['clients/connected'] !== '1') await new Promise((r) => setTimeout(r, 200))
  }
  t.equal(json.running, true, 'running')
  t.equal(json.entries?.['clients/connected'], '1', 'one client connected')
  t.ok(Number(json.entries?.['messages/received']) >= 1, 'a message received')
  const text = await runPerch(t, dir, ['status', '--data-dir', dir])
  t.match(text.stdout, /^perch +running \(pid \d+/m)
  t.match(text.stdout, /^clients connected +1$/m)
  await c.client.endAsync()
  perch.tool.kill('SIGTERM')
  await perch.exited
  const after = await runPerch(t, dir, ['status', '--data-dir', dir])
  t.match(after.stdout, /^perch +not running/m, 'a stopped perch is reported as not running')
})
