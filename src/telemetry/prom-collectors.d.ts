// Types for prom-client's individual default collectors, which meshlet loads one by one (process-metrics.ts).
declare module 'prom-client/lib/metrics/*.js' {
  import type { Registry } from 'prom-client';
  /** Registers one group of Node process series in `registry`. */
  const collect: (
    registry: Registry,
    config: { prefix?: string; eventLoopMonitoringPrecision?: number },
  ) => void;
  export default collect;
}
