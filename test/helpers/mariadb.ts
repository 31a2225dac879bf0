// A throwaway MariaDB server for the sync tests: installed into a temporary directory and run as a
// plain process on a free port (no systemd, no system config), stopped when the test file ends.
// The tests kill it with SIGKILL, freeze it with SIGSTOP and start it again on the same data.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { sleep } from './clients.js'

const run = promisify(execFile)

interface Teardown {
  teardown(fn: () => unknown): void
}

/** The administrator the harness creates: all privileges, over TCP from 127.0.0.1. */
export const ADMIN_USER = 'perch_admin'
export const ADMIN_PASSWORD = 'admin-secret'

export interface MariaDb {
  readonly port: number
  readonly dir: string
  readonly socket: string
  /** `mysql://perch_admin:...@127.0.0.1:PORT/DATABASE` */
  url(database: string): string
  /** Runs SQL as root over the socket with the `mariadb` client; returns its tab-separated output. */
  sql(statements: string, database?: string): Promise<string>
  /** A fresh, empty database. */
  createDatabase(name: string): Promise<string>
  pid(): number | undefined
  kill(signal: NodeJS.Signals): void
  /** Starts the server again on the same data directory (after a kill or a stop). */
  start(): Promise<void>
  /** SIGTERM and wait until it is gone (SIGKILL after 30 s). */
  stop(): Promise<void>
}

const rootUser = (): string[] => (process.getuid?.() === 0 ? ['--user=root'] : [])

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export async function startMariaDb(t: Teardown): Promise<MariaDb> {
  const dir = mkdtempSync(join(tmpdir(), 'perch-mariadb-'))
  const data = join(dir, 'data')
  const socket = join(dir, 'mysqld.sock')
  const port = await freePort()
  await run(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${data}`,
      ...rootUser(),
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--skip-name-resolve',
      '--innodb-log-file-size=16M',
    ],
    { timeout: 120_000 },
  )
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const ping = async (): Promise<boolean> => {
    try {
      await run('mariadb-admin', ['--no-defaults', `--socket=${socket}`, '-uroot', 'ping'], { timeout: 5000 })
      return true
    } catch {
      return false
    }
  }

  const start = async (): Promise<void> => {
    const c = spawn(
      'mariadbd',
      [
        '--no-defaults',
        ...rootUser(),
        `--datadir=${data}`,
        `--socket=${socket}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--pid-file=${join(dir, 'mysqld.pid')}`,
        `--log-error=${join(dir, 'error.log')}`,
        '--skip-name-resolve',
        '--innodb-log-file-size=16M',
        '--innodb-buffer-pool-size=32M',
        '--character-set-server=utf8mb4',
        '--collation-server=utf8mb4_unicode_ci',
        '--max-connections=200',
      ],
      { stdio: 'ignore' },
    )
    child = c
    exited = new Promise((resolve) => c.once('exit', () => resolve()))
    let gone = false
    void exited.then(() => {
      gone = true
    })
    for (let i = 0; i < 600; i++) {
      if (gone) throw new Error(`mariadbd exited at start:\n${tail(join(dir, 'error.log'))}`)
      if (await ping()) return
      await sleep(50)
    }
    throw new Error(`mariadbd did not answer within 30 s:\n${tail(join(dir, 'error.log'))}`)
  }

  const sql = async (statements: string, database?: string): Promise<string> => {
    const args = ['--no-defaults', `--socket=${socket}`, '-uroot', '--batch', '--skip-column-names', '-e', statements]
    if (database !== undefined) args.push(database)
    const { stdout } = await run('mariadb', args, { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 })
    return stdout
  }

  const stop = async (): Promise<void> => {
    const c = child
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
    c.kill('SIGCONT')
    c.kill('SIGTERM')
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000)
    await exited
    clearTimeout(timer)
  }

  await start()
  await sql(
    `CREATE USER '${ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '${ADMIN_PASSWORD}';
     GRANT ALL PRIVILEGES ON *.* TO '${ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION;
     CREATE USER '${ADMIN_USER}'@'localhost' IDENTIFIED BY '${ADMIN_PASSWORD}';
     GRANT ALL PRIVILEGES ON *.* TO '${ADMIN_USER}'@'localhost' WITH GRANT OPTION;`,
  )
  t.teardown(async () => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })

  return {
    port,
    dir,
    socket,
    url: (database) => `mysql://${ADMIN_USER}:${ADMIN_PASSWORD}@127.0.0.1:${port}/${database}`,
    sql,
    async createDatabase(name) {
      await sql(`CREATE DATABASE \`${name}\``)
      return name
    },
    pid: () => child?.pid,
    kill(signal) {
      child?.kill(signal)
    },
    async start() {
      await stop()
      await exited
      await start()
    },
    stop,
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n')
  } catch {
    return '(no error log)'
  }
}
