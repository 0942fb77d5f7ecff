// Two counts over a sliding time window, kept in buckets on an injected clock (retry budget, breaker window).
import type { Clock } from '../clock.ts';

/**
 * Counts two kinds of events (`a` and `b`) over the last `windowMs`, in `buckets` slots of
 * `windowMs / buckets` each; a slot is cleared when the window slides past it. O(1) per call
 * (O(buckets) at most when time jumps), no allocation. Callers validate `windowMs` (> 0, finite)
 * and `buckets` (a positive integer).
 */
export class SlidingPair {
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #a: Float64Array;
  readonly #b: Float64Array;
  #sumA = 0;
  #sumB = 0;
  /** Index (time / bucketMs) of the newest slot. */
  #head: number;

  constructor(windowMs: number, buckets: number, clock: Clock) {
    this.#clock = clock;
    this.#bucketMs = windowMs / buckets;
    this.#a = new Float64Array(buckets);
    this.#b = new Float64Array(buckets);
    this.#head = Math.floor(clock.now() / this.#bucketMs);
  }

  /** Counts `n` events of kind a. */
  addA(n = 1): void {
    this.#a[this.#slide()]! += n;
    this.#sumA += n;
  }

  /** Counts `n` events of kind b. */
  addB(n = 1): void {
    this.#b[this.#slide()]! += n;
    this.#sumB += n;
  }

  /** Events of kind a in the current window. */
  get a(): number {
    this.#slide();
    return this.#sumA;
  }

  /** Events of kind b in the current window. */
  get b(): number {
    this.#slide();
    return this.#sumB;
  }

  /** Forgets every event. */
  clear(): void {
    this.#a.fill(0);
    this.#b.fill(0);
    this.#sumA = 0;
    this.#sumB = 0;
  }

  /** Clears the slots the window has slid past; returns the index of the current slot. */
  #slide(): number {
    const n = this.#a.length;
    const epoch = Math.floor(this.#clock.now() / this.#bucketMs);
    const steps = epoch - this.#head;
    if (steps > 0) {
      if (steps >= n) this.clear();
      else {
        for (let s = 1; s <= steps; s++) {
          const i = (this.#head + s) % n;
          this.#sumA -= this.#a[i]!;
          this.#sumB -= this.#b[i]!;
          this.#a[i] = 0;
          this.#b[i] = 0;
        }
      }
      this.#head = epoch;
    }
    return ((this.#head % n) + n) % n;
  }
}
