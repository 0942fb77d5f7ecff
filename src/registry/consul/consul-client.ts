// Talks to the Consul agent: the `consul` package for health, catalog and deregistration; undici where it drops fields.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import Consul from 'consul';
// @ts-expect-error: the consul package ships no types for its request helpers.
import consulUtils from 'consul/lib/utils.js';
import { ControlAgent, request } from '../../control-plane/control-request.ts';

/** One entry of `GET /v1/health/service/<name>` (only the fields meshlet reads). */
export interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: {
    ID: string;
    Service: string;
    Address: string;
    Port: number;
    Tags: string[] | null;
    Meta: Record<string, string> | null;
    Weights?: { Passing: number; Warning: number };
  };
  Checks: { CheckID: string; Status: string }[];
}

/** An answer of a blocking query: the body and `X-Consul-Index` (undefined when absent or not a number). */
export interface BlockingAnswer<T> {
  value: T;
  index: number | undefined;
}

/** A non-2xx answer from the agent. `message` is Consul's body text (never the token). */
export class ConsulHttpError extends Error {
  readonly status: number;
  constructor(status: number, body: string) {
    super(`Consul answered ${status}: ${body.trim().slice(0, 300) || 'no body'}`);
    this.name = 'ConsulHttpError';
    this.status = status;
  }
}

/** Connection settings of the agent. */
export interface ConsulClientOptions {
  /** `http(s)://host:port` of the agent. */
  address: string;
  /** ACL token (sent as `X-Consul-Token`), already read from `tokenFile` when configured. */
  token?: string | undefined;
  /** PEM file paths for TLS to the agent. */
  tls?: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined } | undefined;
  /** Timeout of non-blocking calls, ms. Default 5000. */
  timeoutMs?: number;
}

/** Options of a blocking read. */
export interface BlockingOptions {
  /** Index to block on; 0 = answer at once. */
  index: number;
  /** Longest block, ms (Consul adds up to wait/16 of jitter). */
  waitMs: number;
  signal: AbortSignal;
  datacenter?: string | undefined;
}

/** Reads the ACL token from `tokenFile` (trimmed). */
export function readToken(token: string | undefined, tokenFile: string | undefined): string | undefined {
  if (token !== undefined) return token;
  if (tokenFile === undefined) return undefined;
  const text = readFileSync(tokenFile, 'utf8').trim();
  return text === '' ? undefined : text;
}

function indexOf(header: string | string[] | undefined): number | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

/** The shape of errors the `consul` package (papi) rejects with. */
interface PapiError extends Error {
  statusCode?: number;
  response?: { body?: unknown };
}

function fromPapi(err: PapiError): Error {
  if (typeof err.statusCode === 'number') {
    const body = err.response?.body;
    return new ConsulHttpError(err.statusCode, typeof body === 'string' ? body : err.message);
  }
  return err;
}

/**
 * A client of one Consul agent. Every call carries the ACL token in `X-Consul-Token` (never in the
 * URL, so it cannot leak through logged URLs). Blocking reads are cancelled through an AbortSignal.
 */
export class ConsulClient {
  readonly #consul: Consul;
  readonly #dispatcher: ControlAgent;
  readonly #base: string;
  /** ACL token of every call from now on (blocking queries in flight keep theirs until they return). */
  #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: ConsulClientOptions) {
    const url = new URL(options.address);
    const secure = url.protocol === 'https:';
    const tls = {
      ca: options.tls?.ca === undefined ? undefined : readFileSync(options.tls.ca),
      cert: options.tls?.cert === undefined ? undefined : readFileSync(options.tls.cert),
      key: options.tls?.key === undefined ? undefined : readFileSync(options.tls.key),
    };
    this.#base = `${url.protocol}//${url.host}`;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#token = options.token;
    this.#consul = new Consul({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || (secure ? 443 : 80)),
      secure,
      agent: secure ? new HttpsAgent({ keepAlive: true, ...tls }) : new HttpAgent({ keepAlive: true }),
    });
    this.#dispatcher = new ControlAgent({ connectTimeoutMs: this.#timeoutMs, tls });
  }

  /** The ACL token every call from now on sends; undefined sends none. */
  get token(): string | undefined {
    return this.#token;
  }

  /** Replaces the ACL token (a reloaded `token` or `tokenFile`); undefined sends none. */
  setToken(token: string | undefined): void {
    this.#token = token;
  }

  /** The token as the `consul` package's per-call option. */
  #tokenOption(): { token?: string } {
    return this.#token === undefined ? {} : { token: this.#token };
  }

  /** `GET /v1/health/service/<name>?passing` as a blocking query, optionally filtered by tags. */
  async healthService(
    name: string,
    tags: readonly string[],
    options: BlockingOptions,
  ): Promise<BlockingAnswer<HealthEntry[]>> {
    const query: Record<string, unknown> = {
      service: name,
      passing: true,
      index: String(options.index),
      wait: `${options.waitMs}ms`,
    };
    if (tags.length > 0) query.tag = tags.length === 1 ? tags[0] : [...tags];
    if (options.datacenter !== undefined) query.dc = options.datacenter;
    return this.#blocking((extra) => this.#consul.health.service({ ...query, ...extra } as never), options);
  }

  /**
   * `GET /v1/health/connect/<name>?passing` as a blocking query: the instances of `name` that have
   * a sidecar proxy, one entry per proxy (its address and port), optionally filtered by tags.
   */
  async healthConnect(
    name: string,
    tags: readonly string[],
    options: BlockingOptions,
  ): Promise<BlockingAnswer<HealthEntry[]>> {
    const query: Record<string, unknown> = {
      passing: 'true',
      index: String(options.index),
      wait: `${options.waitMs}ms`,
    };
    if (tags.length > 0) query.tag = tags.length === 1 ? tags[0] : [...tags];
    if (options.datacenter !== undefined) query.dc = options.datacenter;
    // The `consul` package has no health.connect; its generic GET does the same as health.service.
    const consul = this.#consul as unknown as {
      _get(req: Record<string, unknown>, next: unknown): Promise<unknown>;
    };
    return this.#blocking((extra) => {
      const req: Record<string, unknown> = {
        name: 'health.connect',
        path: '/health/connect/{service}',
        params: { service: name },
        query: { ...query },
      };
      consulUtils.options(req, { ...query, ...extra });
      return consul._get(req, consulUtils.body);
    }, options);
  }

  /** `GET /v1/agent/self`: the agent's datacenter (what the Consul UI calls this service's). */
  async agentDatacenter(): Promise<string> {
    const res = await request(`${this.#base}/v1/agent/self`, {
      dispatcher: this.#dispatcher,
      headers: this.#token === undefined ? {} : { 'x-consul-token': this.#token },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new ConsulHttpError(res.statusCode, text);
    const dc = (JSON.parse(text) as { Config?: { Datacenter?: unknown } }).Config?.Datacenter;
    if (typeof dc !== 'string' || dc === '') throw new Error('agent/self carries no Config.Datacenter');
    return dc;
  }

  /** `GET /v1/catalog/services` as a blocking query: service name → tags. */
  async catalogServices(options: BlockingOptions): Promise<BlockingAnswer<Record<string, string[]>>> {
    const query: Record<string, unknown> = { index: String(options.index), wait: `${options.waitMs}ms` };
    if (options.datacenter !== undefined) query.dc = options.datacenter;
    return this.#blocking(
      (extra) => this.#consul.catalog.service.list({ ...query, ...extra } as never),
      options,
    );
  }

  async #blocking<T>(
    call: (extra: Record<string, unknown>) => Promise<unknown>,
    options: BlockingOptions,
  ): Promise<BlockingAnswer<T>> {
    const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
    const cancel = (): void => {
      ctx.emit('cancel');
    };
    if (options.signal.aborted) throw options.signal.reason;
    options.signal.addEventListener('abort', cancel, { once: true });
    try {
      // Consul may hold the query for wait + wait/16; allow a little more before calling it hung.
      const timeout = options.waitMs + Math.ceil(options.waitMs / 16) + this.#timeoutMs;
      const [res, body] = (await call({ ctx, timeout, ...this.#tokenOption() })) as [
        { headers: Record<string, string | string[] | undefined> },
        T,
      ];
      return { value: body, index: indexOf(res.headers['x-consul-index']) };
    } catch (err) {
      throw fromPapi(err as PapiError);
    } finally {
      options.signal.removeEventListener('abort', cancel);
    }
  }

  /**
   * `PUT /v1/agent/service/register` through undici: the `consul` package drops `Weights` and `Kind`.
   * `definition` uses Consul's field names.
   */
  async register(definition: Record<string, unknown>): Promise<void> {
    await this.#put('/v1/agent/service/register?replace-existing-checks=true', definition);
  }

  /** `PUT /v1/agent/check/update/<id>` with `{Status, Output}` (the `consul` package has no such call). */
  async updateCheck(checkId: string, status: string, output: string): Promise<void> {
    await this.#put(`/v1/agent/check/update/${encodeURIComponent(checkId)}`, {
      Status: status,
      Output: output,
    });
  }

  /** `PUT /v1/agent/service/deregister/<id>` through the `consul` package. */
  async deregister(serviceId: string): Promise<void> {
    try {
      await this.#consul.agent.service.deregister({
        id: serviceId,
        timeout: this.#timeoutMs,
        ...this.#tokenOption(),
      } as never);
    } catch (err) {
      throw fromPapi(err as PapiError);
    }
  }

  async #put(path: string, body: unknown): Promise<void> {
    const res = await request(`${this.#base}${path}`, {
      method: 'PUT',
      dispatcher: this.#dispatcher,
      headers:
        this.#token === undefined
          ? { 'content-type': 'application/json' }
          : { 'x-consul-token': this.#token, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) throw new ConsulHttpError(res.statusCode, text);
  }

  /** Closes idle connections. */
  async close(): Promise<void> {
    this.#consul.destroy();
    await this.#dispatcher.close().catch(() => {});
  }
}
