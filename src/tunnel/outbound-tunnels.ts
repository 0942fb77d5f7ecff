// The outbound side's tunnel entry points: WebSocket upgrades (outbound and per-upstream listeners) and CONNECT.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { MeshletError } from '../errors/meshlet-error.ts';
import type { SocketListener } from '../listener/http-listener.ts';
import { refuseRaw } from '../errors/raw-error.ts';
import { TIMEOUT_HEADER } from '../proxy/deadline.ts';
import { forwardRequestHeaders } from '../proxy/headers.ts';
import { targetRefusal } from '../proxy/request-target.ts';
import type { RouteTarget, Router } from '../route/router.ts';
import { elapsedMs } from '../telemetry/access-log.ts';
import { type TunnelKind, upgradeKind } from '../telemetry/tunnel-metrics.ts';
import { requestOn, type TunnelContext, TunnelExchange } from './tunnel-exchange.ts';
import { upgradeBodyRefusal } from './upgrade-body.ts';

const DROP_INCOMING = new Set([TIMEOUT_HEADER]);

/**
 * Answers a tunnel request meshlet refuses before any upstream is involved, with its access line
 * (always written: meshlet's own answer): the line of a tunnel that opened nothing (`requestId`,
 * `method`, `path` (a CONNECT's is the authority asked for), `upstream`, `endpoint` null,
 * `attempts` 0, `durationMs`, `error`), the request id echoed in the answer's `x-request-id`.
 * `upstream` is the one routing chose, or `""` before one was (a no_route included), as an HTTP
 * refusal's line and the metric label write it: a name that matched nothing is the client's own
 * text (the answer's body names it). `requestId` is the one forwarding would have sent: an
 * upgrade's from {@link forwardRequestHeaders} (the client's `x-request-id` unless `Connection`
 * drops it, else a new UUID), a CONNECT's always new (it forwards no header). `startedAt` is when
 * the handshake arrived (performance.now()); the duration metric takes the line's figure.
 */
function refuse(
  ctx: TunnelContext,
  req: IncomingMessage,
  socket: Duplex,
  err: MeshletError,
  kind: TunnelKind,
  startedAt: number,
  upstream: string,
  requestId: string,
): void {
  const durationMs = elapsedMs(startedAt);
  ctx.proxy.unrouted.localReply(err.code);
  ctx.proxy.unrouted.finished(err.status, durationMs / 1000);
  ctx.proxy.access.tunnel({
    direction: 'outbound',
    kind,
    requestId,
    method: req.method,
    path: req.url,
    upstream,
    endpoint: null,
    status: err.status,
    attempts: 0,
    durationMs,
    error: err.code,
  });
  refuseRaw(socket, err, requestId);
}

/**
 * WebSocket (and configured `upgrades`) on a listener: routed like a request (`route`), then the
 * handshake goes to a balanced endpoint (mTLS to a peer meshlet when it has one) and, on `101`,
 * bytes flow both ways. Any other answer reaches the client as it is.
 */
export function upgradeHandler(
  ctx: TunnelContext,
  route: (req: IncomingMessage) => RouteTarget | MeshletError,
): SocketListener {
  return function upgrade(req, socket, head) {
    const startedAt = performance.now();
    const token = String(req.headers.upgrade ?? '').toLowerCase();
    const kind = upgradeKind(token);
    /** `upstream`: the one routing chose, `""` before. */
    const refused = (err: MeshletError, upstream = '', requestId?: string): void =>
      refuse(
        ctx,
        req,
        socket,
        err,
        kind,
        startedAt,
        upstream,
        requestId ?? forwardRequestHeaders(req, 'http', DROP_INCOMING).requestId,
      );
    // As the listener's request handler: node:http's parser lets a `#` fragment through.
    const invalid = targetRefusal(req.url ?? '/');
    if (invalid !== null) return refused(invalid);
    const target = route(req);
    if (target instanceof MeshletError) return refused(target);
    const upstream = target.upstream;
    if (!upstream.settings.upgrades.includes(token)) {
      return refused(
        new MeshletError(
          'bad_request',
          `upgrade to "${token.slice(0, 40)}" is not forwarded to upstream "${upstream.name}" (upstreams.${upstream.name}.upgrades)`,
          upstream.name,
        ),
        upstream.name,
      );
    }
    const withBody = upgradeBodyRefusal(req, upstream.name);
    if (withBody !== null) return refused(withBody, upstream.name);
    const forwarded = forwardRequestHeaders(req, 'http', DROP_INCOMING);
    if (forwarded.invalid !== null)
      return refused(
        new MeshletError('bad_request', forwarded.invalid, upstream.name),
        upstream.name,
        forwarded.requestId,
      );
    // Upgrade and Connection are hop-by-hop: restate them for the next hop.
    const headers = [...forwarded.headers, 'Connection', 'Upgrade', 'Upgrade', String(req.headers.upgrade)];
    const method = req.method ?? 'GET';
    new TunnelExchange(
      ctx,
      kind,
      socket as Socket,
      head,
      upstream,
      target.policy,
      { method, path: target.path, requestId: forwarded.requestId },
      (conn) => requestOn(conn, method, target.path, headers),
    ).start();
  };
}

/**
 * `CONNECT name:port` on the outbound listener: `name` must resolve to an upstream (routes, then
 * the authority), never to an arbitrary host; the port asked for is ignored and the tunnel goes to
 * a balanced endpoint's registered port — to a peer meshlet over mTLS (which asks its inbound
 * listener for a tunnel to the local app) or straight to the endpoint.
 */
export function connectHandler(ctx: TunnelContext, router: () => Router): SocketListener {
  return function connect(req, socket, head) {
    const startedAt = performance.now();
    const authority = req.url ?? '';
    // A CONNECT forwards no header: its request id is always new, refused or not.
    const requestId = randomUUID();
    let target: RouteTarget;
    try {
      target = router().resolve(authority, '/', req.headers);
    } catch (err) {
      if (!(err instanceof MeshletError)) throw err;
      return refuse(ctx, req, socket, err, 'connect', startedAt, '', requestId);
    }
    const upstream = target.upstream;
    new TunnelExchange(
      ctx,
      'connect',
      socket as Socket,
      head,
      upstream,
      target.policy,
      { method: 'CONNECT', path: authority.slice(0, 200), requestId },
      (conn, handle) =>
        (conn as TLSSocket).encrypted === true
          ? requestOn(conn, 'CONNECT', `${upstream.name}:${handle.endpoint.port}`, [
              'Host',
              `${upstream.name}:${handle.endpoint.port}`,
            ])
          : null,
    ).start();
  };
}
