// One request at a time per HTTP/1.1 connection: pipelined requests wait for the response before them, and the socket stops being read meanwhile.
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
    if (!socket.destroyed) socket.resume();
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
 * While a request waits, the socket is paused: no more bytes are read, so what waits is bounded by
 * what node:http had parsed from the bytes already read (one read, at most 64 KiB), and the client
 * is held back by TCP flow control. Responses still go out in request order (node:http's own queue).
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
    }
  };
}
