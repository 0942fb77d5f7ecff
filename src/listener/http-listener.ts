// A node:http server for a listener: limits, malformed-request answers, and graceful close.
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Server as TlsHttpServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { H2Sessions, lazyH2cServer } from '../http2/h2c-server.ts';
import type { H2AbuseListener } from '../http2/h2-session-guard.ts';
import { routeByPreface } from '../http2/sniff.ts';
import { type ErrorCode, MeshletError } from '../errors/meshlet-error.ts';
import { isGrpcRequest } from '../errors/grpc-status.ts';
import { rawErrorPayload, refuseRaw } from '../errors/raw-error.ts';
import { sendError } from '../errors/error-response.ts';
import { answering, oneRequestAtATime } from './pipelining.ts';
import type { ConnectionGuard } from './connection-guard.ts';

/** Server limits every meshlet HTTP listener applies. */
export interface HttpListenerOptions {
  /** Largest request header block, bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Time a client has to send the whole header block, ms; then 408 and the connection closes. Default 10 s. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connection lifetime, ms. Default 60 s. */
  keepAliveTimeoutMs?: number;
  /** How long an HTTP/2 session may stay open with no stream, ms; then GOAWAY. Default 5 min (`H2_SESSION_IDLE_MS`). */
  h2IdleTimeoutMs?: number;
  /** Told of each HTTP/2 session closed for abuse (`h2AbuseReporter`: counter and warning); default none. */
  onH2Abuse?: H2AbuseListener;
  /**
   * The listener's connection cap and count (`listeners.NAME.maxConnections`,
   * `meshlet_listener_connections`), applied to its socket server, so it covers HTTP/1.1, h2c and
   * tunnels alike. Default none: no cap, nothing counted.
   */
  connections?: ConnectionGuard;
  /** HTTP/1.1 `Upgrade` requests (WebSocket); without it they are served as ordinary requests. */
  onUpgrade?: SocketListener;
  /** HTTP/1.1 `CONNECT`; without it meshlet answers 405. */
  onConnect?: SocketListener;
  /**
   * Most header fields an HTTP/1.1 request may carry; a request with more is refused with 400
   * `bad_request`, never passed on with some of them dropped. Default {@link DEFAULT_MAX_HEADERS_COUNT}.
   */
  maxHeadersCount?: number;
  /**
   * Told of each request the listener answers itself before any handler sees it (a malformed or
   * slow head, too many header fields, another HTTP version, CONNECT where no tunnel is opened;
   * over HTTP/2 a header block over `maxHeaderSize` or a Host naming another authority than
   * `:authority`), for metrics and the access log. `method` is undefined when the head was never
   * parsed; `refused` is the request when it was. Returns the request id the answer echoes in
   * `x-request-id` (undefined: none).
   */
  onRefused?: RefusalListener;
}

/**
 * A request the listener refuses after node:http (or node:http2) parsed its head: what its access
 * line and echoed request id are made of, as a handler's refusal's are.
 */
export interface RefusedRequest {
  readonly req: IncomingMessage | Http2ServerRequest;
  /** `performance.now()` when the listener took the request up (its turn on the connection). */
  readonly startedAt: number;
  /** Whether the answer is a gRPC one (HTTP/2 only; HTTP/1.1 and raw answers are JSON). */
  readonly grpc: boolean;
}

/**
 * See {@link HttpListenerOptions.onRefused}. `socket` is the refused request's connection (the
 * inbound listener reads the caller's verified identity from it), also when the request was
 * pipelined behind others and refused after they were answered. `refused` is undefined when the
 * head was never parsed (then no request id is echoed). Returns the request id to echo, or undefined.
 */
export type RefusalListener = (
  err: MeshletError,
  method: string | undefined,
  socket: Duplex,
  refused?: RefusedRequest,
) => string | undefined;

/**
 * Header fields a request may carry where the listener is not told otherwise: 1000, the most
 * node:http takes by default (its `maxHeadersCount` of 2000 counts names and values). meshlet counts
 * them itself: Node before 22.23.2 and 24.18.1 dropped the fields past its limit without a word.
 */
export const DEFAULT_MAX_HEADERS_COUNT = 1000;

/** node:http's `upgrade` and `connect` listener shape. */
export type SocketListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** The refusal of `CONNECT` where no tunnel is opened (per-upstream listeners). */
const CONNECT_REFUSED = new MeshletError(
  'method_not_allowed',
  'CONNECT tunnels are opened by the outbound listener only',
);
/** The methods meshlet routes as requests (every one but `CONNECT`): the `allow` of a refused `CONNECT`. */
export const ROUTED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE';
/** Its `allow` header. */
const CONNECT_ALLOW = ['allow', ROUTED_METHODS] as const;

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

/** A request handler for HTTP/1.1 and HTTP/2 (node:http2's compatibility API) alike. */
export type AnyRequestListener = (
  req: Parameters<RequestListener>[0] | Http2ServerRequest,
  res: Parameters<RequestListener>[1] | Http2ServerResponse,
) => void;

/**
 * The refusal of a request with more than `max` header fields, or null when it has no more.
 * node:http keeps every field in `rawHeaders`, name and value in turn.
 */
function tooManyHeaders(req: IncomingMessage, max: number): MeshletError | null {
  const count = req.rawHeaders.length >>> 1;
  if (count <= max) return null;
  return new MeshletError(
    'bad_request',
    `request has ${count} header fields, more than the ${max} meshlet accepts`,
  );
}

/** `listener` for an upgrade or CONNECT whose header fields are within `max`; others are refused on the socket. */
function withinHeaderCount(
  listener: SocketListener,
  max: number,
  onRefused: RefusalListener | undefined,
): SocketListener {
  return function counted(req, socket, head) {
    const refusal = tooManyHeaders(req, max);
    if (refusal === null) return listener(req, socket, head);
    // Refused as it is taken up: the check is all the time meshlet spent on it (no clock read per request).
    const refused = { req, startedAt: performance.now(), grpc: false };
    const requestId = onRefused?.(refusal, req.method, socket, refused);
    socket.on('error', () => socket.destroy());
    refuseRaw(socket, refusal, requestId);
  };
}

/** A started HTTP listener (HTTP/1.1 and, on cleartext and ALPN listeners, HTTP/2). */
export interface HttpListener {
  readonly address: string;
  readonly port: number;
  /** Closes keep-alive connections with nothing in flight (HTTP/2: GOAWAY to idle sessions). */
  closeIdleConnections(): void;
  /** Stops accepting; idle keep-alive connections close now, busy ones after their response (HTTP/2: GOAWAY, open streams finish). */
  stopAccepting(): void;
  /** Resolves when every connection has closed. */
  closed(): Promise<void>;
  /** Destroys every remaining connection. */
  destroy(): void;
  /**
   * Changes the connection cap of the running listener (a reload's `listeners.NAME.maxConnections`;
   * undefined: none); open connections stay ({@link ConnectionGuard.setMaxConnections}). Does nothing
   * on a listener bound without a {@link HttpListenerOptions.connections} guard.
   */
  setMaxConnections(max: number | undefined): void;
}

/**
 * Creates and binds a cleartext listener that speaks HTTP/1.1 and HTTP/2 with prior knowledge
 * (h2c, what gRPC clients send) on one port: the connection's first bytes decide. Both go to
 * `handler`. Rejects when the port cannot be bound.
 */
export async function listenHttp(
  address: string,
  port: number,
  handler: AnyRequestListener,
  options: HttpListenerOptions = {},
): Promise<HttpListener> {
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const h1 = createHttp1Server(handler as RequestListener, options);
  const sessions = new H2Sessions(options.h2IdleTimeoutMs, options.onH2Abuse);
  const h2 = lazyH2cServer(handler, sessions, {
    maxHeaderBytes: options.maxHeaderSize ?? 16 * 1024,
    onRefused: h2Refusals(options.onRefused),
  });
  const front = createNetServer({ noDelay: true }, (socket) =>
    routeByPreface(socket, h1, h2, headersTimeout),
  );
  const listener = await bindListener(front, address, port, h1, sessions, options.connections);
  // node:http tracks connections (keep-alive closing, headersTimeout checks) from 'listening'; h1
  // never listens itself, its sockets come from the front server.
  h1.emit('listening');
  return listener;
}

/**
 * The `onRefused` of a listener's h2c server ({@link lazyH2cServer}): tells `onRefused` of the
 * refused HTTP/2 request and returns the request id its answer echoes.
 */
export function h2Refusals(
  onRefused: RefusalListener | undefined,
): (err: MeshletError, req: Http2ServerRequest) => string | undefined {
  return (err, req) =>
    onRefused?.(err, req.method, req.socket, {
      req,
      // Refused as it arrived: the check that refused it is all the time meshlet spent on it.
      startedAt: performance.now(),
      grpc: isGrpcRequest(req.headers['content-type']),
    });
}

/** Creates and binds an HTTP/1.1-only listener (the admin API). Rejects when the port cannot be bound. */
export async function listenHttp1(
  address: string,
  port: number,
  handler: RequestListener,
  options: HttpListenerOptions = {},
): Promise<HttpListener> {
  const server = createHttp1Server(handler, options);
  return bindListener(server, address, port, server, null, options.connections);
}

/**
 * The refusal of an HTTP/1.1 request without a Host header (RFC 9112 §3.2). meshlet answers it, not
 * node:http (`requireHostHeader` is off, see {@link answerClientErrors}): node:http's bare 400 skipped
 * the handler, so a request pipelined behind it was forwarded while the client read
 * `connection: close` and never got its answer.
 */
const NO_HOST = new MeshletError(
  'bad_request',
  'an HTTP/1.1 request must carry a Host header (RFC 9112 §3.2)',
);

/**
 * Refuses, with 400 `bad_request` and the connection closed, a request whose version is not
 * HTTP/1.x on an HTTP/1.1 connection (node:http parses `GET / HTTP/2.0` and `HTTP/0.9` and hands
 * them over, but neither is an HTTP/2 request, which starts with the connection preface, nor
 * anything meshlet should forward), an HTTP/1.1 request without Host, and one with more than
 * `limits.maxHeadersCount` header fields (Envoy answers those 431; meshlet's answer to a head that
 * is too large is `bad_request`). The answer echoes the request id `limits.onRefused` returns.
 * Pipelined requests are handled one at a time ({@link oneRequestAtATime}).
 */
export function http1Only(
  handler: RequestListener,
  limits: Pick<HttpListenerOptions, 'maxHeadersCount' | 'onRefused'> = {},
): RequestListener {
  const maxHeaders = limits.maxHeadersCount ?? DEFAULT_MAX_HEADERS_COUNT;
  const onRefused = limits.onRefused;
  return oneRequestAtATime(function http1(req, res) {
    const refusal =
      req.httpVersionMajor !== 1
        ? new MeshletError(
            'bad_request',
            `HTTP/${req.httpVersion.slice(0, 8)} is not spoken on an HTTP/1.1 connection (HTTP/2 starts with its connection preface)`,
          )
        : req.httpVersionMinor === 1 && req.headers.host === undefined
          ? NO_HOST
          : tooManyHeaders(req, maxHeaders);
    if (refusal === null) return handler(req, res);
    // Refused as it is taken up: the checks above are all the time meshlet spent on it.
    const refused = { req, startedAt: performance.now(), grpc: false };
    const requestId = onRefused?.(refusal, req.method, req.socket, refused);
    res.shouldKeepAlive = false;
    sendError(res, refusal, requestId);
  });
}

/** A node:http server with meshlet's limits, answering malformed requests itself. */
function createHttp1Server(handler: RequestListener, options: HttpListenerOptions): Server {
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const server = createServer(
    {
      maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
      headersTimeout,
      // Node checks headersTimeout only this often (default 30 s): check often enough that a slow
      // client is cut within a second of its deadline. Bodies are bounded per exchange (bodyTimeout).
      connectionsCheckingInterval: checkingIntervalMs(headersTimeout),
      requestTimeout: 0,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 60_000,
      noDelay: true,
    },
    http1Only(handler, options),
  );
  answerClientErrors(server, options);
  return server;
}

/**
 * The event a listener emits, with its {@link MeshletError}, on the response of a request whose
 * body it could not parse (a bad chunk size…). A handler that listens for it owns the request's
 * access line and count; the listener still writes the 400 and closes the connection.
 */
export const BODY_REFUSED = 'meshlet:body-refused';

/**
 * The response of the request whose body was being parsed when `socket` failed to parse, or null
 * (the failure is in a head). node:http keeps the response being answered on `_httpMessage`.
 */
function inFlightBody(socket: Duplex): ServerResponse | null {
  const res = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  return res !== undefined && res !== null && !res.req.complete ? res : null;
}

/** node:http's `clientError` listener: answers what it can (400, 408) and tells `onRefused`; then the connection closes. */
function clientErrorAnswer(onRefused: RefusalListener | undefined) {
  return function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (socket.writable && !socket.destroyed && err.code !== 'ECONNRESET') {
      const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
      const refusal = new MeshletError(code, clientErrorReason(err));
      // A body that failed to parse belongs to a request already handed over: its handler logs it
      // (one access line per request); an answer that started already is not cut into by a 400.
      const res = inFlightBody(socket);
      if (res === null || !res.emit(BODY_REFUSED, refusal)) onRefused?.(refusal, undefined, socket);
      if (res?.headersSent === true) {
        socket.destroy();
        return;
      }
      // A slow head behind a request still being answered (pipelining): a 408 written now would
      // be read as that request's answer, so the connection just closes.
      if (code === 'request_timeout' && answering(socket)) socket.destroy();
      else socket.end(rawErrorPayload(refusal));
    } else socket.destroy();
  };
}

/** How often Node sweeps connections for `headersTimeout`/`requestTimeout`, ms: a quarter of the shortest, at most 1 s. */
export function checkingIntervalMs(...timeoutsMs: number[]): number {
  let interval = 1000;
  for (const t of timeoutsMs) if (t > 0) interval = Math.min(interval, t / 4);
  return Math.max(50, Math.floor(interval));
}

/**
 * Answers bytes that are not a valid HTTP request (too-large headers, bad method…) with meshlet's
 * 400, headers that did not arrive in time with 408, and `CONNECT` with 405; each then closes and
 * is told to `options.onRefused`, with the request when its head was parsed (a CONNECT, an
 * upgrade): that answer echoes the request id `onRefused` returns; one to a head never parsed
 * echoes none. node:http's own header-field count is turned off: `http1Only` (and here, upgrades
 * and CONNECT) count the fields and refuse past `options.maxHeadersCount` (Node before 22.23.2
 * and 24.18.1 dropped the extra fields silently; later ones refuse them before meshlet can say why).
 */
export function answerClientErrors(
  server: Server | TlsHttpServer,
  options: Pick<HttpListenerOptions, 'onUpgrade' | 'onConnect' | 'onRefused' | 'maxHeadersCount'> = {},
): void {
  server.maxHeadersCount = 0;
  // `http1Only` refuses an HTTP/1.1 request without Host itself, in turn with the requests
  // pipelined on its connection. node:http reads the option from the server at each request; its
  // typings know only the constructor option.
  (server as { requireHostHeader?: boolean }).requireHostHeader = false;
  const max = options.maxHeadersCount ?? DEFAULT_MAX_HEADERS_COUNT;
  const onRefused = options.onRefused;
  if (options.onUpgrade !== undefined)
    server.on('upgrade', withinHeaderCount(options.onUpgrade, max, onRefused));
  server.on('clientError', clientErrorAnswer(onRefused));
  if (options.onConnect !== undefined) {
    server.on('connect', withinHeaderCount(options.onConnect, max, onRefused));
    return;
  }
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    const startedAt = performance.now();
    socket.on('error', () => socket.destroy());
    if (socket.writable && !socket.destroyed) {
      const refused = { req, startedAt, grpc: false };
      const requestId = onRefused?.(CONNECT_REFUSED, req.method, socket, refused);
      const id = requestId === undefined ? [] : ['x-request-id', requestId];
      socket.end(rawErrorPayload(CONNECT_REFUSED, [...CONNECT_ALLOW, ...id]));
    } else socket.destroy();
  });
}

/**
 * Binds `server` on address:port and wraps it as an {@link HttpListener}. `h1` is the node:http
 * server that parses its HTTP/1.1 connections (`server` itself when it is one) and `h2` its
 * HTTP/2 sessions, when it has any; `guard` its connection cap and count, attached once bound
 * (a failed bind rejects, it is not logged as an accept error). Rejects when the port cannot be bound.
 */
export async function bindListener(
  server: NetServer,
  address: string,
  port: number,
  h1: Server | TlsHttpServer,
  h2: H2Sessions | null = null,
  guard?: ConnectionGuard,
): Promise<HttpListener> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  guard?.attach(server);
  const bound = server.address() as AddressInfo;
  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  return {
    address: bound.address,
    port: bound.port,
    closeIdleConnections() {
      h1.closeIdleConnections();
      h2?.closeIdle();
    },
    stopAccepting() {
      server.close();
      if (h1 !== server) h1.close();
      h1.closeIdleConnections();
      h2?.drain();
    },
    closed: () => closed,
    destroy() {
      h1.closeAllConnections();
      h2?.destroy();
    },
    setMaxConnections(max) {
      guard?.setMaxConnections(max);
    },
  };
}
