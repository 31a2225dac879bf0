import type { Message } from '../mqtt/session/message.js'

/** The delivery a message was last written inline into. */
export interface InlineHint {
  readonly clientId: string
  readonly seq: number
}

/**
 * Where the messages of the open transaction were written inline (see schema.ts): a message
 * referenced by one delivery only is stored in that delivery's row, so queueing and
 * acknowledging it cost one statement each. When a second reference to the same Message
 * comes (a fan-out to another session, the retained store, a will), the body is moved
 * ("spilled") into its own messages row, shared by both.
 *
 * A hint is only a hint: the spill statement checks that the row still holds this very
 * message body, so a hint left stale by a removal, a replaced seq or a rollback moves
 * nothing. Hints last one transaction (fan-out happens within one); a message referenced
 * again later is simply stored again, as a separate body.
 */
export class InlineHints {
  #hints = new Map<Message, InlineHint>()

  get(m: Message): InlineHint | undefined {
    return this.#hints.get(m)
  }

  set(m: Message, clientId: string, seq: number): void {
    this.#hints.set(m, { clientId, seq })
  }

  delete(m: Message): void {
    this.#hints.delete(m)
  }

  /** At commit or rollback. */
  clear(): void {
    if (this.#hints.size > 0) this.#hints = new Map()
  }
}
