import type { PubrelPacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

/** Releases an incoming QoS 2 id; the message itself was routed on PUBLISH (method B, 4.3.3). */
export function handlePubrel(ctx: PacketContext, p: PubrelPacket): void {
  const id = p.messageId
  if (id === undefined) return
  const known = ctx.session.incomingQos2.delete(id)
  if (ctx.version === 5 && !known) ctx.send({ cmd: 'pubcomp', messageId: id, reasonCode: RC.PACKET_IDENTIFIER_NOT_FOUND })
  else ctx.send({ cmd: 'pubcomp', messageId: id })
}
