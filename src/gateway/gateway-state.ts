// The gateway's config compiled at load: routes with their authenticators, allow rules, limits and CORS; tenants; the identity headers to strip.
import type { GatewaySpec } from '../config/gateway-schema.ts';
import type { MeshletConfig, RouteSpec } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { AuthenticatorType, GatewayMetrics } from '../telemetry/gateway-metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { type RequestPolicy, resolveRouteOverride } from '../upstream/upstream-settings.ts';
import { TIMEOUT_HEADER } from '../proxy/deadline.ts';
import { PEER_IDENTITY_HEADER, PEER_SPIFFE_ID_HEADER } from '../proxy/inbound-stack.ts';
import { ApiKeyAuthenticator } from './api-key-authenticator.ts';
import type { Authenticator } from './authenticator.ts';
import { AllowRule } from './authorize.ts';
import { CorsPolicy } from './cors.ts';
import { compileMatcher, type RouteMatcher } from './gateway-routes.ts';
import { JwtAuthenticator } from './jwt-authenticator.ts';
import { KeyedLimit, SingleLimit } from './rate-limits.ts';
import { ValidateAuthenticator } from './validate-authenticator.ts';

/** One gateway route, compiled. */
export interface GatewayRoute {
  /** The `route` metric label. */
  readonly name: string;
  readonly upstream: string;
  /** Authenticators in order, or null (public). */
  readonly auth: readonly Authenticator[] | null;
  /** `WWW-Authenticate` challenges of its authenticators, deduplicated. */
  readonly challenges: readonly string[];
  readonly allow: AllowRule | null;
  readonly limit: KeyedLimit | null;
  readonly limitBy: 'key' | 'tenant' | 'ip';
  readonly cors: CorsPolicy | null;
  readonly override: Partial<RequestPolicy> | null;
  readonly maxRequestBodyBytes: number;
  /**
   * Whether its metrics still count (cleared when a reload removed or renamed it, so that a request
   * still in flight on it brings no retired series back).
   */
  readonly live: { counting: boolean };
}

/** A configured tenant, compiled. */
export interface GatewayTenant {
  readonly limit: SingleLimit | null;
  /** Endpoint tags its requests are confined to, or null. */
  readonly tags: readonly string[] | null;
  readonly upstreams: Readonly<Record<string, string>> | null;
  /**
   * Whether its metrics still count, shared by the states that keep the tenant (cleared when a
   * reload removed it, so that a request still in flight for it brings no retired series back).
   */
  readonly live: { counting: boolean };
}

/** Everything the gateway's request path reads, swapped whole on a reload. */
export interface GatewayState {
  readonly routes: readonly GatewayRoute[];
  readonly matchers: readonly RouteMatcher[];
  readonly tenants: ReadonlyMap<string, GatewayTenant>;
  /** `tenantDefaults.rateLimit`: a bucket per tenant whose entry sets no `rateLimit` (listed or not), or null. */
  readonly tenantDefault: KeyedLimit | null;
  /** `rateLimitIpv6Prefix`: bits of an IPv6 client address its rate-limit bucket is keyed by. */
  readonly ipv6Prefix: number;
  /** Headers removed from every client request: identity headers (the gateway's and the mesh's `x-meshlet-peer-*`), meshlet's own, and (no trusted proxy) `x-forwarded-*`. */
  readonly drop: ReadonlySet<string>;
  readonly trustedProxies: number;
  readonly proto: 'http' | 'https';
  /** Authenticators by name, with the spec JSON they were built from (reused across reloads while it stays equal). */
  readonly authenticators: ReadonlyMap<string, BuiltAuthenticator>;
}

/** One `gateway.auth.NAME`, built. */
export interface BuiltAuthenticator {
  /** The spec it was built from, as JSON. */
  readonly json: string;
  readonly type: AuthenticatorType;
  readonly auth: Authenticator;
  /**
   * Whether its metric callbacks still count (cleared when it is retired, so that a JWKS fetch,
   * identity-service call or key-file load finishing late brings no retired series back).
   */
  readonly live: { counting: boolean };
}

/** What building a state needs. */
export interface GatewayStateDeps {
  readonly table: UpstreamTable;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
}

function buildAuthenticator(
  name: string,
  spec: GatewaySpec['auth'][string],
  deps: GatewayStateDeps,
  live: { counting: boolean },
): Authenticator {
  const m = deps.metrics;
  switch (spec.type) {
    case 'jwt':
      return new JwtAuthenticator(name, spec, {
        onJwksFetch: (r) => {
          if (live.counting) m.jwksFetches.labels(name, r).inc();
        },
      });
    case 'validate':
      return new ValidateAuthenticator(name, spec, {
        table: deps.table,
        onCall: (r) => {
          if (live.counting) m.validateCalls.labels(name, r).inc();
        },
      });
    case 'apiKey':
      return new ApiKeyAuthenticator(name, spec, {
        logger: deps.logger,
        onLoad: (n) => {
          if (live.counting) m.apiKeys.labels(name).set(n);
        },
      });
  }
}

/**
 * Compiles `config.gateway` (an absent block is a gateway with no routes: everything 404).
 * Authenticators whose spec did not change since `previous` are kept (their JWKS cache, validation
 * cache, key buckets); the caller retires the others, and the routes and tenants gone, once the new
 * state is in use ({@link retireAuthenticators}, {@link retireRoutes}, {@link retireTenants}). A
 * tenant kept shares its `live` flag with `previous`'s. @throws Error when a secret or keys file
 * cannot be loaded.
 */
export function buildGatewayState(
  config: MeshletConfig,
  deps: GatewayStateDeps,
  previous: GatewayState | null,
): GatewayState {
  const spec: GatewaySpec = config.gateway ?? {
    auth: {},
    routes: [],
    tenants: {},
    trustedProxies: 0,
    rateLimitIpv6Prefix: 64,
    maxRequestBodyBytes: 1024 * 1024,
    identityHeaders: [],
  };
  const authenticators = new Map<string, BuiltAuthenticator>();
  const built: Authenticator[] = [];
  try {
    for (const [name, a] of Object.entries(spec.auth)) {
      const json = JSON.stringify(a);
      const old = previous?.authenticators.get(name);
      // A secret is read at load: a jwt with one is rebuilt on every reload (the file may have changed).
      const reusable = a.type !== 'jwt' || a.jwksUrl !== undefined;
      if (old !== undefined && old.json === json && reusable) authenticators.set(name, old);
      else {
        const live = { counting: true };
        const auth = buildAuthenticator(name, a, deps, live);
        built.push(auth);
        authenticators.set(name, { json, type: a.type, auth, live });
      }
    }
  } catch (err) {
    for (const a of built) a.close();
    throw err;
  }
  // The mesh's caller-identity headers too: only an inbound listener sets them (from a verified
  // certificate), and an upstream reached without mTLS would otherwise take an internet client's copy.
  const drop = new Set<string>([
    TIMEOUT_HEADER,
    'grpc-timeout',
    PEER_IDENTITY_HEADER,
    PEER_SPIFFE_ID_HEADER,
    ...spec.identityHeaders,
  ]);
  for (const { auth } of authenticators.values()) for (const h of auth.identityHeaders) drop.add(h);
  // No trusted proxy in front: the client is on the internet, and its x-request-id is replaced by a
  // fresh one (Envoy's edge default, preserve_external_request_id: false), so an outside caller
  // cannot choose the id every hop logs. Behind a trusted proxy, the proxy's id is kept.
  if (spec.trustedProxies === 0) {
    drop.add('x-request-id');
    drop.add('x-forwarded-for');
    drop.add('x-forwarded-proto');
    drop.add('x-forwarded-host');
    drop.add('forwarded');
  }
  const evictions = deps.metrics.rateLimitEvictions;
  const routes = spec.routes.map((r, i): GatewayRoute => {
    const auth = r.auth === undefined ? null : r.auth.map((n) => authenticators.get(n)!.auth);
    const name = r.name ?? `${r.upstream}#${i}`;
    const live = { counting: true };
    return {
      name,
      upstream: r.upstream,
      auth,
      challenges: auth === null ? [] : [...new Set(auth.map((a) => a.challenge))],
      allow: r.allow === undefined ? null : new AllowRule(r.allow),
      limit:
        r.rateLimit === undefined
          ? null
          : new KeyedLimit(r.rateLimit, {
              onEvict: () => {
                if (live.counting) evictions.labels(name, 'route').inc();
              },
            }),
      limitBy: r.rateLimit?.by ?? 'ip',
      cors: r.cors === undefined ? null : new CorsPolicy(r.cors, r.match.methods),
      override: resolveRouteOverride({ timeouts: r.timeouts } as RouteSpec, i),
      maxRequestBodyBytes: r.maxRequestBodyBytes ?? spec.maxRequestBodyBytes,
      live,
    };
  });
  const tenants = new Map<string, GatewayTenant>();
  for (const [name, t] of Object.entries(spec.tenants)) {
    tenants.set(name, {
      limit: t.rateLimit === undefined ? null : new SingleLimit(t.rateLimit),
      tags: t.upstreamTags ?? null,
      upstreams: t.upstreams ?? null,
      live: previous?.tenants.get(name)?.live ?? { counting: true },
    });
  }
  const defaultRate = spec.tenantDefaults?.rateLimit;
  return {
    routes,
    matchers: spec.routes.map(compileMatcher),
    tenants,
    tenantDefault:
      defaultRate === undefined
        ? null
        : new KeyedLimit(defaultRate, { onEvict: () => evictions.labels('', 'tenant').inc() }),
    ipv6Prefix: spec.rateLimitIpv6Prefix,
    drop,
    trustedProxies: spec.trustedProxies,
    proto: config.listeners.gateway?.tls === undefined ? 'http' : 'https',
    authenticators,
  };
}

/**
 * Retires the authenticators of `old` that `next` no longer uses, once `next` is in use: each is
 * closed and stops counting, and its series are dropped ({@link GatewayMetrics.retireAuthenticator})
 * — all of them for a name `next` has no authenticator of (removed or renamed); a name rebuilt with
 * a new spec keeps those of its new type, which its new authenticator goes on counting.
 */
export function retireAuthenticators(old: GatewayState, next: GatewayState, metrics: GatewayMetrics): void {
  const kept = new Set([...next.authenticators.values()].map((x) => x.auth));
  for (const [name, entry] of old.authenticators) {
    if (kept.has(entry.auth)) continue;
    entry.live.counting = false;
    entry.auth.close();
    metrics.retireAuthenticator(name, next.authenticators.get(name)?.type);
  }
}

/**
 * Retires the routes of `old` whose name `next` has no route of (removed or renamed), once `next`
 * is in use: they stop counting and their series are dropped ({@link GatewayMetrics.retireRoute}).
 * A route whose name stays keeps its series, which its successor goes on counting.
 */
export function retireRoutes(old: GatewayState, next: GatewayState, metrics: GatewayMetrics): void {
  const kept = new Set(next.routes.map((r) => r.name));
  for (const route of old.routes) {
    if (kept.has(route.name)) continue;
    route.live.counting = false;
    metrics.retireRoute(route.name, old.tenants.keys());
  }
}

/**
 * Retires the tenants of `old` that `next` no longer lists, once `next` is in use: they stop
 * counting and their series are dropped on every route of either state
 * ({@link GatewayMetrics.retireTenant}); a route's later retirement then has no series of theirs left.
 */
export function retireTenants(old: GatewayState, next: GatewayState, metrics: GatewayMetrics): void {
  const routes = new Set([...old.routes, ...next.routes].map((r) => r.name));
  for (const [name, tenant] of old.tenants) {
    if (next.tenants.has(name)) continue;
    tenant.live.counting = false;
    metrics.retireTenant(name, routes);
  }
}
