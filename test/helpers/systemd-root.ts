// A throw-away root for `systemd-analyze --root` and `systemctl --root`: the system's unit tree
// (sysinit.target and friends, which verify needs) and a stub for each executable a unit names
// (verify checks that ExecStart= and ExecReload= are executable). Removed at teardown.
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

interface Teardown {
  teardown(fn: () => unknown): void
}

export function systemdRoot(t: Teardown, stubs: readonly string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'perch-root-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true })
  spawnSync('cp', ['-a', '/usr/lib/systemd/system', join(root, 'usr/lib/systemd/')])
  for (const exe of stubs) {
    mkdirSync(dirname(join(root, exe)), { recursive: true })
    copyFileSync('/usr/bin/true', join(root, exe))
    chmodSync(join(root, exe), 0o755)
  }
  return root
}
