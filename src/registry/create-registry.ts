// Picks and builds the registry `registry.type` names.
import type { MeshletConfig } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { UpstreamTable } from '../upstream/upstream-table.ts';
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

/** Builds the registry once its code is loaded. */
export type RegistryFactory = (config: MeshletConfig, deps: RegistryDeps) => Registry;

/**
 * The factory for `config.registry` (`static` or `consul`). The Consul registry (and the `consul`
 * client it uses) is loaded only when configured: a static sidecar does not pay its memory.
 */
export async function registryFactoryFor(config: MeshletConfig): Promise<RegistryFactory> {
  if (config.registry.type === 'consul') {
    const { ConsulRegistry } = await import('./consul/consul-registry.ts');
    return (c, deps) => new ConsulRegistry({ config: c, ...deps });
  }
  return (c, deps) => {
    const spec = c.registry;
    if (spec.type !== 'static') throw new Error(`registry type changed to ${spec.type}`);
    return new StaticRegistry({ endpoints: spec.endpoints, file: spec.file, ...deps });
  };
}
