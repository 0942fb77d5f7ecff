// Retry delays: exponential backoff with full jitter (Envoy's defaults), and `Retry-After` parsing.

/** Options of {@link ExponentialBackoff}. */
export interface BackoffOptions {
  /** Delay scale of the first retry, ms; > 0. Defaults to 25 (Envoy). */
  baseMs?: number;
  /** Largest delay, ms; ≥ `baseMs`. Defaults to 250 (Envoy: 10 × base). */
  maxMs?: number;
  /** Uniform source in [0, 1). Defaults to `Math.random`; tests pass a constant. */
  random?: () => number;
}

/**
 * Exponential backoff with full jitter, as Envoy computes it: before retry number `attempt`
 * (1 for the first retry) wait a uniformly random time in [0, min(maxMs, baseMs × (2^attempt − 1))).
 * So with the defaults: [0, 25), [0, 75), [0, 175), then [0, 250) ms. Full jitter spreads the
 * retries of many clients so they do not arrive at the upstream in waves. Immutable.
 */
export class ExponentialBackoff {
  /** Delay scale of the first retry, ms. */
  readonly baseMs: number;
  /** Largest delay, ms. */
  readonly maxMs: number;
  readonly #random: () => number;

  /** @throws RangeError when `baseMs` is not a positive finite number or `maxMs` is below it or not finite. */
  constructor(options: BackoffOptions = {}) {
    const baseMs = options.baseMs ?? 25;
    const maxMs = options.maxMs ?? Math.max(250, baseMs);
    if (!(baseMs > 0 && Number.isFinite(baseMs))) {
      throw new RangeError(`backoff: base must be a positive finite number of ms, got ${baseMs}`);
    }
    if (!(maxMs >= baseMs && Number.isFinite(maxMs))) {
      throw new RangeError(`backoff: max must be a finite number of ms ≥ base (${baseMs}), got ${maxMs}`);
    }
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.#random = options.random ?? Math.random;
  }

  /** Upper bound (exclusive) of the delay before retry `attempt` (1-based; below 1 counts as 1), ms. */
  ceiling(attempt: number): number {
    const n = attempt >= 1 ? Math.floor(attempt) : 1;
    // 2^31 × base exceeds any sane max; stop there so the product stays finite.
    return Math.min(this.maxMs, this.baseMs * (2 ** Math.min(n, 31) - 1));
  }

  /** A jittered delay before retry `attempt` (1 for the first retry), whole ms in [0, ceiling). */
  delay(attempt: number): number {
    return Math.floor(this.#random() * this.ceiling(attempt));
  }
}

/**
 * Parses a `Retry-After` header value into a delay in ms from `nowEpochMs`: either delay-seconds
 * (`"120"`, a non-negative integer) or an HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`; a date in
 * the past gives 0). Returns undefined when the value is absent, empty or invalid.
 * @param nowEpochMs the current wall-clock time, ms since the Unix epoch (injected; HTTP-dates are absolute).
 */
export function parseRetryAfterMs(value: string | null | undefined, nowEpochMs: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // An HTTP-date always names its weekday and zone; refuse bare numbers or odd forms Date.parse allows.
  if (!/^[A-Za-z]{3,9}, /.test(v) || !/GMT$/.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowEpochMs);
}

/**
 * The delay a `Retry-After` header asks for, ms, clamped to [0, `maxMs`]; undefined when the header
 * is absent or invalid (then fall back to {@link ExponentialBackoff.delay}). Clamping keeps one
 * upstream's "come back in an hour" from holding a request past its timeout; callers that would
 * rather not retry at all when the upstream asks for longer can compare {@link parseRetryAfterMs}.
 * @param nowEpochMs the current wall-clock time, ms since the Unix epoch.
 * @param maxMs the longest delay to honour, ms.
 */
export function retryAfterMs(
  headerValue: string | null | undefined,
  nowEpochMs: number,
  maxMs: number,
): number | undefined {
  const ms = parseRetryAfterMs(headerValue, nowEpochMs);
  return ms === undefined ? undefined : Math.min(ms, Math.max(0, maxMs));
}
