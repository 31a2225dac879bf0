// mqtt-packet's parser module on its own: importing the package root would also load its
// encoder and that encoder's 8 MB number cache.
declare module 'mqtt-packet/parser.js' {
  import type { EventEmitter } from 'node:events'
  import type { Packet } from 'mqtt-packet'

  interface PacketParser extends EventEmitter {
    parse(buf: Buffer): number
    on(event: 'packet', listener: (packet: Packet) => void): this
    on(event: 'error', listener: (error: unknown) => void): this
  }

  const Parser: { parser(settings?: { protocolVersion?: number }): PacketParser }
  export default Parser
}
