// The /_double/... HTTP switches, so a standalone double can be driven with curl.
import type { ServerResponse } from 'node:http';
import type { ConsulDouble, Tampering } from './consul-double.ts';
import { HEALTH_STATUSES, type HealthStatus } from './model.ts';
import { HttpError } from './register.ts';

/** A control request, already read. */
export interface ControlRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: Buffer;
  res: ServerResponse;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function numberParam(q: URLSearchParams, name: string, fallback: number): number {
  const v = q.get(name);
  if (v === null || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HttpError(400, `invalid ${name}: ${v}`);
  return n;
}

function statusParam(q: URLSearchParams): HealthStatus {
  const s = q.get('status') ?? '';
  if (!HEALTH_STATUSES.includes(s as HealthStatus)) throw new HttpError(400, `invalid status: ${s}`);
  return s as HealthStatus;
}

/**
 * Routes:
 * - `GET /_double/state`: index, faults, blocked query count
 * - `PUT /_double/down?seconds=5`: refuse connections for that long (default 5 s, it has to come back)
 * - `PUT /_double/slow?ms=N`: delay answers; `ms=0` turns it off
 * - `PUT /_double/fail?status=500&times=N`: inject errors; `DELETE /_double/fail` clears
 * - `PUT /_double/tamper` (body: a `Tampering` as JSON): mangle answers; `DELETE /_double/tamper` clears
 * - `PUT /_double/reset-index?to=1`, `PUT /_double/restart` (no state; `?keep-state=true&down-ms=N`: with its data directory)
 * - `GET|PUT /_double/instances` (PUT body: `addInstance` spec), `DELETE /_double/instances/:id`
 * - `PUT /_double/check/:checkId?status=passing&output=...`
 * - `GET|DELETE /_double/requests`, `GET /_double/tokens`
 */
export async function controlRoutes(double: ConsulDouble, r: ControlRequest): Promise<void> {
  const { method, query, res } = r;
  const [, , area = '', ...rest] = r.path.split('/');
  const arg = rest.join('/');
  const put = method === 'PUT' || method === 'POST';

  if (area === 'state' && method === 'GET') {
    json(res, 200, { index: double.index, ...double.faults, blockedQueries: double.blockedQueries });
    return;
  }
  if (area === 'down' && put) {
    const ms = numberParam(query, 'seconds', 5) * 1000;
    res.once('finish', () => {
      void double.setDown(true, ms);
    });
    json(res, 200, { down: true, forMs: ms });
    return;
  }
  if (area === 'slow' && put) {
    double.setSlow(numberParam(query, 'ms', 0));
    json(res, 200, double.faults);
    return;
  }
  if (area === 'fail' && (put || method === 'DELETE')) {
    const status = method === 'DELETE' ? 0 : numberParam(query, 'status', 500);
    const times = query.get('times');
    const body = query.get('body');
    double.setFailing(status === 0 ? null : status, {
      ...(times !== null ? { times: numberParam(query, 'times', 1) } : {}),
      ...(body !== null ? { body } : {}),
    });
    json(res, 200, double.faults);
    return;
  }
  if (area === 'tamper' && (put || method === 'DELETE')) {
    if (method === 'DELETE') {
      double.setTampering(null);
    } else {
      let spec: unknown;
      try {
        spec = JSON.parse(r.body.toString('utf8'));
      } catch {
        throw new HttpError(400, 'body must be JSON');
      }
      if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
        throw new HttpError(400, 'body must be a JSON object');
      }
      double.setTampering(spec as Tampering);
    }
    json(res, 200, double.faults);
    return;
  }
  if (area === 'reset-index' && put) {
    double.resetIndex(numberParam(query, 'to', 1));
    json(res, 200, { index: double.index });
    return;
  }
  if (area === 'restart' && put) {
    if (query.get('keep-state') === 'true') {
      // Answered first: the restart drops this connection too.
      const ms = numberParam(query, 'down-ms', 0);
      res.once('finish', () => {
        void double.restartWithState(ms);
      });
      json(res, 200, { restarting: true, keepState: true, downMs: ms });
      return;
    }
    double.restart();
    json(res, 200, { index: double.index });
    return;
  }
  if (area === 'instances') {
    if (method === 'GET') {
      json(res, 200, double.instances(query.get('service') ?? undefined));
      return;
    }
    if (put && arg === '') {
      let spec: unknown;
      try {
        spec = JSON.parse(r.body.toString('utf8'));
      } catch {
        throw new HttpError(400, 'body must be JSON');
      }
      const s = spec as { service?: unknown; port?: unknown };
      if (typeof s.service !== 'string' || typeof s.port !== 'number') {
        throw new HttpError(400, 'body needs "service" (string) and "port" (number)');
      }
      const id = double.addInstance(spec as Parameters<ConsulDouble['addInstance']>[0]);
      json(res, 200, { id });
      return;
    }
    if (method === 'DELETE' && arg !== '') {
      json(res, double.removeInstance(arg) ? 200 : 404, { removed: arg });
      return;
    }
  }
  if (area === 'check' && put && arg !== '') {
    const ok = double.setCheckStatus(arg, statusParam(query), query.get('output') ?? undefined);
    json(res, ok ? 200 : 404, { checkId: arg, updated: ok });
    return;
  }
  if (area === 'requests') {
    if (method === 'GET') {
      json(
        res,
        200,
        double.requests.map((q) => ({ ...q, query: Object.fromEntries(q.query) })),
      );
      return;
    }
    if (method === 'DELETE') {
      double.clearRequests();
      json(res, 200, {});
      return;
    }
  }
  if (area === 'tokens' && method === 'GET') {
    json(res, 200, double.seenTokens);
    return;
  }
  throw new HttpError(404, `no such control route: ${method} ${r.path}`);
}
