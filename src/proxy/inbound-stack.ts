// The inbound request path in one screen: verified peer → authorize → concurrency and rate limits → local app.
import type { AnyRequestListener } from '../listener/http-listener.ts';
import { type AccessLog, elapsedMs } from '../telemetry/access-log.ts';
import { sendError } from '../errors/error-response.ts';
import { GRPC_STATUS_OF, isGrpcRequest } from '../errors/grpc-status.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import {
  inboundPeerOf,
  type InboundPeer,
  type InboundRefusalListener,
} from '../listener/inbound-listener.ts';
import type { KeyedTokenBuckets } from '../resilience/token-bucket.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { UpstreamMetrics } from '../telemetry/metrics.ts';
import type { AuthzRefusalReason, TlsMetrics } from '../telemetry/tls-metrics.ts';
import { authorityRefusal } from '../route/authority.ts';
import { isAllowed } from '../tls/identity.ts';
import { RefusalLog } from '../tls/refusal-log.ts';
import type { AuthorizeResult } from '../tls/tls-source.ts';
import { incomingDeadlineMs, MIN_ATTEMPT_BUDGET_MS, TIMEOUT_HEADER } from './deadline.ts';
import { methodRefusal, targetRefusal } from './request-target.ts';
import { type ForwardedRequestHeaders, forwardRequestHeaders } from './headers.ts';
import type { EndpointPool } from '../upstream/upstream.ts';
import { authorityOf, type DownstreamRequest, type DownstreamResponse, isH2 } from './downstream.ts';
import { InboundForward } from './inbound-forward.ts';

/** The header carrying the caller's service name to the local app. */
export const PEER_IDENTITY_HEADER = 'x-meshlet-peer-identity';
/** The header carrying the caller's full SPIFFE ID to the local app. */
export const PEER_SPIFFE_ID_HEADER = 'x-meshlet-peer-spiffe-id';
/** Identity headers only meshlet may set: a copy arriving from the peer is removed. */
const DROP_INCOMING = new Set([PEER_IDENTITY_HEADER, PEER_SPIFFE_ID_HEADER]);

/** What the inbound path shares across requests. */
export interface InboundContext {
  readonly logger: Logger;
  /** Writes the `access` lines (on the logger's stream); holds the `accessLog` settings. */
  readonly access: AccessLog;
  readonly tlsMetrics: TlsMetrics;
  /** Request metrics, direction `inbound`, upstream = this instance's service. */
  readonly metrics: UpstreamMetrics;
  /** This instance's service name (the local app). */
  readonly service: string;
  /** Connections to the local app on 127.0.0.1:<service.port>: a keep-alive pool, or one h2c session when it speaks HTTP/2 or gRPC. */
  readonly app: EndpointPool;
  /** `listeners.inbound.allow`: service names or SPIFFE IDs, or `'*'`. Used when `authorize` is absent. */
  allow: readonly string[] | '*';
  /** Consul intentions, when the certificate source provides them; replaces `allow`. */
  readonly authorize?: ((peer: InboundPeer) => Promise<AuthorizeResult>) | undefined;
  /** Most inbound requests and tunnels in flight together; more get 503 `overloaded`. */
  maxConcurrent: number;
  /** Inbound requests and tunnels in flight now (what {@link admitInbound} holds to `maxConcurrent`). */
  active: number;
  /** Per-caller token buckets (keyed by service), or null for no rate limit. */
  rateLimit: KeyedTokenBuckets | null;
  /** Longest wait for the local app's response headers, ms (a smaller `x-meshlet-timeout-ms` wins). */
  appTimeoutMs: number;
  /** Longest gap between response body chunks from the local app, ms. */
  readonly idleTimeoutMs: number;
  /** Whether the daemon is draining. */
  draining: boolean;
}

/** Builds the inbound listener's request handler. */
export function inboundHandler(ctx: InboundContext): AnyRequestListener {
  return function inbound(req: DownstreamRequest, res: DownstreamResponse) {
    const peer = inboundPeerOf(req);
    if (peer === undefined) {
      req.destroy();
      return;
    }
    const grpc = isGrpcRequest(req.headers['content-type']);
    const startedAt = performance.now();
    const caller = peer.identity.service;
    /** The request-header pass's result once it ran (refusals before it run it for their request id). */
    let forwarded: ForwardedRequestHeaders | undefined;
    /**
     * Answers meshlet's refusal, with a forwarded request's line (request id, path, upstream: this
     * instance's service, as the metric label, durationMs) and the request id forwarding would have
     * sent the app (the caller's `x-request-id` unless `Connection` drops it, else a new UUID; the
     * same pass, {@link forwardRequestHeaders}) echoed in `x-request-id`; `count` is the
     * `meshlet_inbound_denied_total` reason (authorizePeer counts `forbidden`).
     */
    const refuse = (err: MeshletError, count?: 'bad_request' | 'overloaded' | 'rate_limited'): void => {
      if (count !== undefined) ctx.tlsMetrics.deny(caller, count);
      const requestId = (forwarded ?? forwardRequestHeaders(req, 'https', DROP_INCOMING)).requestId;
      const durationMs = elapsedMs(startedAt);
      const grpcStatus = grpc ? GRPC_STATUS_OF[err.code] : undefined;
      ctx.metrics.localReply(err.code);
      ctx.metrics.finished(err.status, durationMs / 1000);
      if (grpcStatus !== undefined) ctx.metrics.grpcFinished(grpcStatus);
      ctx.access.inbound(
        requestId,
        peer.identity.uri,
        peer.serial,
        req.method,
        req.url,
        ctx.service,
        err.status,
        durationMs,
        err.code,
        grpcStatus,
      );
      req.resume();
      sendError(res, err, requestId, undefined, grpc);
    };
    const proceed = (decision: AuthorizeResult): void => {
      if (!decision.allowed) {
        refuse(
          new MeshletError('forbidden', `caller ${peer.identity.uri} is not allowed: ${decision.reason}`),
        );
        return;
      }
      // Over HTTP/1.1 node:http refuses an unknown method itself; over HTTP/2 meshlet does the same
      // (and inboundTarget refuses a target the outbound listener would, over either protocol).
      const badMethod = methodRefusal(req.method);
      if (badMethod !== null) {
        refuse(badMethod, 'bad_request');
        return;
      }
      const path = inboundTarget(req);
      if (path instanceof MeshletError) {
        refuse(path, 'bad_request');
        return;
      }
      forwarded = forwardRequestHeaders(req, 'https', DROP_INCOMING);
      if (forwarded.invalid !== null) {
        refuse(new MeshletError('bad_request', forwarded.invalid), 'bad_request');
        return;
      }
      const incoming = incomingDeadlineMs(req.headers[TIMEOUT_HEADER], req.headers['grpc-timeout']);
      // Below the least attempt budget the local app is never called (504 upstream_timeout at once).
      if (incoming !== undefined && incoming < MIN_ATTEMPT_BUDGET_MS) {
        const why = `the caller's deadline of ${incoming} ms leaves the local app no time`;
        refuse(new MeshletError('upstream_timeout', why, ctx.service));
        return;
      }
      const limited = admitInbound(ctx, caller);
      if (limited !== null) {
        refuse(limited.err, limited.count);
        return;
      }
      ctx.tlsMetrics.inboundActive.inc();
      const timeout = incoming === undefined ? ctx.appTimeoutMs : Math.min(incoming, ctx.appTimeoutMs);
      forward(ctx, req, res, peer, path, forwarded, grpc, startedAt, timeout, () => {
        ctx.active--;
        ctx.tlsMetrics.inboundActive.dec();
      });
    };
    authorizePeer(ctx, peer, req.httpVersionMajor === 2 ? 'http2' : 'http1', proceed);
  };
}

/**
 * The target to send the local app, in origin form, or the `400 bad_request` to answer: a target
 * holding a byte outside visible ASCII or a `#` fragment ({@link targetRefusal}, as the outbound and
 * gateway listeners refuse it; over HTTP/2 node:http2 hands bytes 0x80–0xFF and `#` over) and a Host
 * that is not an authority ({@link authorityRefusal}) are refused; an HTTP/1.1 absolute-form target
 * (`GET http://orders/p`) goes on as `/p` with the URL's authority as its only `Host`, as RFC 9112
 * §3.2.2 has a server read it and as the outbound listener does, so the app reads the name meshlet
 * authorized and logged, not a `Host` that says otherwise. Rewrites the raw header list in place.
 * An HTTP/2 `:path` needs no rewriting: node:http2 resets (PROTOCOL_ERROR) a stream whose `:path`
 * is not origin form or an OPTIONS `*` (RFC 9113 §8.3.1), or holds a control or a space, before any
 * handler sees it.
 */
export function inboundTarget(req: DownstreamRequest): string | MeshletError {
  const url = req.url ?? '/';
  const badTarget = targetRefusal(url);
  if (badTarget !== null) return badTarget;
  const hostRefused = authorityRefusal(authorityOf(req));
  if (hostRefused !== null) return hostRefused;
  if (url.charCodeAt(0) === 47 /* / */ || url === '*' || isH2(req)) return url;
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?]*)(.*)$/.exec(url);
  const authority = m?.[1] ?? '';
  if (m === null || authority === '')
    return new MeshletError('bad_request', `malformed request target "${url.slice(0, 200)}"`);
  const refused = authorityRefusal(authority);
  if (refused !== null) return refused;
  const rest = m[2]!;
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) if (raw[i]!.toLowerCase() === 'host') raw.splice(i, 2);
  raw.push('Host', authority);
  req.headers.host = authority;
  return rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
}

/** A refusal by the inbound listener's limits, with its `meshlet_inbound_denied_total` reason. */
export interface LimitRefusal {
  readonly err: MeshletError;
  readonly count: 'overloaded' | 'rate_limited';
}

/**
 * Admits one inbound request or tunnel from `caller` (an authorized peer's service) under
 * `listeners.inbound.maxConcurrent` — requests and tunnels in flight together, as Envoy counts an
 * upgraded stream as an active request for its whole life — then the caller's token bucket. null:
 * admitted, and the caller holds a slot (`ctx.active` counts it; decrement when the request or
 * tunnel ends). Else the refusal to answer: `503 overloaded` or `429 rate_limited`.
 */
export function admitInbound(ctx: InboundContext, caller: string): LimitRefusal | null {
  if (ctx.active >= ctx.maxConcurrent) {
    const err = new MeshletError(
      'overloaded',
      `inbound listener is at its limit of ${ctx.maxConcurrent} requests and tunnels`,
    );
    return { err, count: 'overloaded' };
  }
  const rate = ctx.rateLimit;
  if (rate !== null && !rate.tryTake(caller)) {
    const waitMs = rate.retryAfterMs(caller);
    const retryAfterS = Number.isFinite(waitMs) ? waitMs / 1000 : 60;
    const err = new MeshletError(
      'rate_limited',
      `caller "${caller}" is over its rate limit`,
      undefined,
      retryAfterS,
    );
    return { err, count: 'rate_limited' };
  }
  ctx.active++;
  return null;
}

/** What a caller's refusals are logged as (`inbound caller refused`), per inbound context. */
const callerRefusals = new WeakMap<InboundContext, RefusalLog>();

/**
 * Decides whether `peer` may call this instance — the allow-list, or Consul intentions when the
 * certificate source provides them (an unavailable answer refuses) — and tells `proceed`
 * (synchronously for the allow-list). A refusal is counted
 * (`meshlet_inbound_denied_total{reason="forbidden",authz}`) and logged at warn as `inbound caller
 * refused` with the caller's SPIFFE ID, peer address and serial, `reason` (the `authz` label), the
 * `rule` that decided and `via` (`http1`, `http2`, or the tunnel kind): once per caller and reason
 * every 10 minutes, the next line saying how many were `suppressed`. The caller must then answer
 * `403 forbidden`; nothing reaches the local app.
 */
export function authorizePeer(
  ctx: InboundContext,
  peer: InboundPeer,
  via: string,
  proceed: (decision: AuthorizeResult) => void,
): void {
  const decide = (decision: AuthorizeResult, why: AuthzRefusalReason): void => {
    if (!decision.allowed) refusedCaller(ctx, peer, via, why, decision.reason);
    proceed(decision);
  };
  if (ctx.authorize === undefined) {
    decide(
      isAllowed(peer.identity, ctx.allow)
        ? { allowed: true, reason: 'allow-list' }
        : { allowed: false, reason: 'not in listeners.inbound.allow' },
      'not_allowed',
    );
    return;
  }
  ctx.authorize(peer).then(
    (decision) => decide(decision, 'intention_denied'),
    (err: Error) =>
      decide(
        { allowed: false, reason: `authorization unavailable (${err.message})` },
        'authorization_unavailable',
      ),
  );
}

/** Counts and (once per caller and reason per window) logs a caller authorization refused. */
function refusedCaller(
  ctx: InboundContext,
  peer: InboundPeer,
  via: string,
  why: AuthzRefusalReason,
  rule: string,
): void {
  ctx.tlsMetrics.deny(peer.identity.service, 'forbidden', why);
  let log = callerRefusals.get(ctx);
  if (log === undefined) {
    log = new RefusalLog(ctx.logger, { msg: 'inbound caller refused' });
    callerRefusals.set(ctx, log);
  }
  log.record(`${peer.identity.uri} ${why}`, {
    caller: peer.identity.uri,
    peer: peer.address ?? 'unknown',
    peerSerial: peer.serial,
    reason: why,
    rule,
    via,
  });
}

/**
 * What the inbound listener calls for a request it answered itself: counted as a local reply of
 * the inbound direction (a `bad_request` also in `meshlet_inbound_denied_total`) and logged with
 * the peer's identity ("unknown" in the rare case the listener could not tell it). One whose head
 * was parsed (too many header fields, no Host, another HTTP version; over HTTP/2 a header block
 * too large or a Host naming another authority) has the line of a handler's refusal: the request
 * id forwarding would have sent the app (the same pass, {@link forwardRequestHeaders}), returned
 * for the answer to echo, its path, this instance's service and its duration. One whose head was
 * never parsed (a malformed or slow head, one over `maxHeaderSize`) has no `requestId`, `path` or
 * `durationMs` (no id was kept or echoed; when the head began to arrive is not known, so its
 * duration is observed as 0 s).
 */
export function inboundRefusals(ctx: InboundContext): InboundRefusalListener {
  return (err, method, peer, refused) => {
    if (peer !== undefined && err.code === 'bad_request')
      ctx.tlsMetrics.deny(peer.identity.service, 'bad_request');
    ctx.metrics.localReply(err.code);
    const requestId =
      refused === undefined
        ? undefined
        : forwardRequestHeaders(refused.req, 'https', DROP_INCOMING).requestId;
    const durationMs = refused === undefined ? undefined : elapsedMs(refused.startedAt);
    const grpcStatus = refused?.grpc === true ? GRPC_STATUS_OF[err.code] : undefined;
    ctx.metrics.finished(err.status, (durationMs ?? 0) / 1000);
    if (grpcStatus !== undefined) ctx.metrics.grpcFinished(grpcStatus);
    ctx.access.inbound(
      requestId,
      peer?.identity.uri ?? 'unknown',
      peer?.serial ?? 'unknown',
      method,
      refused?.req.url,
      refused === undefined ? undefined : ctx.service,
      err.status,
      durationMs,
      err.code,
      grpcStatus,
    );
    return requestId;
  };
}

/** Sends an authorized request to the local app (at `path`) with the caller's identity attached; `timeout` bounds the wait for its headers, ms. */
function forward(
  ctx: InboundContext,
  req: DownstreamRequest,
  res: DownstreamResponse,
  peer: InboundPeer,
  path: string,
  forwarded: ForwardedRequestHeaders,
  grpc: boolean,
  startedAt: number,
  timeout: number,
  release: () => void,
): void {
  const headers = forwarded.headers;
  headers.push(PEER_IDENTITY_HEADER, peer.identity.service, PEER_SPIFFE_ID_HEADER, peer.identity.uri);
  ctx.metrics.active++;
  if (ctx.draining && !('stream' in res)) res.setHeader('connection', 'close');
  new InboundForward(
    req,
    res,
    ctx.service,
    forwarded.requestId,
    grpc,
    ctx.logger,
    (status, err, grpcStatus) => {
      release();
      const seconds = (performance.now() - startedAt) / 1000;
      ctx.metrics.active--;
      ctx.metrics.finished(status, seconds);
      if (grpcStatus !== undefined) ctx.metrics.grpcFinished(grpcStatus);
      if (err !== undefined) ctx.metrics.localReply(err.code);
      ctx.access.inbound(
        forwarded.requestId,
        peer.identity.uri,
        peer.serial,
        req.method,
        req.url,
        ctx.service,
        status,
        Math.round(seconds * 1e6) / 1e3,
        err?.code,
        grpcStatus,
      );
    },
  ).start(ctx.app, path, headers, timeout, ctx.idleTimeoutMs);
}
