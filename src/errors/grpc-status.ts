// meshlet's refusals as gRPC answers: the error table's codes mapped to gRPC status codes.
import type { ErrorCode } from './meshlet-error.ts';

/** gRPC status codes meshlet uses (grpc/doc/statuscodes.md). */
export const GRPC = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/**
 * The gRPC status a gRPC caller gets for each of meshlet's own refusals. Chosen as gRPC's HTTP
 * mapping and Envoy do: nothing to route to → UNIMPLEMENTED (Envoy's answer for an unrouted gRPC
 * call); no endpoint, open breaker, unreachable → UNAVAILABLE (what grpc clients retry); timeouts →
 * DEADLINE_EXCEEDED; limits → RESOURCE_EXHAUSTED; identity refused → PERMISSION_DENIED; no or bad gateway credentials → UNAUTHENTICATED; a malformed
 * request → INTERNAL (gRPC's mapping of HTTP 400).
 */
export const GRPC_STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  no_route: GRPC.UNIMPLEMENTED,
  no_healthy_endpoints: GRPC.UNAVAILABLE,
  circuit_open: GRPC.UNAVAILABLE,
  overloaded: GRPC.RESOURCE_EXHAUSTED,
  rate_limited: GRPC.RESOURCE_EXHAUSTED,
  upstream_timeout: GRPC.DEADLINE_EXCEEDED,
  upstream_unreachable: GRPC.UNAVAILABLE,
  forbidden: GRPC.PERMISSION_DENIED,
  unauthorized: GRPC.UNAUTHENTICATED,
  auth_unavailable: GRPC.UNAVAILABLE,
  bad_request: GRPC.INTERNAL,
  request_timeout: GRPC.DEADLINE_EXCEEDED,
  body_too_large: GRPC.RESOURCE_EXHAUSTED,
  method_not_allowed: GRPC.UNIMPLEMENTED,
};

/** Whether a request is a gRPC call (`content-type: application/grpc`, `+proto`, `+json`…). */
export function isGrpcRequest(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/**
 * A gRPC status is a server-side failure (what the breaker, outlier detection and error metrics
 * count, as Envoy maps them to 5xx): UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS.
 */
export function isGrpcServerFailure(status: number): boolean {
  return status === 2 || status === 4 || status === 13 || status === 14 || status === 15;
}

/** Percent-encodes a `grpc-message` value as the gRPC HTTP/2 spec requires (space to ~ pass, but %). */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out +=
      byte < 0x20 || byte > 0x7e || byte === 0x25
        ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
        : String.fromCharCode(byte);
  }
  return out;
}

/**
 * A `grpc-status` value as the code it names: 0-16 as digits; anything else (`abc`, `99`, `1.5`,
 * empty) is UNKNOWN, as a gRPC client reads it (and never NaN in a metric or a log line).
 */
export function grpcStatusOf(value: string): number {
  if (value.length === 0 || value.length > 2) return GRPC.UNKNOWN;
  const code = Number(value);
  return Number.isInteger(code) && code >= 0 && code <= 16 && /^\d+$/.test(value) ? code : GRPC.UNKNOWN;
}

/** HTTP/2 error code names (RFC 9113 §7), by code. */
const H2_ERROR_NAMES: readonly string[] = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

/** An HTTP/2 error code's name (`INTERNAL_ERROR`), or `0x…` for a code RFC 9113 does not name. */
export function h2ErrorName(code: number): string {
  return H2_ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

/**
 * The gRPC status a client reads when the server resets a call's HTTP/2 stream (RST_STREAM) with
 * `code`, as gRPC's PROTOCOL-HTTP2.md "Errors" maps them: REFUSED_STREAM → UNAVAILABLE (the call
 * was not processed: retriable), CANCEL → CANCELLED, ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED,
 * INADEQUATE_SECURITY → PERMISSION_DENIED, and every other code (NO_ERROR, PROTOCOL_ERROR,
 * INTERNAL_ERROR, …, unknown ones) → INTERNAL.
 */
export function grpcStatusOfStreamReset(code: number): number {
  switch (code) {
    case 7:
      return GRPC.UNAVAILABLE;
    case 8:
      return GRPC.CANCELLED;
    case 11:
      return GRPC.RESOURCE_EXHAUSTED;
    case 12:
      return GRPC.PERMISSION_DENIED;
    default:
      return GRPC.INTERNAL;
  }
}
