/** Broker counters: plain fields, so counting on the hot path is one increment. */
export class BrokerStats {
  readonly startedAt: number
  connectionsCurrent = 0
  connectionsTotal = 0
  connectionsMax = 0
  messagesReceived = 0
  messagesSent = 0
  bytesReceived = 0
  bytesSent = 0
  publishDenied = 0
  subscribeDenied = 0
  droppedQueueFull = 0
  droppedSlowConsumer = 0
  droppedExpired = 0
  refusedMaxConnections = 0
  refusedAuth = 0
  connectTimeouts = 0
  keepaliveTimeouts = 0
  packetsTooLarge = 0
  protocolErrors = 0
  slowConsumerDisconnects = 0
  willsPublished = 0
  sessionsExpired = 0

  constructor(now: number) {
    this.startedAt = now
  }

  get dropped(): number {
    return this.droppedQueueFull + this.droppedSlowConsumer + this.droppedExpired
  }
}
