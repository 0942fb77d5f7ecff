// An HTTP/2 endpoint with long response heads and trailers (and ones over meshlet's byte limit), and a client that reads them: for the response-head limit tests.
import { maxHeaderSize } from 'node:http';
import {
  connect,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type SecureClientSessionOptions,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { grpcFrame } from './raw-h2-server.ts';

/** The response-head byte limit of undici's HTTP/1.1 client, which meshlet uses (Node's `http.maxHeaderSize`). */
export const LIMIT = maxHeaderSize;
/** A fixed `date`, so that both endpoints send heads of the same size. */
export const DATE = 'Fri, 04 Dec 2026 10:00:00 GMT';

/** `n` small fields `prefix-N: vN`. */
export function fields(prefix: string, n: number): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < n; i++) out[`${prefix}-${i}`] = `v${i}`;
  return out;
}

/** 40 fields of 1 KiB each (~40 KiB): over the limit, within what node:http2 sends by default. */
export function bigFields(): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < 40; i++) out[`x-big-${i}`] = 'a'.repeat(1017);
  return out;
}

/** The `x-pad` value that makes the head `content-length: 2`, `date`, `x-pad` count `bytes` (names and values, as undici's HTTP/1.1 parser counts). */
export function padFor(bytes: number): string {
  return 'p'.repeat(bytes - ('content-length'.length + 1 + 'date'.length + DATE.length + 'x-pad'.length));
}

/** How an HTTP/2 call through meshlet ended. */
export interface H2Reply {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders | undefined;
  body: Buffer;
  error?: string;
}

/**
 * One request over a fresh HTTP/2 session (h2c, or TLS with `tls`) from a client that takes up to
 * 5,000 header fields (node:http2's default, 128, would refuse a long head itself); bounded by 5 s.
 */
export function h2Call(
  origin: string,
  headers: OutgoingHttpHeaders,
  body?: Buffer,
  tls?: SecureClientSessionOptions,
): Promise<H2Reply> {
  return new Promise((resolve) => {
    const session = connect(origin, { ...tls, maxHeaderListPairs: 5000 });
    const reply: H2Reply = { headers: {}, trailers: undefined, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      reply.body = Buffer.concat(chunks);
      if (error !== undefined) reply.error = error;
      resolve(reply);
    };
    const timer = setTimeout(() => finish('timed out'), 5000);
    session.on('error', (err) => finish(String(err)));
    const stream = session.request(headers, { endStream: body === undefined });
    stream.on('response', (h) => (reply.headers = h));
    stream.on('trailers', (t) => (reply.trailers = t));
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('error', (err) => finish(String(err)));
    stream.on('close', () => finish());
    if (body !== undefined) stream.end(body);
  });
}

/** Answers `stream` with `head`, then `body`, then `trailers` (none when undefined). */
function answer(
  stream: ServerHttp2Stream,
  head: OutgoingHttpHeaders,
  body: Buffer | string,
  trailers?: OutgoingHttpHeaders,
): void {
  stream.respond({ date: DATE, ...head }, { waitForTrailers: trailers !== undefined });
  if (trailers !== undefined) stream.on('wantTrailers', () => stream.sendTrailers(trailers));
  stream.end(body);
}

/**
 * A node:http2 (h2c) endpoint answering by `:path`: long heads and trailers (200 fields), heads of
 * an exact size (`/pad/BYTES`), heads and trailers over the limit, as plain HTTP/2 and as gRPC.
 */
export async function startH2Endpoint(): Promise<{ server: Http2Server; endpoint: string }> {
  const server = createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const path = headers[':path'] ?? '';
    const grpc = { ':status': 200, 'content-type': 'application/grpc' };
    const reply = grpcFrame('reply');
    if (path === '/many') answer(stream, { ':status': 200, ...fields('x-f', 200) }, 'ok', fields('x-t', 200));
    else if (path.startsWith('/pad/'))
      answer(stream, { ':status': 200, 'content-length': '2', 'x-pad': padFor(Number(path.slice(5))) }, 'ok');
    else if (path === '/huge') answer(stream, { ':status': 200, ...bigFields() }, 'ok');
    else if (path === '/huge-trailers') answer(stream, { ':status': 200 }, 'ok', bigFields());
    else if (path === '/pkg.Svc/Many')
      answer(stream, { ...grpc, ...fields('x-md', 200) }, reply, {
        'grpc-status': '0',
        ...fields('x-tr', 200),
      });
    else if (path === '/pkg.Svc/Huge')
      answer(stream, { ...grpc, ...bigFields() }, reply, { 'grpc-status': '0' });
    else if (path === '/pkg.Svc/HugeTrailers')
      answer(stream, grpc, reply, { 'grpc-status': '0', ...bigFields() });
    else answer(stream, { ':status': 404 }, 'unknown path');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** The names among `headers` that start with `prefix`. */
export function named(headers: IncomingHttpHeaders | undefined, prefix: string): string[] {
  return Object.keys(headers ?? {}).filter((name) => name.startsWith(prefix));
}

/** A GET of `path` for `authority` over h2c to `origin` (meshlet's outbound listener). */
export function h2Get(origin: string, authority: string, path: string): Promise<H2Reply> {
  return h2Call(origin, { ':path': path, ':authority': authority });
}

/** A unary-shaped gRPC call (`:path` names the answer) over h2c to `origin` (meshlet's outbound listener). */
export function grpcCall(origin: string, authority: string, path: string): Promise<H2Reply> {
  return h2Call(
    origin,
    {
      ':method': 'POST',
      ':path': path,
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    },
    grpcFrame('req'),
  );
}
