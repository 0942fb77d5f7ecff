// Counts successes and failures over a rolling time window in buckets (the breaker's decision input).
import { type Clock, systemClock } from '../clock.ts';
import { SlidingPair } from './sliding-pair.ts';

/**
 * Successes and failures over the last `windowMs`, in `buckets` slots on an injected clock, and the
 * breaker's decision over them (opossum's and Hystrix's rule): trip when at least `volumeThreshold`
 * outcomes were seen and the failure percentage is above `errorThresholdPercentage`. O(1) per call,
 * no allocation.
 */
export class ErrorWindow {
  /** a = successes, b = failures. */
  readonly #counts: SlidingPair;

  /**
   * @param windowMs window length, ms (> 0). Default 10,000.
   * @param buckets slots the window is counted in (≥ 1). Default 10.
   * @throws RangeError on a bad window or bucket count.
   */
  constructor(windowMs = 10_000, buckets = 10, clock: Clock = systemClock) {
    if (!(windowMs > 0 && Number.isFinite(windowMs)))
      throw new RangeError(`error window: windowMs must be > 0, got ${windowMs}`);
    if (!(Number.isInteger(buckets) && buckets >= 1))
      throw new RangeError(`error window: buckets must be ≥ 1, got ${buckets}`);
    this.#counts = new SlidingPair(windowMs, buckets, clock);
  }

  /** Counts one outcome. */
  record(success: boolean): void {
    if (success) this.#counts.addA();
    else this.#counts.addB();
  }

  /** Whether the window trips: ≥ `volumeThreshold` outcomes and failures above `errorThresholdPercentage` %. */
  trips(volumeThreshold: number, errorThresholdPercentage: number): boolean {
    const failed = this.#counts.b;
    const total = this.#counts.a + failed;
    return total >= volumeThreshold && failed * 100 > errorThresholdPercentage * total;
  }

  /** Outcomes counted in the current window. */
  get total(): number {
    return this.#counts.a + this.#counts.b;
  }

  /** Forgets every outcome (after a transition). */
  clear(): void {
    this.#counts.clear();
  }
}
