// Runs the configured devices: one bridge per enabled device, each publishing through its own
// in-process client acting as the device's account. Keeps their statuses, offers them as $SYS
// entries and as a status file for `perch devices list`, brings them in line with re-read device
// files on reload, and releases them in reverse order.
import { renameSync, writeFileSync } from 'node:fs'
import type { Clock, TimerHandle } from '../core/clock.js'
import { describeError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Disposable } from '../core/scope.js'
import type { Broker } from '../mqtt/broker/broker.js'
import type { DeviceFileError } from './boards.js'
import type { DeviceConfig, GpioDevice, OneWireDevice, SerialDevice } from './device-config.js'
import { LocalBridgePort } from './local-port.js'
import type { Bridge, BridgeContext, BridgeCounters, BridgeKind, BridgePort, BridgeStatus } from './types.js'

/** How each kind of device becomes a bridge; injected, so this module knows no kind. */
export interface BridgeFactories {
  readonly serial?: (config: SerialDevice, ctx: BridgeContext) => Bridge
  readonly gpio?: (config: GpioDevice, ctx: BridgeContext) => Bridge
  readonly onewire?: (config: OneWireDevice, ctx: BridgeContext) => Bridge
}

/** A device's live state: the bridge's own states, plus disabled (not started) and failed (could not be built). */
export type DeviceState = BridgeStatus['state'] | 'disabled' | 'failed'

export interface DeviceEntry {
  readonly config: DeviceConfig
  readonly state: DeviceState
  readonly since: number
  readonly lastError: string | undefined
  readonly counters: Readonly<BridgeCounters>
}

/** What `<dataDir>/devices-status.json` holds. */
export interface DevicesStatusFile {
  readonly pid: number
  /** When perch wrote it (ms); rewritten at least every heartbeat while perch runs. */
  readonly writtenAt: number
  readonly heartbeatMs: number
  /** Set when perch stopped: the states are the last ones seen. */
  readonly stoppedAt: number | undefined
  readonly devices: readonly {
    readonly device: string
    readonly kind: BridgeKind
    readonly account: string
    readonly file: string
    readonly enabled: boolean
    readonly state: DeviceState
    readonly since: number
    readonly lastError: string | null
    readonly counters: Readonly<BridgeCounters>
  }[]
  /** Files that were skipped at the last start or reload. */
  readonly problems: readonly DeviceFileError[]
}

export interface BridgeServiceOptions {
  readonly broker: Broker
  readonly clock: Clock
  readonly logger: Logger
  readonly factories: BridgeFactories
  /** Where to keep the status file; none when undefined. */
  readonly statusFile?: string | undefined
  /** The status file is rewritten at least this often (default 10 s). */
  readonly heartbeatMs?: number
  /** How long one bridge may take to release its device at stop (default 5 s). */
  readonly disposeTimeoutMs?: number
  /** Opens a device's way into MQTT; default: a LocalBridgePort on the broker. */
  readonly openPort?: (device: string, account: string) => BridgePort & Disposable
}

const ZERO: BridgeCounters = { published: 0, commands: 0, rejected: 0, disconnects: 0, errors: 0 }

interface Running {
  readonly config: DeviceConfig
  readonly bridge: Bridge | undefined
  readonly port: (BridgePort & Disposable) | undefined
  readonly unwatch: (() => void) | undefined
  /** For disabled and failed devices. */
  readonly fixed: { state: DeviceState; since: number; lastError: string | undefined } | undefined
}

/** What apply() did, by device name. */
export interface DevicesChange {
  /** New devices. */
  readonly started: readonly string[]
  /** Devices no longer configured. */
  readonly stopped: readonly string[]
  /** Devices whose definition changed, or that had failed, stopped and started again. */
  readonly restarted: readonly string[]
  /** Devices left running untouched. */
  readonly unchanged: readonly string[]
}

export class BridgeService {
  readonly #options: BridgeServiceOptions
  #devices: Running[] = []
  #problems: readonly DeviceFileError[]
  #factories: BridgeFactories
  #applying: Promise<unknown> = Promise.resolve()
  readonly #log: Logger
  #heartbeat: TimerHandle | undefined
  #writePending = false
  #writeFailed = false
  #stopping: Promise<void> | undefined

  private constructor(problems: readonly DeviceFileError[], options: BridgeServiceOptions) {
    this.#options = options
    this.#problems = problems
    this.#factories = options.factories
    this.#log = options.logger
  }

  /** Starts every enabled device (a device that cannot be built is reported as failed; the others run). */
  static start(configs: readonly DeviceConfig[], problems: readonly DeviceFileError[], options: BridgeServiceOptions): BridgeService {
    const service = new BridgeService(problems, options)
    for (const config of configs) service.#startOne(config)
    service.#writeStatus()
    service.#scheduleHeartbeat()
    return service
  }

  #startOne(config: DeviceConfig): void {
    const { clock } = this.#options
    if (!config.enabled) {
      this.#devices.push({ config, bridge: undefined, port: undefined, unwatch: undefined, fixed: { state: 'disabled', since: clock.now(), lastError: undefined } })
      return
    }
    let port: (BridgePort & Disposable) | undefined
    let bridge: Bridge | undefined
    try {
      port = this.#openPort(config)
      const logger = this.#log.child({ device: config.name, kind: config.kind })
      bridge = this.#build(config, { port, clock, logger })
      const unwatch = bridge.onStatus((s) => this.#onStatus(config, s))
      this.#devices.push({ config, bridge, port, unwatch, fixed: undefined })
      bridge.start()
      this.#log.info('device.started', { device: config.name, kind: config.kind, account: config.account })
    } catch (e) {
      const reason = describeError(e)
      this.#log.error('device.failed', { device: config.name, kind: config.kind, file: config.file, error: reason })
      const started = this.#devices.at(-1)
      if (started?.config === config) {
        // start() threw: keep the entry so that the bridge is still released at stop.
        this.#devices[this.#devices.length - 1] = { ...started, fixed: { state: 'failed', since: clock.now(), lastError: reason } }
      } else {
        port?.dispose()
        this.#devices.push({ config, bridge: undefined, port: undefined, unwatch: undefined, fixed: { state: 'failed', since: clock.now(), lastError: reason } })
      }
    }
  }

  #openPort(config: DeviceConfig): BridgePort & Disposable {
    const open = this.#options.openPort ?? ((device: string, account: string) => new LocalBridgePort(this.#options.broker, device, account))
    return open(config.name, config.account)
  }

  #build(config: DeviceConfig, ctx: BridgeContext): Bridge {
    const f = this.#factories
    const missing = (): never => {
      throw new Error(`no ${config.kind} bridge in this build`)
    }
    switch (config.kind) {
      case 'serial':
        return f.serial === undefined ? missing() : f.serial(config, ctx)
      case 'gpio':
        return f.gpio === undefined ? missing() : f.gpio(config, ctx)
      case 'onewire':
        return f.onewire === undefined ? missing() : f.onewire(config, ctx)
    }
  }

  #onStatus(config: DeviceConfig, s: BridgeStatus): void {
    const fields = { device: config.name, state: s.state, lastError: s.lastError }
    if (s.state === 'offline') this.#log.warn('device.state', fields)
    else this.#log.info('device.state', fields)
    // Several changes in one turn make one write.
    if (this.#writePending) return
    this.#writePending = true
    queueMicrotask(() => {
      this.#writePending = false
      if (this.#stopping === undefined) this.#writeStatus()
    })
  }

  /**
   * Makes the running devices these, without touching a device whose definition is unchanged: its
   * bridge keeps its port, its state and its counters. Devices that vanished or changed are
   * released first (a changed one may reopen the same serial port or GPIO lines), then new and
   * changed ones start with `factories`. A device that had failed is tried again. Calls queue.
   */
  apply(configs: readonly DeviceConfig[], problems: readonly DeviceFileError[], factories: BridgeFactories): Promise<DevicesChange> {
    const run = this.#applying.then(() => this.#apply(configs, problems, factories))
    this.#applying = run.catch(() => undefined)
    return run
  }

  async #apply(configs: readonly DeviceConfig[], problems: readonly DeviceFileError[], factories: BridgeFactories): Promise<DevicesChange> {
    const none: DevicesChange = { started: [], stopped: [], restarted: [], unchanged: [] }
    if (this.#stopping !== undefined) return none
    const before = new Set(this.#devices.map((d) => d.config.name))
    const wanted = new Map(configs.map((c) => [c.name, c]))
    const kept = new Map<string, Running>()
    const released: Running[] = []
    for (const d of this.#devices) {
      const next = wanted.get(d.config.name)
      if (next !== undefined && d.fixed?.state !== 'failed' && sameDefinition(d.config, next)) kept.set(d.config.name, d)
      else released.push(d)
    }
    for (const d of released.reverse()) {
      await this.#release(d)
      this.#devices = this.#devices.filter((x) => x !== d)
    }
    // dispose() may have begun meanwhile: it releases what is left, and nothing new starts.
    if (this.#stopping !== undefined) return none
    this.#factories = factories
    this.#problems = problems
    this.#devices = []
    for (const config of configs) {
      const same = kept.get(config.name)
      if (same !== undefined) this.#devices.push(same)
      else this.#startOne(config)
    }
    this.#writeStatus()
    const names = configs.map((c) => c.name)
    return {
      started: names.filter((n) => !before.has(n)),
      stopped: [...before].filter((n) => !wanted.has(n)),
      restarted: names.filter((n) => before.has(n) && !kept.has(n)),
      unchanged: names.filter((n) => kept.has(n)),
    }
  }

  /** Every configured device with its live state, in start order. */
  list(): DeviceEntry[] {
    return this.#devices.map((d) => entryOf(d))
  }

  /** The problems of the files that were skipped at the last start or reload. */
  get problems(): readonly DeviceFileError[] {
    return this.#problems
  }

  /** `$SYS/broker/bridges/...` entries (for SysPublisher.addSource). */
  sysEntries(): [string, string][] {
    const list = this.list()
    const out: [string, string][] = [
      ['bridges/count', String(list.length)],
      ['bridges/online', String(list.filter((d) => d.state === 'online').length)],
      ['bridges/invalid', String(new Set(this.#problems.map((p) => p.file)).size)],
    ]
    for (const d of list) {
      const at = `bridges/${d.config.name}`
      out.push(
        [`${at}/state`, d.state],
        [`${at}/published`, String(d.counters.published)],
        [`${at}/commands`, String(d.counters.commands)],
        [`${at}/rejected`, String(d.counters.rejected)],
        [`${at}/disconnects`, String(d.counters.disconnects)],
        [`${at}/errors`, String(d.counters.errors)],
      )
    }
    return out
  }

  /** Releases every bridge in reverse order of start, each within the timeout, then its port. */
  dispose(): Promise<void> {
    this.#stopping ??= this.#dispose()
    return this.#stopping
  }

  async #dispose(): Promise<void> {
    this.#heartbeat?.cancel()
    this.#heartbeat = undefined
    // A running apply() finishes releasing first, so no bridge is released twice.
    await this.#applying
    for (const d of [...this.#devices].reverse()) await this.#release(d)
    this.#writeStatus(this.#options.clock.now())
  }

  /** Stops watching a device, then releases its bridge (within the timeout) and its port. */
  async #release(d: Running): Promise<void> {
    d.unwatch?.()
    if (d.bridge !== undefined) await this.#disposeBridge(d.config, d.bridge)
    try {
      d.port?.dispose()
    } catch (e) {
      this.#log.error('device.port-dispose-failed', { device: d.config.name, error: describeError(e) })
    }
  }

  async #disposeBridge(config: DeviceConfig, bridge: Bridge): Promise<void> {
    const timeoutMs = this.#options.disposeTimeoutMs ?? 5000
    let timer: TimerHandle | undefined
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = this.#options.clock.setTimer(timeoutMs, () => resolve('timeout'))
    })
    try {
      const r = await Promise.race([bridge.dispose().then(() => 'done' as const), timedOut])
      if (r === 'timeout') this.#log.error('device.dispose-timeout', { device: config.name, timeoutMs })
    } catch (e) {
      this.#log.error('device.dispose-failed', { device: config.name, error: describeError(e) })
    } finally {
      timer?.cancel()
    }
  }

  #scheduleHeartbeat(): void {
    if (this.#options.statusFile === undefined) return
    this.#heartbeat = this.#options.clock.setTimer(this.#options.heartbeatMs ?? 10_000, () => {
      this.#writeStatus()
      this.#scheduleHeartbeat()
    })
  }

  /** Writes the status file through a temporary file and a rename, so a reader never sees half of it. */
  #writeStatus(stoppedAt?: number): void {
    const file = this.#options.statusFile
    if (file === undefined) return
    const body: DevicesStatusFile = {
      pid: process.pid,
      writtenAt: this.#options.clock.now(),
      heartbeatMs: this.#options.heartbeatMs ?? 10_000,
      stoppedAt,
      devices: this.list().map((d) => ({
        device: d.config.name,
        kind: d.config.kind,
        account: d.config.account,
        file: d.config.file,
        enabled: d.config.enabled,
        state: d.state,
        since: d.since,
        lastError: d.lastError ?? null,
        counters: d.counters,
      })),
      problems: this.#problems,
    }
    const tmp = `${file}.${process.pid}.tmp`
    try {
      writeFileSync(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o640 })
      renameSync(tmp, file)
      this.#writeFailed = false
    } catch (e) {
      // Once per run of failures: a full disk must not flood the log.
      if (!this.#writeFailed) this.#log.warn('devices.status-write-failed', { file, error: describeError(e) })
      this.#writeFailed = true
    }
  }
}

/** Device definitions are plain data from the loader, built in a fixed key order. */
function sameDefinition(a: DeviceConfig, b: DeviceConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

function entryOf(d: Running): DeviceEntry {
  if (d.fixed !== undefined || d.bridge === undefined) {
    const f = d.fixed ?? { state: 'failed' as const, since: 0, lastError: undefined }
    return { config: d.config, state: f.state, since: f.since, lastError: f.lastError, counters: d.bridge?.status().counters ?? ZERO }
  }
  const s = d.bridge.status()
  return { config: d.config, state: s.state, since: s.since, lastError: s.lastError, counters: { ...s.counters } }
}
