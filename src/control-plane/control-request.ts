// HTTP for the control plane (Consul's agent API, the Connect CA, app health probes, token validation) on node:http: its parser is native, so an idle sidecar never instantiates undici's WebAssembly one.
import type { Agent as HttpAgent, ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import * as http from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';

/** TLS material for `https:` agents (PEM or DER buffers). */
export interface ControlTls {
  ca?: Buffer | string | undefined;
  cert?: Buffer | string | undefined;
  key?: Buffer | string | undefined;
}

/** Options of {@link ControlAgent}. */
export interface ControlAgentOptions {
  /** TCP (and TLS) connect timeout, ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Client certificate and trust for `https:` origins. */
  tls?: ControlTls;
}

/**
 * Keep-alive connections to control-plane servers: one node:http agent, and a node:https one made
 * on the first `https:` request (node:https loads then).
 */
export class ControlAgent {
  readonly connectTimeoutMs: number;
  readonly #tls: ControlTls;
  readonly #http = new http.Agent({ keepAlive: true });
  #https: HttpsAgent | undefined;

  constructor(options: ControlAgentOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#tls = options.tls ?? {};
  }

  /** The agent for `protocol` (`http:` or `https:`). */
  agentFor(protocol: string): HttpAgent {
    if (protocol !== 'https:') return this.#http;
    this.#https ??= new (process.getBuiltinModule('node:https').Agent)({ keepAlive: true, ...this.#tls });
    return this.#https;
  }

  /** Closes idle connections and refuses to keep new ones. */
  async close(): Promise<void> {
    this.#http.destroy();
    this.#https?.destroy();
  }
}

/** Options of {@link request}. Times are ms; a timeout or abort rejects, like undici's `request`. */
export interface ControlRequestOptions {
  /** Default `GET`. */
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the request; it rejects with the signal's reason (`TimeoutError` for `AbortSignal.timeout`). */
  signal?: AbortSignal | undefined;
  /** Longest wait for the response headers after sending. Default none. */
  headersTimeout?: number;
  /** Longest silence between response body chunks. Default none. */
  bodyTimeout?: number;
  /** A fresh connection, closed after the response (health probes). Default false. */
  reset?: boolean;
  /** Connection reuse and TLS; default a shared {@link ControlAgent}. */
  dispatcher?: ControlAgent | undefined;
  /**
   * Largest response body read, bytes (default {@link MAX_CONTROL_BODY_BYTES}): a larger
   * `Content-Length`, or a body that outgrows it, rejects `text()` with {@link BodyTooLargeError}
   * and drops the connection, so no answer can take the daemon's memory.
   */
  maxBodyBytes?: number;
}

/** The default body cap of control-plane responses, bytes (64 MiB: a Consul health list of some 20,000 instances). */
export const MAX_CONTROL_BODY_BYTES = 64 * 1024 * 1024;

/** A response body over `maxBodyBytes`. */
export class BodyTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BodyTooLargeError';
  }
}

/** A response whose body is read once, as text. */
export interface ControlResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: { text(): Promise<string> };
}

let shared: ControlAgent | undefined;

/** An HTTP request to `url`; resolves when the response headers arrive. */
export function request(url: string | URL, options: ControlRequestOptions = {}): Promise<ControlResponse> {
  const u = typeof url === 'string' ? new URL(url) : url;
  const agent = options.dispatcher ?? (shared ??= new ControlAgent());
  const signal = options.signal;
  if (signal?.aborted === true) return Promise.reject(signal.reason);
  return new Promise<ControlResponse>((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const send = u.protocol === 'https:' ? process.getBuiltinModule('node:https').request : http.request;
    const req: ClientRequest = send(u, {
      method: options.method ?? 'GET',
      headers,
      agent: options.reset === true ? false : agent.agentFor(u.protocol),
    });
    let settled = false;
    let failure: unknown;
    const fail = (err: unknown): void => {
      failure ??= err;
      if (!settled) {
        settled = true;
        reject(err);
      }
      req.destroy(err as Error);
    };
    const onAbort = (): void => fail(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const unhook = (): void => signal?.removeEventListener('abort', onAbort);
    const headersTimer =
      options.headersTimeout === undefined
        ? undefined
        : setTimeout(
            () => fail(timeoutError(`no response headers within ${options.headersTimeout} ms`)),
            options.headersTimeout,
          );
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      const t = setTimeout(
        () => fail(timeoutError(`connect to ${u.host} timed out after ${agent.connectTimeoutMs} ms`)),
        agent.connectTimeoutMs,
      );
      socket.once('connect', () => clearTimeout(t));
      socket.once('close', () => clearTimeout(t));
    });
    req.on('error', (err) => {
      clearTimeout(headersTimer);
      unhook();
      fail(failure ?? err);
    });
    req.once('response', (res: IncomingMessage) => {
      clearTimeout(headersTimer);
      settled = true;
      const body = readText(
        res,
        options.bodyTimeout,
        options.maxBodyBytes ?? MAX_CONTROL_BODY_BYTES,
        () => failure,
      ).finally(unhook);
      // A body nobody reads still settles (and its failure is not unhandled).
      body.catch(() => undefined);
      resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: { text: () => body } });
    });
    req.end(options.body);
  });
}

function readText(
  res: IncomingMessage,
  idleMs: number | undefined,
  maxBytes: number,
  failure: () => unknown,
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const tooLarge = (what: string): void => {
      clearTimeout(timer);
      const err = new BodyTooLargeError(`${what}, over the ${maxBytes}-byte cap`);
      reject(err);
      res.destroy(err);
    };
    const declared = Number(res.headers['content-length']);
    if (declared > maxBytes) {
      tooLarge(`an answer of ${declared} bytes`);
      return;
    }
    const arm = (): void => {
      if (idleMs === undefined) return;
      clearTimeout(timer);
      timer = setTimeout(() => res.destroy(timeoutError(`response body stalled for ${idleMs} ms`)), idleMs);
    };
    arm();
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) return tooLarge('an answer');
      chunks.push(c);
      arm();
    });
    res.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    res.once('error', (err) => {
      clearTimeout(timer);
      reject(failure() ?? err);
    });
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.complete) reject(failure() ?? new Error('response closed before its end'));
    });
  });
}

function timeoutError(message: string): Error {
  const err = new Error(message);
  err.name = 'TimeoutError';
  return err;
}
