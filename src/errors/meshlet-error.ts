// The refusals meshlet itself answers with: stable codes, their HTTP status, and the error type.

/** Every code meshlet may answer with, and its HTTP status (the table in DESIGN.md and README.md). */
export const ERROR_STATUS = {
  no_route: 404,
  no_healthy_endpoints: 503,
  circuit_open: 503,
  overloaded: 503,
  rate_limited: 429,
  upstream_timeout: 504,
  upstream_unreachable: 502,
  forbidden: 403,
  unauthorized: 401,
  auth_unavailable: 503,
  bad_request: 400,
  request_timeout: 408,
  body_too_large: 413,
  method_not_allowed: 405,
} as const;

/**
 * Codes that refuse the request itself (what the client sent, or how slowly): never an endpoint's
 * fault, so they are not counted by the breaker, outlier detection or the retry loop, and the
 * connection is closed after the answer (the rest of the request may still be on the wire).
 */
export const CLIENT_FAULT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'bad_request',
  'request_timeout',
  'body_too_large',
  'method_not_allowed',
]);

/** A stable error code; apps branch on it (header `x-meshlet-error`). */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** A request meshlet refused or could not complete; turned into a response in one place. */
export class MeshletError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** The upstream the request was for, when known. */
  readonly upstream: string | undefined;
  /** Seconds for a `retry-after` header (rate_limited). */
  readonly retryAfterSeconds: number | undefined;
  constructor(code: ErrorCode, message: string, upstream?: string, retryAfterSeconds?: number) {
    super(message);
    this.name = 'MeshletError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.upstream = upstream;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
