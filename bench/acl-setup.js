// Accounts for the `perch-acl` benchmark variant, written into DATA_DIR/accounts.db
// before perch starts (perch adds its own `admin` only to an empty store), the
// rules scenario's rule and the graph scenario's devices and graph.
// Usage: node bench/acl-setup.js DIST_DIR DATA_DIR < spec.json
// spec: { password, verifier?, accounts: [id], grants: [{ owner, grantee, filter, publish, subscribe }],
//         rules?: [{ account, name, source, manifest }],
//         graphs?: [{ account, name, devices: [{ id, name, features: [{ kind, name, types }] }],
//                     join: code | null, links: [{ device, kind, feature, func: code | null }] }] }
// rules go into DATA_DIR/rules.db, which perch loads at start (manifest is the JSON text
// src/scripting/engine/manifest.ts reads); graphs go into DATA_DIR/features.db with perch's own
// FeatureStore (devices registered, functions stored under their SHA-256, links in the order
// given, which is the order the join function sees its inputs in), and perch rebuilds them at start.
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
if (spec.graphs?.length) {
  const { FeatureStore } = await load('features/store.js')
  const { digestOf } = await load('features/compile.js')
  const opened = FeatureStore.open(dataDir)
  if (!opened.ok) throw new Error(`cannot open features.db in ${dataDir}: ${opened.error.message ?? opened.error}`)
  const features = opened.value
  const now = Date.now()
  try {
    features.transaction(() => {
      for (const g of spec.graphs) {
        const func = (code) => {
          if (code === null || code === undefined) return null
          const digest = digestOf(code)
          features.putFunction(g.account, digest, code, now)
          return digest
        }
        for (const d of g.devices) features.register(d.id, g.account, { name: d.name, features: d.features, acceptProtos: ['mqtt'], profile: {} }, `bench-${d.id}`, now)
        features.ensureGraph(g.account, g.name, now)
        features.setJoin(g.account, g.name, func(g.join))
        for (const l of g.links) features.putLink({ account: g.account, graph: g.name, device: l.device, kind: l.kind, feature: l.feature, func: func(l.func) })
      }
    })
  } finally {
    features.dispose()
  }
}
console.log(JSON.stringify({ verifier, ms: performance.now() - t0 }))
