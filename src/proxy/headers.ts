// Header rewriting at the proxy boundary: hop-by-hop removal, x-forwarded-*, x-request-id.
import { randomUUID } from 'node:crypto';
import { type IncomingHttpHeaders, validateHeaderName, validateHeaderValue } from 'node:http';
import type { DownstreamRequest } from './downstream.ts';
import { framingRefusal } from './request-body.ts';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus `expect`, which meshlet answers itself. `te` goes too,
 * except `te: trailers` on requests (gRPC needs it, and it is the only `te` HTTP/2 allows).
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'expect',
  // h2c's upgrade parameter: connection-specific, and node:http2 refuses to send it.
  'http2-settings',
]);

/**
 * End-to-end names a `Connection` header may not nominate (RFC 9110 §7.6.1 forbids naming a field
 * meant for every recipient): the authority meshlet routed on and the body's length. Dropping
 * `Host` would send the endpoint another request than meshlet judged (undici puts the endpoint's
 * own address there), so such a request is refused, as Envoy refuses nominating critical headers.
 */
const NOT_NOMINATED = ['host', 'content-length'];

/** Extra hop-by-hop names listed in a `Connection` header, lowercased; null when none. */
function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const text = (Array.isArray(value) ? value.join(',') : value).toLowerCase();
  if (text === 'keep-alive' || text === 'close') return null;
  const out = new Set<string>();
  for (const token of text.split(',')) {
    const t = token.trim();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') out.add(t);
  }
  return out.size === 0 ? null : out;
}

/** What the request header pass found out, besides the header list. */
export interface ForwardedRequestHeaders {
  /** Flat `[name, value, name, value…]` list for undici. */
  headers: string[];
  /** The request's `x-request-id`, generated when absent. */
  requestId: string;
  /**
   * Why the request cannot be forwarded as it is (meshlet's HTTP client would refuse it: a repeated
   * `Host` header; or the endpoint would be sent another request than meshlet judged: `Connection`
   * naming `Host` or `Content-Length`, a `Transfer-Encoding` meshlet cannot pass on, see
   * {@link framingRefusal}), or null. The caller answers 400 `bad_request` and sends nothing.
   */
  invalid: string | null;
}

/**
 * Builds the header list sent upstream from the downstream request: hop-by-hop headers (and those
 * named in `Connection`) dropped; `x-forwarded-for` gets the client address appended;
 * `x-forwarded-proto` set when absent; `x-request-id` added when absent. Trace headers
 * (`traceparent`, `tracestate`, `b3`, `x-b3-*`) and everything else pass through unchanged.
 * @param drop extra lowercased names to remove (e.g. identity headers only meshlet may set).
 */
export function forwardRequestHeaders(
  req: DownstreamRequest,
  proto: 'http' | 'https',
  drop: ReadonlySet<string> | null = null,
): ForwardedRequestHeaders {
  const raw = req.rawHeaders;
  const extra = connectionTokens(req.headers.connection);
  const headers: string[] = [];
  let requestId: string | undefined;
  let forwardedFor: string | undefined;
  let hasProto = false;
  let hosts = 0;
  let authority: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      // HTTP/2 pseudo-headers: undici sets its own; `:authority` becomes Host for an HTTP/1.1 upstream.
      if (name === ':authority') authority = raw[i + 1];
      continue;
    }
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || extra?.has(lower) || drop?.has(lower)) {
      if (lower === 'te' && raw[i + 1]!.trim().toLowerCase() === 'trailers') headers.push('te', 'trailers');
      continue;
    }
    const value = raw[i + 1]!;
    if (lower === 'host') hosts++;
    else if (lower === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      continue;
    }
    if (lower === 'x-request-id') {
      if (requestId !== undefined) continue;
      requestId = value;
    } else if (lower === 'x-forwarded-proto') hasProto = true;
    headers.push(name, value);
  }
  if (hosts === 0 && authority !== undefined) headers.push('host', authority);
  if (requestId === undefined) {
    requestId = randomUUID();
    headers.push('x-request-id', requestId);
  }
  const client = req.socket.remoteAddress;
  if (client !== undefined) forwardedFor = forwardedFor === undefined ? client : `${forwardedFor}, ${client}`;
  if (forwardedFor !== undefined) headers.push('x-forwarded-for', forwardedFor);
  if (!hasProto) headers.push('x-forwarded-proto', proto);
  const nominated = NOT_NOMINATED.find((name) => extra?.has(name) === true);
  const invalid =
    hosts > 1
      ? 'the request has more than one Host header'
      : nominated !== undefined
        ? `the Connection header names ${nominated}, which is end-to-end, not hop-by-hop`
        : framingRefusal(req);
  return { headers, requestId, invalid };
}

/**
 * Builds the header list sent to the client from an upstream response's headers: hop-by-hop
 * headers (and those named in `Connection`) dropped, `x-request-id` echoed when the upstream did not.
 * A 204 (or 1xx) answer loses its `Content-Length` too, as Envoy drops it: RFC 9110 §8.6 forbids
 * one there, and an HTTP/2 client's 204 that carries a non-zero one ends in a stream reset
 * (PROTOCOL_ERROR) instead of the answer.
 * A 304 keeps it (it names the length of the selected representation).
 * @param status the upstream's status code.
 * @param dropMeshletError leave `x-meshlet-error` out (default false). The inbound listener sets it
 *   when the app's answer carries one: only meshlet itself names its refusals to a peer, and the
 *   calling meshlet trusts a peer's client-fault code not to count against the peer
 *   (isPeerClientFault). The outbound side keeps it: it is how a peer meshlet's refusal reaches the app.
 */
export function forwardResponseHeaders(
  upstream: IncomingHttpHeaders,
  requestId: string,
  status: number,
  dropMeshletError = false,
): string[] {
  const extra = connectionTokens(upstream.connection);
  const noLength = status === 204 || status < 200;
  const out: string[] = [];
  let sawRequestId = false;
  for (const name in upstream) {
    if (HOP_BY_HOP.has(name) || extra?.has(name)) continue;
    if (noLength && name === 'content-length') continue;
    if (dropMeshletError && name === 'x-meshlet-error') continue;
    const value = upstream[name];
    if (value === undefined) continue;
    if (name === 'x-request-id') sawRequestId = true;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  if (!sawRequestId) out.push('x-request-id', requestId);
  return out;
}

/**
 * Names never passed on in trailers, besides the hop-by-hop ones: framing, routing and content-format fields, which
 * RFC 9110 §6.5.1 forbids there. node:http2 throws on a connection-specific name, so one such
 * trailer from an HTTP/1.1 endpoint would otherwise take the whole process down.
 */
const NOT_IN_TRAILERS = new Set([
  'content-length',
  'content-range',
  'content-type',
  'content-encoding',
  'host',
]);

/** Whether Node will write this trailer: a token name and a value without control characters. */
function writableTrailer(name: string, value: string | string[]): boolean {
  try {
    validateHeaderName(name);
    if (typeof value === 'string') validateHeaderValue(name, value);
    else for (const v of value) validateHeaderValue(name, v);
    return true;
  } catch {
    return false;
  }
}

/**
 * Filters an upstream's trailers for the client: hop-by-hop names, framing and routing names,
 * pseudo-headers and anything Node would refuse to write are dropped (as Envoy drops them), the
 * rest pass unchanged. Null when nothing is left.
 */
export function forwardTrailers(
  trailers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> | null {
  let out: Record<string, string | string[]> | null = null;
  for (const name in trailers) {
    const value = trailers[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* : */) continue;
    if (HOP_BY_HOP.has(name) || NOT_IN_TRAILERS.has(name) || !writableTrailer(name, value)) continue;
    (out ??= {})[name] = value;
  }
  return out;
}
