// Token bucket rate limiting over an injected clock: one bucket, or one per key with bounded memory.
import { type Clock, systemClock } from '../clock.ts';

/** Options of {@link TokenBucket} and {@link KeyedTokenBuckets}. */
export interface TokenBucketOptions {
  /** Tokens added per second (the sustained rate), > 0. */
  ratePerSecond: number;
  /** Most tokens held (the largest burst), ≥ 1. Defaults to `ratePerSecond` rounded up. */
  burst?: number;
  /** Time source. Defaults to {@link systemClock}. */
  clock?: Clock;
}

/** Options of {@link KeyedTokenBuckets}. */
export interface KeyedTokenBucketsOptions extends TokenBucketOptions {
  /** Most keys tracked; past it the least recently used key is dropped. Defaults to 10,000. */
  maxKeys?: number;
}

/** One bucket's state: tokens held as of a clock reading. */
class BucketState {
  tokens: number;
  atMs: number;
  constructor(tokens: number, atMs: number) {
    this.tokens = tokens;
    this.atMs = atMs;
  }
}

/** Validated rate settings shared by both classes. */
class Rate {
  readonly perMs: number;
  readonly burst: number;
  constructor(options: TokenBucketOptions) {
    const rate = options.ratePerSecond;
    if (!(rate > 0 && Number.isFinite(rate))) {
      throw new RangeError(`rate limit: ratePerSecond must be a positive finite number, got ${rate}`);
    }
    const burst = options.burst ?? Math.ceil(rate);
    if (!(burst >= 1 && Number.isFinite(burst))) {
      throw new RangeError(`rate limit: burst must be a finite number ≥ 1, got ${burst}`);
    }
    this.perMs = rate / 1000;
    this.burst = burst;
  }

  refill(s: BucketState, now: number): void {
    if (now > s.atMs) {
      s.tokens = Math.min(this.burst, s.tokens + (now - s.atMs) * this.perMs);
      s.atMs = now;
    }
  }

  take(s: BucketState, n: number, now: number): boolean {
    this.refill(s, now);
    if (s.tokens < n) return false;
    s.tokens -= n;
    return true;
  }

  wait(s: BucketState, n: number, now: number): number {
    this.refill(s, now);
    if (n > this.burst) return Number.POSITIVE_INFINITY;
    return s.tokens >= n ? 0 : Math.ceil((n - s.tokens) / this.perMs);
  }
}

/**
 * A token bucket: holds up to `burst` tokens, refilled continuously at `ratePerSecond`; a request
 * takes one (or `n`) or is refused. Starts full. Lazy refill on each call: O(1), no timers.
 */
export class TokenBucket {
  readonly #rate: Rate;
  readonly #clock: Clock;
  readonly #state: BucketState;

  /** @throws RangeError when the rate is not positive or the burst below 1. */
  constructor(options: TokenBucketOptions) {
    this.#rate = new Rate(options);
    this.#clock = options.clock ?? systemClock;
    this.#state = new BucketState(this.#rate.burst, this.#clock.now());
  }

  /** Takes `n` tokens (default 1) if the bucket holds them; false (taking none) otherwise. */
  tryTake(n = 1): boolean {
    return this.#rate.take(this.#state, n, this.#clock.now());
  }

  /**
   * Ms until `n` tokens (default 1) will be there: 0 when they are now, Infinity when `n` exceeds
   * the burst. For a `retry-after` header, round up to seconds.
   */
  retryAfterMs(n = 1): number {
    return this.#rate.wait(this.#state, n, this.#clock.now());
  }

  /** Tokens held now. */
  get tokens(): number {
    this.#rate.refill(this.#state, this.#clock.now());
    return this.#state.tokens;
  }
}

/**
 * One token bucket per key (a caller's identity or address), all with the same rate, tracking at
 * most `maxKeys` keys: using a key makes it the most recent, and a new key past the bound drops the
 * least recently used one. A dropped key starts over with a full bucket, which only ever lets a
 * caller through sooner, so the bound caps memory, never correctness for active callers as long as
 * `maxKeys` exceeds the number of callers active within a refill time.
 */
export class KeyedTokenBuckets {
  /** Keys tracked at most. */
  readonly maxKeys: number;
  /** Keys dropped to stay within `maxKeys` (a counter for metrics). */
  evictionsTotal = 0;
  readonly #rate: Rate;
  readonly #clock: Clock;
  /** Insertion order is recency order: the first key is the least recently used. */
  readonly #buckets = new Map<string, BucketState>();

  /** @throws RangeError on a bad rate or burst, or `maxKeys` not a positive integer. */
  constructor(options: KeyedTokenBucketsOptions) {
    this.#rate = new Rate(options);
    this.#clock = options.clock ?? systemClock;
    const maxKeys = options.maxKeys ?? 10_000;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) {
      throw new RangeError(`rate limit: maxKeys must be a positive integer, got ${maxKeys}`);
    }
    this.maxKeys = maxKeys;
  }

  /** Keys tracked now (a gauge). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes `n` tokens (default 1) from `key`'s bucket if it holds them; false otherwise. */
  tryTake(key: string, n = 1): boolean {
    const now = this.#clock.now();
    return this.#rate.take(this.#touch(key, now), n, now);
  }

  /** Ms until `key`'s bucket holds `n` tokens (default 1): 0 now, Infinity when `n` exceeds the burst. */
  retryAfterMs(key: string, n = 1): number {
    const s = this.#buckets.get(key);
    // An untracked key has a full bucket.
    if (s === undefined) return n > this.#rate.burst ? Number.POSITIVE_INFINITY : 0;
    return this.#rate.wait(s, n, this.#clock.now());
  }

  /** Tokens `key`'s bucket holds now (an untracked key's bucket is full), for `ratelimit-remaining`. */
  tokensOf(key: string): number {
    const s = this.#buckets.get(key);
    if (s === undefined) return this.#rate.burst;
    this.#rate.refill(s, this.#clock.now());
    return s.tokens;
  }

  /** Finds or creates `key`'s bucket and marks it most recently used. */
  #touch(key: string, now: number): BucketState {
    const buckets = this.#buckets;
    let s = buckets.get(key);
    if (s !== undefined) {
      buckets.delete(key);
    } else {
      s = new BucketState(this.#rate.burst, now);
      if (buckets.size >= this.maxKeys) {
        const oldest = buckets.keys().next().value as string;
        buckets.delete(oldest);
        this.evictionsTotal += 1;
      }
    }
    buckets.set(key, s);
    return s;
  }
}
