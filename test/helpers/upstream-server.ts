// A real HTTP upstream for tests: records each request and answers with a handler (echo by default).
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What the upstream saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

export interface TestUpstream {
  readonly port: number;
  readonly address: string;
  /** `127.0.0.1:port` as config writes an endpoint. */
  readonly endpoint: string;
  readonly requests: SeenRequest[];
  /** Connections open to it now (meshlet's pooled sockets included). */
  openConnections(): number;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

/** Answers `{"port", "method", "url", "headers"}` as JSON. */
export const echo =
  (port: () => number): Handler =>
  (req, res) => {
    const body = JSON.stringify({ port: port(), method: req.method, url: req.url, headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream-port': String(port()) });
      res.end(body);
    });
  };

/** Starts an upstream on 127.0.0.1, port 0 unless given. */
export async function startUpstream(handler?: Handler, port = 0): Promise<TestUpstream> {
  const requests: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  let boundPort = 0;
  const h = handler ?? echo(() => boundPort);
  const server = createServer((req, res) => {
    const seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
    };
    requests.push(seen);
    h(req, res, seen);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  boundPort = (server.address() as AddressInfo).port;
  return {
    port: boundPort,
    address: '127.0.0.1',
    endpoint: `127.0.0.1:${boundPort}`,
    requests,
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port that was free a moment ago and has nothing listening now (for "connection refused"). */
export async function closedPort(): Promise<number> {
  const u = await startUpstream();
  await u.close();
  return u.port;
}
