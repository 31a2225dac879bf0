// Patching the compiled rights with only the accounts the change log names gives the same
// decisions as compiling the whole store, after every step of random local and central changes.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { AccountStore } from '../../src/auth/account-store.js'
import { Acl } from '../../src/auth/acl.js'
import { type CentralAccount, CentralAccountCache, type CentralGrant } from '../../src/auth/central-accounts.js'
import { systemClock } from '../../src/core/clock.js'

const NAMES = ['a', 'b', 'c', 'd', 'e']
const FILTERS = (owner: string): string[] => [`/${owner}/x/#`, `/${owner}/y`, `/${owner}/+/z`]
const TOPICS = NAMES.flatMap((o) => [`/${o}/x/1`, `/${o}/y`, `/${o}/q/z`, `/${o}/w`])

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function decisions(acl: Acl): string {
  const out: string[] = [...acl.accounts.values()].map((a) => `${a.id}:${a.enabled}:${a.admin}:${a.verifier}`).sort()
  for (const account of NAMES) {
    const p = { account, admin: acl.account(account)?.admin === true }
    for (const topic of TOPICS) out.push(`${account} ${topic} ${acl.canPublish(p, topic)} ${acl.canRead(p, topic)} ${acl.subscribeDecision(p, topic)}`)
    for (const o of NAMES) out.push(`${account} /${o}/# ${acl.subscribeDecision(p, `/${o}/#`)}`)
  }
  return out.join('\n')
}

t.test('a patched Acl decides as a full compile, over 300 random changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'perch-acl-patch-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const opened = AccountStore.open(dir, systemClock())
  if (!opened.ok) throw opened.error
  const store = opened.value
  const cached = CentralAccountCache.open(dir, systemClock())
  if (!cached.ok) throw cached.error
  const central = cached.value
  t.teardown(() => {
    store.dispose()
    central.dispose()
  })
  const rnd = random(42)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T
  let acl = new Acl(store.snapshot())
  let last = store.lastChange()
  let hwm = 0
  let patches = 0
  for (let step = 0; step < 300; step++) {
    const a = pick(NAMES)
    const b = pick(NAMES)
    const op = Math.floor(rnd() * 9)
    if (op === 0) store.addAccount(a, `v-${step}`, rnd() < 0.2)
    else if (op === 1) store.removeAccount(a)
    else if (op === 2) store.setEnabled(a, rnd() < 0.5)
    else if (op === 3) store.addGrant(a, b, pick(FILTERS(a)), { publish: rnd() < 0.5, subscribe: rnd() < 0.7 })
    else if (op === 4) store.removeGrant(a, b, pick(FILTERS(a)), { publish: true, subscribe: true })
    else if (op === 5) store.addHandler(a, b, pick(['#', 'x/#', 'y']))
    else if (op === 6) store.removeHandler(a, b, pick(['#', 'x/#', 'y']))
    else {
      // A central sync of one or two keys, or a full one.
      const full = op === 8 && rnd() < 0.3
      const keys = full ? NAMES.filter(() => rnd() < 0.6) : [a, b]
      const accounts: CentralAccount[] = keys.filter(() => rnd() < 0.7).map((name) => ({ name, verifier: null, admin: rnd() < 0.1, enabled: rnd() < 0.8 }))
      const grants: CentralGrant[] = accounts.flatMap((x) => (rnd() < 0.6 ? [{ owner: x.name, grantee: pick(NAMES), filter: pick(FILTERS(x.name)), publish: rnd() < 0.5, subscribe: true }] : []))
      central.apply({ full, keys, accounts, grants, mark: { hwm: ++hwm, epoch: 'e' } })
    }
    const changes = store.changesSince(last)
    if (changes === undefined) {
      acl = new Acl(store.snapshot())
      last = store.lastChange()
    } else {
      acl = Acl.patched(acl, changes.accounts, store.partial(changes.accounts))
      last = changes.last
      patches++
    }
    const full = new Acl(store.snapshot())
    if (decisions(acl) !== decisions(full)) {
      t.fail(`step ${step} (op ${op}, ${a}, ${b}): the patched rights differ from a full compile`)
      return
    }
  }
  t.equal(patches, 300, 'every step was patched from the change log')
  t.pass('300 steps: patched and full rights agree')
})
