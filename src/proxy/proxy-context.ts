// What every exchange shares: logger, metrics and access-log settings, resolved once at load time.
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics, UpstreamMetrics } from '../telemetry/metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';

/** Shared, long-lived state of the request path. */
export interface ProxyContext {
  readonly logger: Logger;
  /** Writes the `access` lines (on the logger's stream); holds the `accessLog` settings. */
  readonly access: AccessLog;
  readonly metrics: Metrics;
  /** Upstreams by name (fallback lookups). */
  readonly upstreams: UpstreamTable;
  /** Metrics of requests that matched no upstream (label upstream=""). */
  readonly unrouted: UpstreamMetrics;
  /** Whether the daemon is draining: responses then carry `connection: close`. */
  draining: boolean;
  /** Longest stall between two chunks of a request body, ms (`listeners.outbound.bodyTimeout`); 0 = none. */
  bodyTimeoutMs: number;
}
