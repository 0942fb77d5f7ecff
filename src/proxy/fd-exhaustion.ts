// The warning that meshlet itself ran out of file descriptors for a connection to an endpoint: once per daemon per 10 s.
import type { Logger } from '../telemetry/logger.ts';
import { RefusalLog } from '../tls/refusal-log.ts';

/** Longest quiet time between two warnings, ms: 10 s. */
export const FD_EXHAUSTION_WARNING_WINDOW_MS = 10_000;

/** One warning log per daemon (keyed by its logger). */
const logs = new WeakMap<Logger, RefusalLog>();

/**
 * Notes that a connection meshlet opens (to an endpoint, the local app or a tunnel's endpoint)
 * failed with `EMFILE` (the process's fd limit) or `ENFILE` (the host's): writes `meshlet out of
 * file descriptors` at warn, with the code and where, at most once per
 * {@link FD_EXHAUSTION_WARNING_WINDOW_MS} per code (the next one says how many were left out,
 * `suppressed`). Each such request is answered 503 `overloaded` and never blamed on the endpoint.
 */
export function noteFdExhaustion(logger: Logger, err: Error, upstream: string): void {
  let log = logs.get(logger);
  if (log === undefined) {
    log = new RefusalLog(logger, {
      msg: 'meshlet out of file descriptors',
      windowMs: FD_EXHAUSTION_WARNING_WINDOW_MS,
      maxKeys: 4,
    });
    logs.set(logger, log);
  }
  const code = (err as { code?: string }).code ?? 'EMFILE';
  log.record(code, {
    code,
    upstream,
    detail:
      'new connections fail until descriptors are freed: raise the fd limit (ulimit -n) or set listeners.*.maxConnections',
  });
}
