// A central database for the sync tests, set up with perch's own schema on a throwaway MariaDB:
// an admin session to write central rows as an operator would, and gateway users.
import { randomBytes } from 'node:crypto'
import { hashPassword } from '../../src/auth/password.js'
import { CENTRAL_MIGRATIONS, GATEWAY_VIEWS } from '../../src/sync/central-schema.js'
import { MysqlSession, parseMysqlUrl, type SqlParam } from '../../src/sync/mysql.js'
import type { MariaDb } from './mariadb.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Central {
  readonly db: string
  run(sql: string, params?: readonly SqlParam[]): Promise<void>
  rows(sql: string, params?: readonly SqlParam[]): Promise<Record<string, unknown>[]>
  /** Creates a gateway and its MySQL user; returns the gateway's sync URL. */
  gateway(name: string): Promise<string>
  account(name: string, password: string, options?: { admin?: boolean; enabled?: boolean; gateway?: string }): Promise<void>
  counter(): Promise<number>
}

let next = 0

export async function startCentral(t: Teardown, m: MariaDb): Promise<Central> {
  const db = await m.createDatabase(`central_${next++}_${randomBytes(3).toString('hex')}`)
  const target = parseMysqlUrl(m.url(db), { connectTimeoutMs: 10_000, queryTimeoutMs: 60_000 })
  if (!target.ok) throw target.error
  // Reopened after a broken connection: the tests kill and restart the server under it.
  let admin: MysqlSession | undefined
  const session = async (): Promise<MysqlSession> => {
    if (admin !== undefined && !admin.broken) return admin
    const opened = await MysqlSession.open(target.value)
    if (!opened.ok) throw opened.error
    admin = opened.value
    return admin
  }
  t.teardown(() => admin?.close())
  const run = async (sql: string, params: readonly SqlParam[] = []): Promise<void> => {
    const r = await (await session()).execute(sql, params)
    if (!r.ok) throw r.error
  }
  const rows = async (sql: string, params: readonly SqlParam[] = []): Promise<Record<string, unknown>[]> => {
    const r = await (await session()).query(sql, params)
    if (!r.ok) throw r.error
    return r.value
  }
  for (const statement of CENTRAL_MIGRATIONS[0] ?? []) await run(statement)
  const gatewayIds = new Map<string, number>()
  return {
    db,
    run,
    rows,
    async gateway(name) {
      const user = `gw_${name}_${randomBytes(3).toString('hex')}`
      const password = randomBytes(12).toString('base64url')
      await run('INSERT INTO gateways (name, db_user) VALUES (?, ?)', [name, user])
      const [row] = await rows('SELECT id FROM gateways WHERE name = ?', [name])
      gatewayIds.set(name, Number(row?.id))
      await run(`CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`)
      for (const view of GATEWAY_VIEWS) await run(`GRANT SELECT ON \`${db}\`.${view} TO '${user}'@'%'`)
      return `mysql://${user}:${password}@127.0.0.1:${m.port}/${db}`
    },
    async account(name, password, o = {}) {
      await run('INSERT INTO accounts (name, verifier, admin, enabled) VALUES (?, ?, ?, ?)', [name, await hashPassword(password), o.admin === true ? 1 : 0, o.enabled === false ? 0 : 1])
      if (o.gateway !== undefined) await run('INSERT INTO gateway_accounts (gateway_id, account) VALUES (?, ?)', [gatewayIds.get(o.gateway) ?? -1, name])
    },
    async counter() {
      const [row] = await rows('SELECT v FROM sync_clock WHERE id = 1')
      return Number(row?.v)
    },
  }
}
