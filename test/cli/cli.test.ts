// The perch command line, run as users and service managers run it: `node bin/perch.js`.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { IDisconnectPacket } from 'mqtt'
import t from 'tap'
import { connackCode } from '../helpers/accounts.js'
import { collect, connectClient, until } from '../helpers/clients.js'
import { ROOT, runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'

const FLAGS = ['--config', '--data-dir', '--host', '--port', '--allow-anonymous', '--log-level'] as const

// ---------------------------------------------------------------------------------------------
// Running perch

const work = mkdtempSync(join(tmpdir(), 'perch-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))







function configFile(name: string, text: string): string {
  const path = join(work, name)
  writeFileSync(path, text)
  return path
}

// ---------------------------------------------------------------------------------------------
// Help, version, defaults

t.test('--help and start --help list every start flag', async (t) => {
  for (const args of [['--help'], ['help'], ['start', '--help'], ['help', 'start'], ['start', '-h']]) {
    const r = await runPerch(t, work, args)
    t.equal(r.code, 0, `perch ${args.join(' ')} exits 0`)
    for (const flag of FLAGS) t.match(r.stdout, new RegExp(`${flag}\\b`), `perch ${args.join(' ')} lists ${flag}`)
  }
  const main = await runPerch(t, work, ['--help'])
  for (const command of ['start', 'config defaults', 'config check', 'version']) t.match(main.stdout, command)
})

t.test('version prints the version from package.json', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['version'], ['--version'], ['-v']]) {
    const r = await runPerch(t, work, args)
    t.equal(r.code, 0)
    t.equal(r.stdout.trim(), `perch ${pkg.version}`)
  }
})

t.test('an unknown command or option is a usage error (exit 2)', async (t) => {
  const cmd = await runPerch(t, work, ['frobnicate'])
  t.equal(cmd.code, 2)
  t.match(cmd.stderr, /unknown command "frobnicate"/)
  const opt = await runPerch(t, work, ['start', '--frobnicate'])
  t.equal(opt.code, 2)
  t.match(opt.stderr, /--frobnicate/)
  const sub = await runPerch(t, work, ['config', 'frob'])
  t.equal(sub.code, 2)
  t.match(sub.stderr, /Usage: perch config/)
})

t.test('config defaults prints valid JSON that config check accepts unchanged', async (t) => {
  const r = await runPerch(t, work, ['config', 'defaults'])
  t.equal(r.code, 0)
  const defaults = JSON.parse(r.stdout) as Record<string, unknown>
  t.match(defaults, { dataDir: './perch-data', listeners: [{ kind: 'tcp', host: '127.0.0.1', port: 1883 }], auth: { mode: 'accounts' } })
  const path = configFile('defaults.json', r.stdout)
  const checked = await runPerch(t, work, ['config', 'check', path])
  t.equal(checked.code, 0, checked.stderr)
  t.same(JSON.parse(checked.stdout), defaults, 'the effective config is the defaults')
})

t.test('config defaults takes its data directory from $STATE_DIRECTORY', async (t) => {
  const r = await runPerch(t, work, ['config', 'defaults'], { STATE_DIRECTORY: '/var/lib/perch' })
  t.equal((JSON.parse(r.stdout) as { dataDir: string }).dataDir, '/var/lib/perch')
})

t.test('config check prints a partial file laid over the defaults', async (t) => {
  const path = configFile('partial.json', JSON.stringify({ limits: { maxInflight: 7 }, log: { level: 'debug' } }))
  const r = await runPerch(t, work, ['config', 'check', path])
  t.equal(r.code, 0, r.stderr)
  const effective = JSON.parse(r.stdout) as { limits: { maxInflight: number; receiveMaximum: number }; log: { level: string } }
  t.equal(effective.limits.maxInflight, 7)
  t.equal(effective.limits.receiveMaximum, 100, 'untouched keys keep their defaults')
  t.equal(effective.log.level, 'debug')
})

// ---------------------------------------------------------------------------------------------
// Bad configuration

const badConfigs: { name: string; text: string | undefined; why: RegExp }[] = [
  { name: 'an unknown top-level key', text: '{"bogus": 1}', why: /unknown key "bogus"/ },
  { name: 'an unknown nested key', text: '{"limits": {"maxPackets": 1}}', why: /limits: unknown key "maxPackets"/ },
  { name: 'a wrong type', text: '{"limits":{"maxPacketSize":"big"}}', why: /limits\.maxPacketSize: must be integer/ },
  { name: 'an out-of-range port', text: '{"listeners":[{"kind":"tcp","port":70000}]}', why: /listeners\.0\.port: must be <= 65535/ },
  { name: 'a negative port', text: '{"listeners":[{"kind":"tcp","port":-1}]}', why: /listeners\.0\.port: must be >= 0/ },
  { name: 'a tls listener without cert', text: '{"listeners":[{"kind":"tls","port":8883}]}', why: /listeners\.0: a tls listener needs "cert" and "key"/ },
  {
    name: 'requireClientCert without ca',
    text: '{"listeners":[{"kind":"tls","port":8883,"cert":"c.pem","key":"k.pem","requireClientCert":true}]}',
    why: /listeners\.0: requireClientCert needs "ca"/,
  },
  { name: 'a bad enum value', text: '{"log":{"level":"loud"}}', why: /log\.level: must be one of/ },
  { name: 'invalid JSON', text: '{"limits": ', why: /not valid JSON/ },
  { name: 'a JSON array', text: '[]', why: /\(root\): must be object/ },
  { name: 'a missing file', text: undefined, why: /no such file/ },
]

for (const bad of badConfigs) {
  t.test(`config check and start refuse ${bad.name}, saying what is wrong`, async (t) => {
    const file = `bad-${bad.name.replaceAll(/\W+/g, '-')}.json`
    const path = bad.text === undefined ? join(work, 'does-not-exist.json') : configFile(file, bad.text)
    const checked = await runPerch(t, work, ['config', 'check', path])
    t.not(checked.code, 0, 'config check exits non-zero')
    t.match(checked.stderr, bad.why)
    t.match(checked.stderr, path, 'the message names the file')
    t.equal(checked.stdout, '', 'nothing on stdout')
    const dataDir = join(work, `never-${file}`)
    const started = await runPerch(t, work, ['start', '--config', path, '--port', '0', '--data-dir', dataDir])
    t.not(started.code, 0, 'start exits non-zero')
    t.match(started.stderr, bad.why)
    t.notOk(existsSync(dataDir), 'nothing was started')
  })
}

t.test('--port must be a port number', async (t) => {
  for (const port of ['abc', '70000', '-1', '1.5', '', '0x50', '1e3']) {
    const r = await runPerch(t, work, ['start', `--port=${port}`, '--data-dir', join(work, 'never-port')])
    t.not(r.code, 0, `--port=${JSON.stringify(port)} is refused`)
    t.match(r.stderr, /--port/)
  }
  t.notOk(existsSync(join(work, 'never-port')))
})

t.test('--log-level must be a level', async (t) => {
  const r = await runPerch(t, work, ['start', '--log-level', 'loud', '--port', '0', '--data-dir', join(work, 'never-level')])
  t.not(r.code, 0)
  t.match(r.stderr, /log\.level: must be one of/)
})

t.test('open mode on a non-loopback address is refused without --allow-anonymous', async (t) => {
  const open = configFile('open.json', JSON.stringify({ auth: { mode: 'open' } }))
  const r = await runPerch(t, work, ['start', '--config', open, '--host', '0.0.0.0', '--port', '0', '--data-dir', join(work, 'never-open')])
  t.not(r.code, 0)
  t.match(r.stderr, /0\.0\.0\.0/)
  t.match(r.stderr, /anonymous/)
  t.match(r.stderr, /--allow-anonymous/, 'the message says how to allow it')
  t.notOk(existsSync(join(work, 'never-open')))
})

t.test('open mode on a non-loopback address starts with --allow-anonymous', async (t) => {
  const p = startPerch(t, work, ['--host', '0.0.0.0', '--port', '0', '--allow-anonymous', '--data-dir', join(work, 'open-any')])
  const port = await startedPort(p)
  t.match(p.event('perch.started'), { auth: 'open', listeners: [{ host: '0.0.0.0' }] })
  const c = await connectClient(t, `mqtt://127.0.0.1:${port}`, { protocolVersion: 4 })
  t.ok(c.connected)
  p.tool.kill('SIGTERM')
  t.same(await p.exited, { code: 0, signal: null })
})

// ---------------------------------------------------------------------------------------------
// Start and stop

t.test('start --port 0: serves MQTT, and SIGTERM sends v5 clients DISCONNECT 0x8B and exits 0', async (t) => {
  const dataDir = join(work, 'nested', 'data-dir')
  t.notOk(existsSync(dataDir))
  const p = startPerch(t, work, ['--port', '0', '--data-dir', dataDir, '--log-level', 'info'])
  const port = await startedPort(p)
  t.ok(statSync(dataDir).isDirectory(), 'the --data-dir directory was created')
  t.match(p.event('perch.started'), { dataDir, auth: 'accounts', listeners: [{ kind: 'tcp', host: '127.0.0.1', port }] })

  // The first start creates an admin with a random password, in a file only perch's user can read.
  const passwordFile = join(dataDir, 'admin-password')
  t.match(p.event('accounts.admin-created'), { account: 'admin', passwordFile })
  t.equal(statSync(passwordFile).mode & 0o777, 0o600, 'admin-password is mode 0600')
  const password = /password: (\S+)/.exec(readFileSync(passwordFile, 'utf8'))?.[1] ?? ''
  t.ok(password.length >= 20, 'a long random password')

  const url = `mqtt://127.0.0.1:${port}`
  const anonymous = await connackCode(url, { protocolVersion: 5 })
  t.equal(anonymous, 0x87, 'anonymous clients are refused: not authorized')
  const v5 = await connectClient(t, url, { protocolVersion: 5, clientId: 'cli-v5', username: 'admin', password })
  const v4 = await connectClient(t, url, { protocolVersion: 4, clientId: 'cli-v4', username: 'admin', password })
  const got = collect(v5)
  await v5.subscribeAsync('cli/#', { qos: 1 })
  await v4.publishAsync('cli/x', 'through the spawned broker', { qos: 1 })
  await until(() => got.length === 1, 5000, 'message')

  const disconnects: IDisconnectPacket[] = []
  v5.on('disconnect', (packet) => disconnects.push(packet))
  let v4Closed = false
  v4.on('close', () => {
    v4Closed = true
  })
  p.tool.kill('SIGTERM')
  const exit = await p.exited
  t.same(exit, { code: 0, signal: null }, 'exits 0 by itself')
  await until(() => disconnects.length === 1 && v4Closed, 5000, 'clients told and closed')
  t.equal(disconnects[0]?.reasonCode, 0x8b, '[MQTT-3.14.2-1] v5 DISCONNECT 0x8B server shutting down')
  t.ok(v4Closed, '3.1.1 clients are closed (3.1.1 has no server DISCONNECT)')
  const order = p.events().map((e) => e.event)
  t.ok(order.includes('perch.signal'), 'the signal is logged')
  t.match(p.event('perch.signal'), { signal: 'SIGTERM' })
  t.ok(order.includes('perch.stopped'), 'perch.stopped is logged')
  t.ok(order.indexOf('perch.stopping') < order.indexOf('perch.stopped'))
  t.equal(order[order.length - 1], 'perch.stopped', 'and is the last line')
})

t.test('SIGINT stops perch likewise and exits 0', async (t) => {
  const p = startPerch(t, work, ['--port', '0', '--allow-anonymous', '--data-dir', join(work, 'sigint')])
  const port = await startedPort(p)
  const c = await connectClient(t, `mqtt://127.0.0.1:${port}`, { protocolVersion: 5 })
  const disconnects: IDisconnectPacket[] = []
  c.on('disconnect', (packet) => disconnects.push(packet))
  p.tool.kill('SIGINT')
  t.same(await p.exited, { code: 0, signal: null })
  await until(() => disconnects.length === 1, 5000, 'DISCONNECT')
  t.equal(disconnects[0]?.reasonCode, 0x8b)
  t.match(p.event('perch.signal'), { signal: 'SIGINT' })
  t.ok(p.event('perch.stopped'))
})

t.test('SIGTERM with no clients exits 0', async (t) => {
  const p = startPerch(t, work, ['--port', '0', '--allow-anonymous', '--data-dir', join(work, 'idle')])
  const port = await startedPort(p)
  // A served connection proves the signal handlers are installed (they follow perch.started).
  const c = await connectClient(t, `mqtt://127.0.0.1:${port}`, {})
  c.end(true)
  await until(() => !c.connected, 5000, 'client gone')
  p.tool.kill('SIGTERM')
  t.same(await p.exited, { code: 0, signal: null })
  t.ok(p.event('perch.stopped'))
})

t.test('start --config FILE uses the file, and flags override it', async (t) => {
  const path = configFile(
    'start.json',
    JSON.stringify({ listeners: [{ name: 'main', kind: 'tcp', host: '127.0.0.1', port: 1 }], limits: { maxInflight: 5 } }),
  )
  const p = startPerch(t, work, ['--config', path, '--port', '0', '--allow-anonymous', '--data-dir', join(work, 'with-config')])
  const port = await startedPort(p)
  t.match(p.event('perch.started'), { listeners: [{ name: 'main', port }] }, '--port replaced the file’s port on its first TCP listener')
  const c = await connectClient(t, `mqtt://127.0.0.1:${port}`, {})
  t.ok(c.connected)
  p.tool.kill('SIGTERM')
  t.same(await p.exited, { code: 0, signal: null })
})

t.test('a port already in use is a clean start failure', async (t) => {
  const first = startPerch(t, work, ['--port', '0', '--data-dir', join(work, 'busy-1')])
  const port = await startedPort(first)
  const second = await runPerch(t, work, ['start', '--port', String(port), '--data-dir', join(work, 'busy-2')])
  t.equal(second.code, 1)
  t.match(second.stderr, /cannot listen/)
  t.match(second.stderr, /EADDRINUSE/)
  first.tool.kill('SIGTERM')
  t.same(await first.exited, { code: 0, signal: null })
})
