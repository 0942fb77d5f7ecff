// The one place that turns a MeshletError into an HTTP response (status, JSON body, x-meshlet-error).
import type { ServerResponse } from 'node:http';
import { CLIENT_FAULT, type MeshletError } from './meshlet-error.ts';

/** Body of every error meshlet itself returns. */
export interface ErrorBody {
  error: string;
  message: string;
  upstream: string | null;
}

/**
 * Writes `err` as meshlet's error response: its status, `{"error","message","upstream"}` and
 * `x-meshlet-error: CODE` (plus `retry-after` when set, and `x-meshlet-attempts` once attempts were made). When headers already went out, the
 * response is cut instead, so the client sees a broken body rather than a spliced one.
 */
export function sendError(
  res: ServerResponse,
  err: MeshletError,
  requestId?: string,
  attempts?: number,
): void {
  if (res.headersSent) {
    res.destroy(err);
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
  if (CLIENT_FAULT.has(err.code)) headers.connection = 'close';
  res.writeHead(err.status, headers);
  res.end(payload);
}
