// The admin listener's routes: /, /live, /ready, /metrics, /upstreams, /drain, /config (one small handler per concern).
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Registry } from '../registry/registry.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { httpDate } from '../telemetry/utc-time.ts';
import { tlsModeOf } from '../tls/tls-pool-factory.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { adminIndex } from './admin-index.ts';
import { type ConfigDocument, redactUrlCredentials } from './config-view.ts';
import { PROXY_ONLY, readiness } from './readiness.ts';

/** What the admin handlers read from the running daemon. */
export interface AdminView {
  readonly metrics: Metrics;
  readonly table: UpstreamTable;
  readonly registry: Registry;
  /** True while drained (POST /drain) or shutting down: /ready answers 503. */
  draining(): boolean;
  /** Why it is draining (the `draining` check's detail). */
  drainReason?(): string;
  /** `POST /drain` (true) and `DELETE /drain` (false); resolves with the state after the call. */
  setDrained?(on: boolean): Promise<DrainState>;
  /** `GET /config`. */
  configDocument?(): ConfigDocument;
  /** `GET /`: meshlet's version and where the gRPC admin API listens (`host:port`, null when off). */
  version?: string;
  adminGrpcAddress?(): string | null;
  /** Bearer token for mutating calls, or undefined (then only loopback callers may mutate); read per call. */
  readonly adminToken?: (() => string | undefined) | undefined;
  /** Extra readiness conditions (e.g. the local app's health check), each `[name, ok, detail]`. */
  readinessChecks(): readonly [string, boolean, string][];
  /** Whether `tls` is configured (then endpoints that advertise mTLS get it). Default false. */
  readonly tlsConfigured?: boolean;
}

/** What `POST|DELETE /drain` answer: whether meshlet drains now, and whether a shutdown is under way. */
export interface DrainState {
  draining: boolean;
  shuttingDown: boolean;
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/** 405 with the `Allow` header RFC 9110 §15.5.6 requires: the methods `path` answers. */
function notAllowed(res: ServerResponse, allow: string): void {
  json(res, 405, { error: 'method_not_allowed', message: `allowed: ${allow}` }, { allow });
}

/** The methods each path answers, for `Allow` (reads answer HEAD too). */
const READ = 'GET, HEAD';
const DRAIN = 'POST, DELETE';
const RESET = 'POST';

/**
 * The path of a request target: origin-form as it is, absolute-form (`GET http://host/live`, which
 * RFC 9112 §3.2.2 says a server must accept) reduced to its path. Undefined for anything else
 * (`*`, authority-form).
 */
function pathOf(target: string): string | undefined {
  if (target.startsWith('/')) return target;
  const absolute = /^https?:\/\/[^/?#]*/i.exec(target);
  if (absolute === null) return undefined;
  const rest = target.slice(absolute[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/**
 * Whether the request carries a body. No admin call reads one, and Node would otherwise read and
 * discard it after the answer for as long as the client sends (a body that never ends holds the
 * connection forever, past every timeout), so such a connection is closed after the answer.
 */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * `GET /ready`: 200 when the registry has synced, no extra check fails and meshlet is not draining.
 * `?ignore=app` leaves the local app's check out (meshlet's own readiness, what `meshlet wait` asks).
 */
function ready(view: AdminView, res: ServerResponse, query: string): void {
  const ignore = new URLSearchParams(query).getAll('ignore').flatMap((v) => v.split(','));
  const { ok, checks } = readiness(
    view,
    ignore.filter((name) => PROXY_ONLY.includes(name)),
  );
  json(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not_ready', checks });
}

/** `POST /drain` and `DELETE /drain`, after the mutating-call guard. 409 when undoing during a shutdown. */
function drain(view: AdminView, res: ServerResponse, on: boolean): void {
  if (view.setDrained === undefined) return json(res, 404, { error: 'not_found', message: 'no drain here' });
  view.setDrained(on).then(
    (state) =>
      !on && state.shuttingDown
        ? json(res, 409, { error: 'shutting_down', message: 'meshlet is shutting down', ...state })
        : json(res, 200, state),
    (err: Error) => json(res, 500, { error: 'drain_failed', message: err.message }),
  );
}

/**
 * `GET /upstreams`: each upstream, its balancer and endpoints with their state. An endpoint's
 * `protocol` is the one it advertises (Consul `Meta.meshlet_protocol`, static `protocol`); null when
 * it advertises none and the upstream's `protocol` applies. An endpoint refused as meshlet's own
 * listener (a forwarding loop) is listed with `state: "loop"` and counted in `total`, not `healthy`.
 */
export function upstreamsView(view: AdminView): Record<string, unknown> {
  const upstreams: Record<string, unknown> = {};
  for (const u of view.table.values()) {
    const healthy = u.endpoints.filter((h) => !h.ejected).length;
    upstreams[u.name] = {
      loadBalancer: u.balancerKind,
      synced: u.synced,
      healthy,
      total: u.endpoints.length + u.loopEndpoints.length,
      endpoints: [
        ...u.endpoints.map((h) => ({
          id: h.endpoint.id,
          address: h.endpoint.address,
          port: h.endpoint.port,
          weight: h.endpoint.weight,
          tags: h.endpoint.tags,
          transport: h.endpoint.transport,
          protocol: h.endpoint.protocol ?? null,
          tls: tlsModeOf(h.endpoint, view.tlsConfigured ?? false),
          state: h.ejected ? 'ejected' : 'healthy',
          active: h.active,
        })),
        // Refused as meshlet's own listener (a forwarding loop): never used.
        ...u.loopEndpoints.map((e) => ({
          id: e.id,
          address: e.address,
          port: e.port,
          weight: e.weight,
          tags: e.tags,
          transport: e.transport,
          protocol: e.protocol ?? null,
          tls: tlsModeOf(e, view.tlsConfigured ?? false),
          state: 'loop',
          active: 0,
        })),
      ],
      circuitBreaker: u.breaker === null ? 'disabled' : u.breaker.state,
      outlierDetection: { ejectionsActive: u.outlier.ejectionsActive, panic: u.outlier.panic },
      limits: {
        activeRequests: u.limits.activeRequests,
        pendingRequests: u.limits.pendingRequests,
        activeRetries: u.limits.activeRetries,
      },
      fallback: u.settings.fallback,
    };
  }
  // A registry address may carry credentials (`http://user:password@consul:8500`): never shown.
  return { registry: redactUrlCredentials(view.registry.status()), upstreams };
}

/** `127.0.0.0/8`, `::1` and their IPv4-mapped forms: the addresses a loopback caller or listener has. */
function isLoopbackAddress(address: string): boolean {
  return address === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(address);
}

/** A socket's local address as it appears in a `Host` header: IPv4 unmapped, IPv6 in brackets, lower case. */
function hostForm(address: string): string {
  const unmapped = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  return (unmapped.includes(':') ? `[${unmapped}]` : unmapped).toLowerCase();
}

/**
 * Why a mutating call is refused whoever makes it (token or not), or undefined when it may go on.
 * A browser page can send a blind cross-origin `POST` (`text/plain` needs no preflight) and, after
 * DNS rebinding, send it to this listener under its own name; both are told apart by headers a page
 * cannot forge:
 * - `Origin`, when present, must be `http(s)://` `localhost`, `127.x.x.x` or `[::1]`, any port
 *   (`Origin: null`, from sandboxed frames and file pages, is not loopback);
 * - `Host` must name this listener: `localhost`, `127.0.0.1`, `[::1]` or the address the connection
 *   arrived on, with this listener's port. A `Host` without a port means port 80, so it is accepted
 *   only when the listener is on port 80; a request without `Host` is refused. An absolute-form
 *   target's authority is read instead of `Host`, and must name this listener the same way.
 */
function crossSiteRefusal(req: IncomingMessage): string | undefined {
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    const loopback =
      url !== undefined &&
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      (url.hostname === 'localhost' || url.hostname === '[::1]' || isLoopbackAddress(url.hostname));
    if (!loopback) return `cross-origin request refused: Origin ${origin} is not a loopback origin`;
  }
  // An absolute-form target names the host itself, and wins over `Host` (RFC 9112 §3.2.2).
  const authority = /^https?:\/\/([^/?#]*)/i.exec(req.url ?? '')?.[1];
  const host = (authority ?? req.headers.host ?? '').toLowerCase();
  const port = req.socket.localPort;
  const names = new Set(['localhost', '127.0.0.1', '[::1]', hostForm(req.socket.localAddress ?? '')]);
  const accepted = [...names].some((name) => host === `${name}:${port}` || (port === 80 && host === name));
  if (!accepted) {
    const named = host === '' ? 'no Host header' : `Host ${host}`;
    return `request refused: ${named} does not name this admin listener (port ${port}); guard against DNS rebinding`;
  }
  return undefined;
}

/** Mutating calls: with a token configured, `Authorization: Bearer TOKEN`; without, loopback callers only. */
function mayMutate(view: AdminView, req: IncomingMessage): boolean {
  return mutationAllowed(view.adminToken?.(), req.headers.authorization, req.socket.remoteAddress ?? '');
}

/**
 * The admin-token rule, for HTTP and gRPC alike: with `token` set, `authorization` must be
 * `Bearer TOKEN` (the scheme in any case, as RFC 9110 §11.1 says; the token compared in constant
 * time); without, the caller's address must be loopback.
 */
export function mutationAllowed(
  token: string | undefined,
  authorization: string | undefined,
  remoteAddress: string,
): boolean {
  if (token !== undefined) {
    const given = /^bearer +(.*)$/i.exec((authorization ?? '').trim())?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
  return isLoopbackAddress(remoteAddress);
}

/**
 * The guard of every mutating call: refuses (403, answered here) a cross-site request, or a caller
 * without the admin token when one is set (or not on loopback when none is). True when it may go on.
 */
function guardMutation(view: AdminView, req: IncomingMessage, res: ServerResponse): boolean {
  const refusal = crossSiteRefusal(req);
  if (refusal !== undefined) {
    json(res, 403, { error: 'forbidden', message: refusal });
    return false;
  }
  if (!mayMutate(view, req)) {
    json(res, 403, { error: 'forbidden', message: 'mutating admin calls need the admin token' });
    return false;
  }
  return true;
}

/**
 * The admin request handler. Unknown paths → 404; wrong methods → 405 with `Allow`. A request
 * with a body (no admin call takes one) gets its answer and `connection: close`.
 */
export function adminHandler(view: AdminView): RequestListener {
  return function admin(req: IncomingMessage, res: ServerResponse) {
    // node:http's own Date would format it with V8's date-to-string, which maps ICU's time-zone data
    // (~1.1 MiB) into an idle sidecar on its first probe: same field, made without it (utc-time.ts).
    res.sendDate = false;
    res.setHeader('Date', httpDate(Date.now()));
    if (hasBody(req)) res.shouldKeepAlive = false;
    const target = pathOf(req.url ?? '/');
    if (target === undefined) return json(res, 404, { error: 'not_found', message: 'no admin endpoint' });
    const [path, query = ''] = target.split('?', 2);
    const method = req.method ?? 'GET';
    const get = method === 'GET' || method === 'HEAD';
    switch (path) {
      case '/':
        if (!get) return notAllowed(res, READ);
        return json(res, 200, adminIndex(view.version ?? 'unknown', view.adminGrpcAddress?.() ?? null));
      case '/drain':
        if (method !== 'POST' && method !== 'DELETE') return notAllowed(res, DRAIN);
        if (!guardMutation(view, req, res)) return;
        return drain(view, res, method === 'POST');
      case '/config':
        if (!get) return notAllowed(res, READ);
        if (view.configDocument === undefined) return json(res, 404, { error: 'not_found' });
        return json(res, 200, view.configDocument());
      case '/live':
        if (!get) return notAllowed(res, READ);
        return json(res, 200, { status: 'live' });
      case '/ready':
        if (!get) return notAllowed(res, READ);
        return ready(view, res, query);
      case '/metrics':
        if (!get) return notAllowed(res, READ);
        view.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': view.metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => json(res, 500, { error: 'metrics_failed', message: err.message }),
        );
        return;
      case '/upstreams':
        if (!get) return notAllowed(res, READ);
        return json(res, 200, upstreamsView(view));
      default: {
        const reset = /^\/upstreams\/([^/]+)\/breaker\/reset$/.exec(path ?? '');
        if (reset !== null) {
          if (method !== 'POST') return notAllowed(res, RESET);
          if (!guardMutation(view, req, res)) return;
          const upstream = view.table.has(reset[1]!) ? view.table.get(reset[1]!) : undefined;
          if (upstream === undefined)
            return json(res, 404, { error: 'not_found', message: `no upstream ${reset[1]}` });
          if (upstream.breaker === null)
            return json(res, 409, { error: 'breaker_disabled', upstream: upstream.name });
          upstream.breaker.reset();
          return json(res, 200, { upstream: upstream.name, circuitBreaker: upstream.breaker.state });
        }
        return json(res, 404, { error: 'not_found', message: `no admin endpoint ${path}` });
      }
    }
  };
}
