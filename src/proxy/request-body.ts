// Prepares a request body for forwarding: held whole for replay up to a limit, otherwise streamed.
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/** The body to send upstream and whether it can be sent again on a retry. */
export interface PreparedBody {
  /** A Buffer (replayable), a stream (sent once), or null (no body). */
  body: Buffer | Readable | null;
  replayable: boolean;
}

const NO_BODY: PreparedBody = Object.freeze({ body: null, replayable: true }) as PreparedBody;

/** Whether the downstream request carries a body. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

async function* concat(prefix: Buffer[], rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield* prefix;
  for await (const chunk of rest) yield chunk;
}

/**
 * Reads up to `limit` bytes of the request body. A body that ends within the limit becomes a Buffer
 * that every attempt can send; a larger one (known from `content-length` at once, or found while
 * reading a chunked body) is streamed: what was read, then the rest, with backpressure, and can be
 * sent only once. Calls `done` once, with null when the client went away first.
 */
export function prepareBody(
  req: IncomingMessage,
  limit: number,
  done: (body: PreparedBody | null) => void,
): void {
  if (!hasBody(req)) return done(NO_BODY);
  const length = Number(req.headers['content-length'] ?? Number.NaN);
  if (length > limit) return done({ body: req, replayable: false });
  const chunks: Buffer[] = [];
  let size = 0;
  let settled = false;
  const finish = (result: PreparedBody | null) => {
    if (settled) return;
    settled = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    done(result);
  };
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size > limit) {
      req.pause();
      finish({ body: Readable.from(concat(chunks, req), { objectMode: false }), replayable: false });
    }
  };
  const onEnd = () =>
    finish({ body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), replayable: true });
  const onClose = () => {
    if (!req.complete) finish(null);
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onClose);
}
