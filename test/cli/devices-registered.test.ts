// `perch devices list|show` for registered devices (the IoTtalk model), run as users run it
// (node bin/perch.js), against a features.db filled through FeatureStore and kept open here the
// way a running perch keeps it open.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FEATURES_FILE, } from '../../src/features/store.js'
import type { ToolResult } from '../helpers/cli.js'
import { scratchFeatureStore } from '../helpers/feature-store.js'
import { runPerch } from '../helpers/perch-bin.js'

const { work, data, store } = scratchFeatureStore(t, 'perch-devices-registered-')

const CAT = '0c4f2e8a-1b3d-4c5e-9f60-718293a4b5c6'
const DOG = '9d8e7f60-5a4b-4c3d-8e2f-1a0b9c8d7e6f'
const MISSING = '11111111-2222-4333-8444-555555555555'
const DIGEST = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12'
const T0 = Date.UTC(2024, 0, 2, 3, 4, 5)
const iso = (ms: number): string => new Date(ms).toISOString()


store.register(
  CAT,
  'farm',
  {
    name: 'BetaCat',
    features: [
      { kind: 'idf', name: 'meow', types: ['dB'] },
      { kind: 'odf', name: 'bell', types: ['on', 'volume'] },
    ],
    acceptProtos: ['mqtt'],
    profile: { model: 'cat-2' },
  },
  'rev-cat-1',
  T0,
)
store.register(DOG, 'lab', { name: 'Rex', features: [{ kind: 'idf', name: 'meow', types: ['dB'] }], acceptProtos: ['mqtt'], profile: {} }, 'rev-dog-1', T0 + 1000)
store.setPresence(CAT, 'online', T0 + 2000)
store.putFunction('farm', DIGEST, 'function louder(x) {\n  return x * 2\n}', T0 + 3000)
store.ensureGraph('farm', 'g1', T0 + 4000)
store.putLink({ account: 'farm', graph: 'g1', device: CAT, kind: 'idf', feature: 'meow', func: DIGEST })
store.putLink({ account: 'farm', graph: 'g1', device: CAT, kind: 'odf', feature: 'bell', func: null })
store.setSignal({ device: CAT, kind: 'idf', feature: 'meow', command: 'CONNECT', id: 's1', state: 'ok', error: null, at: T0 + 5000 })
store.setSignal({ device: CAT, kind: 'odf', feature: 'bell', command: 'CONNECT', id: 's2', state: 'error', error: 'bell is broken', at: T0 + 6000 })
store.setSignal({ device: DOG, kind: 'idf', feature: 'meow', command: 'DISCONNECT', id: 's3', state: 'pending', error: null, at: T0 + 7000 })

interface Teardown {
  teardown(fn: () => unknown): void
}

function perch(t: Teardown, dir: string, ...args: string[]): Promise<ToolResult> {
  return runPerch(t, work, [...args, '--data-dir', dir])
}

interface ListJson {
  dir: string
  board: string
  running: boolean
  devices: unknown[]
  problems: unknown[]
  registered: { id: string; account: string; name: string; idf_list: unknown[]; odf_list: unknown[]; presence: string; presence_at: string | null }[]
}

t.test('devices list: the registered devices follow the sensor devices', async (t) => {
  const r = await perch(t, data, 'devices', 'list')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^no devices in .*devices\n\nregistered devices:\n/)
  t.match(r.stdout, /ID\s+ACCOUNT\s+NAME\s+PRESENCE\s+SINCE\s+IDF\s+ODF\n/)
  t.match(r.stdout, new RegExp(`${CAT}\\s+farm\\s+BetaCat\\s+online\\s+${iso(T0 + 2000)}\\s+meow\\s+bell\\n`))
  t.match(r.stdout, new RegExp(`${DOG}\\s+lab\\s+Rex\\s+offline\\s+-\\s+meow\\s+-\\n`))

  const farm = await perch(t, data, 'devices', 'list', '--account', 'farm')
  t.equal(farm.code, 0, farm.stderr)
  t.match(farm.stdout, /registered devices of account farm:/)
  t.match(farm.stdout, CAT)
  t.notMatch(farm.stdout, DOG)
  const nobody = await perch(t, data, 'devices', 'list', '--account', 'nobody')
  t.match(nobody.stdout, /no registered devices of account nobody\n/)
})

t.test('devices list --json: the existing keys stay, the registered devices come under "registered"', async (t) => {
  const r = await perch(t, data, 'devices', 'list', '--json')
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as ListJson
  t.same(Object.keys(out), ['dir', 'board', 'running', 'devices', 'problems', 'registered'])
  t.equal(out.dir, join(data, 'devices'))
  t.same(out.devices, [])
  t.equal(out.running, false)
  t.same(
    out.registered.map((d) => d.id),
    [CAT, DOG],
  )
  t.match(out.registered[0], {
    account: 'farm',
    name: 'BetaCat',
    idf_list: [['meow', ['dB']]],
    odf_list: [['bell', ['on', 'volume']]],
    presence: 'online',
    presence_at: iso(T0 + 2000),
  })
  t.match(out.registered[1], { account: 'lab', name: 'Rex', presence: 'offline', presence_at: null })
  const lab = JSON.parse((await perch(t, data, 'devices', 'list', '--json', '--account', 'lab')).stdout) as ListJson
  t.same(
    lab.registered.map((d) => d.id),
    [DOG],
  )
})

t.test('devices show: one device with its topics, links and last signals', async (t) => {
  const r = await perch(t, data, 'devices', 'show', CAT)
  t.equal(r.code, 0, r.stderr)
  const base = `/farm/devices/${CAT}`
  t.match(r.stdout, new RegExp(`^device +${CAT}\\n`))
  t.match(r.stdout, /^name +BetaCat$/m)
  t.match(r.stdout, /^account +farm$/m)
  t.match(r.stdout, new RegExp(`^presence +online since ${iso(T0 + 2000)}$`, 'm'))
  t.match(r.stdout, /^rev +rev-cat-1$/m)
  t.match(r.stdout, new RegExp(`^registered +${iso(T0)}$`, 'm'))
  t.match(r.stdout, /^profile +\{"model":"cat-2"\}$/m)
  t.match(r.stdout, new RegExp(`^control up +${base}/ctrl/up$`, 'm'))
  t.match(r.stdout, new RegExp(`^control down +${base}/ctrl/down$`, 'm'))
  t.match(r.stdout, new RegExp(`^presence topic +${base}/state$`, 'm'))
  t.match(r.stdout, new RegExp(`^idf +meow +dB +${base}/idf/meow$`, 'm'))
  t.match(r.stdout, new RegExp(`^odf +bell +on,volume +${base}/odf/bell$`, 'm'))
  t.match(r.stdout, /^farm\/g1 +idf +meow +ab12cd34ef56$/m, 'the function digest is shortened to 12 characters')
  t.match(r.stdout, /^farm\/g1 +odf +bell +-$/m)
  t.notMatch(r.stdout, DIGEST)
  t.match(r.stdout, new RegExp(`^idf +meow +CONNECT +ok +${iso(T0 + 5000)} +-$`, 'm'))
  t.match(r.stdout, new RegExp(`^odf +bell +CONNECT +error +${iso(T0 + 6000)} +bell is broken$`, 'm'))

  const dog = await perch(t, data, 'devices', 'show', DOG.toUpperCase())
  t.equal(dog.code, 0, 'an upper-case id names the same device')
  t.match(dog.stdout, /^presence +offline \(never seen\)$/m)
  t.match(dog.stdout, /^links: none$/m)
  t.match(dog.stdout, /^idf +meow +DISCONNECT +pending /m)
})

t.test('devices show --json', async (t) => {
  const r = await perch(t, data, 'devices', 'show', CAT, '--json')
  t.equal(r.code, 0, r.stderr)
  const base = `/farm/devices/${CAT}`
  t.match(JSON.parse(r.stdout), {
    id: CAT,
    account: 'farm',
    name: 'BetaCat',
    profile: { model: 'cat-2' },
    rev: 'rev-cat-1',
    presence: 'online',
    registered_at: iso(T0),
    ctrl_chans: [`${base}/ctrl/up`, `${base}/ctrl/down`],
    topics: { idf: { meow: `${base}/idf/meow` }, odf: { bell: `${base}/odf/bell` } },
    presence_topic: `${base}/state`,
    links: [
      { account: 'farm', graph: 'g1', kind: 'idf', feature: 'meow', func: DIGEST },
      { account: 'farm', graph: 'g1', kind: 'odf', feature: 'bell', func: null },
    ],
    signals: [
      { kind: 'idf', feature: 'meow', command: 'CONNECT', id: 's1', state: 'ok', error: null, at: iso(T0 + 5000) },
      { kind: 'odf', feature: 'bell', command: 'CONNECT', id: 's2', state: 'error', error: 'bell is broken', at: iso(T0 + 6000) },
    ],
  })
})

t.test('devices show: unknown id exits 1, a malformed id or command line exits 2', async (t) => {
  const unknown = await perch(t, data, 'devices', 'show', MISSING)
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, `no registered device ${MISSING}`)
  t.equal(unknown.stdout, '')
  const malformed = await perch(t, data, 'devices', 'show', 'not-a-uuid')
  t.equal(malformed.code, 2)
  t.match(malformed.stderr, /"not-a-uuid" is not a device id/)
  const none = await perch(t, data, 'devices', 'show')
  t.equal(none.code, 2)
  t.match(none.stderr, /expected one device id, got 0/)
  const two = await perch(t, data, 'devices', 'show', CAT, DOG)
  t.equal(two.code, 2)
  const account = await perch(t, data, 'devices', 'show', CAT, '--account', 'farm')
  t.equal(account.code, 2)
  t.match(account.stderr, /--account applies to list only/)
  const option = await perch(t, data, 'devices', 'show', CAT, '--frob')
  t.equal(option.code, 2)
  t.match(option.stderr, /Unknown option '--frob'/)
})

t.test('a data directory without features.db: no registered devices, and no file is created', async (t) => {
  const empty = join(work, 'empty')
  mkdirSync(empty)
  const list = await perch(t, empty, 'devices', 'list')
  t.equal(list.code, 0, list.stderr)
  t.match(list.stdout, `no registered devices (no ${join(empty, FEATURES_FILE)})`)
  const json = JSON.parse((await perch(t, empty, 'devices', 'list', '--json')).stdout) as ListJson
  t.same(json.registered, [])
  const show = await perch(t, empty, 'devices', 'show', CAT)
  t.equal(show.code, 1)
  t.match(show.stderr, /no registered device .*no devices are registered/)
  t.notOk(existsSync(join(empty, FEATURES_FILE)))
})

t.test('the data directory comes from --config as well', async (t) => {
  const config = join(work, 'perch.json')
  writeFileSync(config, JSON.stringify({ dataDir: data }))
  const r = await runPerch(t, work, ['devices', 'show', CAT, '--config', config])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^name +BetaCat$/m)
})

t.test('help names show and --account', async (t) => {
  for (const args of [['devices', '--help'], ['help', 'devices']]) {
    const r = await runPerch(t, work, args)
    t.equal(r.code, 0)
    t.match(r.stdout, /perch devices show ID \[--json\]/)
    t.match(r.stdout, /--account A/)
  }
  const main = await runPerch(t, work, ['--help'])
  t.match(main.stdout, /devices check\|list\|show/)
})

t.test('devices list reads the live file: a presence change shows in the next run', async (t) => {
  const before = await perch(t, data, 'devices', 'list', '--account', 'lab')
  t.match(before.stdout, new RegExp(`${DOG}\\s+lab\\s+Rex\\s+offline`))
  store.setPresence(DOG, 'online', T0 + 9000)
  const r = await perch(t, data, 'devices', 'list', '--account', 'lab')
  t.match(r.stdout, new RegExp(`${DOG}\\s+lab\\s+Rex\\s+online\\s+${iso(T0 + 9000)}`))
})
