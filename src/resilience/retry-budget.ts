// Retry budget: caps retries to a share of recent requests plus a small floor (Linkerd, Envoy).
import { type Clock, systemClock } from '../clock.ts';
import { SlidingPair } from './sliding-pair.ts';

/** Options of {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /** Time source. Defaults to {@link systemClock}. */
  clock?: Clock;
  /** Retries allowed per request in the window, ≥ 0. Defaults to 0.2 (Linkerd's and Envoy's 20%). */
  ratio?: number;
  /**
   * Retries per second allowed whatever the traffic, ≥ 0. Defaults to 10, Linkerd's
   * `minRetriesPerSecond`: at low volume 20% of a handful of requests rounds to no retry at all, and
   * a lone failing request should still get its retry. Ten a second is small against any upstream
   * that can serve real traffic, and each request's own attempt cap still bounds it.
   */
  minRetriesPerSecond?: number;
  /** Length of the sliding window, ms, > 0. Defaults to 10,000 (Linkerd's TTL). */
  windowMs?: number;
  /** Buckets the window is counted in (precision of the slide), a positive integer. Defaults to 10. */
  buckets?: number;
}

/**
 * Allows a retry while, over the last `windowMs`, `retries + 1 ≤ ratio × requests +
 * minRetriesPerSecond × windowMs / 1000`. So, whatever fails, the upstream sees at most
 * `(1 + ratio)` × the original requests plus the floor (`minRetriesPerSecond × window seconds`):
 * with the defaults, 1.2 × requests + 100 attempts per 10 s. This stops retry storms, where every
 * layer retrying a struggling upstream multiplies its load.
 *
 * Counts live in `buckets` time slots of `windowMs / buckets` each, on the injected clock; a slot
 * is cleared when the window slides past it. Every call is O(1) and allocates nothing.
 */
export class RetryBudget {
  /** Retries allowed per request in the window. */
  readonly ratio: number;
  /** Retries per second allowed whatever the traffic. */
  readonly minRetriesPerSecond: number;
  /** Window length, ms. */
  readonly windowMs: number;
  /** Retries refused by {@link canRetry} or {@link tryRetry} since construction (a counter for metrics). */
  refusedTotal = 0;
  readonly #floor: number;
  /** a = original requests, b = retries. */
  readonly #counts: SlidingPair;

  /** @throws RangeError on a negative or non-finite ratio or floor, or a bad window or bucket count. */
  constructor(options: RetryBudgetOptions = {}) {
    const ratio = options.ratio ?? 0.2;
    const minRetriesPerSecond = options.minRetriesPerSecond ?? 10;
    const windowMs = options.windowMs ?? 10_000;
    const buckets = options.buckets ?? 10;
    if (!(ratio >= 0 && Number.isFinite(ratio))) {
      throw new RangeError(`retry budget: ratio must be a finite number ≥ 0, got ${ratio}`);
    }
    if (!(minRetriesPerSecond >= 0 && Number.isFinite(minRetriesPerSecond))) {
      throw new RangeError(
        `retry budget: minRetriesPerSecond must be a finite number ≥ 0, got ${minRetriesPerSecond}`,
      );
    }
    if (!(windowMs > 0 && Number.isFinite(windowMs))) {
      throw new RangeError(`retry budget: window must be a positive finite number of ms, got ${windowMs}`);
    }
    if (!(Number.isInteger(buckets) && buckets >= 1)) {
      throw new RangeError(`retry budget: buckets must be a positive integer, got ${buckets}`);
    }
    this.ratio = ratio;
    this.minRetriesPerSecond = minRetriesPerSecond;
    this.windowMs = windowMs;
    this.#floor = (minRetriesPerSecond * windowMs) / 1000;
    this.#counts = new SlidingPair(windowMs, buckets, options.clock ?? systemClock);
  }

  /** Counts one original request (not a retry) towards the budget. */
  onRequest(): void {
    this.#counts.addA();
  }

  /** Whether one more retry fits the budget now. Does not spend it; counts a refusal in `refusedTotal`. */
  canRetry(): boolean {
    const c = this.#counts;
    if (c.b + 1 <= this.ratio * c.a + this.#floor) return true;
    this.refusedTotal += 1;
    return false;
  }

  /** Spends one retry (call when a retry is actually sent). */
  onRetry(): void {
    this.#counts.addB();
  }

  /** {@link canRetry}, and when it allows, {@link onRetry}: true when the retry may go. */
  tryRetry(): boolean {
    if (!this.canRetry()) return false;
    this.onRetry();
    return true;
  }

  /** Original requests counted in the current window. */
  get requests(): number {
    return this.#counts.a;
  }

  /** Retries spent in the current window. */
  get retries(): number {
    return this.#counts.b;
  }

  /** Retries the current window allows in all: `ratio × requests + floor`. */
  get limit(): number {
    return this.ratio * this.#counts.a + this.#floor;
  }
}
