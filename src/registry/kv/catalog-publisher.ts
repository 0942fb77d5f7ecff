// Hands an etcd/redis catalog to the upstream table: configured names at once, any other service name on first use.
import type { MeshletConfig } from '../../config/schema.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import type { InstanceCatalog } from './instance-catalog.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/** Upstream names config mentions: `upstreams:` keys and routes' upstreams. */
export function configuredUpstreams(config: MeshletConfig): Set<string> {
  return new Set([...Object.keys(config.upstreams), ...config.routes.map((r) => r.upstream)]);
}

/**
 * Publishes catalog changes to the table. An upstream config names gets its endpoints (none yet:
 * 503 `no_healthy_endpoints`); any other name becomes an upstream on first use when the catalog
 * holds that service, and is `no_route` otherwise.
 */
export class CatalogPublisher {
  readonly #table: UpstreamTable;
  readonly #catalog: InstanceCatalog;
  readonly #metrics: RegistryMetrics;
  #names: Set<string>;

  constructor(table: UpstreamTable, catalog: InstanceCatalog, metrics: RegistryMetrics, names: Set<string>) {
    this.#table = table;
    this.#catalog = catalog;
    this.#metrics = metrics;
    this.#names = names;
  }

  /** Applies the dirty services (`all`: every configured name too). */
  publish(all = false): void {
    const n = this.#catalog.publish(this.#table, this.#names, all);
    if (n > 0) this.#metrics.snapshots.inc(n);
  }

  /** Starts on-demand discovery of names config does not mention. */
  attach(): void {
    this.#table.discover = (name) => {
      if (!this.#catalog.has(name)) return undefined;
      this.#table.setEndpoints(name, this.#catalog.endpoints(name));
      this.#metrics.snapshots.inc();
      return this.#table.ensure(name);
    };
  }

  detach(): void {
    this.#table.discover = null;
  }

  /** A reloaded config's names; newly named ones get their endpoints now. */
  setNames(names: Set<string>): void {
    this.#names = names;
    this.publish(true);
  }
}
