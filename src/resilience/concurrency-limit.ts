// Resource limits per upstream (Envoy's "circuit breakers"): caps on requests, pending requests and retries.

/** Options of {@link ConcurrencyLimit}. Positive integers (`maxRetries` may be 0). */
export interface ConcurrencyLimitOptions {
  /** Requests in flight to the upstream at once. Defaults to 1024 (Envoy's max_requests). */
  maxConcurrent?: number;
  /** Requests waiting for a connection at once. Defaults to 1024 (Envoy's max_pending_requests). */
  maxPending?: number;
  /** Retries in flight at once; 0 allows none. Defaults to 3 (Envoy's max_retries). */
  maxRetries?: number;
}

/** Which limit refused a request (the `overloaded` error's detail, a metric label). */
export type LimitKind = 'request' | 'pending' | 'retry';

/**
 * Counting semaphores for one upstream. `tryAcquire*` takes a slot and returns true, or counts an
 * overflow and returns false (the request path then answers `overloaded` without sending anything,
 * or skips the retry); every successful acquire must be matched by one release. A release with
 * nothing held is ignored rather than driving the gauge negative. O(1), allocation-free.
 * `configure` changes the maxima in place (a config reload): requests in flight keep their slots
 * and release them into the same counters.
 */
export class ConcurrencyLimit {
  #maxConcurrent = 0;
  #maxPending = 0;
  #maxRetries = 0;
  /** Requests in flight now (a gauge). */
  activeRequests = 0;
  /** Requests waiting for a connection now (a gauge). */
  pendingRequests = 0;
  /** Retries in flight now (a gauge). */
  activeRetries = 0;
  /** Refusals since construction, by limit (counters; Envoy's upstream_rq_pending_overflow, upstream_rq_retry_overflow). */
  readonly overflowTotal: Record<LimitKind, number> = { request: 0, pending: 0, retry: 0 };

  /** @throws RangeError when a limit is not a positive integer (`maxRetries`: not an integer ≥ 0). */
  constructor(options: ConcurrencyLimitOptions = {}) {
    this.configure(options);
  }

  /** Requests in flight allowed. */
  get maxConcurrent(): number {
    return this.#maxConcurrent;
  }

  /** Pending requests allowed. */
  get maxPending(): number {
    return this.#maxPending;
  }

  /** Retries in flight allowed. */
  get maxRetries(): number {
    return this.#maxRetries;
  }

  /**
   * Sets new maxima (an option left out takes its default, as in the constructor); the gauges and
   * overflow counters are kept. A maximum lowered below what is held now refuses new acquires until
   * releases bring the count under it; nothing in flight is cut.
   * @throws RangeError (and changes nothing) when a limit is invalid.
   */
  configure(options: ConcurrencyLimitOptions): void {
    const maxConcurrent = atLeast('maxConcurrent', options.maxConcurrent ?? 1024, 1);
    const maxPending = atLeast('maxPending', options.maxPending ?? 1024, 1);
    const maxRetries = atLeast('maxRetries', options.maxRetries ?? 3, 0);
    this.#maxConcurrent = maxConcurrent;
    this.#maxPending = maxPending;
    this.#maxRetries = maxRetries;
  }

  /** Takes a request slot; false (and an overflow counted) when `maxConcurrent` are in flight. */
  tryAcquireRequest(): boolean {
    if (this.activeRequests >= this.#maxConcurrent) {
      this.overflowTotal.request += 1;
      return false;
    }
    this.activeRequests += 1;
    return true;
  }

  /** Gives back a request slot. */
  releaseRequest(): void {
    if (this.activeRequests > 0) this.activeRequests -= 1;
  }

  /** Takes a pending slot (a request queued for a connection); false when `maxPending` wait. */
  tryAcquirePending(): boolean {
    if (this.pendingRequests >= this.#maxPending) {
      this.overflowTotal.pending += 1;
      return false;
    }
    this.pendingRequests += 1;
    return true;
  }

  /** Gives back a pending slot (the request got a connection, or gave up). */
  releasePending(): void {
    if (this.pendingRequests > 0) this.pendingRequests -= 1;
  }

  /**
   * Takes a retry slot; false when `maxRetries + share` retries are in flight.
   * @param share retries allowed on top of `maxRetries` (the request path passes one endpoint's
   *   share of the requests in flight, so losing one endpoint may fail all its requests over). Default 0.
   */
  tryAcquireRetry(share = 0): boolean {
    if (this.activeRetries >= this.#maxRetries + share) {
      this.overflowTotal.retry += 1;
      return false;
    }
    this.activeRetries += 1;
    return true;
  }

  /** Gives back a retry slot (the retry attempt ended). */
  releaseRetry(): void {
    if (this.activeRetries > 0) this.activeRetries -= 1;
  }
}

function atLeast(name: string, v: number, min: 0 | 1): number {
  if (!(Number.isInteger(v) && v >= min))
    throw new RangeError(
      `limits: ${name} must be ${min === 1 ? 'a positive integer' : 'an integer ≥ 0'}, got ${v}`,
    );
  return v;
}
