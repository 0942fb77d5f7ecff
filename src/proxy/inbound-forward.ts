// Forwards one authorized inbound request to the local app and streams the answer back (an undici dispatch handler).
import type { Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { sendError } from '../errors/error-response.ts';
import { type MeshletError } from '../errors/meshlet-error.ts';
import type { EndpointPool } from '../upstream/upstream.ts';
import { Pool } from '../upstream/undici-pool.ts';
import { type DownstreamRequest, type DownstreamResponse, endResponse, startResponse } from './downstream.ts';
import { AttemptTimers } from './attempt-timers.ts';
import { hasBody } from './request-body.ts';
import { acceptUnsolicitedContinue } from './unsolicited-continue.ts';
import { forwardResponseHeaders } from './headers.ts';
import {
  classifyFailure,
  errorForFailure,
  unsendableHead,
  unsupportedTransferCoding,
} from './upstream-failure.ts';

/** Status recorded when the client went away before the response finished (nginx's 499). */
const CLIENT_CLOSED = 499;

/**
 * One request from a peer's meshlet to the local app: no retries (the caller's meshlet owns those),
 * the body streamed through, the response streamed back with backpressure. A local app that refuses
 * the connection gives `502 upstream_unreachable`, one that does not answer in time `504`.
 * `done(status, error?)` is called exactly once.
 */
export class InboundForward implements Dispatcher.DispatchHandler {
  readonly #req: DownstreamRequest;
  readonly #res: DownstreamResponse;
  readonly #app: string;
  readonly #requestId: string;
  readonly #grpc: boolean;
  /** The answer went out as one HEADERS frame that ended the stream (gRPC Trailers-Only over HTTP/2). */
  #headersOnly = false;
  readonly #done: (status: number, err?: MeshletError) => void;
  #controller: Dispatcher.DispatchController | null = null;
  #requestStarted = false;
  #status = 0;
  #finished = false;
  /** No response headers in time, then no idle gap in the body (meshlet's timers, not undici's). */
  readonly #timers = new AttemptTimers((err) => this.#controller?.abort(err));
  #idleTimeoutMs = 0;

  constructor(
    req: DownstreamRequest,
    res: DownstreamResponse,
    app: string,
    requestId: string,
    grpc: boolean,
    done: (status: number, err?: MeshletError) => void,
  ) {
    this.#req = req;
    this.#res = res;
    this.#app = app;
    this.#requestId = requestId;
    this.#grpc = grpc;
    this.#done = done;
  }

  /** Dispatches on `pool` with `headers`; `timeoutMs` bounds the wait for response headers. */
  start(pool: EndpointPool, path: string, headers: string[], timeoutMs: number, idleTimeoutMs: number): void {
    this.#res.on('close', this.#onClientClose);
    this.#idleTimeoutMs = idleTimeoutMs;
    this.#timers.awaitHeaders(timeoutMs);
    if (pool instanceof Pool) acceptUnsolicitedContinue();
    pool.dispatch(
      {
        path,
        method: this.#req.method as Dispatcher.HttpMethod,
        headers,
        body: hasBody(this.#req) ? this.#req : null,
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#requestStarted = true;
    if (this.#finished) controller.abort(new Error('client closed'));
    else if (this.#timers.expired !== null) controller.abort(this.#timers.expired);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (this.#finished) {
      controller.abort(new Error('client closed'));
      return;
    }
    const unrelayable = unsupportedTransferCoding(headers['transfer-encoding']);
    if (unrelayable !== null) {
      controller.abort(unrelayable);
      return;
    }
    this.#status = statusCode;
    this.#timers.awaitBody(this.#idleTimeoutMs);
    const trailersOnly = this.#grpc && headers['grpc-status'] !== undefined;
    try {
      this.#headersOnly = startResponse(
        this.#res,
        statusCode,
        forwardResponseHeaders(headers, this.#requestId, statusCode),
        trailersOnly,
      );
    } catch (err) {
      controller.abort(unsendableHead(err));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#timers.touch();
    if (this.#headersOnly) return;
    if (!(this.#res as Writable).write(chunk)) {
      const timers = this.#timers;
      timers.pause();
      controller.pause();
      this.#res.once('drain', () => {
        timers.resume();
        controller.resume();
      });
    }
  }

  onResponseEnd(
    _controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[] | undefined>,
  ): void {
    if (!this.#headersOnly) endResponse(this.#res, trailers);
    this.#finish(this.#status);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#finished) return;
    if (this.#res.headersSent) {
      this.#res.destroy(err);
      this.#finish(this.#status);
      return;
    }
    const kind = classifyFailure(err, this.#requestStarted);
    const error = errorForFailure(kind === 'aborted' ? 'reset' : kind, err, this.#app, this.#app);
    sendError(this.#res, error, this.#requestId, undefined, this.#grpc);
    this.#finish(error.status, error);
  }

  #onClientClose = (): void => {
    if (this.#finished) return;
    // Finished first: aborting calls onResponseError at once, which must not answer 502 for the caller's leaving.
    this.#finish(CLIENT_CLOSED);
    this.#controller?.abort(new Error('client closed the connection'));
  };

  #finish(status: number, err?: MeshletError): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#timers.stop();
    this.#done(status, err);
  }
}
