// A throwaway MariaDB for bench/sync.js: installed into a temporary directory and run as a plain
// process on a free loopback port (no systemd, no system config), as test/helpers/mariadb.ts does
// for the tests. Root has no password and is reached over the socket.
import { execFile, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mysql from 'mysql2/promise'
import { freePort } from './brokers.js'

const run = promisify(execFile)
const rootUser = () => (process.getuid?.() === 0 ? ['--user=root'] : [])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// Server options (besides paths and port): the tests' settings with a larger buffer pool, so
// that central's ~60 MB of rows and change log stay in memory; no binlog (the --no-defaults
// default).
export const MARIADB_OPTIONS = [
  '--skip-name-resolve',
  '--innodb-log-file-size=64M',
  '--innodb-buffer-pool-size=128M',
  '--character-set-server=utf8mb4',
  '--collation-server=utf8mb4_unicode_ci',
  '--max-connections=50',
]

/** The server's version line, or null when mariadbd is not installed. */
export function mariadbVersion() {
  for (const bin of ['mariadbd', '/usr/sbin/mariadbd']) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8' })
    if (!r.error && r.status === 0) return { bin, version: r.stdout.trim() }
  }
  return null
}

/**
 * Installs and starts a server. Returns { port, dir, socket, pid, root(database?) -> mysql2
 * connection, stop() }. `track(child)` is given the server process so a harness can kill it.
 */
export async function startMariaDb({ bin = 'mariadbd', track = () => {} } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'perch-bench-mariadb-'))
  const data = path.join(dir, 'data')
  const socket = path.join(dir, 'mysqld.sock')
  const port = await freePort()
  let child
  const server = {
    port,
    dir,
    socket,
    get pid() {
      return child?.pid
    },
    root: (database) => mysql.createConnection({ socketPath: socket, user: 'root', database, multipleStatements: false }),
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 10000)
        await gone
        clearTimeout(t)
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await run(
      'mariadb-install-db',
      ['--no-defaults', `--datadir=${data}`, ...rootUser(), '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve', '--innodb-log-file-size=64M'],
      { timeout: 120000 },
    )
    child = spawn(
      bin,
      [
        '--no-defaults',
        ...rootUser(),
        `--datadir=${data}`,
        `--socket=${socket}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--pid-file=${path.join(dir, 'mysqld.pid')}`,
        `--log-error=${path.join(dir, 'error.log')}`,
        ...MARIADB_OPTIONS,
      ],
      { stdio: 'ignore' },
    )
    track(child)
    let gone = false
    child.once('exit', () => {
      gone = true
    })
    for (let i = 0; ; i++) {
      if (gone) throw new Error(`mariadbd exited at start:\n${tail(path.join(dir, 'error.log'))}`)
      if (i >= 600) throw new Error(`mariadbd did not answer within 30 s:\n${tail(path.join(dir, 'error.log'))}`)
      try {
        const c = await server.root()
        await c.end()
        break
      } catch {
        await sleep(50)
      }
    }
    return server
  } catch (e) {
    await server.stop()
    throw e
  }
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n')
  } catch {
    return '(no error log)'
  }
}
