import { join } from 'node:path'
import { ok, type Result } from '../core/result.js'
import type { Disposable } from '../core/scope.js'
import { type Database, type DbError, openSharedDatabase } from '../db/index.js'
import type { DeviceRecord, FeatureKind, FeatureSpec, Presence, Registration } from './model.js'

export const FEATURES_FILE = 'features.db'

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE devices (
     id TEXT PRIMARY KEY,
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     accept_protos TEXT NOT NULL,
     profile TEXT NOT NULL,
     rev TEXT NOT NULL,
     registered_at INTEGER NOT NULL,
     presence TEXT NOT NULL DEFAULT 'offline',
     presence_at INTEGER
   ) WITHOUT ROWID;
   CREATE INDEX devices_account ON devices (account);
   CREATE TABLE features (
     device TEXT NOT NULL,
     kind TEXT NOT NULL,
     name TEXT NOT NULL,
     types TEXT NOT NULL,
     seq INTEGER NOT NULL,
     PRIMARY KEY (device, kind, name)
   ) WITHOUT ROWID;
   CREATE TABLE functions (
     account TEXT NOT NULL,
     digest TEXT NOT NULL,
     code TEXT NOT NULL,
     added_at INTEGER NOT NULL,
     PRIMARY KEY (account, digest)
   ) WITHOUT ROWID;
   CREATE TABLE graphs (
     account TEXT NOT NULL,
     name TEXT NOT NULL,
     join_func TEXT,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (account, name)
   ) WITHOUT ROWID;
   CREATE TABLE links (
     account TEXT NOT NULL,
     graph TEXT NOT NULL,
     device TEXT NOT NULL,
     kind TEXT NOT NULL,
     feature TEXT NOT NULL,
     func TEXT,
     seq INTEGER NOT NULL,
     PRIMARY KEY (account, graph, device, kind, feature)
   ) WITHOUT ROWID;
   CREATE INDEX links_device ON links (device);
   CREATE TABLE signals (
     device TEXT NOT NULL,
     kind TEXT NOT NULL,
     feature TEXT NOT NULL,
     command TEXT NOT NULL,
     id TEXT NOT NULL,
     state TEXT NOT NULL,
     error TEXT,
     at INTEGER NOT NULL,
     PRIMARY KEY (device, kind, feature)
   ) WITHOUT ROWID;`,
]

/** One end of a link: a feature of a device, optionally through a function (its digest). */
export interface LinkRecord {
  readonly account: string
  readonly graph: string
  readonly device: string
  readonly kind: FeatureKind
  readonly feature: string
  readonly func: string | null
  /** Links keep the order they were added in: the join function sees its inputs in that order. */
  readonly seq: number
}

export interface GraphRecord {
  readonly account: string
  readonly name: string
  readonly join: string | null
  readonly createdAt: number
}

export type SignalCommand = 'CONNECT' | 'DISCONNECT'
/** `pending`: the device was offline; it is sent when the device comes online. */
export type SignalState = 'pending' | 'sent' | 'ok' | 'error'

export interface SignalRecord {
  readonly device: string
  readonly kind: FeatureKind
  readonly feature: string
  readonly command: SignalCommand
  readonly id: string
  readonly state: SignalState
  readonly error: string | null
  readonly at: number
}

export interface FunctionRecord {
  readonly account: string
  readonly digest: string
  readonly code: string
  readonly addedAt: number
}

interface RawDevice {
  id: string
  account: string
  name: string
  accept_protos: string
  profile: string
  rev: string
  registered_at: number
  presence: string
  presence_at: number | null
}

/**
 * Registered devices, their features, the accounts' functions and graphs, and the last control
 * signal of each feature, in `features.db`. Shared with the CLI, which reads it while perch runs.
 */
export class FeatureStore implements Disposable {
  readonly #db: Database
  readonly #s: ReturnType<typeof prepare>

  private constructor(db: Database) {
    this.#db = db
    this.#s = prepare(db)
  }

  static open(dataDir: string): Result<FeatureStore, DbError> {
    const db = openSharedDatabase(join(dataDir, FEATURES_FILE), MIGRATIONS)
    return db.ok ? ok(new FeatureStore(db.value)) : db
  }

  dispose(): void {
    this.#db.close()
  }

  /** Runs `fn` in one transaction: several changes land together or not at all. */
  transaction<T>(fn: () => T): T {
    return this.#db.write(fn)
  }

  device(id: string): DeviceRecord | undefined {
    const raw = this.#s.device.get(id)
    return raw === undefined ? undefined : this.#toDevice(raw)
  }

  devices(account?: string): DeviceRecord[] {
    return (account === undefined ? this.#s.devices.all() : this.#s.devicesOf.all(account)).map((r) => this.#toDevice(r))
  }

  countDevices(account: string): number {
    return this.#s.countDevices.get(account)?.n ?? 0
  }

  countFunctions(account: string): number {
    return this.#s.countFunctions.get(account)?.n ?? 0
  }

  /** Adds or replaces a device (and its features); the presence it had stays. */
  register(id: string, account: string, r: Registration, rev: string, now: number): void {
    this.#s.putDevice.run(id, account, r.name, JSON.stringify(r.acceptProtos), JSON.stringify(r.profile), rev, now)
    this.#s.dropFeatures.run(id)
    for (const [i, f] of r.features.entries()) this.#s.putFeature.run(id, f.kind, f.name, JSON.stringify(f.types), i)
  }

  /** Removes a device with its features, the links to them and its signals. */
  removeDevice(id: string): void {
    this.#s.dropFeatures.run(id)
    this.#s.dropDeviceLinks.run(id)
    this.#s.dropSignals.run(id)
    this.#s.dropDevice.run(id)
  }

  setPresence(id: string, presence: Presence, at: number): void {
    this.#s.setPresence.run(presence, at, id)
  }

  /** Every device offline (at start: no device is connected to a process that just started). */
  allOffline(at: number): void {
    this.#s.allOffline.run(at)
  }

  putFunction(account: string, digest: string, code: string, now: number): void {
    this.#s.putFunction.run(account, digest, code, now)
  }

  func(account: string, digest: string): FunctionRecord | undefined {
    const r = this.#s.func.get(account, digest)
    return r === undefined ? undefined : { account: r.account, digest: r.digest, code: r.code, addedAt: r.added_at }
  }

  functions(account: string): FunctionRecord[] {
    return this.#s.functions.all(account).map((r) => ({ account: r.account, digest: r.digest, code: r.code, addedAt: r.added_at }))
  }

  graph(account: string, name: string): GraphRecord | undefined {
    const r = this.#s.graph.get(account, name)
    return r === undefined ? undefined : toGraph(r)
  }

  graphs(account?: string): GraphRecord[] {
    return (account === undefined ? this.#s.graphs.all() : this.#s.graphsOf.all(account)).map(toGraph)
  }

  /** Creates the graph if it is new. */
  ensureGraph(account: string, name: string, now: number): void {
    this.#s.ensureGraph.run(account, name, now)
  }

  setJoin(account: string, name: string, digest: string | null): void {
    this.#s.setJoin.run(digest, account, name)
  }

  removeGraph(account: string, name: string): void {
    this.#s.dropGraphLinks.run(account, name)
    this.#s.dropGraph.run(account, name)
  }

  links(account?: string, graph?: string): LinkRecord[] {
    const rows = account === undefined ? this.#s.allLinks.all() : graph === undefined ? this.#s.linksOfAccount.all(account) : this.#s.links.all(account, graph)
    return rows.map(toLink)
  }

  linksOfDevice(id: string): LinkRecord[] {
    return this.#s.linksOfDevice.all(id).map(toLink)
  }

  /** Adds a link, or changes the function of an existing one (it keeps its place). */
  putLink(l: Omit<LinkRecord, 'seq'>): void {
    const seq = this.#s.nextSeq.get(l.account, l.graph)?.seq ?? 0
    this.#s.putLink.run(l.account, l.graph, l.device, l.kind, l.feature, l.func, seq)
  }

  removeLink(account: string, graph: string, device: string, kind: FeatureKind, feature: string): boolean {
    return this.#s.dropLink.run(account, graph, device, kind, feature) > 0
  }

  setSignal(s: SignalRecord): void {
    this.#s.putSignal.run(s.device, s.kind, s.feature, s.command, s.id, s.state, s.error, s.at)
  }

  signals(device: string): SignalRecord[] {
    return this.#s.signals.all(device).map((r) => ({ ...r, kind: r.kind as FeatureKind, command: r.command as SignalCommand, state: r.state as SignalState }))
  }

  #toDevice(r: RawDevice): DeviceRecord {
    const features: FeatureSpec[] = this.#s.features.all(r.id).map((f) => ({ kind: f.kind as FeatureKind, name: f.name, types: JSON.parse(f.types) as string[] }))
    return {
      id: r.id,
      account: r.account,
      name: r.name,
      features,
      acceptProtos: JSON.parse(r.accept_protos) as string[],
      profile: JSON.parse(r.profile) as Record<string, unknown>,
      rev: r.rev,
      registeredAt: r.registered_at,
      presence: r.presence === 'online' ? 'online' : 'offline',
      presenceAt: r.presence_at ?? undefined,
    }
  }
}

interface RawLink {
  account: string
  graph: string
  device: string
  kind: string
  feature: string
  func: string | null
  seq: number
}

function toLink(r: RawLink): LinkRecord {
  return { ...r, kind: r.kind as FeatureKind }
}

function toGraph(r: { account: string; name: string; join_func: string | null; created_at: number }): GraphRecord {
  return { account: r.account, name: r.name, join: r.join_func, createdAt: r.created_at }
}

function prepare(db: Database) {
  const LINK = 'SELECT account, graph, device, kind, feature, func, seq FROM links'
  return {
    device: db.prepare<RawDevice>('SELECT * FROM devices WHERE id = ?'),
    devices: db.prepare<RawDevice>('SELECT * FROM devices ORDER BY account, name, id'),
    devicesOf: db.prepare<RawDevice>('SELECT * FROM devices WHERE account = ? ORDER BY name, id'),
    countDevices: db.prepare<{ n: number }>('SELECT count(*) AS n FROM devices WHERE account = ?'),
    countFunctions: db.prepare<{ n: number }>('SELECT count(*) AS n FROM functions WHERE account = ?'),
    features: db.prepare<{ kind: string; name: string; types: string }>('SELECT kind, name, types FROM features WHERE device = ? ORDER BY kind, seq'),
    putDevice: db.prepare(
      `INSERT INTO devices (id, account, name, accept_protos, profile, rev, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET account = excluded.account, name = excluded.name, accept_protos = excluded.accept_protos,
         profile = excluded.profile, rev = excluded.rev, registered_at = excluded.registered_at`,
    ),
    putFeature: db.prepare('INSERT INTO features (device, kind, name, types, seq) VALUES (?, ?, ?, ?, ?)'),
    dropFeatures: db.prepare('DELETE FROM features WHERE device = ?'),
    dropDevice: db.prepare('DELETE FROM devices WHERE id = ?'),
    dropDeviceLinks: db.prepare('DELETE FROM links WHERE device = ?'),
    dropSignals: db.prepare('DELETE FROM signals WHERE device = ?'),
    setPresence: db.prepare('UPDATE devices SET presence = ?, presence_at = ? WHERE id = ?'),
    allOffline: db.prepare("UPDATE devices SET presence = 'offline', presence_at = ? WHERE presence <> 'offline'"),
    putFunction: db.prepare('INSERT INTO functions (account, digest, code, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING'),
    func: db.prepare<{ account: string; digest: string; code: string; added_at: number }>('SELECT * FROM functions WHERE account = ? AND digest = ?'),
    functions: db.prepare<{ account: string; digest: string; code: string; added_at: number }>('SELECT * FROM functions WHERE account = ? ORDER BY added_at, digest'),
    graph: db.prepare<{ account: string; name: string; join_func: string | null; created_at: number }>('SELECT * FROM graphs WHERE account = ? AND name = ?'),
    graphs: db.prepare<{ account: string; name: string; join_func: string | null; created_at: number }>('SELECT * FROM graphs ORDER BY account, name'),
    graphsOf: db.prepare<{ account: string; name: string; join_func: string | null; created_at: number }>('SELECT * FROM graphs WHERE account = ? ORDER BY name'),
    ensureGraph: db.prepare('INSERT INTO graphs (account, name, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
    setJoin: db.prepare('UPDATE graphs SET join_func = ? WHERE account = ? AND name = ?'),
    dropGraph: db.prepare('DELETE FROM graphs WHERE account = ? AND name = ?'),
    dropGraphLinks: db.prepare('DELETE FROM links WHERE account = ? AND graph = ?'),
    allLinks: db.prepare<RawLink>(`${LINK} ORDER BY account, graph, seq`),
    linksOfAccount: db.prepare<RawLink>(`${LINK} WHERE account = ? ORDER BY graph, seq`),
    links: db.prepare<RawLink>(`${LINK} WHERE account = ? AND graph = ? ORDER BY seq`),
    linksOfDevice: db.prepare<RawLink>(`${LINK} WHERE device = ? ORDER BY account, graph, seq`),
    nextSeq: db.prepare<{ seq: number }>('SELECT coalesce(max(seq), -1) + 1 AS seq FROM links WHERE account = ? AND graph = ?'),
    putLink: db.prepare(
      `INSERT INTO links (account, graph, device, kind, feature, func, seq) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account, graph, device, kind, feature) DO UPDATE SET func = excluded.func`,
    ),
    dropLink: db.prepare('DELETE FROM links WHERE account = ? AND graph = ? AND device = ? AND kind = ? AND feature = ?'),
    putSignal: db.prepare(
      `INSERT INTO signals (device, kind, feature, command, id, state, error, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (device, kind, feature) DO UPDATE SET command = excluded.command, id = excluded.id, state = excluded.state,
         error = excluded.error, at = excluded.at`,
    ),
    signals: db.prepare<{ device: string; kind: string; feature: string; command: string; id: string; state: string; error: string | null; at: number }>(
      'SELECT * FROM signals WHERE device = ? ORDER BY kind, feature',
    ),
  }
}
