// Sends raw bytes over a TCP socket and collects the whole reply: for request forms clients won't send.
import { connect } from 'node:net';

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
