// The sensor bridges' wiring: which devices directory and board, which bridge builds each kind,
// and the service that runs them. Each kind's module (and with it serialport or onoff and their
// native addons) is loaded only when a device of that kind is configured.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { detectBoard } from '../bridges/boards.js'
import { type LoadResult, loadDevicesDir } from '../bridges/config-loader.js'
import type { BoardProfile, DeviceConfig } from '../bridges/device-config.js'
import { type BridgeFactories, BridgeService, type DevicesChange } from '../bridges/service.js'
import type { Clock } from '../core/clock.js'
import { describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Broker } from '../mqtt/broker/broker.js'
import type { PerchConfig } from './config.js'

export const DEVICES_STATUS_FILE = 'devices-status.json'

/** The configured devices directory, else <dataDir>/devices. */
export function devicesDir(config: PerchConfig): string {
  return config.devices.dir ?? join(config.dataDir, 'devices')
}

/** The configured board, else the one /proc/device-tree/model names, else generic-x86. */
export function resolveBoard(config: PerchConfig): { board: string; source: 'config' | 'detected'; model: string | undefined } {
  if (config.devices.board !== undefined) return { board: config.devices.board, source: 'config', model: undefined }
  const detected = detectBoard()
  return { board: detected.board, source: 'detected', model: detected.model }
}

/**
 * The devices directory's bridges: started from it, and brought in line with it again on reload.
 * Each kind's module (and the one GPIO backend) is kept once it has loaded.
 */
export class DeviceBridges {
  readonly service: BridgeService
  readonly #factories: FactoryLoader
  readonly #log: Logger

  private constructor(service: BridgeService, factories: FactoryLoader, log: Logger) {
    this.service = service
    this.#factories = factories
    this.#log = log
  }

  /**
   * Loads the devices directory and starts a bridge per enabled device. A bad file is logged
   * (file, key, reason) and skipped; a missing directory means no devices. Undefined when
   * devices.enabled is false.
   */
  static async start(config: PerchConfig, broker: Broker, clock: Clock, logger: Logger): Promise<DeviceBridges | undefined> {
    if (!config.devices.enabled) return undefined
    const log = logger.child({ component: 'bridges' })
    const factories = new FactoryLoader(log)
    const loaded = loadDevices(config, log)
    const service = BridgeService.start(loaded.devices, loaded.errors, {
      broker,
      clock,
      logger: log,
      factories: await factories.load(loaded.devices, loaded.boards),
      statusFile: join(config.dataDir, DEVICES_STATUS_FILE),
    })
    return new DeviceBridges(service, factories, log)
  }

  /** Reads the devices directory (of `config`, which may name another one) again and applies it. */
  async reload(config: PerchConfig): Promise<DevicesChange> {
    const loaded = loadDevices(config, this.#log)
    return this.service.apply(loaded.devices, loaded.errors, await this.#factories.load(loaded.devices, loaded.boards))
  }

  dispose(): Promise<void> {
    return this.service.dispose()
  }
}

function loadDevices(config: PerchConfig, log: Logger): LoadResult {
  const dir = devicesDir(config)
  const board = resolveBoard(config)
  const loaded = loadDevicesDir(dir, { board: board.board })
  for (const e of loaded.errors) log.error('device.invalid', { file: e.file, key: e.key, reason: e.reason })
  if (loaded.errors.length > 0) {
    log.warn('devices.skipped', { files: [...new Set(loaded.errors.map((e) => e.file))], hint: 'perch devices check shows every problem' })
  }
  log.info('devices.loaded', {
    dir,
    present: existsSync(dir),
    board: board.board,
    boardSource: board.source,
    model: board.model,
    devices: loaded.devices.length,
    invalid: new Set(loaded.errors.map((e) => e.file)).size,
  })
  return loaded
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/**
 * Builds the factory of each kind in use. A kind whose module fails to load fails its devices,
 * not perch, and is tried again at the next load; one that loaded is kept.
 */
class FactoryLoader {
  readonly #log: Logger
  readonly #kept: Mutable<BridgeFactories> = {}
  /** The board profiles read with the devices last loaded; GPIO devices started afterwards use them. */
  #boards: ReadonlyMap<string, BoardProfile> = new Map()

  constructor(log: Logger) {
    this.#log = log
  }

  async load(devices: readonly DeviceConfig[], boards: ReadonlyMap<string, BoardProfile>): Promise<BridgeFactories> {
    this.#boards = boards
    const kinds = new Set(devices.filter((d) => d.enabled).map((d) => d.kind))
    const kept = this.#kept
    const out: Mutable<BridgeFactories> = { ...kept }
    if (kinds.has('serial') && kept.serial === undefined) {
      try {
        const serial = await import('../bridges/serial/index.js')
        kept.serial = out.serial = (config, ctx) => serial.createSerialBridge(config, ctx)
      } catch (e) {
        out.serial = this.#unavailable('serial', e)
      }
    }
    if (kinds.has('gpio') && kept.gpio === undefined) {
      try {
        const gpio = await import('../bridges/gpio/index.js')
        // One backend for every GPIO device: lines are exported and released through it.
        let backend: ReturnType<typeof gpio.createOnoffBackend> | undefined
        kept.gpio = out.gpio = (config, ctx) => {
          backend ??= gpio.createOnoffBackend()
          return gpio.createGpioBridge(config, this.#boards.get(config.board ?? ''), ctx, backend)
        }
      } catch (e) {
        out.gpio = this.#unavailable('gpio', e)
      }
    }
    if (kinds.has('onewire') && kept.onewire === undefined) {
      try {
        const onewire = await import('../bridges/onewire/index.js')
        kept.onewire = out.onewire = (config, ctx) => onewire.createOneWireBridge(config, ctx)
      } catch (e) {
        out.onewire = this.#unavailable('onewire', e)
      }
    }
    return out
  }

  #unavailable(kind: string, e: unknown): () => never {
    const reason = `the ${kind} bridge cannot be loaded: ${describeError(e)}`
    this.#log.error('bridges.unavailable', { kind, error: describeError(e) })
    return () => {
      throw new Error(reason)
    }
  }
}
