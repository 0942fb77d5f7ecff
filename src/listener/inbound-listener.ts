// The inbound listener: TLS 1.3 with a required, verified client certificate whose SPIFFE identity names the caller.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, Http2Session } from 'node:http2';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { H2Sessions, lazyH2cServer } from '../http2/h2c-server.ts';
import type { ConnectionGuard } from './connection-guard.ts';
import type { H2AbuseListener } from '../http2/h2-session-guard.ts';
import { isGrpcRequest } from '../errors/grpc-status.ts';
import type { MeshletError } from '../errors/meshlet-error.ts';
import type { DownstreamRequest } from '../proxy/downstream.ts';
import { handshakeFailureReason, type HandshakeFailureReason } from '../telemetry/tls-metrics.ts';
import { readPeerIdentity, type WorkloadIdentity } from '../tls/identity.ts';
import type { MeshTls } from '../tls/mesh-tls.ts';
import {
  answerClientErrors,
  type AnyRequestListener,
  bindListener,
  checkingIntervalMs,
  type HttpListener,
  http1Only,
  type RefusalListener,
  type RefusedRequest,
  type SocketListener,
} from './http-listener.ts';

/** Who is on the other end of an inbound connection, from its verified certificate. */
export interface InboundPeer {
  readonly identity: WorkloadIdentity;
  /** The client certificate's serial number, uppercase hex. */
  readonly serial: string;
  /** The peer's IP address as the socket saw it at the handshake; undefined when it was already gone. */
  readonly address: string | undefined;
}

/**
 * Bytes the inbound listener accepts past `maxHeaderSize`: room for the header fields the calling
 * meshlet adds to what its app sent (as its listener counted it, within the same 16 KiB by default):
 * `x-request-id` (52 bytes), `x-forwarded-for` (≤ 75), `x-forwarded-proto` (26),
 * `x-meshlet-timeout-ms` (≤ 34), `grpc-timeout` (≤ 27), `content-length` of a re-framed body
 * (≤ 30), `connection: keep-alive` (24), and HTTP/2's `:scheme` and pseudo-header names in place
 * of an HTTP/1.1 request line (≤ 30): under 300 bytes in all, so a request one meshlet took is not
 * refused by the next for what meshlet itself added.
 */
export const PEER_ADDED_HEADER_BYTES = 1024;

/** Limits of the inbound listener (`listeners.inbound`). */
export interface InboundListenerOptions {
  /**
   * Largest request header block a calling app may send, bytes; the listener accepts
   * {@link PEER_ADDED_HEADER_BYTES} more for what the calling meshlet adds. Default 16 KiB.
   */
  readonly maxHeaderSize?: number;
  /** Time a client has for the TLS handshake and then the whole header block, ms. Default 10 s. */
  readonly headersTimeoutMs?: number;
  /** Time a client has to send the whole request, body included, ms (0 = none). Default 60 s. */
  readonly requestTimeoutMs?: number;
  /** Idle keep-alive connection lifetime, ms. Default 60 s. */
  readonly keepAliveTimeoutMs?: number;
  /** A verified peer's HTTP/1.1 `Upgrade` (WebSocket). */
  readonly onUpgrade?: SocketListener;
  /** A verified peer's `CONNECT` (a tunnel to the local app); without it, 405. */
  readonly onConnect?: SocketListener;
  /** Told of each HTTP/2 session closed for abuse (`h2AbuseReporter`: counter and warning); default none. */
  readonly onH2Abuse?: H2AbuseListener;
  /**
   * The listener's connection cap and count (`listeners.inbound.maxConnections`), on the TCP
   * server: a connection beyond the cap is closed before its TLS handshake. Default none.
   */
  readonly connections?: ConnectionGuard;
  /**
   * Told of each request the listener answers itself before `handler` sees it (a malformed or
   * slow head, a head over `maxHeaderSize`, too many header fields, another HTTP version; over
   * HTTP/2 a header block over `maxHeaderSize` or a Host naming another authority than
   * `:authority`), for metrics and the access log, as the outbound listener's `onRefused`; returns
   * the request id the answer echoes.
   */
  readonly onRefused?: InboundRefusalListener;
}

/**
 * See {@link InboundListenerOptions.onRefused}. `method` is undefined when the head was never
 * parsed, `refused` the request when it was; `peer` is the verified peer of the refused request's
 * connection (pipelined requests included), undefined only if the connection was never verified
 * (it is then never served). Returns the request id the answer echoes in `x-request-id`, or
 * undefined (always for a head never parsed).
 */
export type InboundRefusalListener = (
  err: MeshletError,
  method: string | undefined,
  peer: InboundPeer | undefined,
  refused?: RefusedRequest,
) => string | undefined;

/** Verified peers by TLS socket (HTTP/1.1) and by session (HTTP/2, whose `socket` is a proxy). */
const peers = new WeakMap<object, InboundPeer>();

/** The verified peer of a request that came through an inbound listener; undefined otherwise. */
export function inboundPeerOf(req: DownstreamRequest): InboundPeer | undefined {
  return req.httpVersionMajor === 2
    ? peers.get((req as Http2ServerRequest).stream.session as Http2Session)
    : peers.get(req.socket);
}

/** Why a handshake-complete connection is refused: the metric label and, when known, a detail for the log. */
interface PeerRefusal {
  readonly reason: HandshakeFailureReason;
  readonly detail: string | undefined;
}

/**
 * Why a handshake-complete connection must be refused, or the peer. Node's `rejectUnauthorized`
 * would drop the reason, so the server accepts every handshake and decides here: no certificate,
 * a chain that does not verify (another CA, expired, not yet valid), or no SPIFFE identity (none,
 * two URI SANs, another scheme, a CA certificate as a leaf: `detail` says which) or one outside
 * the trust domain.
 */
function checkPeer(socket: TLSSocket, trustDomain: string | undefined): InboundPeer | PeerRefusal {
  const cert = socket.getPeerCertificate();
  if (cert === null || cert === undefined || Object.keys(cert).length === 0)
    return { reason: 'no_client_certificate', detail: undefined };
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? '');
    return { reason: handshakeFailureReason(code), detail: code };
  }
  const read = readPeerIdentity(cert);
  if (!('identity' in read)) return { reason: 'no_identity', detail: read.problem };
  const any = read.identity;
  if (trustDomain !== undefined && any.trustDomain !== trustDomain)
    return {
      reason: 'foreign_trust_domain',
      detail: `trust domain ${JSON.stringify(any.trustDomain)} is not ${JSON.stringify(trustDomain)}`,
    };
  return { identity: any, serial: cert.serialNumber, address: socket.remoteAddress };
}

/**
 * Binds the inbound listener. Each connection must complete a TLS handshake (TLS 1.3 unless
 * `tls.minVersion` allows 1.2) with a client certificate that chains to the trust bundle and names a
 * SPIFFE identity; otherwise it is counted by reason (`meshlet_tls_handshakes_total`), logged once
 * per peer address and reason (`inbound tls handshake refused`, {@link MeshTls.refusals}, with a
 * `detail`: the verification code, or why the certificate names no usable identity) and closed
 * before any HTTP byte is read. ALPN picks the protocol: `h2` goes to an HTTP/2 session,
 * `http/1.1` (or no ALPN) to the HTTP/1.1 parser. New connections use the newest certificate after
 * a rotation. `handler` sees only verified requests; {@link inboundPeerOf} tells it who called.
 * Requests the listener answers itself (400, 408) are told to `options.onRefused`.
 */
export async function listenInbound(
  address: string,
  port: number,
  tls: MeshTls,
  handler: AnyRequestListener,
  options: InboundListenerOptions = {},
): Promise<HttpListener> {
  const metrics = tls.metrics;
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const requestTimeout = options.requestTimeoutMs ?? 60_000;
  const maxHeaderBytes = (options.maxHeaderSize ?? 16 * 1024) + PEER_ADDED_HEADER_BYTES;
  const told = options.onRefused;
  const onRefused: RefusalListener | undefined =
    told === undefined
      ? undefined
      : (err, method, socket, refused) => told(err, method, peers.get(socket), refused);
  const verified = (req: DownstreamRequest, res: ServerResponse | Http2ServerResponse): void => {
    // Defence in depth: a socket refused at handshake never reaches here, but never serve one without a peer.
    if (inboundPeerOf(req) === undefined) {
      req.destroy();
      return;
    }
    handler(req, res);
  };
  const h1 = createHttpServer(
    {
      maxHeaderSize: maxHeaderBytes,
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: checkingIntervalMs(headersTimeout, requestTimeout),
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000,
      noDelay: true,
    },
    http1Only(verified as (req: IncomingMessage, res: ServerResponse) => void, { onRefused }),
  );
  answerClientErrors(h1, { ...options, onRefused });
  const sessions = new H2Sessions(undefined, options.onH2Abuse);
  /** The peer of the connection being handed to the h2 server ('session' fires synchronously). */
  let handing: InboundPeer | undefined;
  const h2 = lazyH2cServer(verified, sessions, {
    maxHeaderBytes,
    onRefused: (err, req) =>
      told?.(err, req.method, inboundPeerOf(req), {
        req,
        startedAt: performance.now(),
        grpc: isGrpcRequest(req.headers['content-type']),
      }),
    configure: (server) =>
      server.prependListener('session', (session: Http2Session) => {
        if (handing !== undefined) peers.set(session, handing);
      }),
  });
  const server = createTlsServer({
    ...tls.serverContextOptions(),
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: ['h2', 'http/1.1'],
    handshakeTimeout: headersTimeout,
  });
  const unsubscribe = tls.onServerContext((ctx) => server.setSecureContext(ctx));
  server.once('close', unsubscribe);
  server.on('secureConnection', (socket: TLSSocket) => {
    const peer = checkPeer(socket, tls.trustDomain);
    if (!('identity' in peer)) {
      metrics.failed('inbound', peer.reason);
      tls.refusals.note(socket.remoteAddress, peer.reason, peer.detail);
      socket.destroy();
      return;
    }
    metrics.ok('inbound');
    if (socket.alpnProtocol === 'h2') {
      handing = peer;
      h2().emit('connection', socket);
      handing = undefined;
    } else {
      peers.set(socket, peer);
      h1.emit('connection', socket);
    }
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const reason = handshakeFailureReason(err.code);
    metrics.failed('inbound', reason);
    tls.refusals.note(socket.remoteAddress, reason, err.code);
    socket.destroy();
  });
  const listener = await bindListener(server, address, port, h1, sessions, options.connections);
  // node:http tracks connections (keep-alive, header and request timeouts) from 'listening'.
  h1.emit('listening');
  return listener;
}
