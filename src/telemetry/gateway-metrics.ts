// Metrics of the gateway (edge) listener: requests by route, auth result and tenant, rate-limited requests, JWKS and identity-service calls.
import { Counter, Gauge, type Registry } from 'prom-client';

/** How authentication ended for a gateway request (a bounded label). */
export type GatewayAuthResult = 'public' | 'ok' | 'missing' | 'invalid' | 'forbidden' | 'unavailable';

/** The type of a `gateway.auth.NAME` authenticator, as its metrics tell them apart. */
export type AuthenticatorType = 'jwt' | 'validate' | 'apiKey';

/** Which limit refused a request: the route's bucket, the tenant's, or the API key's own. */
export type GatewayLimit = 'route' | 'tenant' | 'key';

/**
 * The gateway's metrics, registered on the daemon's registry. Labels are bounded by config: `route`
 * is a gateway route's name, `tenant` a configured tenant, `""` (none) or `other`, `authenticator`
 * a name in `gateway.auth`.
 */
export class GatewayMetrics {
  /** `meshlet_gateway_requests_total{route, auth, tenant}`: every routed request, with how its authentication ended. */
  readonly requests: Counter<'route' | 'auth' | 'tenant'>;
  /** `meshlet_gateway_rate_limited_total{route, limit, tenant}`: requests refused with 429. */
  readonly rateLimited: Counter<'route' | 'limit' | 'tenant'>;
  /** `meshlet_gateway_rate_limit_evictions_total{route, limit}`: buckets dropped to keep a per-caller table within its bound. */
  readonly rateLimitEvictions: Counter<'route' | 'limit'>;
  /** `meshlet_gateway_unrouted_total{reason}`: no route (404), wrong method (405), bad path (400). */
  readonly unrouted: Counter<'reason'>;
  /** `meshlet_gateway_cors_preflights_total{route, result}`: `allowed` or `refused` origins. */
  readonly preflights: Counter<'route' | 'result'>;
  /** `meshlet_gateway_jwks_fetches_total{authenticator, result}`. */
  readonly jwksFetches: Counter<'authenticator' | 'result'>;
  /** `meshlet_gateway_validate_calls_total{authenticator, result}`: identity-service calls (allowed, denied, failed). */
  readonly validateCalls: Counter<'authenticator' | 'result'>;
  /** `meshlet_gateway_api_keys{authenticator}`: keys loaded from the file. */
  readonly apiKeys: Gauge<'authenticator'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'meshlet_gateway_requests_total',
      help: 'Requests the gateway routed, by route, authentication result (public, ok, missing, invalid, forbidden, unavailable) and tenant.',
      labelNames: ['route', 'auth', 'tenant'] as const,
      registers,
    });
    this.rateLimited = new Counter({
      name: 'meshlet_gateway_rate_limited_total',
      help: 'Gateway requests refused with 429, by route, the limit that refused (route, tenant, key) and tenant.',
      labelNames: ['route', 'limit', 'tenant'] as const,
      registers,
    });
    this.rateLimitEvictions = new Counter({
      name: 'meshlet_gateway_rate_limit_evictions_total',
      help: 'Least recently used rate-limit buckets dropped to keep a table within 10,000 callers, by route and limit (route: the route\'s per-caller table; tenant, with route "": tenantDefaults).',
      labelNames: ['route', 'limit'] as const,
      registers,
    });
    this.unrouted = new Counter({
      name: 'meshlet_gateway_unrouted_total',
      help: 'Gateway requests no route took, by reason (no_route, method_not_allowed, bad_request).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.preflights = new Counter({
      name: 'meshlet_gateway_cors_preflights_total',
      help: 'CORS preflights answered by the gateway, by route and result (allowed, refused).',
      labelNames: ['route', 'result'] as const,
      registers,
    });
    this.jwksFetches = new Counter({
      name: 'meshlet_gateway_jwks_fetches_total',
      help: 'JWKS fetches by jwt authenticator and result (ok, failed).',
      labelNames: ['authenticator', 'result'] as const,
      registers,
    });
    this.validateCalls = new Counter({
      name: 'meshlet_gateway_validate_calls_total',
      help: 'Identity-service calls by validate authenticator and result (allowed, denied, failed).',
      labelNames: ['authenticator', 'result'] as const,
      registers,
    });
    this.apiKeys = new Gauge({
      name: 'meshlet_gateway_api_keys',
      help: 'API keys loaded, by apiKey authenticator.',
      labelNames: ['authenticator'] as const,
      registers,
    });
  }

  /**
   * Drops the series of authenticator `name` (its JWKS fetches, identity-service calls and API-key
   * count) once a reload retired it: all of them when no `gateway.auth.NAME` of that name is left
   * (removed or renamed: no longer exported; should the name come back, its counters start from 0),
   * else those of the other types than `kept`, the type the name was rebuilt as (whose series its
   * new authenticator goes on counting).
   */
  retireAuthenticator(name: string, kept?: AuthenticatorType): void {
    if (kept !== 'jwt') for (const result of JWKS_RESULTS) this.jwksFetches.remove(name, result);
    if (kept !== 'validate') for (const result of VALIDATE_RESULTS) this.validateCalls.remove(name, result);
    if (kept !== 'apiKey') this.apiKeys.remove(name);
  }

  /**
   * Drops the series of gateway route `name` (requests, 429s, CORS preflights and its per-caller
   * bucket evictions) once a reload removed or renamed it: no longer exported; should the name come
   * back, its counters start from 0. `tenants` are the tenant names configured while it counted
   * (with `""` and `other`, every `tenant` value its series can carry).
   */
  retireRoute(name: string, tenants: Iterable<string>): void {
    for (const tenant of ['', 'other', ...tenants]) {
      for (const auth of AUTH_RESULTS) this.requests.remove(name, auth, tenant);
      for (const limit of LIMITS) this.rateLimited.remove(name, limit, tenant);
    }
    for (const result of PREFLIGHT_RESULTS) this.preflights.remove(name, result);
    this.rateLimitEvictions.remove(name, 'route');
  }

  /**
   * Drops the series of tenant `name` (requests and 429s) on each route of `routes` once a reload
   * removed it from `gateway.tenants`: no longer exported; a caller of that tenant now counts as
   * `other`, and should the tenant come back, its counters start from 0.
   */
  retireTenant(name: string, routes: Iterable<string>): void {
    for (const route of routes) {
      for (const auth of AUTH_RESULTS) this.requests.remove(route, auth, name);
      for (const limit of LIMITS) this.rateLimited.remove(route, limit, name);
    }
  }
}

/** The `auth` values of `meshlet_gateway_requests_total`. */
const AUTH_RESULTS: readonly GatewayAuthResult[] = [
  'public',
  'ok',
  'missing',
  'invalid',
  'forbidden',
  'unavailable',
];
/** The `limit` values of `meshlet_gateway_rate_limited_total`. */
const LIMITS: readonly GatewayLimit[] = ['route', 'tenant', 'key'];
/** The `result` values of `meshlet_gateway_cors_preflights_total`. */
const PREFLIGHT_RESULTS = ['allowed', 'refused'] as const;

/** The `result` values of `meshlet_gateway_jwks_fetches_total`. */
const JWKS_RESULTS = ['ok', 'failed'] as const;
/** The `result` values of `meshlet_gateway_validate_calls_total`. */
const VALIDATE_RESULTS = ['allowed', 'denied', 'failed'] as const;
