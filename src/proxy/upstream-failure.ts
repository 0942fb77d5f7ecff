// Classifies why an attempt to an endpoint failed (undici and socket error codes → a failure kind).
import { GRPC_STATUS_OF } from '../errors/grpc-status.ts';
import { CLIENT_FAULT, ERROR_STATUS, type ErrorCode, MeshletError } from '../errors/meshlet-error.ts';
import { FORWARDING_LOOP_CODE } from '../upstream/forwarding-loop.ts';

/**
 * Why an attempt failed before a response finished:
 * - `connect`: no connection (refused, unreachable, connect timeout, TLS handshake); nothing was sent.
 * - `reset`: the connection broke after the request may have reached the app.
 * - `timeout`: no response headers in time (per-try or request timeout) or the body went idle.
 * - `aborted`: meshlet cancelled it (client gone, shutdown).
 * - `local`: meshlet's own HTTP client refused to send the request (an invalid header, a body
 *   shorter than its `content-length`): the request's fault, never the endpoint's.
 * - `exhausted`: meshlet could not open a connection because it is out of file descriptors
 *   (`EMFILE`, `ENFILE`): its own failure, never the endpoint's; nothing was sent, the request is
 *   answered 503 `overloaded` and not retried.
 * - `loop`: the connection reached one of meshlet's own listeners (the endpoint's host name resolves
 *   to this host, forwarding-loop.ts) and was closed before any byte was written: the endpoint is
 *   set aside as a forwarding loop, never counted as failing; the request moves to another
 *   endpoint, else gets 503 `no_healthy_endpoints`.
 */
export type FailureKind = 'connect' | 'reset' | 'timeout' | 'aborted' | 'local' | 'exhausted' | 'loop';

/** meshlet's own exhaustion: no file descriptor left in the process (`EMFILE`) or on the host (`ENFILE`). */
const EXHAUSTED_CODES = new Set(['EMFILE', 'ENFILE']);

/** undici's codes for a request it will not send as given (checked before any byte is written). */
const LOCAL_CODES = new Set([
  'UND_ERR_INVALID_ARG',
  'UND_ERR_NOT_SUPPORTED',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
]);

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'MESHLET_ATTEMPT_TIMEOUT',
  'MESHLET_IDLE_TIMEOUT',
]);

/** The error meshlet aborts an attempt with when its per-try timer fires before response headers. */
export class AttemptTimeoutError extends Error {
  readonly code = 'MESHLET_ATTEMPT_TIMEOUT';
  constructor(ms: number) {
    super(`no response headers within ${Math.round(ms)} ms`);
    this.name = 'AttemptTimeoutError';
  }
}

/** The error meshlet aborts an attempt with when its response body stays idle too long (`timeouts.idle`). */
export class IdleTimeoutError extends Error {
  readonly code = 'MESHLET_IDLE_TIMEOUT';
  constructor(ms: number) {
    super(`response body idle for ${Math.round(ms)} ms`);
    this.name = 'IdleTimeoutError';
  }
}

/**
 * The request itself failed while meshlet was reading it (its body stalled, or outgrew the
 * upstream's limit): aborts the attempt, and carries the answer the client gets.
 */
export class RequestFaultError extends Error {
  readonly code = 'MESHLET_REQUEST_FAULT';
  readonly answer: MeshletError;
  constructor(answer: MeshletError) {
    super(answer.message);
    this.name = 'RequestFaultError';
    this.answer = answer;
  }
}

/**
 * An endpoint's response meshlet cannot pass on faithfully (Envoy's "upstream protocol error"): it
 * counts against the endpoint like a reset, and the client gets 502 `upstream_unreachable`.
 */
export class UpstreamProtocolError extends Error {
  readonly code = 'MESHLET_UPSTREAM_PROTOCOL';
  constructor(why: string) {
    super(why);
    this.name = 'UpstreamProtocolError';
  }
}

/**
 * Why a response's `Transfer-Encoding` cannot be relayed, or null. Only `chunked` alone is: undici
 * removes the chunking, but any other coding (`gzip`, `gzip, chunked`) would reach the client as
 * raw coded bytes under no header that says so (RFC 9112 §6.1), so the answer is refused instead.
 */
export function unsupportedTransferCoding(
  value: string | string[] | undefined,
): UpstreamProtocolError | null {
  if (value === undefined || value === 'chunked') return null;
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text.trim().toLowerCase() === 'chunked') return null;
  return new UpstreamProtocolError(`unsupported transfer-encoding "${text}" in the response`);
}

/** The error for a response head Node would not write to the client (see Exchange.onResponseStart). */
export function unsendableHead(err: unknown): UpstreamProtocolError {
  return new UpstreamProtocolError(`response head meshlet cannot pass on (${(err as Error).message})`);
}

/**
 * Whether an answer is a peer meshlet's refusal of the request as the caller's fault: its
 * `x-meshlet-error` names a client-fault code ({@link CLIENT_FAULT}: `bad_request`,
 * `request_timeout`, `body_too_large`, `method_not_allowed`) and it carries the status meshlet
 * answers that code with (error-response.ts): the HTTP status of the error table, or, for a gRPC
 * answer (`grpcStatus` from its headers), the gRPC status the code maps to. The request never
 * reached the peer's app: the endpoint is not to blame. Asked only of failed answers (HTTP ≥ 400 or
 * a non-zero `grpc-status`) from an endpoint reached over mTLS (a peer meshlet); one lookup.
 */
export function isPeerClientFault(
  headers: Record<string, string | string[] | undefined>,
  statusCode: number,
  grpcStatus: number | undefined,
): boolean {
  const code = headers['x-meshlet-error'];
  if (typeof code !== 'string' || !CLIENT_FAULT.has(code as ErrorCode)) return false;
  return grpcStatus === undefined
    ? ERROR_STATUS[code as ErrorCode] === statusCode
    : GRPC_STATUS_OF[code as ErrorCode] === grpcStatus;
}

/** HTTP/2 REFUSED_STREAM: the endpoint did not process the stream (RFC 9113 §8.7), safe to replay. */
export const H2_REFUSED_STREAM = 7;
/** HTTP/2 CANCEL and NO_ERROR. */
const H2_CANCEL = 8;
const H2_NO_ERROR = 0;

/**
 * The HTTP/2 error code the endpoint reset the attempt's stream with (RST_STREAM, its connection
 * still up), or undefined for any other failure (a lost connection, a timeout, meshlet's own
 * abort). node:http2 reports a reset with an error code as ERR_HTTP2_STREAM_ERROR (undici copies the
 * code to `http2ErrorCode`; a lost connection carries one too, under another `code`); a reset with
 * CANCEL or NO_ERROR before response headers closes the stream quietly, and undici reports it as
 * the stream closing (CANCEL) or half-closing (NO_ERROR) without a response.
 */
export function streamResetCode(err: Error): number | undefined {
  const { code, http2ErrorCode } = err as { code?: string; http2ErrorCode?: number };
  if (code === 'ERR_HTTP2_STREAM_ERROR' && typeof http2ErrorCode === 'number') return http2ErrorCode;
  if (code !== 'UND_ERR_INFO') return undefined;
  if (err.message === 'HTTP/2: stream closed before the response was complete') return H2_CANCEL;
  if (err.message === 'HTTP/2: stream half-closed (remote)') return H2_NO_ERROR;
  return undefined;
}

/** The failure kind of an error raised by undici or the socket. */
export function classifyFailure(err: Error, requestStarted: boolean): FailureKind {
  const code = (err as { code?: string }).code ?? '';
  if (code === FORWARDING_LOOP_CODE) return 'loop';
  if (EXHAUSTED_CODES.has(code)) return 'exhausted';
  if (CONNECT_CODES.has(code)) return 'connect';
  if (LOCAL_CODES.has(code)) return 'local';
  if (TIMEOUT_CODES.has(code)) return 'timeout';
  if (code === 'UND_ERR_ABORTED' || err.name === 'AbortError') return 'aborted';
  // TLS handshake failures surface before the request is written: still "nothing sent".
  if (
    !requestStarted &&
    (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED/.test(code))
  )
    return 'connect';
  return 'reset';
}

/** The error meshlet answers with after a failure of this kind. */
export function errorForFailure(
  kind: FailureKind,
  err: Error,
  upstream: string,
  endpoint: string,
): MeshletError {
  const why = (err as { code?: string }).code ?? err.message;
  if (kind === 'local') {
    return new MeshletError(
      'bad_request',
      `meshlet's HTTP client refused the request: ${err.message} (${why})`,
      upstream,
    );
  }
  if (kind === 'loop') {
    return new MeshletError('no_healthy_endpoints', `${err.message} (${why})`, upstream);
  }
  if (kind === 'exhausted') {
    return new MeshletError(
      'overloaded',
      `meshlet is out of file descriptors and could not connect to endpoint ${endpoint} (${why}); nothing was sent`,
      upstream,
    );
  }
  if (kind === 'timeout') {
    return new MeshletError(
      'upstream_timeout',
      `endpoint ${endpoint}: no response in time (${why})`,
      upstream,
    );
  }
  const what =
    kind === 'connect'
      ? 'connect failed'
      : err instanceof UpstreamProtocolError
        ? err.message
        : why === 'UND_ERR_HEADERS_OVERFLOW'
          ? 'response headers too large'
          : 'connection reset';
  return new MeshletError('upstream_unreachable', `endpoint ${endpoint}: ${what} (${why})`, upstream);
}
