// An endpoint's HTTP/2 connection: undici's Client with h2 (h2c, or h2 by ALPN over mTLS), one session reused.
import type { IncomingHttpHeaders } from 'node:http';
import { type Duplex, Readable } from 'node:stream';
import type { buildConnector, Dispatcher, Client as UndiciClient } from 'undici';
import buildConnectorOf from 'undici/lib/core/connect.js';
import ClientClass from 'undici/lib/dispatcher/client.js';
import {
  H2_CONNECTION_WINDOW_BYTES,
  H2_MAX_CONCURRENT_STREAMS,
  H2_STREAM_WINDOW_BYTES,
} from './h2-settings.ts';
import { limitH2Session } from './h2-session-limits.ts';
import { ResponseHeadLimit } from './response-head-limit.ts';
import { ForwardingHandler } from './forwarding-handler.ts';
import { emitTrailersAfterData } from './trailers-after-data.ts';

emitTrailersAfterData();

/** Options of {@link h2Client}. */
export interface H2ClientOptions {
  /** TCP connect timeout, ms (plain endpoints). */
  connectTimeoutMs: number;
  /** A connector that opens the TLS connection (mTLS, ALPN `h2`); absent = h2c. */
  connect?: buildConnector.connector;
}

/** Where a streamed request body's reader learns that its attempt is over. */
interface AttemptEnd {
  over: boolean;
  /** Wakes the reader while it waits for the body. */
  wake: (() => void) | null;
}

/** Ends the reading of a body whose attempt is over; undici drops it (the request already ended). */
class AttemptOverError extends Error {
  constructor() {
    super('the attempt ended before its request body');
    this.name = 'AttemptOverError';
  }
}

/**
 * A streamed request body as meshlet hands it to undici's HTTP/2 client: an async iterable read
 * with backpressure (undici awaits each write's drain) that fails with the body's own error (its
 * client left, it outgrew its limit) and stops reading, leaving the body as it is, once the attempt
 * is over. undici pipes a `Readable` body into the HTTP/2 stream instead, and aborting such an
 * attempt sent no RST_STREAM: node:http2's `close()` emits 'aborted', the pipeline destroys the
 * stream inside that call, and the reset it was about to submit is dropped — the endpoint's stream
 * stayed open, a disconnected caller's call running there until the endpoint ended it.
 */
async function* chunksOf(body: Readable, end: AttemptEnd): AsyncGenerator<Buffer> {
  for (;;) {
    if (end.over) throw new AttemptOverError();
    const chunk = body.read() as Buffer | null;
    if (chunk !== null) {
      yield chunk;
      continue;
    }
    if (body.errored !== null) throw body.errored;
    if (body.readableEnded) return;
    if (body.destroyed) throw new Error('the request body was destroyed before its end');
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        body.off('readable', wake);
        body.off('end', wake);
        body.off('error', wake);
        body.off('close', wake);
        end.wake = null;
        resolve();
      };
      body.on('readable', wake);
      body.on('end', wake);
      body.on('error', wake);
      body.on('close', wake);
      end.wake = wake;
    });
  }
}

/**
 * The handler undici hears from for a streamed-body attempt: every callback goes to meshlet's own
 * handler (its `onRequestStart`… API), and `onEnd` runs first when the attempt ends either way, so
 * the body's reader stops.
 */
class EndWatcher extends ForwardingHandler {
  readonly #onEnd: () => void;

  constructor(handler: Dispatcher.DispatchHandler, onEnd: () => void) {
    super(handler);
    this.#onEnd = onEnd;
  }

  override onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.#onEnd();
    super.onResponseEnd(controller, trailers);
  }

  override onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#onEnd();
    super.onResponseError(controller, error);
  }
}

/**
 * undici's `Client` with streamed request bodies sent as {@link chunksOf} iterables: an aborted
 * attempt (its caller gone, a timeout) then resets the endpoint's stream (RST_STREAM CANCEL); and
 * every response head and trailers block held to the response-head byte limit ({@link ResponseHeadLimit}).
 */
class H2Client extends ClientClass {
  override dispatch(options: Dispatcher.DispatchOptions, outer: Dispatcher.DispatchHandler): boolean {
    const handler = new ResponseHeadLimit(outer);
    const body = options.body;
    if (!(body instanceof Readable)) return super.dispatch(options, handler);
    const end: AttemptEnd = { over: false, wake: null };
    const over = (): void => {
      end.over = true;
      end.wake?.();
    };
    // undici takes any (async) iterable as a body; its DispatchOptions type lists only the others.
    const chunks = chunksOf(body, end) as AsyncIterable<Buffer> as unknown as Readable;
    return super.dispatch({ ...options, body: chunks }, new EndWatcher(handler, over));
  }
}

/**
 * `connector` with every HTTP/2 socket it makes marked for meshlet's header-list limits before
 * undici opens its session ({@link limitH2Session}).
 */
function limitingSessions(connector: buildConnector.connector): buildConnector.connector {
  return (options, callback) =>
    connector(options, (...args) => {
      // undici's connector calls back with the error alone when it fails.
      const socket = args[1] as (Duplex & { alpnProtocol?: unknown }) | null | undefined;
      if (socket?.alpnProtocol === 'h2') limitH2Session(socket);
      callback(...args);
    });
}

/**
 * An endpoint's HTTP/2 connection as meshlet dispatches to it: one {@link H2Client}, replaced by a
 * fresh one when its session received GOAWAY with streams still running. undici's Client takes one
 * request at a time while it has no session, so after a GOAWAY every new request waited for the old
 * session's last stream to end: a watch or a long server stream on an endpoint shutting down
 * gracefully (a peer meshlet draining, gRPC's max connection age) held every new call to that
 * endpoint for as long as the stream lasted, its per-try timeout included (it runs from the
 * request's start). New requests now go to the fresh client: a new session, or, when the endpoint
 * no longer accepts connections, a connect failure at once (retried elsewhere). The old client
 * finishes its streams (and the ones undici replays after the GOAWAY), then closes.
 */
export class H2Endpoint {
  readonly #origin: string;
  readonly #options: UndiciClient.Options;
  #current: H2Client;
  /** Clients whose session went away with streams running: they finish those, then close. */
  readonly #retiring = new Set<H2Client>();
  #closed = false;

  constructor(origin: string, options: UndiciClient.Options) {
    this.#origin = origin;
    this.#options = options;
    this.#current = this.#client();
  }

  #client(): H2Client {
    const client = new H2Client(this.#origin, this.#options);
    client.on('disconnect', () => this.#onDisconnect(client));
    return client;
  }

  /**
   * `client`'s session is gone. A lost connection fails its streams first (undici), so streams
   * still running mean a GOAWAY: the client is retired. Otherwise it stays (it dials on the next request).
   */
  #onDisconnect(client: H2Client): void {
    if (this.#closed || client !== this.#current || client.stats.running === 0) return;
    this.#current = this.#client();
    this.#retiring.add(client);
    const retired = (): void => {
      this.#retiring.delete(client);
    };
    client.close().then(retired, retired);
  }

  /** Dispatches on the current client (undici's `Dispatcher.dispatch`). */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#current.dispatch(options, handler);
  }

  /** Closes every client, waiting for the requests they run (undici's `Dispatcher.close`). */
  close(): Promise<void>;
  close(callback: () => void): void;
  close(callback?: () => void): Promise<void> | void {
    this.#closed = true;
    const closing = [this.#current.close()];
    for (const c of this.#retiring) closing.push(c.close());
    const all = Promise.all(closing).then(() => undefined);
    if (callback === undefined) return all;
    all.then(callback, callback);
  }
}

/**
 * One HTTP/2 connection to an endpoint, multiplexing every request to it (per-request balancing
 * happens above, across endpoints); a new one once the endpoint sent GOAWAY ({@link H2Endpoint}).
 * undici replays, once, the streams the peer had not processed (its GOAWAY last-stream-id); what
 * still fails reaches the request path as a refused stream or a reset. Windows are widened from
 * HTTP/2's 64 KiB default; response heads and trailers are held to the byte limit of meshlet's
 * HTTP/1.1 side, however many fields they have. undici's `Client` and connector come from their
 * own modules (undici's Pool loads them anyway).
 */
export function h2Client(origin: string, options: H2ClientOptions): H2Endpoint {
  return new H2Endpoint(origin, {
    allowH2: true,
    // The connector undici would build from `{ timeout }`, h2c (prior knowledge) when no TLS one is given.
    connect: limitingSessions(
      options.connect ??
        buildConnectorOf({
          allowH2: true,
          // undici's types leave out `useH2c`, which its connector reads (connect.js).
          ...{ useH2c: true },
          timeout: options.connectTimeoutMs,
        }),
    ),
    keepAliveTimeout: 60_000,
    h2Options: {
      useH2c: options.connect === undefined,
      maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
      connectionWindowSize: H2_CONNECTION_WINDOW_BYTES,
      // undici 8.14 reads the stream window from `h2Options.initialWindowSize` only; its types name
      // `settings.initialWindowSize`, which it validates and then ignores (the window stayed 256 KiB).
      initialWindowSize: H2_STREAM_WINDOW_BYTES,
      settings: { initialWindowSize: H2_STREAM_WINDOW_BYTES },
    },
  } as UndiciClient.Options);
}
