// Reads an incoming deadline (x-meshlet-timeout-ms or grpc-timeout) so it can cap the request timeout.

/** The header that carries a request's remaining time budget, in milliseconds, both ways. */
export const TIMEOUT_HEADER = 'x-meshlet-timeout-ms';

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
