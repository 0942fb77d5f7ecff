// When to retry an attempt: Envoy's retry-on conditions, gated by what is safe to send twice.
import { ConfigError } from '../errors/config-error.ts';

/**
 * A condition config may list under `retryOn` (Envoy's names and meanings):
 * - `connect-failure`: no connection could be made (nothing was sent).
 * - `refused-stream`: the peer refused the HTTP/2 stream unprocessed (REFUSED_STREAM).
 * - `reset`: the connection or stream broke before response headers (includes the two above).
 * - `gateway-error`: a 502, 503 or 504 response, a per-try timeout, or any reset (Envoy counts
 *   a reset as the 503 it turns into).
 * - `5xx`: any 5xx response, a per-try timeout, or any reset.
 * - `retriable-4xx`: a 409 Conflict response.
 * - `retriable-status-codes`: a response whose status is listed (numbers in the `retryOn` list).
 * - `cancelled`, `deadline-exceeded`, `resource-exhausted`, `internal`, `unavailable`: a gRPC
 *   response with that `grpc-status` (1, 4, 8, 13, 14) in its headers (Trailers-Only); `unavailable`
 *   also covers a connection lost before any answer (what a gRPC client reports as UNAVAILABLE).
 */
export type RetryOn =
  | 'connect-failure'
  | 'refused-stream'
  | 'reset'
  | 'gateway-error'
  | '5xx'
  | 'retriable-4xx'
  | 'retriable-status-codes'
  | 'cancelled'
  | 'deadline-exceeded'
  | 'resource-exhausted'
  | 'internal'
  | 'unavailable';

/** Every {@link RetryOn} condition, most specific first: the order a reason is reported in. */
export const RETRY_ON_CONDITIONS: readonly RetryOn[] = Object.freeze([
  'connect-failure',
  'refused-stream',
  'reset',
  'retriable-status-codes',
  'retriable-4xx',
  'gateway-error',
  '5xx',
  'cancelled',
  'deadline-exceeded',
  'resource-exhausted',
  'internal',
  'unavailable',
] as const);

/** Bit of each condition in a {@link RetryOnPolicy} mask, by its place in RETRY_ON_CONDITIONS. */
const BIT = Object.fromEntries(RETRY_ON_CONDITIONS.map((c, i) => [c, 1 << i])) as Record<RetryOn, number>;

/** A lost connection: a gRPC client sees it as UNAVAILABLE, so `unavailable` covers it too. */
const RESET_LIKE = BIT.reset | BIT['gateway-error'] | BIT['5xx'] | BIT.unavailable;
const GRPC_BITS: Readonly<Record<number, number>> = {
  1: BIT.cancelled,
  4: BIT['deadline-exceeded'],
  8: BIT['resource-exhausted'],
  13: BIT.internal,
  14: BIT.unavailable,
};

/**
 * How an attempt ended, as the request path observed it:
 * - `connect-failure`: connecting (TCP or TLS) failed or timed out; no byte of the request was sent.
 * - `refused-stream`: HTTP/2 REFUSED_STREAM or GOAWAY past the stream: the peer did not process it.
 * - `reset`: the connection or stream closed or reset before response headers arrived.
 * - `timeout`: the per-try timeout expired before response headers (Envoy treats it as a 504).
 * - `response`: response headers arrived with `status` (and `grpcStatus` for a gRPC
 *   trailers-only or header-carried `grpc-status`).
 */
export type AttemptOutcome =
  | { readonly kind: 'connect-failure' }
  | { readonly kind: 'refused-stream' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus?: number | undefined };

/** A parsed `retryOn` list: which conditions, and which status codes for `retriable-status-codes`. */
export interface RetryOnPolicy {
  /** The conditions listed, in RETRY_ON_CONDITIONS order. */
  readonly conditions: readonly RetryOn[];
  /** Status codes listed (implies `retriable-status-codes`). */
  readonly statusCodes: ReadonlySet<number>;
  /** The conditions as a bit mask (internal to this module; stable only within a process). */
  readonly mask: number;
}

/**
 * Parses and validates a config `retryOn` list: condition names ({@link RetryOn}) and HTTP status
 * codes (integers 100–599, or such digits as a string; the config schema refuses those below 408,
 * never retried) for `retriable-status-codes`, which listing a code turns on. Duplicates are fine; an empty list retries nothing.
 * @param keyPath config key path for error messages. Defaults to `retries.retryOn`.
 * @throws ConfigError naming the bad item and the accepted values.
 */
export function parseRetryOn(
  items: readonly (string | number)[],
  keyPath = 'retries.retryOn',
): RetryOnPolicy {
  let mask = 0;
  const statusCodes = new Set<number>();
  let explicitStatusCodes = false;
  for (const item of items) {
    const code = typeof item === 'number' ? item : /^\d+$/.test(item) ? Number(item) : undefined;
    if (code !== undefined) {
      if (!Number.isInteger(code) || code < 100 || code > 599) {
        throw new ConfigError(keyPath, `${JSON.stringify(item)} is not an HTTP status code (100-599)`);
      }
      statusCodes.add(code);
      mask |= BIT['retriable-status-codes'];
    } else if (Object.hasOwn(BIT, item)) {
      mask |= BIT[item as RetryOn];
      if (item === 'retriable-status-codes') explicitStatusCodes = true;
    } else {
      throw new ConfigError(
        keyPath,
        `unknown retry condition ${JSON.stringify(item)}; expected one of ${RETRY_ON_CONDITIONS.join(', ')}, or a status code`,
      );
    }
  }
  if (explicitStatusCodes && statusCodes.size === 0) {
    throw new ConfigError(
      keyPath,
      'retriable-status-codes needs at least one status code in the list (e.g. 503)',
    );
  }
  return Object.freeze({
    conditions: Object.freeze(RETRY_ON_CONDITIONS.filter((c) => (mask & BIT[c]) !== 0)),
    statusCodes,
    mask,
  });
}

/**
 * Conditions retried when config says nothing: connection failures and refused streams (never
 * processed, always safe) and gateway errors (502/503/504, timeouts, resets; only for idempotent
 * requests, see {@link shouldRetry}). Envoy retries nothing by default; this is DESIGN.md's example.
 */
export const DEFAULT_RETRY_ON: RetryOnPolicy = parseRetryOn([
  'connect-failure',
  'refused-stream',
  'gateway-error',
]);

/**
 * Whether a method is idempotent (RFC 9110 §9.2.2: GET HEAD OPTIONS PUT DELETE TRACE), as undici's
 * retry decides. Methods are case-sensitive: `get` is not `GET`.
 */
export function isIdempotent(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
    case 'PUT':
    case 'DELETE':
    case 'TRACE':
      return true;
    default:
      return false;
  }
}

/** The request header by which a client vouches that sending a request twice is harmless. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';

/**
 * The retry condition an outcome matches under `retryOn`: the most specific listed one
 * (RETRY_ON_CONDITIONS order), or undefined when the outcome is not retriable under that policy
 * (every 1xx–4xx response but listed ones of 408 and up and 409 under `retriable-4xx`, for instance).
 */
export function classify(outcome: AttemptOutcome, retryOn: RetryOnPolicy): RetryOn | undefined {
  const matched = outcomeMask(outcome, retryOn.statusCodes) & retryOn.mask;
  if (matched === 0) return undefined;
  // Lowest set bit = earliest in RETRY_ON_CONDITIONS = most specific.
  return RETRY_ON_CONDITIONS[31 - Math.clz32(matched & -matched)];
}

/** Every condition an outcome would match (a bit mask over RETRY_ON_CONDITIONS). */
function outcomeMask(outcome: AttemptOutcome, statusCodes: ReadonlySet<number>): number {
  switch (outcome.kind) {
    case 'connect-failure':
      return BIT['connect-failure'] | RESET_LIKE;
    case 'refused-stream':
      return BIT['refused-stream'] | RESET_LIKE;
    case 'reset':
      return RESET_LIKE;
    case 'timeout':
      return BIT['gateway-error'] | BIT['5xx'];
    case 'response': {
      const s = outcome.status;
      let m = statusCodes.has(s) ? BIT['retriable-status-codes'] : 0;
      if (s >= 500 && s <= 599) m |= BIT['5xx'];
      if (s === 502 || s === 503 || s === 504) m |= BIT['gateway-error'];
      if (s === 409) m |= BIT['retriable-4xx'];
      if (outcome.grpcStatus !== undefined) m |= GRPC_BITS[outcome.grpcStatus] ?? 0;
      return m;
    }
  }
}

/** Why an attempt is not retried (a metric label and log field). */
export type NoRetryReason =
  'response-started' | 'not-retriable' | 'attempts-exhausted' | 'not-idempotent' | 'body-not-replayable';

/** {@link shouldRetry}'s answer: retry, and under which condition, or not, and why. */
export type RetryDecision =
  { readonly retry: true; readonly reason: RetryOn } | { readonly retry: false; readonly why: NoRetryReason };

/** What {@link shouldRetry} weighs. The request path may reuse one object across calls. */
export interface RetryContext {
  /** How the attempt ended. */
  outcome: AttemptOutcome;
  /** The request's method, as received. */
  method: string;
  /** Whether the request carries an `Idempotency-Key` header. */
  hasIdempotencyKey: boolean;
  /** Whether any byte of the request was written to the upstream on this attempt. */
  requestSent: boolean;
  /** Whether response headers already went to the client (then nothing can be retried). */
  responseStarted: boolean;
  /** Whether the request body (if any) is held whole and can be sent again. */
  bodyReplayable: boolean;
  /** Attempts made so far, the failed one included (1 after the first attempt). */
  attempt: number;
  /** Attempts allowed in all, the first included (3 = the first plus up to 2 retries). */
  maxAttempts: number;
  /** The upstream's parsed retry conditions. */
  retryOn: RetryOnPolicy;
}

const RETRY = Object.fromEntries(
  RETRY_ON_CONDITIONS.map((reason) => [reason, Object.freeze({ retry: true, reason })]),
) as unknown as Readonly<Record<RetryOn, RetryDecision>>;

const NO = (why: NoRetryReason): RetryDecision => Object.freeze({ retry: false, why });
const RESPONSE_STARTED = NO('response-started');
const NOT_RETRIABLE = NO('not-retriable');
const ATTEMPTS_EXHAUSTED = NO('attempts-exhausted');
const NOT_IDEMPOTENT = NO('not-idempotent');
const BODY_NOT_REPLAYABLE = NO('body-not-replayable');

/**
 * Decides whether to retry a failed attempt; allocates nothing (answers are shared frozen objects).
 * Checked in order:
 * 1. `response-started`: response headers already went to the client.
 * 2. `not-retriable`: the outcome matches no condition in `retryOn` ({@link classify}).
 * 3. `attempts-exhausted`: `attempt ≥ maxAttempts`.
 * 4. `not-idempotent`: the request may have reached the app (`requestSent`, and the outcome is not
 *    a connect failure or refused stream, which the peer never processed) and it is neither an
 *    idempotent method ({@link isIdempotent}) nor carries an `Idempotency-Key`.
 * 5. `body-not-replayable`: bytes were sent and the body cannot be sent again.
 * Budgets, limits and backoff are checked elsewhere (`RetryBudget`, `ConcurrencyLimit`, `ExponentialBackoff`).
 */
export function shouldRetry(ctx: RetryContext): RetryDecision {
  if (ctx.responseStarted) return RESPONSE_STARTED;
  const reason = classify(ctx.outcome, ctx.retryOn);
  if (reason === undefined) return NOT_RETRIABLE;
  if (ctx.attempt >= ctx.maxAttempts) return ATTEMPTS_EXHAUSTED;
  const kind = ctx.outcome.kind;
  const unprocessed = kind === 'connect-failure' || kind === 'refused-stream' || !ctx.requestSent;
  if (!unprocessed && !ctx.hasIdempotencyKey && !isIdempotent(ctx.method)) return NOT_IDEMPOTENT;
  if (ctx.requestSent && !ctx.bodyReplayable) return BODY_NOT_REPLAYABLE;
  return RETRY[reason];
}
