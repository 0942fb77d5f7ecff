// A response head held back from the client with the body read behind it: the wait for the end of the read's turn, and the release.
import type { Writable } from 'node:stream';
import { type DownstreamResponse, startResponse } from './downstream.ts';
import { unsendableHead, type UpstreamProtocolError } from './upstream-failure.ts';

/** A response held back from the client: what goes out once it is released, nothing before. */
export interface HeldResponse {
  readonly status: number;
  /** The head to send, `[name, value, …]`. */
  readonly headers: string[];
  /** Body chunks read behind the head, in order. */
  readonly chunks: Buffer[];
  /** Bytes in `chunks`. */
  bytes: number;
}

/**
 * Sends a held response to the client: its head, then the chunks read behind it; from here on the
 * response streams. Returns the error to fail the attempt with when Node refuses to write the head
 * (node:http2 throws on some names and values; nothing was sent), else whether `res` takes more
 * now (false: its buffer is full, wait for `drain` before reading on).
 */
export function sendHeld(res: DownstreamResponse, held: HeldResponse): boolean | UpstreamProtocolError {
  try {
    startResponse(res, held.status, held.headers, false);
  } catch (err) {
    return unsendableHead(err);
  }
  let flowing = true;
  for (const chunk of held.chunks) flowing = (res as Writable).write(chunk);
  return flowing;
}

/**
 * The wait of a held response head until the end of the turn of the event loop that read it, so
 * that what the endpoint sent in the same read as its head is parsed first: a response malformed
 * right after its head (a bad chunk size, an HTTP/2 DATA frame past `content-length` or on a 204)
 * then fails before anything reached the client, who gets a 502 (or a retry) instead of a closed
 * connection with no answer. Two `setImmediate`s: the first runs after the turn's reads, the second
 * past its close callbacks, since undici's HTTP/1.1 parser destroys a connection whose bytes it
 * cannot parse and fails the request only once the socket closes, in that later phase. Allocated
 * once per owner and reused; `onEnd(owner)` is called when a started wait ends uncancelled.
 */
export class ReadTurn<T> {
  readonly #onEnd: (owner: T) => void;
  readonly #owner: T;
  #immediate: NodeJS.Immediate | null = null;

  constructor(onEnd: (owner: T) => void, owner: T) {
    this.#onEnd = onEnd;
    this.#owner = owner;
  }

  /** Starts the wait (a wait still running is cancelled first). */
  start(): void {
    this.cancel();
    this.#immediate = setImmediate(ReadTurn.#onChecked, this);
  }

  /** Cancels the wait, if one is running: `onEnd` is not called. */
  cancel(): void {
    if (this.#immediate === null) return;
    clearImmediate(this.#immediate);
    this.#immediate = null;
  }

  /** The turn's immediates ran: one more wait, past its close callbacks. */
  static #onChecked<T>(turn: ReadTurn<T>): void {
    turn.#immediate = setImmediate(ReadTurn.#onEnded, turn);
  }

  /** The turn ended with the wait uncancelled: the owner is told. */
  static #onEnded<T>(turn: ReadTurn<T>): void {
    turn.#immediate = null;
    turn.#onEnd(turn.#owner);
  }
}
