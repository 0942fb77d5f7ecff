// The one place that turns a MeshletError into an HTTP response (status, JSON body, x-meshlet-error).
import { type DownstreamResponse, respondHeadersOnly, writeHead } from '../proxy/downstream.ts';
import { encodeGrpcMessage, GRPC_STATUS_OF } from './grpc-status.ts';
import { CLIENT_FAULT, type MeshletError } from './meshlet-error.ts';

/** Body of every error meshlet itself returns. */
export interface ErrorBody {
  error: string;
  message: string;
  upstream: string | null;
}

/**
 * Answers a gRPC call with its status alone (Trailers-Only): HTTP 200, `content-type:
 * application/grpc`, `grpc-status`, `grpc-message` (percent-encoded here) and `extra` headers, in
 * one HEADERS frame that ends the stream over HTTP/2. Only before anything went out.
 */
export function respondGrpcStatus(
  res: DownstreamResponse,
  status: number,
  message: string,
  extra: readonly string[],
): void {
  const headers = ['content-type', 'application/grpc', 'grpc-status', String(status)];
  headers.push('grpc-message', encodeGrpcMessage(message), ...extra);
  if ('stream' in res) respondHeadersOnly(res, 200, headers);
  else {
    writeHead(res, 200, headers);
    res.end();
  }
}

/**
 * Writes `err` as meshlet's error response: its status, `{"error","message","upstream"}` and
 * `x-meshlet-error: CODE` (plus `retry-after` when set, and `x-meshlet-attempts` once attempts were
 * made). To a gRPC caller (`grpc` true) it is a gRPC answer instead: HTTP 200, `grpc-status` (the
 * code's mapping in grpc-status.ts) and `grpc-message`, in one HEADERS frame that ends the stream
 * (Trailers-Only). When headers already went out, an HTTP/2 gRPC call ends with that status in its
 * trailers (Linkerd's "gRPC rescue": the caller learns why, instead of seeing a reset stream); any
 * other response is cut, so the client sees a broken body rather than a spliced one.
 */
export function sendError(
  res: DownstreamResponse,
  err: MeshletError,
  requestId?: string,
  attempts?: number,
  grpc = false,
): void {
  if (res.headersSent) {
    if (grpc && 'stream' in res && !res.writableEnded && !res.stream.destroyed) {
      res.addTrailers({
        'grpc-status': String(GRPC_STATUS_OF[err.code]),
        'grpc-message': encodeGrpcMessage(err.message),
      });
      res.end();
    } else res.destroy(err);
    return;
  }
  const h2 = 'stream' in res;
  if (grpc) {
    const extra = ['x-meshlet-error', err.code];
    if (requestId !== undefined) extra.push('x-request-id', requestId);
    if (attempts !== undefined) extra.push('x-meshlet-attempts', String(attempts));
    respondGrpcStatus(res, GRPC_STATUS_OF[err.code], err.message, extra);
    return;
  }
  const body: ErrorBody = { error: err.code, message: err.message, upstream: err.upstream ?? null };
  const payload = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'x-meshlet-error': err.code,
  };
  if (requestId !== undefined) headers['x-request-id'] = requestId;
  if (attempts !== undefined) headers['x-meshlet-attempts'] = attempts;
  if (err.retryAfterSeconds !== undefined)
    headers['retry-after'] = Math.max(1, Math.ceil(err.retryAfterSeconds));
  // HTTP/2 has no connection header: the stream simply ends.
  if (!h2 && CLIENT_FAULT.has(err.code)) headers.connection = 'close';
  writeHead(res, err.status, headers);
  res.end(payload);
}
