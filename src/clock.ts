// The clock policies read: injected so that tests drive time by hand instead of sleeping.

/** A monotonic clock in milliseconds. Policies take one instead of calling `Date.now()`. */
export interface Clock {
  /** Milliseconds on a monotonic scale; only differences are meaningful. */
  now(): number;
}

/** The process's monotonic clock (`performance.now()`), in milliseconds. */
export const systemClock: Clock = { now: () => performance.now() };

/** A clock that moves only when told to; for tests of policies. */
export class ManualClock implements Clock {
  #t: number;
  constructor(startMs = 0) {
    this.#t = startMs;
  }
  now(): number {
    return this.#t;
  }
  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): void {
    this.#t += ms;
  }
}
