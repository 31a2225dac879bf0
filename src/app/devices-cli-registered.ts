// Registered devices (the IoTtalk model) for `perch devices list|show` and `perch graph`, read
// from <dataDir>/features.db. perch writes that file while it runs (WAL, shared), so what these
// commands print is the live state.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../core/errors.js'
import { err, ok, type Result } from '../core/result.js'
import { DbError } from '../db/index.js'
import { type DeviceRecord, describeDevice, deviceId, deviceTopics, type FeatureKind } from '../features/model.js'
import { FEATURES_FILE, FeatureStore, type LinkRecord, type SignalRecord } from '../features/store.js'
import { table } from './account-cli-common.js'
import type { Io } from './cli.js'
import { defaultConfig, loadConfigFile, type PerchConfig } from './config.js'

/** The options that choose the data directory, as parseArgs gives them. */
export interface DirValues {
  readonly config?: string | undefined
  readonly 'data-dir'?: string | undefined
}

/** The defaults, overlaid by `--config FILE` (a bad file throws its ConfigError), then `--data-dir DIR`. */
export function cliConfig(values: DirValues, env: NodeJS.ProcessEnv): PerchConfig {
  let config = defaultConfig(env)
  if (values.config !== undefined) {
    const loaded = loadConfigFile(values.config, config)
    if (loaded instanceof ConfigError) throw loaded
    config = loaded
  }
  if (values['data-dir'] !== undefined) config = { ...config, dataDir: values['data-dir'] }
  return config
}

export function featuresPath(dataDir: string): string {
  return join(dataDir, FEATURES_FILE)
}

/** The feature store of `dataDir`; undefined when it has none yet (no device ever registered there; none is created). */
export function openFeatures(dataDir: string): Result<FeatureStore | undefined, DbError> {
  if (!existsSync(featuresPath(dataDir))) return ok(undefined)
  const opened = FeatureStore.open(dataDir)
  return opened.ok ? ok(opened.value) : err(opened.error)
}

/** Runs `fn` on the store of `dataDir` (undefined when there is none) and closes it. */
export function withFeatures<T>(dataDir: string, fn: (store: FeatureStore | undefined) => T): Result<T, DbError> {
  const opened = openFeatures(dataDir)
  if (!opened.ok) return opened
  try {
    return ok(fn(opened.value))
  } catch (e) {
    // A read can fail too (a corrupt or unreadable file); anything else is a bug.
    if (e instanceof DbError) return err(e)
    throw e
  } finally {
    opened.value?.dispose()
  }
}

export const iso = (ms: number): string => new Date(ms).toISOString()

/** Function digests are shown by their first 12 characters in text output. */
export const shortDigest = (digest: string | null): string => (digest === null ? '-' : digest.slice(0, 12))

export function presenceText(d: DeviceRecord): string {
  return d.presenceAt === undefined ? `${d.presence} (never seen)` : `${d.presence} since ${iso(d.presenceAt)}`
}

const featureNames = (d: DeviceRecord, kind: FeatureKind): string => d.features.filter((f) => f.kind === kind).map((f) => f.name).join(',') || '-'

/** What `perch devices list` adds after the sensor devices. */
export interface RegisteredList {
  readonly path: string
  /** Undefined: there is no features.db (no device ever registered). */
  readonly devices: readonly DeviceRecord[] | undefined
  readonly account: string | undefined
}

export function readRegistered(dataDir: string, account: string | undefined): Result<RegisteredList, DbError> {
  const read = withFeatures(dataDir, (store) => store?.devices(account))
  return read.ok ? ok({ path: featuresPath(dataDir), devices: read.value, account }) : read
}

export function registeredJson(r: RegisteredList): Record<string, unknown>[] {
  return (r.devices ?? []).map(describeDevice)
}

export function registeredText(r: RegisteredList): string {
  const of = r.account === undefined ? '' : ` of account ${r.account}`
  if (r.devices === undefined) return `no registered devices (no ${r.path})\n`
  if (r.devices.length === 0) return `no registered devices${of}\n`
  const header = ['ID', 'ACCOUNT', 'NAME', 'PRESENCE', 'SINCE', 'IDF', 'ODF']
  const rows = r.devices.map((d) => [
    d.id,
    d.account,
    d.name,
    d.presence,
    d.presenceAt === undefined ? '-' : iso(d.presenceAt),
    featureNames(d, 'idf'),
    featureNames(d, 'odf'),
  ])
  return `registered devices${of}:\n${table(header, rows)}`
}

/** `perch devices show ID [--json]`: 0, 1 (unknown device, unreadable store) or 2 (not a device id). */
export function showDevice(dataDir: string, input: string, json: boolean, io: Io): number {
  const id = deviceId(input)
  if (id === undefined) {
    io.err(`perch devices show: "${input}" is not a device id (a UUID such as 0c4f2e8a-1b3d-4c5e-9f60-718293a4b5c6)\n`)
    return 2
  }
  const read = withFeatures(dataDir, (store) => {
    const device = store?.device(id)
    return device === undefined || store === undefined ? undefined : { device, links: store.linksOfDevice(id), signals: store.signals(id) }
  })
  if (!read.ok) {
    io.err(`perch devices show: ${read.error.message}\n`)
    return 1
  }
  if (read.value === undefined) {
    const path = featuresPath(dataDir)
    io.err(`perch devices show: no registered device ${id}${existsSync(path) ? '' : ` (no devices are registered: no ${path})`}\n`)
    return 1
  }
  const { device, links, signals } = read.value
  io.out(json ? `${JSON.stringify(deviceJson(device, links, signals), null, 2)}\n` : deviceText(device, links, signals))
  return 0
}

function deviceJson(d: DeviceRecord, links: readonly LinkRecord[], signals: readonly SignalRecord[]): Record<string, unknown> {
  const t = deviceTopics(d.account, d.id)
  const topics = (kind: FeatureKind): Record<string, string> =>
    Object.fromEntries(d.features.filter((f) => f.kind === kind).map((f) => [f.name, t.feature(kind, f.name)]))
  return {
    ...describeDevice(d),
    rev: d.rev,
    topics: { idf: topics('idf'), odf: topics('odf') },
    presence_topic: t.state,
    links: links.map((l) => ({ account: l.account, graph: l.graph, kind: l.kind, feature: l.feature, func: l.func })),
    signals: signals.map((s) => ({ kind: s.kind, feature: s.feature, command: s.command, id: s.id, state: s.state, error: s.error, at: iso(s.at) })),
  }
}

/** `key  value` lines with the values aligned. */
function fields(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v}\n`).join('')
}

function deviceText(d: DeviceRecord, links: readonly LinkRecord[], signals: readonly SignalRecord[]): string {
  const t = deviceTopics(d.account, d.id)
  const profile = JSON.stringify(d.profile)
  let out = fields([
    ['device', d.id],
    ['name', d.name],
    ['account', d.account],
    ['presence', presenceText(d)],
    ['rev', d.rev],
    ['registered', iso(d.registeredAt)],
    ['protocols', d.acceptProtos.join(', ')],
    ['profile', profile === '{}' ? '-' : profile],
    ['control up', t.up],
    ['control down', t.down],
    ['presence topic', t.state],
  ])
  const features = d.features.map((f) => [f.kind, f.name, f.types.join(',') || '-', t.feature(f.kind, f.name)])
  out += `\nfeatures:\n${table(['KIND', 'NAME', 'TYPES', 'TOPIC'], features)}`
  out +=
    links.length === 0
      ? '\nlinks: none\n'
      : `\nlinks:\n${table(
          ['GRAPH', 'KIND', 'FEATURE', 'FUNCTION'],
          links.map((l) => [`${l.account}/${l.graph}`, l.kind, l.feature, shortDigest(l.func)]),
        )}`
  out +=
    signals.length === 0
      ? '\nsignals: none\n'
      : `\nlast signals:\n${table(
          ['KIND', 'FEATURE', 'COMMAND', 'STATE', 'AT', 'ERROR'],
          signals.map((s) => [s.kind, s.feature, s.command, s.state, iso(s.at), s.error ?? '-']),
        )}`
  return out
}
