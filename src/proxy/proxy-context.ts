// What every exchange shares: logger, metrics and access-log settings, resolved once at load time.
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics, UpstreamMetrics } from '../telemetry/metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';

/** Access-log settings: `enabled` and `sampleRate` (0..1). */
export interface AccessLogSettings {
  readonly enabled: boolean;
  readonly sampleRate: number;
}

/** Shared, long-lived state of the request path. */
export interface ProxyContext {
  readonly logger: Logger;
  /** Writes the `access` lines (on the logger's stream). */
  readonly access: AccessLog;
  readonly metrics: Metrics;
  /** Upstreams by name (fallback lookups). */
  readonly upstreams: UpstreamTable;
  accessLog: AccessLogSettings;
  /** Metrics of requests that matched no upstream (label upstream=""). */
  readonly unrouted: UpstreamMetrics;
  /** Whether the daemon is draining: responses then carry `connection: close`. */
  draining: boolean;
}
