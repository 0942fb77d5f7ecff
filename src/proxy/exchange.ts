// One proxied request: admission, the attempt loop (pick, dispatch, retry) and streaming the response back.
import type { Readable, Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { sendError } from '../errors/error-response.ts';
import {
  GRPC_STATUS_OF,
  grpcStatusOf,
  grpcStatusOfStreamReset,
  isGrpcRequest,
  isGrpcServerFailure,
} from '../errors/grpc-status.ts';
import { CLIENT_FAULT, MeshletError } from '../errors/meshlet-error.ts';
import { retryAfterMs } from '../resilience/backoff.ts';
import { timerDelay } from '../resilience/timer-delay.ts';
import { type Admission, REFUSED } from '../resilience/circuit-breaker.ts';
import type { OutlierFailureKind } from '../resilience/outlier-detector.ts';
import {
  type AttemptOutcome,
  classify,
  IDEMPOTENCY_KEY_HEADER,
  type RetryContext,
  shouldRetry,
} from '../resilience/retry-policy.ts';
import type { EndpointHandle } from '../upstream/endpoint.ts';
import type { Upstream } from '../upstream/upstream.ts';
import { Pool } from '../upstream/undici-pool.ts';
import type { RequestPolicy } from '../upstream/upstream-settings.ts';
import { noteFdExhaustion } from './fd-exhaustion.ts';
import { incomingDeadlineMs, MIN_ATTEMPT_BUDGET_MS, TIMEOUT_HEADER } from './deadline.ts';
import {
  type DownstreamRequest,
  type DownstreamResponse,
  endResponse,
  isH2,
  startResponse,
} from './downstream.ts';
import { type HeldResponse, ReadTurn, sendHeld } from './response-hold.ts';
import { clientGone, passInterim } from './interim-response.ts';
import { AttemptTimers } from './attempt-timers.ts';
import { endResetGrpcCall, grpcStatusAtEnd, grpcStatusOfCall, NO_GRPC_STATUS } from './grpc-call-status.ts';
import { BODY_REFUSED } from '../listener/http-listener.ts';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.ts';
import type { AccessPrincipal } from '../telemetry/access-log.ts';
import type { ProxyContext } from './proxy-context.ts';
import { hasBody, prepareBody, TeedBody, TOO_LARGE } from './request-body.ts';
import { acceptUnsolicitedContinue } from './unsolicited-continue.ts';
import {
  AttemptTimeoutError,
  classifyFailure,
  errorForFailure,
  type FailureKind,
  H2_REFUSED_STREAM,
  isPeerClientFault,
  RequestFaultError,
  streamResetCode,
  unsendableHead,
  unsupportedTransferCoding,
  type UpstreamProtocolError,
} from './upstream-failure.ts';

/**
 * What an edge listener (the gateway) changes in the request sent upstream and what it logs: the
 * client's copies of identity headers removed, the verified identity's headers added.
 */
export interface EdgeHeaders {
  /**
   * Lowercased names removed from the client's request: the identity headers only the gateway may
   * set, plus `x-meshlet-timeout-ms` and `grpc-timeout` (meshlet sets those itself). Built once per route.
   */
  readonly drop: ReadonlySet<string>;
  /** `[name, value, …]` added after the client's headers (claims mapped to headers). */
  readonly add: readonly string[];
  /** `x-forwarded-proto` when the client sent none: `https` behind TLS termination. */
  readonly proto: 'http' | 'https';
  /** Who called, for the access line (never a token). */
  readonly principal?: AccessPrincipal | undefined;
  /**
   * When the edge listener's handler took the request (`performance.now()`, ms): the access line's
   * `durationMs` and the duration histogram count from it, so time spent authenticating is in them.
   * The request timeout still starts with the exchange. Default: the exchange's own start.
   */
  readonly receivedAt?: number | undefined;
  /**
   * Rewrites the upstream's `[name, value, …]` response head before it goes out (a gateway route
   * with `cors` makes its own CORS headers win); module-level, so nothing is allocated per request.
   */
  readonly responseHeaders?: ((head: string[], res: DownstreamResponse) => string[]) | undefined;
}

/** Status recorded when the client went away before the response finished (nginx's 499). */
const CLIENT_CLOSED = 499;
/** Headers only meshlet sets upstream: an incoming copy is dropped. */
const DROP_INCOMING = new Set([TIMEOUT_HEADER]);
/** The same for a gRPC call, whose `grpc-timeout` meshlet rewrites to the remaining budget. */
const DROP_INCOMING_GRPC = new Set([TIMEOUT_HEADER, 'grpc-timeout']);
/** gRFC A6: a server's `grpc-retry-pushback-ms` (ms to wait; anything else means do not retry). */
const PUSHBACK_HEADER = 'grpc-retry-pushback-ms';
const OUTCOME_CONNECT: AttemptOutcome = { kind: 'connect-failure' };
const OUTCOME_RESET: AttemptOutcome = { kind: 'reset' };
const OUTCOME_TIMEOUT: AttemptOutcome = { kind: 'timeout' };

/** Longest wait for an on-demand upstream's first discovery answer, ms (Linkerd's 3 s fail-fast). */
const FIRST_SYNC_WAIT_MS = 3000;

/** The first cookie called `name` in a Cookie header. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The life of one request through meshlet. Admission (fallback, limits, breaker, budget), then
 * attempts: each picks an endpoint (another one on a retry when there is one), dispatches through
 * the endpoint's undici pool with this object as the handler, and either streams the response
 * straight into the client's response with backpressure, or — when the retry policy, the budget, the
 * limits and the deadline all allow — discards it and tries again after a jittered backoff.
 * Nothing is retried once response headers went to the client.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly #ctx: ProxyContext;
  readonly #req: DownstreamRequest;
  readonly #res: DownstreamResponse;
  #upstream: Upstream;
  readonly #path: string;
  readonly #policy: RequestPolicy;
  /** What an edge listener (the gateway) changes in the headers, or null. */
  readonly #edge: EdgeHeaders | null;
  readonly #startedAt: number;
  #deadlineAt = 0;
  /** The caller's deadline is shorter than the request timeout (then it ends the request). */
  #callerDeadline = false;
  /** The attempt's wait for headers was shortened by the caller's deadline (below the per-try timeout). */
  #cutByCaller = false;
  /** An attempt was cut by the caller's deadline: a 504 then tells the breaker nothing. */
  #callerTimedOut = false;
  #requestId = '';
  #headers: string[] = [];
  #timeoutSlot = 0;
  /** Where `grpc-timeout` sits in #headers (a gRPC call), else -1. */
  #grpcTimeoutSlot = -1;
  /** The request is a gRPC call: refusals are gRPC answers, success is judged by `grpc-status`. */
  #grpc = false;
  /** The response went out as one HEADERS frame that ended the stream (gRPC Trailers-Only over HTTP/2). */
  #headersOnly = false;
  #body: Buffer | Readable | null = null;
  #hashKey: string | undefined;
  #admission: Admission = REFUSED;
  #retry: RetryContext | null = null;
  #bodyReplayable = true;
  /** A gRPC call's body: streamed, with a replay copy of its start. */
  #teed: TeedBody | null = null;
  /** The attempt's gRPC response while it waits for its status (`retries.grpcResponseHold`), else null. */
  #held: HeldResponse | null = null;
  // Per-attempt state.
  #handle: EndpointHandle | undefined;
  #controller: Dispatcher.DispatchController | null = null;
  #attemptStartedAt = 0;
  #requestStarted = false;
  #inflight = false;
  #pending = false;
  #discarding = false;
  #retryAfter: string | undefined;
  /** A gRPC server's pushback before the retry, ms. */
  #pushbackMs: number | undefined;
  /** The attempt's answer is a peer meshlet's refusal of the request as the caller's fault (not judged). */
  #peerRefused = false;
  /** The attempt's per-try and idle timeouts (created with the first attempt). */
  #timers: AttemptTimers | null = null;
  /** The end of a held gRPC response's hold. */
  #timer: NodeJS.Timeout | null = null;
  /** The end of any other response's one-turn hold (see #holdOneTurn). */
  readonly #turn = new ReadTurn(Exchange.#onTurnEnd, this);
  /** An attempt waits for the streamed body's end to start its per-try timeout. */
  #awaitsUpload = false;
  /** The request timeout while the body is read whole before the first attempt, else null. */
  #bodyDeadline: NodeJS.Timeout | null = null;
  // Whole-exchange state.
  #attempts = 0;
  /** Attempts made before the current upstream's admission: the primary's, once failed over to its fallback. */
  #attemptsBefore = 0;
  #holdsRequest = false;
  #admitted = false;
  #holdsRetry = false;
  /** True while every attempt so far failed to connect (then a fallback may still serve). */
  #onlyConnectFailures = true;
  /** True once an endpoint of the upstream was found to be meshlet's own listener at connect (nothing sent). */
  #metLoop = false;
  #failedOver = false;
  #status = 0;
  /** The call's `grpc-status` once known (from headers or trailers), else -1. */
  #grpcStatus = -1;
  #done = false;

  constructor(
    ctx: ProxyContext,
    req: DownstreamRequest,
    res: DownstreamResponse,
    upstream: Upstream,
    path: string,
    policy: RequestPolicy,
    edge: EdgeHeaders | null = null,
  ) {
    this.#ctx = ctx;
    this.#req = req;
    this.#res = res;
    this.#upstream = upstream;
    this.#path = path;
    this.#policy = policy;
    this.#edge = edge;
    this.#startedAt = performance.now();
  }

  /** Starts the exchange; everything after happens in callbacks. */
  start(): void {
    const req = this.#req;
    const grpc = isGrpcRequest(req.headers['content-type']);
    this.#grpc = grpc;
    const edge = this.#edge;
    const forwarded =
      edge === null
        ? forwardRequestHeaders(req, 'http', grpc ? DROP_INCOMING_GRPC : DROP_INCOMING)
        : forwardRequestHeaders(req, edge.proto, edge.drop);
    if (edge !== null) for (const h of edge.add) forwarded.headers.push(h);
    this.#headers = forwarded.headers;
    this.#requestId = forwarded.requestId;
    this.#res.on('close', this.#onClientClose);
    // Only an HTTP/1.1 body can be refused by the listener (node:http refuses a head with both
    // Content-Length and Transfer-Encoding). Registered before any refusal below: a body that fails
    // to parse after an early answer is claimed by this exchange, whose line was written already.
    if (!isH2(req) && hasBody(req)) this.#res.on(BODY_REFUSED, this.#onBodyRefused);
    if (forwarded.invalid !== null) {
      // Refused before admission: no attempt, no breaker, no endpoint is told anything.
      this.#fail(new MeshletError('bad_request', forwarded.invalid, this.#upstream.name));
      return;
    }

    // At the edge a client's deadline headers are not taken (Envoy ignores grpc-timeout and its own
    // x-envoy-upstream-rq-timeout-ms from outside too): an anonymous client asking for 1 ms would get
    // 504s that count against healthy endpoints until they are ejected. The route's timeouts govern.
    const incoming =
      edge === null
        ? incomingDeadlineMs(req.headers[TIMEOUT_HEADER], req.headers['grpc-timeout'])
        : undefined;
    const budget =
      incoming === undefined
        ? this.#policy.requestTimeoutMs
        : Math.min(incoming, this.#policy.requestTimeoutMs);
    this.#deadlineAt = this.#startedAt + budget;
    this.#callerDeadline = incoming !== undefined && incoming < this.#policy.requestTimeoutMs;
    this.#timeoutSlot = this.#headers.push(TIMEOUT_HEADER, '') - 1;
    // The remaining budget goes upstream as grpc-timeout only when the caller set a deadline: without
    // one, meshlet's request timeout bounds the wait for response headers, not the call, and a
    // grpc-timeout would make the server end a long-lived stream (a watch) at that time.
    if (grpc && incoming !== undefined) this.#grpcTimeoutSlot = this.#headers.push('grpc-timeout', '') - 1;

    const primary = this.#upstream;
    if (primary.synced) this.#admit();
    else {
      // An upstream discovered on first use: wait for its first snapshot (Linkerd fails fast after 3 s).
      const wait = setTimeout(() => this.#admit(), Math.max(0, Math.min(FIRST_SYNC_WAIT_MS, budget)));
      primary.onceSynced(() => {
        clearTimeout(wait);
        this.#admit();
      });
    }
  }

  /** Admission: fallback choice, concurrency limit, breaker, budget; then the body and the first attempt. */
  #admit(): void {
    if (this.#done || this.#admitted) return;
    this.#admitted = true;
    const req = this.#req;
    const upstream = this.#chooseUpstream(this.#upstream);
    if (!this.#claim(upstream)) return;
    const maxBody = upstream.settings.maxRequestBodyBytes;
    if (Number(req.headers['content-length']) > maxBody) {
      this.#fail(this.#bodyTooLarge(maxBody));
      return;
    }
    const hashOn = upstream.settings.hashOn;
    if (hashOn !== null) {
      this.#hashKey =
        'header' in hashOn
          ? (req.headers[hashOn.header] as string | undefined)
          : cookieValue(req.headers.cookie, hashOn.cookie);
    }
    if (!hasBody(req)) {
      this.#attempt();
      return;
    }
    this.#watchBody();
    const tooLarge = () => new RequestFaultError(this.#bodyTooLarge(maxBody));
    if (this.#grpc) {
      // A gRPC stream is sent as it comes (a bidi client waits for answers), its start kept for
      // replay. A unary call's one message arrives with its HEADERS: when the body has ended once
      // the frames read with them are processed, it goes as a Buffer (no stream to pipe).
      this.#teed = new TeedBody(req, this.#policy.retry.bufferLimitBytes, maxBody, tooLarge);
      this.#bodyReplayable = false;
      setImmediate(Exchange.#sendGrpcBody, this);
      return;
    }
    // The request timeout bounds the whole exchange, the upload of a body read whole first included:
    // a body still arriving at the deadline is the client's fault (408), never the endpoint's.
    this.#bodyDeadline = setTimeout(
      Exchange.#onBodyDeadline,
      timerDelay(this.#deadlineAt - performance.now()),
      this,
    );
    prepareBody(req, this.#policy.retry.bufferLimitBytes, maxBody, tooLarge, (prepared) => {
      this.#clearBodyDeadline();
      if (prepared === null || this.#done) return;
      if (prepared === TOO_LARGE) {
        this.#fail(this.#bodyTooLarge(maxBody));
        return;
      }
      this.#body = prepared.body;
      this.#bodyReplayable = prepared.replayable;
      this.#attempt();
    });
  }

  /**
   * Takes `upstream`'s admission for this request: a concurrency slot, the breaker, the retry
   * budget's count. False when refused (then the request is answered).
   */
  #claim(upstream: Upstream): boolean {
    this.#upstream = upstream;
    upstream.metrics.active++;
    const admitted = upstream.admit(this.#policy.retry);
    if (admitted instanceof MeshletError) {
      this.#fail(admitted);
      return false;
    }
    this.#holdsRequest = true;
    this.#admission = admitted;
    return true;
  }

  #bodyTooLarge(maxBytes: number): MeshletError {
    const name = this.#upstream.name;
    return new MeshletError(
      'body_too_large',
      `request body is larger than upstream "${name}" accepts (maxRequestBodyBytes ${maxBytes})`,
      name,
    );
  }

  /**
   * Bounds how long the request body may stall (`listeners.outbound.bodyTimeout`), on the socket's
   * own idle timer: armed until the body has been read whole.
   */
  #watchBody(): void {
    const ms = this.#ctx.bodyTimeoutMs;
    const req = this.#req;
    if (ms <= 0 || req.complete) return;
    const onStall = (): void => this.#onBodyStall(ms);
    // HTTP/1.1: the socket's idle timer; HTTP/2: the stream's (node:http2 emits 'timeout' on it).
    const timer = isH2(req) ? req.stream : req;
    req.setTimeout(ms, onStall);
    req.once('end', () => {
      timer.off('timeout', onStall);
      // Once the response is done, Node's keep-alive timer owns the socket's timeout.
      if (!this.#res.writableEnded) req.setTimeout(0);
    });
  }

  /** The body stalled: answer 408 and cancel the attempt; the endpoint is not to blame. */
  #onBodyStall(ms: number): void {
    if (this.#done) {
      // Answered already, and the client still stalls the rest of its body: nobody waits for it.
      this.#req.destroy();
      return;
    }
    const controller = this.#controller;
    const err = new MeshletError(
      'request_timeout',
      `request body stalled for more than ${ms} ms`,
      this.#upstream.name,
    );
    this.#fail(err);
    controller?.abort(new RequestFaultError(err));
  }

  /**
   * The request timeout ran out while the body was still being read, before any attempt: answer 408
   * `request_timeout` now. Nothing was sent upstream; the breaker and outlier detection hear nothing.
   */
  static #onBodyDeadline(exchange: Exchange): void {
    exchange.#bodyDeadline = null;
    if (exchange.#done) return;
    exchange.#fail(exchange.#uploadTimeout());
  }

  #clearBodyDeadline(): void {
    if (this.#bodyDeadline !== null) {
      clearTimeout(this.#bodyDeadline);
      this.#bodyDeadline = null;
    }
  }

  /** The primary, or its fallback while the primary has no usable endpoint or its breaker refuses (open, trial in flight). */
  #chooseUpstream(primary: Upstream): Upstream {
    if (primary.settings.fallback === null) return primary;
    if (primary.usable && primary.breaker?.refusing !== true) return primary;
    return this.#fallbackOf(primary) ?? primary;
  }

  /** The primary's fallback upstream (counting the failover), or undefined when it has none. */
  #fallbackOf(primary: Upstream): Upstream | undefined {
    const name = primary.settings.fallback;
    if (name === null) return undefined;
    const fallback = this.#ctx.upstreams.get(name);
    if (fallback === undefined || fallback === primary) return undefined;
    this.#ctx.metrics.resilience.failovers.labels(primary.name, fallback.name).inc();
    return fallback;
  }

  /**
   * Every attempt on the primary failed to connect (nothing was sent anywhere): move the request to
   * the primary's fallback, once. The primary's breaker hears the failure; its slots are given back.
   * When the only endpoints tried were found to be meshlet's own listeners (a forwarding loop, no
   * attempt counted), the breaker gets its admission back without an outcome. False when there is
   * no fallback (or the request already moved).
   */
  #failover(): boolean {
    if (this.#failedOver || !this.#onlyConnectFailures) return false;
    const primary = this.#upstream;
    const fallback = this.#fallbackOf(primary);
    if (fallback === undefined) return false;
    this.#failedOver = true;
    if (this.#attempts > 0) this.#settleBreaker(false);
    else this.#releaseBreaker();
    if (this.#holdsRequest) primary.limits.releaseRequest();
    if (this.#holdsRetry) primary.limits.releaseRetry();
    this.#holdsRequest = false;
    this.#holdsRetry = false;
    primary.metrics.active--;
    this.#handle = undefined;
    this.#attemptsBefore = this.#attempts;
    if (this.#claim(fallback)) this.#attempt();
    return true;
  }

  #attempt(): void {
    if (this.#done) return;
    const upstream = this.#upstream;
    const handle = upstream.pick(this.#hashKey, this.#handle);
    const pool = handle === undefined ? undefined : upstream.poolOf(handle);
    if (handle === undefined || pool === undefined) {
      if ((this.#attempts > 0 || this.#metLoop) && this.#failover()) return;
      // meshlet's own refusal: no outcome when nothing was sent; after a retry, the failed attempt counts.
      this.#settleRefusal(this.#attempts - this.#attemptsBefore);
      this.#fail(
        new MeshletError(
          'no_healthy_endpoints',
          `upstream "${upstream.name}" has no usable endpoint`,
          upstream.name,
        ),
      );
      return;
    }
    const now = performance.now();
    const remaining = this.#deadlineAt - now;
    if (remaining < MIN_ATTEMPT_BUDGET_MS) {
      // Nothing was sent: the caller's deadline was too short, not the upstream's fault.
      if (this.#attempts === this.#attemptsBefore) this.#releaseBreaker();
      this.#fail(
        new MeshletError('upstream_timeout', `upstream "${upstream.name}": request timeout`, upstream.name),
      );
      return;
    }
    if (!upstream.limits.tryAcquirePending()) {
      this.#overflow('pending', 'has too many pending requests');
      return;
    }
    this.#pending = true;
    this.#handle = handle;
    this.#attempts++;
    this.#requestStarted = false;
    this.#discarding = false;
    this.#retryAfter = undefined;
    this.#pushbackMs = undefined;
    this.#peerRefused = false;
    this.#attemptStartedAt = now;
    this.#inflight = true;
    handle.active++;
    this.#headers[this.#timeoutSlot] = String(Math.ceil(remaining));
    if (this.#grpcTimeoutSlot !== -1) this.#headers[this.#grpcTimeoutSlot] = `${Math.ceil(remaining)}m`;
    // A body still arriving: the per-try timeout starts once it has (Envoy's too); until then only
    // the request's deadline bounds the wait, and cuts it as the client's fault (onResponseError).
    const uploading = this.#uploading();
    const perTry = uploading ? remaining : Math.min(this.#policy.perTryTimeoutMs, remaining);
    if (uploading && !this.#awaitsUpload) {
      this.#awaitsUpload = true;
      this.#req.once('end', this.#onUploaded);
    }
    this.#cutByCaller = this.#callerDeadline && remaining < this.#policy.perTryTimeoutMs;
    (this.#timers ??= new AttemptTimers(this.#expire)).awaitHeaders(perTry);
    if (pool instanceof Pool) acceptUnsolicitedContinue();
    pool.dispatch(
      {
        path: this.#path,
        method: this.#req.method as Dispatcher.HttpMethod,
        headers: this.#headers,
        body: this.#body,
        // meshlet's own timers (attempt-timers.ts): undici's would be promoted with every request.
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#requestStarted = true;
    this.#releasePending();
    if (this.#done) controller.abort(new Error('client closed'));
    else if (this.#timers!.expired !== null) controller.abort(this.#timers!.expired);
  }

  /** The first attempt of a gRPC call: its whole body when it has already ended, else the stream. */
  static #sendGrpcBody(exchange: Exchange): void {
    const teed = exchange.#teed;
    if (exchange.#done || teed === null) return;
    const whole = teed.replay();
    if (whole !== null) {
      exchange.#body = whole;
      exchange.#bodyReplayable = true;
      exchange.#teed = null;
    } else exchange.#body = teed.stream;
    exchange.#attempt();
  }

  /** A timeout of the attempt ran out (no headers in time, an idle body): abort it as a timeout. */
  #expire = (err: Error): void => {
    this.#controller?.abort(err);
  };

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#turn.cancel();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) {
      // An interim answer (102, 103, …); the final one follows on the same attempt (undici calls
      // back again). 101 never gets here: tunnels take their own path.
      if (!this.#done) passInterim(this.#res, statusCode, headers);
      return;
    }
    const unrelayable = unsupportedTransferCoding(headers['transfer-encoding']);
    if (unrelayable !== null) {
      // onResponseError counts it against the endpoint, like a reset, and retries when allowed.
      controller.abort(unrelayable);
      return;
    }
    const upstream = this.#upstream;
    const handle = this.#handle!;
    this.#timers!.awaitBody(this.#policy.idleTimeoutMs);
    this.#releasePending();
    this.#onlyConnectFailures = false;
    upstream.observe(handle, performance.now() - this.#attemptStartedAt);
    upstream.metrics.attemptResponses++;
    // gRPC: `grpc-status` in the headers is a Trailers-Only answer, the whole call's outcome.
    const grpcHeader = this.#grpc ? headers['grpc-status'] : undefined;
    const grpcStatus = typeof grpcHeader === 'string' ? grpcStatusOf(grpcHeader) : undefined;
    // A peer meshlet (reached over mTLS) refused the request as the caller's fault (its
    // x-meshlet-error names a client-fault code): the request never reached the peer's app, so the
    // answer goes to the caller as it is and counts for nothing (outlier detection, breaker, retry),
    // as meshlet's own refusals do. Looked up on failed answers only.
    const refused =
      (statusCode >= 400 || (grpcStatus !== undefined && grpcStatus !== 0)) &&
      handle.endpoint.transport === 'mtls' &&
      isPeerClientFault(headers, statusCode, grpcStatus);
    this.#peerRefused = refused;
    if (!refused) {
      if (statusCode >= 500)
        this.#reportOutlier(handle, statusCode >= 502 && statusCode <= 504 ? 'gateway' : '5xx');
      else if (grpcStatus !== undefined) this.#judgeGrpc(handle, grpcStatus);
    }
    // Any other answer is judged once its body ended (onResponseEnd): cleared at the head, the
    // failure count of an endpoint that resets every body mid-way never reached its threshold.
    const res = this.#res;
    if (this.#done || clientGone(res)) {
      controller.abort(new Error('client closed'));
      return;
    }
    // Read before the retry decision: a retry that could not start before the deadline after the
    // wait the endpoint asks for is not made, and the caller gets this answer (#mayRetry).
    const retryAfter = headers['retry-after'];
    this.#retryAfter = typeof retryAfter === 'string' ? retryAfter : undefined;
    if (
      !refused &&
      (statusCode >= 408 || (grpcStatus !== undefined && grpcStatus !== 0)) &&
      this.#serverAllowsRetry(headers) &&
      this.#mayRetry({ kind: 'response', status: statusCode, grpcStatus })
    ) {
      // Retry: drop this response and try again. The attempt is cut rather than its body read to
      // the end (Envoy resets the upstream stream too): a slow or endless body would hold the retry,
      // and the request, past its deadline. onResponseError schedules the retry.
      this.#discarding = true;
      controller.abort(new Error('answer dropped for a retry'));
      return;
    }
    this.#status = statusCode;
    if (grpcStatus !== undefined) this.#grpcStatus = grpcStatus;
    const rewrite = this.#edge?.responseHeaders;
    const forwarded = forwardResponseHeaders(headers, this.#requestId, statusCode);
    const out = rewrite === undefined ? forwarded : rewrite(forwarded, res);
    out.push('x-meshlet-attempts', String(this.#attempts));
    if (this.#ctx.draining && !('stream' in res)) out.push('connection', 'close');
    if (grpcStatus === undefined && this.#mayHold()) {
      this.#held = { status: statusCode, headers: out, chunks: [], bytes: 0 };
      this.#timer = setTimeout(Exchange.#onHoldEnd, timerDelay(this.#policy.retry.grpcResponseHoldMs), this);
      return;
    }
    if (grpcStatus === undefined) {
      this.#holdOneTurn(statusCode, out);
      return;
    }
    try {
      this.#headersOnly = startResponse(res, statusCode, out, true);
    } catch (err) {
      // A head Node refuses to write (node:http2 throws on some names and values): undici would
      // swallow the throw and leave the client waiting. Nothing was sent: answer 502 instead.
      controller.abort(unsendableHead(err));
    }
  }

  /**
   * Holds the response head (and any body read with it) until the end of this turn of the event
   * loop ({@link ReadTurn}): a response malformed right after its head fails the attempt before
   * anything reached the client, who gets a 502 (or a retry) instead of a closed connection with no
   * answer. An end that comes in that turn (or a body past `retries.bufferLimitBytes`) releases it earlier.
   */
  #holdOneTurn(status: number, headers: string[]): void {
    this.#held = { status, headers, chunks: [], bytes: 0 };
    this.#turn.start();
  }

  /** The turn of a response's head ended without a failure: the head (and what came with it) goes out. */
  static #onTurnEnd(exchange: Exchange): void {
    if (exchange.#done) return;
    const unsendable = exchange.#release(exchange.#controller);
    if (unsendable !== null) exchange.#controller?.abort(unsendable);
  }

  /**
   * Whether this gRPC response may be held back until its status: only while losing the endpoint
   * before the status could still be retried (a retry left, `retryOn` covering a lost connection,
   * the request whole in the replay buffer). grpc-js, for one, writes a unary call's status a turn
   * after its message: an endpoint killed in between would otherwise cost the call.
   */
  #mayHold(): boolean {
    const retry = this.#policy.retry;
    if (!this.#grpc || retry.grpcResponseHoldMs <= 0 || this.#attempts >= retry.attempts) return false;
    if (!this.#bodyReplayable && this.#teed?.replayable !== true) return false;
    return classify(OUTCOME_RESET, retry.retryOn) !== undefined;
  }

  /** The hold's time is up (a streaming call, or a slow status): what was held goes out, the rest streams. */
  static #onHoldEnd(exchange: Exchange): void {
    exchange.#timer = null;
    if (exchange.#done) return;
    const unsendable = exchange.#release(exchange.#controller);
    if (unsendable !== null) exchange.#controller?.abort(unsendable);
  }

  /**
   * Sends the held response's headers and messages to the caller; from here on it streams. With a
   * controller, a full client buffer pauses the upstream until it drains. Returns the error to fail
   * the attempt with when Node refuses to write the head (node:http2 throws on some names and
   * values; nothing was sent), else null.
   */
  #release(controller: Dispatcher.DispatchController | null): UpstreamProtocolError | null {
    const held = this.#held;
    if (held === null) return null;
    this.#held = null;
    this.#clearTimer();
    const sent = sendHeld(this.#res, held);
    if (typeof sent !== 'boolean') return sent;
    if (!sent && controller !== null) this.#pauseUntilDrain(controller);
    return null;
  }

  /**
   * The client's buffer is full: the upstream waits until it drains, and is not idle meanwhile. A
   * client that drains none of it for the idle timeout (`timeouts.idle`) is let go, as Envoy's
   * stream_idle_timeout ends a stream stalled by its reader: its connection (HTTP/2: stream) is
   * closed, the attempt cancelled, and the access line says 499 `request_timeout`. A client that
   * reads in bursts is served as long as each drain comes within the idle timeout.
   */
  #pauseUntilDrain(controller: Dispatcher.DispatchController): void {
    const timers = this.#timers!;
    timers.pause();
    controller.pause();
    const idleMs = this.#policy.idleTimeoutMs;
    const stalled = idleMs > 0 ? setTimeout(() => this.#onReaderStalled(idleMs), timerDelay(idleMs)) : null;
    this.#res.once('drain', () => {
      if (stalled !== null) clearTimeout(stalled);
      timers.resume();
      controller.resume();
    });
  }

  /** The client took none of the response for `idleMs`: end the exchange as the client's, then close its side. */
  #onReaderStalled(idleMs: number): void {
    if (this.#done) return;
    this.#releaseBreaker();
    const why = `the client read none of the response for ${idleMs} ms (timeouts.idle)`;
    this.#complete(CLIENT_CLOSED, new MeshletError('request_timeout', why, this.#upstream.name));
    this.#controller?.abort(new Error(why));
    (this.#res as Writable).destroy();
  }

  /**
   * Whether the server's gRPC pushback allows a retry (gRFC A6): a `grpc-retry-pushback-ms` of
   * digits is waited for before the retry; any other value forbids it. No header: allowed.
   */
  #serverAllowsRetry(headers: Record<string, string | string[] | undefined>): boolean {
    this.#pushbackMs = undefined;
    if (!this.#grpc) return true;
    const pushback = headers[PUSHBACK_HEADER];
    if (pushback === undefined) return true;
    if (typeof pushback !== 'string' || !/^\d{1,9}$/.test(pushback)) {
      this.#ctx.metrics.resilience.retriesSkipped.labels(this.#upstream.name, 'server-pushback').inc();
      return false;
    }
    this.#pushbackMs = Number(pushback);
    return true;
  }

  /** Tells outlier detection a gRPC call's outcome: server-side failures count, others are successes. */
  #judgeGrpc(handle: EndpointHandle, grpcStatus: number): void {
    if (isGrpcServerFailure(grpcStatus))
      this.#reportOutlier(handle, grpcStatus === 14 || grpcStatus === 4 ? 'gateway' : '5xx');
    else this.#upstream.outlier.onSuccess(handle);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#timers!.touch();
    if (this.#discarding || this.#headersOnly) return;
    const held = this.#held;
    if (held !== null) {
      held.chunks.push(chunk);
      held.bytes += chunk.length;
      // Past the replay limit the call is treated as streaming: hold no more.
      if (held.bytes > this.#policy.retry.bufferLimitBytes) {
        const unsendable = this.#release(controller);
        if (unsendable !== null) controller.abort(unsendable);
      }
      return;
    }
    // Both response kinds take a Buffer; their TypeScript overloads just do not unify.
    if (!(this.#res as Writable).write(chunk)) this.#pauseUntilDrain(controller);
  }

  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[] | undefined>,
  ): void {
    const handle = this.#handle!;
    if (this.#discarding) {
      this.#endAttempt();
      this.#scheduleRetry();
      return;
    }
    // A held response goes out whole now, its status included (a status in trailers is never retried).
    const unsendable = this.#release(null);
    this.#endAttempt();
    if (unsendable !== null) {
      this.onResponseError(controller, unsendable);
      return;
    }
    if (this.#peerRefused) {
      // A peer meshlet's refusal of the request as the caller's fault: nothing to the breaker either.
      if (!this.#headersOnly) endResponse(this.#res, trailers);
      this.#releaseBreaker();
      this.#complete(this.#status);
      return;
    }
    let success = this.#status < 500;
    if (success && !this.#grpc) this.#upstream.outlier.onSuccess(handle);
    if (this.#grpc && this.#status < 500) {
      // The trailers' status; none, after a head without one either: INTERNAL, as gRPC clients read it.
      const ended = grpcStatusAtEnd(trailers, this.#grpcStatus, this.#status);
      if (ended !== NO_GRPC_STATUS) {
        this.#grpcStatus = ended;
        this.#judgeGrpc(handle, ended);
      }
      if (this.#grpcStatus !== -1) success = !isGrpcServerFailure(this.#grpcStatus);
    }
    if (!this.#headersOnly) endResponse(this.#res, trailers);
    this.#settleBreaker(success);
    this.#complete(this.#status);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const handle = this.#handle;
    const upstream = this.#upstream;
    const discarding = this.#discarding;
    const held = this.#held;
    // A held response never reached the caller: the attempt failed like one that got no answer.
    this.#held = null;
    this.#endAttempt();
    if (this.#done) return;
    if (discarding) {
      // The response being dropped for a retry broke off: retry all the same.
      this.#scheduleRetry();
      return;
    }
    if (err instanceof RequestFaultError) {
      // The request's own fault (body too large): nothing is counted against the endpoint.
      this.#fail(err.answer);
      return;
    }
    const kind = classifyFailure(err, this.#requestStarted);
    if (kind === 'loop') {
      // The endpoint is meshlet's own listener, found once connected (nothing sent): its upstream set
      // it aside (forwarding-loop.ts). The request goes on as if it had never been picked: no
      // failure counted, no retry spent; another endpoint, else the fallback (nothing was sent
      // anywhere, #failover), else 503 no_healthy_endpoints.
      if (this.#body === null || Buffer.isBuffer(this.#body) || !this.#bodyTouched()) {
        this.#metLoop = true;
        this.#attempts--;
        this.#handle = undefined;
        this.#attempt();
      } else {
        // The body cannot be sent again: 503 no_healthy_endpoints. This attempt reached no endpoint.
        this.#settleRefusal(this.#attempts - this.#attemptsBefore - 1);
        this.#fail(errorForFailure(kind, err, upstream.name, handle?.endpoint.id ?? '?'));
      }
      return;
    }
    if (kind === 'timeout' && err instanceof AttemptTimeoutError && this.#uploading()) {
      // The client was still sending the body when the wait for the answer ran out: its slowness,
      // not the endpoint's (Envoy starts its timeouts once the request is complete). Not blamed.
      this.#fail(this.#uploadTimeout());
      return;
    }
    if (kind === 'local') {
      this.#fail(errorForFailure(kind, err, upstream.name, handle?.endpoint.id ?? '?'));
      return;
    }
    if (kind === 'exhausted') {
      // meshlet's own fd limit, not the endpoint's failure: no outlier count, no retry, and no breaker
      // outcome for this attempt (a retry's earlier attempt failed, and counts so).
      noteFdExhaustion(this.#ctx.logger, err, upstream.name);
      this.#settleRefusal(this.#attempts - this.#attemptsBefore - 1);
      this.#fail(errorForFailure(kind, err, upstream.name, handle?.endpoint.id ?? '?'));
      return;
    }
    if (kind !== 'connect') this.#onlyConnectFailures = false;
    const resetCode = this.#grpc && kind === 'reset' ? streamResetCode(err) : undefined;
    if (resetCode !== undefined && resetCode !== H2_REFUSED_STREAM && handle !== undefined) {
      this.#onStreamReset(handle, resetCode, held);
      return;
    }
    if (kind === 'timeout' && this.#cutByCaller && err instanceof AttemptTimeoutError) {
      // The caller's deadline cut the attempt before the endpoint had its per-try time: the caller
      // chose too short a wait, the endpoint is not blamed (no outlier count, nothing to the breaker).
      this.#ctx.metrics.resilience.attempts.labels(upstream.name, 'timeout').inc();
      this.#callerTimedOut = true;
    } else this.#recordFailure(kind, handle);
    if (this.#res.headersSent) {
      // The response already started: nothing can be retried. A gRPC caller gets the failure as the
      // call's status in trailers; any other client a cut body, never a hang (sendError).
      const failure = errorForFailure(kind, err, upstream.name, handle?.endpoint.id ?? '?');
      if (this.#grpc) this.#grpcStatus = GRPC_STATUS_OF[failure.code];
      sendError(this.#res, failure, undefined, undefined, this.#grpc);
      this.#settleBreaker(false);
      this.#complete(this.#status === 0 ? 502 : this.#status);
      return;
    }
    const outcome =
      kind === 'connect' ? OUTCOME_CONNECT : kind === 'timeout' ? OUTCOME_TIMEOUT : OUTCOME_RESET;
    if (kind !== 'aborted' && this.#mayRetry(outcome)) {
      this.#scheduleRetry();
      return;
    }
    if (kind === 'connect' && this.#failover()) return;
    const endpoint = handle === undefined ? '?' : handle.endpoint.id;
    this.#fail(errorForFailure(kind, err, upstream.name, endpoint));
  }

  /**
   * The endpoint reset a gRPC call's stream itself (RST_STREAM, not REFUSED_STREAM; its connection
   * is up): unlike a lost connection, it may have acted on the call. The call ends with the status
   * gRPC maps that reset to (grpc-status.ts: CANCEL → CANCELLED, most codes → INTERNAL), which its
   * caller would read from the endpoint directly, and is judged like that answer: retried only when
   * `retryOn` lists that status and nothing reached the caller (never by `unavailable`). What was
   * held goes out first; an HTTP/2 caller gets the status in trailers once the response started.
   */
  #onStreamReset(handle: EndpointHandle, code: number, held: HeldResponse | null): void {
    const grpcStatus = grpcStatusOfStreamReset(code);
    this.#ctx.metrics.resilience.attempts.labels(this.#upstream.name, 'reset').inc();
    this.#judgeGrpc(handle, grpcStatus);
    const res = this.#res;
    if (!res.headersSent && this.#mayRetry({ kind: 'response', status: 200, grpcStatus })) {
      this.#scheduleRetry();
      return;
    }
    this.#grpcStatus = grpcStatus;
    if (held !== null) {
      this.#held = held;
      this.#release(null);
    }
    const extra = ['x-request-id', this.#requestId, 'x-meshlet-attempts', String(this.#attempts)];
    if (endResetGrpcCall(res, handle.endpoint.id, code, grpcStatus, extra)) this.#status = 200;
    this.#settleBreaker(!isGrpcServerFailure(grpcStatus));
    this.#complete(this.#status === 0 ? 200 : this.#status);
  }

  /** The streamed body has arrived whole: the attempt's per-try timeout starts now, within the deadline. */
  #onUploaded = (): void => {
    const timers = this.#timers;
    if (this.#done || !this.#inflight || timers === null || !timers.awaitingHeaders) return;
    const remaining = this.#deadlineAt - performance.now();
    this.#cutByCaller = this.#callerDeadline && remaining < this.#policy.perTryTimeoutMs;
    timers.awaitHeaders(Math.max(1, Math.min(this.#policy.perTryTimeoutMs, remaining)));
  };

  /** Whether a streamed (non-gRPC) request body is still arriving from the client. */
  #uploading(): boolean {
    return !this.#grpc && this.#body !== null && !Buffer.isBuffer(this.#body) && !this.#req.complete;
  }

  /** The 408 for a body still arriving when the request timeout ran out (client's fault). */
  #uploadTimeout(): MeshletError {
    const ms = Math.round(this.#deadlineAt - this.#startedAt);
    const why = `request body not received within the request timeout (${ms} ms)`;
    return new MeshletError('request_timeout', why, this.#upstream.name);
  }

  /** Counts a failed attempt for metrics and outlier detection. */
  #recordFailure(kind: FailureKind, handle: EndpointHandle | undefined): void {
    const upstream = this.#upstream;
    const m = this.#ctx.metrics.resilience.attempts;
    if (kind === 'connect') {
      upstream.metrics.connectErrors.inc();
      m.labels(upstream.name, 'connect_failure').inc();
      if (handle !== undefined) this.#reportOutlier(handle, 'connect');
    } else if (kind === 'timeout' || kind === 'reset') {
      m.labels(upstream.name, kind).inc();
      if (handle !== undefined) this.#reportOutlier(handle, 'gateway');
    }
  }

  /** Tells outlier detection about a failed attempt, counting an ejection it causes. */
  #reportOutlier(handle: EndpointHandle, kind: OutlierFailureKind): void {
    if (this.#upstream.outlier.onFailure(handle, kind)) {
      this.#ctx.metrics.resilience.ejections.labels(this.#upstream.name, kind).inc();
    }
  }

  /**
   * Whether the failed attempt may be retried: the retry policy (condition, idempotency, replayable
   * body, attempts), then the deadline, the active-retries limit and the retry budget. Counts why not.
   * A lost connection (connect failure, refused stream, a reset before any answer: the attempt never
   * reached the app, or the endpoint went away under it) is retried whatever the active-retries
   * limit says, within the budget: a dying endpoint drops every request it holds at once, and
   * moving them elsewhere adds no load. Retries of answers (5xx, listed statuses) and per-try
   * timeouts, which do load endpoints that are up, take a slot of `maxRetries` plus one endpoint's
   * share of the requests in flight, so one endpoint's requests can fail over together.
   */
  #mayRetry(outcome: AttemptOutcome): boolean {
    const req = this.#req;
    // Built on the first failure only: most requests never need it.
    const ctx = (this.#retry ??= {
      outcome: OUTCOME_RESET,
      method: req.method ?? 'GET',
      // A gRPC call is replayed like an idempotent request (see README: gRPC retries).
      hasIdempotencyKey: this.#grpc || req.headers[IDEMPOTENCY_KEY_HEADER] !== undefined,
      requestSent: false,
      responseStarted: false,
      bodyReplayable: this.#bodyReplayable,
      attempt: 0,
      maxAttempts: this.#policy.retry.attempts,
      retryOn: this.#policy.retry.retryOn,
    });
    const upstream = this.#upstream;
    const r = this.#ctx.metrics.resilience;
    if (this.#teed !== null) {
      const whole = this.#teed.replay();
      if (whole !== null) {
        this.#body = whole;
        this.#bodyReplayable = true;
        this.#teed = null;
      }
    }
    ctx.bodyReplayable = this.#bodyReplayable;
    ctx.outcome = outcome;
    ctx.attempt = this.#attempts;
    ctx.requestSent =
      this.#requestStarted || (this.#body !== null && !Buffer.isBuffer(this.#body) && this.#bodyTouched());
    ctx.responseStarted = this.#res.headersSent;
    const decision = shouldRetry(ctx);
    if (!decision.retry) {
      if (decision.why !== 'not-retriable' && decision.why !== 'response-started') {
        r.retriesSkipped.labels(upstream.name, decision.why).inc();
      }
      return false;
    }
    // The retry must still start with its least budget after the wait: the backoff's base, or what
    // the endpoint asked for (Retry-After up to retryAfterMax, gRPC pushback). Else the caller gets
    // the endpoint's answer now (its Retry-After included), not a 504 once the deadline ran out.
    const wait = Math.max(this.#policy.retry.backoffBaseMs, this.#askedWaitMs());
    if (performance.now() + wait + MIN_ATTEMPT_BUDGET_MS > this.#deadlineAt) {
      r.retriesSkipped.labels(upstream.name, 'deadline').inc();
      return false;
    }
    const connectionLost = outcome.kind !== 'response' && outcome.kind !== 'timeout';
    let tookSlot = false;
    if (!connectionLost && !this.#holdsRetry) {
      const limits = upstream.limits;
      const share = Math.ceil(limits.activeRequests / Math.max(1, upstream.endpoints.length));
      if (!limits.tryAcquireRetry(share)) {
        r.overflows.labels(upstream.name, 'retry').inc();
        r.retriesSkipped.labels(upstream.name, 'retry-limit').inc();
        return false;
      }
      this.#holdsRetry = true;
      tookSlot = true;
    }
    if (!upstream.budget(this.#policy.retry).tryRetry()) {
      // No retry after all: the slot just taken goes back at once, not when the answer has streamed.
      if (tookSlot) {
        this.#holdsRetry = false;
        upstream.limits.releaseRetry();
      }
      r.retriesSkipped.labels(upstream.name, 'budget-exhausted').inc();
      return false;
    }
    r.retries.labels(upstream.name, decision.reason).inc();
    return true;
  }

  /** Whether a streamed body was already read from (then it cannot be sent again). */
  #bodyTouched(): boolean {
    const req = this.#req;
    return req.destroyed || req.readableDidRead;
  }

  /**
   * The wait the endpoint asked for before a retry, ms: its gRPC pushback, else its `Retry-After`
   * (at most `retryAfterMax`), else 0.
   */
  #askedWaitMs(): number {
    if (this.#pushbackMs !== undefined) return this.#pushbackMs;
    if (this.#retryAfter === undefined) return 0;
    return retryAfterMs(this.#retryAfter, Date.now(), this.#policy.retry.retryAfterMaxMs) ?? 0;
  }

  #scheduleRetry(): void {
    const retry = this.#policy.retry;
    const asked = this.#askedWaitMs();
    let delay =
      this.#pushbackMs !== undefined
        ? asked
        : Math.max(this.#upstream.backoff(retry).delay(this.#attempts), asked);
    // The attempt keeps its least budget: a jittered backoff never eats the deadline down to a 504.
    delay = Math.min(delay, this.#deadlineAt - performance.now() - MIN_ATTEMPT_BUDGET_MS);
    setTimeout(() => this.#attempt(), timerDelay(delay)).unref();
  }

  /** Ends the current attempt's claims (endpoint in-flight count, pending slot); once per attempt. */
  #endAttempt(): void {
    this.#clearTimer();
    this.#timers?.stop();
    this.#releasePending();
    if (!this.#inflight) return;
    this.#inflight = false;
    this.#controller = null;
    this.#handle!.active--;
  }

  #releasePending(): void {
    if (!this.#pending) return;
    this.#pending = false;
    this.#upstream.limits.releasePending();
  }

  /** Gives the breaker's admission back without an outcome (see UpstreamBreaker.release). */
  #releaseBreaker(): void {
    const admission = this.#admission;
    if (admission === REFUSED) return;
    this.#admission = REFUSED;
    this.#upstream.breaker?.release(admission);
  }

  #settleBreaker(success: boolean): void {
    const admission = this.#admission;
    if (admission === REFUSED) return;
    this.#admission = REFUSED;
    this.#upstream.breaker?.settle(admission, success);
  }

  /**
   * meshlet ends the request with its own refusal (no endpoint left, a full limit, a forwarding loop,
   * its own file descriptors): no outcome for the breaker when no attempt was made on this upstream
   * (not a success diluting the endpoint's failures, nor a half-open trial's success); else the
   * failed attempt before the refusal (what a retry was for) counts as a failure.
   * @param made - attempts made on the current upstream before the refusal (a fallback's exclude the primary's).
   */
  #settleRefusal(made: number): void {
    if (made === 0) this.#releaseBreaker();
    else this.#settleBreaker(false);
  }

  /**
   * A resource limit is full: count the overflow and answer 503 `overloaded`; nothing goes upstream.
   * meshlet's own refusal is no outcome for the breaker (not a success diluting the endpoint's
   * failures); a retry refused so ends a request whose earlier attempt failed, and counts that.
   */
  #overflow(limit: 'pending', why: string): void {
    const name = this.#upstream.name;
    this.#ctx.metrics.resilience.overflows.labels(name, limit).inc();
    this.#settleRefusal(this.#attempts - this.#attemptsBefore);
    this.#fail(new MeshletError('overloaded', `upstream "${name}" ${why}`, name));
  }

  /**
   * Answers with meshlet's own error and finishes. A refusal for the request's own fault tells the
   * breaker nothing; meshlet's own refusals (`no_healthy_endpoints`, `overloaded`) settle it first
   * (#settleRefusal), so they never reach the success below.
   */
  #fail(err: MeshletError): void {
    if (this.#done) return;
    this.#upstream.metrics.localReply(err.code);
    if (CLIENT_FAULT.has(err.code) || (err.code === 'upstream_timeout' && this.#callerTimedOut))
      this.#releaseBreaker();
    else this.#settleBreaker(err.code !== 'upstream_timeout' && err.code !== 'upstream_unreachable');
    sendError(this.#res, err, this.#requestId, this.#attempts, this.#grpc);
    this.#complete(err.status, err);
  }

  /**
   * The listener could not parse the request body (it answers 400 and closes the connection): the
   * exchange ends as `bad_request`, its one access line; an attempt under way is cancelled and the
   * endpoint is not blamed. After the exchange ended, the refusal is part of the line already written.
   */
  #onBodyRefused = (refusal: MeshletError): void => {
    if (this.#done) return;
    const err = new MeshletError(refusal.code, refusal.message, this.#upstream.name);
    const controller = this.#controller;
    this.#upstream.metrics.localReply(err.code);
    this.#releaseBreaker();
    this.#complete(err.status, err);
    controller?.abort(new RequestFaultError(err));
  };

  #onClientClose = (): void => {
    if (this.#done) return;
    // The caller left: that says nothing about the upstream, so the breaker records nothing. A
    // half-open trial frees its slot (the next request is the trial); counted as a success, a trial
    // whose caller gave up on a hanging endpoint closed an open breaker.
    this.#releaseBreaker();
    this.#complete(CLIENT_CLOSED);
    // After #complete: aborting calls onResponseError at once, which must find the exchange done
    // (the client's leaving is not the endpoint's failure), not classify the abort as a reset.
    this.#controller?.abort(new Error('client closed the connection'));
  };

  #complete(status: number, err?: MeshletError): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    this.#clearBodyDeadline();
    this.#timers?.stop();
    const upstream = this.#upstream;
    if (this.#holdsRequest) upstream.limits.releaseRequest();
    if (this.#holdsRetry) upstream.limits.releaseRetry();
    const seconds = (performance.now() - (this.#edge?.receivedAt ?? this.#startedAt)) / 1000;
    if (this.#admitted) upstream.metrics.active--;
    upstream.metrics.finished(status, seconds);
    let grpcStatus: number | undefined;
    if (this.#grpc) {
      grpcStatus = grpcStatusOfCall(this.#grpcStatus, status, err);
      upstream.metrics.grpcFinished(grpcStatus);
    }
    this.#ctx.access.outbound(
      this.#requestId,
      this.#req.method,
      this.#path,
      upstream.name,
      this.#handle?.endpoint.id ?? null,
      status,
      this.#attempts,
      Math.round(seconds * 1e6) / 1e3,
      err?.code,
      grpcStatus,
      this.#edge?.principal,
    );
  }
}
