// WebSocket peers for tunnel tests (the `ws` package): an echo server and a client that counts what comes back.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

export interface WsEcho {
  readonly port: number;
  readonly endpoint: string;
  readonly server: Server;
  /** Headers of each accepted handshake. */
  readonly handshakes: Record<string, string | string[] | undefined>[];
  /** Close codes the server received. */
  readonly closeCodes: number[];
  close(): Promise<void>;
}

/**
 * A WebSocket echo server on 127.0.0.1: every message goes back as it came (text or binary); a
 * message `close:<code>` makes the server close with that code. `refuse` answers handshakes with
 * that HTTP status instead.
 */
export async function startWsEcho(refuse?: number): Promise<WsEcho> {
  const server = createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 * 1024 });
  const handshakes: WsEcho['handshakes'] = [];
  const closeCodes: number[] = [];
  server.on('upgrade', (req, socket, head) => {
    handshakes.push(req.headers);
    if (refuse !== undefined) {
      socket.end(`HTTP/1.1 ${refuse} Nope\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nrefused`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => {
        const text = isBinary ? '' : data.toString();
        if (text.startsWith('close:')) ws.close(Number(text.slice(6)), 'asked');
        else ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code) => closeCodes.push(code));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    endpoint: `127.0.0.1:${port}`,
    server,
    handshakes,
    closeCodes,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Opens a client; resolves once open, or rejects with the handshake's HTTP status. */
export function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, maxPayload: 8 * 1024 * 1024 });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`handshake answered ${res.statusCode}`), {
            status: res.statusCode,
            headers: res.headers,
            body,
          }),
        ),
      );
    });
    ws.once('error', reject);
  });
}

/** Sends `count` messages (alternating text and binary) and resolves with what came back, in order. */
export function echoMany(
  ws: WebSocket,
  count: number,
  size = 16,
): Promise<{ sent: string[]; got: string[] }> {
  return new Promise((resolve) => {
    const sent: string[] = [];
    const got: string[] = [];
    ws.on('message', (data, isBinary) => {
      got.push(
        `${isBinary ? 'b' : 't'}:${isBinary ? (data as Buffer).subarray(0, 12).toString('hex') : data.toString().slice(0, 24)}`,
      );
      if (got.length === count) resolve({ sent, got });
    });
    for (let i = 0; i < count; i++) {
      if (i % 2 === 0) {
        const text = `m${i}-${'x'.repeat(Math.max(0, size - 8))}`;
        sent.push(`t:${text.slice(0, 24)}`);
        ws.send(text);
      } else {
        const buf = Buffer.alloc(size, i % 251);
        buf.writeUInt32BE(i, 0);
        sent.push(`b:${buf.subarray(0, 12).toString('hex')}`);
        ws.send(buf, { binary: true });
      }
    }
  });
}

/** Resolves with the close code the client saw. */
export function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(1006);
    ws.once('close', (code) => resolve(code));
  });
}

export { WebSocket };
