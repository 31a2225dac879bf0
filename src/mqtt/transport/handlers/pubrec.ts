import type { PubrecPacket } from '../../protocol/packets.js'
import { RC } from '../../protocol/reason-codes.js'
import type { PacketContext } from '../context.js'

export function handlePubrec(ctx: PacketContext, p: PubrecPacket): void {
  const id = p.messageId
  if (id === undefined) return
  // A failure reason code ends the QoS 2 flow without PUBREL [MQTT-4.3.3-5].
  if ((p.reasonCode ?? 0) >= 0x80) {
    ctx.session.abandon(id)
    return
  }
  if (!ctx.session.received(id)) {
    if (ctx.version === 5) ctx.send({ cmd: 'pubrel', messageId: id, reasonCode: RC.PACKET_IDENTIFIER_NOT_FOUND })
    else ctx.send({ cmd: 'pubrel', messageId: id })
  }
}
