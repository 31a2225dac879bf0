// The sysfs side of GPIO without GPIO hardware: the gpiochip base resolved by label from fake
// trees, the error messages, and the onoff backend against a fake /sys/class/gpio made of plain
// files. onoff hard-codes /sys/class/gpio, so the backend runs in a child node process under
// `unshare -m` with a temp dir bind-mounted over /sys/class/gpio (over a tmpfs on /sys/class
// where the kernel has no sysfs GPIO at all); the host's /sys is untouched. A small loop in the
// child plays the kernel: a number written to `export` makes gpioN/ appear.
//
// What this cannot test: edge interrupts. onoff arms them with epoll(EPOLLPRI) on the value file,
// and epoll refuses regular files, so watch() fails here (checked below: it surfaces as
// EGPIO_EDGE_UNSUPPORTED and the line is still released cleanly). Edges, debounce on real
// contacts and the kernel's own EINVAL/EBUSY are covered only on a real Pi (see the README's
// manual GPIO check); the bridge's edge logic is tested with an in-memory backend instead.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SCENARIO = process.env.PERCH_GPIO_SYSFS_CHILD

type Chip = { dir: string; label: string; base: number; ngpio: number }

/** A fake /sys/class/gpio: chips, export/unexport and pre-exported lines, all plain files. */
function makeTree(root: string, chips: Chip[], exported: number[], withExport = true): void {
  for (const c of chips) {
    mkdirSync(join(root, c.dir), { recursive: true })
    writeFileSync(join(root, c.dir, 'label'), `${c.label}\n`)
    writeFileSync(join(root, c.dir, 'base'), `${c.base}\n`)
    writeFileSync(join(root, c.dir, 'ngpio'), `${c.ngpio}\n`)
  }
  if (withExport) {
    writeFileSync(join(root, 'export'), '')
    writeFileSync(join(root, 'unexport'), '')
  }
  for (const n of exported) makeLine(root, n)
}

function makeLine(root: string, n: number): void {
  const d = join(root, `gpio${n}`)
  mkdirSync(d, { recursive: true })
  writeFileSync(join(d, 'direction'), 'in\n')
  writeFileSync(join(d, 'value'), '0\n')
  writeFileSync(join(d, 'edge'), 'none\n')
  writeFileSync(join(d, 'active_low'), '0\n')
}

const PI4: Chip[] = [
  { dir: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 },
  { dir: 'gpiochip570', label: 'raspberrypi-exp-gpio', base: 570, ngpio: 8 },
]
const PI5: Chip[] = [
  { dir: 'gpiochip512', label: 'gpio-brcmstb@107d508500', base: 512, ngpio: 32 },
  { dir: 'gpiochip544', label: 'gpio-brcmstb@107d508520', base: 544, ngpio: 27 },
  { dir: 'gpiochip571', label: 'pinctrl-rp1', base: 571, ngpio: 54 },
]
const LABELS = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835']

if (SCENARIO !== undefined) {
  await runChild(SCENARIO)
} else {
  await runTests()
}

/** In the private mount namespace: /sys/class/gpio is the fake tree. Prints one JSON line. */
async function runChild(scenario: string): Promise<void> {
  const { createOnoffBackend } = await import('../../src/bridges/gpio/index.js')
  const root = '/sys/class/gpio'
  const rd = (f: string): string => readFileSync(join(root, f), 'utf8').trim()
  // The kernel's part: a number written to export makes gpioN/ appear.
  const kernel = setInterval(() => {
    let text = ''
    try {
      text = rd('export')
    } catch {
      return
    }
    const n = Number(text)
    if (text !== '' && Number.isInteger(n)) {
      try {
        readFileSync(join(root, `gpio${n}`, 'value'))
      } catch {
        makeLine(root, n)
      }
    }
  }, 5)
  const out: Record<string, unknown> = {}
  try {
    const backend = createOnoffBackend()
    const chip = await backend.base(LABELS)
    out.chip = chip
    out.wrongLabel = await backend.base(['pinctrl-bcm2835'])
    if (scenario === 'board') {
      if (!chip.ok) throw new Error(chip.error.message)
      const base = chip.value.base
      const o = await backend.openOutput({ pin: 17, base, activeLow: false, initial: 1 })
      if (!o.ok) throw new Error(o.error.message)
      out.outLine = o.value.line
      out.exportAfterOutput = rd('export')
      out.outDirection = rd(`gpio${base + 17}/direction`)
      out.outActiveLow = rd(`gpio${base + 17}/active_low`)
      out.write0 = o.value.write(0)
      out.valueAfterWrite0 = rd(`gpio${base + 17}/value`)
      out.read = o.value.read()
      out.write1 = o.value.write(1)
      out.valueAfterWrite1 = rd(`gpio${base + 17}/value`)

      // BCM 27 is already exported: no write to export, direction/edge/active_low still set.
      writeFileSync(join(root, 'export'), '')
      const i = await backend.openInput({ pin: 27, base, activeLow: true, edge: 'both' })
      if (!i.ok) throw new Error(i.error.message)
      out.exportAfterInput = rd('export')
      out.inDirection = rd(`gpio${base + 27}/direction`)
      out.inEdge = rd(`gpio${base + 27}/edge`)
      out.inActiveLow = rd(`gpio${base + 27}/active_low`)
      out.r0 = i.value.read()
      writeFileSync(join(root, `gpio${base + 27}/value`), '1')
      out.r1 = i.value.read()
      out.watch = i.value.watch(
        () => {},
        () => {},
      )
      out.releaseIn = i.value.release()
      out.unexportAfterIn = rd('unexport')
      out.releaseOut = o.value.release()
      out.unexportAfterOut = rd('unexport')
      out.releaseTwice = o.value.release()
    } else {
      // eacces, nosysfs: the export fails and is mapped.
      out.open = await backend.openOutput({ pin: 17, base: chip.ok ? chip.value.base : 0, activeLow: false, initial: 0 })
    }
  } catch (e) {
    out.thrown = e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e)
  }
  clearInterval(kernel)
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

async function runTests(): Promise<void> {
  const { default: t } = await import('tap')
  const { gpioError, resolveChipBase } = await import('../../src/bridges/gpio/index.js')
  const SELF = fileURLToPath(import.meta.url)

  const tempDir = (tt: { teardown(fn: () => unknown): void }): string => {
    const d = mkdtempSync(join(tmpdir(), 'perch-gpio-'))
    tt.teardown(() => rmSync(d, { recursive: true, force: true }))
    return d
  }

  t.test('the base is resolved by label, in the order the board lists labels', async (t) => {
    const pi4 = tempDir(t)
    makeTree(pi4, PI4, [])
    t.same(await resolveChipBase(['pinctrl-rp1', 'pinctrl-bcm2711'], pi4), {
      ok: true,
      value: { chip: 'gpiochip512', label: 'pinctrl-bcm2711', base: 512, ngpio: 58 },
    })
    const pi5 = tempDir(t)
    makeTree(pi5, PI5, [])
    t.same(await resolveChipBase(['pinctrl-rp1'], pi5), { ok: true, value: { chip: 'gpiochip571', label: 'pinctrl-rp1', base: 571, ngpio: 54 } })
    const old = tempDir(t)
    makeTree(old, [{ dir: 'gpiochip0', label: 'pinctrl-bcm2835', base: 0, ngpio: 54 }], [])
    t.match(await resolveChipBase(['pinctrl-bcm2711', 'pinctrl-bcm2835'], old), { ok: true, value: { base: 0 } })

    const wrong = await resolveChipBase(['pinctrl-bcm2711'], pi5)
    t.match(wrong, { ok: false, error: { code: 'EGPIO_NO_CHIP' } })
    t.equal(
      wrong.ok ? '' : wrong.error.message,
      `no gpiochip labelled pinctrl-bcm2711 under ${pi5}; found gpiochip512 (label gpio-brcmstb@107d508500, base 512, ngpio 32), gpiochip544 (label gpio-brcmstb@107d508520, base 544, ngpio 27), gpiochip571 (label pinctrl-rp1, base 571, ngpio 54): check the board profile`,
    )
    const empty = tempDir(t)
    t.match(await resolveChipBase(['pinctrl-rp1'], empty), { ok: false, error: { code: 'EGPIO_NO_CHIP', message: /found no gpiochip at all/ } })
    t.match(await resolveChipBase(['pinctrl-rp1'], join(empty, 'absent')), {
      ok: false,
      error: { code: 'EGPIO_NO_SYSFS', message: /CONFIG_GPIO_SYSFS .*absent does not exist/ },
    })
    t.match(await resolveChipBase([], pi4), { ok: false, error: { code: 'EGPIO_NO_CHIP' } })
    writeFileSync(join(pi4, 'gpiochip570', 'base'), 'x\n')
    t.match(await resolveChipBase(['pinctrl-bcm2711'], pi4), { ok: false, error: { message: /gpiochip570 has base "x"/ } })
  })

  t.test('errors are mapped to messages that say what to do', async (t) => {
    const e = (code: string): Error => Object.assign(new Error(`${code}: failed`), { code })
    const at = { path: '/sys/class/gpio/export', pin: 17, base: 512 }
    t.same(gpioError(e('EINVAL'), { op: 'export', ...at }), {
      code: 'EGPIO_INVALID_PIN',
      message: 'pin 17 is not valid here: the kernel number is base+N (512+17=529); check the board profile',
    })
    t.same(gpioError(e('EACCES'), { op: 'export', ...at }), {
      code: 'EGPIO_ACCESS',
      message:
        'permission denied on /sys/class/gpio/export: run perch as a member of the gpio group (the systemd unit adds it) or add a udev rule: SUBSYSTEM=="gpio", KERNEL=="gpiochip*", ACTION=="add", GROUP="gpio", MODE="0660"',
    })
    t.same(gpioError(e('ENOENT'), { op: 'export', ...at }), {
      code: 'EGPIO_NO_SYSFS',
      message: 'no sysfs GPIO interface: the kernel lacks CONFIG_GPIO_SYSFS (not a GPIO board?): /sys/class/gpio/export does not exist',
    })
    t.match(gpioError(e('EBUSY'), { op: 'export', ...at }), { code: 'EGPIO_BUSY', message: /pin 17 \(512\+17=529\) is busy/ })
    t.match(gpioError(new Error('Operation not permitted'), { op: 'watch', path: '/sys/class/gpio/gpio529/value' }), {
      code: 'EGPIO_EDGE_UNSUPPORTED',
    })
    t.match(gpioError(e('EIO'), { op: 'write', path: '/sys/class/gpio/gpio529/value' }), {
      code: 'EGPIO_IO',
      message: 'write /sys/class/gpio/gpio529/value failed: EIO EIO: failed',
    })
  })

  const root = process.getuid?.() === 0
  const nsArgs = root ? ['-m', '--propagation', 'private'] : ['-Urm', '--propagation', 'private']
  const probeDir = mkdtempSync(join(tmpdir(), 'perch-ns-probe-'))
  const probe = spawnSync('unshare', [...nsArgs, 'sh', '-c', `mount -t tmpfs probe ${probeDir}`], { encoding: 'utf8', timeout: 10_000 })
  rmSync(probeDir, { recursive: true, force: true })
  const skip =
    probe.status === 0
      ? false
      : `no private mount namespace here (unshare ${nsArgs.join(' ')} then mount failed: ${(probe.error?.message ?? probe.stderr).trim() || `exit ${probe.status}`})`

  // Mounts the tree over /sys/class/gpio (over a tmpfs on /sys/class when sysfs has no gpio).
  const MOUNT = `set -e
tree=$1; shift
if [ ! -d /sys/class/gpio ]; then mount -t tmpfs perch-fake-class /sys/class; mkdir /sys/class/gpio; fi
mount --bind "$tree" /sys/class/gpio
exec "$@"`

  function runInNamespace(scenario: string, tree: string, prefix: string[] = []): Record<string, unknown> {
    const args = [...nsArgs, 'sh', '-c', MOUNT, 'sh', tree, ...prefix, process.execPath, ...process.execArgv, SELF]
    const r = spawnSync('unshare', args, { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PERCH_GPIO_SYSFS_CHILD: scenario } })
    const line = r.stdout.trim().split('\n').pop() ?? ''
    if (r.status !== 0 || !line.startsWith('{')) throw new Error(`child failed (${r.status}): ${r.stderr.slice(-2000)}`)
    return JSON.parse(line) as Record<string, unknown>
  }

  for (const [name, chips, base] of [
    ['Pi 4 layout (pinctrl-bcm2711, base 512)', PI4, 512],
    ['Pi 5 layout (pinctrl-rp1, base 571)', PI5, 571],
  ] as const) {
    t.test(`onoff backend in a fake sysfs, ${name}`, { skip }, async (t) => {
      const tree = tempDir(t)
      makeTree(tree, chips, [base + 27])
      const r = runInNamespace('board', tree)
      t.equal(r.thrown, undefined)
      t.match(r.chip, { ok: true, value: { base } })
      t.match(r.wrongLabel, { ok: false, error: { code: 'EGPIO_NO_CHIP', message: /no gpiochip labelled pinctrl-bcm2835 .*found gpiochip512/ } })
      t.equal(r.outLine, base + 17)
      t.equal(r.exportAfterOutput, String(base + 17), 'base + BCM 17 written to export')
      t.equal(r.outDirection, 'high', 'direction and initial level set together')
      t.equal(r.outActiveLow, '0')
      t.same(r.write0, { ok: true })
      t.equal(r.valueAfterWrite0, '0')
      t.same(r.read, { ok: true, value: 0 })
      t.equal(r.valueAfterWrite1, '1')
      t.equal(r.exportAfterInput, '', 'an exported line is not exported again')
      t.equal(r.inDirection, 'in')
      t.equal(r.inEdge, 'both')
      t.equal(r.inActiveLow, '1')
      t.same(r.r0, { ok: true, value: 0 })
      t.same(r.r1, { ok: true, value: 1 }, 'the value file is read on each read()')
      t.match(r.watch, { ok: false, error: { code: 'EGPIO_EDGE_UNSUPPORTED' } }, 'no edges from plain files')
      t.same(r.releaseIn, { ok: true }, 'released cleanly after the failed watch')
      t.equal(r.unexportAfterIn, String(base + 27))
      t.same(r.releaseOut, { ok: true })
      t.equal(r.unexportAfterOut, String(base + 17))
      t.same(r.releaseTwice, { ok: true })
      t.equal(readFileSync(join(tree, 'unexport'), 'utf8'), String(base + 17), 'the host sees the writes through the bind mount')
    })
  }

  t.test('onoff backend: an export file it may not write gives the gpio group / udev message', { skip }, async (t) => {
    const tree = tempDir(t)
    makeTree(tree, PI4, [])
    chmodSync(join(tree, 'export'), 0o444)
    // As root, drop the capability that overrides file modes so the 0444 export refuses.
    const prefix = root ? ['setpriv', '--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search'] : []
    const r = runInNamespace('eacces', tree, prefix)
    t.equal(r.thrown, undefined)
    t.match(r.open, {
      ok: false,
      error: { code: 'EGPIO_ACCESS', message: /^permission denied on \/sys\/class\/gpio\/export: run perch as a member of the gpio group .*GROUP="gpio", MODE="0660"/ },
    })
  })

  t.test('onoff backend: no export file gives the no-sysfs message', { skip }, async (t) => {
    const tree = tempDir(t)
    makeTree(tree, PI4, [], false)
    const r = runInNamespace('nosysfs', tree)
    t.equal(r.thrown, undefined)
    t.match(r.open, {
      ok: false,
      error: { code: 'EGPIO_NO_SYSFS', message: /^no sysfs GPIO interface: the kernel lacks CONFIG_GPIO_SYSFS \(not a GPIO board\?\)/ },
    })
  })
}
