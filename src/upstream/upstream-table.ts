// The upstreams this meshlet knows, by name: created from config and discovery, looked up per request.

import type { UpstreamSpec } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { Endpoint } from './endpoint.ts';
import type { OwnListeners } from './forwarding-loop.ts';
import { type PoolFactory, Upstream } from './upstream.ts';
import { resolveUpstreamSettings, type UpstreamSettings } from './upstream-settings.ts';

/**
 * Name → Upstream. Registries fill it; the router reads it. A name that is neither configured nor
 * discovered is not an upstream (the request gets `no_route`), unless `discover` is set, which
 * registries with on-demand discovery (Consul) use to start watching a name on first use.
 */
export class UpstreamTable {
  readonly #upstreams = new Map<string, Upstream>();
  readonly #metrics: Metrics;
  readonly #poolFactory: PoolFactory | undefined;
  readonly #logger: Logger | undefined;
  readonly #ownListeners: OwnListeners | undefined;
  #specs: Readonly<Record<string, UpstreamSpec>>;
  readonly #defaultSpec: UpstreamSpec;
  /** Called for a name not in the table; returns the new upstream or undefined. */
  discover: ((name: string) => Upstream | undefined) | null = null;
  /** Called with each name `get` finds (registries that stop idle on-demand watches track use with it). */
  onUse: ((name: string) => void) | null = null;

  /**
   * @param specs `config.upstreams`.
   * @param defaultSpec `config.defaults.upstream`: the policy of an upstream `specs` does not name.
   * @param logger given to each upstream (it logs endpoints that break HTTP/1.1 on an idle connection).
   * @param ownListeners given to each upstream: endpoints that are meshlet's own listeners are refused.
   */
  constructor(
    metrics: Metrics,
    specs: Readonly<Record<string, UpstreamSpec>>,
    defaultSpec: UpstreamSpec,
    poolFactory?: PoolFactory,
    logger?: Logger,
    ownListeners?: OwnListeners,
  ) {
    this.#metrics = metrics;
    this.#logger = logger;
    this.#ownListeners = ownListeners;
    this.#specs = specs;
    this.#defaultSpec = defaultSpec;
    this.#poolFactory = poolFactory;
    for (const name of Object.keys(specs)) this.ensure(name);
  }

  /** The upstream called `name`, if known (or discovered now). */
  get(name: string): Upstream | undefined {
    const found = this.#upstreams.get(name);
    if (found !== undefined) {
      if (this.onUse !== null) this.onUse(name);
      return found;
    }
    return this.discover === null ? undefined : this.discover(name);
  }

  /** Whether `name` is in the table (without triggering discovery). */
  has(name: string): boolean {
    return this.#upstreams.has(name);
  }

  /** The upstream called `name`, created with its configured settings when new. */
  ensure(name: string): Upstream {
    let upstream = this.#upstreams.get(name);
    if (upstream === undefined) {
      upstream = new Upstream(
        name,
        this.settingsFor(name),
        this.#metrics,
        this.#poolFactory,
        this.#logger,
        this.#ownListeners,
      );
      this.#upstreams.set(name, upstream);
    }
    return upstream;
  }

  /** Settings for `name` from config, or the defaults. */
  settingsFor(name: string): UpstreamSettings {
    return resolveUpstreamSettings(this.#specs[name] ?? this.#defaultSpec, name);
  }

  /** Replaces an upstream's endpoints, creating the upstream when new. */
  setEndpoints(name: string, endpoints: readonly Endpoint[]): void {
    this.ensure(name).setEndpoints(endpoints);
  }

  /** Applies reloaded upstream specs to existing upstreams and creates newly configured ones. */
  applySpecs(specs: Readonly<Record<string, UpstreamSpec>>): void {
    this.#specs = specs;
    for (const [name, upstream] of this.#upstreams) upstream.updateSettings(this.settingsFor(name));
    for (const name of Object.keys(specs)) this.ensure(name);
  }

  /**
   * Removes an upstream (e.g. a stopped on-demand watch), closes its pools (in-flight requests
   * finish), then drops its metric series, unless the name came back meanwhile: the new upstream
   * carries them on.
   */
  async remove(name: string): Promise<void> {
    const upstream = this.#upstreams.get(name);
    if (upstream === undefined) return;
    this.#upstreams.delete(name);
    await upstream.close();
    if (!this.#upstreams.has(name)) this.#metrics.releaseUpstream(name);
  }

  values(): IterableIterator<Upstream> {
    return this.#upstreams.values();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#upstreams.values()].map((u) => u.close()));
  }
}
