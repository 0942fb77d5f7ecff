// Request deadlines: reading an incoming one (x-meshlet-timeout-ms or grpc-timeout) to cap the request timeout, and the least budget an attempt starts with.

/** The header that carries a request's remaining time budget, in milliseconds, both ways. */
export const TIMEOUT_HEADER = 'x-meshlet-timeout-ms';

/**
 * The least budget, ms (10), an attempt is started with: an outbound attempt to an endpoint, or an
 * inbound request to the local app. Less cannot bring an answer over a network hop, and cutting an
 * HTTP/2 attempt within its first milliseconds while its request body still streams can send
 * node:http2 into a busy loop (hostile testing: gRPC calls with grpc-timeout 1-5 ms wedged the
 * daemon; 10 ms and more did not). With less left, the request ends with `504 upstream_timeout` at
 * once and nothing is sent; a retry is not started unless this much remains after its backoff.
 */
export const MIN_ATTEMPT_BUDGET_MS = 10;

const GRPC_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/**
 * The deadline a request carries, in ms from now: `x-meshlet-timeout-ms: 200` or gRPC's
 * `grpc-timeout: 200m` (units H, M, S, m, u, n; at most 8 digits). Undefined when absent or malformed
 * (a malformed deadline is ignored rather than refused, as Envoy does).
 */
export function incomingDeadlineMs(
  timeoutMs: string | string[] | undefined,
  grpcTimeout: string | string[] | undefined,
): number | undefined {
  let best: number | undefined;
  if (typeof timeoutMs === 'string' && /^\d{1,10}$/.test(timeoutMs)) best = Number(timeoutMs);
  if (typeof grpcTimeout === 'string') {
    const m = /^(\d{1,8})([HMSmun])$/.exec(grpcTimeout);
    if (m !== null) {
      const ms = Number(m[1]) * GRPC_UNIT_MS[m[2]!]!;
      best = best === undefined ? ms : Math.min(best, ms);
    }
  }
  return best;
}
