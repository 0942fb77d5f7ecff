// An endpoint's HTTP/1.1 protocol error on an idle connection (bytes no request asked for): recognised on its pool, and logged at most once per 10 s per endpoint.
import type { Pool } from './undici-pool.ts';
import type { Logger } from '../telemetry/logger.ts';
import { RefusalLog } from '../tls/refusal-log.ts';

/** Quiet time of the warning per endpoint, ms: 10 s. */
export const IDLE_PROTOCOL_ERROR_LOG_WINDOW_MS = 10_000;

/** Why an idle connection counted against its endpoint: it sent bytes after a complete response. */
export type IdleProtocolErrorReason = 'unsolicited_response';

/**
 * The reason an HTTP/1.1 connection of an undici pool closed, when the endpoint broke the protocol
 * on it while no request was on it; undefined for every other close. undici raises
 * `SocketError('bad response')` exactly when a response starts with no request running: bytes after
 * a complete response (a second response, a body past its `Content-Length`, garbage, a `100
 * Continue`), in the same read or later; the connection is closed then, never reused. (undici raises
 * it for a `100 Continue` during a request too, but meshlet's parser drops those first:
 * src/proxy/unsolicited-continue.ts.) Not a protocol error, so undefined: the peer's FIN or RST on
 * an idle connection, meshlet's own idle or keep-alive close (`UND_ERR_INFO`), a pool closed on
 * drain, reload or removal, a connect failure (`EMFILE` included), and any failure while a request
 * was on the connection (its exchange judges that one).
 */
export function idleProtocolErrorReason(err: unknown): IdleProtocolErrorReason | undefined {
  if (!(err instanceof Error)) return undefined;
  const { code } = err as { code?: unknown };
  return code === 'UND_ERR_SOCKET' && err.message === 'bad response' ? 'unsolicited_response' : undefined;
}

/** Calls `onError` each time `pool` closes a connection because its endpoint broke the protocol on it while idle. */
export function watchIdleProtocolErrors(
  pool: Pool,
  onError: (reason: IdleProtocolErrorReason, err: Error) => void,
): void {
  pool.on('disconnect', (_origin, _targets, err) => {
    const reason = idleProtocolErrorReason(err);
    if (reason !== undefined) onError(reason, err);
  });
}

/**
 * The warning `endpoint broke HTTP/1.1 on an idle connection`, keyed by endpoint: at most one per
 * {@link IDLE_PROTOCOL_ERROR_LOG_WINDOW_MS} per endpoint (the next says how many were left out,
 * `suppressed`); at most 1,024 endpoints remembered.
 */
export function idleProtocolErrorLog(logger: Logger): RefusalLog {
  return new RefusalLog(logger, {
    msg: 'endpoint broke HTTP/1.1 on an idle connection',
    windowMs: IDLE_PROTOCOL_ERROR_LOG_WINDOW_MS,
    maxKeys: 1024,
  });
}
