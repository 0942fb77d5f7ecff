// Holds an HTTP/2 client stream's 'trailers' event back until the DATA it has buffered is read: undici stops reading a response at its trailers.
import dc from 'node:diagnostics_channel';
import type { ClientHttp2Stream } from 'node:http2';

/** The 'trailers' arguments a stream holds until its 'end'. */
const HELD = Symbol('meshlet.heldTrailers');

type Stream = ClientHttp2Stream & { [HELD]?: unknown[] };
type Emit = (this: Stream, event: string | symbol, ...args: unknown[]) => boolean;

/** The streams' own `emit` (EventEmitter's), taken from the first stream seen. */
let baseEmit: Emit | null = null;

/** Emits the held trailers just before 'end' reaches the stream's other listeners. */
function releaseTrailers(this: Stream): void {
  const args = this[HELD];
  if (args === undefined) return;
  this[HELD] = undefined;
  baseEmit!.call(this, 'trailers', ...args);
}

/**
 * A client stream's `emit`: 'trailers' that arrive while the stream still buffers DATA (its reader
 * paused it) are emitted on 'end', after that data; every other event as before.
 */
function emitTrailersLast(this: Stream, event: string | symbol): boolean {
  if (event !== 'trailers' || this.readableLength === 0) {
    // eslint-disable-next-line prefer-rest-params -- forwards the call as it came, without a rest array per 'data'
    return baseEmit!.apply(this, arguments as unknown as Parameters<Emit>);
  }
  // eslint-disable-next-line prefer-rest-params -- the trailers' own arguments (headers, flags, raw headers)
  this[HELD] = Array.prototype.slice.call(arguments, 1);
  this.prependOnceListener('end', releaseTrailers);
  return this.listenerCount('trailers') > 0;
}

function onStreamCreated(message: unknown): void {
  const stream = (message as { stream: Stream }).stream;
  baseEmit ??= stream.emit as Emit;
  stream.emit = emitTrailersLast as Stream['emit'];
}

let installed = false;

/**
 * Makes every HTTP/2 client stream of this process (node:http2's `http2.client.stream.created`
 * diagnostics channel) emit its 'trailers' after the DATA it has buffered. undici 8.14's HTTP/2
 * client stops listening for DATA on 'trailers' (client-h2.js `onTrailers`): when meshlet had paused
 * an endpoint's stream because its own client read slowly, what that stream still buffered was
 * dropped and the call ended as if complete (a gRPC response truncated, with `grpc-status: 0`).
 * Trailers come after all DATA on the wire (RFC 9113 §8.1), so this only restores that order for
 * a paused reader. Idempotent.
 */
export function emitTrailersAfterData(): void {
  if (installed) return;
  installed = true;
  dc.subscribe('http2.client.stream.created', onStreamCreated);
}
