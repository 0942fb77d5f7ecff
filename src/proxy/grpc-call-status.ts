// The grpc-status a proxied gRPC call ends with, as the outbound and inbound paths count, log and answer it.
import { respondGrpcStatus } from '../errors/error-response.ts';
import { encodeGrpcMessage, GRPC, GRPC_STATUS_OF, grpcStatusOf, h2ErrorName } from '../errors/grpc-status.ts';
import type { MeshletError } from '../errors/meshlet-error.ts';
import { CLIENT_CLOSED } from '../telemetry/access-log.ts';
import { type DownstreamResponse, endResponse } from './downstream.ts';

/** A call's `grpc-status` not known yet (no Trailers-Only head, no trailers). */
export const NO_GRPC_STATUS = -1;

/**
 * The `grpc-status` the end of a gRPC answer gives its call: its trailers' `grpc-status` (anything
 * malformed UNKNOWN, {@link grpcStatusOf}); with none, INTERNAL when neither did the head (`known`
 * is {@link NO_GRPC_STATUS}) of a `200` answer — gRPC clients read an answer that ends without a
 * status as INTERNAL (grpc-js "Call ended without gRPC status", grpc-go "server closed the stream
 * without sending trailers"), and an endpoint's RST_STREAM CANCEL or NO_ERROR after its head, which
 * undici reports as the response's end, ends the same way. Else {@link NO_GRPC_STATUS}: what the
 * head said, if anything, stands.
 * @param known the status the response's head carried (Trailers-Only), else {@link NO_GRPC_STATUS}.
 * @param httpStatus the answer's HTTP status.
 */
export function grpcStatusAtEnd(
  trailers: Record<string, string | string[] | undefined>,
  known: number,
  httpStatus: number,
): number {
  const trailer = trailers['grpc-status'];
  if (typeof trailer === 'string') return grpcStatusOf(trailer);
  return known === NO_GRPC_STATUS && httpStatus === 200 ? GRPC.INTERNAL : NO_GRPC_STATUS;
}

/**
 * The `grpc-status` a finished gRPC call is counted (`meshlet_grpc_requests_total`) and logged
 * (`grpcStatus`) with: meshlet's own answer's mapped status ({@link GRPC_STATUS_OF}) when `err`,
 * else the one the call ended with (`known`: from the head, the trailers, a failure's or a reset's
 * status), else CANCELLED for a caller that left (`status` 499), else UNKNOWN.
 * @param known the call's status once known, else {@link NO_GRPC_STATUS}.
 * @param status the HTTP status the call is logged with.
 * @param err meshlet's own answer, when it gave one.
 */
export function grpcStatusOfCall(known: number, status: number, err?: MeshletError): number {
  if (err !== undefined) return GRPC_STATUS_OF[err.code];
  if (known !== NO_GRPC_STATUS) return known;
  return status === CLIENT_CLOSED ? GRPC.CANCELLED : GRPC.UNKNOWN;
}

/**
 * Ends a gRPC call whose stream `endpoint` reset with `code` (its connection up) with `grpcStatus`
 * (gRPC's mapping of that reset) and a `grpc-message` naming the endpoint and the code: in trailers
 * once the response started (unless it already ended), else as a Trailers-Only answer carrying
 * `extra` header pairs. Returns true when it answered Trailers-Only (the call's HTTP status is then 200).
 */
export function endResetGrpcCall(
  res: DownstreamResponse,
  endpoint: string,
  code: number,
  grpcStatus: number,
  extra: readonly string[],
): boolean {
  const message = `endpoint ${endpoint}: stream reset (${h2ErrorName(code)})`;
  if (res.headersSent) {
    if (!res.writableEnded)
      endResponse(res, { 'grpc-status': String(grpcStatus), 'grpc-message': encodeGrpcMessage(message) });
    return false;
  }
  respondGrpcStatus(res, grpcStatus, message, extra);
  return true;
}
