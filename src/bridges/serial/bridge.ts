// One serial device: ManagedSerialPort -> framer -> field publisher -> the account's port, plus
// the command topic back to the device and a retained status topic.
import { describeError } from '../../core/errors.js'
import type { Disposable } from '../../core/scope.js'
import type { SerialDevice } from '../device-config.js'
import { DeviceStatus } from '../device-status.js'
import { type Bridge, type BridgeContext, type BridgeStatus, fillTemplate } from '../types.js'
import { createFramer, type Framer } from './framing.js'
import { FieldPublisher } from './mapping.js'
import { ManagedSerialPort, type ManagedSerialPortOptions } from './serial-port.js'

export interface SerialBridgeOptions {
  /** Overrides for the port (watchdog interval, jitter source), for tests. */
  readonly port?: Pick<ManagedSerialPortOptions, 'watchdogMs' | 'random'>
  /** Text frames longer than this are dropped (default 64 KB). */
  readonly maxFrame?: number
}

/** Decodes a command payload into the bytes written to the device; undefined when it is not valid. */
export function encodeCommand(payload: Buffer, encoding: 'utf8' | 'hex', append: string): Buffer | undefined {
  const tail = Buffer.from(append, 'utf8')
  if (encoding === 'utf8') return Buffer.concat([payload, tail])
  const hex = payload.toString('utf8').replace(/\s+/g, '')
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return undefined
  return Buffer.concat([Buffer.from(hex, 'hex'), tail])
}

export function createSerialBridge(config: SerialDevice, ctx: BridgeContext, options: SerialBridgeOptions = {}): Bridge {
  const log = ctx.logger.child({ bridge: 'serial', device: config.name })
  const device = new DeviceStatus(config.name, 'serial', ctx)
  const counters = device.counters
  let started = false
  let disposed: Promise<void> | undefined
  let commandSub: Disposable | undefined

  const reject = (why: string, fields: Record<string, unknown> = {}): void => {
    counters.rejected++
    log.debug('serial_rejected', { reason: why, ...fields })
  }

  const setState = (next: BridgeStatus['state'], error: string | undefined): void => device.set(next, error)

  const publisher = new FieldPublisher(
    { device: config.name, account: config.account, topic: config.topic, payload: config.payload, fields: config.fields, publish: config.publish },
    ctx.clock,
    (p) => {
      if (ctx.port.publish(p.topic, p.payload, { qos: p.qos, retain: p.retain })) counters.published++
      else reject('publish refused by the ACL', { topic: p.topic })
    },
  )

  const framerResult = createFramer(config.framing, options.maxFrame)
  const framer: Framer | undefined = framerResult.ok ? framerResult.value : undefined

  const serial = new ManagedSerialPort(
    {
      path: config.path,
      baudRate: config.baudRate,
      dataBits: config.dataBits,
      parity: config.parity,
      stopBits: config.stopBits,
      reconnect: config.reconnect,
      ...options.port,
    },
    ctx.clock,
    log,
    {
      data(chunk) {
        if (framer === undefined) return
        const out = framer.push(chunk)
        for (const why of out.rejected) reject(why)
        for (const rec of out.records) for (const why of publisher.accept(rec)) reject(why)
      },
      online() {
        framer?.reset()
        setState('online', undefined)
      },
      offline(reason) {
        counters.disconnects++
        setState('offline', reason)
      },
      attemptFailed(reason) {
        counters.errors++
        setState('offline', reason)
      },
    },
  )

  const onCommand = (topic: string, payload: Buffer): void => {
    const cmd = config.command
    if (cmd === undefined || device.state === 'stopped') return
    if (!serial.online) {
      reject('command while the device is offline', { topic })
      return
    }
    const bytes = encodeCommand(payload, cmd.encoding, cmd.append)
    if (bytes === undefined) {
      reject('command payload is not valid hex', { topic })
      return
    }
    void serial.write(bytes).then((r) => {
      if (r.ok) counters.commands++
      else reject(`command not written: ${r.error.message}`, { topic })
    })
  }

  return {
    device: config.name,
    kind: 'serial',
    status: () => device.status(),
    onStatus: (fn) => device.onStatus(fn),
    start() {
      if (started || device.state === 'stopped') return
      started = true
      if (!framerResult.ok) {
        counters.errors++
        log.error('serial_config_invalid', { error: framerResult.error })
        setState('offline', describeError(framerResult.error))
        return
      }
      if (config.command !== undefined) {
        const filter = fillTemplate(config.command.topic, { device: config.name, account: config.account })
        commandSub = ctx.port.subscribe(filter, onCommand)
        if (commandSub === undefined) {
          counters.errors++
          log.warn('serial_command_subscribe_refused', { topic: filter })
        }
      }
      serial.start()
    },
    dispose() {
      if (disposed !== undefined) return disposed
      disposed = (async () => {
        commandSub?.dispose()
        commandSub = undefined
        publisher.dispose()
        await serial.dispose()
        device.set('stopped', 'stopped')
      })()
      return disposed
    },
  }
}
