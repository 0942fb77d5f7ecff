// The app-facing side of an exchange: HTTP/1.1 (node:http) or HTTP/2 (node:http2's compatibility API).
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { forwardTrailers } from './headers.ts';

/** A request as a listener received it, over HTTP/1.1 or HTTP/2. */
export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
/** Its response. */
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/**
 * Writes the status and `[name, value, …]` headers (both node:http and node:http2's compatibility
 * API take that form; their TypeScript signatures just do not unify).
 */
export function writeHead(
  res: DownstreamResponse,
  status: number,
  headers: readonly string[] | OutgoingHttpHeaders,
): void {
  (res as ServerResponse).writeHead(status, headers as OutgoingHttpHeaders);
}

/**
 * Whether the request came over HTTP/2: node:http2's request has its stream. Not by version: node:http
 * parses a request line that says `HTTP/2.0` into a plain HTTP/1.1 request with version 2.
 */
export function isH2(req: DownstreamRequest): req is Http2ServerRequest {
  return 'stream' in req;
}

/** The authority the request names: `Host` (HTTP/1.1) or `:authority` (HTTP/2). */
export function authorityOf(req: DownstreamRequest): string {
  const h = req.headers;
  return (h.host ?? (h[':authority'] as string | undefined) ?? '') as string;
}

/**
 * Ends an HTTP/2 response with one HEADERS frame that carries END_STREAM (a gRPC "Trailers-Only"
 * answer: grpc-js reads `grpc-status` from it only then). `headers` are `[name, value, …]`.
 */
export function respondHeadersOnly(
  res: Http2ServerResponse,
  status: number,
  headers: readonly string[],
): void {
  const out: Record<string, string | string[] | number> = { ':status': status };
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const prev = out[name];
    const value = headers[i + 1]!;
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  const stream = res.stream;
  if (!stream.destroyed && !stream.headersSent) stream.respond(out, { endStream: true });
}

/**
 * Starts the response with the upstream's status and headers. A gRPC Trailers-Only answer
 * (`grpc-status` in the headers) over HTTP/2 goes out as one HEADERS frame that ends the stream,
 * and true is returned: nothing more is written.
 */
export function startResponse(
  res: DownstreamResponse,
  status: number,
  headers: readonly string[],
  trailersOnly: boolean,
): boolean {
  if (trailersOnly && 'stream' in res) {
    respondHeadersOnly(res, status, headers);
    return true;
  }
  writeHead(res, status, headers);
  return false;
}

/**
 * Ends the response, sending the upstream's trailers when it had any (gRPC's `grpc-status`, custom
 * ones), filtered by `forwardTrailers`.
 */
export function endResponse(
  res: DownstreamResponse,
  trailers: Record<string, string | string[] | undefined> | null,
): void {
  if (trailers !== null) {
    for (const _ in trailers) {
      const out = forwardTrailers(trailers);
      if (out !== null) res.addTrailers(out as Record<string, string>);
      break;
    }
  }
  res.end();
}
