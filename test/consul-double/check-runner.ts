// Runs the agent's checks: TTL expiry, HTTP and TCP probes, and DeregisterCriticalServiceAfter reaping.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { CheckRecord, HealthStatus } from './model.ts';
import type { Store } from './store.ts';

/** Consul's default cap on check output (`checks.DefaultBufSize`), in bytes. */
const OUTPUT_MAX = 4096;
/** Consul's default timeout for HTTP and TCP checks. */
const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

/** Settings for the check runner. */
export interface CheckRunnerOptions {
  /** Lower bound on HTTP/TCP check intervals; Consul clamps to 1 s. Default 1000 ms. */
  minIntervalMs: number;
  /** Called to remove a local service whose check stayed critical past DeregisterCriticalServiceAfter. */
  reap: (serviceId: string) => void;
}

const keyOf = (c: { node: string; checkId: string }): string => `${c.node}\u0000${c.checkId}`;

function describeError(err: unknown, target: string): string {
  const e = err as NodeJS.ErrnoException;
  const reason: Record<string, string> = {
    ECONNREFUSED: 'connect: connection refused',
    ECONNRESET: 'read: connection reset by peer',
    ETIMEDOUT: 'i/o timeout',
    EHOSTUNREACH: 'connect: no route to host',
    ENOTFOUND: 'no such host',
  };
  return `dial tcp ${target}: ${(e.code && reason[e.code]) ?? e.message}`;
}

/**
 * Keeps timers per check (all unref'd, all cleared by `stopAll`). TTL checks turn critical with
 * Output "TTL expired" when not updated in time; HTTP checks pass on 2xx, warn on 429, else fail;
 * TCP checks pass when a connection opens. The first probe runs at once (Consul staggers it randomly
 * within the interval). Critical checks with DeregisterCriticalServiceAfter reap their service when
 * the duration has elapsed (Consul's reaper only looks every 30 s).
 */
export class CheckRunner {
  #store: Store;
  #opts: CheckRunnerOptions;
  #timers = new Map<string, NodeJS.Timeout>();
  #reapers = new Map<string, NodeJS.Timeout>();
  #criticalSince = new Map<string, number>();
  #lastTtlOutput = new Map<string, string>();
  /** Alias checks' store watches, by check key. */
  #aliases = new Map<string, () => void>();
  #stopped = false;

  constructor(store: Store, opts: CheckRunnerOptions) {
    this.#store = store;
    this.#opts = opts;
  }

  /** Starts running a freshly registered check (replacing any timers it had). */
  start(check: CheckRecord): void {
    this.stop(check);
    this.#stopped = false;
    const k = keyOf(check);
    const d = check.definition;
    if (d.ttlMs > 0) {
      this.#armTtl(check);
    } else if (d.http !== '' || d.tcp !== '') {
      const interval = Math.max(d.intervalMs, this.#opts.minIntervalMs);
      const run = (): void => {
        void this.#probe(k).finally(() => {
          if (this.#stopped || !this.#timers.has(k)) return;
          this.#timers.set(k, setTimeout(run, interval).unref());
        });
      };
      this.#timers.set(k, setTimeout(run, 0).unref());
    } else if (d.aliasService !== '') {
      this.#aliases.set(
        k,
        this.#store.observe(
          (t) => t === 'checks' || t === 'services',
          () => this.#updateAlias(k),
        ),
      );
      this.#updateAlias(k);
      return;
    }
    this.#observe(check);
  }

  /**
   * An alias check of a local service (Consul's `AliasService`): the worst status among that
   * service's checks and its node's, critical when the service is not registered. Follows every change.
   */
  #updateAlias(k: string): void {
    const [node, checkId] = k.split('\u0000') as [string, string];
    const check = this.#store.getCheck(node, checkId);
    if (check === undefined || this.#stopped) return;
    const target = this.#store.getService(node, check.definition.aliasService);
    let status: HealthStatus = 'passing';
    let output = 'All checks passing.';
    if (target === undefined) {
      status = 'critical';
      output = `Service ${check.definition.aliasService} could not be found on node ${node}`;
    } else {
      for (const c of this.#store.checksFor(target)) {
        if (c.status === 'critical' || (c.status === 'warning' && status === 'passing')) {
          status = c.status;
          output = `Aliased check "${c.name}" failing: ${c.output}`;
        }
        if (status === 'critical') break;
      }
      if (status === 'passing' && this.#store.checksFor(target).length === 0) output = 'No checks found.';
    }
    if (check.status !== status || check.output !== output) this.setStatus(check, status, output);
  }

  /** Stops a check's timers (on deregistration). */
  stop(check: { node: string; checkId: string }): void {
    const k = keyOf(check);
    clearTimeout(this.#timers.get(k));
    this.#timers.delete(k);
    clearTimeout(this.#reapers.get(k));
    this.#reapers.delete(k);
    this.#criticalSince.delete(k);
    this.#lastTtlOutput.delete(k);
    this.#aliases.get(k)?.();
    this.#aliases.delete(k);
  }

  /** Stops every timer. */
  stopAll(): void {
    this.#stopped = true;
    for (const cancel of this.#aliases.values()) cancel();
    this.#aliases.clear();
    for (const t of this.#timers.values()) clearTimeout(t);
    for (const t of this.#reapers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#reapers.clear();
    this.#criticalSince.clear();
    this.#lastTtlOutput.clear();
  }

  /**
   * Sets a check's status and output (no index change when both are unchanged), then re-arms
   * reaping. For a TTL check this also restarts the TTL, like `/v1/agent/check/pass`.
   */
  setStatus(check: CheckRecord, status: HealthStatus, output: string): CheckRecord {
    let out = output;
    if (Buffer.byteLength(out) > OUTPUT_MAX) {
      const total = Buffer.byteLength(out);
      out = `${Buffer.from(out).subarray(0, OUTPUT_MAX).toString()} ... (captured ${OUTPUT_MAX} of ${total} bytes)`;
    }
    const rec = this.#store.write(() => this.#store.putCheck({ ...check, status, output: out }));
    if (check.definition.ttlMs > 0) {
      this.#lastTtlOutput.set(keyOf(check), out);
      this.#armTtl(rec);
    }
    this.#observe(rec);
    return rec;
  }

  #armTtl(check: CheckRecord): void {
    const k = keyOf(check);
    clearTimeout(this.#timers.get(k));
    const t = setTimeout(() => {
      this.#timers.delete(k);
      const cur = this.#store.getCheck(check.node, check.checkId);
      if (cur === undefined) return;
      const last = this.#lastTtlOutput.get(k) ?? '';
      const output =
        last === '' ? 'TTL expired' : `TTL expired (last output before timeout follows): ${last}`;
      const rec = this.#store.write(() => this.#store.putCheck({ ...cur, status: 'critical', output }));
      this.#observe(rec);
    }, check.definition.ttlMs).unref();
    this.#timers.set(k, t);
  }

  /** Tracks how long a check has been critical and schedules reaping of its service. */
  #observe(check: CheckRecord): void {
    const k = keyOf(check);
    const after = check.definition.deregisterCriticalServiceAfterMs;
    if (check.status !== 'critical') {
      this.#criticalSince.delete(k);
      clearTimeout(this.#reapers.get(k));
      this.#reapers.delete(k);
      return;
    }
    if (this.#criticalSince.has(k)) return;
    this.#criticalSince.set(k, Date.now());
    if (after <= 0 || check.serviceId === '' || !check.local) return;
    const t = setTimeout(() => {
      this.#reapers.delete(k);
      const cur = this.#store.getCheck(check.node, check.checkId);
      if (cur?.status === 'critical') this.#opts.reap(check.serviceId);
    }, after).unref();
    this.#reapers.set(k, t);
  }

  async #probe(k: string): Promise<void> {
    const [node, checkId] = k.split('\u0000') as [string, string];
    const check = this.#store.getCheck(node, checkId);
    if (check === undefined) return;
    const d = check.definition;
    const timeout = d.timeoutMs > 0 ? d.timeoutMs : DEFAULT_CHECK_TIMEOUT_MS;
    const [status, output] = d.http !== '' ? await probeHttp(check, timeout) : await probeTcp(d.tcp, timeout);
    if (this.#stopped || !this.#timers.has(k)) return;
    const cur = this.#store.getCheck(node, checkId);
    if (cur !== undefined) this.setStatus(cur, status, output);
  }
}

function probeTcp(target: string, timeoutMs: number): Promise<[HealthStatus, string]> {
  return new Promise((resolve) => {
    const i = target.lastIndexOf(':');
    const host = target.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(target.slice(i + 1));
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(['critical', `dial tcp ${target}: i/o timeout`]);
    }, timeoutMs).unref();
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(['passing', `TCP connect ${target}: Success`]);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      resolve(['critical', describeError(err, target)]);
    });
  });
}

function probeHttp(check: CheckRecord, timeoutMs: number): Promise<[HealthStatus, string]> {
  const d = check.definition;
  const method = d.method === '' ? 'GET' : d.method;
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL(d.http);
    } catch {
      resolve(['critical', `${method} ${JSON.stringify(d.http)}: invalid URL`]);
      return;
    }
    const headers: Record<string, string | string[]> = {
      'User-Agent': 'Consul Health Check',
      Accept: 'text/plain, text/*, */*',
    };
    for (const [k, v] of Object.entries(d.header ?? {})) headers[k] = v;
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, {
      method,
      headers,
      agent: false,
      rejectUnauthorized: !d.tlsSkipVerify,
      ...(d.tlsServerName !== '' ? { servername: d.tlsServerName } : {}),
    });
    const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
    const target = `${url.hostname}:${port}`;
    const timer = setTimeout(() => {
      req.destroy();
      resolve([
        'critical',
        `${method} ${JSON.stringify(d.http)}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
      ]);
    }, timeoutMs).unref();
    req.once('error', (err) => {
      clearTimeout(timer);
      const verb = method[0]! + method.slice(1).toLowerCase();
      resolve(['critical', `${verb} ${JSON.stringify(d.http)}: ${describeError(err, target)}`]);
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < OUTPUT_MAX) chunks.push(c);
        size += c.length;
      });
      res.once('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks).subarray(0, OUTPUT_MAX).toString();
        const code = res.statusCode ?? 0;
        const result = `HTTP ${method} ${d.http}: ${code} ${res.statusMessage ?? ''} Output: ${body}`;
        const status: HealthStatus =
          code >= 200 && code <= 299 ? 'passing' : code === 429 ? 'warning' : 'critical';
        resolve([status, result]);
      });
      res.once('error', () => undefined);
    });
    req.end(d.body === '' ? undefined : d.body);
  });
}
