// The Consul registry: watches upstreams with blocking queries, discovers new names on use, registers this instance.
import { hostname, networkInterfaces } from 'node:os';
import type { ConsulRegistryConfig } from '../../config/consul-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { Endpoint } from '../../upstream/endpoint.ts';
import type { Upstream } from '../../upstream/upstream.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import { appReadiness, type ReadinessCheck, type Registry } from '../registry.ts';
import { BackendReachability } from '../backend-reachability.ts';
import { AppRegistration, type RegistrationSpec } from './app-registration.ts';
import { BlockingWatch } from './blocking-watch.ts';
import { ConsulAnswerError, ConsulClient, ConsulHttpError, readToken } from './consul-client.ts';
import { ConsulMetrics, type ConsulOperation } from './consul-metrics.ts';
import { parseHealth } from './health-endpoints.ts';
import { ConsulTokenSource } from './token-file.ts';
import { meshletVersion } from './meshlet-version.ts';
import { ConsulUiMetrics } from '../../telemetry/consul-ui-metrics.ts';
import {
  consulProtocol,
  type OpenUpstreamListener,
  SidecarRegistration,
  type SidecarSpec,
} from './sidecar-registration.ts';
import { isoTime } from '../../telemetry/utc-time.ts';

type ServiceConfig = NonNullable<MeshletConfig['service']>;
type WatchKind = 'configured' | 'on_demand';

/** Options of the Consul registry. */
export interface ConsulRegistryOptions {
  config: MeshletConfig;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** The bound port of the mTLS inbound listener, when it runs (registered instead of service.port). */
  inboundPort?: (() => number | undefined) | undefined;
  /** Binds a per-upstream listener (the sidecar registration's local binds for upstreams config gives no port). */
  openUpstreamListener?: OpenUpstreamListener | undefined;
  /** Test hooks: least time between two reads of one watch, and error backoff bounds, ms. */
  watchTiming?: { minIntervalMs?: number; backoffBaseMs?: number; backoffMaxMs?: number };
  /** Test hook: time between two looks at `registry.consul.tokenFile` for a change, ms. Default 1000. */
  tokenPollMs?: number;
}

interface UpstreamWatch {
  kind: WatchKind;
  watch: BlockingWatch<unknown>;
  /** `performance.now()` of the last request that used the upstream (on-demand watches). */
  lastUsed: number;
}

/** How the admin view and logs show the ACL token: whether one is set, never the token. */
function aclStatus(token: string | undefined): 'token set' | 'no token' {
  return token === undefined ? 'no token' : 'token set';
}

/** The first non-internal IPv4 address of this host, or 127.0.0.1. */
export function firstIPv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const ni of list ?? []) if (ni.family === 'IPv4' && !ni.internal) return ni.address;
  }
  return '127.0.0.1';
}

/** Upstream names config mentions: `upstreams:` keys, routes' upstreams and discovery filters. */
export function configuredNames(config: MeshletConfig, registry: ConsulRegistryConfig): Set<string> {
  return new Set([
    ...Object.keys(config.upstreams),
    ...config.routes.map((r) => r.upstream),
    ...Object.keys(registry.filters),
  ]);
}

/**
 * Resolves what to register from `service` and `registry`. With the mTLS inbound listener on
 * (`inboundPort`), peers are told to dial it: the registered port is the inbound port and
 * `Meta.meshlet_inbound` is `mtls`; otherwise the app's port and `plain`. `Meta.meshlet_protocol` is
 * always `service.protocol` (`http1` too), so peers' meshlets learn it without config. The probe is
 * `check.grpc` (gRPC health), else `check.http`, else a TCP connect.
 */
export function registrationSpec(
  service: ServiceConfig,
  registry: ConsulRegistryConfig,
  inboundPort?: number,
): RegistrationSpec {
  const { check } = registry;
  return {
    id: registry.serviceId ?? `${service.name}-${hostname()}-${service.port}`,
    explicitId: registry.serviceId !== undefined,
    name: service.name,
    address: service.address ?? firstIPv4(),
    port: inboundPort ?? service.port,
    tags: service.tags,
    meta: {
      ...service.meta,
      meshlet_version: meshletVersion(),
      meshlet_inbound: inboundPort === undefined ? 'plain' : 'mtls',
      meshlet_protocol: service.protocol,
    },
    weights: registry.weights,
    probe: {
      port: service.port,
      httpPath: check.http,
      grpcService: check.grpc,
      timeoutMs: check.timeout,
      intervalMs: check.interval,
    },
    intervalMs: check.interval,
    ttlMs: check.ttl ?? 3 * check.interval,
    deregisterCriticalServiceAfterMs: check.deregisterCriticalServiceAfter,
    successThreshold: check.successThreshold,
    failureThreshold: check.failureThreshold,
  };
}

/**
 * What the sidecar registration is built from: the service's registration, the inbound port, the
 * configured per-upstream ports and `registry.sidecarProxy`.
 */
export function sidecarSpec(
  config: MeshletConfig,
  registry: ConsulRegistryConfig,
  service: RegistrationSpec,
  inboundPort: number,
): SidecarSpec {
  const configuredPorts = new Map<string, number>();
  for (const [name, u] of Object.entries(config.upstreams))
    if (u.port !== undefined) configuredPorts.set(name, u.port);
  const sp = registry.sidecarProxy;
  return {
    serviceId: service.id,
    service: service.name,
    address: service.address,
    port: inboundPort,
    tags: service.tags,
    meta: service.meta,
    localServicePort: service.probe.port,
    protocol: consulProtocol(config.service?.protocol ?? 'http1'),
    ttlMs: service.ttlMs,
    deregisterCriticalServiceAfterMs: service.deregisterCriticalServiceAfterMs,
    configuredPorts,
    portRange: sp.upstreamPorts,
    maxUpstreams: sp.maxUpstreams,
    debounceMs: sp.debounce,
    datacenterOf: (name) => registry.filters[name]?.datacenter,
  };
}

/**
 * Endpoints from Consul. Each upstream named in config is watched from start with a blocking query
 * on `/v1/health/service/<name>?passing`; each answer replaces the upstream's endpoints at once. Any
 * other name is discovered on first use: when the catalog (watched too) lists it, meshlet creates
 * the upstream and starts its watch; the requests that arrive before the first answer get
 * `503 no_healthy_endpoints`. A name the catalog does not list is `no_route`. On-demand watches
 * unused for `watch.idleTimeout` stop, and at most `watch.maxOnDemand` run at once (0: no
 * on-demand discovery); a reload applies both.
 * When Consul is unreachable, every upstream keeps its last endpoints and the watches retry with backoff.
 */
export class ConsulRegistry implements Registry {
  readonly type = 'consul';
  #config: MeshletConfig;
  /** The settings from start; a reload replaces `watch` only (see {@link reload}). */
  #settings: ConsulRegistryConfig;
  readonly #table: UpstreamTable;
  readonly #logger: Logger;
  readonly #metrics: ConsulMetrics;
  readonly #reach: BackendReachability<ConsulOperation>;
  readonly #client: ConsulClient;
  readonly #tokens: ConsulTokenSource;
  readonly #timing: NonNullable<ConsulRegistryOptions['watchTiming']>;
  readonly #inboundPort: (() => number | undefined) | undefined;
  readonly #openUpstreamListener: OpenUpstreamListener | undefined;
  #consulUi: ConsulUiMetrics | null = null;
  /** The local datacenter for the Consul UI series: config's, else the agent's (read once). */
  #datacenter: string | undefined;
  #dcTimer: NodeJS.Timeout | null = null;
  readonly #metricsRoot: Metrics;
  readonly #watches = new Map<string, UpstreamWatch>();
  #catalog: BlockingWatch<Record<string, string[]>> | null = null;
  #catalogNames = new Set<string>();
  /** The catalog watch ran from start: `synced` waits for its first answer (one a reload starts does not gate `/ready`). */
  #catalogGatesSync = false;
  #registration: AppRegistration | null = null;
  #sweeper: NodeJS.Timeout | null = null;
  #stopped = false;
  #capLogged = false;
  /** `upstream\0value` pairs of unknown `Meta.meshlet_protocol` values already logged (at most 100). */
  readonly #unknownProtocols = new Set<string>();
  /**
   * What was last logged per topic (`health:NAME` / `catalog`: the watch's last failure, `entries:NAME`:
   * its malformed entries, `acl:NAME`: ACL filtering), so each is logged once while it lasts.
   * Bounded by the watches.
   */
  readonly #lastSaid = new Map<string, string>();

  constructor(options: ConsulRegistryOptions) {
    const { config } = options;
    if (config.registry.type !== 'consul') throw new Error('ConsulRegistry needs registry.type consul');
    this.#config = config;
    this.#settings = config.registry;
    this.#table = options.table;
    this.#logger = options.logger;
    this.#timing = options.watchTiming ?? {};
    this.#inboundPort = options.inboundPort;
    this.#openUpstreamListener = options.openUpstreamListener;
    this.#metricsRoot = options.metrics;
    this.#datacenter = this.#settings.consul.datacenter;
    this.#metrics = new ConsulMetrics(options.metrics.registry);
    this.#reach = new BackendReachability<ConsulOperation>(
      'Consul agent',
      this.#metrics,
      this.#logger,
      'consul',
    );
    const { consul } = this.#settings;
    const token = readToken(consul.token, consul.tokenFile);
    this.#client = new ConsulClient({ address: consul.address, token, tls: consul.tls });
    this.#tokens = new ConsulTokenSource(consul, this.#client, this.#logger, options.tokenPollMs);
  }

  /** True once the catalog and every configured upstream got a first answer from Consul. */
  get synced(): boolean {
    if (this.#catalogGatesSync && this.#catalog !== null && !this.#catalog.synced) return false;
    for (const w of this.#watches.values()) if (w.kind === 'configured' && !w.watch.synced) return false;
    return true;
  }

  async start(): Promise<void> {
    this.#tokens.start();
    for (const name of configuredNames(this.#config, this.#settings)) this.#watch(name, 'configured');
    this.#syncOnDemand();
    this.#catalogGatesSync = this.#catalog !== null;
    const service = this.#config.service;
    if (service !== undefined && this.#config.metrics?.consulUi !== false) this.#startConsulUi(service.name);
    const register = this.#settings.register ?? service !== undefined;
    if (register && service !== undefined) {
      const inboundPort = this.#inboundPort?.();
      const spec = registrationSpec(service, this.#settings, inboundPort);
      let sidecar: SidecarRegistration | null = null;
      if (this.#settings.sidecarProxy.enabled && inboundPort !== undefined) {
        sidecar = new SidecarRegistration(sidecarSpec(this.#config, this.#settings, spec, inboundPort), {
          client: this.#client,
          logger: this.#logger,
          openUpstreamListener: this.#openUpstreamListener,
          metrics: this.#metrics,
        });
        await sidecar.addConfigured(configuredNames(this.#config, this.#settings));
      } else if (this.#settings.sidecarProxy.enabled) {
        this.#logger.info({
          msg: 'no sidecar proxy registered: meshlet has no inbound listener (set tls) for a connect-proxy Port',
          serviceId: spec.id,
        });
      }
      this.#registration = new AppRegistration(spec, {
        client: this.#client,
        reach: this.#reach,
        metrics: this.#metrics,
        logger: this.#logger,
        sidecar,
        onForbidden: () => this.#tokens.refused(),
      });
      this.#registration.start();
    }
  }

  /**
   * Exports the Envoy-named series the Consul UI queries (`metrics.consulUi`), labelled with this
   * service, its datacenter (config's, else the agent's `Config.Datacenter`, asked until it answers)
   * and namespace `default`.
   */
  #startConsulUi(service: string): void {
    const ui = new ConsulUiMetrics(this.#metricsRoot, () => {
      const dc = this.#datacenter;
      if (dc === undefined) return null;
      return {
        service,
        datacenter: dc,
        namespace: 'default',
        upstreamDatacenter: (name) => this.#settings.filters[name]?.datacenter ?? dc,
      };
    });
    ui.register(this.#metricsRoot.registry);
    this.#consulUi = ui;
    const ask = (): void => {
      this.#dcTimer = null;
      this.#client.agentDatacenter().then(
        (dc) => {
          this.#datacenter = dc;
        },
        () => {
          if (!this.#stopped) this.#dcTimer = setTimeout(ask, 2000).unref();
        },
      );
    };
    if (this.#datacenter === undefined) ask();
  }

  /**
   * Starts watches for upstreams a reloaded config names (a name no longer named becomes on-demand),
   * takes a changed ACL token (`token`, or `tokenFile` read again) for every later call, and applies
   * `registry.watch`. A token file that cannot be read keeps the running token. (A changed
   * `tokenFile` is also read again without a reload: see {@link ConsulTokenSource}.)
   *
   * `watch`: a new `maxOnDemand` holds from the next new name (on-demand watches over a lowered cap
   * stay until idle or gone from the catalog); a new `idleTimeout` restarts the idle sweep (idle time
   * counted from each upstream's last use); a new `wait` from each watch's next query. From 0 to
   * more, on-demand discovery starts (the catalog watch too); down to 0, new names are `no_route`
   * and the on-demand upstreams running stay until idle or gone, then the catalog watch stops.
   * Other registry settings (agent address, datacenter, TLS, filters, registration) need a restart:
   * see `registryRestartKeys`.
   */
  reload(config: MeshletConfig): void {
    if (config.registry.type !== 'consul') return;
    this.#config = config;
    const before = this.#settings.watch;
    this.#settings = { ...this.#settings, watch: config.registry.watch };
    this.#tokens.reconfigure(config.registry.consul);
    const names = configuredNames(config, config.registry);
    for (const [name, w] of this.#watches) {
      if (!names.has(name) && w.kind === 'configured') {
        w.kind = 'on_demand';
        w.lastUsed = performance.now();
      }
    }
    for (const name of names) {
      const w = this.#watches.get(name);
      if (w === undefined) this.#watch(name, 'configured');
      else w.kind = 'configured';
    }
    this.#publishWatchCounts();
    if (this.#sweeper !== null && before.idleTimeout !== config.registry.watch.idleTimeout) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
    this.#syncOnDemand();
  }

  /** The number of on-demand watches running. */
  #onDemandCount(): number {
    let n = 0;
    for (const w of this.#watches.values()) if (w.kind === 'on_demand') n++;
    return n;
  }

  /**
   * Runs on-demand discovery (the catalog watch, the table's discover and use hooks, the idle sweep
   * every quarter of `idleTimeout`, 50 ms to 30 s) while `maxOnDemand` is above 0 or on-demand
   * watches remain; stops it otherwise. Called at start, on reload and when a watch stops.
   */
  #syncOnDemand(): void {
    if (this.#stopped) return;
    const wanted = this.#settings.watch.maxOnDemand > 0 || this.#onDemandCount() > 0;
    if (wanted) {
      if (this.#catalog === null) this.#startCatalogWatch();
      this.#table.discover = (name) => this.#discover(name);
      this.#table.onUse = (name) => {
        const w = this.#watches.get(name);
        if (w !== undefined) w.lastUsed = performance.now();
      };
      if (this.#sweeper === null) {
        const every = Math.max(50, Math.min(30_000, this.#settings.watch.idleTimeout / 4));
        this.#sweeper = setInterval(() => this.#sweepIdle(), every);
        this.#sweeper.unref();
      }
      return;
    }
    this.#table.discover = null;
    this.#table.onUse = null;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    const catalog = this.#catalog;
    this.#catalog = null;
    this.#catalogGatesSync = false;
    this.#catalogNames = new Set();
    this.#lastSaid.delete('catalog');
    if (catalog !== null) {
      this.#logger.info({ msg: 'on-demand discovery stopped (registry.watch.maxOnDemand is 0)' });
      void catalog.stop();
    }
  }

  #startCatalogWatch(): void {
    this.#catalog = new BlockingWatch({
      name: 'catalog',
      ...this.#timing,
      fetch: (index, signal) =>
        this.#client.catalogServices({
          index,
          waitMs: this.#settings.watch.wait,
          signal,
          datacenter: this.#settings.consul.datacenter,
        }),
      onAnswer: (services) => this.#applyCatalog(services),
      onError: (err, retryInMs) => this.#watchFailed('catalog', err, retryInMs),
      onSuccess: () => {
        this.#lastSaid.delete('catalog');
        this.#reach.ok();
      },
      onIndexReset: () => this.#resyncAll('catalog'),
    });
    this.#catalog.start();
  }

  #applyCatalog(services: Record<string, string[]>): void {
    this.#catalogNames = new Set(Object.keys(services ?? {}));
    // An on-demand upstream whose service left the catalog goes back to `no_route`.
    for (const [name, w] of this.#watches) {
      if (w.kind === 'on_demand' && !this.#catalogNames.has(name))
        void this.#unwatch(name, 'left the catalog');
    }
  }

  #discover(name: string): Upstream | undefined {
    if (this.#stopped) return undefined;
    if (this.#watches.has(name)) return this.#table.ensure(name);
    // Before the catalog's first answer, give the name the benefit of the doubt.
    if (this.#catalog?.synced === true && !this.#catalogNames.has(name)) return undefined;
    // 0 turns on-demand discovery off (upstreams discovered before a reload to 0 run on until idle or gone).
    if (this.#settings.watch.maxOnDemand === 0) return undefined;
    if (this.#onDemandCount() >= this.#settings.watch.maxOnDemand) {
      if (!this.#capLogged) {
        this.#capLogged = true;
        this.#logger.warn({
          msg: 'on-demand watch limit reached; new upstream names get no_route',
          upstream: name,
          maxOnDemand: this.#settings.watch.maxOnDemand,
        });
      }
      return undefined;
    }
    this.#logger.info({ msg: 'discovering upstream on first use', upstream: name });
    const upstream = this.#watch(name, 'on_demand');
    this.#registration?.sidecar?.addOnDemand(name);
    return upstream;
  }

  #watch(name: string, kind: WatchKind): Upstream {
    const upstream = this.#table.ensure(name);
    if (this.#watches.has(name)) return upstream;
    const filter = this.#settings.filters[name];
    const tags = filter?.tags ?? [];
    const datacenter = filter?.datacenter ?? this.#settings.consul.datacenter;
    const watch = new BlockingWatch({
      name: `health:${name}`,
      ...this.#timing,
      fetch: async (index, signal) => {
        const answer = await this.#client[filter?.connect === true ? 'healthConnect' : 'healthService'](
          name,
          tags,
          { index, waitMs: this.#settings.watch.wait, signal, datacenter },
        );
        this.#noteAclFiltering(name, answer.filteredByAcls === true);
        return answer;
      },
      onAnswer: (entries) => this.#onHealth(name, entries),
      onError: (err, retryInMs) => this.#watchFailed(`health:${name}`, err, retryInMs, name),
      onSuccess: () => {
        this.#lastSaid.delete(`health:${name}`);
        this.#reach.ok();
      },
      onIndexReset: () => this.#resyncAll(`health:${name}`),
    });
    this.#watches.set(name, { kind, watch: watch as BlockingWatch<unknown>, lastUsed: performance.now() });
    watch.start();
    this.#publishWatchCounts();
    return upstream;
  }

  /**
   * Consul leaves out of a health answer what the ACL token may not read, and says so in
   * `X-Consul-Results-Filtered-By-ACLs`: the upstream may look emptier than it is. Logged once when
   * it starts for an upstream, and once when it stops.
   */
  #noteAclFiltering(name: string, filtered: boolean): void {
    const key = `acl:${name}`;
    if (filtered === this.#lastSaid.has(key)) return;
    if (filtered) {
      this.#lastSaid.set(key, 'filtered');
      this.#logger.warn({
        msg: "Consul filtered an upstream's health answer by ACLs: the token may not read some of its instances",
        upstream: name,
        acl: aclStatus(this.#client.token),
      });
    } else {
      this.#lastSaid.delete(key);
      this.#logger.info({
        msg: "Consul no longer filters the upstream's health answer by ACLs",
        upstream: name,
      });
    }
  }

  /**
   * Applies one upstream's health answer. Malformed entries are skipped, counted and logged (once
   * per distinct count and reason); an answer with entries but none well-formed is refused whole
   * (thrown: the watch keeps the last endpoints and retries), since it is a broken answer, not an
   * empty service.
   */
  #onHealth(name: string, entries: unknown[]): void {
    if (!this.#table.has(name)) return;
    const parsed = parseHealth(entries);
    const key = `entries:${name}`;
    if (parsed.malformed > 0 && parsed.malformed === entries.length) {
      throw new ConsulAnswerError(
        `health of ${name}: none of its ${entries.length} entries is well-formed (${parsed.firstProblem})`,
      );
    }
    if (parsed.malformed > 0) {
      this.#metrics.invalid.labels('entry').inc(parsed.malformed);
      const said = `${parsed.malformed}/${entries.length}: ${parsed.firstProblem}`;
      if (this.#lastSaid.get(key) !== said) {
        this.#lastSaid.set(key, said);
        this.#logger.warn({
          msg: 'skipping malformed entries of a Consul health answer',
          upstream: name,
          skipped: parsed.malformed,
          of: entries.length,
          reason: parsed.firstProblem,
        });
      }
    } else {
      this.#lastSaid.delete(key);
    }
    this.#warnUnknownProtocols(name, parsed.endpoints);
    this.#table.setEndpoints(name, parsed.endpoints);
    this.#metrics.snapshots.inc();
  }

  /**
   * A watch's read failed or its answer was refused. Reachability and `_errors_total` take every
   * failure; an unusable answer ({@link ConsulAnswerError}) is also counted in `_invalid_total` and
   * logged as a warning when its reason differs from the watch's last one (else at debug).
   */
  #watchFailed(watch: string, err: Error, retryInMs: number, upstream?: string): void {
    // 403: the token may have been rotated under us; the file may hold its successor.
    if (err instanceof ConsulHttpError && err.status === 403) this.#tokens.refused();
    this.#reach.failed(upstream === undefined ? 'catalog' : 'watch', err);
    const invalid = err instanceof ConsulAnswerError;
    if (invalid) this.#metrics.invalid.labels('answer').inc();
    const repeated = this.#lastSaid.get(watch) === err.message;
    this.#lastSaid.set(watch, err.message);
    const fields = { upstream, watch, reason: err.message, retryInMs };
    if (invalid && !repeated) {
      this.#logger.warn({ msg: 'refused an unusable Consul answer; keeping the last endpoints', ...fields });
    } else {
      this.#logger.debug({ msg: 'Consul watch failed', ...fields });
    }
  }

  /** Logs once per upstream and value a `Meta.meshlet_protocol` this meshlet does not know (ignored). */
  #warnUnknownProtocols(name: string, endpoints: readonly Endpoint[]): void {
    for (const e of endpoints) {
      const value = e.meta.meshlet_protocol;
      if (value === undefined || e.protocol !== undefined) continue;
      const key = `${name}\0${value}`;
      if (this.#unknownProtocols.has(key) || this.#unknownProtocols.size >= 100) continue;
      this.#unknownProtocols.add(key);
      this.#logger.warn({
        msg: "ignoring an endpoint's unknown Meta.meshlet_protocol; the upstream's protocol applies",
        upstream: name,
        endpoint: e.id,
        meshletProtocol: value.slice(0, 64),
      });
    }
  }

  /**
   * One watch saw the index go backwards: every other watch may be blocked on an index the agent
   * will not reach for a long time, so all start over at index 0.
   */
  #resyncAll(seenBy: string): void {
    this.#logger.warn({ msg: 'Consul index went backwards; resyncing every watch', seenBy });
    for (const w of [this.#catalog, ...[...this.#watches.values()].map((x) => x.watch)]) {
      if (w !== null && w.name !== seenBy) w.resync();
    }
  }

  async #unwatch(name: string, why: string): Promise<void> {
    const w = this.#watches.get(name);
    if (w === undefined) return;
    this.#watches.delete(name);
    this.#lastSaid.delete(`health:${name}`);
    this.#lastSaid.delete(`entries:${name}`);
    this.#lastSaid.delete(`acl:${name}`);
    this.#publishWatchCounts();
    this.#logger.info({ msg: 'stopped watching upstream', upstream: name, why });
    if (w.kind === 'on_demand') this.#syncOnDemand();
    await w.watch.stop();
    await this.#table.remove(name);
  }

  #sweepIdle(): void {
    const now = performance.now();
    for (const [name, w] of this.#watches) {
      if (w.kind === 'on_demand' && now - w.lastUsed > this.#settings.watch.idleTimeout) {
        void this.#unwatch(name, 'idle');
      }
    }
  }

  #publishWatchCounts(): void {
    const counts = { configured: 0, on_demand: 0 };
    for (const w of this.#watches.values()) counts[w.kind]++;
    this.#metrics.watches.labels('configured').set(counts.configured);
    this.#metrics.watches.labels('on_demand').set(counts.on_demand);
    if (counts.on_demand < this.#settings.watch.maxOnDemand) this.#capLogged = false;
  }

  /** `app`: the local app's check (when registering); `consul`: whether the agent answers. */
  readinessChecks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [];
    if (this.#registration !== null) checks.push(appReadiness(this.#registration.check));
    // An outage after the first sync does not fail readiness: routing goes on with the last endpoints.
    checks.push(this.#reach.readiness());
    return checks;
  }

  /** Shutdown step 1: the instance turns critical in Consul before the drain delay. */
  async beforeDrain(): Promise<void> {
    await this.#registration?.markDraining();
  }

  /** `POST|DELETE /drain`: the check reports critical while drained, the probe's status after. */
  async setDraining(draining: boolean): Promise<void> {
    await this.#registration?.setDraining(draining);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#table.discover = null;
    this.#table.onUse = null;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    if (this.#dcTimer !== null) clearTimeout(this.#dcTimer);
    this.#tokens.stop();
    this.#consulUi?.unregister();
    await this.#registration?.deregister();
    await Promise.all([this.#catalog?.stop(), ...[...this.#watches.values()].map((w) => w.watch.stop())]);
    await this.#client.close();
  }

  status(): Record<string, unknown> {
    const watches: Record<string, unknown> = {};
    for (const [name, w] of this.#watches) {
      watches[name] = {
        kind: w.kind,
        synced: w.watch.synced,
        index: w.watch.index,
        lastError: w.watch.lastError,
      };
    }
    const reg = this.#registration;
    return {
      type: 'consul',
      address: this.#settings.consul.address,
      datacenter: this.#settings.consul.datacenter ?? null,
      acl: aclStatus(this.#client.token),
      synced: this.synced,
      reachable: this.#reach.reachable,
      since: isoTime(this.#reach.since),
      lastError: this.#reach.lastError,
      watches,
      registration:
        reg === null
          ? null
          : {
              serviceId: reg.id,
              service: reg.spec.name,
              address: reg.spec.address,
              port: reg.spec.port,
              checkId: reg.checkId,
              registered: reg.registered,
              refusedBecause: reg.refusal,
              status: reg.check.status ?? null,
              output: reg.check.output,
              sidecarProxy:
                reg.sidecar === null
                  ? null
                  : {
                      serviceId: reg.sidecar.id,
                      registered: reg.sidecar.registered,
                      upstreams: Object.fromEntries(reg.sidecar.binds),
                    },
            },
    };
  }
}
