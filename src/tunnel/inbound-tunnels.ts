// The inbound side's tunnel entry points: a verified peer's WebSocket upgrade or CONNECT, relayed to the local app.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { MeshletError } from '../errors/meshlet-error.ts';
import { refuseRaw } from '../errors/raw-error.ts';
import type { SocketListener } from '../listener/http-listener.ts';
import { inboundPeerOf } from '../listener/inbound-listener.ts';
import { noteFdExhaustion } from '../proxy/fd-exhaustion.ts';
import { forwardRequestHeaders } from '../proxy/headers.ts';
import {
  admitInbound,
  authorizePeer,
  type InboundContext,
  inboundTarget,
  PEER_IDENTITY_HEADER,
  PEER_SPIFFE_ID_HEADER,
} from '../proxy/inbound-stack.ts';
import { classifyFailure, errorForFailure } from '../proxy/upstream-failure.ts';
import { timerDelay } from '../resilience/timer-delay.ts';
import { CLIENT_CLOSED } from '../telemetry/access-log.ts';
import { type TunnelKind, type TunnelMetrics, upgradeKind } from '../telemetry/tunnel-metrics.ts';
import { rawHead } from '../errors/raw-error.ts';
import { dialTcp } from './dial.ts';
import { passAnswer, requestOn, responseHeaders } from './tunnel-exchange.ts';
import { Tunnel, type TunnelSet } from './tunnel.ts';
import { upgradeBodyRefusal } from './upgrade-body.ts';
import { TunnelAccess } from './tunnel-access.ts';

const DROP_INCOMING = new Set([PEER_IDENTITY_HEADER, PEER_SPIFFE_ID_HEADER]);

/** What inbound tunnels need. */
export interface InboundTunnelContext {
  readonly inbound: InboundContext;
  readonly metrics: TunnelMetrics;
  readonly tunnels: TunnelSet;
  /** The local app's port. */
  readonly appPort: number;
  /** Longest silence on a tunnel, ms. */
  readonly idleMs: number;
}

/**
 * The inbound listener's `upgrade` (a WebSocket or another upgrade) or `connect` (a peer meshlet's CONNECT
 * tunnel) handler: the caller is authorized as a request would be (allow-list or intentions; a
 * refusal is `403 forbidden`, counted and logged by {@link authorizePeer} with the tunnel kind as
 * `via`), a malformed request (more than one Host, a Host that is not an authority, an h2c upgrade,
 * an upgrade with a body: {@link upgradeRefusal}) is `400 bad_request`, then the local app is
 * dialled on 127.0.0.1 — the upgrade request goes to it with the caller's identity headers, a
 * CONNECT becomes a TCP tunnel to its port. A dial that fails for want of file descriptors
 * (`EMFILE`/`ENFILE`) is meshlet's own failure, `503 overloaded` ({@link noteFdExhaustion} warns);
 * any other is `502 upstream_unreachable`. Each tunnel has one access line ({@link TunnelAccess}):
 * at once when it opened nothing, at its end when it did. As on the outbound side, each one is also a
 * request of the inbound direction (`meshlet_requests_total`, `meshlet_request_duration_seconds`),
 * timed from the handshake's arrival: meshlet's refusal or failure (also a local reply) and the app's
 * non-101 answer at once, 499 when the caller left during the handshake, an established tunnel with
 * 101 (CONNECT: 200) when it ends.
 */
export function inboundTunnelHandler(
  ctx: InboundTunnelContext,
  handshake: 'upgrade' | 'connect',
): SocketListener {
  return function inboundTunnel(req, duplex, head) {
    const socket = duplex as Socket;
    const kind: TunnelKind = handshake === 'connect' ? 'connect' : upgradeKind(req.headers.upgrade);
    // node:http took its own error listener off the upgraded socket: a caller resetting during the
    // handshake must not crash the daemon ('close' follows and is handled below).
    socket.on('error', () => undefined);
    const peer = inboundPeerOf(req);
    if (peer === undefined) {
      socket.destroy();
      return;
    }
    const ictx = ctx.inbound;
    // Before the headers are taken: an absolute-form target's Host becomes its authority.
    const path = handshake === 'upgrade' ? inboundTarget(req) : (req.url ?? '');
    const forwarded = forwardRequestHeaders(req, 'https', DROP_INCOMING);
    const line = new TunnelAccess(ictx.access, {
      direction: 'inbound',
      kind,
      requestId: forwarded.requestId,
      caller: peer.identity.uri,
      peerSerial: peer.serial,
      method: req.method,
      path: req.url,
      upstream: ictx.service,
    });
    // As the outbound side ({@link TunnelExchange}): the handshake (and an established tunnel's whole
    // life) is one request of the inbound direction, timed from its arrival to its end.
    const startedAt = performance.now();
    const count = (result: 'established' | 'refused' | 'failed'): void =>
      ctx.metrics.opened.inc({ direction: 'inbound', upstream: ictx.service, kind, result });
    /**
     * meshlet answers the handshake itself, echoing the line's request id in `x-request-id` (or, with
     * null, the caller left first: 499), counted as a local reply and a finished request.
     */
    const failed = (err: MeshletError | null): void => {
      count('failed');
      if (err !== null) ictx.metrics.localReply(err.code);
      ictx.metrics.finished(
        err === null ? CLIENT_CLOSED : err.status,
        (performance.now() - startedAt) / 1000,
      );
      line.write(err === null ? { status: CLIENT_CLOSED } : { status: err.status, error: err.code });
      if (err !== null) refuseRaw(socket, err, forwarded.requestId);
    };
    authorizePeer(ictx, peer, kind, (decision) => {
      if (!decision.allowed) {
        failed(
          new MeshletError('forbidden', `caller ${peer.identity.uri} is not allowed: ${decision.reason}`),
        );
        return;
      }
      const malformed =
        path instanceof MeshletError
          ? path
          : forwarded.invalid !== null
            ? new MeshletError('bad_request', forwarded.invalid)
            : handshake === 'upgrade'
              ? upgradeRefusal(req)
              : null;
      if (malformed !== null) {
        ictx.tlsMetrics.deny(peer.identity.service, 'bad_request');
        failed(malformed);
        return;
      }
      // Admitted like a request: a slot of listeners.inbound.maxConcurrent for the tunnel's whole
      // life, and a token of the caller's rate limit.
      const limited = admitInbound(ictx, peer.identity.service);
      if (limited !== null) {
        ictx.tlsMetrics.deny(peer.identity.service, limited.count);
        failed(limited.err);
        return;
      }
      let held = true;
      const release = (): void => {
        if (!held) return;
        held = false;
        ictx.active--;
      };
      if (socket.closed) release();
      else socket.once('close', release);
      dialTcp('127.0.0.1', ctx.appPort, 1000).then(
        (app) => {
          if (socket.destroyed) {
            app.destroy();
            failed(null);
            return;
          }
          const open = (upSocket: Socket, upHead: Buffer): void => {
            count('established');
            const status = kind === 'connect' ? 200 : 101;
            ctx.tunnels.add(
              new Tunnel(socket, upSocket, head, upHead, ctx.metrics, {
                kind,
                direction: 'inbound',
                upstream: ictx.service,
                idleMs: ctx.idleMs,
                onEnd: (relayed) => {
                  ictx.metrics.finished(status, (performance.now() - startedAt) / 1000);
                  line.write({ status, relayed });
                },
              }),
            );
          };
          if (kind === 'connect') {
            socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
            open(app, Buffer.alloc(0));
            return;
          }
          upgradeApp(
            req,
            path as string,
            forwarded.headers,
            socket,
            app,
            { caller: peer.identity.service, callerUri: peer.identity.uri, timeoutMs: ictx.appTimeoutMs },
            {
              open,
              refused: (status) => {
                count('refused');
                ictx.metrics.finished(status, (performance.now() - startedAt) / 1000);
                line.write({ status });
              },
              failed,
            },
          );
        },
        (err: Error) => {
          if (classifyFailure(err, false) === 'exhausted') {
            // meshlet's own fd limit, not the app's failure: 503 overloaded, as for a request.
            noteFdExhaustion(ictx.logger, err, ictx.service);
            failed(errorForFailure('exhausted', err, ictx.service, ictx.service));
            return;
          }
          failed(
            new MeshletError(
              'upstream_unreachable',
              `local app: connect failed (${(err as NodeJS.ErrnoException).code ?? err.message})`,
              ictx.service,
            ),
          );
        },
      );
    });
  };
}

/**
 * Why an upgrade is not tunnelled to the local app (400 `bad_request`), or null. `Upgrade: h2c`:
 * the outbound listener never forwards one (it is not a tunnel but HTTP/2 on the same connection, and
 * Envoy does not take it over HTTP/1.1 either), so a peer meshlet never sends one. A body, as the
 * outbound listener refuses it ({@link upgradeBodyRefusal}): the app would wait for it until `appTimeout`.
 */
function upgradeRefusal(req: IncomingMessage): MeshletError | null {
  const tokens = String(req.headers.upgrade ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  if (tokens.includes('h2c'))
    return new MeshletError(
      'bad_request',
      'an h2c upgrade is not forwarded: speak HTTP/2 (prior knowledge or ALPN)',
    );
  return upgradeBodyRefusal(req);
}

/**
 * What one upgrade to the local app reports: `open` on 101, `refused` with the status of its answer
 * when that passes on, else `failed` with meshlet's answer to send (null: the caller left first).
 */
interface UpgradeOutcome {
  open(upSocket: Socket, upHead: Buffer): void;
  refused(status: number): void;
  failed(err: MeshletError | null): void;
}

/**
 * Sends the upgrade request to the local app at `path` (origin form) with `headers` (the caller's, as forwarded) and the
 * caller's identity; `open` on 101, else its answer passes on. The app has `timeoutMs`
 * (`listeners.inbound.appTimeout`) to answer, then the caller gets 504; a caller that leaves first
 * takes the app connection with it, so a late 101 opens nothing.
 */
function upgradeApp(
  req: IncomingMessage,
  path: string,
  headers: readonly string[],
  client: Socket,
  app: Socket,
  who: { caller: string; callerUri: string; timeoutMs: number },
  outcome: UpgradeOutcome,
): void {
  const all = [
    ...headers,
    PEER_IDENTITY_HEADER,
    who.caller,
    PEER_SPIFFE_ID_HEADER,
    who.callerUri,
    'Connection',
    'Upgrade',
    'Upgrade',
    String(req.headers.upgrade),
  ];
  const up = requestOn(app, req.method ?? 'GET', path, all);
  let settled = false;
  const settle = (): boolean => {
    if (settled) return false;
    settled = true;
    clearTimeout(timer);
    client.off('close', onCallerGone);
    return true;
  };
  const onCallerGone = (): void => {
    if (!settle()) return;
    app.destroy();
    outcome.failed(null);
  };
  // Clamped: an `appTimeout: 1000h` (over 2^31 − 1 ms) would otherwise fire after 1 ms.
  const timer = setTimeout(() => {
    if (!settle()) return;
    app.destroy();
    outcome.failed(
      new MeshletError('upstream_timeout', `local app: no answer to the upgrade within ${who.timeoutMs} ms`),
    );
  }, timerDelay(who.timeoutMs));
  client.once('close', onCallerGone);
  up.once('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    if (!settle()) {
      upSocket.destroy();
      return;
    }
    client.write(rawHead(101, res.statusMessage ?? '', responseHeaders(res, 'upgrade')));
    outcome.open(upSocket, upHead);
  });
  up.once('response', (res: IncomingMessage) => {
    if (!settle()) {
      app.destroy();
      return;
    }
    if (res.statusCode === 101) {
      // A 101 without `Upgrade` (node:http emits 'upgrade' only for one that has it) opens nothing.
      app.destroy();
      outcome.failed(
        new MeshletError('upstream_unreachable', 'local app: answered 101 without an Upgrade header'),
      );
      return;
    }
    outcome.refused(res.statusCode ?? 502);
    passAnswer(client, res, app);
  });
  up.once('error', (err: Error) => {
    if (!settle()) return;
    outcome.failed(
      new MeshletError(
        'upstream_unreachable',
        `local app: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
      ),
    );
  });
  up.end();
}
