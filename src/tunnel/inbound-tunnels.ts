// The inbound side's tunnel entry points: a verified peer's WebSocket upgrade or CONNECT, relayed to the local app.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { MeshletError } from '../errors/meshlet-error.ts';
import { refuseRaw } from '../errors/raw-error.ts';
import type { SocketListener } from '../listener/http-listener.ts';
import { inboundPeerOf } from '../listener/inbound-listener.ts';
import { forwardRequestHeaders } from '../proxy/headers.ts';
import {
  authorizePeer,
  type InboundContext,
  PEER_IDENTITY_HEADER,
  PEER_SPIFFE_ID_HEADER,
} from '../proxy/inbound-stack.ts';
import type { TunnelKind, TunnelMetrics } from '../telemetry/tunnel-metrics.ts';
import { rawHead } from '../errors/raw-error.ts';
import { dialTcp } from './dial.ts';
import { passAnswer, requestOn, responseHeaders } from './tunnel-exchange.ts';
import { Tunnel, type TunnelSet } from './tunnel.ts';

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
 * The inbound listener's `upgrade` (`kind` websocket) or `connect` (a peer meshlet's CONNECT
 * tunnel) handler: the caller is authorized as a request would be (allow-list or intentions; a
 * refusal is `403 forbidden`), then the local app is dialled on 127.0.0.1 — the upgrade request
 * goes to it with the caller's identity headers, a CONNECT becomes a TCP tunnel to its port.
 */
export function inboundTunnelHandler(ctx: InboundTunnelContext, kind: TunnelKind): SocketListener {
  return function inboundTunnel(req, duplex, head) {
    const socket = duplex as Socket;
    const peer = inboundPeerOf(req);
    if (peer === undefined) {
      socket.destroy();
      return;
    }
    const ictx = ctx.inbound;
    const count = (result: 'established' | 'refused' | 'failed'): void =>
      ctx.metrics.opened.inc({ direction: 'inbound', upstream: ictx.service, kind, result });
    authorizePeer(ictx, peer, (decision) => {
      if (!decision.allowed) {
        ictx.tlsMetrics.denied.labels(peer.identity.service, 'forbidden').inc();
        count('failed');
        refuseRaw(
          socket,
          new MeshletError('forbidden', `caller ${peer.identity.uri} is not allowed: ${decision.reason}`),
        );
        return;
      }
      dialTcp('127.0.0.1', ctx.appPort, 1000).then(
        (app) => {
          if (socket.destroyed) {
            app.destroy();
            return;
          }
          const open = (upSocket: Socket, upHead: Buffer): void => {
            count('established');
            ctx.tunnels.add(
              new Tunnel(socket, upSocket, head, upHead, ctx.metrics, {
                kind,
                direction: 'inbound',
                upstream: ictx.service,
                idleMs: ctx.idleMs,
              }),
            );
          };
          if (kind === 'connect') {
            socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
            open(app, Buffer.alloc(0));
            return;
          }
          upgradeApp(req, socket, app, peer.identity.service, peer.identity.uri, open, () =>
            count('refused'),
          );
        },
        (err: Error) => {
          count('failed');
          refuseRaw(
            socket,
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

/** Sends the upgrade request to the local app with the caller's identity; `open` on 101, else its answer passes on. */
function upgradeApp(
  req: IncomingMessage,
  client: Socket,
  app: Socket,
  caller: string,
  callerUri: string,
  open: (upSocket: Socket, upHead: Buffer) => void,
  refused: () => void,
): void {
  const forwarded = forwardRequestHeaders(req, 'https', DROP_INCOMING);
  const headers = [
    ...forwarded.headers,
    PEER_IDENTITY_HEADER,
    caller,
    PEER_SPIFFE_ID_HEADER,
    callerUri,
    'Connection',
    'Upgrade',
    'Upgrade',
    String(req.headers.upgrade),
  ];
  const up = requestOn(app, req.method ?? 'GET', req.url ?? '/', headers);
  up.once('upgrade', (res: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    client.write(rawHead(101, res.statusMessage ?? '', responseHeaders(res, 'websocket')));
    open(upSocket, upHead);
  });
  up.once('response', (res: IncomingMessage) => {
    refused();
    passAnswer(client, res, app);
  });
  up.once('error', (err: Error) => {
    refuseRaw(
      client,
      new MeshletError(
        'upstream_unreachable',
        `local app: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
      ),
    );
  });
  up.end();
}
