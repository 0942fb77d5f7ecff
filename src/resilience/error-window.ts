// Counts successes and failures over a rolling time window in buckets (the breaker's decision input).
import { type Clock, systemClock } from '../clock.ts';

/**
 * Successes and failures over the last `windowMs`, in `buckets` slots on an injected clock, and the
 * breaker's decision over them (opossum's and Hystrix's rule): trip when at least `volumeThreshold`
 * outcomes were seen and the failure percentage is above `errorThresholdPercentage`. O(1) per call,
 * no allocation.
 */
export class ErrorWindow {
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #ok: Float64Array;
  readonly #failed: Float64Array;
  #okSum = 0;
  #failedSum = 0;
  #head: number;

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
    this.#clock = clock;
    this.#bucketMs = windowMs / buckets;
    this.#ok = new Float64Array(buckets);
    this.#failed = new Float64Array(buckets);
    this.#head = Math.floor(clock.now() / this.#bucketMs);
  }

  /** Counts one outcome. */
  record(success: boolean): void {
    const i = this.#slide();
    if (success) {
      this.#ok[i]! += 1;
      this.#okSum += 1;
    } else {
      this.#failed[i]! += 1;
      this.#failedSum += 1;
    }
  }

  /** Whether the window trips: ≥ `volumeThreshold` outcomes and failures above `errorThresholdPercentage` %. */
  trips(volumeThreshold: number, errorThresholdPercentage: number): boolean {
    this.#slide();
    const total = this.#okSum + this.#failedSum;
    return total >= volumeThreshold && this.#failedSum * 100 > errorThresholdPercentage * total;
  }

  /** Outcomes counted in the current window. */
  get total(): number {
    this.#slide();
    return this.#okSum + this.#failedSum;
  }

  /** Forgets every outcome (after a transition). */
  clear(): void {
    this.#ok.fill(0);
    this.#failed.fill(0);
    this.#okSum = 0;
    this.#failedSum = 0;
  }

  #slide(): number {
    const n = this.#ok.length;
    const epoch = Math.floor(this.#clock.now() / this.#bucketMs);
    const steps = epoch - this.#head;
    if (steps > 0) {
      for (let s = 1; s <= Math.min(steps, n); s++) {
        const j = (this.#head + s) % n;
        this.#okSum -= this.#ok[j]!;
        this.#failedSum -= this.#failed[j]!;
        this.#ok[j] = 0;
        this.#failed[j] = 0;
      }
      this.#head = epoch;
    }
    return epoch % n;
  }
}
