import { parseArgs } from 'node:util'
import { systemClock } from '../core/clock.js'
import { ConfigError, describeError } from '../core/errors.js'
import { createLogger } from '../core/logger.js'
import type { App } from './app.js'
import { CoalescingRunner } from './coalescing-runner.js'
import { defaultConfig, loadConfigFile, type PerchConfig, resolveConfig } from './config.js'
import { readVersion } from './version.js'

export interface Io {
  out(text: string): void
  err(text: string): void
  env: NodeJS.ProcessEnv
}

const START_OPTIONS = `  --config FILE        JSON config file (see: perch config defaults)
  --data-dir DIR       state directory (created if missing)
  --host ADDR          address of the first TCP listener (default 127.0.0.1)
  --port N             port of the first TCP listener (default 1883; 0 picks a free one)
  --allow-anonymous    open mode: clients connect without accounts or credentials
                       (also needed to serve open mode beyond this machine)
  --log-level LEVEL    debug, info, warn or error (default info)
  --http-port N        serve Prometheus /metrics, /healthz and the /devices
                       registration API on this port
                       (127.0.0.1 unless http.host is set in the config file)
`

const MAIN_HELP = `perch: an edge-gateway MQTT broker

Usage: perch <command> [options]

Commands:
  start                 run the broker (see perch start --help)
  account ...           add, list, passwd, disable, enable, rm accounts
  grant ...             add, rm, list grants of one account's topics to another
  rule ...              push, list, rm, run, logs account rules
  central ...           administer the central MySQL database gateways sync from
  sync status           how this gateway's sync with the central database stands
  devices check|list|show
                        validate device files; list sensor and registered devices
                        with their live state; show one registered device
  graph list|show       the graphs linking registered devices' features
  selftest              check this installation: SQLite, native bindings, broker, a rule
  status                whether perch runs here, its clients, messages, sync and devices
  config defaults       print the embedded default configuration as JSON
  config check FILE     validate a configuration file and print the effective result
  config init [FILE]    write the defaults as a commented configuration file
                        (stdout without FILE; --force replaces an existing FILE)
  help [command]        show help
  version               print the version

Options:
  -h, --help            show help
  -v, --version         print the version

Start options:
${START_OPTIONS}`

const START_HELP = `Usage: perch start [options]

Runs the broker with its embedded defaults, overlaid by a config file and flags.
With no options it listens on 127.0.0.1:1883 in accounts mode and keeps its
state under ./perch-data (or $STATE_DIRECTORY). On the first start, with no
accounts yet, it creates the admin account "admin" with a random password and
writes it to admin-password (mode 0600) in the data directory.

Options:
${START_OPTIONS}  -h, --help           show this help

Signals: SIGTERM or SIGINT stop accepting, send MQTT 5 clients DISCONNECT 0x8B
(server shutting down), flush and exit 0. SIGHUP re-reads the config file, the
rules and the device files without dropping clients; an invalid config file is
logged and the running one kept, and settings that only apply at the next start
are listed in the perch.reload event. Logs are JSON lines on stdout.
`

/** Parses argv and runs one command; returns the process exit code. */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv
  const version = readVersion()
  switch (command) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      if (rest[0] === 'devices' || rest[0] === 'graph') return runCli([rest[0], '--help'], io)
      io.out(rest[0] === 'start' ? START_HELP : MAIN_HELP)
      return 0
    case '-v':
    case '--version':
    case 'version':
      io.out(`perch ${version}\n`)
      return 0
    case 'config':
      return (await import('./config-cli.js')).configCommand(rest, io)
    case 'start':
      return startCommand(rest, io, version)
    case 'account':
      return (await import('./account-cli.js')).accountCommand(rest, io)
    case 'grant':
      return (await import('./account-cli.js')).grantCommand(rest, io)
    case 'rule':
      return (await import('./rule-cli.js')).ruleCommand(rest, io)
    case 'selftest':
      return (await import('./selftest.js')).selftestCommand(rest, io, version)
    case 'status':
      return (await import('./status-cli.js')).statusCommand(rest, io)
    case 'devices':
      return (await import('./devices-cli.js')).devicesCommand(rest, io)
    case 'graph':
      return (await import('./graph-cli.js')).graphCommand(rest, io)
    case 'sync':
      return (await import('./sync-cli.js')).syncCommand(rest, io)
    case 'central':
      // Loaded on demand, so that the other commands start without mysql2.
      return (await import('./central-cli.js')).centralCommand(rest, io)
    default:
      io.err(`perch: unknown command "${command}"\n\n${MAIN_HELP}`)
      return 2
  }
}

async function startCommand(args: readonly string[], io: Io, version: string): Promise<number> {
  let values: ReturnType<typeof parseStart>
  try {
    values = parseStart(args)
  } catch (e) {
    io.err(`perch start: ${describeError(e)}\n\n${START_HELP}`)
    return 2
  }
  if (values.help === true) {
    io.out(START_HELP)
    return 0
  }
  const config = buildConfig(values, io.env)
  if (config instanceof ConfigError) {
    io.err(`perch: ${config.message}\n`)
    return 1
  }
  const clock = systemClock()
  const logger = createLogger(config.log.level, (line) => io.out(line), () => clock.now())
  // Signals are caught from the first moment: one that arrives while perch starts stops it
  // as soon as it is up, still cleanly.
  let signalled: () => void = () => {}
  const stopRequested = new Promise<void>((resolve) => {
    signalled = resolve
  })
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info('perch.signal', { signal })
    signalled()
  }
  // A SIGHUP during start-up reloads once perch is up: the file may have changed after it was read.
  let started: (app: App | undefined) => void = () => {}
  const running = new Promise<App | undefined>((resolve) => {
    started = resolve
  })
  const reloads = new CoalescingRunner(
    async () => {
      const app = await running
      // Read when the reload runs, not when the signal came: a queued reload sees the latest file.
      await app?.reload(buildConfig(values, io.env))
    },
    (e) => logger.error('perch.reload-failed', { error: describeError(e) }),
  )
  const onHangup = (signal: NodeJS.Signals): void => {
    logger.info('perch.signal', { signal })
    void reloads.request()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  process.on('SIGHUP', onHangup)
  try {
    let app: App
    try {
      // Loaded here so that the other commands start without the broker's modules.
      const { App } = await import('./app.js')
      app = await App.start(config, { clock, logger, version, setLogLevel: (level) => logger.setLevel(level) })
    } catch (e) {
      started(undefined)
      logger.error('perch.start-failed', { error: describeError(e) })
      io.err(`perch: ${describeError(e)}\n`)
      return 1
    }
    started(app)
    await stopRequested
    try {
      await app.stop()
    } catch (e) {
      logger.error('perch.stop-failed', { error: describeError(e) })
      return 1
    }
  } finally {
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
    process.off('SIGHUP', onHangup)
  }
  return 0
}

function parseStart(args: readonly string[]) {
  return parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'allow-anonymous': { type: 'boolean' },
      'log-level': { type: 'string' },
      'http-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values
}

function buildConfig(values: ReturnType<typeof parseStart>, env: NodeJS.ProcessEnv): PerchConfig | ConfigError {
  let base = defaultConfig(env)
  if (values.config !== undefined) {
    const loaded = loadConfigFile(values.config, base)
    if (loaded instanceof ConfigError) return loaded
    base = loaded
  }
  const overrides: Record<string, unknown> = {}
  if (values['data-dir'] !== undefined) overrides.dataDir = values['data-dir']
  if (values['log-level'] !== undefined) overrides.log = { level: values['log-level'] }
  // Anonymous clients have no account: in accounts mode the flag switches to open mode.
  if (values['allow-anonymous'] === true) overrides.auth = { allowAnonymous: true, mode: base.auth.mode === 'accounts' ? 'open' : base.auth.mode }
  if (values.host !== undefined || values.port !== undefined) {
    const port = values.port === undefined ? undefined : Number(values.port)
    // Digits only: Number() would also take '', ' 80', '1e3' and '0x50'.
    if (port !== undefined && (!/^[0-9]{1,5}$/.test(values.port ?? '') || port > 65_535)) {
      return new ConfigError(`--port: "${values.port}" is not a port number (0-65535)`)
    }
    const listeners = [...base.listeners]
    const i = listeners.findIndex((l) => l.kind === 'tcp')
    const first = i >= 0 ? listeners[i] : undefined
    const tcp = { ...(first ?? { name: 'mqtt', kind: 'tcp' as const, port: 1883 }) }
    if (values.host !== undefined) tcp.host = values.host
    if (port !== undefined) tcp.port = port
    if (i >= 0) listeners[i] = tcp
    else listeners.unshift(tcp)
    overrides.listeners = listeners
  }
  const httpPort = values['http-port']
  if (httpPort !== undefined) {
    if (!/^[0-9]{1,5}$/.test(httpPort) || Number(httpPort) > 65_535) return new ConfigError(`--http-port: "${httpPort}" is not a port number (0-65535)`)
    overrides.http = { host: base.http?.host ?? '127.0.0.1', port: Number(httpPort) }
  }
  const merged = resolveConfig(overrides, base, 'command line')
  return merged.ok ? merged.value : merged.error
}

