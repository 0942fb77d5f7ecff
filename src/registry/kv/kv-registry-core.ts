// What the etcd and Redis registries share: the catalog and its publisher, reachability, metrics, this instance's registration.
import type { EtcdRegistryConfig } from '../../config/etcd-schema.ts';
import type { RedisRegistryConfig } from '../../config/redis-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import { BackendReachability } from '../backend-reachability.ts';
import { appReadiness, type ReadinessCheck } from '../registry.ts';
import { CatalogPublisher, configuredUpstreams, onDemandOptions } from './catalog-publisher.ts';
import { InstanceCatalog, type KeyParser } from './instance-catalog.ts';
import { InstanceIdClaim } from './instance-id-claim.ts';
import { type InstanceSpec, instanceSpec } from './instance-record.ts';
import { InstanceRegistration, probeSettings, type RecordStore } from './instance-registration.ts';
import { RegistryMetrics } from './registry-metrics.ts';
import { isoTime } from '../../telemetry/utc-time.ts';

/** What a key-value registry is built from (the daemon's registry dependencies). */
export interface KvRegistryOptions {
  config: MeshletConfig;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** The bound port of the mTLS inbound listener, when it runs (registered instead of service.port). */
  inboundPort?: (() => number | undefined) | undefined;
}

/**
 * The parts of a key-value registry that do not depend on the backend: the instance catalog the
 * backend's watch fills and its publisher into the upstream table, the backend's reachability, the
 * `meshlet_registry_<type>_*` metrics, and this instance's registration (following the local app's
 * probe) once the backend gives it a record store. The registry owns connection, watch and store.
 */
export class KvRegistryCore {
  readonly type: 'etcd' | 'redis';
  readonly settings: EtcdRegistryConfig | RedisRegistryConfig;
  readonly logger: Logger;
  readonly metrics: RegistryMetrics;
  readonly reach: BackendReachability;
  readonly catalog: InstanceCatalog;
  readonly publisher: CatalogPublisher;
  registration: InstanceRegistration | null = null;
  readonly #config: MeshletConfig;
  readonly #inboundPort: (() => number | undefined) | undefined;

  constructor(options: KvRegistryOptions, parseKey: KeyParser) {
    const { config } = options;
    const settings = config.registry;
    if (settings.type !== 'etcd' && settings.type !== 'redis')
      throw new Error(`a key-value registry needs registry.type etcd or redis, not ${settings.type}`);
    this.type = settings.type;
    this.settings = settings;
    this.logger = options.logger;
    this.#config = config;
    this.#inboundPort = options.inboundPort;
    const registers = (settings.register ?? true) && config.service !== undefined;
    this.metrics = new RegistryMetrics(this.type, options.metrics.registry, registers);
    this.reach = new BackendReachability(this.type, this.metrics, this.logger);
    this.catalog = new InstanceCatalog(parseKey, this.metrics, this.logger);
    this.publisher = new CatalogPublisher(
      options.table,
      this.catalog,
      this.metrics,
      configuredUpstreams(config),
      this.logger,
      onDemandOptions(settings.watch),
    );
  }

  /**
   * Registers this instance when `service` is set (and `register` is not false): `store` gives the
   * backend's record store for its spec and the claim that picks its service ID. `expiryMs`: the
   * longest a crashed instance's key outlives it (its lease or TTL, ms); a key held at another
   * address is watched for that plus one check interval before it is called another live
   * instance's. `renewalMs`: how much longer that watch lasts when it started over because the
   * backend did not answer (the longest the backend may put a key's expiry off when it comes back;
   * default 0). Returns the store, or null when nothing is registered.
   */
  register<S extends RecordStore>(
    expiryMs: number,
    store: (spec: InstanceSpec, claim: InstanceIdClaim) => S,
    renewalMs = 0,
  ): S | null {
    const service = this.#config.service;
    if (service === undefined || this.settings.register === false) return null;
    const spec = instanceSpec(service, this.settings, this.#inboundPort?.());
    const claim = new InstanceIdClaim(spec, {
      type: this.type,
      metrics: this.metrics,
      logger: this.logger,
      graceMs: expiryMs + this.settings.check.interval,
      renewalMs,
    });
    const made = store(spec, claim);
    this.registration = new InstanceRegistration(spec, probeSettings(service, this.settings.check), {
      store: made,
      metrics: this.metrics,
      logger: this.logger,
    });
    this.registration.start();
    return made;
  }

  /**
   * Applies a reloaded config's upstream names and `registry.watch` (on-demand idle timeout and
   * cap). Other registry settings need a restart.
   */
  reload(config: MeshletConfig): void {
    const registry = config.registry;
    if (registry.type !== 'etcd' && registry.type !== 'redis') return;
    if (registry.type !== this.type) return;
    this.publisher.setOnDemand(onDemandOptions(registry.watch));
    this.publisher.setNames(configuredUpstreams(config));
  }

  /** `app`: the local app's check (when registering); then whether the backend answers. */
  readinessChecks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [];
    if (this.registration !== null) checks.push(appReadiness(this.registration.check));
    checks.push(this.reach.readiness());
    return checks;
  }

  /** Shutdown step 1: the record turns critical before the drain delay. */
  async beforeDrain(): Promise<void> {
    await this.registration?.markDraining();
  }

  /** `POST|DELETE /drain`: the record says critical while drained. */
  async setDraining(draining: boolean): Promise<void> {
    await this.registration?.setDraining(draining);
  }

  /** Stops publishing and removes this instance's record (bounded). */
  async stop(): Promise<void> {
    this.publisher.detach();
    await this.registration?.deregister();
  }

  /** The status fields every key-value registry shows on `/upstreams`. */
  status(synced: boolean): Record<string, unknown> {
    const reach = this.reach;
    return {
      synced,
      reachable: reach.reachable,
      since: isoTime(reach.since),
      lastError: reach.lastError,
      instances: this.catalog.size,
    };
  }

  /**
   * This instance's registration on `/upstreams` (null when none), with the backend's own fields:
   * `serviceId` and `key` are the ones written (a distinct ID when another instance holds the
   * configured one); `refusedBecause` says why nothing is written, or is null.
   */
  registrationStatus(backend: Record<string, unknown>): Record<string, unknown> | null {
    const reg = this.registration;
    if (reg === null) return null;
    return {
      serviceId: reg.id,
      service: reg.spec.service,
      key: reg.key,
      address: reg.spec.address,
      port: reg.spec.port,
      ...backend,
      registered: reg.registered,
      refusedBecause: reg.refusal,
      status: reg.check.status ?? null,
      output: reg.check.output,
    };
  }
}
