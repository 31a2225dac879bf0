import { readFileSync } from 'node:fs'

/** The version in package.json, which sits two levels above both src/app and dist/app. */
export function readVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
    if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string') return pkg.version
  } catch {
    // Fall through: a missing package.json only loses the version string.
  }
  return 'unknown'
}
