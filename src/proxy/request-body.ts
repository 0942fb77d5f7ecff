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
 */
export class TeedBody {
  /** What the first attempt sends. */
  readonly stream: Readable;
  #chunks: ChunkList | null = new ChunkList();
  #size = 0;
  #ended = false;

  /**
   * @param limit bytes kept for replay (`retries.bufferLimitBytes`).
   * @param maxBytes the most the body may be, bytes (Infinity: unlimited); past it the stream fails with `tooLarge()`.
   */
  constructor(req: DownstreamRequest, limit: number, maxBytes: number, tooLarge: () => Error) {
    const stream = new Readable({ read: () => req.resume() });
    // Its errors (the client left, the body outgrew its limit, undici aborting the attempt) are
    // handled where the exchange learns of them; an 'error' with no listener would end the daemon,
    // and there is none while no attempt is reading it (before dispatch, between attempts).
    stream.on('error', ignore);
    this.stream = stream;
    req.on('data', (chunk: Buffer) => {
      this.#size += chunk.length;
      if (this.#size > maxBytes) {
        stream.destroy(tooLarge());
        return;
      }
      if (this.#chunks !== null) {
        if (this.#size <= limit) this.#chunks.push(chunk);
        else this.#chunks = null;
      }
      if (!stream.push(chunk)) req.pause();
    });
    req.on('end', () => {
      this.#ended = true;
      stream.push(null);
    });
    req.on('close', () => {
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
}
