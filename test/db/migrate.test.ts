import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { type Database, openDatabase, runMigrations } from '../../src/db/index.js'

const MIGRATIONS = ['CREATE TABLE a (x INTEGER)', 'CREATE TABLE b (y INTEGER)']

function open(file: string): Database {
  const opened = openDatabase(file, { migrations: [], exclusive: false, synchronous: 'normal' })
  if (!opened.ok) throw opened.error
  return opened.value
}

t.test('a step another process applied between the version read and the write lock is not applied twice', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-migrate-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'x.db')
  const other = open(file)
  const mine = open(file)
  t.teardown(() => {
    other.close()
    mine.close()
  })
  // The other process runs all migrations right after this one has read user_version.
  let raced = false
  const racing = new Proxy(mine, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop)
      // bound, because Database keeps its handle in a private field a proxy cannot reach
      if (prop !== 'pragma') return typeof value === 'function' ? value.bind(target) : value
      return (sql: string) => {
        const value = target.pragma(sql)
        if (!raced && sql === 'user_version') {
          raced = true
          runMigrations(other, MIGRATIONS)
        }
        return value
      }
    },
  })
  t.equal(runMigrations(racing, MIGRATIONS), 2)
  t.ok(raced, 'the other process ran in between')
  t.equal(mine.pragma('user_version'), 2)
  t.end()
})

t.test('a schema from a newer version is refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-migrate-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const db = open(join(dir, 'x.db'))
  t.teardown(() => db.close())
  runMigrations(db, MIGRATIONS)
  t.throws(() => runMigrations(db, MIGRATIONS.slice(0, 1)), /newer perch; this one knows up to 1/)
  t.end()
})
