// A scratch folder with a features.db held open the way a running perch holds it, for tests that
// read it from another process (the CLI). Removed when the test ends.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FeatureStore } from '../../src/features/store.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export function scratchFeatureStore(t: Teardown, prefix: string): { work: string; data: string; store: FeatureStore } {
  const work = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const data = join(work, 'data')
  mkdirSync(data)
  const opened = FeatureStore.open(data)
  if (!opened.ok) throw opened.error
  const store = opened.value
  t.teardown(() => store.dispose())
  return { work, data, store }
}
