// Node process series (prom-client's default collectors, `meshlet_` prefix); the GC histogram only when asked for.
import type { Registry } from 'prom-client';
import eventLoopLag from 'prom-client/lib/metrics/eventLoopLag.js';
import gc from 'prom-client/lib/metrics/gc.js';
import heapSizeAndUsed from 'prom-client/lib/metrics/heapSizeAndUsed.js';
import heapSpacesSizeAndUsed from 'prom-client/lib/metrics/heapSpacesSizeAndUsed.js';
import osMemoryHeap from 'prom-client/lib/metrics/osMemoryHeap.js';
import processHandles from 'prom-client/lib/metrics/processHandles.js';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors.js';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors.js';
import processRequests from 'prom-client/lib/metrics/processRequests.js';
import processResources from 'prom-client/lib/metrics/processResources.js';
import processStartTime from 'prom-client/lib/metrics/processStartTime.js';
import version from 'prom-client/lib/metrics/version.js';
import { registerProcessCpu } from './process-cpu.ts';

/**
 * Every collector of prom-client's `collectDefaultMetrics` but the GC histogram and the CPU one
 * (process-cpu.ts), in its order.
 */
const COLLECTORS = [
  processStartTime,
  osMemoryHeap,
  processOpenFileDescriptors,
  processMaxFileDescriptors,
  eventLoopLag,
  processResources,
  processHandles,
  processRequests,
  heapSizeAndUsed,
  heapSpacesSizeAndUsed,
  version,
];

/**
 * prom-client's gauges whose names end in `_total`, which Prometheus reserves for counters (`promtool
 * check metrics`: "non-counter metrics should not have _total suffix"). Each is the sum of the
 * by-type gauge beside it (`meshlet_nodejs_active_handles{type}`, `…_requests{type}`,
 * `…_resources{type}`): `sum(meshlet_nodejs_active_handles)` reads the same count.
 */
const GAUGES_NAMED_TOTAL = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/**
 * Registers the `meshlet_process_*` and `meshlet_nodejs_*` series prom-client's
 * `collectDefaultMetrics` would, but the gauges named `_total` ({@link GAUGES_NAMED_TOTAL}), read at
 * scrape time. `meshlet_nodejs_gc_duration_seconds` comes
 * only with `gcDurations` (`metrics.gcDurations`, default off): it needs a PerformanceObserver on
 * every collection, and Node builds each GC entry with deprecated-property wrappers that outlived
 * young-generation collections: ~60 of the ~120 bytes each proxied request left in the old
 * generation at 2,000 req/s, so full mark-compacts came twice as often.
 */
export function registerProcessMetrics(registry: Registry, gcDurations: boolean): void {
  const config = { prefix: 'meshlet_', eventLoopMonitoringPrecision: 10 };
  registerProcessCpu(registry, config.prefix);
  for (const collect of COLLECTORS) collect(registry, config);
  for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(config.prefix + name);
  if (gcDurations) gc(registry, config);
}
