// meshlet's error answers written straight to a socket (no ServerResponse owns it: bad bytes, upgrades, CONNECT).
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorBody } from './error-response.ts';
import type { MeshletError } from './meshlet-error.ts';

/** An HTTP/1.1 status line and header block from `[name, value, …]`. */
export function rawHead(status: number, message: string, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/**
 * A whole raw answer with meshlet's JSON error body and `x-meshlet-error`, closing the connection.
 * @param extra more `[name, value, …]` headers.
 */
export function rawErrorPayload(
  err: Pick<MeshletError, 'code' | 'status' | 'message' | 'upstream'>,
  extra: readonly string[] = [],
): string {
  const body: ErrorBody = { error: err.code, message: err.message, upstream: err.upstream ?? null };
  const json = JSON.stringify(body);
  return (
    rawHead(err.status, '', [
      'content-type',
      'application/json',
      'x-meshlet-error',
      err.code,
      ...extra,
      'connection',
      'close',
      'content-length',
      String(Buffer.byteLength(json)),
    ]) + json
  );
}

/** Answers `err` on `socket` and ends it (after the answer is flushed). */
export function refuseRaw(socket: Duplex, err: MeshletError, requestId?: string, attempts?: number): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const extra: string[] = [];
  if (requestId !== undefined) extra.push('x-request-id', requestId);
  if (attempts !== undefined) extra.push('x-meshlet-attempts', String(attempts));
  socket.end(rawErrorPayload(err, extra));
}
