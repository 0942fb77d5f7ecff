// The gateway's socket: cleartext HTTP/1.1 + h2c, or TLS termination (HTTP/1.1 and HTTP/2 by ALPN) with a watched, hot-reloaded certificate.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { constants } from 'node:crypto';
import { watchFiles } from '../config/file-watch.ts';
import type { GatewayListenerSpec } from '../config/gateway-schema.ts';
import { H2Sessions, lazyH2cServer } from '../http2/h2c-server.ts';
import type { H2AbuseListener } from '../http2/h2-session-guard.ts';
import {
  answerClientErrors,
  type AnyRequestListener,
  bindListener,
  checkingIntervalMs,
  h2Refusals,
  type HttpListener,
  http1Only,
  listenHttp,
  type RefusalListener,
} from '../listener/http-listener.ts';
import type { ConnectionGuard } from '../listener/connection-guard.ts';
import type { Logger } from '../telemetry/logger.ts';
import { checkTlsContext, GATEWAY_TLS_LABELS } from '../tls/certificate-info.ts';

/**
 * TLS 1.2 renegotiation refused by OpenSSL (TLS 1.3 has none): HTTP/2 forbids it (RFC 9113
 * §9.2.1), and at the edge it would only let any client make the gateway redo handshakes.
 */
const NO_RENEGOTIATION = constants.SSL_OP_NO_RENEGOTIATION;

/** A started gateway listener and how to stop watching its certificate. */
export interface GatewaySocket {
  readonly listener: HttpListener;
  /** Re-reads the certificate and key now (what a file change does). */
  reloadCertificate(): boolean;
  close(): void;
}

/**
 * Binds `listeners.gateway`. Without `tls`: `listenHttp` (HTTP/1.1 and h2c on one port) with the
 * gateway's stricter header size, header timeout and keep-alive. With `tls`: TLS termination with
 * `cert`/`key` (ALPN `h2` or `http/1.1`); both files are watched ({@link watchFiles}, Kubernetes
 * Secret volume updates included, and looked at every 10 s), and a changed pair that loads
 * replaces the certificate for new connections; one that does not is logged and the old one stays.
 * No client certificate is asked for: the edge authenticates with tokens and keys. A TLS 1.2 client's renegotiation is refused. `onH2Abuse` is told of each
 * HTTP/2 session closed for abuse (`h2AbuseReporter('gateway', …)`); default none. `connections`
 * is the listener's connection cap (`spec.maxConnections`) and count, on the TCP server: a
 * connection beyond the cap is closed before any TLS or HTTP byte; default none. `onRefused` is
 * told of each request the listener answers itself before `handler` (a malformed, slow or oversized
 * head, too many header fields; over HTTP/2 a header block over `maxHeaderSize` or a Host naming
 * another authority than `:authority`), for metrics and the access log, and returns the request id
 * the answer echoes; default none.
 */
export async function listenGateway(
  spec: GatewayListenerSpec,
  handler: AnyRequestListener,
  logger: Logger,
  onH2Abuse?: H2AbuseListener,
  connections?: ConnectionGuard,
  onRefused?: RefusalListener,
): Promise<GatewaySocket> {
  const limits = {
    onH2Abuse,
    connections,
    onRefused,
    headersTimeoutMs: spec.headersTimeout,
    maxHeaderSize: spec.maxHeaderSize,
    keepAliveTimeoutMs: spec.keepAliveTimeout,
    // The edge's keep-alive knob bounds an idle HTTP/2 session as it does an idle HTTP/1.1 connection.
    h2IdleTimeoutMs: spec.keepAliveTimeout,
  };
  if (spec.tls === undefined) {
    const listener = await listenHttp(spec.address, spec.port, handler, limits);
    return { listener, reloadCertificate: () => false, close() {} };
  }
  const tls = spec.tls;
  const certFile = resolve(tls.cert);
  const keyFile = resolve(tls.key);
  const read = () => ({ cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') });
  let current = read();
  // A pair OpenSSL refuses (an RSA-512 key) stops start naming the files, with the line
  // `meshlet config check` prints.
  checkTlsContext({ certPem: current.cert, keyPem: current.key }, tls, GATEWAY_TLS_LABELS);
  const h1 = createHttpServer(
    {
      maxHeaderSize: spec.maxHeaderSize,
      headersTimeout: spec.headersTimeout,
      requestTimeout: 0,
      connectionsCheckingInterval: checkingIntervalMs(spec.headersTimeout),
      keepAliveTimeout: spec.keepAliveTimeout,
      noDelay: true,
    },
    http1Only(handler as (req: IncomingMessage, res: ServerResponse) => void, { onRefused }),
  );
  answerClientErrors(h1, { onRefused });
  const sessions = new H2Sessions(spec.keepAliveTimeout, onH2Abuse);
  const h2 = lazyH2cServer(handler, sessions, {
    maxHeaderBytes: spec.maxHeaderSize,
    onRefused: h2Refusals(onRefused),
  });
  const server = createTlsServer({
    cert: current.cert,
    key: current.key,
    ALPNProtocols: ['h2', 'http/1.1'],
    handshakeTimeout: spec.headersTimeout,
    secureOptions: NO_RENEGOTIATION,
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol === 'h2') h2().emit('connection', socket);
    else h1.emit('connection', socket);
  });
  server.on('tlsClientError', (_err, socket: TLSSocket) => socket.destroy());
  const listener = await bindListener(server, spec.address, spec.port, h1, sessions, connections);
  h1.emit('listening');

  const reloadCertificate = (): boolean => {
    let next: { cert: string; key: string };
    try {
      next = read();
      if (next.cert === current.cert && next.key === current.key) return false;
      // Throws on a pair that does not fit (a key written before its certificate) or that OpenSSL
      // refuses (an RSA-512 key), naming the files as start does: the old one stays.
      checkTlsContext({ certPem: next.cert, keyPem: next.key }, tls, GATEWAY_TLS_LABELS);
      server.setSecureContext({ cert: next.cert, key: next.key, secureOptions: NO_RENEGOTIATION });
    } catch (err) {
      logger.error({
        msg: 'gateway certificate reload failed; keeping the current certificate',
        reason: (err as Error).message,
      });
      return false;
    }
    current = next;
    logger.info({ msg: 'gateway certificate reloaded', cert: certFile });
    return true;
  };
  // A short quiet time: tools write the key and the certificate one after the other.
  const watch = watchFiles([certFile, keyFile], { onChange: reloadCertificate, debounceMs: 100 });
  return {
    listener,
    reloadCertificate,
    close: () => watch.close(),
  };
}
