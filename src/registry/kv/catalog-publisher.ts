// Hands an etcd/redis catalog to the upstream table: configured names at once, any other service name on first use, for a bounded time.
import type { MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Upstream } from '../../upstream/upstream.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import type { InstanceCatalog } from './instance-catalog.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/** Most on-demand upstreams at once when no option says: 100, the `registry.watch.maxOnDemand` default. */
export const MAX_ON_DEMAND = 100;
/** An on-demand upstream unused this long is removed when no option says, ms: 5 min, the `registry.watch.idleTimeout` default. */
export const ON_DEMAND_IDLE_MS = 300_000;

/** Upstream names config mentions: `upstreams:` keys and routes' upstreams. */
export function configuredUpstreams(config: MeshletConfig): Set<string> {
  return new Set([...Object.keys(config.upstreams), ...config.routes.map((r) => r.upstream)]);
}

/** Options of {@link CatalogPublisher}'s on-demand upstreams: `registry.watch` of the etcd and redis registries. */
export interface OnDemandOptions {
  /** Most on-demand upstreams at once; further new names get `no_route`; 0 disables on-demand discovery. Default {@link MAX_ON_DEMAND}. */
  maxOnDemand?: number;
  /** Idle time after which an on-demand upstream is removed, ms. Default {@link ON_DEMAND_IDLE_MS}. */
  idleTimeoutMs?: number;
}

/** `registry.watch` of an etcd or redis registry as {@link OnDemandOptions}. */
export function onDemandOptions(watch: { idleTimeout: number; maxOnDemand: number }): OnDemandOptions {
  return { maxOnDemand: watch.maxOnDemand, idleTimeoutMs: watch.idleTimeout };
}

/**
 * Publishes catalog changes to the table. An upstream config names gets its endpoints (none yet:
 * 503 `no_healthy_endpoints`); any other name becomes an upstream on first use when the catalog
 * holds that service, and is `no_route` otherwise. Such an on-demand upstream lives as the Consul
 * registry's do: it is removed (its pools closed, its metric series dropped) when its service leaves
 * the catalog or after `idleTimeoutMs` without a request, and at most `maxOnDemand` live at once
 * (further new names get `no_route`, logged once while the limit holds; with 0, every name config
 * does not mention is `no_route`, without a log, as in Consul).
 */
export class CatalogPublisher {
  readonly #table: UpstreamTable;
  readonly #catalog: InstanceCatalog;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger | undefined;
  #maxOnDemand: number;
  #idleTimeoutMs: number;
  #names: Set<string>;
  /** On-demand upstream name → `performance.now()` of its last use. */
  readonly #onDemand = new Map<string, { lastUsed: number }>();
  #sweeper: NodeJS.Timeout | null = null;
  #capLogged = false;

  constructor(
    table: UpstreamTable,
    catalog: InstanceCatalog,
    metrics: RegistryMetrics,
    names: Set<string>,
    logger?: Logger,
    options: OnDemandOptions = {},
  ) {
    this.#table = table;
    this.#catalog = catalog;
    this.#metrics = metrics;
    this.#names = names;
    this.#logger = logger;
    this.#maxOnDemand = options.maxOnDemand ?? MAX_ON_DEMAND;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? ON_DEMAND_IDLE_MS;
  }

  /** On-demand upstreams now (a gauge for tests and status). */
  get onDemand(): number {
    return this.#onDemand.size;
  }

  /** Applies the dirty services (`all`: every configured name too); removes on-demand upstreams whose service left. */
  publish(all = false): void {
    const n = this.#catalog.publish(this.#table, this.#names, all);
    if (n > 0) this.#metrics.snapshots.inc(n);
    for (const name of this.#onDemand.keys()) {
      if (!this.#catalog.has(name)) this.#remove(name, 'left the catalog');
    }
  }

  /** Starts on-demand discovery of names config does not mention, and the idle sweep. */
  attach(): void {
    this.#table.discover = (name) => this.#discover(name);
    this.#table.onUse = (name) => {
      const entry = this.#onDemand.get(name);
      if (entry !== undefined) entry.lastUsed = performance.now();
    };
    this.#startSweeper();
  }

  /**
   * A reloaded `registry.watch`: a new `maxOnDemand` holds for the next new name (upstreams over a
   * lowered cap stay until idle or gone), a new `idleTimeoutMs` for the next sweep (idle time
   * counted from each upstream's last use).
   */
  setOnDemand(options: OnDemandOptions): void {
    this.#maxOnDemand = options.maxOnDemand ?? MAX_ON_DEMAND;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? ON_DEMAND_IDLE_MS;
    if (this.#onDemand.size < this.#maxOnDemand) this.#capLogged = false;
    if (this.#sweeper === null) return;
    clearInterval(this.#sweeper);
    this.#startSweeper();
  }

  /** Sweeps idle on-demand upstreams every quarter of the idle timeout (50 ms to 30 s). */
  #startSweeper(): void {
    const every = Math.max(50, Math.min(30_000, this.#idleTimeoutMs / 4));
    this.#sweeper = setInterval(() => this.#sweepIdle(), every);
    this.#sweeper.unref();
  }

  detach(): void {
    this.#table.discover = null;
    this.#table.onUse = null;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  /**
   * A reloaded config's names; newly named ones get their endpoints now (and are no longer
   * on-demand); a name config no longer mentions becomes on-demand, idle from now.
   */
  setNames(names: Set<string>): void {
    const now = performance.now();
    for (const name of this.#names) {
      if (!names.has(name) && this.#table.has(name)) this.#onDemand.set(name, { lastUsed: now });
    }
    for (const name of names) this.#onDemand.delete(name);
    this.#names = names;
    this.publish(true);
  }

  #discover(name: string): Upstream | undefined {
    if (!this.#catalog.has(name)) return undefined;
    if (this.#names.has(name)) return this.#create(name);
    if (this.#maxOnDemand === 0) return undefined;
    if (this.#onDemand.size >= this.#maxOnDemand) {
      if (!this.#capLogged) {
        this.#capLogged = true;
        this.#logger?.warn({
          msg: 'on-demand upstream limit reached; new upstream names get no_route',
          upstream: name,
          maxOnDemand: this.#maxOnDemand,
        });
      }
      return undefined;
    }
    this.#onDemand.set(name, { lastUsed: performance.now() });
    return this.#create(name);
  }

  #create(name: string): Upstream {
    this.#table.setEndpoints(name, this.#catalog.endpoints(name));
    this.#metrics.snapshots.inc();
    return this.#table.ensure(name);
  }

  #sweepIdle(): void {
    const now = performance.now();
    for (const [name, entry] of this.#onDemand) {
      if (now - entry.lastUsed > this.#idleTimeoutMs) this.#remove(name, 'idle');
    }
  }

  #remove(name: string, why: string): void {
    this.#onDemand.delete(name);
    if (this.#onDemand.size < this.#maxOnDemand) this.#capLogged = false;
    this.#logger?.info({ msg: 'removed on-demand upstream', upstream: name, why });
    void this.#table.remove(name);
  }
}
