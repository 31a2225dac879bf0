import type { SubscribePacket } from '../../protocol/packets.js'
import { RC, subackCodeFor } from '../../protocol/reason-codes.js'
import { checkSubscribe } from '../../protocol/validate.js'
import type { SubscriptionOptions } from '../../session/session.js'
import { parseShared, validTopicFilter } from '../../topic/validate.js'
import type { PacketContext } from '../context.js'

interface Accepted {
  filter: string
  options: SubscriptionOptions
  isNew: boolean
  filtered: boolean
}

export function handleSubscribe(ctx: PacketContext, p: SubscribePacket): void {
  const { broker, limits, logger } = ctx.services
  const bad = checkSubscribe(p, ctx.version)
  if (bad !== null) return ctx.fail(bad.reasonCode, bad.message)
  const subscriptionId = ctx.version === 5 ? p.properties?.subscriptionIdentifier : undefined
  const codes: number[] = []
  const accepted: Accepted[] = []
  for (const s of p.subscriptions) {
    const parsed = parseShared(s.topic)
    const reason =
      parsed.kind === 'invalid' ? parsed.reason : validTopicFilter(parsed.filter, limits.maxTopicLength, limits.maxTopicLevels)
    if (reason !== null) {
      logger.info('subscribe.invalid-filter', { clientId: ctx.client.clientId, filter: s.topic, reason })
      codes.push(subackCodeFor(ctx.version, RC.TOPIC_FILTER_INVALID))
      continue
    }
    if (parsed.kind === 'shared' && s.nl === true) {
      // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
      return ctx.fail(RC.PROTOCOL_ERROR, '[MQTT-3.8.3-4] no-local on a shared subscription')
    }
    const decision = broker.hooks.authorizeSubscribe(ctx.client, s.topic)
    if (decision === 'deny') {
      broker.stats.subscribeDenied++
      broker.denied(ctx.client, 'subscribe', s.topic)
      codes.push(subackCodeFor(ctx.version, RC.NOT_AUTHORIZED))
      continue
    }
    const options: SubscriptionOptions = {
      qos: s.qos,
      noLocal: s.nl === true,
      retainAsPublished: s.rap === true,
      retainHandling: s.rh === 1 || s.rh === 2 ? s.rh : 0,
      subscriptionId,
    }
    const filtered = decision === 'filtered'
    const isNew = broker.subscribe(ctx.session, ctx.client, s.topic, options, filtered)
    accepted.push({ filter: s.topic, options, isNew, filtered })
    codes.push(s.qos)
  }
  ctx.send({ cmd: 'suback', messageId: p.messageId ?? 0, granted: codes })
  // Retained messages follow the SUBACK [MQTT-3.8.4-4].
  for (const a of accepted) broker.sendRetained(ctx.session, ctx.client, a.filter, a.options, a.isNew, a.filtered)
}
