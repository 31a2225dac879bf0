import { readFileSync } from 'node:fs'
import { ConfigError, describeError } from '../core/errors.js'
import { parseJsonc } from '../core/jsonc.js'
import { err, ok, type Result } from '../core/result.js'
import { deferredSchema } from '../core/schema.js'
import { CONFIG_SCHEMA } from './config-schema.js'

export interface ListenerConfig {
  name?: string
  kind: 'tcp' | 'tls' | 'ws'
  host?: string
  port: number
  /** For tls: PEM file paths. */
  cert?: string
  key?: string
  ca?: string
  requireClientCert?: boolean
  /** For ws: the HTTP path of the WebSocket endpoint. */
  path?: string
}

export interface RuleConfig {
  action: 'allow' | 'deny'
  access: 'publish' | 'subscribe' | 'both'
  topic: string
  username?: string
}

export interface PerchConfig {
  dataDir: string
  log: { level: 'debug' | 'info' | 'warn' | 'error' }
  listeners: ListenerConfig[]
  auth: {
    /**
     * accounts: clients log in as accounts; open and static serve anonymous clients too;
     * mysql-users: accounts are the users of a MySQL server, checked by logging in there.
     */
    mode: 'accounts' | 'open' | 'static' | 'mysql-users'
    allowAnonymous: boolean
    defaultAction: 'allow' | 'deny'
    rules: RuleConfig[]
    jwt?: JwtConfig | undefined
    rateLimit: {
      /** Failed logins from one address, and for one account, within `window` seconds... */
      addressFailures: number
      accountFailures: number
      window: number
      /** ...after which further attempts are refused for this many seconds. */
      block: number
    }
    /** Seconds between checks for account changes made outside perch (the CLI, the sync). */
    reloadInterval: number
    mysqlUsers?: MysqlUsersConfig | undefined
  }
  limits: {
    maxConnections: number
    maxPacketSize: number
    connectTimeout: number
    maxKeepalive: number
    maxInflight: number
    receiveMaximum: number
    maxQueuedMessages: number
    maxQueuedBytes: number
    maxQueuedMessagesTotal: number
    maxQueuedBytesTotal: number
    maxTopicLength: number
    maxTopicLevels: number
    topicAliasMaximum: number
    maxWriteBuffer: number
    slowConsumerPolicy: 'drop' | 'disconnect'
    maxSessionExpiry: number
  }
  sys: { interval: number }
  persistence: PersistenceConfig
  rules: RulesConfig
  /** The central database this gateway takes its accounts, grants and rules from; none when absent. */
  sync?: SyncConfig | undefined
  devices: DevicesConfig
  /** Registered devices and their graphs (the IoTtalk model). */
  graphs: { enabled: boolean }
  /** The local HTTP endpoint with /metrics and /healthz; off when absent. */
  http?: HttpConfig | undefined
}

/** Prometheus /metrics, /healthz and the device registration API (/devices) over plain HTTP. */
export interface HttpConfig {
  /** 0 picks a free port. */
  port: number
  /** 127.0.0.1 unless set here; /metrics has no authentication, /devices takes passwords in the clear. */
  host: string
}

export const HTTP_DEFAULTS = { host: '127.0.0.1' }

/** Sensor bridges: device mapping files (one device per JSON file) and the board they run on. */
export interface DevicesConfig {
  enabled: boolean
  /** The folder of device files; <dataDir>/devices when absent. */
  dir?: string | undefined
  /** A board profile name (device/boards); detected from /proc/device-tree/model when absent. */
  board?: string | undefined
}

/** Where a MySQL server is: an inline URL or a file holding one (it carries a password). */
export interface MysqlLocation {
  /** mysql://user:password@host:port/database (?ssl=1 for TLS, &ca=FILE for a private CA) */
  url?: string
  urlFile?: string
}

export interface SyncConfig extends MysqlLocation {
  /** This gateway's name in the central database (for logs and status). */
  gateway?: string
  /** Seconds between polls of the central change log. */
  interval: number
  /** Seconds any one query may take; a connection that times out is dropped. */
  queryTimeout: number
  connectTimeout: number
  /** Retries back off with jitter up to this many seconds. */
  maxBackoff: number
}

export const SYNC_DEFAULTS = { interval: 15, queryTimeout: 5, connectTimeout: 5, maxBackoff: 300 }

/** auth.mode mysql-users: a login is a login attempt on this server (the URL's user is not used). */
export interface MysqlUsersConfig extends MysqlLocation {
  /** Seconds a successful online login stays valid for offline logins. */
  trustPeriod: number
  connectTimeout: number
}

export const MYSQL_USERS_DEFAULTS = { trustPeriod: 86_400, connectTimeout: 5 }

export interface RulesConfig {
  enabled: boolean
  /** Where `/A/runfile/NAME` finds NAME.js; the bundled rules/ folder when absent. */
  dir?: string | undefined
  /** Consecutive failed invocations before a rule is suspended... */
  failureLimit: number
  /** ...for this many seconds. */
  coolOff: number
  /** Seconds between checks for rules pushed with the CLI while perch runs. */
  reloadInterval: number
  /**
   * Seconds the sandbox worker may go without finishing a step before it is replaced: the
   * backstop for native calls that ignore a rule's time limit. Raise it on very slow boards.
   */
  watchdog: number
}

export interface JwtConfig {
  /** HS256 shared secret, inline or in a file. */
  secret?: string
  secretFile?: string
  /** PEM file with an RS256 or ES256 public key. */
  publicKeyFile?: string
  /** The claim naming the account (default sub). */
  accountClaim: string
  issuer?: string
  audience?: string
  /** Seconds of leeway for exp and nbf. */
  clockTolerance: number
}

const JWT_DEFAULTS = { accountClaim: 'sub', clockTolerance: 0 }

export interface PersistenceConfig {
  /** sqlite: sessions, queues and retained messages survive a restart; memory: they do not. */
  mode: 'sqlite' | 'memory'
  /** The database file, relative to dataDir unless absolute. */
  file: string
  /** full: every commit survives power loss; normal: faster, the last commits may be lost on power loss. */
  synchronous: 'full' | 'normal'
  /** Group commit: a transaction ends this long after its first write... */
  commitIntervalMs: number
  /** ...or after this many writes, whichever comes first; acknowledgements wait for it. */
  commitMaxWrites: number
  /** A corrupt database: refuse to start (fail), or rename it and start empty (move-aside). */
  onCorrupt: 'fail' | 'move-aside'
}

/** Every default perch runs with, in one place; `perch config defaults` prints it. */
export function defaultConfig(env: NodeJS.ProcessEnv = {}): PerchConfig {
  return {
    dataDir: env.STATE_DIRECTORY ?? env.PERCH_DATA_DIR ?? './perch-data',
    log: { level: 'info' },
    listeners: [{ name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 1883 }],
    auth: {
      mode: 'accounts',
      allowAnonymous: false,
      defaultAction: 'allow',
      rules: [],
      rateLimit: { addressFailures: 10, accountFailures: 20, window: 60, block: 60 },
      reloadInterval: 1,
    },
    limits: {
      maxConnections: 10_000,
      maxPacketSize: 1_048_576,
      connectTimeout: 10,
      maxKeepalive: 65_535,
      maxInflight: 32,
      receiveMaximum: 100,
      maxQueuedMessages: 1000,
      maxQueuedBytes: 16 * 1_048_576,
      maxQueuedMessagesTotal: 100_000,
      maxQueuedBytesTotal: 64 * 1_048_576,
      maxTopicLength: 1024,
      maxTopicLevels: 32,
      topicAliasMaximum: 16,
      maxWriteBuffer: 4 * 1_048_576,
      slowConsumerPolicy: 'drop',
      maxSessionExpiry: 7 * 24 * 3600,
    },
    sys: { interval: 10 },
    persistence: { mode: 'sqlite', file: 'perch.db', synchronous: 'full', commitIntervalMs: 5, commitMaxWrites: 1000, onCorrupt: 'fail' },
    rules: { enabled: true, failureLimit: 5, coolOff: 60, reloadInterval: 1, watchdog: 1 },
    devices: { enabled: true },
    graphs: { enabled: true },
  }
}

// Compiled on the first config read: commands given no config file (help, status) skip it.
const validate = deferredSchema<Partial<PerchConfig>>(CONFIG_SCHEMA)

/** Validates a parsed config file and lays it over the defaults; errors name the key. */
export function resolveConfig(input: unknown, base: PerchConfig, source: string): Result<PerchConfig, ConfigError> {
  const checked = validate(input)
  if (!checked.ok) return err(new ConfigError(`${source}: ${checked.error.join('; ')}`))
  const c = checked.value
  const config: PerchConfig = {
    dataDir: c.dataDir ?? base.dataDir,
    log: { ...base.log, ...c.log },
    listeners: c.listeners ?? base.listeners,
    auth: {
      ...base.auth,
      ...c.auth,
      rateLimit: { ...base.auth.rateLimit, ...c.auth?.rateLimit },
      jwt: c.auth?.jwt === undefined ? base.auth.jwt : { ...JWT_DEFAULTS, ...base.auth.jwt, ...c.auth.jwt },
      mysqlUsers: c.auth?.mysqlUsers === undefined ? base.auth.mysqlUsers : { ...MYSQL_USERS_DEFAULTS, ...base.auth.mysqlUsers, ...c.auth.mysqlUsers },
    },
    limits: { ...base.limits, ...c.limits },
    sys: { ...base.sys, ...c.sys },
    persistence: { ...base.persistence, ...c.persistence },
    rules: { ...base.rules, ...c.rules },
    sync: c.sync === undefined ? base.sync : { ...SYNC_DEFAULTS, ...base.sync, ...c.sync },
    devices: { ...base.devices, ...c.devices },
    graphs: { ...base.graphs, ...c.graphs },
    http: c.http === undefined ? base.http : { ...HTTP_DEFAULTS, ...base.http, ...c.http },
  }
  const problem = crossCheck(config)
  return problem === null ? ok(config) : err(new ConfigError(`${source}: ${problem}`))
}

function crossCheck(c: PerchConfig): string | null {
  const names = new Set<string>()
  for (const [i, l] of c.listeners.entries()) {
    const name = l.name ?? `${l.kind}-${l.port}`
    if (names.has(name)) return `listeners.${i}.name: "${name}" is used twice`
    names.add(name)
    if (l.kind === 'tls' && (l.cert === undefined || l.key === undefined)) return `listeners.${i}: a tls listener needs "cert" and "key"`
    if (l.kind !== 'tls' && (l.cert !== undefined || l.key !== undefined || l.ca !== undefined)) {
      return `listeners.${i}: "cert", "key" and "ca" apply only to tls listeners`
    }
    if (l.requireClientCert === true && l.ca === undefined) return `listeners.${i}: requireClientCert needs "ca"`
  }
  const jwt = c.auth.jwt
  if (jwt !== undefined) {
    if (jwt.secret !== undefined && jwt.secretFile !== undefined) return 'auth.jwt: give "secret" or "secretFile", not both'
    if (jwt.secret === undefined && jwt.secretFile === undefined && jwt.publicKeyFile === undefined) {
      return 'auth.jwt: needs "secret", "secretFile" or "publicKeyFile"'
    }
  }
  for (const [key, where] of [
    ['sync', c.sync],
    ['auth.mysqlUsers', c.auth.mysqlUsers],
  ] as const) {
    if (where !== undefined && (where.url === undefined) === (where.urlFile === undefined)) return `${key}: give "url" or "urlFile", one of them`
  }
  if (c.auth.mode === 'mysql-users' && c.auth.mysqlUsers === undefined) return 'auth.mode "mysql-users" needs auth.mysqlUsers with the server\'s "url"'
  if (c.auth.mode === 'mysql-users' && c.sync !== undefined) return 'auth.mode "mysql-users" takes accounts from MySQL users; it cannot be combined with "sync"'
  if (c.auth.mode === 'open' && !c.auth.allowAnonymous) {
    const exposed = c.listeners.find((l) => !isLoopback(l.host ?? '127.0.0.1'))
    if (exposed !== undefined) {
      return `listener on ${exposed.host ?? ''}:${exposed.port} would serve anonymous clients beyond this machine in open mode: bind it to 127.0.0.1 or allow anonymous clients (--allow-anonymous or auth.allowAnonymous)`
    }
  }
  return null
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}

/**
 * Reads, parses and validates a JSON config file over `base`; the error names the file and key.
 * Comments and trailing commas are allowed, so that a file can explain itself (perch config init).
 */
export function loadConfigFile(path: string, base: PerchConfig): PerchConfig | ConfigError {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    return new ConfigError(`config file ${path}: ${describeError(e)}`)
  }
  const parsed = parseJsonc(text)
  if (!parsed.ok) return new ConfigError(`config file ${path}: not valid JSON: ${parsed.error}`)
  const resolved = resolveConfig(parsed.value, base, `config file ${path}`)
  return resolved.ok ? resolved.value : resolved.error
}
