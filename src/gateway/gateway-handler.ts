// The gateway request path in one screen: route → CORS → authenticate → authorize → rate limits → tenant's endpoints → exchange.
import { sendError } from '../errors/error-response.ts';
import { isGrpcRequest } from '../errors/grpc-status.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import { type AnyRequestListener, ROUTED_METHODS } from '../listener/http-listener.ts';
import type { DownstreamRequest, DownstreamResponse } from '../proxy/downstream.ts';
import { writeHead } from '../proxy/downstream.ts';
import { type EdgeHeaders, Exchange } from '../proxy/exchange.ts';
import { countRefused } from '../proxy/outbound-stack.ts';
import type { ProxyContext } from '../proxy/proxy-context.ts';
import { methodRefusal, targetRefusal } from '../proxy/request-target.ts';
import { authorityRefusal } from '../route/authority.ts';
import type { GatewayAuthResult, GatewayMetrics } from '../telemetry/gateway-metrics.ts';
import { mergePolicy } from '../upstream/upstream-settings.ts';
import { upstreamView } from '../upstream/upstream-view.ts';
import { type AuthOutcome, bearerOf, type Credentials, type Principal } from './authenticator.ts';
import { corsResponseHeaders } from './cors.ts';
import { hostOf, MethodNotAllowed, matchRoute } from './gateway-routes.ts';
import type { GatewayRoute, GatewayState, GatewayTenant } from './gateway-state.ts';
import { bucketAddress, clientIp, type LimitVerdict, rateLimitHeaders } from './rate-limits.ts';

/** Sets `[name, value, …]` on a response not yet started (merged into the head Exchange or sendError writes). */
function setHeaders(res: DownstreamResponse, pairs: readonly string[]): void {
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!;
    const prev = res.getHeader(name);
    res.setHeader(name, prev === undefined ? pairs[i + 1]! : `${String(prev)}, ${pairs[i + 1]!}`);
  }
}

/** What a route with `cors` adds to the answer of a request without `Origin`. */
const VARY_ORIGIN: readonly string[] = Object.freeze(['vary', 'origin']);

function clientGone(res: DownstreamResponse): boolean {
  return 'stream' in res ? res.stream.destroyed : res.destroyed;
}

/**
 * Answers a refusal of the gateway's own, counted and logged like the outbound listener's
 * ({@link countRefused}: the request id forwarding would have kept under the gateway's `drop`,
 * echoed in `x-request-id`). `line` adds the route's upstream and path once a route matched, and
 * the caller once authenticated.
 */
function refuse(
  ctx: ProxyContext,
  g: GatewayState,
  req: DownstreamRequest,
  res: DownstreamResponse,
  err: MeshletError,
  startedAt: number,
  line?: { readonly path: string; readonly upstream: string; readonly principal?: Principal | null },
): void {
  const requestId = countRefused(ctx, req, err, {
    startedAt,
    drop: g.drop,
    path: line?.path,
    upstream: line?.upstream,
    principal: line?.principal ?? undefined,
  });
  if (clientGone(res)) return;
  if (err instanceof MethodNotAllowed) res.setHeader('allow', err.allow);
  sendError(res, err, requestId, undefined, isGrpcRequest(req.headers['content-type']));
}

/** `error="…"` parameters for a challenge; quotes and backslashes dropped from the description. */
function withError(challenge: string, error: string, description?: string): string {
  const d = description === undefined ? '' : `, error_description="${description.replace(/["\\]/g, '')}"`;
  return `${challenge}, error="${error}"${d}`;
}

/**
 * How the authenticators of a route decided: a principal, or (`failOpen`: the credential could not
 * be checked and its authenticator lets the request go on) none, counted as `unavailable`.
 */
type Decision =
  | { readonly principal: Principal; readonly result: 'ok' }
  | { readonly principal: null; readonly result: 'unavailable' }
  | {
      readonly refusal: MeshletError;
      readonly result: GatewayAuthResult;
      readonly challenges: readonly string[];
    };

/**
 * Asks the route's authenticators in order: the first that accepts wins. None accepting: an
 * unavailable one (identity service or JWKS down) is 503 `auth_unavailable`; a credential that did
 * not verify is 401 with `error="invalid_token"`; no credential at all is 401 with the challenges.
 * A `failOpen` authenticator whose service is down answers `failOpen`: unless another one that
 * could not decide fails closed (503), the request then goes on unauthenticated (no principal), a
 * credential another authenticator refused included, as that one's unavailability outranks it too.
 */
async function authenticate(route: GatewayRoute, credentials: Credentials): Promise<Decision> {
  let invalid: { reason: string; challenge: string } | null = null;
  let unavailable: string | null = null;
  let open = false;
  for (const a of route.auth!) {
    const answer = a.authenticate(credentials);
    const outcome: AuthOutcome = answer instanceof Promise ? await answer : answer;
    switch (outcome.kind) {
      case 'ok':
        return { principal: outcome.principal, result: 'ok' };
      case 'invalid':
        invalid ??= { reason: outcome.reason, challenge: a.challenge };
        break;
      case 'unavailable':
        unavailable ??= outcome.reason;
        break;
      case 'failOpen':
        open = true;
        break;
      case 'skip':
        break;
    }
  }
  if (unavailable === null && open) return { principal: null, result: 'unavailable' };
  if (unavailable !== null) {
    return {
      refusal: new MeshletError('auth_unavailable', `authentication unavailable: ${unavailable}`),
      result: 'unavailable',
      challenges: [],
    };
  }
  if (invalid !== null) {
    return {
      refusal: new MeshletError('unauthorized', `credentials refused: ${invalid.reason}`),
      result: 'invalid',
      challenges: route.challenges.map((c) =>
        c === invalid.challenge ? withError(c, 'invalid_token', invalid.reason) : c,
      ),
    };
  }
  return {
    refusal: new MeshletError('unauthorized', 'credentials required'),
    result: 'missing',
    challenges: route.challenges,
  };
}

/**
 * Whether `Authorization` came more than once. It is a single-value field (RFC 9110 §11.6.2, §5.3):
 * Node keeps only the first in `headers` — the one verified — while the raw list, which is what is
 * forwarded, keeps every copy, so an unverified second token would ride along to the upstream.
 */
function repeatedAuthorization(raw: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/**
 * The route bucket's key for `by`: the key's name, else the subject, else the client address (key);
 * tenant, else address (tenant); address. `ip` is the client's {@link bucketAddress} (an IPv6 prefix).
 */
function limitKey(route: GatewayRoute, principal: Principal | null, ip: string): string {
  if (route.limitBy === 'key') {
    if (principal?.key !== undefined) return `k:${principal.key}`;
    if (principal?.subject !== undefined) return `s:${principal.auth}:${principal.subject}`;
  } else if (route.limitBy === 'tenant' && principal?.tenant !== undefined) return `t:${principal.tenant}`;
  return `i:${ip}`;
}

/**
 * The gateway listener's handler. Only `gateway.routes` are routable (no authority names an
 * upstream at the edge). `state` is read per request, so a reload swaps it atomically.
 */
export function gatewayHandler(
  ctx: ProxyContext,
  state: () => GatewayState,
  metrics: GatewayMetrics,
): AnyRequestListener {
  return function gateway(req, res) {
    const g = state();
    const method = req.method ?? 'GET';
    const headers = req.headers;
    const target = req.url ?? '/';
    const startedAt = performance.now();
    if (method === 'CONNECT') {
      return refuse(
        ctx,
        g,
        req,
        res,
        new MethodNotAllowed('CONNECT is not routed by the gateway', ROUTED_METHODS),
        startedAt,
      );
    }
    // node:http refuses both over HTTP/1.1; over HTTP/2 they arrive and are refused here, at the first hop.
    const invalid = methodRefusal(method) ?? targetRefusal(target);
    if (invalid !== null) {
      metrics.unrouted.labels(invalid.code).inc();
      return refuse(ctx, g, req, res, invalid, startedAt);
    }
    if (target.charCodeAt(0) !== 47 /* / */) {
      metrics.unrouted.labels('bad_request').inc();
      return refuse(
        ctx,
        g,
        req,
        res,
        new MeshletError('bad_request', 'the gateway takes origin-form request targets only'),
        startedAt,
      );
    }
    // A Host that is not an authority (`us ers`, `a@host`) would reach the upstream as it came.
    const badHost = authorityRefusal(headers.host ?? (headers[':authority'] as string | undefined));
    if (badHost !== null) {
      metrics.unrouted.labels('bad_request').inc();
      return refuse(ctx, g, req, res, badHost, startedAt);
    }
    if (repeatedAuthorization(req.rawHeaders)) {
      metrics.unrouted.labels('bad_request').inc();
      const twice = new MeshletError('bad_request', 'more than one Authorization header');
      return refuse(ctx, g, req, res, twice, startedAt);
    }
    const origin = headers.origin;
    const askedMethod = headers['access-control-request-method'];
    const preflight = method === 'OPTIONS' && origin !== undefined && typeof askedMethod === 'string';
    const host = hostOf(headers.host ?? (headers[':authority'] as string | undefined));
    let matched = matchRoute(
      g.matchers,
      preflight ? askedMethod.toUpperCase() : method,
      host,
      target,
      headers,
    );
    // Only a route with `cors` answers a preflight: to any other, an OPTIONS request is an ordinary
    // one, routed by its own method — else `Access-Control-Request-Method: GET` would carry it onto
    // a GET-only (say, public) route instead of the one that takes OPTIONS (and authenticates).
    if (preflight && (matched instanceof MeshletError || g.routes[matched.index]!.cors === null)) {
      matched = matchRoute(g.matchers, method, host, target, headers);
    }
    if (matched instanceof MeshletError) {
      metrics.unrouted.labels(matched.code).inc();
      return refuse(ctx, g, req, res, matched, startedAt);
    }
    const route = g.routes[matched.index]!;
    if (route.cors !== null) {
      if (origin === undefined) {
        // Its answer differs from an Origin request's (no CORS headers): a shared cache must not
        // serve it to a cross-origin caller (Fetch standard, "CORS protocol and HTTP caches").
        setHeaders(res, VARY_ORIGIN);
      } else if (preflight) {
        const allowed = route.cors.allows(origin);
        if (route.live.counting) metrics.preflights.labels(route.name, allowed ? 'allowed' : 'refused').inc();
        writeHead(res, 204, route.cors.preflight(origin, headers['access-control-request-headers']));
        res.end();
        return;
      } else setHeaders(res, route.cors.response(origin));
    }
    if (route.auth === null) {
      forward(ctx, g, route, req, res, matched.path, null, 'public', metrics, startedAt);
      return;
    }
    const credentials: Credentials = { bearer: bearerOf(headers), headers };
    authenticate(route, credentials).then(
      (decision) => {
        if ('refusal' in decision) {
          if (route.live.counting) metrics.requests.labels(route.name, decision.result, '').inc();
          if (decision.challenges.length > 0 && !clientGone(res))
            res.setHeader('www-authenticate', decision.challenges);
          return refuse(ctx, g, req, res, decision.refusal, startedAt, {
            path: matched.path,
            upstream: route.upstream,
          });
        }
        forward(
          ctx,
          g,
          route,
          req,
          res,
          matched.path,
          decision.principal,
          decision.result,
          metrics,
          startedAt,
        );
      },
      (err: unknown) => {
        ctx.logger.error({ msg: 'gateway authentication failed', reason: (err as Error).message });
        const failed = new MeshletError('auth_unavailable', 'authentication failed unexpectedly');
        refuse(ctx, g, req, res, failed, startedAt, { path: matched.path, upstream: route.upstream });
      },
    );
  };
}

/** After authentication: authorize, rate-limit, pick the tenant's endpoints, and start the exchange. */
function forward(
  ctx: ProxyContext,
  g: GatewayState,
  route: GatewayRoute,
  req: DownstreamRequest,
  res: DownstreamResponse,
  path: string,
  principal: Principal | null,
  result: GatewayAuthResult,
  metrics: GatewayMetrics,
  startedAt: number,
): void {
  const tenantName = principal?.tenant;
  const tenant: GatewayTenant | undefined = tenantName === undefined ? undefined : g.tenants.get(tenantName);
  // The `tenant` label: a configured tenant, `""` for none, `other` for any other (bounded). A
  // request still in flight on a route or tenant a reload retired counts nothing (no series back).
  const label = tenantName === undefined ? '' : tenant === undefined ? 'other' : tenantName;
  const counting = route.live.counting && (tenant === undefined || tenant.live.counting);
  // `allow` needs auth on the route (the schema): no principal here means a `failOpen` authenticator
  // let the request go on unauthenticated, and no rule passes an unknown caller.
  if (route.allow !== null) {
    const why =
      principal === null ? 'not authenticated (authentication unavailable)' : route.allow.deny(principal);
    if (why !== null) {
      if (counting) metrics.requests.labels(route.name, 'forbidden', label).inc();
      if (principal !== null && !clientGone(res))
        res.setHeader('www-authenticate', withError(route.challenges[0]!, 'insufficient_scope', why));
      const forbidden = new MeshletError('forbidden', `not allowed on this route: ${why}`, route.upstream);
      return refuse(ctx, g, req, res, forbidden, startedAt, { path, upstream: route.upstream, principal });
    }
  }
  if (counting) metrics.requests.labels(route.name, result, label).inc();
  // Rate limits: the route's (by key, tenant or IP), the tenant's (its own, else tenantDefaults'),
  // the key's own; the tightest answers.
  let shown: LimitVerdict | null = null;
  const check = (v: LimitVerdict, limit: 'route' | 'tenant' | 'key'): boolean => {
    if (!v.ok) {
      if (counting) metrics.rateLimited.labels(route.name, limit, label).inc();
      if (!clientGone(res)) setHeaders(res, rateLimitHeaders(v));
      refuse(
        ctx,
        g,
        req,
        res,
        new MeshletError('rate_limited', `${limit} rate limit exceeded`, route.upstream, v.resetSeconds),
        startedAt,
        { path, upstream: route.upstream, principal },
      );
      return false;
    }
    if (shown === null || v.remaining < shown.remaining) shown = v;
    return true;
  };
  if (route.limit !== null) {
    const ip = clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], g.trustedProxies);
    const key = limitKey(route, principal, bucketAddress(ip, g.ipv6Prefix));
    if (!check(route.limit.take(key), 'route')) return;
  }
  if (tenant !== undefined && tenant.limit !== null) {
    if (!check(tenant.limit.take(), 'tenant')) return;
  } else if (tenantName !== undefined && g.tenantDefault !== null) {
    if (!check(g.tenantDefault.take(tenantName), 'tenant')) return;
  }
  const keyLimit = principal?.limit;
  if (keyLimit !== undefined && !check(keyLimit.take(), 'key')) return;
  if (shown !== null) setHeaders(res, rateLimitHeaders(shown));

  const name = tenant?.upstreams?.[route.upstream] ?? route.upstream;
  const upstream = ctx.upstreams.get(name);
  if (upstream === undefined) {
    const unknown = new MeshletError(
      'no_route',
      `gateway route names upstream "${name}", which is unknown`,
      name,
    );
    return refuse(ctx, g, req, res, unknown, startedAt, { path, upstream: name, principal });
  }
  if (clientGone(res)) return;
  const tags = tenant?.tags ?? null;
  const view = upstreamView(upstream, {
    tags: tags ?? [],
    maxRequestBodyBytes: route.maxRequestBodyBytes,
    fallback: tags === null,
  });
  const edge: EdgeHeaders = {
    drop: g.drop,
    add: principal?.headers ?? [],
    proto: g.proto,
    responseHeaders: route.cors === null ? undefined : corsResponseHeaders,
    principal:
      principal === null
        ? undefined
        : { auth: principal.auth, subject: principal.subject, tenant: principal.tenant, key: principal.key },
    receivedAt: startedAt,
  };
  new Exchange(
    ctx,
    req,
    res,
    view,
    path,
    mergePolicy(upstream.settings.policy, route.override),
    edge,
  ).start();
}
