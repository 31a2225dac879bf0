import { randomUUID } from 'node:crypto'
import type { Logger } from '../core/logger.js'
import { err, ok, type Result } from '../core/result.js'
import { type DeviceRecord, deviceId, deviceTopics, LIMITS, parseRegistration, registrationAnswer } from './model.js'
import type { Signaller } from './signals.js'
import type { FeatureStore, LinkRecord } from './store.js'

/** Why a request failed, with the HTTP status that says so. */
export interface RequestError {
  readonly status: 400 | 403 | 404 | 409 | 503
  readonly error: string
}

const requestError = (status: RequestError['status'], error: string): Result<never, RequestError> => err({ status, error })

export interface RegistryDeps {
  readonly store: FeatureStore
  readonly signals: Signaller
  readonly now: () => number
  readonly logger: Logger
  /** Publishes perch's record of a device's presence (retained); an empty payload clears it. */
  readonly publishState: (topic: string, body: string) => void
  /** Links were dropped (a feature went away): the graphs they were in must be rebuilt. */
  readonly linksDropped: (links: readonly LinkRecord[]) => Promise<void>
}

/** Counters for status and tests. */
export interface RegistryStats {
  registrations: number
  stalePresence: number
  unknownPresence: number
}

/**
 * Registration, removal and presence of devices. Both the HTTP API and the MQTT request topics
 * come here after their own access checks, with the account the device is to belong to.
 */
export class DeviceRegistry {
  readonly stats: RegistryStats = { registrations: 0, stalePresence: 0, unknownPresence: 0 }
  readonly #d: RegistryDeps

  constructor(deps: RegistryDeps) {
    this.#d = deps
  }

  /** PUT: a new device, or a new registration of the account's own device (a new rev). */
  async register(account: string, idInput: string, body: unknown): Promise<Result<Record<string, unknown>, RequestError>> {
    const id = deviceId(idInput)
    if (id === undefined) return requestError(400, `device id "${idInput}" is not a UUID`)
    const parsed = parseRegistration(body)
    if (!parsed.ok) return requestError(400, `registration of ${id}: ${parsed.error}`)
    const claimed = (body as { id?: unknown }).id
    if (claimed !== undefined && (typeof claimed !== 'string' || deviceId(claimed) !== id)) return requestError(400, `the body's "id" ${JSON.stringify(claimed)} is not the device id ${id}`)
    const { store } = this.#d
    const previous = store.device(id)
    if (previous !== undefined && previous.account !== account) return requestError(409, `device ${id} is registered to another account`)
    if (previous === undefined && store.countDevices(account) >= LIMITS.devices) return requestError(409, `account ${account} has ${LIMITS.devices} devices, the most perch keeps for one account: remove one first`)
    const features = new Set(parsed.value.features.map((f) => `${f.kind}\0${f.name}`))
    const rev = randomUUID()
    const dropped = store.transaction(() => {
      store.register(id, account, parsed.value, rev, this.#d.now())
      const gone = store.linksOfDevice(id).filter((l) => !features.has(`${l.kind}\0${l.feature}`))
      for (const l of gone) store.removeLink(l.account, l.graph, l.device, l.kind, l.feature)
      return gone
    })
    this.stats.registrations++
    this.#d.logger.info('device.registered', { device: id, account, name: parsed.value.name, features: parsed.value.features.length, again: previous !== undefined })
    if (dropped.length > 0) await this.#d.linksDropped(dropped)
    const device = store.device(id)
    if (device === undefined) return requestError(503, `device ${id} vanished while it was registered`)
    const answer = registrationAnswer(device)
    return ok(dropped.length > 0 ? { ...answer, dropped_links: dropped.map((l) => ({ graph: `${l.account}/${l.graph}`, [l.kind]: l.feature })) } : answer)
  }

  /** DELETE: the device, its links and its presence record. */
  async remove(account: string, idInput: string): Promise<Result<Record<string, unknown>, RequestError>> {
    const found = this.#owned(account, idInput)
    if (!found.ok) return found
    const d = found.value
    const { store } = this.#d
    const links = store.transaction(() => {
      const l = store.linksOfDevice(d.id)
      store.removeDevice(d.id)
      return l
    })
    this.#d.publishState(deviceTopics(d.account, d.id).state, '')
    this.#d.logger.info('device.removed', { device: d.id, account: d.account, links: links.length })
    if (links.length > 0) await this.#d.linksDropped(links)
    return ok({ state: 'ok', da_id: d.id, removed_links: links.length })
  }

  /** One device of the account (or one the caller may see, checked by the caller). */
  get(idInput: string): Result<DeviceRecord, RequestError> {
    const id = deviceId(idInput)
    if (id === undefined) return requestError(400, `device id "${idInput}" is not a UUID`)
    const d = this.#d.store.device(id)
    return d === undefined ? requestError(404, `no device ${id}`) : ok(d)
  }

  /**
   * A message on a device's uplink: presence (`{"state": "online", "rev": ...}`, usually retained,
   * and the will that says offline) or the answer to a signal (`{"command": ..., "state": "ok"}`).
   * Returns what it did, for the log and tests.
   */
  uplink(account: string, idInput: string, payload: string): 'online' | 'offline' | 'reply' | 'ignored' {
    const id = deviceId(idInput)
    const d = id === undefined ? undefined : this.#d.store.device(id)
    if (d === undefined || d.account !== account) {
      this.stats.unknownPresence++
      return 'ignored'
    }
    let body: unknown
    try {
      body = JSON.parse(payload)
    } catch {
      body = undefined
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      this.#d.logger.warn('device.bad-uplink', { device: d.id, hint: 'the uplink takes JSON objects: presence or a signal answer' })
      return 'ignored'
    }
    const b = body as Record<string, unknown>
    if (typeof b.command === 'string') return this.#d.signals.reply(d.id, b) ? 'reply' : 'ignored'
    if (b.state !== 'online' && b.state !== 'offline') return 'ignored'
    if (b.rev !== d.rev) {
      // An older registration's will (or a copy of the device that was replaced): not the device now.
      this.stats.stalePresence++
      this.#d.logger.info('device.stale-presence', { device: d.id, state: b.state, rev: typeof b.rev === 'string' ? b.rev : null })
      return 'ignored'
    }
    const at = this.#d.now()
    this.#d.store.setPresence(d.id, b.state, at)
    this.#d.publishState(deviceTopics(d.account, d.id).state, JSON.stringify({ state: b.state, rev: d.rev, since: new Date(at).toISOString() }))
    if (b.state !== d.presence) this.#d.logger.info(`device.${b.state}`, { device: d.id, account: d.account, name: d.name })
    if (b.state === 'online') this.#d.signals.online(d.id)
    return b.state
  }

  /** At start nobody is connected yet: every device is offline until it says otherwise. */
  startOffline(): void {
    const at = this.#d.now()
    for (const d of this.#d.store.devices()) {
      if (d.presence === 'offline') continue
      this.#d.publishState(deviceTopics(d.account, d.id).state, JSON.stringify({ state: 'offline', rev: d.rev, since: new Date(at).toISOString() }))
    }
    this.#d.store.allOffline(at)
  }

  #owned(account: string, idInput: string): Result<DeviceRecord, RequestError> {
    const got = this.get(idInput)
    if (!got.ok) return got
    return got.value.account === account ? got : requestError(404, `no device ${got.value.id} in account ${account}`)
  }
}
