// The sensor bridges' wiring: which devices directory and board, which bridge builds each kind,
// and the service that runs them. Each kind's module (and with it serialport or onoff and their
// native addons) is loaded only when a device of that kind is configured.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { detectBoard } from '../bridges/boards.js'
import { loadDevicesDir } from '../bridges/config-loader.js'
import type { BoardProfile, DeviceConfig } from '../bridges/device-config.js'
import { type BridgeFactories, BridgeService } from '../bridges/service.js'
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
 * Loads the devices directory and starts a bridge per enabled device. A bad file is logged
 * (file, key, reason) and skipped; a missing directory means no devices. Undefined when
 * devices.enabled is false.
 */
export async function startBridges(config: PerchConfig, broker: Broker, clock: Clock, logger: Logger): Promise<BridgeService | undefined> {
  if (!config.devices.enabled) return undefined
  const log = logger.child({ component: 'bridges' })
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
  const factories = await loadFactories(loaded.devices, loaded.boards, log)
  return BridgeService.start(loaded.devices, loaded.errors, {
    broker,
    clock,
    logger: log,
    factories,
    statusFile: join(config.dataDir, DEVICES_STATUS_FILE),
  })
}

/** Builds the factory of each kind in use; a kind whose module fails to load fails its devices, not perch. */
async function loadFactories(devices: readonly DeviceConfig[], boards: ReadonlyMap<string, BoardProfile>, logger: Logger): Promise<BridgeFactories> {
  const kinds = new Set(devices.filter((d) => d.enabled).map((d) => d.kind))
  const unavailable = (kind: string, e: unknown): (() => never) => {
    const reason = `the ${kind} bridge cannot be loaded: ${describeError(e)}`
    logger.error('bridges.unavailable', { kind, error: describeError(e) })
    return () => {
      throw new Error(reason)
    }
  }
  const factories: { -readonly [K in keyof BridgeFactories]: BridgeFactories[K] } = {}
  if (kinds.has('serial')) {
    try {
      const serial = await import('../bridges/serial/index.js')
      factories.serial = (config, ctx) => serial.createSerialBridge(config, ctx)
    } catch (e) {
      factories.serial = unavailable('serial', e)
    }
  }
  if (kinds.has('gpio')) {
    try {
      const gpio = await import('../bridges/gpio/index.js')
      // One backend for every GPIO device: lines are exported and released through it.
      let backend: ReturnType<typeof gpio.createOnoffBackend> | undefined
      factories.gpio = (config, ctx) => {
        backend ??= gpio.createOnoffBackend()
        return gpio.createGpioBridge(config, boards.get(config.board ?? ''), ctx, backend)
      }
    } catch (e) {
      factories.gpio = unavailable('gpio', e)
    }
  }
  if (kinds.has('onewire')) {
    try {
      const onewire = await import('../bridges/onewire/index.js')
      factories.onewire = (config, ctx) => onewire.createOneWireBridge(config, ctx)
    } catch (e) {
      factories.onewire = unavailable('onewire', e)
    }
  }
  return factories
}
