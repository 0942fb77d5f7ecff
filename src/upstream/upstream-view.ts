// A filtered view of an upstream: only endpoints carrying given tags, balanced on their own, with a stricter body limit.
import { createBalancer } from '../balancer/create-balancer.ts';
import type { LoadBalancer, LoadBalancerKind } from '../balancer/load-balancer.ts';
import type { EndpointHandle } from './endpoint.ts';
import type { Upstream } from './upstream.ts';
import type { UpstreamSettings } from './upstream-settings.ts';

/** What a view changes about its upstream. */
export interface UpstreamViewOptions {
  /** Endpoints must carry every one of these tags; empty = every endpoint. */
  readonly tags: readonly string[];
  /** Largest request body, bytes: the smaller of this and the upstream's `maxRequestBodyBytes` applies. Default: the upstream's. */
  readonly maxRequestBodyBytes?: number;
  /** Whether the upstream's `fallback` may serve requests of this view. Default true; a tenant's view says false. */
  readonly fallback?: boolean;
}

/** Views by upstream and options key: one per (upstream, tenant, limit), so their number stays bounded by config. */
const views = new WeakMap<Upstream, Map<string, Upstream>>();

function hasTags(handle: EndpointHandle, tags: readonly string[]): boolean {
  const own = handle.endpoint.tags;
  for (const t of tags) if (!own.includes(t)) return false;
  return true;
}

/**
 * A view of `upstream` that an Exchange uses like the upstream itself: the same pools, breaker,
 * limits, outlier detector, retry budget and metrics (so a tenant's failures count against the
 * endpoints they hit), but `pick` balances only over the eligible endpoints that carry every tag in
 * `options.tags`, with a balancer of the upstream's kind kept up to date from
 * {@link Upstream.onRebalance} (discovery snapshots, ejections, a reloaded `loadBalancer`). With no
 * such endpoint the view has none: the request gets `no_healthy_endpoints`, never another tenant's
 * instance. Views are cached per upstream and options, so asking again per request is cheap.
 */
export function upstreamView(upstream: Upstream, options: UpstreamViewOptions): Upstream {
  const key = `${options.tags.join('\u0000')}|${options.maxRequestBodyBytes ?? ''}|${options.fallback ?? true}`;
  let byKey = views.get(upstream);
  if (byKey === undefined) views.set(upstream, (byKey = new Map()));
  let view = byKey.get(key);
  if (view === undefined) byKey.set(key, (view = createView(upstream, options)));
  return view;
}

function createView(upstream: Upstream, options: UpstreamViewOptions): Upstream {
  const tags = options.tags;
  const filtering = tags.length > 0;
  let kind: LoadBalancerKind = upstream.settings.loadBalancer;
  let balancer: LoadBalancer | null = filtering ? createBalancer(kind) : null;
  upstream.onRebalance((eligible) => {
    if (balancer === null) return;
    const next = upstream.settings.loadBalancer;
    if (next !== kind) balancer = createBalancer((kind = next));
    balancer.update(eligible.filter((h) => hasTags(h, tags)));
  });
  let endpointsOf: readonly EndpointHandle[] | null = null;
  let endpoints: readonly EndpointHandle[] = [];
  const filtered = (): readonly EndpointHandle[] => {
    const all = upstream.endpoints;
    if (!filtering) return all;
    if (all !== endpointsOf) {
      endpointsOf = all;
      endpoints = all.filter((h) => hasTags(h, tags));
    }
    return endpoints;
  };
  let settingsOf: UpstreamSettings | null = null;
  let settings: UpstreamSettings | null = null;
  const viewSettings = (): UpstreamSettings => {
    const base = upstream.settings;
    if (base !== settingsOf) {
      settingsOf = base;
      const max = Math.min(base.maxRequestBodyBytes, options.maxRequestBodyBytes ?? Number.POSITIVE_INFINITY);
      const fallback = options.fallback === false ? null : base.fallback;
      settings =
        max === base.maxRequestBodyBytes && fallback === base.fallback
          ? base
          : Object.freeze({ ...base, maxRequestBodyBytes: max, fallback });
    }
    return settings!;
  };
  const pick = (hashKey: string | undefined, avoid: EndpointHandle | undefined) =>
    balancer === null ? upstream.pick(hashKey, avoid) : balancer.pick(hashKey, avoid);
  const observe = (handle: EndpointHandle, latencyMs: number): void => {
    if (balancer === null) upstream.observe(handle, latencyMs);
    else balancer.observe?.(handle, latencyMs);
  };
  const bound = new Map<PropertyKey, { fn: unknown; bound: unknown }>();
  return new Proxy(upstream, {
    get(target, prop) {
      switch (prop) {
        case 'pick':
          return pick;
        case 'observe':
          return observe;
        case 'settings':
          return viewSettings();
        case 'endpoints':
          return filtered();
        case 'usable': {
          if (!filtering) return target.usable;
          let ejected = 0;
          const list = filtered();
          for (const h of list) if (h.ejected) ejected++;
          return list.length > ejected;
        }
      }
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      // Methods run on the upstream itself (its private state), bound once.
      const cached = bound.get(prop);
      if (cached !== undefined && cached.fn === value) return cached.bound;
      const b = (value as (...args: unknown[]) => unknown).bind(target);
      bound.set(prop, { fn: value, bound: b });
      return b;
    },
    set(target, prop, value) {
      return Reflect.set(target, prop, value, target);
    },
  });
}
