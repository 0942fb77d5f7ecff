// An upstream's policy resolved at load time from config (defaults filled, durations in ms).
import type { LoadBalancerKind } from '../balancer/load-balancer.ts';
import type { UpstreamSpec } from '../config/schema.ts';

/** Everything the request path needs to know about an upstream's policy, resolved once. */
export interface UpstreamSettings {
  readonly loadBalancer: LoadBalancerKind;
  /** Connect timeout per connection attempt, ms. Default 1000. */
  readonly connectTimeoutMs: number;
  /** Time until response headers, covering every attempt, ms. Default 15000. */
  readonly requestTimeoutMs: number;
  /** Longest gap between response body chunks, ms. Default 300000. */
  readonly idleTimeoutMs: number;
}

/** Settings of an upstream that config does not mention. */
export const DEFAULT_UPSTREAM_SETTINGS: UpstreamSettings = Object.freeze({
  loadBalancer: 'round_robin',
  connectTimeoutMs: 1000,
  requestTimeoutMs: 15_000,
  idleTimeoutMs: 300_000,
});

/** Resolves an upstream's config section into settings. */
export function resolveUpstreamSettings(spec: UpstreamSpec | undefined): UpstreamSettings {
  if (spec === undefined) return DEFAULT_UPSTREAM_SETTINGS;
  return Object.freeze({
    loadBalancer: spec.loadBalancer,
    connectTimeoutMs: spec.timeouts.connect,
    requestTimeoutMs: spec.timeouts.request,
    idleTimeoutMs: spec.timeouts.idle,
  });
}
