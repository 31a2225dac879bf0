// DS18B20 readings from the kernel's w1_therm driver: <root>/<id>/w1_slave holds two lines,
//   72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//   72 01 4b 46 7f ff 0e 10 57 t=23125
// Each open + read makes the sensor convert (~750 ms, blocking a threadpool thread), so reads
// are queued one at a time.
import { readdir, readFile } from 'node:fs/promises'
import { err, ok, type Result } from '../../core/result.js'

export type W1ErrorCode =
  /** The sensor's directory or w1_slave is gone (unplugged, or dropped off the bus). */
  | 'EW1_GONE'
  /** The bus directory does not exist (no w1-gpio overlay loaded). */
  | 'EW1_NO_BUS'
  | 'EW1_CRC'
  /** 85 °C: the power-on value, read before a conversion finished. */
  | 'EW1_POWER_ON'
  /** Outside the DS18B20's -55..125 °C (-127 and the like come from bad wiring). */
  | 'EW1_RANGE'
  | 'EW1_FORMAT'
  | 'EW1_IO'

export interface W1Error {
  readonly code: W1ErrorCode
  readonly message: string
}

export const W1_ROOT = '/sys/bus/w1/devices'
const MIN_MILLI = -55_000
const MAX_MILLI = 125_000
const POWER_ON_MILLI = 85_000

/** Degrees Celsius from the text of a w1_slave file. */
export function parseW1Slave(text: string, id = 'sensor'): Result<number, W1Error> {
  const lines = text.split('\n').map((l) => l.trim())
  const crc = /crc=[0-9a-f]{2} (YES|NO)$/i.exec(lines[0] ?? '')
  const temp = /t=(-?\d+)$/.exec(lines[1] ?? '')
  if (crc === null || temp === null) {
    return err({ code: 'EW1_FORMAT', message: `${id}: w1_slave is not a DS18B20 reading: ${JSON.stringify(text.slice(0, 120))}` })
  }
  if (crc[1]?.toUpperCase() !== 'YES') return err({ code: 'EW1_CRC', message: `${id}: CRC check failed (crc=NO): noise or a long cable` })
  const milli = Number(temp[1])
  if (milli === POWER_ON_MILLI) {
    return err({ code: 'EW1_POWER_ON', message: `${id}: 85 °C is the power-on value: the conversion did not run (power or wiring)` })
  }
  if (milli < MIN_MILLI || milli > MAX_MILLI) {
    return err({ code: 'EW1_RANGE', message: `${id}: ${milli / 1000} °C is outside -55..125 °C: check the wiring and the pull-up` })
  }
  return ok(milli / 1000)
}

function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code
  return typeof c === 'string' ? c : undefined
}

/** A w1 bus directory; reads go one at a time. */
export class W1Bus {
  readonly root: string
  #tail: Promise<unknown> = Promise.resolve()

  constructor(root: string = W1_ROOT) {
    this.root = root
  }

  /** The DS18B20s (family 28) on the bus, sorted. */
  async list(): Promise<Result<string[], W1Error>> {
    try {
      const entries = await readdir(this.root)
      return ok(entries.filter((e) => /^28-[0-9a-f]+$/i.test(e)).sort())
    } catch (e) {
      if (codeOf(e) === 'ENOENT') {
        return err({ code: 'EW1_NO_BUS', message: `no 1-Wire bus at ${this.root}: is dtoverlay=w1-gpio set in config.txt?` })
      }
      return err({ code: 'EW1_IO', message: `cannot list ${this.root}: ${e instanceof Error ? e.message : String(e)}` })
    }
  }

  /** Degrees Celsius from sensor `id`; queued behind any read in progress. */
  read(id: string): Promise<Result<number, W1Error>> {
    const next = this.#tail.then(() => this.#read(id))
    this.#tail = next
    return next
  }

  async #read(id: string): Promise<Result<number, W1Error>> {
    const path = `${this.root}/${id}/w1_slave`
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (e) {
      if (codeOf(e) === 'ENOENT' || codeOf(e) === 'ENODEV') {
        return err({ code: 'EW1_GONE', message: `sensor ${id} is gone: ${path} does not exist` })
      }
      return err({ code: 'EW1_IO', message: `reading ${path} failed: ${e instanceof Error ? e.message : String(e)}` })
    }
    return parseW1Slave(text, id)
  }
}
