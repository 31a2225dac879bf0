#!/usr/bin/env node
// Shrinks a staged app directory to what runs on the device: the packages reachable from the
// app's own dependencies, the compiled addons, one serialport prebuild for the target, and no
// sources, docs, tests, type declarations or source maps.
// Usage: node scripts/prune.js APP_DIR x64|arm64|armhf
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

const [appDir, target] = process.argv.slice(2)
const SERIALPORT_PREBUILD = {
  x64: ['linux-x64', '@serialport+bindings-cpp.glibc.node'],
  arm64: ['linux-arm64', '@serialport+bindings-cpp.armv8.glibc.node'],
  armhf: ['linux-arm', '@serialport+bindings-cpp.armv7.glibc.node'],
}
if (appDir === undefined || !(target in SERIALPORT_PREBUILD)) {
  console.error('usage: node scripts/prune.js APP_DIR x64|arm64|armhf')
  process.exit(2)
}
const modules = join(appDir, 'node_modules')
// Needed only to build or type-check; some packages list them as production dependencies.
const BUILD_ONLY = new Set(['prebuild-install', 'nan', 'node-addon-api', 'node-gyp'])
const ADDONS = { 'better-sqlite3': 'better_sqlite3.node', epoll: 'epoll.node' }
const JUNK_DIRS = new Set(['test', 'tests', '__tests__', 'example', 'examples', 'doc', 'docs', '.github', 'benchmark', 'benchmarks', 'man', 'coverage'])
// .ts/.mts/.cts: type declarations and TypeScript sources (ajv ships its sources beside dist/).
const JUNK_FILE = /(\.map|\.ts|\.mts|\.cts|\.md|\.markdown|\.gyp|\.gypi|\.c|\.cc|\.cpp|\.h|\.hpp|\.tsbuildinfo|\.browser\.[cm]?js|\.cloudflare\.[cm]?js|\.browser\.mjs)$/i
const KEEP_FILE = /^(licen[cs]e|notice|copying)/i

let removedBytes = 0
const remove = (path) => {
  if (!existsSync(path)) return
  removedBytes += sizeOf(path)
  rmSync(path, { recursive: true, force: true })
}

// 1. Reachability from the app's dependencies, by Node's lookup (nested node_modules first).
const reachable = new Set()
const visit = (pkgDir) => {
  if (reachable.has(pkgDir)) return
  reachable.add(pkgDir)
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies }
  for (const name of Object.keys(deps)) {
    if (BUILD_ONLY.has(name) || name.startsWith('@types/')) continue
    const found = resolvePackage(pkgDir, name)
    if (found !== undefined) visit(found)
    else if (!(name in (pkg.optionalDependencies ?? {}))) throw new Error(`${relative(appDir, pkgDir) || 'app'} needs ${name}, which is not installed`)
  }
}
visit(appDir)
for (const dir of packageDirs(modules)) if (!reachable.has(dir)) remove(dir)
remove(join(modules, '.bin'))
remove(join(modules, '.package-lock.json'))

// 2. Addons: only the compiled module itself.
for (const [name, file] of Object.entries(ADDONS)) {
  const dir = join(modules, name)
  const built = join(dir, 'build/Release', file)
  if (!existsSync(built)) throw new Error(`${name}: ${relative(appDir, built)} is missing; compile it before pruning`)
  for (const entry of readdirSync(join(dir, 'build'))) if (entry !== 'Release') remove(join(dir, 'build', entry))
  for (const entry of readdirSync(join(dir, 'build/Release'))) if (entry !== file) remove(join(dir, 'build/Release', entry))
  // Their src/ and deps/ are C and C++ sources (debug, for one, keeps its JavaScript in src/).
  for (const entry of ['binding.gyp', 'src', 'deps']) remove(join(dir, entry))
}

// 3. serialport: exactly one prebuild. A build/ directory would win over it at load time.
const bindings = join(modules, '@serialport/bindings-cpp')
const [platformDir, prebuild] = SERIALPORT_PREBUILD[target]
if (!existsSync(join(bindings, 'prebuilds', platformDir, prebuild))) throw new Error(`serialport has no prebuild ${platformDir}/${prebuild}`)
for (const dir of readdirSync(join(bindings, 'prebuilds'))) {
  if (dir !== platformDir) remove(join(bindings, 'prebuilds', dir))
}
for (const file of readdirSync(join(bindings, 'prebuilds', platformDir))) {
  if (file !== prebuild) remove(join(bindings, 'prebuilds', platformDir, file))
}
remove(join(bindings, 'build'))
remove(join(bindings, 'binding.gyp'))
remove(join(bindings, 'src'))

// 4. Sources, docs, tests, declarations and maps, in node_modules and in the app's own output.
const sweep = (dir, inPackage) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (inPackage && JUNK_DIRS.has(entry.name)) remove(path)
      else sweep(path, inPackage || isPackage(path))
    } else if (JUNK_FILE.test(entry.name) && !KEEP_FILE.test(entry.name)) {
      remove(path)
    }
  }
}
sweep(modules, false)
sweep(join(appDir, 'dist'), false)

console.log(`pruned ${(removedBytes / 1048576).toFixed(1)} MB; node_modules now ${(sizeOf(modules) / 1048576).toFixed(1)} MB in ${packageDirs(modules).length} packages`)

function resolvePackage(fromDir, name) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name)
    if (existsSync(join(candidate, 'package.json'))) return candidate
    if (dir === appDir || dirname(dir) === dir) return undefined
  }
}

function packageDirs(root) {
  const out = []
  if (!existsSync(root)) return out
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue
    const path = join(root, entry.name)
    if (entry.name.startsWith('@')) {
      for (const sub of readdirSync(path, { withFileTypes: true })) if (sub.isDirectory()) out.push(join(path, sub.name), ...packageDirs(join(path, sub.name, 'node_modules')))
    } else {
      out.push(path, ...packageDirs(join(path, 'node_modules')))
    }
  }
  return out
}

function isPackage(dir) {
  return existsSync(join(dir, 'package.json'))
}

function sizeOf(path) {
  const st = lstatSync(path)
  if (!st.isDirectory()) return st.size
  let total = 0
  for (const entry of readdirSync(path)) total += sizeOf(join(path, entry))
  return total
}
