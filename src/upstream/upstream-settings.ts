// An upstream's policy resolved at load time from config (defaults filled, durations in ms, lists parsed).
import type { LoadBalancerKind } from '../balancer/load-balancer.ts';
import type { Protocol, RouteSpec, UpstreamSpec } from '../config/schema.ts';
import { parseRetryOn, type RetryOnPolicy } from '../resilience/retry-policy.ts';

/** Retry policy, resolved. */
export interface RetrySettings {
  /** Attempts in all, the first included. */
  readonly attempts: number;
  readonly retryOn: RetryOnPolicy;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Longest `Retry-After` honoured, ms. */
  readonly retryAfterMaxMs: number;
  /** Largest request body kept for replay, bytes; also the most of a gRPC response held back. */
  readonly bufferLimitBytes: number;
  /** Longest a gRPC response is held back waiting for its status, ms (0 = never held). */
  readonly grpcResponseHoldMs: number;
  readonly budgetRatio: number;
  readonly budgetMinRetriesPerSecond: number;
  readonly budgetWindowMs: number;
}

/** Timeouts and retries of one request: the upstream's, or a route's override of them. */
export interface RequestPolicy {
  /** Until response headers, all attempts and backoff included, ms. */
  readonly requestTimeoutMs: number;
  /** Until response headers for one attempt, ms (≤ the request timeout). */
  readonly perTryTimeoutMs: number;
  /** Longest gap between response body chunks, ms. */
  readonly idleTimeoutMs: number;
  readonly retry: RetrySettings;
}

/** Everything the request path needs to know about an upstream's policy, resolved once. */
export interface UpstreamSettings {
  /** What the endpoints speak unless an endpoint says otherwise. Default http1. */
  readonly protocol: Protocol;
  readonly loadBalancer: LoadBalancerKind;
  /** Where ring_hash / maglev read their key; null = no key (random pick). */
  readonly hashOn: { readonly header: string } | { readonly cookie: string } | null;
  /** Connect timeout per connection attempt, ms. Default 1000. */
  readonly connectTimeoutMs: number;
  readonly policy: RequestPolicy;
  readonly circuitBreaker: UpstreamSpec['circuitBreaker'];
  readonly outlierDetection: UpstreamSpec['outlierDetection'];
  readonly limits: UpstreamSpec['limits'];
  /** Largest request body accepted, bytes; Infinity = unlimited (the default). */
  readonly maxRequestBodyBytes: number;
  /** Longest silence on an established tunnel, ms. Default 1 h. */
  readonly upgradeIdleMs: number;
  /** `Upgrade` tokens forwarded as tunnels, lowercase. Default websocket. */
  readonly upgrades: readonly string[];
  readonly fallback: string | null;
}

/** `retryOn` when config gives none: HTTP's, or gRPC's (UNAVAILABLE instead of gateway errors). */
const DEFAULT_RETRY_ON: Readonly<Record<Protocol, readonly string[]>> = {
  http1: ['connect-failure', 'refused-stream', 'gateway-error'],
  http2: ['connect-failure', 'refused-stream', 'gateway-error'],
  grpc: ['connect-failure', 'refused-stream', 'unavailable'],
};

function resolveRetries(spec: UpstreamSpec['retries'], keyPath: string, protocol: Protocol): RetrySettings {
  return Object.freeze({
    attempts: spec.attempts,
    retryOn: parseRetryOn(spec.retryOn ?? DEFAULT_RETRY_ON[protocol], `${keyPath}.retryOn`),
    backoffBaseMs: spec.backoff.base,
    backoffMaxMs: Math.max(spec.backoff.max, spec.backoff.base),
    retryAfterMaxMs: spec.retryAfterMax,
    bufferLimitBytes: spec.bufferLimitBytes,
    grpcResponseHoldMs: spec.grpcResponseHold,
    budgetRatio: spec.budget.ratio,
    budgetMinRetriesPerSecond: spec.budget.minRetriesPerSecond,
    budgetWindowMs: spec.budget.window,
  });
}

/**
 * Resolves an upstream's config section (or `config.defaults.upstream` for one config does not name)
 * into settings. Throws ConfigError on a bad retryOn list.
 */
export function resolveUpstreamSettings(s: UpstreamSpec, name = '*'): UpstreamSettings {
  const requestTimeoutMs = s.timeouts.request;
  return Object.freeze({
    protocol: s.protocol ?? 'http1',
    loadBalancer: s.loadBalancer,
    hashOn:
      s.hashOn === undefined
        ? null
        : 'header' in s.hashOn
          ? { header: s.hashOn.header.toLowerCase() }
          : s.hashOn,
    connectTimeoutMs: s.timeouts.connect,
    policy: Object.freeze({
      requestTimeoutMs,
      perTryTimeoutMs: Math.min(s.timeouts.perTry ?? requestTimeoutMs, requestTimeoutMs),
      idleTimeoutMs: s.timeouts.idle,
      retry: resolveRetries(s.retries, `upstreams.${name}.retries`, s.protocol ?? 'http1'),
    }),
    circuitBreaker: s.circuitBreaker,
    outlierDetection: s.outlierDetection,
    limits: s.limits,
    maxRequestBodyBytes: s.maxRequestBodyBytes ?? Number.POSITIVE_INFINITY,
    upgradeIdleMs: s.timeouts.upgradeIdle,
    upgrades: s.upgrades,
    fallback: s.fallback ?? null,
  });
}

/** A route's override of its upstream's request policy, or null when the route overrides nothing. */
export function resolveRouteOverride(route: RouteSpec, index: number): Partial<RequestPolicy> | null {
  if (route.timeouts === undefined && route.retries === undefined) return null;
  const out: { -readonly [K in keyof RequestPolicy]?: RequestPolicy[K] } = {};
  if (route.timeouts?.request !== undefined) out.requestTimeoutMs = route.timeouts.request;
  if (route.timeouts?.perTry !== undefined) out.perTryTimeoutMs = route.timeouts.perTry;
  if (route.timeouts?.idle !== undefined) out.idleTimeoutMs = route.timeouts.idle;
  if (route.retries !== undefined)
    out.retry = resolveRetries(route.retries, `routes[${index}].retries`, 'http1');
  return out;
}

/** Applies a route override on top of an upstream's policy. */
export function mergePolicy(base: RequestPolicy, override: Partial<RequestPolicy> | null): RequestPolicy {
  if (override === null) return base;
  const requestTimeoutMs = override.requestTimeoutMs ?? base.requestTimeoutMs;
  return {
    requestTimeoutMs,
    perTryTimeoutMs: Math.min(override.perTryTimeoutMs ?? base.perTryTimeoutMs, requestTimeoutMs),
    idleTimeoutMs: override.idleTimeoutMs ?? base.idleTimeoutMs,
    retry: override.retry ?? base.retry,
  };
}
