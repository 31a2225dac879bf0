import type { PubcompPacket } from '../../protocol/packets.js'
import type { PacketContext } from '../context.js'

export function handlePubcomp(ctx: PacketContext, p: PubcompPacket): void {
  if (p.messageId !== undefined) ctx.session.complete(p.messageId, 'await-comp')
}
