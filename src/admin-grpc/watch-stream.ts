// A watch stream's writer (a slow reader gets the latest state, never a backlog) and the cap on open watch streams.
import { type ServerWritableStream, status } from '@grpc/grpc-js';

/**
 * Most streams of one kind (`WatchUpstreams`, health `Watch`) open at once; one more is refused
 * with RESOURCE_EXHAUSTED. Each open stream may hold a message its reader has not taken yet.
 */
export const MAX_WATCH_STREAMS = 100;

/**
 * Writes a watch's messages to its stream one at a time: while one is on its way (its reader's
 * HTTP/2 window full), a newer message replaces the one waiting, as an xDS server sends the
 * current state to a slow client rather than every version it missed. A reader that stopped
 * reading while upstreams churned held every snapshot meshlet made for it (grpc-js queues what
 * it is given: 324 MiB over 200 endpoints-file edits of a 1,000-endpoint table); now at most two.
 */
export class LatestOnlyWriter<T> {
  readonly #call: ServerWritableStream<unknown, T>;
  /** A message was written and its write has not completed yet. */
  #busy = false;
  #waiting: T | undefined;
  #hasWaiting = false;
  readonly #written = (): void => {
    this.#busy = false;
    if (!this.#hasWaiting) return;
    const next = this.#waiting as T;
    this.#waiting = undefined;
    this.#hasWaiting = false;
    this.#send(next);
  };

  constructor(call: ServerWritableStream<unknown, T>) {
    this.#call = call;
  }

  /** Sends `message` now, or once the one on its way was written (a newer one replaces it meanwhile). */
  write(message: T): void {
    if (this.#busy) {
      this.#waiting = message;
      this.#hasWaiting = true;
    } else this.#send(message);
  }

  /** Ends the stream (status OK) after the message on its way and the one waiting, if any. */
  end(): void {
    if (this.#hasWaiting) {
      const last = this.#waiting as T;
      this.#waiting = undefined;
      this.#hasWaiting = false;
      this.#call.write(last);
    }
    this.#call.end();
  }

  #send(message: T): void {
    this.#busy = true;
    this.#call.write(message, this.#written);
  }
}

/** Ends `call` with RESOURCE_EXHAUSTED: `what` (e.g. "WatchUpstreams") has {@link MAX_WATCH_STREAMS} streams open. */
export function refuseWatch(call: ServerWritableStream<unknown, unknown>, what: string): void {
  const details = `too many ${what} streams open (at most ${MAX_WATCH_STREAMS}); try again once one ends`;
  call.emit('error', Object.assign(new Error(details), { code: status.RESOURCE_EXHAUSTED, details }));
}
