// meshlet's HTTP/2 server side: a compat-API server with wide flow-control windows, sessions tracked for drain.
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import { sendError } from '../errors/error-response.ts';
import { isGrpcRequest } from '../errors/grpc-status.ts';
import { MeshletError } from '../errors/meshlet-error.ts';
import { abuseReasonOf, type H2AbuseListener, ResetGuard } from './h2-session-guard.ts';
import { H2_CONNECTION_WINDOW_BYTES, H2_SERVER_SETTINGS, H2_SESSION_IDLE_MS } from './h2-settings.ts';

/** A tracked session: its open streams, since when it has had none, and its idle check. */
interface SessionState {
  streams: number;
  /** `performance.now()` when `streams` last fell to 0, ms. */
  idleSince: number;
  timer: NodeJS.Timeout | null;
}

/**
 * The open HTTP/2 sessions of a listener and their open stream counts: closes a session that has
 * had no stream open for `idleMs` (GOAWAY; HTTP/1.1's keep-alive timeout does the same for an idle
 * connection) and one whose client resets most of its streams ({@link ResetGuard}), tells
 * `onAbuse` of each session closed for abuse (by that guard or by node:http2's own limits,
 * h2-session-guard.ts), and drains them all on shutdown.
 */
export class H2Sessions {
  readonly #open = new Map<ServerHttp2Session, SessionState>();
  readonly #idleMs: number;
  readonly #onAbuse: H2AbuseListener | undefined;

  /**
   * @param idleMs how long a session may stay open with no stream, ms; default {@link H2_SESSION_IDLE_MS}.
   * @param onAbuse told once of each session closed for abuse (the listener's counter and warning,
   *   `h2AbuseReporter`); default none.
   */
  constructor(idleMs: number = H2_SESSION_IDLE_MS, onAbuse?: H2AbuseListener) {
    this.#idleMs = idleMs;
    this.#onAbuse = onAbuse;
  }

  /** Widens a new session's connection window and tracks it (and its streams) until it closes. */
  add(session: ServerHttp2Session): void {
    const state: SessionState = { streams: 0, idleSince: performance.now(), timer: null };
    this.#open.set(session, state);
    session.on('close', () => {
      if (state.timer !== null) clearTimeout(state.timer);
      this.#open.delete(session);
    });
    // Read now: once the session is destroyed its socket can no longer be asked.
    const peer = session.socket?.remoteAddress;
    session.on('error', (err: NodeJS.ErrnoException) => {
      const reason = abuseReasonOf(err);
      if (reason !== null) this.#onAbuse?.({ reason, peer });
      session.destroy();
    });
    const guard = new ResetGuard();
    session.on('stream', (stream) => {
      state.streams++;
      const openedAt = performance.now();
      stream.once('close', () => {
        const closed = guard.streamClosed(session, stream, openedAt);
        if (closed !== null) this.#onAbuse?.({ reason: 'rapid_reset', peer, ...closed });
        if (--state.streams === 0) this.#idle(session, state);
      });
    });
    this.#idle(session, state);
    if (session.connecting) session.once('connect', () => widen(session));
    else widen(session);
  }

  /**
   * Notes that `session` has no stream open. One timer per session at most: a stream that opens
   * and closes while it is pending only moves `idleSince`, and the timer re-arms for the rest.
   */
  #idle(session: ServerHttp2Session, state: SessionState): void {
    state.idleSince = performance.now();
    if (state.timer !== null) return;
    const check = (): void => {
      state.timer = null;
      if (state.streams > 0 || session.closed || session.destroyed) return;
      const left = state.idleSince + this.#idleMs - performance.now();
      if (left > 0) arm(left);
      else session.close();
    };
    const arm = (ms: number): void => {
      state.timer = setTimeout(check, ms);
      state.timer.unref();
    };
    arm(this.#idleMs);
  }

  /** GOAWAY to sessions with no stream open (graceful: nothing in flight is cut). */
  closeIdle(): void {
    for (const [s, state] of this.#open) if (state.streams === 0) s.close();
  }

  /** GOAWAY to every session: new streams go elsewhere, open ones finish. */
  drain(): void {
    for (const s of this.#open.keys()) s.close();
  }

  /** Destroys every session. */
  destroy(): void {
    for (const s of this.#open.keys()) s.destroy();
  }
}

function widen(session: ServerHttp2Session): void {
  if (!session.destroyed) session.setLocalWindowSize(H2_CONNECTION_WINDOW_BYTES);
}

/** Options of {@link lazyH2cServer}. */
export interface H2cServerOptions {
  /**
   * Largest request header block, bytes, counted as HTTP/1.1 would carry it ("name: value" and
   * CRLF per field, pseudo-headers included); larger gets 400 `bad_request`, as the listener's
   * HTTP/1.1 parser answers. Default 16 KiB.
   */
  maxHeaderBytes?: number;
  /** Applied to the server when it is made (e.g. more `session` listeners). */
  configure?: (server: Http2Server) => void;
  /**
   * Told of each request refused here, before `handler` (a header block over `maxHeaderBytes`, a
   * Host naming another authority), as the request is answered: the listener counts and logs it as
   * a refusal of its handler's, and returns the request id the answer echoes (undefined: none).
   * Default none.
   */
  onRefused?: (err: MeshletError, req: Http2ServerRequest) => string | undefined;
}

/** A request's header block size as HTTP/1.1 would carry it: `name: value\r\n` per field, bytes. */
export function headerBlockBytes(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) n += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 4;
  return n;
}

/**
 * How many header fields node:http2 may accept on a request (its `maxHeaderListPairs`): every block
 * within `maxHeaderBytes`, however many fields it has (each counts at least 5 bytes, `a: \r\n`), so
 * that the byte limit decides, as on HTTP/1.1. node:http2's own default, 128 fields, reset a
 * stream with ENHANCE_YOUR_CALM (a gRPC client reads RESOURCE_EXHAUSTED) for a small block of many
 * metadata entries that the HTTP/1.1 side of the same listener accepts.
 */
export function headerPairsWithin(maxHeaderBytes: number): number {
  return Math.ceil(maxHeaderBytes / 5) + 8;
}

/**
 * Why an HTTP/2 request is refused before it is handled, or null: a header block over
 * `maxHeaderBytes`, or a `Host` header naming another authority than `:authority` (RFC 9113
 * §8.3.1: malformed; routing by one while the upstream reads the other is how requests slip past
 * authority-based routes).
 */
function malformed(req: Http2ServerRequest, maxHeaderBytes: number): string | null {
  if (headerBlockBytes(req.rawHeaders) > maxHeaderBytes) return 'request headers too large';
  const { host, ':authority': authority } = req.headers;
  if (host !== undefined && authority !== undefined && host.toLowerCase() !== authority.toLowerCase())
    return 'the Host header differs from :authority';
  return null;
}

/**
 * The h2c server of a listener (sockets are handed to it by `routeByPreface`, or after ALPN `h2`),
 * answering with the same request handler as the HTTP/1.1 side (node:http2's compatibility API),
 * after the same header size limit (its refusals told to `options.onRefused`). Made on the first
 * call of the returned function, with `configure` applied then: node:http2 loads with the first
 * HTTP/2 connection, so a sidecar that only ever sees HTTP/1.1 never loads it (it costs about 10 MiB
 * of RSS; README "Memory and GC").
 */
export function lazyH2cServer(
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  sessions: H2Sessions,
  options: H2cServerOptions = {},
): () => Http2Server {
  const maxHeaderBytes = options.maxHeaderBytes ?? 16 * 1024;
  const guarded = (req: Http2ServerRequest, res: Http2ServerResponse): void => {
    const refusal = malformed(req, maxHeaderBytes);
    if (refusal === null) handler(req, res);
    else {
      const grpc = isGrpcRequest(req.headers['content-type']);
      const err = new MeshletError('bad_request', refusal);
      sendError(res, err, options.onRefused?.(err, req), undefined, grpc);
    }
  };
  // node:http2 refuses a header list over 64 KiB itself (it resets the stream): room for a larger limit.
  const settings =
    maxHeaderBytes < 32 * 1024
      ? H2_SERVER_SETTINGS
      : { ...H2_SERVER_SETTINGS, maxHeaderListSize: Math.max(65_535, 2 * maxHeaderBytes) };
  const maxHeaderListPairs = headerPairsWithin(maxHeaderBytes);
  let server: Http2Server | undefined;
  return () => {
    if (server !== undefined) return server;
    const { createServer } = process.getBuiltinModule('node:http2');
    server = createServer({ settings, maxHeaderListPairs }, guarded);
    // node:http2 would answer CONNECT with a bare 405 itself; the handler answers it with meshlet's error.
    server.on('connect', guarded);
    server.on('session', (session: ServerHttp2Session) => sessions.add(session));
    options.configure?.(server);
    return server;
  };
}
