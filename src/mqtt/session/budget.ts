/**
 * The broker-wide bound on queued messages: every session's queue draws on it, so many
 * sessions together cannot grow memory (or the store) without limit either.
 */
export class QueueBudget {
  readonly maxMessages: number
  readonly maxBytes: number
  messages = 0
  bytes = 0

  constructor(maxMessages: number, maxBytes: number) {
    this.maxMessages = maxMessages
    this.maxBytes = maxBytes
  }

  fits(bytes: number): boolean {
    return this.messages < this.maxMessages && this.bytes + bytes <= this.maxBytes
  }

  take(bytes: number): void {
    this.messages++
    this.bytes += bytes
  }

  give(messages: number, bytes: number): void {
    this.messages -= messages
    this.bytes -= bytes
  }
}
