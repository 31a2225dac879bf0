// The sysfs number of a header pin is base + pin, and the base is dynamic (512 for the BCM2711 on
// a Pi 4 with kernel 6.6, 571 for RP1 on a Pi 5, 0 on older kernels): it is read from
// <root>/gpiochip*/{label,base,ngpio} by the chip's label, never assumed.
import { readdir, readFile } from 'node:fs/promises'
import { err, ok, type Result } from '../../core/result.js'
import { type ChipInfo, type GpioError, gpioError } from './backend.js'

export const SYSFS_GPIO_ROOT = '/sys/class/gpio'

async function readChip(root: string, chip: string): Promise<Result<ChipInfo, GpioError>> {
  const dir = `${root}/${chip}`
  const values: string[] = []
  for (const file of ['label', 'base', 'ngpio']) {
    try {
      values.push((await readFile(`${dir}/${file}`, 'utf8')).trim())
    } catch (e) {
      return err(gpioError(e, { op: 'read', path: `${dir}/${file}` }))
    }
  }
  const [label = '', baseText = '', ngpioText = ''] = values
  const base = Number(baseText)
  const ngpio = Number(ngpioText)
  if (!/^\d+$/.test(baseText) || !/^\d+$/.test(ngpioText)) {
    return err({ code: 'EGPIO_IO', message: `${dir} has base "${baseText}" and ngpio "${ngpioText}": not numbers` })
  }
  return ok({ chip, label, base, ngpio })
}

/** Every gpiochip under `root`, in directory order. */
export async function listChips(root: string = SYSFS_GPIO_ROOT): Promise<Result<ChipInfo[], GpioError>> {
  let entries: string[]
  try {
    entries = await readdir(root)
  } catch (e) {
    return err(gpioError(e, { op: 'list', path: root }))
  }
  const chips: ChipInfo[] = []
  for (const name of entries.filter((e) => /^gpiochip\d+$/.test(e)).sort()) {
    const r = await readChip(root, name)
    if (!r.ok) return r
    chips.push(r.value)
  }
  return ok(chips)
}

/** The chip of the first label in `labels` that some gpiochip under `root` carries. */
export async function resolveChipBase(
  labels: readonly string[],
  root: string = SYSFS_GPIO_ROOT,
): Promise<Result<ChipInfo, GpioError>> {
  if (labels.length === 0) {
    return err({ code: 'EGPIO_NO_CHIP', message: 'the board profile names no gpiochip label: the base cannot be resolved' })
  }
  const listed = await listChips(root)
  if (!listed.ok) return listed
  for (const label of labels) {
    const chip = listed.value.find((c) => c.label === label)
    if (chip !== undefined) return ok(chip)
  }
  const found =
    listed.value.length === 0
      ? 'no gpiochip at all'
      : listed.value.map((c) => `${c.chip} (label ${c.label}, base ${c.base}, ngpio ${c.ngpio})`).join(', ')
  return err({
    code: 'EGPIO_NO_CHIP',
    message: `no gpiochip labelled ${labels.join(' or ')} under ${root}; found ${found}: check the board profile`,
  })
}
