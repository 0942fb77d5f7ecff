// One request at a time per HTTP/1.1 connection: pipelined requests wait for the response before them, and the socket stops being read meanwhile.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** The requests of one connection that arrived while another was being answered, oldest first. */
type Waiting = [IncomingMessage, ServerResponse][];

/** Connections with a request in a handler: what waits behind it (often nothing). */
const busy = new WeakMap<Socket, Waiting>();

/**
 * Whether a request of this connection is being answered. Then nothing may be written on the
 * socket but that answer: a 408 for a half-read head behind it would be read as its response.
 */
export function answering(socket: object): boolean {
  return busy.has(socket as Socket);
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
  /**
   * Keeps a socket with waiting requests paused: node:http resumes it whenever a response is
   * flushed or a request body is read, which would parse more requests than are being answered.
   */
  function hold(this: Socket): void {
    if ((busy.get(this)?.length ?? 0) > 0) this.pause();
  }

  function start(socket: Socket, req: IncomingMessage, res: ServerResponse): void {
    let done = false;
    const next = (): void => {
      if (done) return;
      done = true;
      res.off('finish', next);
      res.off('close', next);
      const waiting = busy.get(socket);
      // A closed connection's waiting requests are dropped unseen (nobody could read their answers).
      const following = socket.destroyed ? undefined : waiting?.shift();
      if (following === undefined) {
        busy.delete(socket);
        socket.off('resume', hold);
        if (!socket.destroyed) socket.resume();
        return;
      }
      // The next request runs on a later tick, not inside the previous response's 'finish'.
      setImmediate(start, socket, following[0], following[1]);
    };
    res.on('finish', next);
    res.on('close', next);
    handler(req, res);
  }

  return function serialized(req, res) {
    const socket = req.socket;
    const waiting = busy.get(socket);
    if (waiting === undefined) {
      busy.set(socket, []);
      start(socket, req, res);
      return;
    }
    waiting.push([req, res]);
    if (waiting.length === 1) {
      socket.on('resume', hold);
      socket.pause();
    }
  };
}
