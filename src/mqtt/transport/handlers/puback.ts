import type { PubackPacket } from '../../protocol/packets.js'
import type { PacketContext } from '../context.js'

/** An ack for an unknown id is ignored: it may answer a message from before a takeover. */
export function handlePuback(ctx: PacketContext, p: PubackPacket): void {
  if (p.messageId !== undefined) ctx.session.complete(p.messageId, 'await-ack')
}
