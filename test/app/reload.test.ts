// SIGHUP on a real perch process: the config file, a pushed rule and the device files are taken
// over while an MQTT client stays connected; settings that need a restart are named; an invalid
// config file is reported and the running configuration keeps serving.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { tempDir } from '../durability/perch-process.js'
import { spawnTool } from '../helpers/cli.js'
import { connectWithAck, type Received, until } from '../helpers/clients.js'
import { fakeNotifySocket } from '../helpers/notify-socket.js'
import { BIN, cleanEnv, ROOT, runPerch, startedPort, startPerch } from '../helpers/perch-bin.js'

const W1 = join(ROOT, 'test', 'fixtures', 'w1')

t.test('SIGHUP takes over config, rules and devices without dropping a client', async (t) => {
  const work = tempDir(t, 'perch-reload-')
  const data = join(work, 'data')
  const devices = join(work, 'devices')
  mkdirSync(devices)
  const configFile = join(work, 'perch.json')
  const writeConfig = (extra: Record<string, unknown>): void => {
    const config = {
      dataDir: data,
      listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 }],
      auth: { mode: 'open', allowAnonymous: true },
      devices: { dir: devices },
      // An hour: a pushed rule can only have been loaded by the SIGHUP.
      rules: { reloadInterval: 3600 },
      ...extra,
    }
    writeFileSync(configFile, JSON.stringify(config))
  }
  const writeDevice = (name: string, root: string, intervalMs = 1000): void => {
    writeFileSync(join(devices, `${name}.json`), JSON.stringify({ kind: 'onewire', account: 'farm', root: join(W1, root), intervalMs }))
  }
  writeConfig({ sys: { interval: 10 } })
  writeDevice('tank', 'single')

  const p = startPerch(t, work, ['--config', configFile])
  const url = `mqtt://127.0.0.1:${await startedPort(p)}`
  const { client, messages } = await connectWithAck(t, url, { protocolVersion: 5, clientId: 'watcher' })
  const drops = watchDrops(client)
  await client.subscribeAsync('/farm/#', { qos: 1 })
  const from = (device: string): Received[] => messages.filter((m) => m.topic.startsWith(`/farm/sensors/${device}/`))
  await until(() => from('tank').length > 0, 15_000, 'a reading from tank')

  const named = (event: string): Record<string, unknown>[] => p.events().filter((e) => e.event === event)
  /** Sends SIGHUP and returns the next `event` perch logs. */
  const hangup = async (event = 'perch.reload'): Promise<Record<string, unknown> | undefined> => {
    const before = named(event).length
    p.tool.kill('SIGHUP')
    await until(() => named(event).length > before || p.tool.exited(), 20_000, event)
    return named(event)[before]
  }
  let pings = 0
  /** The client publishes and receives its own message: the session still routes. */
  const roundtrip = async (): Promise<void> => {
    const payload = `ping-${++pings}`
    await client.publishAsync('/farm/ping', payload, { qos: 1 })
    await until(() => messages.some((m) => m.topic === '/farm/ping' && m.payload.toString() === payload), 10_000, payload)
  }

  await t.test('a new device starts, a live key applies and a restart-only key is named', async (t) => {
    writeDevice('pond', 'bus')
    writeConfig({ sys: { interval: 5 }, limits: { maxInflight: 16 } })
    t.same(summary(await hangup()), {
      applied: ['sys.interval'],
      needsRestart: ['limits.maxInflight'],
      devices: { started: ['pond'], stopped: [], restarted: [], unchanged: 1 },
      rules: 0,
    })
    await until(() => from('pond').length > 0, 15_000, 'a reading from pond')
    await roundtrip()
    t.same(drops, [], 'the client was not disconnected')
  })

  await t.test('a rule pushed while perch runs is loaded by SIGHUP', async (t) => {
    writeFileSync(join(work, 'echo.js'), "export function onMessage(msg) { publish('out/echo', 'echo ' + msg.payload) }\n")
    writeFileSync(join(work, 'echo.json'), JSON.stringify({ name: 'echo', triggers: { topics: ['in/echo'] } }))
    const pushed = await runPerch(t, work, ['rule', 'push', 'farm', 'echo', 'echo.js', '--data-dir', data])
    t.equal(pushed.code, 0, pushed.stderr)
    t.same(summary(await hangup()), {
      applied: [],
      needsRestart: ['limits.maxInflight'],
      devices: { started: [], stopped: [], restarted: [], unchanged: 2 },
      rules: 1,
    })
    await client.publishAsync('/farm/in/echo', 'hello', { qos: 1 })
    await until(() => messages.some((m) => m.topic === '/farm/out/echo' && m.payload.toString() === 'echo hello'), 15_000, 'the rule to answer')
    t.same(drops, [])
  })

  await t.test('a changed device restarts and a removed one stops; the unchanged config applies nothing', async (t) => {
    writeDevice('tank', 'single', 2000)
    rmSync(join(devices, 'pond.json'))
    t.same(summary(await hangup()), {
      applied: [],
      needsRestart: ['limits.maxInflight'],
      devices: { started: [], stopped: ['pond'], restarted: ['tank'], unchanged: 0 },
      rules: 1,
    })
    t.equal(named('device.started').filter((e) => e.device === 'tank').length, 2, 'tank started again')
    await roundtrip()
    t.same(drops, [])
  })

  await t.test('an invalid config file is reported and the broker keeps serving', async (t) => {
    writeFileSync(configFile, '{ "limits": ')
    const failed = await hangup('perch.reload-failed')
    t.match(failed, { error: /not valid JSON/ })
    await roundtrip()
    const other = await connectWithAck(t, url, { protocolVersion: 4, clientId: 'latecomer' })
    t.ok(other.client.connected, 'a new client connects')
    writeConfig({ sys: { interval: 5 }, listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 1 }] })
    // maxInflight is back to the value perch started with, so only the listeners wait for a restart.
    t.same(summary(await hangup()).needsRestart, ['listeners'], 'a later valid file is compared with what runs, not with the last file')
    await roundtrip()
    t.same(drops, [])
  })

  t.same(
    named('client.disconnected').filter((e) => e.clientId === 'watcher'),
    [],
    'perch never disconnected the client',
  )
  p.tool.kill('SIGTERM')
  t.match(await p.exited, { code: 0 })
})

t.test('systemd hears RELOADING=1 and then READY=1 around a reload', async (t) => {
  const work = tempDir(t, 'perch-reload-notify-')
  const socket = await fakeNotifySocket(t, join(work, 'notify'))
  if (typeof socket === 'string') {
    t.skip(socket, () => {})
    return
  }
  const args = [BIN, 'start', '--data-dir', join(work, 'data'), '--port', '0', '--allow-anonymous']
  const tool = spawnTool(t, process.execPath, args, { cwd: work, env: cleanEnv({ NOTIFY_SOCKET: socket.path }), timeoutMs: 90_000 })
  const texts = (): string[] => socket.messages().map((m) => m.text)
  const ready = (): number => texts().filter((m) => /^READY=1$/m.test(m)).length
  await until(() => ready() > 0 || tool.exited(), 20_000, `READY=1 (stderr: ${tool.stderr()})`)
  if (tool.stdout().includes('perch.sd-notify-failed')) {
    t.skip('systemd-notify refused to run here', () => {})
    return
  }
  tool.kill('SIGHUP')
  await until(() => ready() > 1 || tool.exited(), 20_000, 'READY=1 after the reload')
  tool.kill('SIGTERM')
  t.match(await tool.done, { code: 0 })
  const kinds = texts()
    .map((m) => /^(READY|RELOADING|STOPPING)=1$/m.exec(m)?.[1])
    .filter((k) => k !== undefined)
  t.same(kinds, ['READY', 'RELOADING', 'READY', 'STOPPING'])
  t.match(
    texts().find((m) => /^RELOADING=1$/m.test(m)),
    /^MONOTONIC_USEC=\d+$/m,
  )
})

/** The fields of a perch.reload event that say what changed. */
function summary(e: Record<string, unknown> | undefined): Record<string, unknown> {
  return { applied: e?.applied, needsRestart: e?.needsRestart, devices: e?.devices, rules: e?.rules }
}

/** Every way MQTT.js reports losing the connection, in order. */
function watchDrops(client: MqttClient): string[] {
  const drops: string[] = []
  for (const event of ['close', 'disconnect', 'offline', 'reconnect', 'end'] as const) client.on(event, () => drops.push(event))
  return drops
}
