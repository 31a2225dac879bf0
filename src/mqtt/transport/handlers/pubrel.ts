import type { PubcompPacket, PubrelPacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

/** Releases an incoming QoS 2 id; the message itself was routed on PUBLISH (method B, 4.3.3). */
export function handlePubrel(ctx: PacketContext, p: PubrelPacket): void {
  const id = p.messageId
  if (id === undefined) return
  const known = ctx.session.releaseIncomingQos2(id)
  const pubcomp: PubcompPacket =
    ctx.version === 5 && !known ? { cmd: 'pubcomp', messageId: id, reasonCode: RC.PACKET_IDENTIFIER_NOT_FOUND } : { cmd: 'pubcomp', messageId: id }
  // PUBCOMP frees the id for the client's next message, so the release must be durable first:
  // otherwise a restarted broker would take that next message for a duplicate [MQTT-4.3.3-10].
  ctx.services.broker.afterCommit(() => ctx.send(pubcomp))
}
