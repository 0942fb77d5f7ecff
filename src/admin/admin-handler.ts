// The admin listener's routes: /live, /ready, /metrics, /upstreams (one small handler per concern).
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Registry } from '../registry/registry.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import { tlsModeOf } from '../tls/tls-pool-factory.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';

/** What the admin handlers read from the running daemon. */
export interface AdminView {
  readonly metrics: Metrics;
  readonly table: UpstreamTable;
  readonly registry: Registry;
  /** True while shutting down: /ready answers 503. */
  draining(): boolean;
  /** Bearer token for mutating calls, or undefined (then only loopback callers may mutate); read per call. */
  readonly adminToken?: (() => string | undefined) | undefined;
  /** Extra readiness conditions (e.g. the local app's health check), each `[name, ok, detail]`. */
  readinessChecks(): readonly [string, boolean, string][];
  /** Whether `tls` is configured (then endpoints that advertise mTLS get it). Default false. */
  readonly tlsConfigured?: boolean;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const payload = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

/** `GET /ready`: 200 when the registry has synced, no extra check fails and meshlet is not draining. */
function ready(view: AdminView, res: ServerResponse): void {
  const checks: Record<string, { ok: boolean; detail: string }> = {
    registry: { ok: view.registry.synced, detail: view.registry.synced ? 'synced' : 'not synced yet' },
    draining: { ok: !view.draining(), detail: view.draining() ? 'shutting down' : 'serving' },
  };
  for (const [name, ok, detail] of view.readinessChecks()) checks[name] = { ok, detail };
  const ok = Object.values(checks).every((c) => c.ok);
  json(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not_ready', checks });
}

/**
 * `GET /upstreams`: each upstream, its balancer and endpoints with their state. An endpoint's
 * `protocol` is the one it advertises (Consul `Meta.meshlet_protocol`, static `protocol`); null when
 * it advertises none and the upstream's `protocol` applies.
 */
export function upstreamsView(view: AdminView): Record<string, unknown> {
  const upstreams: Record<string, unknown> = {};
  for (const u of view.table.values()) {
    const healthy = u.endpoints.filter((h) => !h.ejected).length;
    upstreams[u.name] = {
      loadBalancer: u.balancerKind,
      synced: u.synced,
      healthy,
      total: u.endpoints.length,
      endpoints: u.endpoints.map((h) => ({
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
  return { registry: view.registry.status(), upstreams };
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
 *   only when the listener is on port 80; a request without `Host` is refused.
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
  const host = (req.headers.host ?? '').toLowerCase();
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
  const token = view.adminToken?.();
  if (token !== undefined) {
    const given = req.headers.authorization ?? '';
    const expected = `Bearer ${token}`;
    return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
  }
  const remote = req.socket.remoteAddress ?? '';
  return (
    remote === '127.0.0.1' ||
    remote === '::1' ||
    remote.startsWith('::ffff:127.') ||
    remote.startsWith('127.')
  );
}

/** The admin request handler. Unknown paths → 404; wrong methods → 405. */
export function adminHandler(view: AdminView): RequestListener {
  return function admin(req: IncomingMessage, res: ServerResponse) {
    const path = (req.url ?? '/').split('?')[0];
    const method = req.method ?? 'GET';
    const get = method === 'GET' || method === 'HEAD';
    switch (path) {
      case '/live':
        if (!get) return json(res, 405, { error: 'method_not_allowed' });
        return json(res, 200, { status: 'live' });
      case '/ready':
        if (!get) return json(res, 405, { error: 'method_not_allowed' });
        return ready(view, res);
      case '/metrics':
        if (!get) return json(res, 405, { error: 'method_not_allowed' });
        view.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': view.metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => json(res, 500, { error: 'metrics_failed', message: err.message }),
        );
        return;
      case '/upstreams':
        if (!get) return json(res, 405, { error: 'method_not_allowed' });
        return json(res, 200, upstreamsView(view));
      default: {
        const reset = /^\/upstreams\/([^/]+)\/breaker\/reset$/.exec(path ?? '');
        if (reset !== null) {
          if (method !== 'POST') return json(res, 405, { error: 'method_not_allowed' });
          const refusal = crossSiteRefusal(req);
          if (refusal !== undefined) return json(res, 403, { error: 'forbidden', message: refusal });
          if (!mayMutate(view, req)) {
            return json(res, 403, {
              error: 'forbidden',
              message: 'mutating admin calls need the admin token',
            });
          }
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
