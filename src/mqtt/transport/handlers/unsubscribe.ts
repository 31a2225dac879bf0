import type { UnsubscribePacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

export function handleUnsubscribe(ctx: PacketContext, p: UnsubscribePacket): void {
  if (p.unsubscriptions.length === 0) {
    return ctx.fail(RC.PROTOCOL_ERROR, '[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters')
  }
  const codes = p.unsubscriptions.map((filter) =>
    ctx.services.broker.unsubscribe(ctx.session, ctx.client, filter) ? RC.SUCCESS : RC.NO_SUBSCRIPTION_EXISTED,
  )
  // [MQTT-3.10.4-4] UNSUBACK even when nothing was removed; 3.1.1 has no per-filter codes.
  if (ctx.version === 5) ctx.send({ cmd: 'unsuback', messageId: p.messageId ?? 0, granted: codes })
  else ctx.send({ cmd: 'unsuback', messageId: p.messageId ?? 0, granted: [] })
}
