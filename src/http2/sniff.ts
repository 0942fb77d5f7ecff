// One cleartext port for HTTP/1.1 and HTTP/2 with prior knowledge (h2c): the first bytes decide.
import type { Server as HttpServer } from 'node:http';
import type { Http2Server } from 'node:http2';
import type { Socket } from 'node:net';

/** The start of the HTTP/2 connection preface; no HTTP/1.1 request starts with it (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** 'h2', 'h1', or undefined while the bytes so far could still be either. */
export function sniffProtocol(bytes: Buffer): 'h1' | 'h2' | undefined {
  const n = Math.min(bytes.length, PREFACE.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== PREFACE[i]) return 'h1';
  return n === PREFACE.length ? 'h2' : undefined;
}

/**
 * Hands an accepted socket to the HTTP/1.1 or the h2c server once its first bytes show which it
 * speaks (the bytes read stay in the socket for the server to parse; `h2` makes the h2c server on
 * first use). A client that sends nothing
 * within `idleMs` is closed, as the HTTP/1.1 server's `headersTimeout` would.
 */
export function routeByPreface(socket: Socket, h1: HttpServer, h2: () => Http2Server, idleMs: number): void {
  let seen: Buffer | null = null;
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    const protocol = sniffProtocol(seen);
    if (protocol === undefined) return;
    socket.off('data', onData);
    socket.off('error', onError);
    socket.setTimeout(0);
    socket.off('timeout', onIdle);
    socket.pause();
    socket.unshift(seen);
    (protocol === 'h2' ? h2() : h1).emit('connection', socket);
    // The server has its listeners on now; the bytes read so far are delivered first.
    process.nextTick(() => socket.resume());
  };
  const onError = (): void => {
    socket.destroy();
  };
  const onIdle = (): void => {
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.setTimeout(idleMs, onIdle);
}
