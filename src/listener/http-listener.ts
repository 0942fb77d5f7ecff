// A node:http server for a listener: limits, malformed-request answers, and graceful close.
import { createServer, type RequestListener, type Server } from 'node:http';
import type { Server as TlsHttpServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { ErrorBody } from '../errors/error-response.ts';

/** Server limits every meshlet HTTP listener applies. */
export interface HttpListenerOptions {
  /** Largest request header block, bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Time a client has to send the whole header block, ms. Default 10 s. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connection lifetime, ms. Default 60 s. */
  keepAliveTimeoutMs?: number;
}

function badRequestPayload(reason: string): string {
  const body: ErrorBody = { error: 'bad_request', message: reason, upstream: null };
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-meshlet-error: bad_request\r\n` +
    `connection: close\r\ncontent-length: ${Buffer.byteLength(json)}\r\n\r\n${json}`
  );
}

/** Why a client's bytes could not be parsed as HTTP, in words. */
function clientErrorReason(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return 'request headers too large';
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 'chunk extensions too large';
    case 'HPE_INVALID_METHOD':
      return 'invalid HTTP method';
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 'request not received in time (slow client)';
    default:
      return `malformed HTTP request (${err.code ?? err.message})`;
  }
}

/** A started HTTP listener. */
export interface HttpListener {
  readonly server: Server | TlsHttpServer;
  readonly address: string;
  readonly port: number;
  /** Stops accepting; idle keep-alive connections close now, busy ones after their response. */
  stopAccepting(): void;
  /** Resolves when every connection has closed. */
  closed(): Promise<void>;
  /** Destroys every remaining connection. */
  destroy(): void;
}

/** Creates and binds an HTTP listener. Rejects when the port cannot be bound. */
export async function listenHttp(
  address: string,
  port: number,
  handler: RequestListener,
  options: HttpListenerOptions = {},
): Promise<HttpListener> {
  const server = createServer(
    {
      maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
      headersTimeout: options.headersTimeoutMs ?? 10_000,
      requestTimeout: 0,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000,
      noDelay: true,
    },
    handler,
  );
  answerClientErrors(server);
  return bindListener(server, address, port);
}

/** Answers bytes that are not a valid HTTP request (too-large headers, bad method…) with meshlet's 400 and closes. */
export function answerClientErrors(server: Server | TlsHttpServer): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (socket.writable && !socket.destroyed && err.code !== 'ECONNRESET') {
      socket.end(badRequestPayload(clientErrorReason(err)));
    } else socket.destroy();
  });
}

/** Binds `server` on address:port and wraps it as an {@link HttpListener}. Rejects when the port cannot be bound. */
export async function bindListener(
  server: Server | TlsHttpServer,
  address: string,
  port: number,
): Promise<HttpListener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  return {
    server,
    address: bound.address,
    port: bound.port,
    stopAccepting() {
      server.close();
      server.closeIdleConnections();
    },
    closed: () => closed,
    destroy() {
      server.closeAllConnections();
    },
  };
}
