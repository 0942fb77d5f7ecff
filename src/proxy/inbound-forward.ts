// Forwards one authorized inbound request to the local app and streams the answer back (an undici dispatch handler).
import type { Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { sendError } from '../errors/error-response.ts';
import { GRPC_STATUS_OF, grpcStatusOf, grpcStatusOfStreamReset } from '../errors/grpc-status.ts';
import { type MeshletError } from '../errors/meshlet-error.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { EndpointPool } from '../upstream/upstream.ts';
import { Pool } from '../upstream/undici-pool.ts';
import { type DownstreamRequest, type DownstreamResponse, endResponse, startResponse } from './downstream.ts';
import { AttemptTimers } from './attempt-timers.ts';
import { type HeldResponse, ReadTurn, sendHeld } from './response-hold.ts';
import { passInterim } from './interim-response.ts';
import { hasBody } from './request-body.ts';
import { acceptUnsolicitedContinue } from './unsolicited-continue.ts';
import { noteFdExhaustion } from './fd-exhaustion.ts';
import { forwardResponseHeaders } from './headers.ts';
import { endResetGrpcCall, grpcStatusAtEnd, grpcStatusOfCall, NO_GRPC_STATUS } from './grpc-call-status.ts';
import {
  classifyFailure,
  errorForFailure,
  H2_REFUSED_STREAM,
  streamResetCode,
  unsendableHead,
  unsupportedTransferCoding,
  type UpstreamProtocolError,
} from './upstream-failure.ts';

/** Status recorded when the client went away before the response finished (nginx's 499). */
const CLIENT_CLOSED = 499;
/**
 * Most body bytes held behind a response head while its read's turn lasts; past them the response
 * streams at once (64 KiB: the outbound side's default `retries.bufferLimitBytes`, Linkerd's).
 */
const HOLD_LIMIT_BYTES = 64 * 1024;

/**
 * One request from a peer's meshlet to the local app: no retries (the caller's meshlet owns those),
 * the body streamed through, the response streamed back with backpressure. A local app that refuses
 * the connection gives `502 upstream_unreachable`, one that does not answer in time `504`; a
 * connection meshlet cannot open for want of file descriptors (`EMFILE`/`ENFILE`) `503 overloaded`,
 * warned about on `logger` ({@link noteFdExhaustion}). The
 * response head waits out the turn that read it ({@link ReadTurn}), as on the outbound side: an
 * answer malformed right after its head is a `502 upstream_unreachable`, not a closed connection.
 * `done(status, error?, grpcStatus?)` is called exactly once; `grpcStatus` (a gRPC call's only) is
 * the status the call ended with, read as the outbound side reads it ({@link grpcStatusOfCall}).
 */
export class InboundForward implements Dispatcher.DispatchHandler {
  readonly #req: DownstreamRequest;
  readonly #res: DownstreamResponse;
  readonly #app: string;
  readonly #requestId: string;
  readonly #grpc: boolean;
  readonly #logger: Logger;
  /** The answer went out as one HEADERS frame that ended the stream (gRPC Trailers-Only over HTTP/2). */
  #headersOnly = false;
  readonly #done: (status: number, err?: MeshletError, grpcStatus?: number) => void;
  #controller: Dispatcher.DispatchController | null = null;
  #requestStarted = false;
  #status = 0;
  /** A gRPC call's `grpc-status` once known (head, trailers, a failure's or reset's), else NO_GRPC_STATUS. */
  #grpcStatus = NO_GRPC_STATUS;
  #finished = false;
  /** The response while it waits out the turn that read its head, else null. */
  #held: HeldResponse | null = null;
  /** That wait's end. */
  readonly #turn = new ReadTurn(InboundForward.#onTurnEnd, this);
  /** No response headers in time, then no idle gap in the body (meshlet's timers, not undici's). */
  readonly #timers = new AttemptTimers((err) => this.#controller?.abort(err));
  #idleTimeoutMs = 0;

  constructor(
    req: DownstreamRequest,
    res: DownstreamResponse,
    app: string,
    requestId: string,
    grpc: boolean,
    logger: Logger,
    done: (status: number, err?: MeshletError, grpcStatus?: number) => void,
  ) {
    this.#req = req;
    this.#res = res;
    this.#app = app;
    this.#requestId = requestId;
    this.#grpc = grpc;
    this.#logger = logger;
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
    if (statusCode < 200) {
      // An interim answer (102, 103, …): the final one follows (undici calls back again).
      passInterim(this.#res, statusCode, headers);
      return;
    }
    const unrelayable = unsupportedTransferCoding(headers['transfer-encoding']);
    if (unrelayable !== null) {
      controller.abort(unrelayable);
      return;
    }
    this.#status = statusCode;
    this.#timers.awaitBody(this.#idleTimeoutMs);
    // The app's own `x-meshlet-error` never reaches the calling meshlet: it would read it as this
    // meshlet's refusal (a client-fault code counts against no endpoint) and not count the app's failure.
    const out = forwardResponseHeaders(
      headers,
      this.#requestId,
      statusCode,
      headers['x-meshlet-error'] !== undefined,
    );
    const grpcHeader = this.#grpc ? headers['grpc-status'] : undefined;
    if (grpcHeader === undefined) {
      this.#held = { status: statusCode, headers: out, chunks: [], bytes: 0 };
      this.#turn.start();
      return;
    }
    // A gRPC Trailers-Only answer: the whole call in its head, nothing follows to wait for.
    if (typeof grpcHeader === 'string') this.#grpcStatus = grpcStatusOf(grpcHeader);
    try {
      this.#headersOnly = startResponse(this.#res, statusCode, out, true);
    } catch (err) {
      controller.abort(unsendableHead(err));
    }
  }

  /** The turn of the response's head ended without a failure: the head (and what came with it) goes out. */
  static #onTurnEnd(forward: InboundForward): void {
    if (forward.#finished) return;
    const unsendable = forward.#release(forward.#controller);
    if (unsendable !== null) forward.#controller?.abort(unsendable);
  }

  /**
   * Sends the held response to the caller; from here on it streams. With a controller, a full
   * client buffer pauses the app until it drains. Returns the error to fail with when Node refuses
   * to write the head (nothing was sent), else null.
   */
  #release(controller: Dispatcher.DispatchController | null): UpstreamProtocolError | null {
    const held = this.#held;
    if (held === null) return null;
    this.#held = null;
    this.#turn.cancel();
    const sent = sendHeld(this.#res, held);
    if (typeof sent !== 'boolean') return sent;
    if (!sent && controller !== null) this.#pauseUntilDrain(controller);
    return null;
  }

  /** The caller's buffer is full: the app waits until it drains, and is not idle meanwhile. */
  #pauseUntilDrain(controller: Dispatcher.DispatchController): void {
    const timers = this.#timers;
    timers.pause();
    controller.pause();
    this.#res.once('drain', () => {
      timers.resume();
      controller.resume();
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#timers.touch();
    if (this.#headersOnly) return;
    const held = this.#held;
    if (held !== null) {
      held.chunks.push(chunk);
      held.bytes += chunk.length;
      if (held.bytes > HOLD_LIMIT_BYTES) {
        const unsendable = this.#release(controller);
        if (unsendable !== null) controller.abort(unsendable);
      }
      return;
    }
    if (!(this.#res as Writable).write(chunk)) this.#pauseUntilDrain(controller);
  }

  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[] | undefined>,
  ): void {
    // A held response goes out whole now.
    const unsendable = this.#release(null);
    if (unsendable !== null) {
      this.onResponseError(controller, unsendable);
      return;
    }
    if (this.#grpc && this.#status < 500) {
      const ended = grpcStatusAtEnd(trailers, this.#grpcStatus, this.#status);
      if (ended !== NO_GRPC_STATUS) this.#grpcStatus = ended;
    }
    if (!this.#headersOnly) endResponse(this.#res, trailers);
    this.#finish(this.#status);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#finished) return;
    const held = this.#held;
    // A held response never reached the caller: it gets meshlet's answer instead.
    this.#held = null;
    this.#turn.cancel();
    const kind = classifyFailure(err, this.#requestStarted);
    const resetCode = this.#grpc && kind === 'reset' ? streamResetCode(err) : undefined;
    if (resetCode !== undefined && resetCode !== H2_REFUSED_STREAM) {
      this.#onStreamReset(resetCode, held);
      return;
    }
    if (kind === 'exhausted') noteFdExhaustion(this.#logger, err, this.#app);
    const error = errorForFailure(kind === 'aborted' ? 'reset' : kind, err, this.#app, this.#app);
    if (this.#res.headersSent) {
      // The answer started: an HTTP/2 gRPC call ends with the failure as its status in trailers
      // (UNAVAILABLE, DEADLINE_EXCEEDED), as the outbound side ends one; a reset stream would reach
      // the caller's meshlet as a stream reset, which its client reads as INTERNAL. Else cut.
      if (this.#grpc) this.#grpcStatus = GRPC_STATUS_OF[error.code];
      sendError(this.#res, error, undefined, undefined, this.#grpc);
      this.#finish(this.#status);
      return;
    }
    sendError(this.#res, error, this.#requestId, undefined, this.#grpc);
    this.#finish(error.status, error);
  }

  /**
   * The app reset a gRPC call's stream itself (RST_STREAM, not REFUSED_STREAM; its connection up):
   * the call ends with the status gRPC maps that reset to (CANCEL → CANCELLED, ENHANCE_YOUR_CALM →
   * RESOURCE_EXHAUSTED, most codes → INTERNAL), as the outbound side ends it for an endpoint that
   * resets (README: streams the endpoint resets). The caller's meshlet then judges and retries it
   * as that status, as if it had reached the app directly; as `502 upstream_unreachable`
   * (UNAVAILABLE) it replayed a call the app may have acted on. What was held goes out first; the
   * status is in trailers once the response started.
   */
  #onStreamReset(code: number, held: HeldResponse | null): void {
    const grpcStatus = grpcStatusOfStreamReset(code);
    this.#grpcStatus = grpcStatus;
    if (held !== null) {
      this.#held = held;
      this.#release(null);
    }
    if (endResetGrpcCall(this.#res, this.#app, code, grpcStatus, ['x-request-id', this.#requestId]))
      this.#status = 200;
    this.#finish(this.#status);
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
    this.#held = null;
    this.#turn.cancel();
    this.#timers.stop();
    this.#done(status, err, this.#grpc ? grpcStatusOfCall(this.#grpcStatus, status, err) : undefined);
  }
}
