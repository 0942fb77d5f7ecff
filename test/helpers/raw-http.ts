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
