// Outbound connection pools: mTLS to endpoints that advertise it (server identity checked), plain otherwise.
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { buildConnector } from 'undici';
import { Pool } from '../upstream/undici-pool.ts';
import {
  handshakeFailureReason,
  type HandshakeFailureReason,
  type TlsMetrics,
} from '../telemetry/tls-metrics.ts';
import type { Endpoint } from '../upstream/endpoint.ts';
import type { ConnectCheck } from '../upstream/forwarding-loop.ts';
import { h2Client } from '../http2/h2-client.ts';
import { type EndpointDialer, plainDial } from '../tunnel/dial.ts';
import { type PoolFactory, plainPoolFactory, speaksH2 } from '../upstream/upstream.ts';
import { identityFromPeerCertificate } from './identity.ts';
import type { MeshTls } from './mesh-tls.ts';

const HTTP1_ALPN: readonly string[] = ['http/1.1'];
const H2_ALPN: readonly string[] = ['h2'];

/** Idle keep-alive lifetime of an outbound connection, ms (as the plain pools). */
const KEEP_ALIVE_MS = 4000;

/**
 * How meshlet talks to an endpoint, as `/upstreams` shows it: `mtls`, or `plain (<reason>)` —
 * plain always says why (Linkerd's "no TLS" reasons).
 */
export function tlsModeOf(endpoint: Endpoint, tlsConfigured: boolean): string {
  if (endpoint.transport !== 'mtls') return 'plain (not provided by discovery)';
  if (!tlsConfigured) return 'plain (tls not configured)';
  return 'mtls';
}

/** An error raised while establishing an outbound mTLS connection; its code marks it a connect failure. */
class TlsConnectError extends Error {
  readonly code: string;
  /** The handshake failure reason it is counted under, when the code alone does not tell it. */
  readonly reason: HandshakeFailureReason | undefined;
  constructor(message: string, code: string, cause?: unknown, reason?: HandshakeFailureReason) {
    super(message, { cause });
    this.name = 'TlsConnectError';
    this.code = code;
    this.reason = reason;
  }
}

/**
 * The error `checkServerIdentity` returns when the server's verified certificate is refused:
 * `reason` is the metric label (`no_identity`, `foreign_trust_domain`, `wrong_identity`).
 */
function identityError(message: string, reason: HandshakeFailureReason): Error {
  return new TlsConnectError(message, 'ERR_MESHLET_PEER_IDENTITY', undefined, reason);
}

/** The reason a failed handshake is counted under: the one an identity error carries, else from its code. */
function failureReason(err: Error & { code?: string }): HandshakeFailureReason {
  return err instanceof TlsConnectError && err.reason !== undefined
    ? err.reason
    : handshakeFailureReason(err.code);
}

/**
 * An undici connector that opens a TLS connection with the newest client context of `tls`, verifies
 * the server's chain against the trust bundle and that its SPIFFE identity is `service` (in the
 * trust domain, when one is set). Every failure after TCP connected — bad chain, wrong identity,
 * reset during the handshake — is reported with an `ERR_TLS*` code before anything was sent, so the
 * request path counts it as a connect failure (retries, outlier detection). `check` (the
 * forwarding-loop guard), when given, runs once TCP connected: a connection it refuses is destroyed
 * and fails with its error, not counted as a handshake failure (the TLS client hello may have left).
 */
export function mtlsConnector(
  tls: MeshTls,
  service: string,
  connectTimeoutMs: number,
  metrics: TlsMetrics,
  alpn: readonly string[] = HTTP1_ALPN,
  check?: ConnectCheck,
): buildConnector.connector {
  return (options, callback) => {
    const host = options.hostname.startsWith('[') ? options.hostname.slice(1, -1) : options.hostname;
    let tcpConnected = false;
    let settled = false;
    const socket: TLSSocket = tlsConnect({
      host,
      port: Number(options.port),
      secureContext: tls.clientContext(),
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ALPNProtocols: alpn as string[],
      rejectUnauthorized: true,
      checkServerIdentity: (_name: string, cert: PeerCertificate) => {
        const trustDomain = tls.trustDomain;
        const identity = identityFromPeerCertificate(cert);
        if (identity === undefined)
          return identityError('server certificate holds no SPIFFE identity', 'no_identity');
        if (trustDomain !== undefined && identity.trustDomain !== trustDomain)
          return identityError(
            `server identity ${identity.uri} is outside trust domain ${trustDomain}`,
            'foreign_trust_domain',
          );
        if (identity.service !== service)
          return identityError(
            `server identity ${identity.uri} is not service "${service}"`,
            'wrong_identity',
          );
        return undefined;
      },
    });
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === null) {
        socket.off('error', onError);
        metrics.ok('outbound');
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 60_000);
        callback(null, socket);
        return;
      }
      socket.destroy();
      callback(err, null);
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      if (!tcpConnected) {
        finish(err);
        return;
      }
      const code = err.code ?? '';
      metrics.failed('outbound', failureReason(err));
      const tlsCode = code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') ? code : 'ERR_TLS_HANDSHAKE';
      finish(
        new TlsConnectError(
          `mTLS handshake with ${host}:${options.port} failed: ${err.message}${code === '' ? '' : ` (${code})`}`,
          tlsCode,
          err,
        ),
      );
    };
    const timer = setTimeout(() => {
      const err = new TlsConnectError(
        `connect to ${host}:${options.port} timed out after ${connectTimeoutMs} ms`,
        'UND_ERR_CONNECT_TIMEOUT',
      );
      if (tcpConnected) metrics.failed('outbound', 'timeout');
      finish(err);
    }, connectTimeoutMs);
    socket.once('connect', () => {
      tcpConnected = true;
      const refused = check?.(socket) ?? null;
      if (refused !== null) finish(refused);
    });
    socket.on('error', onError);
    socket.once('secureConnect', () => finish(null));
  };
}

/**
 * The pool factory the upstream table uses: an mTLS pool for endpoints whose transport is `mtls`
 * when TLS is configured (`tls` not null), the plain pool otherwise. An endpoint that speaks HTTP/2
 * or gRPC gets one h2 session over mTLS, offering ALPN `h2` only: a peer that cannot speak it fails
 * the handshake (a connect failure), never a silent downgrade to HTTP/1.1.
 */
export function tlsPoolFactory(tls: MeshTls | null): PoolFactory {
  return (endpoint, settings, upstream, check) => {
    if (tls === null || tlsModeOf(endpoint, true) !== 'mtls')
      return plainPoolFactory(endpoint, settings, upstream, check);
    if (speaksH2(endpoint, settings)) {
      return h2Client(`https://${endpoint.id}`, {
        connectTimeoutMs: settings.connectTimeoutMs,
        connect: mtlsConnector(tls, upstream, settings.connectTimeoutMs, tls.metrics, H2_ALPN, check),
      });
    }
    return new Pool(`https://${endpoint.id}`, {
      pipelining: 1,
      connect: mtlsConnector(tls, upstream, settings.connectTimeoutMs, tls.metrics, HTTP1_ALPN, check),
      keepAliveTimeout: KEEP_ALIVE_MS,
    });
  };
}

/**
 * How tunnels (WebSocket, CONNECT) reach an endpoint: mTLS with ALPN `http/1.1` to a peer meshlet
 * that advertises it (when TLS is configured), plain TCP otherwise.
 */
export function tlsDialer(tls: MeshTls | null): EndpointDialer {
  return (endpoint, upstream, connectTimeoutMs, check) => {
    if (tls === null || tlsModeOf(endpoint, true) !== 'mtls')
      return plainDial(endpoint, upstream, connectTimeoutMs, check);
    const connector = mtlsConnector(tls, upstream, connectTimeoutMs, tls.metrics, HTTP1_ALPN, check);
    return new Promise((resolve, reject) => {
      connector(
        {
          hostname: endpoint.address,
          host: endpoint.id,
          protocol: 'https:',
          port: String(endpoint.port),
        } as buildConnector.Options,
        (err, socket) => (err === null ? resolve(socket as Socket) : reject(err)),
      );
    });
  };
}
