// Sends raw bytes over a TCP socket and collects the whole reply: for request forms clients won't send.
import { connect, createServer, type Server, type Socket } from 'node:net';

/** Writes `text` to 127.0.0.1:port and resolves with everything read until the server closes. */
export function rawRequest(port: number, text: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(reply);
    }, timeoutMs);
    socket.on('data', (d) => {
      reply += d.toString('latin1');
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(reply);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (reply !== '') resolve(reply);
      else reject(err);
    });
    socket.write(text);
  });
}

/** What a raw connection read before it closed. */
export interface CollectedReply {
  /** Everything read, as latin1 text. */
  text: string;
  /** True when the socket was destroyed at the time limit (not closed by the server or by `until`). */
  timedOut: boolean;
  /** The socket's error (ECONNRESET, ECONNREFUSED…), when it had one. */
  error?: Error;
}

/**
 * Collects what `socket` reads (latin1) until it closes, and resolves with it; never rejects (a
 * socket error ends it and is kept in `error`). Whoever called it writes the request.
 * @param options.timeoutMs the socket is destroyed after this long, ms (default 5000); `timedOut` says so
 * @param options.until after each read, true destroys the socket: the reply is whole
 */
export function collectReply(
  socket: Socket,
  options: { timeoutMs?: number; until?: (text: string) => boolean } = {},
): Promise<CollectedReply> {
  const { timeoutMs = 5000, until } = options;
  return new Promise((resolve) => {
    const out: CollectedReply = { text: '', timedOut: false };
    const timer = setTimeout(() => {
      out.timedOut = true;
      socket.destroy();
    }, timeoutMs);
    socket.on('data', (d: Buffer) => {
      out.text += d.toString('latin1');
      if (until?.(out.text) === true) socket.destroy();
    });
    socket.on('error', (err) => {
      out.error ??= err;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** Whether `text` holds one whole HTTP/1.1 reply: its head and, by content-length or the last chunk, its body. */
export function replyComplete(text: string): boolean {
  const head = text.indexOf('\r\n\r\n');
  if (head === -1) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, head));
  return length !== null ? text.length >= head + 4 + Number(length[1]) : text.endsWith('0\r\n\r\n');
}

/**
 * Writes `text` (latin1) to 127.0.0.1:port and resolves with the reply once it is whole (see
 * {@link replyComplete}) or the server ends the connection; rejects on a socket error or when no
 * whole reply came within `timeoutMs` (default 5000 ms). Unlike {@link rawRequest}, it does not wait for
 * the server to close a keep-alive connection.
 */
export async function rawExchange(port: number, text: string, timeoutMs = 5000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  const collected = collectReply(socket, { timeoutMs, until: replyComplete });
  socket.write(Buffer.from(text, 'latin1'));
  const reply = await collected;
  if (reply.error !== undefined) throw reply.error;
  if (reply.timedOut)
    throw new Error(`no complete reply within ${timeoutMs} ms: ${JSON.stringify(reply.text.slice(0, 200))}`);
  return reply.text;
}

/** Decodes a chunked body. */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const nl = body.indexOf('\r\n', at);
    if (nl === -1) return out;
    const size = Number.parseInt(body.slice(at, nl), 16);
    if (!(size > 0)) return out;
    out += body.slice(nl + 2, nl + 2 + size);
    at = nl + 2 + size + 2;
  }
}

/** Splits a raw HTTP/1.1 reply into status, lowercased headers and body (chunked decoded). */
export function parseReply(reply: string): { status: number; headers: Record<string, string>; body: string } {
  const end = reply.indexOf('\r\n\r\n');
  const head = reply.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const raw = reply.slice(end + 4);
  const body = headers['transfer-encoding'] === 'chunked' ? dechunk(raw) : raw;
  return { status: Number(head[0]?.split(' ')[1]), headers, body };
}

/** A raw HTTP/1.1 endpoint: writes the same bytes as its answer to every request head it reads. */
export interface RawEndpoint {
  readonly server: Server;
  readonly port: number;
  /** `127.0.0.1:PORT`, for a static registry. */
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * Starts a raw endpoint that answers every request head with `answer`, for answers no HTTP server
 * library would write (interim codes, odd framing, forbidden trailers); with `close` it ends the
 * connection after each answer (for a body delimited by the close).
 */
export async function startRawEndpoint(answer: string, close = false): Promise<RawEndpoint> {
  const sockets = new Set<Socket>();
  const server = createServer((socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let seen = '';
    socket.on('error', () => {});
    socket.on('data', (d) => {
      seen += d.toString('latin1');
      while (seen.includes('\r\n\r\n')) {
        seen = seen.slice(seen.indexOf('\r\n\r\n') + 4);
        socket.write(answer);
        if (close) socket.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    endpoint: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
