// Accounts for the `perch-acl` benchmark variant, written into DATA_DIR/accounts.db
// before perch starts (perch adds its own `admin` only to an empty store), and the
// rules scenario's rule.
// Usage: node bench/acl-setup.js DIST_DIR DATA_DIR < spec.json
// spec: { password, verifier?, accounts: [id], grants: [{ owner, grantee, filter, publish, subscribe }],
//         rules?: [{ account, name, source, manifest }] } (rules go into DATA_DIR/rules.db, which
//         perch loads at start; manifest is the JSON text src/scripting/engine/manifest.ts reads)
// Prints { verifier, ms } as JSON: the caller passes the verifier back next time,
// so the deliberately slow scrypt runs once per harness run, not once per broker.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [distDir, dataDir] = process.argv.slice(2)
if (!distDir || !dataDir) {
  console.error('usage: node bench/acl-setup.js DIST_DIR DATA_DIR < spec.json')
  process.exit(2)
}
const load = (rel) => import(pathToFileURL(path.join(distDir, rel)).href)
const { AccountStore } = await load('auth/account-store.js')
const { hashPassword } = await load('auth/password.js')
const { systemClock } = await load('core/clock.js')

const t0 = performance.now()
const spec = JSON.parse(readFileSync(0, 'utf8'))
// One verifier for every account: same password, same salt, one scrypt.
const verifier = spec.verifier ?? (await hashPassword(spec.password))
const opened = AccountStore.open(dataDir, systemClock())
if (!opened.ok) throw new Error(`cannot open accounts.db in ${dataDir}: ${opened.error.message ?? opened.error}`)
const store = opened.value
const check = (r, what) => {
  if (!r.ok) throw new Error(`${what}: ${r.error}`)
}
try {
  for (const id of spec.accounts) check(store.addAccount(id, verifier, false), `account ${id}`)
  for (const g of spec.grants) {
    check(store.addGrant(g.owner, g.grantee, g.filter, { publish: !!g.publish, subscribe: !!g.subscribe }), `grant ${g.filter} ${g.owner} -> ${g.grantee}`)
  }
} finally {
  store.dispose()
}
if (spec.rules?.length) {
  const { RuleStore } = await load('scripting/engine/rule-store.js')
  const rules = RuleStore.open(dataDir, systemClock())
  if (!rules.ok) throw new Error(`cannot open rules.db in ${dataDir}: ${rules.error.message ?? rules.error}`)
  try {
    for (const r of spec.rules) rules.value.put(r.account, r.name, r.source, r.manifest, 'cli')
  } finally {
    rules.value.dispose()
  }
}
console.log(JSON.stringify({ verifier, ms: performance.now() - t0 }))
