// A test double of the Consul agent HTTP API on a real socket, with switches for faults and resets.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import http from 'node:http';
import type { Socket } from 'node:net';
import { type AclOptions, Authorizer, requestToken } from './acl.ts';
import { Agent, type InstanceSpec } from './agent.ts';
import { agentRoutes } from './api-agent.ts';
import { catalogRoutes } from './api-catalog.ts';
import { connectControl, connectRoutes } from './api-connect.ts';
import { ConnectCa } from './connect-ca.ts';
import { kvRoutes } from './api-kv.ts';
import { controlRoutes } from './control.ts';
import type { Ctx } from './http-util.ts';
import { sendText } from './http-util.ts';
import type { CheckRecord, HealthStatus, ServiceRecord } from './model.ts';
import { decodeService, HttpError } from './register.ts';

export type { AclOptions, TokenPolicy } from './acl.ts';
export type { InstanceSpec } from './agent.ts';
export type { CheckRecord, HealthStatus, ServiceRecord } from './model.ts';

/** Settings of a `ConsulDouble`; every field is optional. */
export interface ConsulDoubleOptions {
  /** Datacenter name. Default `"dc1"`. */
  datacenter?: string;
  /** Other datacenters `?dc=` may name (they answer like the local one). Default none. */
  extraDatacenters?: string[];
  /** The agent's node name. Default `"consul-double"`. */
  nodeName?: string;
  /** The agent's node address. Default `"127.0.0.1"`. */
  nodeAddress?: string;
  /** ACLs; when absent every request is allowed (ACLs disabled). */
  acl?: AclOptions;
  /** Add Consul's random extra wait (up to wait/16) to blocking queries. Default `true`. */
  jitter?: boolean;
  /** Keep the server's own `consul` service in the catalog. Default `true`. */
  consulService?: boolean;
  /** Lower bound on HTTP/TCP check intervals in ms (Consul: 1000). Default `1000`. */
  minCheckIntervalMs?: number;
  /** How many requests `requests` keeps (oldest dropped first). Default `10_000`. */
  maxLoggedRequests?: number;
  /** Connect CA: leaf validity in ms (default 72 h) and the answer when no intention matches (default allow). */
  connect?: { leafTtlMs?: number; defaultAllow?: boolean };
}

/** One request as the double received it (recorded before any fault is applied). */
export interface RecordedRequest {
  method: string;
  /** Decoded path, e.g. `/v1/health/service/web`. */
  path: string;
  /** Query parameters (repeated names keep every value). */
  query: URLSearchParams;
  /** Raw headers, lower-cased names, nothing removed (tokens included). */
  headers: IncomingHttpHeaders;
  /** The ACL token Consul would use (`?token`, `X-Consul-Token`, `Authorization: Bearer`), or `''`. */
  token: string;
  /** Request body as text. */
  body: string;
  /** `Date.now()` at arrival. */
  at: number;
}

/** A failure switch set by `setFailing`. */
interface Failing {
  status: number;
  body: string;
  remaining: number;
}

const MAX_BODY = 4 * 1024 * 1024;

/**
 * A hostile answer for tests of clients (`setTampering`): what a broken agent, proxy or network in
 * front of Consul could send. Nothing here is Consul behaviour; it is off unless a test turns it on.
 */
export interface Tampering {
  /** Requests it applies to: those whose path starts with this. Default every `/v1/` request. */
  path?: string;
  /** Only requests whose body contains this text (e.g. a registration's `"Kind":"connect-proxy"`). */
  requestBodyContains?: string;
  /** How many matching requests it applies to. Default all, until `setTampering(null)`. */
  times?: number;
  /** Status code sent instead of the real one. */
  status?: number;
  /** Body sent instead of the real answer (the real request is still served and discarded). */
  body?: string;
  /** Instead of `body`: a JSON array of this many bytes (`[{"Junk":"xxx…"},…]`), to test size caps. */
  bodyBytes?: number;
  /** `Content-Type` sent instead of the real one. */
  contentType?: string;
  /** `X-Consul-Index` sent instead of the real one (e.g. `""`, `"abc"`, `"0"`); null omits the header. */
  index?: string | null;
  /** Sends the headers and this many body bytes, then resets the connection. */
  resetAfterBytes?: number;
  /** Sends the body chunked, with no `Content-Length`. */
  chunked?: boolean;
  /**
   * Answers without serving the request at all, so a write changes nothing (an agent that refuses
   * it); with no `body`, the body is empty. Taken when the request arrives, not when it answers.
   */
  refuse?: boolean;
}

/** A generated JSON array of about `bytes` bytes. */
function junkJson(bytes: number): Buffer {
  const item = `{"Junk":"${'x'.repeat(1000)}"}`;
  const count = Math.max(1, Math.ceil(bytes / (item.length + 1)));
  return Buffer.from(`[${Array.from({ length: count }, () => item).join(',')}]`);
}

/**
 * Speaks the Consul agent HTTP API (agent services and checks, TTL checks, health, catalog, KV,
 * blocking queries, ACL tokens) on 127.0.0.1, and lets tests break it: refuse connections, answer
 * slowly or with errors, move the index backwards, or forget everything like a restarted agent.
 */
export class ConsulDouble {
  readonly options: Readonly<ConsulDoubleOptions>;
  readonly #agent: Agent;
  /** The Connect CA (roots, leaves, intentions); tests rotate leaves and set intentions through it. */
  readonly connect: ConnectCa;
  #server: http.Server | undefined;
  #host = '127.0.0.1';
  #port = 0;
  #sockets = new Set<Socket>();
  #onStop = new Set<() => void>();
  #timers = new Set<NodeJS.Timeout>();
  #requests: RecordedRequest[] = [];
  #tokens: string[] = [];
  #down = false;
  #downTimer: NodeJS.Timeout | undefined;
  #slowMs = 0;
  #failing: Failing | undefined;
  #tampering: (Tampering & { remaining: number }) | undefined;
  #stopped = false;
  /** The last error of a background action (coming back up after `setDown(true, forMs)`), if any. */
  lastError: Error | undefined;

  constructor(options: ConsulDoubleOptions = {}) {
    this.options = options;
    this.#agent = new Agent({
      datacenter: options.datacenter ?? 'dc1',
      nodeName: options.nodeName ?? 'consul-double',
      address: options.nodeAddress ?? '127.0.0.1',
      consulService: options.consulService ?? true,
      minCheckIntervalMs: options.minCheckIntervalMs ?? 1000,
    });
    this.connect = new ConnectCa({ datacenter: options.datacenter ?? 'dc1', ...options.connect });
  }

  // ---- lifecycle ---------------------------------------------------------------------------------

  /** Listens (default 127.0.0.1, port 0 = any free port) and resolves with the bound address. */
  async start(opts: { host?: string; port?: number } = {}): Promise<{ address: string; port: number }> {
    if (this.#server !== undefined) throw new Error('ConsulDouble already started');
    this.#stopped = false;
    this.#host = opts.host ?? '127.0.0.1';
    await this.#listen(opts.port ?? 0);
    return { address: this.#host, port: this.#port };
  }

  async #listen(port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      void this.#handle(req, res);
    });
    server.keepAliveTimeout = 5_000;
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.#host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    if (addr !== null && typeof addr === 'object') this.#port = addr.port;
    this.#server = server;
  }

  async #close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }

  /** Stops listening, answers nothing more, drops every connection (blocked queries included), clears timers. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#downTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const f of [...this.#onStop]) f();
    this.#onStop.clear();
    this.#agent.runner.stopAll();
    this.#agent.store.abandon();
    await this.#close();
  }

  /** The bound port (0 before `start`). */
  get port(): number {
    return this.#port;
  }

  /** Base URL, e.g. `http://127.0.0.1:8500`. */
  get url(): string {
    return `http://${this.#host}:${this.#port}`;
  }

  /** Host and port as Consul clients take them (`127.0.0.1:8500`). */
  get address(): string {
    return `${this.#host}:${this.#port}`;
  }

  // ---- observation -------------------------------------------------------------------------------

  /** Requests received so far, oldest first (bounded by `maxLoggedRequests`). */
  get requests(): readonly RecordedRequest[] {
    return this.#requests;
  }

  /** Forgets the request log and the seen tokens. */
  clearRequests(): void {
    this.#requests = [];
    this.#tokens = [];
  }

  /** Every distinct non-empty ACL token received, in order of first use. */
  get seenTokens(): readonly string[] {
    return this.#tokens;
  }

  /** The current raft index (last write). */
  get index(): number {
    return this.#agent.store.index;
  }

  /** Blocking queries (and hash-blocking service reads) currently held open. */
  get blockedQueries(): number {
    return this.#agent.store.watchCount;
  }

  /** Catalog instances, optionally of one service name (agent-local and peers). */
  instances(service?: string): ServiceRecord[] {
    return [...this.#agent.store.services.values()].filter(
      (s) => service === undefined || s.name === service,
    );
  }

  /** Checks, optionally only those of one service ID. */
  checks(serviceId?: string): CheckRecord[] {
    return [...this.#agent.store.checks.values()].filter(
      (c) => serviceId === undefined || c.serviceId === serviceId,
    );
  }

  /** Resolves once `predicate(this)` is truthy (polled every 10 ms); rejects after `timeoutMs` (default 5000). */
  async waitFor(predicate: (d: this) => unknown, timeoutMs = 5_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await predicate(this)) return;
      if (Date.now() >= deadline)
        throw new Error(`ConsulDouble.waitFor: ${what} not met within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  // ---- state control -----------------------------------------------------------------------------

  /** Registers a local service from a Consul JSON definition, as `PUT /v1/agent/service/register` would. */
  registerService(definition: Record<string, unknown>, replaceExistingChecks = false): ServiceRecord {
    return this.#agent.registerService(decodeService(definition), replaceExistingChecks);
  }

  /** Deregisters a local service. Returns false when it was not registered. */
  deregisterService(id: string): boolean {
    return this.#agent.deregisterService(id);
  }

  /** Adds a peer instance to the catalog (own node, `service:<id>` check). Returns its service ID. */
  addInstance(spec: InstanceSpec): string {
    return this.#agent.addInstance(spec).id;
  }

  /** Removes an instance (peer or local) by service ID. Returns false when absent. */
  removeInstance(id: string): boolean {
    return this.#agent.removeInstance(id);
  }

  /** Sets a check's status (and output) by check ID; TTL checks also restart their TTL. False when absent. */
  setCheckStatus(checkId: string, status: HealthStatus, output?: string): boolean {
    return this.#agent.setCheckStatus(checkId, status, output);
  }

  /** Sets the `service:<id>` check of an instance (as made by `addInstance` or a single-check registration). */
  setInstanceStatus(serviceId: string, status: HealthStatus, output?: string): boolean {
    return this.#agent.setCheckStatus(`service:${serviceId}`, status, output);
  }

  /** Sets a node's `serfHealth` check (default: the agent's node). False when the node is unknown. */
  setNodeHealth(status: HealthStatus, node?: string): boolean {
    return this.#agent.setCheckStatus('serfHealth', status, undefined, node ?? this.#agent.identity.nodeName);
  }

  /** Writes a KV entry directly. */
  kvPut(key: string, value: string | Buffer, flags = 0): void {
    const store = this.#agent.store;
    const buf = typeof value === 'string' ? Buffer.from(value) : value;
    store.write(() => store.kvPut(key, buf.length === 0 ? null : buf, flags));
  }

  /** Reads a KV value directly (`undefined` when absent). */
  kvGet(key: string): Buffer | undefined {
    const e = this.#agent.store.kv.get(key);
    return e === undefined ? undefined : (e.value ?? Buffer.alloc(0));
  }

  /**
   * Moves the raft index back to `to` (default 1) as after a snapshot restore: every record's
   * indexes are lowered, and blocked queries wake and answer with the lower index.
   */
  resetIndex(to = 1): void {
    this.#agent.store.resetIndex(Math.max(1, Math.floor(to)));
  }

  /** Forgets every service, check and KV entry and restarts the index, like an agent restarted with no state. */
  restart(): void {
    this.#agent.restart();
  }

  /**
   * Restarts the agent with its data directory (`-data-dir`), as Consul does: the process goes down
   * (connections refused and dropped, blocked queries included; no check runs and no TTL expires)
   * for `downMs`, then comes back with what it persisted. The catalog, KV and index are kept; its
   * local services and checks come back, each check critical, except a TTL check updated through
   * `PUT /v1/agent/check/update|pass|warn|fail` whose persisted state has not expired (its last
   * update plus its TTL, in whole Unix seconds): that status and output. Every TTL check starts a
   * full TTL from the restart, so a crashed client's passing check outlives its TTL by the restart.
   * See `Agent.restore`. Resolves once it listens again. `downMs` default 0.
   */
  async restartWithState(downMs = 0): Promise<void> {
    await this.setDown(true);
    this.#agent.halt();
    if (downMs > 0) await this.#delay(downMs);
    if (this.#stopped) return;
    this.#agent.restore();
    await this.setDown(false);
  }

  // ---- faults ------------------------------------------------------------------------------------

  /**
   * Refuses connections (`true`: listener closed, open connections destroyed, so clients get
   * ECONNREFUSED) or listens again on the same port (`false`). With `forMs`, comes back up by itself.
   */
  async setDown(down: boolean, forMs?: number): Promise<void> {
    clearTimeout(this.#downTimer);
    this.#downTimer = undefined;
    if (down) {
      if (!this.#down) {
        this.#down = true;
        await this.#close();
      }
      if (forMs !== undefined) {
        this.#downTimer = setTimeout(() => {
          this.setDown(false).catch((err: unknown) => {
            // The port was taken meanwhile: stay down rather than crash the test process.
            this.lastError = err as Error;
          });
        }, forMs).unref();
      }
      return;
    }
    if (!this.#down || this.#stopped) return;
    try {
      await this.#listen(this.#port);
    } catch (err) {
      throw new Error(`ConsulDouble: cannot listen again on port ${this.#port}: ${(err as Error).message}`);
    }
    this.#down = false;
  }

  /** Whether `setDown(true)` is in effect. */
  get down(): boolean {
    return this.#down;
  }

  /** Delays every Consul API answer by `ms` milliseconds (0 turns it off). */
  setSlow(ms: number): void {
    this.#slowMs = Math.max(0, ms);
  }

  /**
   * Answers every Consul API request with `status` (e.g. 500; body "No cluster leader" unless
   * given), for the next `times` requests or until `setFailing(null)`.
   */
  setFailing(status: number | null, opts: { body?: string; times?: number } = {}): void {
    if (status === null) {
      this.#failing = undefined;
      return;
    }
    this.#failing = {
      status,
      body: opts.body ?? (status === 500 ? 'No cluster leader' : 'consul-double: injected failure'),
      remaining: opts.times ?? Number.POSITIVE_INFINITY,
    };
  }

  /**
   * Tampers with the answers to matching requests (see {@link Tampering}) for the next `times`
   * of them, or until `setTampering(null)`. The request is served as usual (blocking included);
   * then its answer is replaced or mangled on the way out (queries blocked before this call too).
   */
  setTampering(tampering: Tampering | null): void {
    this.#tampering =
      tampering === null
        ? undefined
        : { ...tampering, remaining: tampering.times ?? Number.POSITIVE_INFINITY };
  }

  /** Current fault switches (for `/_double/state`). */
  get faults(): { down: boolean; slowMs: number; failing: number | null; tampering: boolean } {
    return {
      down: this.#down,
      slowMs: this.#slowMs,
      failing: this.#failing?.status ?? null,
      tampering: this.#tampering !== undefined,
    };
  }

  /** The tampering for a request to `path`, counted as used; undefined when none applies. */
  #takeTampering(path: string, body: Buffer): Tampering | undefined {
    const t = this.#tampering;
    if (t === undefined || !path.startsWith(t.path ?? '/v1/')) return undefined;
    if (t.requestBodyContains !== undefined && !body.toString('utf8').includes(t.requestBodyContains)) {
      return undefined;
    }
    t.remaining -= 1;
    if (t.remaining <= 0) this.#tampering = undefined;
    return t;
  }

  /**
   * Serves the request into a capture, then sends the answer: as it is, or mangled by the tampering
   * in force when it goes out (so a query blocked before `setTampering` is tampered with too).
   */
  async #serveTampered(
    path: string,
    requestBody: Buffer,
    res: ServerResponse,
    serve: () => Promise<void>,
  ): Promise<void> {
    let status = 200;
    let headers: Record<string, string | number> = {};
    let body: Buffer | undefined;
    if (this.#tampering?.refuse === true) {
      const t = this.#takeTampering(path, requestBody);
      if (t !== undefined) {
        // Refused on arrival: nothing is served, so nothing changes.
        this.#sendTampered(t, res, 200, { 'Content-Type': 'text/plain; charset=utf-8' }, Buffer.alloc(0));
        return;
      }
    }
    const capture = res as unknown as { writeHead: unknown; end: unknown };
    capture.writeHead = (code: number, h?: Record<string, string | number>): ServerResponse => {
      status = code;
      headers = { ...h };
      return res;
    };
    capture.end = (chunk?: string | Buffer): ServerResponse => {
      body = chunk === undefined ? Buffer.alloc(0) : Buffer.from(chunk);
      return res;
    };
    try {
      await serve();
    } finally {
      delete capture.writeHead;
      delete capture.end;
    }
    if (body === undefined || this.#stopped || res.destroyed) return;
    const t = this.#takeTampering(path, requestBody);
    if (t === undefined) {
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    this.#sendTampered(t, res, status, headers, body);
  }

  /** Sends an answer (`status`, `headers`, `body`) as `t` mangles it. */
  #sendTampered(
    t: Tampering,
    res: ServerResponse,
    status: number,
    headers: Record<string, string | number>,
    body: Buffer,
  ): void {
    if (t.bodyBytes !== undefined) body = junkJson(t.bodyBytes);
    else if (t.body !== undefined) body = Buffer.from(t.body);
    if (t.status !== undefined) status = t.status;
    if (t.contentType !== undefined) headers['Content-Type'] = t.contentType;
    if (t.index === null) delete headers['X-Consul-Index'];
    else if (t.index !== undefined) headers['X-Consul-Index'] = t.index;
    if (t.chunked === true) delete headers['Content-Length'];
    else headers['Content-Length'] = body.length;
    res.writeHead(status, headers);
    if (t.resetAfterBytes === undefined) {
      res.end(body);
      return;
    }
    res.write(body.subarray(0, t.resetAfterBytes), () => res.socket?.resetAndDestroy());
  }

  // ---- request handling --------------------------------------------------------------------------

  async #readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > MAX_BODY) throw new HttpError(413, 'Request body too large');
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /** Waits `ms`; settles early when the double stops. */
  #delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.#timers.delete(t);
        this.#onStop.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#timers.add(t);
      this.#onStop.add(done);
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://consul-double');
      let path: string;
      try {
        path = decodeURIComponent(url.pathname);
      } catch {
        path = url.pathname;
      }
      const body = await this.#readBody(req);
      const method = req.method ?? 'GET';
      const token = requestToken(req, url.searchParams);
      this.#record({
        method,
        path,
        query: url.searchParams,
        headers: req.headers,
        token,
        body: body.toString(),
        at: Date.now(),
      });

      if (path.startsWith('/_double/connect/')) {
        await this.#route(req, res, method, path, url.searchParams, body, token);
        return;
      }
      if (path.startsWith('/_double/') || path === '/_double') {
        await controlRoutes(this, { method, path, query: url.searchParams, body, res });
        return;
      }
      if (this.#slowMs > 0) await this.#delay(this.#slowMs);
      if (this.#stopped || res.destroyed) return;
      const failing = this.#failing;
      if (failing !== undefined) {
        failing.remaining -= 1;
        if (failing.remaining <= 0) this.#failing = undefined;
        sendText(res, failing.status, failing.body);
        return;
      }
      const serve = (): Promise<void> => this.#route(req, res, method, path, url.searchParams, body, token);
      // API answers go out through the tampering switch (unchanged while none is set), so a query
      // blocked before `setTampering` is tampered with too.
      if (path.startsWith('/v1/')) await this.#serveTampered(path, body, res, serve);
      else await serve();
    } catch (err) {
      if (res.headersSent || res.destroyed) return;
      if (err instanceof HttpError) sendText(res, err.status, err.message);
      else sendText(res, 500, (err as Error).message ?? String(err));
    }
  }

  #record(r: RecordedRequest): void {
    const max = this.options.maxLoggedRequests ?? 10_000;
    this.#requests.push(r);
    if (this.#requests.length > max) this.#requests.splice(0, this.#requests.length - max);
    if (r.token !== '' && !this.#tokens.includes(r.token)) this.#tokens.push(r.token);
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    path: string,
    query: URLSearchParams,
    body: Buffer,
    token: string,
  ): Promise<void> {
    let cancel: () => void = () => undefined;
    const cancelled = new Promise<void>((resolve) => {
      cancel = resolve;
    });
    this.#onStop.add(cancel);
    res.once('close', () => {
      this.#onStop.delete(cancel);
      cancel();
    });
    let auth: Authorizer | undefined;
    const acl = this.options.acl;
    const ctx: Ctx = {
      req,
      res,
      method,
      path,
      query,
      body,
      agent: this.#agent,
      auth: () => {
        auth ??= new Authorizer(acl, token);
        return auth;
      },
      defaultPolicy: acl === undefined ? 'allow' : (acl.defaultPolicy ?? 'deny'),
      blocking: { store: this.#agent.store, jitter: this.options.jitter ?? true, cancelled },
    };
    const dcs = [this.#agent.identity.datacenter, ...(this.options.extraDatacenters ?? [])];
    if (path.startsWith('/_double/connect/')) {
      if (!(await connectControl(ctx, this.connect))) sendText(res, 404, 'no such control\n');
      return;
    }
    if (
      (path.startsWith('/v1/agent/connect/') || path.startsWith('/v1/connect/')) &&
      (await connectRoutes(ctx, this.connect))
    )
      return;
    if (path.startsWith('/v1/agent/') && (await agentRoutes(ctx))) return;
    if (path.startsWith('/v1/kv/') || path === '/v1/kv') {
      ctx.path = path === '/v1/kv' ? '/v1/kv/' : path;
      await kvRoutes(ctx, dcs);
      return;
    }
    if (await catalogRoutes(ctx, dcs)) return;
    sendText(res, 404, '404 page not found\n');
  }
}
