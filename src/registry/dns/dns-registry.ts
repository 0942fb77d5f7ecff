// The dns registry (discovery only): each upstream's A/AAAA or SRV name, re-resolved at its TTL within bounds.
import { getServers } from 'node:dns';
import type { DnsRegistryConfig, DnsUpstreamConfig } from '../../config/dns-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { Endpoint } from '../../upstream/endpoint.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import { BackendReachability } from '../backend-reachability.ts';
import { RegistryMetrics } from '../kv/registry-metrics.ts';
import type { ReadinessCheck, Registry } from '../registry.ts';
import { type DnsServer, parseServer, query } from './dns-client.ts';
import { nextResolveMs, resolveUpstream, retryMs, type TargetFailure } from './dns-resolution.ts';
import { isoTime } from '../../telemetry/utc-time.ts';

/** Options of the dns registry. */
export interface DnsRegistryOptions {
  config: MeshletConfig;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
}

interface Watch {
  name: string;
  spec: DnsUpstreamConfig;
  /** The endpoints of the last answer applied. */
  last: Endpoint[];
  timer: NodeJS.Timeout | null;
  synced: boolean;
  failures: number;
  endpoints: number;
  rcode: string | null;
  ttlSeconds: number | null;
  priority: number | null;
  lastAnswerAt: number | null;
  nextAt: number | null;
  lastError: string | null;
  /** SRV targets whose lookup failed in the last answer, with why (to warn once per new failure). */
  targetFailures: Map<string, string>;
}

function describe(spec: DnsUpstreamConfig): string {
  return 'srv' in spec ? `SRV ${spec.srv}` : `A/AAAA ${spec.host}:${spec.port}`;
}

/**
 * Endpoints from DNS, nothing registered. Each upstream in `registry.upstreams` is resolved at
 * start and again when its answer's TTL runs out (bounded to [minTtl, maxTtl]). An answer replaces
 * the upstream's endpoints; NXDOMAIN or no records empty it (503 `no_healthy_endpoints`); a failed
 * resolution (timeout, SERVFAIL, REFUSED, unreachable server) keeps the last answer and retries
 * after minTtl, doubling up to maxTtl. A host whose A or AAAA question alone fails uses the other's
 * addresses; an SRV target whose own lookup fails keeps its endpoints of the last answer, is counted
 * in `meshlet_registry_dns_errors_total{operation="resolve"}` and logged as a warning when it starts
 * failing (or fails for a new reason). Names not listed are `no_route`.
 */
export class DnsRegistry implements Registry {
  readonly type = 'dns';
  readonly #settings: DnsRegistryConfig;
  readonly #table: UpstreamTable;
  readonly #logger: Logger;
  readonly #metrics: RegistryMetrics;
  readonly #reach: BackendReachability;
  readonly #servers: DnsServer[];
  readonly #watches = new Map<string, Watch>();
  #stopped = false;

  constructor(options: DnsRegistryOptions) {
    const { config } = options;
    if (config.registry.type !== 'dns') throw new Error('DnsRegistry needs registry.type dns');
    this.#settings = config.registry;
    this.#table = options.table;
    this.#logger = options.logger;
    this.#metrics = new RegistryMetrics('dns', options.metrics.registry, false);
    this.#reach = new BackendReachability('DNS', this.#metrics, this.#logger);
    this.#servers = (this.#settings.dns.servers ?? getServers()).map(parseServer);
  }

  /** True once every upstream got a first answer (NXDOMAIN counts). */
  get synced(): boolean {
    for (const w of this.#watches.values()) if (!w.synced) return false;
    return true;
  }

  async start(): Promise<void> {
    for (const [name, spec] of Object.entries(this.#settings.upstreams)) {
      this.#table.ensure(name);
      const w: Watch = {
        name,
        spec,
        last: [],
        timer: null,
        synced: false,
        failures: 0,
        endpoints: 0,
        rcode: null,
        ttlSeconds: null,
        priority: null,
        lastAnswerAt: null,
        nextAt: null,
        lastError: null,
        targetFailures: new Map(),
      };
      this.#watches.set(name, w);
    }
    // The first round together, so start returns with every answer that came within one timeout.
    await Promise.all([...this.#watches.values()].map((w) => this.#resolve(w)));
  }

  async #resolve(w: Watch): Promise<void> {
    if (this.#stopped) return;
    const { minTtl, maxTtl, timeout } = this.#settings.dns;
    let delay: number;
    try {
      const r = await resolveUpstream((n, t) => query(this.#servers, n, t, timeout), w.spec, w.last);
      if (this.#stopped || this.#watches.get(w.name) !== w) return;
      this.#reach.ok();
      this.#table.setEndpoints(w.name, r.endpoints);
      this.#metrics.snapshots.inc();
      this.#reportTargetFailures(w, r.targetFailures ?? []);
      if (r.rcode === 'NXDOMAIN' && w.rcode !== 'NXDOMAIN') {
        this.#logger.warn({
          msg: 'DNS name does not exist (NXDOMAIN); the upstream has no endpoints',
          upstream: w.name,
          name: describe(w.spec),
        });
      }
      Object.assign(w, {
        synced: true,
        failures: 0,
        last: r.endpoints,
        endpoints: r.endpoints.length,
        rcode: r.rcode,
        ttlSeconds: r.ttlSeconds,
        priority: r.priority ?? null,
        lastAnswerAt: Date.now(),
        lastError: null,
      });
      delay = nextResolveMs(r.ttlSeconds, minTtl, maxTtl);
    } catch (err) {
      if (this.#stopped) return;
      w.failures++;
      w.lastError = (err as Error).message;
      this.#reach.failed('resolve', err as Error);
      this.#logger.debug({
        msg: 'DNS resolution failed; keeping the last answer',
        upstream: w.name,
        reason: w.lastError,
      });
      delay = retryMs(w.failures, minTtl, maxTtl);
    }
    w.nextAt = Date.now() + delay;
    w.timer = setTimeout(() => void this.#resolve(w), delay);
  }

  /**
   * Counts each SRV target whose lookup failed and warns when one starts failing or fails for a
   * new reason (debug while it keeps failing alike).
   */
  #reportTargetFailures(w: Watch, failures: readonly TargetFailure[]): void {
    for (const f of failures) {
      this.#metrics.errors.labels('resolve').inc();
      const fields = { upstream: w.name, target: f.target, reason: f.reason };
      const msg = 'DNS lookup of an SRV target failed; keeping its endpoints of the last answer';
      if (w.targetFailures.get(f.target) === f.reason) this.#logger.debug({ msg, ...fields });
      else this.#logger.warn({ msg, ...fields });
    }
    w.targetFailures = new Map(failures.map((f) => [f.target, f.reason]));
  }

  /** `dns`: whether the servers answer. */
  readinessChecks(): ReadinessCheck[] {
    return [this.#reach.readiness()];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const w of this.#watches.values()) if (w.timer !== null) clearTimeout(w.timer);
  }

  status(): Record<string, unknown> {
    const upstreams: Record<string, unknown> = {};
    for (const [name, w] of this.#watches) {
      upstreams[name] = {
        name: describe(w.spec),
        synced: w.synced,
        rcode: w.rcode,
        endpoints: w.endpoints,
        ttlSeconds: w.ttlSeconds,
        priority: w.priority,
        lastAnswerAt: w.lastAnswerAt === null ? null : isoTime(w.lastAnswerAt),
        nextResolveAt: w.nextAt === null ? null : isoTime(w.nextAt),
        lastError: w.lastError,
      };
    }
    const { minTtl, maxTtl } = this.#settings.dns;
    return {
      type: 'dns',
      servers: this.#servers.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`),
      minTtlMs: minTtl,
      maxTtlMs: maxTtl,
      synced: this.synced,
      reachable: this.#reach.reachable,
      since: isoTime(this.#reach.since),
      lastError: this.#reach.lastError,
      upstreams,
    };
  }
}
