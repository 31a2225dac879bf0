/**
 * Runs a task one at a time. Requests made while it runs fold into a single further run, which
 * starts after the current one and so sees whatever changed meanwhile: three SIGHUPs during a
 * reload make one more reload, not three.
 */
export class CoalescingRunner {
  readonly #task: () => Promise<void>
  readonly #onError: (e: unknown) => void
  #running: Promise<void> | undefined
  #again = false

  /** `onError` gets what a run throws; the runner carries on with the next request. */
  constructor(task: () => Promise<void>, onError: (e: unknown) => void) {
    this.#task = task
    this.#onError = onError
  }

  /** Resolves once a run that started after this request has ended; never rejects. */
  request(): Promise<void> {
    if (this.#running !== undefined) {
      this.#again = true
      return this.#running
    }
    this.#running = this.#loop()
    return this.#running
  }

  /** Whether a run is in progress. */
  get busy(): boolean {
    return this.#running !== undefined
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false
        try {
          // Through a microtask: a task that throws at once must not end the loop before
          // request() has recorded it as running.
          await Promise.resolve().then(() => this.#task())
        } catch (e) {
          this.#onError(e)
        }
      } while (this.#again)
    } finally {
      this.#running = undefined
    }
  }
}
