// Picks and builds the registry `registry.type` names.
import type { MeshletConfig } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
import { ConsulRegistry } from './consul/consul-registry.ts';
import type { Registry } from './registry.ts';
import { StaticRegistry } from './static/static-registry.ts';

/** What every registry gets from the daemon. */
export interface RegistryDeps {
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** The bound port of the mTLS inbound listener, when it runs (Consul registers it). */
  inboundPort?: () => number | undefined;
}

/** The registry for `config.registry` (`static` or `consul`). */
export function createRegistry(config: MeshletConfig, deps: RegistryDeps): Registry {
  const spec = config.registry;
  if (spec.type === 'consul') return new ConsulRegistry({ config, ...deps });
  return new StaticRegistry({ endpoints: spec.endpoints, file: spec.file, ...deps });
}
