// The outbound request path in one screen: parse the target → route → upstream → exchange (balance, forward).
import { sendError } from '../errors/error-response.ts';
import { GRPC_STATUS_OF, isGrpcRequest } from '../errors/grpc-status.ts';
import type { AnyRequestListener, RefusalListener } from '../listener/http-listener.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import { authorityRefusal } from '../route/authority.ts';
import { normalizePath } from '../route/path-normalize.ts';
import { pathRefused, type RouteTarget, type Router } from '../route/router.ts';
import { type AccessPrincipal, elapsedMs } from '../telemetry/access-log.ts';
import type { Upstream } from '../upstream/upstream.ts';
import { authorityOf, type DownstreamRequest, type DownstreamResponse, isH2 } from './downstream.ts';
import { Exchange } from './exchange.ts';
import { forwardRequestHeaders } from './headers.ts';
import type { ProxyContext } from './proxy-context.ts';
import { methodRefusal, targetRefusal } from './request-target.ts';

/** Splits an absolute-form target (`http://users/v1/42`) into authority and path; null if malformed. */
function splitAbsoluteForm(url: string): { authority: string; path: string } | null {
  const scheme = url.indexOf('://');
  if (scheme <= 0) return null;
  const start = scheme + 3;
  let end = url.indexOf('/', start);
  const query = url.indexOf('?', start);
  if (query !== -1 && (end === -1 || query < end)) end = query;
  const authority = end === -1 ? url.slice(start) : url.slice(start, end);
  const at = authority.lastIndexOf('@');
  const host = at === -1 ? authority : authority.slice(at + 1);
  if (host === '') return null;
  const rest = end === -1 ? '/' : url.slice(end);
  return { authority: host, path: rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest };
}

/**
 * Makes an absolute-form request's `Host` the target's authority, as RFC 9112 §3.2.2 has a server
 * read it (and Envoy rewrites it): meshlet routed by the URL, so the endpoint must see the same name,
 * not a `Host` that says otherwise. Rare (HTTP_PROXY clients): rewrites the raw header list in place.
 */
function hostFromTarget(req: DownstreamRequest, authority: string): void {
  const raw = req.rawHeaders;
  let set = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'host') continue;
    if (set) {
      raw.splice(i, 2);
      i -= 2;
    } else {
      raw[i + 1] = authority;
      set = true;
    }
  }
  if (!set) raw.push('Host', authority);
  req.headers.host = authority;
}

/** What a handler's refusal line says besides the request's own method and target. */
export interface RefusalLine {
  /** `performance.now()` when the handler got the request. */
  readonly startedAt: number;
  /** Names the request-header pass drops (the gateway's `drop`), so its request id is the one forwarding would keep. */
  readonly drop: ReadonlySet<string> | null;
  /** The path as the line of a forwarded request would show it; default the target as received. */
  readonly path?: string | undefined;
  /**
   * The configured upstream a gateway route named; default `""`, as the metric label (an outbound
   * refusal chose none: the name a Host asked for is the caller's, and is in the answer's body).
   */
  readonly upstream?: string | undefined;
  /** Who called, when the gateway authenticated the caller before refusing. */
  readonly principal?: AccessPrincipal | undefined;
  /** Whether the answer is a gRPC one (its line has `grpcStatus`); default: as the content-type says. */
  readonly grpc?: boolean | undefined;
}

/**
 * Counts and logs a request a handler refused before any endpoint is involved (metric label
 * upstream "", nothing told to any endpoint) and returns its request id for the answer to echo: the
 * one forwarding would have sent (the client's `x-request-id` unless `line.drop` or `Connection`
 * removes it, else a new UUID), chosen by the same pass ({@link forwardRequestHeaders}), run for
 * refusals only. The line is a forwarded request's (endpoint null, attempts 0; a gRPC call's
 * `grpcStatus` is the one its answer carries).
 */
export function countRefused(
  ctx: ProxyContext,
  req: DownstreamRequest,
  err: MeshletError,
  line: RefusalLine,
): string {
  const requestId = forwardRequestHeaders(req, 'http', line.drop).requestId;
  const grpc = line.grpc ?? isGrpcRequest(req.headers['content-type']);
  const durationMs = elapsedMs(line.startedAt);
  ctx.unrouted.localReply(err.code);
  ctx.unrouted.finished(err.status, durationMs / 1000);
  ctx.access.outbound(
    requestId,
    req.method,
    line.path ?? req.url ?? '/',
    line.upstream ?? '',
    null,
    err.status,
    0,
    durationMs,
    err.code,
    grpc ? GRPC_STATUS_OF[err.code] : undefined,
    line.principal,
  );
  return requestId;
}

/** A drop list that removes the client's `x-request-id`: the pass then generates one. */
const NEW_REQUEST_ID: ReadonlySet<string> = new Set(['x-request-id']);

/**
 * What an outbound, per-upstream or gateway listener calls for a request it answered itself. One
 * whose head was parsed (too many header fields, no Host, another HTTP version, CONNECT where no
 * tunnel opens; over HTTP/2 a header block too large or a Host naming another authority) is
 * counted and logged as a handler's refusal ({@link countRefused}: its request id is the one the
 * forwarding pass would keep under `drop()`, returned for the answer to echo; an HTTP/1.1
 * CONNECT's is always new, as the tunnel it would open forwards no header). One whose head was
 * never parsed (a malformed or slow head) is logged with what the listener knows
 * (`AccessLog.refused`: no request id, path or duration) and echoes no id.
 * @param drop the request-header pass's extra names to remove (the gateway's); default none.
 */
export function listenerRefusals(
  ctx: ProxyContext,
  drop: () => ReadonlySet<string> | null = () => null,
): RefusalListener {
  return (err, method, _socket, refused) => {
    if (refused !== undefined) {
      const { req, startedAt, grpc } = refused;
      const connect = req.method === 'CONNECT' && req.httpVersionMajor === 1;
      return countRefused(ctx, req, err, { startedAt, grpc, drop: connect ? NEW_REQUEST_ID : drop() });
    }
    ctx.unrouted.localReply(err.code);
    // When the head began to arrive is not known here (a slow head waited out headersTimeout).
    ctx.unrouted.finished(err.status, 0);
    ctx.access.refused(method, err.status, err.code);
    return undefined;
  };
}

/** Answers a request meshlet refuses before any upstream is involved; `startedAt` as {@link RefusalLine}'s. */
function refuse(
  ctx: ProxyContext,
  req: DownstreamRequest,
  res: DownstreamResponse,
  err: MeshletError,
  startedAt: number,
): void {
  const requestId = countRefused(ctx, req, err, { startedAt, drop: null });
  sendError(res, err, requestId, undefined, isGrpcRequest(req.headers['content-type']));
}

/** Answers 405 to an HTTP/2 `CONNECT` (HTTP/1.1's never reaches a handler: the listener answers it). */
function refuseConnect(
  ctx: ProxyContext,
  req: DownstreamRequest,
  res: DownstreamResponse,
  startedAt: number,
): void {
  refuse(
    ctx,
    req,
    res,
    new MeshletError('method_not_allowed', 'CONNECT tunnels are not supported by meshlet'),
    startedAt,
  );
}

/** A malformed request target (neither a path nor an absolute URL). */
function badTarget(target: string): MeshletError {
  return new MeshletError('bad_request', `malformed request target "${target.slice(0, 200)}"`);
}

/**
 * Where an outbound-listener request goes: the destination is named by the absolute-form URL
 * (`HTTP_PROXY`), a route (path prefix, authority, headers), or the Host header; the router matches
 * the normalised path (route/path-normalize.ts). A refusal comes back as the MeshletError to answer.
 * An absolute-form request's `Host` becomes the URL's authority (see hostFromTarget); a Host that is
 * not an authority is `400 bad_request` (route/authority.ts).
 */
export function routeOutbound(router: Router, req: DownstreamRequest): RouteTarget | MeshletError {
  const url = req.url ?? '/';
  const badHost = authorityRefusal(authorityOf(req));
  if (badHost !== null) return badHost;
  let authority: string;
  let path: string;
  if (url.charCodeAt(0) === 47 /* / */) {
    authority = authorityOf(req);
    path = url;
  } else {
    const parts = splitAbsoluteForm(url);
    if (parts === null) return badTarget(url);
    authority = parts.authority;
    path = parts.path;
    if (!isH2(req)) hostFromTarget(req, authority);
  }
  try {
    return router.resolve(authority, path, req.headers);
  } catch (err) {
    if (err instanceof MeshletError) return err;
    throw err;
  }
}

/**
 * Where a per-upstream listener's request goes: always `upstream`, whatever it names, with its path
 * normalised as a route's would be.
 */
export function routePerUpstream(upstream: Upstream, req: DownstreamRequest): RouteTarget | MeshletError {
  const badHost = authorityRefusal(authorityOf(req));
  if (badHost !== null) return badHost;
  let path = req.url ?? '/';
  if (path.charCodeAt(0) !== 47) {
    const parts = splitAbsoluteForm(path);
    if (parts === null) return badTarget(path);
    path = parts.path;
  }
  const normalized = normalizePath(path);
  if (typeof normalized !== 'string') return pathRefused(normalized, upstream.name);
  return { upstream, path: normalized, policy: upstream.settings.policy };
}

/**
 * The outbound listener's handler (see {@link routeOutbound}). `router` is read through a getter
 * so that a config reload swaps it atomically.
 */
export function outboundHandler(ctx: ProxyContext, router: () => Router): AnyRequestListener {
  return function outbound(req, res) {
    const startedAt = performance.now();
    if (req.method === 'CONNECT') return refuseConnect(ctx, req, res, startedAt);
    const invalid = methodRefusal(req.method) ?? targetRefusal(req.url ?? '/');
    if (invalid !== null) return refuse(ctx, req, res, invalid, startedAt);
    const target = routeOutbound(router(), req);
    if (target instanceof MeshletError) return refuse(ctx, req, res, target, startedAt);
    new Exchange(ctx, req, res, target.upstream, target.path, target.policy).start();
  };
}

/** The handler of a per-upstream listener (see {@link routePerUpstream}). */
export function upstreamListenerHandler(ctx: ProxyContext, upstream: () => Upstream): AnyRequestListener {
  return function perUpstream(req, res) {
    const startedAt = performance.now();
    if (req.method === 'CONNECT') return refuseConnect(ctx, req, res, startedAt);
    const invalid = methodRefusal(req.method) ?? targetRefusal(req.url ?? '/');
    if (invalid !== null) return refuse(ctx, req, res, invalid, startedAt);
    const target = routePerUpstream(upstream(), req);
    if (target instanceof MeshletError) return refuse(ctx, req, res, target, startedAt);
    new Exchange(ctx, req, res, target.upstream, target.path, target.policy).start();
  };
}
