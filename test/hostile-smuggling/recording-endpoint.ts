// A raw HTTP/1.1 endpoint for smuggling tests: keeps every byte it receives and parses it strictly into requests.
import { createServer, type Server, type Socket } from 'node:net';

/** One request the endpoint parsed, with its head as it came and its body. */
export interface SeenRequest {
  /** The request line. */
  readonly line: string;
  /** Header fields as they came: [name, value] (value trimmed of spaces and tabs). */
  readonly fields: [string, string][];
  readonly body: string;
}

/** What one connection to the endpoint carried. */
export interface SeenConnection {
  /** Every byte received, latin1. */
  raw: string;
  /** Requests parsed from it, in order. */
  requests: SeenRequest[];
  /** Why the bytes could not be parsed as well-framed requests (ambiguous framing, bad chunk…), or null. */
  malformed: string | null;
}

/** A recording endpoint: see {@link startRecordingEndpoint}. */
export interface RecordingEndpoint {
  readonly port: number;
  /** `127.0.0.1:PORT`, for a static registry. */
  readonly endpoint: string;
  /** Every connection accepted, in order. */
  readonly connections: SeenConnection[];
  /** Every request parsed, over all connections, in the order they were parsed. */
  requests(): SeenRequest[];
  /** The connections that were malformed. */
  malformed(): SeenConnection[];
  close(): Promise<void>;
}

const CRLF = '\r\n';

/** Whether `value` holds a control character other than HTAB (0x00–0x08, 0x0A–0x1F, DEL). */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/** Parses one request from `text` at `at`: the request and where the next starts, 'more' when incomplete, or an error string. */
function parseOne(text: string, at: number): { req: SeenRequest; next: number } | 'more' | { error: string } {
  const end = text.indexOf('\r\n\r\n', at);
  if (end === -1) {
    if (/[\r\n]/.test(text.slice(at).replace(/\r\n/g, ''))) return { error: 'bare CR or LF in a head' };
    return 'more';
  }
  const lines = text.slice(at, end).split(CRLF);
  const line = lines[0]!;
  if (!/^[A-Z]+ \S+ HTTP\/1\.1$/.test(line)) return { error: `bad request line ${JSON.stringify(line)}` };
  const fields: [string, string][] = [];
  for (const l of lines.slice(1)) {
    const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/.exec(l);
    if (m === null || hasControl(m[2]!)) return { error: `bad field ${JSON.stringify(l)}` };
    fields.push([m[1]!, m[2]!]);
  }
  const named = (n: string) => fields.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
  const lengths = named('content-length');
  const codings = named('transfer-encoding');
  if (lengths.length > 1) return { error: 'more than one Content-Length' };
  if (lengths.length === 1 && codings.length > 0) return { error: 'Content-Length with Transfer-Encoding' };
  let next = end + 4;
  let body = '';
  if (codings.length > 0) {
    if (codings.length > 1 || codings[0] !== 'chunked')
      return { error: `Transfer-Encoding ${codings.join(',')}` };
    for (;;) {
      const nl = text.indexOf(CRLF, next);
      if (nl === -1) return 'more';
      const size = text.slice(next, nl);
      if (!/^[0-9a-fA-F]{1,8}$/.test(size)) return { error: `bad chunk size ${JSON.stringify(size)}` };
      const n = Number.parseInt(size, 16);
      if (n === 0) {
        const trailerEnd = text.indexOf(CRLF, nl + 2);
        if (trailerEnd === -1) return 'more';
        if (trailerEnd !== nl + 2) return { error: 'trailers' };
        next = trailerEnd + 2;
        break;
      }
      if (text.length < nl + 2 + n + 2) return 'more';
      if (text.slice(nl + 2 + n, nl + 4 + n) !== CRLF) return { error: 'chunk not followed by CRLF' };
      body += text.slice(nl + 2, nl + 2 + n);
      next = nl + 4 + n;
    }
  } else if (lengths.length === 1) {
    if (!/^\d+$/.test(lengths[0]!)) return { error: `bad Content-Length ${JSON.stringify(lengths[0])}` };
    const n = Number(lengths[0]);
    if (text.length < next + n) return 'more';
    body = text.slice(next, next + n);
    next += n;
  }
  return { req: { line, fields, body }, next };
}

/**
 * Starts an endpoint on 127.0.0.1 (port 0) that keeps every byte of every connection, parses them
 * strictly as HTTP/1.1 requests (one Content-Length of digits, or `Transfer-Encoding: chunked`
 * alone, never both; CRLF line ends; no controls), and answers each whole request with `200 ok`.
 * Bytes it cannot parse mark the connection malformed and close it.
 */
export async function startRecordingEndpoint(): Promise<RecordingEndpoint> {
  const connections: SeenConnection[] = [];
  const log: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const seen: SeenConnection = { raw: '', requests: [], malformed: null };
    connections.push(seen);
    let at = 0;
    socket.on('data', (d: Buffer) => {
      seen.raw += d.toString('latin1');
      while (seen.malformed === null && at < seen.raw.length) {
        const r = parseOne(seen.raw, at);
        if (r === 'more') return;
        if ('error' in r) {
          seen.malformed = r.error;
          socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return;
        }
        seen.requests.push(r.req);
        log.push(r.req);
        at = r.next;
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    endpoint: `127.0.0.1:${port}`,
    connections,
    requests: () => log.slice(),
    malformed: () => connections.filter((c) => c.malformed !== null),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
