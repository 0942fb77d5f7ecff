// One proxied request: picks an endpoint, streams the request to it and its response back (undici dispatch).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { sendError } from '../errors/error-response.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { Upstream } from '../upstream/upstream.ts';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.ts';
import type { ProxyContext } from './proxy-context.ts';
import { classifyFailure, errorForFailure } from './upstream-failure.ts';

/** Status recorded when the client went away before the response finished (nginx's 499). */
const CLIENT_CLOSED = 499;

/** Whether the downstream request carries a body to stream. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * The life of one request through meshlet. It is its own undici dispatch handler: response headers
 * and body chunks are written straight into the client's response with backpressure (pause/resume),
 * nothing is buffered whole, and a client abort aborts the upstream request.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly #ctx: ProxyContext;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #upstream: Upstream;
  readonly #path: string;
  readonly #startedAt: number;
  #requestId = '';
  #headers: string[] = [];
  #handle: EndpointHandle | undefined;
  #controller: Dispatcher.DispatchController | null = null;
  #attempts = 0;
  #requestStarted = false;
  #inflight = false;
  #status = 0;
  #done = false;

  constructor(
    ctx: ProxyContext,
    req: IncomingMessage,
    res: ServerResponse,
    upstream: Upstream,
    path: string,
  ) {
    this.#ctx = ctx;
    this.#req = req;
    this.#res = res;
    this.#upstream = upstream;
    this.#path = path;
    this.#startedAt = performance.now();
  }

  /** Starts the exchange; everything after happens in handler callbacks. */
  start(): void {
    const forwarded = forwardRequestHeaders(this.#req, 'http');
    this.#headers = forwarded.headers;
    this.#requestId = forwarded.requestId;
    this.#upstream.metrics.active.inc();
    this.#res.on('close', this.#onClientClose);
    this.#attempt();
  }

  #attempt(): void {
    const upstream = this.#upstream;
    const handle = upstream.pick(undefined, this.#handle);
    const pool = handle === undefined ? undefined : upstream.poolOf(handle);
    if (handle === undefined || pool === undefined) {
      this.#fail(
        new MeshletError(
          'no_healthy_endpoints',
          `upstream "${upstream.name}" has no usable endpoint`,
          upstream.name,
        ),
      );
      return;
    }
    this.#handle = handle;
    this.#attempts++;
    this.#requestStarted = false;
    handle.active++;
    this.#inflight = true;
    const settings = upstream.settings;
    pool.dispatch(
      {
        path: this.#path,
        method: this.#req.method as Dispatcher.HttpMethod,
        headers: this.#headers,
        body: hasBody(this.#req) ? this.#req : null,
        headersTimeout: settings.requestTimeoutMs,
        bodyTimeout: settings.idleTimeoutMs,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#requestStarted = true;
    if (this.#done) controller.abort(new Error('client closed'));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    const res = this.#res;
    if (this.#done || res.destroyed) {
      controller.abort(new Error('client closed'));
      return;
    }
    this.#status = statusCode;
    const out = forwardResponseHeaders(headers, this.#requestId);
    if (this.#ctx.draining) out.push('connection', 'close');
    res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.#res.end();
    this.#release();
    this.#complete(this.#status);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const handle = this.#handle;
    this.#release();
    if (this.#done) return;
    const kind = classifyFailure(err, this.#requestStarted);
    if (kind === 'connect') this.#upstream.metrics.connectErrors.inc();
    if (this.#res.headersSent) {
      // The response already started: cut it so the client sees a broken body, never a hang.
      this.#res.destroy(err);
      this.#complete(this.#status === 0 ? 502 : this.#status);
      return;
    }
    const endpoint = handle === undefined ? '?' : handle.endpoint.id;
    this.#fail(errorForFailure(kind, err, this.#upstream.name, endpoint));
  }

  /** Answers with meshlet's own error and finishes. */
  #fail(err: MeshletError): void {
    if (this.#done) return;
    this.#upstream.metrics.localReply(err.code);
    sendError(this.#res, err, this.#requestId);
    this.#complete(err.status, err);
  }

  /** Ends the current attempt's claim on its endpoint (once per attempt). */
  #release(): void {
    if (!this.#inflight) return;
    this.#inflight = false;
    this.#controller = null;
    this.#handle!.active--;
  }

  #onClientClose = (): void => {
    if (this.#done) return;
    const controller = this.#controller;
    if (controller !== null) controller.abort(new Error('client closed the connection'));
    this.#complete(CLIENT_CLOSED);
  };

  #complete(status: number, err?: MeshletError): void {
    if (this.#done) return;
    this.#done = true;
    const upstream = this.#upstream;
    const seconds = (performance.now() - this.#startedAt) / 1000;
    upstream.metrics.active.dec();
    upstream.metrics.finished(status, seconds);
    const log = this.#ctx.accessLog;
    if (err !== undefined || (log.enabled && (log.sampleRate >= 1 || Math.random() < log.sampleRate))) {
      this.#ctx.logger.info({
        msg: 'access',
        requestId: this.#requestId,
        direction: 'outbound',
        method: this.#req.method,
        path: this.#path,
        upstream: upstream.name,
        endpoint: this.#handle?.endpoint.id ?? null,
        status,
        attempts: this.#attempts,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        error: err?.code,
      });
    }
  }
}
