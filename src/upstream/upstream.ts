// An upstream: its endpoint snapshot, live endpoint handles, balancer and one connection pool per endpoint.
import { Pool } from 'undici';
import type { LoadBalancer } from '../balancer/load-balancer.ts';
import { RoundRobinBalancer } from '../balancer/round-robin.ts';
import type { Metrics, UpstreamMetrics } from '../telemetry/metrics.ts';
import { type Endpoint, EndpointHandle } from './endpoint.ts';
import type { UpstreamSettings } from './upstream-settings.ts';

/** Creates the balancer an upstream's settings name. */
export type BalancerFactory = (settings: UpstreamSettings) => LoadBalancer;

const defaultBalancerFactory: BalancerFactory = () => new RoundRobinBalancer();

/** Per-endpoint keep-alive pool options. */
function createPool(endpoint: Endpoint, settings: UpstreamSettings): Pool {
  return new Pool(`http://${endpoint.id}`, {
    pipelining: 1,
    connect: { timeout: settings.connectTimeoutMs },
    headersTimeout: settings.requestTimeoutMs,
    bodyTimeout: settings.idleTimeoutMs,
    keepAliveTimeout: 4000,
  });
}

/**
 * A named destination service. Discovery hands it immutable endpoint snapshots (`setEndpoints`);
 * it keeps one handle and one undici pool per endpoint across snapshots, and the balancer picks
 * among the eligible handles on each attempt.
 */
export class Upstream {
  readonly name: string;
  settings: UpstreamSettings;
  readonly metrics: UpstreamMetrics;
  #balancer: LoadBalancer;
  readonly #balancerFactory: BalancerFactory;
  readonly #metricsRoot: Metrics;
  #handles: readonly EndpointHandle[] = [];
  readonly #pools = new Map<EndpointHandle, Pool>();
  /** True once discovery delivered a first snapshot (even an empty one). */
  synced = false;

  constructor(
    name: string,
    settings: UpstreamSettings,
    metrics: Metrics,
    balancerFactory: BalancerFactory = defaultBalancerFactory,
  ) {
    this.name = name;
    this.settings = settings;
    this.#metricsRoot = metrics;
    this.metrics = metrics.forUpstream('outbound', name);
    this.#balancerFactory = balancerFactory;
    this.#balancer = balancerFactory(settings);
    this.#publishEndpointGauges();
  }

  /** The live endpoint handles, in snapshot order. */
  get endpoints(): readonly EndpointHandle[] {
    return this.#handles;
  }

  get balancerKind(): string {
    return this.#balancer.kind;
  }

  /**
   * Swaps in a new endpoint snapshot. Handles (and their pools) of endpoints that stay are kept;
   * pools of endpoints that left are closed gracefully (in-flight requests finish).
   */
  setEndpoints(snapshot: readonly Endpoint[]): void {
    const byId = new Map<string, EndpointHandle>();
    for (const h of this.#handles) byId.set(h.endpoint.id, h);
    const next: EndpointHandle[] = [];
    for (const endpoint of snapshot) {
      const old = byId.get(endpoint.id);
      if (old !== undefined && sameEndpoint(old.endpoint, endpoint)) {
        byId.delete(endpoint.id);
        next.push(old);
        continue;
      }
      const handle = new EndpointHandle(endpoint);
      this.#pools.set(handle, createPool(endpoint, this.settings));
      next.push(handle);
    }
    for (const gone of byId.values()) this.#retire(gone);
    this.#handles = next;
    this.synced = true;
    this.#balancer.update(next);
    this.#publishEndpointGauges();
  }

  /** Applies new settings (a config reload): a new balancer, and fresh pools when timeouts changed. */
  updateSettings(settings: UpstreamSettings): void {
    const old = this.settings;
    this.settings = settings;
    if (old.loadBalancer !== settings.loadBalancer) this.#balancer = this.#balancerFactory(settings);
    if (
      old.connectTimeoutMs !== settings.connectTimeoutMs ||
      old.requestTimeoutMs !== settings.requestTimeoutMs
    ) {
      for (const h of this.#handles) {
        const pool = this.#pools.get(h);
        this.#pools.set(h, createPool(h.endpoint, settings));
        pool?.close().catch(() => {});
      }
    }
    this.#balancer.update(this.#handles);
  }

  /** Picks an endpoint for an attempt (see LoadBalancer.pick). */
  pick(hashKey: string | undefined, avoid: EndpointHandle | undefined): EndpointHandle | undefined {
    return this.#balancer.pick(hashKey, avoid);
  }

  /** The connection pool of a handle this upstream gave out. */
  poolOf(handle: EndpointHandle): Pool | undefined {
    return this.#pools.get(handle);
  }

  /** Closes every pool, waiting for in-flight requests. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    this.#handles = [];
    this.#balancer.update([]);
    await Promise.all(pools.map((p) => p.close().catch(() => {})));
  }

  #retire(handle: EndpointHandle): void {
    const pool = this.#pools.get(handle);
    this.#pools.delete(handle);
    pool?.close().catch(() => {});
  }

  #publishEndpointGauges(): void {
    let ejected = 0;
    for (const h of this.#handles) if (h.ejected) ejected++;
    this.#metricsRoot.endpoints.labels(this.name, 'healthy').set(this.#handles.length - ejected);
    this.#metricsRoot.endpoints.labels(this.name, 'ejected').set(ejected);
  }
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (a.weight !== b.weight || a.transport !== b.transport || a.tags.length !== b.tags.length) return false;
  for (let i = 0; i < a.tags.length; i++) if (a.tags[i] !== b.tags[i]) return false;
  const ak = Object.keys(a.meta);
  if (ak.length !== Object.keys(b.meta).length) return false;
  for (const k of ak) if (a.meta[k] !== b.meta[k]) return false;
  return true;
}
