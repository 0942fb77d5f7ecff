// The admin listener's routes: /live, /ready, /metrics, /upstreams (one small handler per concern).
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Registry } from '../registry/registry.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';

/** What the admin handlers read from the running daemon. */
export interface AdminView {
  readonly metrics: Metrics;
  readonly table: UpstreamTable;
  readonly registry: Registry;
  /** True while shutting down: /ready answers 503. */
  draining(): boolean;
  /** Extra readiness conditions (e.g. the local app's health check), each `[name, ok, detail]`. */
  readinessChecks(): readonly [string, boolean, string][];
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

/** `GET /upstreams`: each upstream, its balancer and endpoints with their state. */
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
        state: h.ejected ? 'ejected' : 'healthy',
        active: h.active,
      })),
    };
  }
  return { registry: view.registry.status(), upstreams };
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
      default:
        return json(res, 404, { error: 'not_found', message: `no admin endpoint ${path}` });
    }
  };
}
