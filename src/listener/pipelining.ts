// One request at a time per HTTP/1.1 connection: pipelined requests wait for the response before them, and the socket stops being parsed meanwhile (still watched for its client leaving).
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * One connection's turns, created with its first request and kept for the connection's life: a
 * request adds one `close` listener to its response and allocates nothing of its own.
 */
interface Turns {
  /** The connection (a response's `req.socket` may be gone by its `close`). */
  readonly socket: Socket;
  /** The wrapped handler of the connection's server. */
  readonly handler: RequestListener;
  /** The `close` listener of the connection's responses: ends the turn of the response it fires for. */
  readonly settled: (this: ServerResponse) => void;
  /** The response of the request in the handler (or about to enter it), or null when none is. */
  current: ServerResponse | null;
  /** Responses of the requests that arrived while another was being answered, oldest first (often none). */
  readonly waiting: ServerResponse[];
}

/** The turns of each connection that has had a request. */
const turns = new WeakMap<Socket, Turns>();

/**
 * Whether a request of this connection is being answered. Then nothing may be written on the
 * socket but that answer: a 408 for a half-read head behind it would be read as its response.
 */
export function answering(socket: object): boolean {
  const turn = turns.get(socket as Socket);
  return turn !== undefined && turn.current !== null;
}

/**
 * Keeps a socket with waiting requests paused: node:http resumes it whenever a response is
 * flushed or a request body is read, which would parse more requests than are being answered.
 */
function hold(this: Socket): void {
  if ((turns.get(this)?.waiting.length ?? 0) > 0) this.pause();
}

/** The node:http internals of a connection's socket that {@link watchWhileHeld} reads and drives. */
interface HttpSocketInternals {
  /** The connection's stream handle: reading while `reading` is true. */
  _handle?: { reading?: boolean; readStart?: () => number } | null;
  /** The connection's request parser, `_consumed` while it reads the handle itself (in C++). */
  parser?: { _consumed?: boolean } | null;
  /** node:http's own pause of a connection whose client reads answers too slowly. */
  _paused?: boolean;
}

/** A `data` listener that takes nothing (see {@link watchWhileHeld}). */
function ignoreBytes(): void {}

/**
 * Keeps a paused connection read, so that its client leaving is seen while its requests wait: an
 * end (FIN) or a reset (RST) closes the connection, which cancels the request being answered
 * (upstream too) and drops the waiting ones, as it does for a request that is not pipelined.
 * A FIN is the client leaving, not a half-close that waits for answers: node:http ends the
 * connection on it (`httpAllowHalfOpen` is off), as it does under a request that is not
 * pipelined, and Envoy too closes an HTTP/1.1 connection its client half-closed.
 *
 * node:http parses a connection's bytes in C++ straight from its handle and stops reading the
 * handle while the socket is paused: the client's leaving stayed unseen until the answer being
 * held ended, and the next waiting request was sent upstream meanwhile. A `data` listener makes
 * node:http pass the bytes through the socket's stream instead (it does so for any such listener);
 * a paused stream goes on reading, at most `readableHighWaterMark` (64 KiB) of bytes it keeps
 * unparsed, then stops: a FIN behind more bytes than that is seen once they are parsed.
 */
function watchWhileHeld(socket: Socket): void {
  const internals = socket as Socket & HttpSocketInternals;
  socket.on('data', ignoreBytes);
  socket.off('data', ignoreBytes);
  const handle = internals._handle;
  // Never with the parser still on the handle: it would parse everything the client sends.
  if (internals.parser?._consumed === true || handle?.readStart === undefined || handle.reading === true)
    return;
  handle.reading = true;
  const err = handle.readStart();
  if (err !== 0) socket.destroy();
}

/** Hands `res`'s request to the handler; its response's `close` ends the turn. */
function start(turn: Turns, res: ServerResponse): void {
  turn.current = res;
  // node:http emits `close` on every response: after `finish`, or when the connection closed first.
  res.on('close', turn.settled);
  turn.handler(res.req, res);
}

/** Whether node:http ends the connection after `res` (its head said `connection: close`). */
function closesConnection(res: ServerResponse): boolean {
  return (res as { _last?: boolean })._last === true;
}

/** `res` finished (or its connection closed): the connection's next request, if one waits, gets its turn. */
function settle(turn: Turns, res: ServerResponse): void {
  if (turn.current !== res) return;
  const socket = turn.socket;
  // A closed connection's waiting requests are dropped unseen (nobody could read their answers),
  // and so are those behind an answer that closes it (`connection: close`, a refusal): a TLS socket
  // is still open then, and its client, told the connection ends, sends them again elsewhere.
  const following = socket.destroyed || closesConnection(res) ? undefined : turn.waiting.shift();
  if (following === undefined) {
    turn.current = null;
    turn.waiting.length = 0;
    socket.off('resume', hold);
    // Not while node:http holds the connection itself: it resumes it once the client read enough.
    if (!socket.destroyed && (socket as HttpSocketInternals)._paused !== true) socket.resume();
    return;
  }
  // The next request runs on a later tick, not inside the previous response's `close`; until then
  // it is the one being answered (answering() stays true, later arrivals queue behind it).
  turn.current = following;
  setImmediate(start, turn, following);
}

/**
 * Wraps an HTTP/1.1 request handler so that a connection has at most one request in the handler at
 * a time, as Envoy's HTTP/1.1 codec and nginx serve pipelined requests: the next one starts when
 * the response before it has finished (or its connection closed). node:http itself hands every
 * pipelined request it parsed to the handler at once, so one client writing 10,000 requests in one
 * go made meshlet forward 10,000 requests in parallel: the upstream's `maxConcurrent` filled and
 * other apps' requests got 503 `overloaded`.
 *
 * While a request waits, the socket is paused: no more bytes are parsed, so what waits is bounded by
 * what node:http had parsed from the bytes already read (one read, at most 64 KiB); at most 64 KiB
 * more are read and kept unparsed, and the client is held back by TCP flow control. A client that
 * leaves meanwhile (FIN or RST) is seen at once: the request being answered is cancelled, upstream
 * too, and the waiting ones are never handled ({@link watchWhileHeld}). Responses still go out in
 * request order (node:http's own queue).
 */
export function oneRequestAtATime(handler: RequestListener): RequestListener {
  return function serialized(req: IncomingMessage, res: ServerResponse) {
    const socket = req.socket;
    let turn = turns.get(socket);
    if (turn === undefined) {
      const created: Turns = {
        socket,
        handler,
        settled(this: ServerResponse) {
          settle(created, this);
        },
        current: null,
        waiting: [],
      };
      turns.set(socket, created);
      turn = created;
    }
    if (turn.current === null) {
      start(turn, res);
      return;
    }
    turn.waiting.push(res);
    if (turn.waiting.length === 1) {
      socket.on('resume', hold);
      socket.pause();
      watchWhileHeld(socket);
    }
  };
}
