// Prepares a request body for forwarding: held whole for replay up to a limit, otherwise streamed.
import { Readable } from 'node:stream';
import { ChunkList } from './chunk-list.ts';
import { type DownstreamRequest, isH2 } from './downstream.ts';

/** The body to send upstream and whether it can be sent again on a retry. */
export interface PreparedBody {
  /** A Buffer (replayable), a stream (sent once), or null (no body). */
  body: Buffer | Readable | null;
  replayable: boolean;
}

const NO_BODY: PreparedBody = Object.freeze({ body: null, replayable: true }) as PreparedBody;

/** Whether the downstream request carries a body (HTTP/2: unless its HEADERS ended the stream). */
export function hasBody(req: DownstreamRequest): boolean {
  if (isH2(req)) return !req.stream.endAfterHeaders;
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * Why an HTTP/1.1 request's body framing cannot be forwarded, or null. node:http takes any
 * `Transfer-Encoding` whose last coding is `chunked` (`gzip, chunked`, `identity, chunked`, two
 * fields) and de-chunks it; meshlet forwards the body re-framed and drops the header (hop-by-hop),
 * so another coding would reach the endpoint as plain bytes. A request whose codings are not
 * `chunked` alone is refused instead (Envoy answers 501; meshlet's refusal is `bad_request`), and so
 * is any `Transfer-Encoding` in an HTTP/1.0 request, whose framing RFC 9112 §6.1 calls faulty.
 * HTTP/2 requests are framed by their DATA frames (node:http2 refuses `transfer-encoding`).
 */
export function framingRefusal(req: DownstreamRequest): string | null {
  if (isH2(req)) return null;
  const value = req.headers['transfer-encoding'];
  if (value === undefined) return null;
  if (req.httpVersionMinor === 0) return 'an HTTP/1.0 request carries Transfer-Encoding (RFC 9112 §6.1)';
  const codings = value.split(',').map((c) => c.trim().toLowerCase());
  if (codings.length === 1 && codings[0] === 'chunked') return null;
  return `Transfer-Encoding "${value}" is not supported: a request body is sent with "chunked" alone or a Content-Length`;
}

/** The listener that keeps a body stream's 'error' from being unhandled. */
function ignore(): void {}

/** `prepareBody`'s answer when the body is larger than the most it may be. */
export const TOO_LARGE = 'too-large';

/**
 * The body as one stream: `prefix` (what was read already, `size` bytes), then the rest of `req`,
 * with backpressure. The rest goes on in what arrived by the next turn of the event loop (one
 * socket read, up to 64 KiB), never one parsed chunk at a time: node:http hands a chunked body of
 * 1-byte chunks over one byte per callback, and each byte was one write upstream (three, with the
 * chunk framing), so meshlet fell far behind a client sending them at full speed, held its socket
 * paused, and `bodyTimeout` took that for a stall. Past `maxBytes` the stream fails with
 * `tooLarge()`; a client gone mid-body fails it too.
 */
function restOf(
  prefix: Buffer,
  size: number,
  req: DownstreamRequest,
  maxBytes: number,
  tooLarge: () => Error,
): Readable {
  /** The stream wants more (its buffer is under its high-water mark): else `req` holds, and so does its client. */
  let wanted = true;
  let scheduled = false;
  const pump = (): void => {
    scheduled = false;
    if (stream.destroyed || !wanted) return;
    const chunks = new ChunkList();
    for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
      chunks.push(chunk);
      if (size + chunks.size > maxBytes) {
        stream.destroy(tooLarge());
        return;
      }
    }
    size += chunks.size;
    if (chunks.size > 0) wanted = stream.push(chunks.toBuffer());
  };
  const stream = new Readable({
    read: () => {
      wanted = true;
      pump();
    },
  });
  // As TeedBody's stream: errors are the exchange's to handle, never an unhandled 'error'.
  stream.on('error', ignore);
  wanted = stream.push(prefix);
  req.on('readable', () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(pump);
  });
  req.once('end', () => {
    if (!stream.destroyed) stream.push(null);
  });
  req.once('close', () => {
    if (!req.complete) stream.destroy(new Error('client closed the request'));
  });
  return stream;
}

/**
 * Reads up to `limit` bytes of the request body. A body that ends within the limit becomes a Buffer
 * that every attempt can send; a larger one (known from `content-length` at once, or found while
 * reading a chunked body) is streamed: what was read, then the rest, with backpressure, and can be
 * sent only once. Calls `done` once, with null when the client went away first, or TOO_LARGE when
 * the body is found larger than `maxBytes` before anything was sent. A streamed chunked body that
 * outgrows `maxBytes` later fails the stream with `tooLarge()`.
 * @param maxBytes the most the body may be, bytes (Infinity: unlimited). The caller refuses a
 *   `content-length` above it before calling.
 */
export function prepareBody(
  req: DownstreamRequest,
  limit: number,
  maxBytes: number,
  tooLarge: () => Error,
  done: (body: PreparedBody | typeof TOO_LARGE | null) => void,
): void {
  if (!hasBody(req)) return done(NO_BODY);
  const length = Number(req.headers['content-length'] ?? Number.NaN);
  if (length > limit) return done({ body: req, replayable: false });
  const chunks = new ChunkList();
  let settled = false;
  const finish = (result: PreparedBody | typeof TOO_LARGE | null) => {
    if (settled) return;
    settled = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    done(result);
  };
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    const size = chunks.size;
    if (size > maxBytes) finish(TOO_LARGE);
    else if (size > limit) {
      req.pause();
      finish({ body: restOf(chunks.toBuffer(), size, req, maxBytes, tooLarge), replayable: false });
    }
  };
  const onEnd = () => finish({ body: chunks.toBuffer(), replayable: true });
  const onClose = () => {
    if (!req.complete) finish(null);
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onClose);
}

/**
 * A request body sent as it arrives (a gRPC stream cannot wait for its end: a bidi call's client
 * sends more only after answers came back) while a copy of its first `limit` bytes is kept, so an
 * attempt that failed before the upstream answered can be replayed once the body ended within the
 * limit (Envoy's retry buffer). Backpressure from the upstream pauses the client.
 *
 * What arrived by the next turn of the event loop goes on as one chunk, as {@link restOf} does for
 * a streamed body: a client sending its messages as 1-byte DATA frames (or 1-byte HTTP/1.1 chunks)
 * had each byte passed on as its own write, a view holding its whole socket read: an HTTP/1.1
 * endpoint got a 200 KB message in 200,000 pieces, and meshlet spent 3× the CPU of a batched body.
 * Message boundaries are not kept on the wire (gRPC framing is in the bytes); the copy kept for
 * replay is the same bytes in the same order.
 */
export class TeedBody {
  /** What the first attempt sends. */
  readonly stream: Readable;
  #chunks: ChunkList | null = new ChunkList();
  #size = 0;
  #ended = false;
  /** The stream wants more (its buffer is under its high-water mark): else `req` holds, and so does its client. */
  #wanted = true;
  /** A batch is due on the next turn of the event loop. */
  #scheduled = false;
  readonly #req: DownstreamRequest;
  readonly #limit: number;
  readonly #maxBytes: number;
  readonly #tooLarge: () => Error;

  /**
   * @param limit bytes kept for replay (`retries.bufferLimitBytes`).
   * @param maxBytes the most the body may be, bytes (Infinity: unlimited); past it the stream fails with `tooLarge()`.
   */
  constructor(req: DownstreamRequest, limit: number, maxBytes: number, tooLarge: () => Error) {
    this.#req = req;
    this.#limit = limit;
    this.#maxBytes = maxBytes;
    this.#tooLarge = tooLarge;
    const stream = new Readable({
      read: () => {
        this.#wanted = true;
        this.#pump();
      },
    });
    // Its errors (the client left, the body outgrew its limit, undici aborting the attempt) are
    // handled where the exchange learns of them; an 'error' with no listener would end the daemon,
    // and there is none while no attempt is reading it (before dispatch, between attempts).
    stream.on('error', ignore);
    this.stream = stream;
    // The first batch is due before the exchange looks at the body on its next turn (a unary call's
    // message arrives with its HEADERS: by then it has ended, and goes as a Buffer).
    this.#schedule();
    req.on('readable', () => this.#schedule());
    req.once('end', () => {
      this.#ended = true;
      if (!stream.destroyed) stream.push(null);
    });
    req.once('close', () => {
      if (!this.#ended) stream.destroy(new Error('client closed the request'));
    });
  }

  /** Whether the body ended within the replay limit (then {@link replay} returns it). */
  get replayable(): boolean {
    return this.#ended && this.#chunks !== null;
  }

  /** The whole body, when it ended within the replay limit; else null (it cannot be sent again). */
  replay(): Buffer | null {
    if (!this.#ended || this.#chunks === null) return null;
    return this.#chunks.toBuffer();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(TeedBody.#onTurn, this);
  }

  static #onTurn(body: TeedBody): void {
    body.#scheduled = false;
    body.#pump();
  }

  /** Passes on everything `req` holds now as one chunk, while the stream wants more. */
  #pump(): void {
    const stream = this.stream;
    if (stream.destroyed || !this.#wanted) return;
    const req = this.#req;
    const batch = new ChunkList();
    for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
      batch.push(chunk);
      if (this.#size + batch.size > this.#maxBytes) {
        stream.destroy(this.#tooLarge());
        return;
      }
    }
    if (batch.size === 0) return;
    const chunk = batch.toBuffer();
    this.#size += chunk.length;
    if (this.#chunks !== null) {
      if (this.#size <= this.#limit) this.#chunks.push(chunk);
      else this.#chunks = null;
    }
    this.#wanted = stream.push(chunk);
  }
}
