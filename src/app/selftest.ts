import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ADMIN_PASSWORD_FILE } from '../auth/accounts.js'
import { systemClock } from '../core/clock.js'
import { describeError } from '../core/errors.js'
import { createLogger } from '../core/logger.js'
import { openDatabase } from '../db/index.js'
import type { App } from './app.js'
import type { Io } from './cli.js'
import { defaultConfig, resolveConfig } from './config.js'
import { SelftestClient } from './selftest-client.js'

export const SELFTEST_HELP = `Usage: perch selftest [--timeout SECONDS]

Checks that this installation works on this machine, without touching its state:
opens a SQLite database, loads the optional dependencies and the native serial
and GPIO bindings, starts a broker with its own data in a temporary directory on
free local ports, asks its /healthz, connects to it as its admin, publishes and
receives a message, and runs the bundled "calc" rule. Prints one line per check;
exits 0 when all pass, 1 otherwise. install.sh runs it before switching to a new
release, and the build runs it for every target (under qemu for ARM).

Options:
  --timeout SECONDS   how long each check may take (default 60; emulators are slow)
  -h, --help          show this help
`

interface Check {
  readonly name: string
  run(): Promise<string>
}

/** perch selftest: returns the exit code. */
export async function selftestCommand(args: readonly string[], io: Io, version: string): Promise<number> {
  let timeoutMs: number
  try {
    const { values } = parseArgs({ args: [...args], strict: true, options: { timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
    if (values.help === true) {
      io.out(SELFTEST_HELP)
      return 0
    }
    const seconds = Number(values.timeout ?? '60')
    if (!/^[0-9]+$/.test(values.timeout ?? '60') || seconds < 1) throw new Error(`--timeout: "${values.timeout}" is not a whole number of seconds`)
    timeoutMs = seconds * 1000
  } catch (e) {
    io.err(`perch selftest: ${describeError(e)}\n\n${SELFTEST_HELP}`)
    return 2
  }
  let dir: string
  try {
    dir = mkdtempSync(join(tmpdir(), 'perch-selftest-'))
  } catch (e) {
    io.err(`perch selftest: cannot create a temporary directory in ${tmpdir()} (${describeError(e)}); set TMPDIR to a writable directory\n`)
    return 1
  }
  const started = Date.now()
  const run = new SelftestRun(dir, version, timeoutMs)
  let failed = 0
  try {
    for (const check of run.checks()) {
      const t0 = Date.now()
      try {
        const detail = await withTimeout(check.run(), timeoutMs, check.name)
        io.out(`ok      ${check.name.padEnd(8)} ${detail} (${Date.now() - t0} ms)\n`)
      } catch (e) {
        failed++
        io.out(`FAILED  ${check.name.padEnd(8)} ${describeError(e)}\n`)
        break
      }
    }
  } finally {
    await run.dispose()
    rmSync(dir, { recursive: true, force: true })
  }
  const where = `${process.platform}-${process.arch}, node ${process.version} (abi ${process.versions.modules})`
  io.out(failed === 0 ? `selftest passed: perch ${version} on ${where} in ${Date.now() - started} ms\n` : `selftest FAILED on ${where}\n`)
  return failed === 0 ? 0 : 1
}

/** The checks in order; each one needs the ones before it. */
class SelftestRun {
  readonly #dir: string
  readonly #version: string
  readonly #timeoutMs: number
  readonly #logLines: string[] = []
  #app: App | undefined
  #client: SelftestClient | undefined

  constructor(dir: string, version: string, timeoutMs: number) {
    this.#dir = dir
    this.#version = version
    this.#timeoutMs = timeoutMs
  }

  checks(): Check[] {
    return [
      { name: 'sqlite', run: () => Promise.resolve(this.#sqlite()) },
      { name: 'modules', run: () => this.#modules() },
      { name: 'broker', run: () => this.#broker() },
      { name: 'mqtt', run: () => this.#mqtt() },
      { name: 'rule', run: () => this.#rule() },
    ]
  }

  #sqlite(): string {
    const opened = openDatabase(join(this.#dir, 'selftest.db'), { synchronous: 'full', migrations: ['CREATE TABLE t (v INTEGER NOT NULL)'] })
    if (!opened.ok) throw opened.error
    const db = opened.value
    try {
      db.prepare('INSERT INTO t (v) VALUES (?)').run(41)
      const row = db.prepare<{ v: number; version: string }>('SELECT v + 1 AS v, sqlite_version() AS version FROM t').get()
      if (row?.v !== 42) throw new Error(`SELECT returned ${JSON.stringify(row)}`)
      return `SQLite ${row.version}, WAL, one row written and read back`
    } finally {
      db.close()
    }
  }

  async #modules(): Promise<string> {
    // The modules that own the dependencies only some configurations load (mysql2, jose)
    // and the native bindings (serialport's prebuild, epoll's addon): a file pruned too eagerly
    // from a release, or a .node file for another machine, fails here and not on a live gateway.
    // (ws loads with the broker's WebSocket listener, in the next check.)
    await import('../sync/mysql.js')
    await import('../auth/jwt.js')
    await import('../bridges/serial/serial-port.js')
    await import('../bridges/gpio/onoff-backend.js')
    return 'mysql2, jose, the serialport and epoll bindings loaded'
  }

  async #broker(): Promise<string> {
    const base = defaultConfig({})
    const overrides = {
      dataDir: join(this.#dir, 'data'),
      log: { level: 'warn' },
      listeners: [
        { name: 'mqtt', kind: 'tcp', host: '127.0.0.1', port: 0 },
        { name: 'ws', kind: 'ws', host: '127.0.0.1', port: 0 },
      ],
      devices: { enabled: false },
      // Under emulation (the release build's check) everything is 10-30 times slower.
      rules: { watchdog: 30 },
      http: { host: '127.0.0.1', port: 0 },
    }
    const config = resolveConfig(overrides, base, 'selftest')
    if (!config.ok) throw config.error
    const clock = systemClock()
    const logger = createLogger('warn', (line) => this.#logLines.push(line), () => clock.now())
    const { App } = await import('./app.js')
    this.#app = await App.start(config.value, { clock, logger, version: this.#version })
    const port = this.#app.listeners[0]?.port
    const httpPort = this.#app.metrics?.port
    if (httpPort === undefined) throw new Error('the metrics endpoint did not start')
    const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`)
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`)
    const wsPort = this.#app.listeners[1]?.port
    return `MQTT on 127.0.0.1:${port}, WebSocket on ${wsPort}, /healthz 200 on ${httpPort}, state in a temporary directory`
  }

  async #mqtt(): Promise<string> {
    const port = this.#app?.listeners[0]?.port
    if (port === undefined) throw new Error('the broker has no listener')
    const file = readFileSync(join(this.#dir, 'data', ADMIN_PASSWORD_FILE), 'utf8')
    const password = /^password: (.+)$/m.exec(file)?.[1]
    if (password === undefined) throw new Error(`no password in ${ADMIN_PASSWORD_FILE}`)
    this.#client = await SelftestClient.open(port, 'admin', password, this.#timeoutMs)
    await this.#client.subscribe('/admin/selftest/#', this.#timeoutMs)
    const payload = `ping ${Date.now()}`
    this.#client.publish('/admin/selftest/ping', payload)
    const got = await this.#client.next((p) => p.cmd === 'publish' && p.topic === '/admin/selftest/ping', this.#timeoutMs)
    if (got.cmd !== 'publish' || got.payload.toString() !== payload) throw new Error('the message came back changed')
    return 'connected as admin, published and received one message'
  }

  async #rule(): Promise<string> {
    const client = this.#client
    if (client === undefined) throw new Error('no MQTT connection')
    await client.subscribe('/admin/runfile/calc/result', this.#timeoutMs)
    client.publish('/admin/runfile/calc', '{"op":"add","args":[40,2]}')
    const got = await client.next((p) => p.cmd === 'publish' && p.topic === '/admin/runfile/calc/result', this.#timeoutMs)
    const text = got.cmd === 'publish' ? got.payload.toString() : ''
    if (text !== '{"result":42}') throw new Error(`calc answered ${text}; log: ${this.#logLines.join('').trim()}`)
    return 'the bundled calc rule ran in its sandbox and answered 42'
  }

  async dispose(): Promise<void> {
    this.#client?.close()
    await this.#app?.stop()
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} did not finish within ${ms / 1000} s`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}
