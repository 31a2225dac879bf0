// `perch graph list|show`, run as users run it (node bin/perch.js), against a features.db filled
// through FeatureStore and kept open here the way a running perch keeps it open.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FEATURES_FILE, } from '../../src/features/store.js'
import type { ToolResult } from '../helpers/cli.js'
import { scratchFeatureStore } from '../helpers/feature-store.js'
import { runPerch } from '../helpers/perch-bin.js'

const { work, data, store } = scratchFeatureStore(t, 'perch-graph-cli-')

const CAT = '0c4f2e8a-1b3d-4c5e-9f60-718293a4b5c6'
const LAMP = '3b2a1908-7f6e-4d5c-8b4a-39281706f5e4'
const DOG = '9d8e7f60-5a4b-4c3d-8e2f-1a0b9c8d7e6f'
const LOUDER = 'ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12'
const JOIN = 'ffee0011ddcc2233ffee0011ddcc2233ffee0011ddcc2233ffee0011ddcc2233'
const T0 = Date.UTC(2024, 0, 2, 3, 4, 5)
const iso = (ms: number): string => new Date(ms).toISOString()


const meow = { name: 'BetaCat', features: [{ kind: 'idf' as const, name: 'meow', types: ['dB'] }], acceptProtos: ['mqtt'], profile: {} }
store.register(CAT, 'farm', meow, 'rev-1', T0)
store.register(LAMP, 'farm', { ...meow, name: 'Lamp', features: [{ kind: 'odf', name: 'light', types: ['lux'] }] }, 'rev-2', T0)
store.register(DOG, 'lab', { ...meow, name: 'Rex' }, 'rev-3', T0)
store.setPresence(CAT, 'online', T0 + 1000)
store.setPresence(LAMP, 'online', T0 + 1000)
store.putFunction('farm', LOUDER, 'function louder(x) {\n  return x * 2\n}', T0 + 2000)
store.putFunction('farm', JOIN, '  function pick(xs) {\n  return xs[0]\n}', T0 + 3000)
store.ensureGraph('farm', 'g1', T0 + 4000)
store.setJoin('farm', 'g1', JOIN)
// Added output first: the links keep the order they were added in.
store.putLink({ account: 'farm', graph: 'g1', device: LAMP, kind: 'odf', feature: 'light', func: null })
store.putLink({ account: 'farm', graph: 'g1', device: CAT, kind: 'idf', feature: 'meow', func: LOUDER })
store.ensureGraph('farm', 'empty', T0 + 5000)
store.ensureGraph('lab', 'g2', T0 + 6000)
store.putLink({ account: 'lab', graph: 'g2', device: DOG, kind: 'idf', feature: 'meow', func: null })
store.setSignal({ device: CAT, kind: 'idf', feature: 'meow', command: 'CONNECT', id: 's1', state: 'ok', error: null, at: T0 + 7000 })

interface Teardown {
  teardown(fn: () => unknown): void
}

function perch(t: Teardown, dir: string, ...args: string[]): Promise<ToolResult> {
  return runPerch(t, work, [...args, '--data-dir', dir])
}

interface ListJson {
  graphs: { account: string; name: string; idf_links: number; odf_links: number; join: string | null; devices: number; online: number; all_online: boolean | null }[]
}

t.test('graph list: links per kind, join function and whether every device is online', async (t) => {
  const r = await perch(t, data, 'graph', 'list')
  t.equal(r.code, 0, r.stderr)
  const lines = r.stdout.trimEnd().split('\n')
  t.equal(lines.length, 4, r.stdout)
  t.match(lines[0], /^ACCOUNT +GRAPH +IDF +ODF +JOIN +ALL ONLINE$/)
  t.match(lines[1], /^farm +empty +0 +0 +- +-$/)
  t.match(lines[2], /^farm +g1 +1 +1 +ffee0011ddcc +yes$/)
  t.match(lines[3], /^lab +g2 +1 +0 +- +no \(0\/1\)$/)

  const lab = await perch(t, data, 'graph', 'list', '--account', 'lab')
  t.equal(lab.code, 0, lab.stderr)
  t.notMatch(lab.stdout, /farm/)
  t.match(lab.stdout, /^lab +g2 /m)
  const nobody = await perch(t, data, 'graph', 'list', '--account', 'nobody')
  t.equal(nobody.stdout, 'no graphs of account nobody\n')
})

t.test('graph list --json', async (t) => {
  const r = await perch(t, data, 'graph', 'list', '--json')
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as ListJson
  t.same(
    out.graphs.map((g) => `${g.account}/${g.name}`),
    ['farm/empty', 'farm/g1', 'lab/g2'],
  )
  t.match(out.graphs[1], { idf_links: 1, odf_links: 1, join: JOIN, devices: 2, online: 2, all_online: true, created_at: iso(T0 + 4000) })
  t.match(out.graphs[0], { devices: 0, join: null, all_online: null })
  t.match(out.graphs[2], { devices: 1, online: 0, all_online: false })
  const farm = JSON.parse((await perch(t, data, 'graph', 'list', '--json', '--account', 'farm')).stdout) as ListJson
  t.same(
    farm.graphs.map((g) => g.name),
    ['empty', 'g1'],
  )
})

t.test('graph show: links in order with device and presence, the join function, the account functions', async (t) => {
  const r = await perch(t, data, 'graph', 'show', 'farm/g1')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^graph +farm\/g1\n/)
  t.match(r.stdout, new RegExp(`^created +${iso(T0 + 4000)}$`, 'm'))
  t.match(r.stdout, /^join +ffee0011ddcc +function pick\(xs\) \{$/m)
  const links = r.stdout.split('\n').filter((l) => l.startsWith(LAMP) || l.startsWith(CAT))
  t.equal(links.length, 2)
  t.match(links[0], new RegExp(`^${LAMP} +Lamp +odf +light +- +online$`))
  t.match(links[1], new RegExp(`^${CAT} +BetaCat +idf +meow +ab12cd34ef56 +online$`))
  t.match(r.stdout, /functions of farm:\nDIGEST +ADDED +FIRST LINE\n/)
  t.match(r.stdout, new RegExp(`^ab12cd34ef56 +${iso(T0 + 2000)} +function louder\\(x\\) \\{$`, 'm'))
  t.match(r.stdout, new RegExp(`^ffee0011ddcc +${iso(T0 + 3000)} +function pick\\(xs\\) \\{$`, 'm'))
  t.notMatch(r.stdout, LOUDER, 'text output shortens digests')

  const lab = await perch(t, data, 'graph', 'show', 'lab/g2')
  t.match(lab.stdout, /^join +-$/m)
  t.match(lab.stdout, new RegExp(`^${DOG} +Rex +idf +meow +- +offline$`, 'm'))
  t.match(lab.stdout, /^functions of lab: none$/m)
  const empty = await perch(t, data, 'graph', 'show', 'farm/empty')
  t.match(empty.stdout, /^links: none$/m)
})

t.test('graph show --json', async (t) => {
  const r = await perch(t, data, 'graph', 'show', 'farm/g1', '--json')
  t.equal(r.code, 0, r.stderr)
  t.same(JSON.parse(r.stdout), {
    account: 'farm',
    name: 'g1',
    join: JOIN,
    created_at: iso(T0 + 4000),
    links: [
      { device: LAMP, device_name: 'Lamp', kind: 'odf', feature: 'light', func: null, presence: 'online' },
      { device: CAT, device_name: 'BetaCat', kind: 'idf', feature: 'meow', func: LOUDER, presence: 'online' },
    ],
    functions: [
      { digest: LOUDER, code: 'function louder(x) {\n  return x * 2\n}', added_at: iso(T0 + 2000) },
      { digest: JOIN, code: '  function pick(xs) {\n  return xs[0]\n}', added_at: iso(T0 + 3000) },
    ],
  })
})

t.test('graph show and list: bad input', async (t) => {
  const unknown = await perch(t, data, 'graph', 'show', 'farm/nope')
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /no graph farm\/nope\n/)
  t.equal(unknown.stdout, '')
  const otherAccount = await perch(t, data, 'graph', 'show', 'lab/g1')
  t.equal(otherAccount.code, 1, 'a graph belongs to its account')
  for (const name of ['farm', '/g1', 'farm/', '']) {
    const r = await perch(t, data, 'graph', 'show', name)
    t.equal(r.code, 2, `"${name}"`)
    t.match(r.stderr, `"${name}" is not ACCOUNT/GRAPH`)
  }
  const none = await perch(t, data, 'graph', 'show')
  t.equal(none.code, 2)
  t.match(none.stderr, /expected one ACCOUNT\/GRAPH, got 0/)
  const two = await perch(t, data, 'graph', 'show', 'farm/g1', 'lab/g2')
  t.equal(two.code, 2)
  const account = await perch(t, data, 'graph', 'show', 'farm/g1', '--account', 'farm')
  t.equal(account.code, 2)
  t.match(account.stderr, /--account applies to list only/)
  const option = await perch(t, data, 'graph', 'list', '--frob')
  t.equal(option.code, 2)
  t.match(option.stderr, /Unknown option '--frob'/)
  const args = await perch(t, data, 'graph', 'list', 'farm')
  t.equal(args.code, 2)
  t.match(args.stderr, /takes no arguments/)
  const sub = await perch(t, data, 'graph', 'frob')
  t.equal(sub.code, 2)
  t.match(sub.stderr, /unknown command "frob"/)
  const bare = await runPerch(t, work, ['graph'])
  t.equal(bare.code, 2)
  t.match(bare.stderr, /Usage: perch graph list/)
})

t.test('a data directory without features.db: no graphs, and no file is created', async (t) => {
  const empty = join(work, 'empty')
  mkdirSync(empty)
  const list = await perch(t, empty, 'graph', 'list')
  t.equal(list.code, 0, list.stderr)
  t.equal(list.stdout, `no graphs: no devices are registered (no ${join(empty, FEATURES_FILE)})\n`)
  const json = JSON.parse((await perch(t, empty, 'graph', 'list', '--json')).stdout) as ListJson
  t.same(json.graphs, [])
  const show = await perch(t, empty, 'graph', 'show', 'farm/g1')
  t.equal(show.code, 1)
  t.match(show.stderr, /no graph farm\/g1 \(no devices are registered/)
  t.notOk(existsSync(join(empty, FEATURES_FILE)))
})

t.test('the data directory comes from --config; a bad config file exits 1', async (t) => {
  const config = join(work, 'perch.json')
  writeFileSync(config, JSON.stringify({ dataDir: data }))
  const r = await runPerch(t, work, ['graph', 'list', '--config', config])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^farm +g1 /m)
  const bad = join(work, 'bad.json')
  writeFileSync(bad, JSON.stringify({ dataDri: data }))
  const refused = await runPerch(t, work, ['graph', 'list', '--config', bad])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /unknown key "dataDri"/)
})

t.test('help: perch --help names the command; graph --help and help graph explain it', async (t) => {
  const main = await runPerch(t, work, ['--help'])
  t.match(main.stdout, /^ {2}graph list\|show /m)
  for (const args of [['graph', '--help'], ['graph', 'list', '-h'], ['help', 'graph']]) {
    const r = await runPerch(t, work, args)
    t.equal(r.code, 0, args.join(' '))
    t.match(r.stdout, /Usage: perch graph list \[--account A\] \[--json\]/)
    t.match(r.stdout, /perch graph show ACCOUNT\/GRAPH \[--json\]/)
  }
})

t.test('graph list reads the live file: a device going offline shows in the next run', async (t) => {
  store.setPresence(LAMP, 'offline', T0 + 8000)
  const r = await perch(t, data, 'graph', 'list', '--account', 'farm')
  t.match(r.stdout, /^farm +g1 +1 +1 +ffee0011ddcc +no \(1\/2\)$/m)
  const show = await perch(t, data, 'graph', 'show', 'farm/g1')
  t.match(show.stdout, new RegExp(`^${LAMP} +Lamp +odf +light +- +offline$`, 'm'))
})
