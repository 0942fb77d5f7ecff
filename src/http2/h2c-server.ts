// meshlet's HTTP/2 server side: a compat-API server with wide flow-control windows, sessions tracked for drain.
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
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
 * connection), and drains them all on shutdown.
 */
export class H2Sessions {
  readonly #open = new Map<ServerHttp2Session, SessionState>();
  readonly #idleMs: number;

  /** @param idleMs how long a session may stay open with no stream, ms; default {@link H2_SESSION_IDLE_MS}. */
  constructor(idleMs: number = H2_SESSION_IDLE_MS) {
    this.#idleMs = idleMs;
  }

  /** Widens a new session's connection window and tracks it (and its streams) until it closes. */
  add(session: ServerHttp2Session): void {
    const state: SessionState = { streams: 0, idleSince: performance.now(), timer: null };
    this.#open.set(session, state);
    session.on('close', () => {
      if (state.timer !== null) clearTimeout(state.timer);
      this.#open.delete(session);
    });
    session.on('error', () => session.destroy());
    session.on('stream', (stream) => {
      state.streams++;
      stream.once('close', () => {
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

/**
 * The h2c server of a listener (sockets are handed to it by `routeByPreface`, or after ALPN `h2`),
 * answering with the same request handler as the HTTP/1.1 side (node:http2's compatibility API).
 * Made on the first call of the returned function, with `configure` applied then: node:http2 loads
 * with the first HTTP/2 connection, so a sidecar that only ever sees HTTP/1.1 never loads it (it
 * costs about 10 MiB of RSS; README "Memory and GC").
 */
export function lazyH2cServer(
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  sessions: H2Sessions,
  configure?: (server: Http2Server) => void,
): () => Http2Server {
  let server: Http2Server | undefined;
  return () => {
    if (server !== undefined) return server;
    const { createServer } = process.getBuiltinModule('node:http2');
    server = createServer({ settings: H2_SERVER_SETTINGS }, handler);
    // node:http2 would answer CONNECT with a bare 405 itself; the handler answers it with meshlet's error.
    server.on('connect', handler);
    server.on('session', (session: ServerHttp2Session) => sessions.add(session));
    configure?.(server);
    return server;
  };
}
