// Talks to the Consul agent: blocking reads and writes through the control-plane client (size-capped, shape-checked), deregistration through the `consul` package.
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import Consul from 'consul';
import {
  BodyTooLargeError,
  ControlAgent,
  MAX_CONTROL_BODY_BYTES,
  request,
} from '../../control-plane/control-request.ts';
import { CallTimeout } from '../../control-plane/call-timeout.ts';
import { checkTlsContext, CONSUL_TLS_LABELS } from '../../tls/certificate-info.ts';

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

/** What the local agent holds under a service ID (`GET /v1/agent/health/service/id/<id>`, only the fields meshlet reads). */
export interface LocalService {
  /** `Service.Address` as registered ('' when none was given: the node's address applies). */
  address: string;
  port: number;
  checks: { status: string; output: string }[];
}

/** Largest blocking-query answer read, bytes: the control plane's cap (64 MiB: a health list of some 20,000 instances). */
export const MAX_ANSWER_BYTES = MAX_CONTROL_BODY_BYTES;

/**
 * A 2xx answer meshlet cannot use: larger than {@link MAX_ANSWER_BYTES}, not JSON, or JSON of the
 * wrong shape. Nothing of it is applied; the watch keeps its last endpoints and retries with backoff.
 */
export class ConsulAnswerError extends Error {
  constructor(message: string) {
    super(`unusable answer from Consul: ${message}`);
    this.name = 'ConsulAnswerError';
  }
}

/** What a JSON value is, for error messages: `null`, `an array`, `an object`, `a string`, ... */
export function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** An answer of a blocking query: the body and `X-Consul-Index` (undefined when absent or not a number). */
export interface BlockingAnswer<T> {
  value: T;
  index: number | undefined;
  /** `X-Consul-Results-Filtered-By-ACLs: true`: the token may not read everything the answer would hold. */
  filteredByAcls?: boolean;
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
  /** Largest blocking-query answer read, bytes. Default {@link MAX_ANSWER_BYTES}. */
  maxAnswerBytes?: number;
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
  readonly #maxAnswerBytes: number;

  constructor(options: ConsulClientOptions) {
    const url = new URL(options.address);
    const secure = url.protocol === 'https:';
    const tls = {
      ca: options.tls?.ca === undefined ? undefined : readFileSync(options.tls.ca),
      cert: options.tls?.cert === undefined ? undefined : readFileSync(options.tls.cert),
      key: options.tls?.key === undefined ? undefined : readFileSync(options.tls.key),
    };
    if (tls.cert !== undefined && tls.key !== undefined) {
      // A set OpenSSL refuses (an RSA-512 key) would fail every call for good: stop start with the
      // line `meshlet config check` prints, naming the files, rather than retry it as an outage.
      const pem = { certPem: tls.cert.toString(), keyPem: tls.key.toString(), caPem: tls.ca?.toString() };
      const files = { cert: options.tls!.cert!, key: options.tls!.key!, ca: options.tls!.ca };
      checkTlsContext(pem, files, CONSUL_TLS_LABELS);
    }
    this.#base = `${url.protocol}//${url.host}`;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxAnswerBytes = options.maxAnswerBytes ?? MAX_ANSWER_BYTES;
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
  ): Promise<BlockingAnswer<unknown[]>> {
    return this.#healthList(`/v1/health/service/${encodeURIComponent(name)}`, tags, options);
  }

  /**
   * `GET /v1/health/connect/<name>?passing` as a blocking query: the instances of `name` that have
   * a sidecar proxy, one entry per proxy (its address and port), optionally filtered by tags.
   */
  async healthConnect(
    name: string,
    tags: readonly string[],
    options: BlockingOptions,
  ): Promise<BlockingAnswer<unknown[]>> {
    return this.#healthList(`/v1/health/connect/${encodeURIComponent(name)}`, tags, options);
  }

  /** A health list read: the answer must be a JSON array (its entries are checked by the caller). */
  async #healthList(
    path: string,
    tags: readonly string[],
    options: BlockingOptions,
  ): Promise<BlockingAnswer<unknown[]>> {
    const query = new URLSearchParams({ passing: 'true' });
    for (const tag of tags) query.append('tag', tag);
    const answer = await this.#blocking(path, query, options);
    if (!Array.isArray(answer.value)) {
      throw new ConsulAnswerError(`${path}: expected a JSON array, got ${jsonKind(answer.value)}`);
    }
    return answer as BlockingAnswer<unknown[]>;
  }

  /** `GET /v1/agent/self`: the agent's datacenter (what the Consul UI calls this service's). */
  async agentDatacenter(): Promise<string> {
    const dc = ((await this.#agentSelf()) as { Config?: { Datacenter?: unknown } }).Config?.Datacenter;
    if (typeof dc !== 'string' || dc === '') throw new Error('agent/self carries no Config.Datacenter');
    return dc;
  }

  /** `GET /v1/agent/self`: the agent's node address (`Member.Addr`), what Consul uses for a service with no Address. */
  async agentAddress(signal?: AbortSignal): Promise<string> {
    const addr = ((await this.#agentSelf(signal)) as { Member?: { Addr?: unknown } }).Member?.Addr;
    if (typeof addr !== 'string' || addr === '')
      throw new ConsulAnswerError('agent/self carries no Member.Addr');
    return addr;
  }

  async #agentSelf(signal?: AbortSignal): Promise<unknown> {
    const { status, text } = await this.#get('/v1/agent/self', signal);
    if (status !== 200) throw new ConsulHttpError(status, text);
    return JSON.parse(text);
  }

  /**
   * `GET /v1/agent/health/service/id/<id>`: what this agent holds under a service ID (its Address,
   * Port and checks), or null when it holds nothing (404). Consul answers 200, 429 or 503 by the
   * service's aggregated status, each with the same JSON body.
   */
  async localService(id: string, signal?: AbortSignal): Promise<LocalService | null> {
    const path = `/v1/agent/health/service/id/${encodeURIComponent(id)}`;
    const { status, text } = await this.#get(path, signal);
    if (status === 404) return null;
    if (status !== 200 && status !== 429 && status !== 503) throw new ConsulHttpError(status, text);
    let body: { Service?: { Address?: unknown; Port?: unknown }; Checks?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // A 503 that is not the service's health (an agent in trouble, a proxy) is an error.
      throw new ConsulHttpError(status, text);
    }
    const svc = body.Service;
    if (typeof svc?.Address !== 'string' || typeof svc.Port !== 'number') {
      throw new ConsulAnswerError(`${path}: expected a Service with Address and Port`);
    }
    const checks = Array.isArray(body.Checks)
      ? (body.Checks as { Status?: unknown; Output?: unknown }[])
      : [];
    return {
      address: svc.Address,
      port: svc.Port,
      checks: checks.map((c) => ({
        status: typeof c?.Status === 'string' ? c.Status : '',
        output: typeof c?.Output === 'string' ? c.Output : '',
      })),
    };
  }

  /**
   * `GET /v1/agent/service/<id>` as a hash-blocking read: with `hash`, the agent holds it until the
   * service's definition changes or `waitMs` (plus up to 1/16 of it) runs out. Resolves with the
   * answer's `X-Consul-ContentHash`, or null when the agent holds no such service (404).
   */
  async agentServiceHash(
    id: string,
    hash: string | undefined,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<string | null> {
    const query = hash === undefined ? '' : `?hash=${encodeURIComponent(hash)}&wait=${waitMs}ms`;
    const limit = new CallTimeout(waitMs + Math.ceil(waitMs / 16) + this.#timeoutMs, signal);
    try {
      const res = await request(`${this.#base}/v1/agent/service/${encodeURIComponent(id)}${query}`, {
        headers: this.#token === undefined ? {} : { 'x-consul-token': this.#token },
        signal: limit.signal,
        dispatcher: this.#dispatcher,
        maxBodyBytes: this.#maxAnswerBytes,
      });
      const text = await res.body.text();
      if (res.statusCode === 404) return null;
      if (res.statusCode !== 200) throw new ConsulHttpError(res.statusCode, text.slice(0, 1024));
      const contentHash = res.headers['x-consul-contenthash'];
      if (typeof contentHash !== 'string' || contentHash === '')
        throw new ConsulAnswerError(`/v1/agent/service/${id}: no X-Consul-ContentHash`);
      return contentHash;
    } catch (err) {
      if (err instanceof BodyTooLargeError)
        throw new ConsulAnswerError(`/v1/agent/service/${id}: ${err.message}`);
      throw err;
    } finally {
      limit.clear();
    }
  }

  /** A small GET (bounded by the call timeout and `signal`): status and body text. */
  async #get(path: string, signal?: AbortSignal): Promise<{ status: number; text: string }> {
    const limit = new CallTimeout(this.#timeoutMs, signal);
    try {
      const res = await request(`${this.#base}${path}`, {
        dispatcher: this.#dispatcher,
        headers: this.#token === undefined ? {} : { 'x-consul-token': this.#token },
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        signal: limit.signal,
      });
      return { status: res.statusCode, text: await res.body.text() };
    } finally {
      limit.clear();
    }
  }

  /**
   * `GET /v1/catalog/services` as a blocking query: service name → tags. The answer must be a JSON
   * object; a name whose tags are not a list of strings is kept with no tags.
   */
  async catalogServices(options: BlockingOptions): Promise<BlockingAnswer<Record<string, string[]>>> {
    const answer = await this.#blocking('/v1/catalog/services', new URLSearchParams(), options);
    const v = answer.value;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new ConsulAnswerError(`/v1/catalog/services: expected a JSON object, got ${jsonKind(v)}`);
    }
    const services: Record<string, string[]> = {};
    for (const [name, tags] of Object.entries(v)) {
      services[name] = Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : [];
    }
    return { ...answer, value: services };
  }

  /**
   * One blocking GET: `index`, `wait` and `dc` added to `query`, the token in `X-Consul-Token`.
   * Rejects with {@link ConsulHttpError} on a non-2xx answer and {@link ConsulAnswerError} on a body
   * that is larger than {@link MAX_ANSWER_BYTES} or not JSON; the body is read as it comes and the
   * connection dropped as soon as it outgrows the cap.
   */
  async #blocking(
    path: string,
    query: URLSearchParams,
    options: BlockingOptions,
  ): Promise<BlockingAnswer<unknown>> {
    query.set('index', String(options.index));
    query.set('wait', `${options.waitMs}ms`);
    if (options.datacenter !== undefined) query.set('dc', options.datacenter);
    // Consul may hold the query for wait + wait/16; allow a little more before calling it hung.
    const timeoutMs = options.waitMs + Math.ceil(options.waitMs / 16) + this.#timeoutMs;
    const limit = new CallTimeout(timeoutMs, options.signal);
    let res: Awaited<ReturnType<typeof request>>;
    let body: string;
    try {
      res = await request(`${this.#base}${path}?${query.toString()}`, {
        headers: this.#token === undefined ? {} : { 'x-consul-token': this.#token },
        signal: limit.signal,
        dispatcher: this.#dispatcher,
        maxBodyBytes: this.#maxAnswerBytes,
      });
      body = await res.body.text();
    } catch (err) {
      if (err instanceof BodyTooLargeError) throw new ConsulAnswerError(`${path}: ${err.message}`);
      throw err;
    } finally {
      limit.clear();
    }
    const { statusCode: status, headers } = res;
    if (status < 200 || status >= 300) throw new ConsulHttpError(status, body.slice(0, 1024));
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      throw new ConsulAnswerError(`${path}: the body is not JSON (${(err as Error).message.slice(0, 120)})`);
    }
    return {
      value,
      index: indexOf(headers['x-consul-index']),
      filteredByAcls: headers['x-consul-results-filtered-by-acls'] === 'true',
    };
  }

  /**
   * `PUT /v1/agent/service/register` through undici: the `consul` package drops `Weights` and `Kind`.
   * `definition` uses Consul's field names.
   */
  async register(definition: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await this.#put('/v1/agent/service/register?replace-existing-checks=true', definition, signal);
  }

  /**
   * `PUT /v1/agent/check/update/<id>` with `{Status, Output}` (the `consul` package has no such call).
   * `signal` gives up early (shutdown cancels a tick's calls so the drain's own calls go at once).
   */
  async updateCheck(checkId: string, status: string, output: string, signal?: AbortSignal): Promise<void> {
    await this.#put(
      `/v1/agent/check/update/${encodeURIComponent(checkId)}`,
      { Status: status, Output: output },
      signal,
    );
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

  async #put(path: string, body: unknown, signal?: AbortSignal): Promise<void> {
    const limit = new CallTimeout(this.#timeoutMs, signal);
    try {
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
        signal: limit.signal,
      });
      const text = await res.body.text();
      if (res.statusCode < 200 || res.statusCode >= 300) throw new ConsulHttpError(res.statusCode, text);
    } finally {
      limit.clear();
    }
  }

  /** Closes idle connections. */
  async close(): Promise<void> {
    this.#consul.destroy();
    await this.#dispatcher.close().catch(() => {});
  }
}
