import type { Clock, TimerHandle } from '../../core/clock.js'
import type { Disposable } from '../../core/scope.js'
import { createMessage } from '../session/message.js'
import type { Broker } from './broker.js'

/** Publishes broker statistics as retained `$SYS/broker/...` messages every interval. */
export class SysPublisher implements Disposable {
  readonly #broker: Broker
  readonly #clock: Clock
  readonly #intervalMs: number
  readonly #version: string
  #timer: TimerHandle | undefined
  readonly #sources = new Set<() => [string, string][]>()
  readonly #watchers = new Set<(entries: [string, string][]) => void>()

  constructor(broker: Broker, clock: Clock, intervalMs: number, version: string) {
    this.#broker = broker
    this.#clock = clock
    this.#intervalMs = intervalMs
    this.#version = version
  }

  start(): void {
    this.publishNow()
    this.#schedule()
  }

  /** Called with every set of entries published (for the status file); returns the undo. */
  onPublish(fn: (entries: [string, string][]) => void): () => void {
    this.#watchers.add(fn)
    return () => this.#watchers.delete(fn)
  }

  publishNow(): void {
    const entries = this.snapshot()
    for (const fn of this.#watchers) fn(entries)
    for (const [topic, value] of entries) {
      this.#broker.publish(
        createMessage({
          topic: `$SYS/broker/${topic}`,
          payload: Buffer.from(value),
          qos: 0,
          retain: true,
          properties: undefined,
          expiresAt: undefined,
          origin: '$SYS',
        }),
        false,
      )
    }
  }

  /** More `$SYS/broker/...` entries from a part above the broker (the sync); returns the undo. */
  addSource(fn: () => [string, string][]): () => void {
    this.#sources.add(fn)
    return () => this.#sources.delete(fn)
  }

  snapshot(): [string, string][] {
    return [...this.#brokerEntries(), ...[...this.#sources].flatMap((fn) => fn())]
  }

  #brokerEntries(): [string, string][] {
    const b = this.#broker
    const s = b.stats
    return [
      ['version', `perch ${this.#version}`],
      ['uptime', `${Math.floor((this.#clock.now() - s.startedAt) / 1000)} seconds`],
      ['clients/connected', String(b.liveCount)],
      ['clients/total', String(b.sessions.size)],
      ['clients/disconnected', String(b.sessions.size - b.liveCount)],
      ['clients/maximum', String(s.connectionsMax)],
      ['connections/total', String(s.connectionsTotal)],
      ['messages/received', String(s.messagesReceived)],
      ['messages/sent', String(s.messagesSent)],
      ['bytes/received', String(s.bytesReceived)],
      ['bytes/sent', String(s.bytesSent)],
      ['subscriptions/count', String(b.router.subscriptionCount)],
      ['retained messages/count', String(b.router.retained.size)],
      ['messages/queued', String(b.budget.messages)],
      ['messages/queued/bytes', String(b.budget.bytes)],
      ['messages/dropped', String(s.dropped)],
      ['messages/dropped/queue-full', String(s.droppedQueueFull)],
      ['messages/dropped/slow-consumer', String(s.droppedSlowConsumer)],
      ['messages/dropped/expired', String(s.droppedExpired)],
      ['publish/denied', String(s.publishDenied)],
      ['subscribe/denied', String(s.subscribeDenied)],
      ['connections/refused/max-connections', String(s.refusedMaxConnections)],
      ['connections/refused/auth', String(s.refusedAuth)],
      ['connections/connect-timeout', String(s.connectTimeouts)],
      ['connections/keepalive-timeout', String(s.keepaliveTimeouts)],
      ['connections/slow-consumer', String(s.slowConsumerDisconnects)],
      ['packets/too-large', String(s.packetsTooLarge)],
      ['packets/protocol-errors', String(s.protocolErrors)],
    ]
  }

  dispose(): void {
    this.#timer?.cancel()
    this.#timer = undefined
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimer(this.#intervalMs, () => {
      this.publishNow()
      this.#schedule()
    })
  }
}
