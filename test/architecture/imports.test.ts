// The import direction of src/ is part of the design (see ARCHITECTURE.md, "Data flows one
// way"): this test parses every import and export-from in src/**/*.ts with the TypeScript
// parser and fails on an edge the layer diagram does not allow, on a third-party package
// imported outside its one owning module, on `export default` and on `any`.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const SRC = join(ROOT, 'src')

// ---------------------------------------------------------------------------------------------
// The rules

interface Component {
  readonly name: string
  readonly layer: number
}

/** Longest prefix first: `mqtt/protocol/` before anything shorter. Paths are relative to src/, '/'-separated. */
const COMPONENTS: readonly { prefix: string; component: Component }[] = [
  { prefix: 'core/', component: { name: 'core', layer: 0 } },
  { prefix: 'mqtt/protocol/', component: { name: 'mqtt/protocol', layer: 1 } },
  { prefix: 'db/', component: { name: 'db', layer: 1 } },
  { prefix: 'mqtt/topic/', component: { name: 'mqtt/topic', layer: 2 } },
  { prefix: 'mqtt/session/', component: { name: 'mqtt/session', layer: 3 } },
  { prefix: 'mqtt/broker/', component: { name: 'mqtt/broker', layer: 4 } },
  { prefix: 'mqtt/transport/', component: { name: 'mqtt/transport', layer: 5 } },
  { prefix: 'persistence/', component: { name: 'persistence', layer: 6 } },
  { prefix: 'auth/', component: { name: 'auth', layer: 6 } },
  { prefix: 'scripting/', component: { name: 'scripting', layer: 6 } },
  { prefix: 'bridges/', component: { name: 'bridges', layer: 6 } },
  { prefix: 'sync/', component: { name: 'sync', layer: 6 } },
  { prefix: 'features/', component: { name: 'features', layer: 6 } },
  { prefix: 'app/', component: { name: 'app', layer: 7 } },
  { prefix: 'main.ts', component: { name: 'main', layer: 7 } },
]

const TOP_LAYER = 7

function componentOf(file: string): Component | undefined {
  for (const { prefix, component } of COMPONENTS) {
    if (prefix.endsWith('/') ? file.startsWith(prefix) : file === prefix) return component
  }
  return undefined
}

/**
 * Where each third-party package may be imported. `file`: exactly that one module. `dir`: one
 * module inside that folder (the package has one owner, not yet written for most of these).
 * `anyIn`: any module inside that folder (mqtt-packet: the codec is split over several files).
 * A package missing from this list fails the test: add it here, with its one owner.
 */
type Owner = { readonly file: string } | { readonly dir: string } | { readonly anyIn: string }

const PACKAGE_OWNERS: Readonly<Record<string, Owner>> = {
  'mqtt-packet': { anyIn: 'mqtt/protocol/' },
  ajv: { file: 'core/schema.ts' },
  ws: { file: 'mqtt/transport/listeners.ts' },
  'better-sqlite3': { file: 'db/database.ts' },
  jose: { file: 'auth/jwt.ts' },
  'quickjs-emscripten-core': { file: 'scripting/quickjs.ts' },
  '@jitl/quickjs-wasmfile-release-sync': { file: 'scripting/quickjs.ts' },
  '@jitl/quickjs-wasmfile-debug-sync': { file: 'scripting/quickjs.ts' },
  serialport: { file: 'bridges/serial/serial-port.ts' },
  onoff: { file: 'bridges/gpio/onoff-backend.ts' },
  mysql2: { file: 'sync/mysql.ts' },
  'prom-client': { file: 'app/metrics.ts' },
  pino: { file: 'core/logger.ts' },
}

interface ImportEdge {
  /** The importing module, relative to src/ with '/' separators. */
  readonly from: string
  /** The module specifier exactly as written. */
  readonly specifier: string
  /** The imported module relative to src/ for a relative specifier; undefined otherwise. */
  readonly to: string | undefined
}

const BUILTINS = new Set(builtinModules)

function packageName(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier)
}

function ownerAllows(owner: Owner, file: string): boolean {
  if ('file' in owner) return file === owner.file
  if ('dir' in owner) return file.startsWith(owner.dir)
  return file.startsWith(owner.anyIn)
}

/** Every rule over a list of edges; returns one readable line per violation. */
function checkEdges(edges: readonly ImportEdge[], existing: (file: string) => boolean = () => true): string[] {
  const problems: string[] = []
  const importers = new Map<string, Set<string>>()
  for (const e of edges) {
    const from = componentOf(e.from)
    if (from === undefined) {
      problems.push(`${e.from}: belongs to no layer of the diagram`)
      continue
    }
    if (e.specifier.startsWith('.')) {
      if (e.to === undefined || e.to.startsWith('../') || !existing(e.to)) {
        problems.push(`${e.from} -> ${e.specifier}: does not resolve to a module inside src/`)
        continue
      }
      const to = componentOf(e.to)
      if (to === undefined) {
        problems.push(`${e.from} -> ${e.to}: the target belongs to no layer of the diagram`)
        continue
      }
      const sameComponent = to.name === from.name
      const bothTop = from.layer === TOP_LAYER && to.layer === TOP_LAYER
      if (sameComponent || bothTop || to.layer < from.layer) continue
      const why =
        to.layer > from.layer
          ? `L${from.layer} ${from.name} may not import the higher layer L${to.layer} ${to.name}`
          : `${from.name} and ${to.name} are siblings in L${from.layer} and never import each other`
      problems.push(`${e.from} -> ${e.to}: ${why}`)
      continue
    }
    if (e.specifier.startsWith('node:')) continue
    if (BUILTINS.has(e.specifier) || BUILTINS.has(packageName(e.specifier))) {
      problems.push(`${e.from} -> ${e.specifier}: import Node built-ins with the node: prefix`)
      continue
    }
    const pkg = packageName(e.specifier)
    const owner = PACKAGE_OWNERS[pkg]
    if (owner === undefined) {
      problems.push(`${e.from} -> ${pkg}: third-party package with no owner in PACKAGE_OWNERS (give it exactly one importing module)`)
      continue
    }
    if (!ownerAllows(owner, e.from)) {
      problems.push(`${e.from} -> ${pkg}: only ${JSON.stringify(owner)} may import ${pkg}`)
      continue
    }
    let set = importers.get(pkg)
    if (set === undefined) {
      set = new Set()
      importers.set(pkg, set)
    }
    set.add(e.from)
  }
  for (const [pkg, files] of importers) {
    const owner = PACKAGE_OWNERS[pkg]
    if (owner !== undefined && !('anyIn' in owner) && files.size > 1) {
      problems.push(`${pkg}: imported by ${[...files].sort().join(', ')}; one module must own it`)
    }
  }
  return problems
}

// ---------------------------------------------------------------------------------------------
// Parsing

interface ParsedModule {
  readonly specifiers: string[]
  /** Source-level violations: export default, any. */
  readonly problems: string[]
}

/** Reads the module specifiers and the forbidden constructs of one source text. */
function parseModule(name: string, text: string): ParsedModule {
  const sf = ts.createSourceFile(name, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS)
  const specifiers: string[] = []
  const problems: string[] = []
  const where = (node: ts.Node): string => {
    const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf))
    return `${name}:${line + 1}`
  }
  // `declare module 'pkg' { export default ... }` describes a third-party module's shape.
  const inAmbientModule = (node: ts.Node): boolean => {
    for (let n = node.parent; n !== undefined; n = n.parent) if (ts.isModuleDeclaration(n) && ts.isStringLiteral(n.name)) return true
    return false
  }
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined) {
      if (ts.isStringLiteral(node.moduleSpecifier)) specifiers.push(node.moduleSpecifier.text)
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const e = node.moduleReference.expression
      if (ts.isStringLiteral(e)) specifiers.push(e.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0]
      if (arg !== undefined && ts.isStringLiteralLike(arg)) specifiers.push(arg.text)
      else problems.push(`${where(node)}: dynamic import of a computed specifier cannot be checked`)
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument
      if (ts.isLiteralTypeNode(arg) && ts.isStringLiteral(arg.literal)) specifiers.push(arg.literal.text)
    }
    if (ts.isExportAssignment(node) && node.isExportEquals !== true && !inAmbientModule(node)) problems.push(`${where(node)}: export default (use named exports)`)
    if (ts.canHaveModifiers(node)) {
      const mods = ts.getModifiers(node) ?? []
      const isExport = mods.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
      const isDefault = mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)
      if (isExport && isDefault && !inAmbientModule(node)) problems.push(`${where(node)}: export default (use named exports)`)
    }
    if (ts.isExportSpecifier(node) && node.name.text === 'default') problems.push(`${where(node)}: export ... as default (use named exports)`)
    if (node.kind === ts.SyntaxKind.AnyKeyword) problems.push(`${where(node)}: 'any' (use unknown or a real type)`)
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return { specifiers, problems }
}

function listTs(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) out.push(...listTs(path))
    else if (entry.endsWith('.ts')) out.push(path)
  }
  return out.sort()
}

const toSrc = (abs: string): string => relative(SRC, abs).split(sep).join('/')

/** A relative specifier as written in ESM TypeScript ('./x.js') to the .ts file it names. */
function resolveRelative(from: string, specifier: string): string {
  const target = join(dirname(from), specifier).split(sep).join('/')
  return target.endsWith('.js') ? `${target.slice(0, -3)}.ts` : target
}

function scanSrc(): { files: string[]; edges: ImportEdge[]; problems: string[] } {
  const files = listTs(SRC).map(toSrc)
  const edges: ImportEdge[] = []
  const problems: string[] = []
  for (const file of files) {
    const parsed = parseModule(file, readFileSync(join(SRC, file), 'utf8'))
    problems.push(...parsed.problems)
    for (const specifier of parsed.specifiers) {
      edges.push({ from: file, specifier, to: specifier.startsWith('.') ? resolveRelative(file, specifier) : undefined })
    }
  }
  return { files, edges, problems }
}

// ---------------------------------------------------------------------------------------------
// The checks on src/

const scanned = scanSrc()
const fileSet = new Set(scanned.files)

t.test('src/ is scanned and every module belongs to a layer', async (t) => {
  t.ok(scanned.files.length > 20, `found ${scanned.files.length} modules`)
  t.ok(scanned.edges.length > 50, `found ${scanned.edges.length} import edges`)
  const outside = scanned.files.filter((f) => componentOf(f) === undefined)
  t.same(outside, [], 'modules outside every layer of the diagram')
})

t.test('every import edge is allowed by the layer diagram and every package has its owner', async (t) => {
  t.same(checkEdges(scanned.edges, (f) => fileSet.has(f)), [])
})

t.test('only src/mqtt/protocol/ imports mqtt-packet, only core/schema.ts ajv, only transport/listeners.ts ws, only auth/jwt.ts jose', async (t) => {
  const importersOf = (pkg: string): string[] =>
    [...new Set(scanned.edges.filter((e) => !e.specifier.startsWith('.') && packageName(e.specifier) === pkg).map((e) => e.from))].sort()
  const mqttPacket = importersOf('mqtt-packet')
  t.ok(mqttPacket.length > 0, 'the codec imports mqtt-packet')
  t.same(
    mqttPacket.filter((f) => !f.startsWith('mqtt/protocol/')),
    [],
  )
  t.same(importersOf('ajv'), ['core/schema.ts'])
  t.same(importersOf('ws'), ['mqtt/transport/listeners.ts'])
  t.same(importersOf('jose'), ['auth/jwt.ts'])
})

t.test('no export default and no any in src/', async (t) => {
  t.same(scanned.problems, [])
})

t.test('every dependency in package.json is owned by one module or not imported by src/', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }
  for (const dep of Object.keys(pkg.dependencies ?? {})) {
    t.ok(PACKAGE_OWNERS[dep] !== undefined, `${dep} has an owner in PACKAGE_OWNERS`)
  }
})

// ---------------------------------------------------------------------------------------------
// The checker checks: synthetic edges it must flag (and some it must let through)

t.test('self-test: the checker flags bad edges', async (t) => {
  const edge = (from: string, specifier: string): ImportEdge => ({
    from,
    specifier,
    to: specifier.startsWith('.') ? resolveRelative(from, specifier) : undefined,
  })
  const flags = (e: ImportEdge, what: RegExp): void => {
    const problems = checkEdges([e])
    t.equal(problems.length, 1, `${e.from} -> ${e.specifier} is flagged`)
    t.match(problems[0] ?? '', what)
  }
  flags(edge('mqtt/topic/trie.ts', '../session/session.js'), /L2 mqtt\/topic may not import the higher layer L3/)
  flags(edge('core/clock.ts', '../mqtt/protocol/packets.js'), /higher layer/)
  flags(edge('mqtt/broker/broker.ts', '../transport/connection.js'), /higher layer/)
  flags(edge('mqtt/transport/connection.ts', '../../app/app.js'), /higher layer/)
  flags(edge('auth/static-rules.ts', '../scripting/host.js'), /siblings in L6/)
  flags(edge('sync/pull.ts', '../persistence/store.js'), /siblings in L6/)
  flags(edge('db/open.ts', '../mqtt/protocol/packets.js'), /siblings in L1/)
  flags(edge('mqtt/topic/trie.ts', '../../../test/x.js'), /does not resolve/)
  flags(edge('mqtt/session/session.ts', 'mqtt-packet'), /only .*mqtt\/protocol/)
  flags(edge('app/config.ts', 'ajv'), /only .*core\/schema\.ts/)
  flags(edge('mqtt/transport/connection.ts', 'ws'), /only .*listeners\.ts/)
  flags(edge('auth/jwt.ts', 'left-pad'), /no owner/)
  flags(edge('core/clock.ts', 'fs'), /node: prefix/)
  flags(edge('util/x.ts', './y.js'), /belongs to no layer/)
  // One owner per package: a second module beside the owning one is flagged.
  flags(edge('bridges/serial/framing.ts', 'serialport'), /only .*bridges\/serial\/serial-port\.ts/)
  flags(edge('bridges/gpio/bridge.ts', 'onoff'), /only .*bridges\/gpio\/onoff-backend\.ts/)
  // better-sqlite3 has its one module: db/database.ts.
  flags(edge('db/migrate.ts', 'better-sqlite3'), /only .*db\/database\.ts/)
  flags(edge('persistence/sqlite-store.ts', 'better-sqlite3'), /only .*db\/database\.ts/)
})

t.test('self-test: the checker lets allowed edges through', async (t) => {
  const ok = (from: string, specifier: string): void => {
    const to = specifier.startsWith('.') ? resolveRelative(from, specifier) : undefined
    t.same(checkEdges([{ from, specifier, to }]), [], `${from} -> ${specifier}`)
  }
  ok('mqtt/session/session.ts', '../../core/ring-queue.js')
  ok('mqtt/session/session.ts', './message.js')
  ok('auth/static-rules.ts', '../mqtt/broker/hooks.js')
  ok('main.ts', './app/cli.js')
  ok('app/app.ts', '../auth/open.js')
  ok('mqtt/protocol/decoder.ts', 'mqtt-packet')
  ok('mqtt/protocol/encoder.ts', 'mqtt-packet')
  ok('core/clock.ts', 'node:fs')
  ok('db/database.ts', 'better-sqlite3')
  ok('persistence/sqlite-store.ts', '../db/index.js')
  ok('scripting/quickjs.ts', '@jitl/quickjs-wasmfile-release-sync')
})

t.test('self-test: the parser finds every import form, export default and any', async (t) => {
  const source = [
    "import { a } from './a.js'",
    "import type { B } from '../b.js'",
    "export { c } from './c.js'",
    "export * from './d.js'",
    "export type * from './e.js'",
    "import './side-effect.js'",
    "const lazy = await import('./lazy.js')",
    "type T = import('./types.js').T",
    "// import { nope } from './comment.js'",
    "const s = \"import { nope } from './string.js'\"",
    'export default function f(x: any) { return x as any }',
    'const y = 1',
    'export { y as default }',
  ].join('\n')
  const parsed = parseModule('x.ts', source)
  t.same(parsed.specifiers.sort(), ['../b.js', './a.js', './c.js', './d.js', './e.js', './lazy.js', './side-effect.js', './types.js'])
  t.equal(parsed.problems.filter((p) => p.includes('export default')).length, 1)
  t.equal(parsed.problems.filter((p) => p.includes('as default')).length, 1)
  t.equal(parsed.problems.filter((p) => p.includes("'any'")).length, 2)
  const ambient = parseModule('shim.d.ts', "declare module 'pkg/sub.js' {\n  import type { P } from 'pkg'\n  const X: { f(p: P): void }\n  export default X\n}")
  t.same(ambient.problems, [], "an ambient declaration of a package's default export is not perch exporting default")
  t.same(ambient.specifiers, ['pkg'])
  t.same(parseModule('clean.ts', 'export const many = 1 // any\nexport function f(): unknown { return "any" }').problems, [])
})
