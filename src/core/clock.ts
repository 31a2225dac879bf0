export interface TimerHandle {
  cancel(): void
}

/** Time is injected so tests can move it by hand. All deadlines are absolute ms. */
export interface Clock {
  now(): number
  setTimer(delayMs: number, fn: () => void): TimerHandle
}

export function systemClock(): Clock {
  return {
    now: () => Date.now(),
    setTimer(delayMs, fn) {
      const t = setTimeout(fn, Math.max(0, delayMs))
      t.unref()
      return { cancel: () => clearTimeout(t) }
    },
  }
}

/** A clock for tests: time moves only when `advance` is called. */
export class FakeClock implements Clock {
  #now: number
  #timers: { at: number; fn: () => void; live: boolean; seq: number }[] = []
  #seq = 0

  constructor(start = 1_700_000_000_000) {
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const timer = { at: this.#now + Math.max(0, delayMs), fn, live: true, seq: this.#seq++ }
    this.#timers.push(timer)
    return {
      cancel: () => {
        timer.live = false
      },
    }
  }

  advance(ms: number): void {
    const end = this.#now + ms
    for (;;) {
      const due = this.#timers
        .filter((t) => t.live && t.at <= end)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (due === undefined) break
      due.live = false
      this.#now = Math.max(this.#now, due.at)
      due.fn()
    }
    this.#timers = this.#timers.filter((t) => t.live)
    this.#now = end
  }
}
