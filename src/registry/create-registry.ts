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
  /** Binds a per-upstream listener on 127.0.0.1:port; resolves with the bound port (Consul's sidecar registration). */
  openUpstreamListener?: (upstream: string, port: number) => Promise<number>;
}

/** Builds the registry once its code is loaded. */
export type RegistryFactory = (config: MeshletConfig, deps: RegistryDeps) => Registry;

/**
 * The factory for `config.registry` (`static`, `consul`, `dns`, `etcd` or `redis`). Each registry
 * but static (and the client it uses: `consul`, `etcd3`, `ioredis`, `dns-packet`) is loaded only
 * when configured: a static sidecar does not pay their memory.
 */
export async function registryFactoryFor(config: MeshletConfig): Promise<RegistryFactory> {
  if (config.registry.type === 'consul') {
    const { ConsulRegistry } = await import('./consul/consul-registry.ts');
    return (c, deps) => new ConsulRegistry({ config: c, ...deps });
  }
  if (config.registry.type === 'dns') {
    const { DnsRegistry } = await import('./dns/dns-registry.ts');
    return (c, deps) => new DnsRegistry({ config: c, ...deps });
  }
  if (config.registry.type === 'etcd') {
    const { EtcdRegistry } = await import('./etcd/etcd-registry.ts');
    return (c, deps) => new EtcdRegistry({ config: c, ...deps });
  }
  if (config.registry.type === 'redis') {
    const { RedisRegistry } = await import('./redis/redis-registry.ts');
    return (c, deps) => new RedisRegistry({ config: c, ...deps });
  }
  return (c, deps) => {
    const spec = c.registry;
    if (spec.type !== 'static') throw new Error(`registry type changed to ${spec.type}`);
    return new StaticRegistry({ endpoints: spec.endpoints, file: spec.file, ...deps });
  };
}
