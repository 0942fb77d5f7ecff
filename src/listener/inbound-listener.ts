// The inbound listener: TLS 1.3 with a required, verified client certificate whose SPIFFE identity names the caller.
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { handshakeFailureReason, type HandshakeFailureReason } from '../telemetry/tls-metrics.ts';
import { identityFromPeerCertificate, type WorkloadIdentity } from '../tls/identity.ts';
import type { MeshTls } from '../tls/mesh-tls.ts';
import { answerClientErrors, bindListener, checkingIntervalMs, type HttpListener } from './http-listener.ts';

/** Who is on the other end of an inbound connection, from its verified certificate. */
export interface InboundPeer {
  readonly identity: WorkloadIdentity;
  /** The client certificate's serial number, uppercase hex. */
  readonly serial: string;
}

/** Limits of the inbound listener (`listeners.inbound`). */
export interface InboundListenerOptions {
  /** Largest request header block, bytes. Default 16 KiB. */
  readonly maxHeaderSize?: number;
  /** Time a client has for the TLS handshake and then the whole header block, ms. Default 10 s. */
  readonly headersTimeoutMs?: number;
  /** Time a client has to send the whole request, body included, ms (0 = none). Default 60 s. */
  readonly requestTimeoutMs?: number;
  /** Idle keep-alive connection lifetime, ms. Default 60 s. */
  readonly keepAliveTimeoutMs?: number;
}

const peers = new WeakMap<object, InboundPeer>();

/** The verified peer of a request that came through an inbound listener; undefined otherwise. */
export function inboundPeerOf(req: IncomingMessage): InboundPeer | undefined {
  return peers.get(req.socket);
}

/**
 * Why a handshake-complete connection must be refused, or the peer. Node's `rejectUnauthorized`
 * would drop the reason, so the server accepts every handshake and decides here: no certificate,
 * a chain that does not verify (another CA, expired, not yet valid), or no SPIFFE identity
 * (or one outside the trust domain).
 */
function checkPeer(socket: TLSSocket, trustDomain: string | undefined): InboundPeer | HandshakeFailureReason {
  const cert = socket.getPeerCertificate();
  if (cert === null || cert === undefined || Object.keys(cert).length === 0) return 'no_client_certificate';
  if (!socket.authorized) return handshakeFailureReason(String(socket.authorizationError ?? ''));
  const any = identityFromPeerCertificate(cert);
  if (any === undefined) return 'no_identity';
  if (trustDomain !== undefined && any.trustDomain !== trustDomain) return 'foreign_trust_domain';
  return { identity: any, serial: cert.serialNumber };
}

/**
 * Binds the inbound listener. Each connection must complete a TLS handshake (TLS 1.3 unless
 * `tls.minVersion` allows 1.2) with a client certificate that chains to the trust bundle and names a
 * SPIFFE identity; otherwise it is counted by reason (`meshlet_tls_handshakes_total`) and closed
 * before any HTTP byte is read. New connections use the newest certificate after a rotation.
 * `handler` sees only verified requests; {@link inboundPeerOf} tells it who called.
 */
export async function listenInbound(
  address: string,
  port: number,
  tls: MeshTls,
  handler: RequestListener,
  options: InboundListenerOptions = {},
): Promise<HttpListener> {
  const metrics = tls.metrics;
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const requestTimeout = options.requestTimeoutMs ?? 60_000;
  const server: HttpsServer = createHttpsServer(
    {
      ...tls.serverContextOptions(),
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      handshakeTimeout: headersTimeout,
      maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: checkingIntervalMs(headersTimeout, requestTimeout),
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000,
      noDelay: true,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      // Defence in depth: a socket refused at handshake never reaches here, but never serve one without a peer.
      if (!peers.has(req.socket)) {
        req.socket.destroy();
        return;
      }
      handler(req, res);
    },
  );
  const unsubscribe = tls.onServerContext((ctx) => server.setSecureContext(ctx));
  server.once('close', unsubscribe);
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const peer = checkPeer(socket, tls.trustDomain);
    if (typeof peer === 'string') {
      metrics.failed('inbound', peer);
      socket.destroy();
      return;
    }
    metrics.ok('inbound');
    peers.set(socket, peer);
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    metrics.failed('inbound', handshakeFailureReason(err.code));
    socket.destroy();
  });
  answerClientErrors(server);
  return bindListener(server, address, port, server);
}
