import type { SessionStore } from './ports.js'
import type { Session } from './session.js'

export class MemorySessionStore implements SessionStore {
  readonly #sessions = new Map<string, Session>()

  get(clientId: string): Session | undefined {
    return this.#sessions.get(clientId)
  }

  put(session: Session): void {
    this.#sessions.set(session.clientId, session)
  }

  delete(clientId: string): boolean {
    return this.#sessions.delete(clientId)
  }

  values(): IterableIterator<Session> {
    return this.#sessions.values()
  }

  get size(): number {
    return this.#sessions.size
  }
}
