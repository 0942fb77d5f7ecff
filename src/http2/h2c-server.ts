// meshlet's HTTP/2 server side: a compat-API server with wide flow-control windows, sessions tracked for drain.
import type { Http2Server, Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import { H2_CONNECTION_WINDOW_BYTES, H2_SERVER_SETTINGS } from './h2-settings.ts';

/** The open HTTP/2 sessions of a listener and their open stream counts, for drain. */
export class H2Sessions {
  readonly #open = new Map<ServerHttp2Session, number>();

  /** Widens a new session's connection window and tracks it (and its streams) until it closes. */
  add(session: ServerHttp2Session): void {
    this.#open.set(session, 0);
    session.on('close', () => this.#open.delete(session));
    session.on('error', () => session.destroy());
    session.on('stream', (stream) => {
      this.#open.set(session, (this.#open.get(session) ?? 0) + 1);
      stream.once('close', () => {
        const n = this.#open.get(session);
        if (n !== undefined) this.#open.set(session, n - 1);
      });
    });
    if (session.connecting) session.once('connect', () => widen(session));
    else widen(session);
  }

  /** GOAWAY to sessions with no stream open (graceful: nothing in flight is cut). */
  closeIdle(): void {
    for (const [s, streams] of this.#open) if (streams === 0) s.close();
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
