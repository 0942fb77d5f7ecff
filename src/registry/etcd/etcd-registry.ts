// The etcd registry: instances under a key prefix, followed with one watch; this instance registered under a lease.
import type { Etcd3 } from 'etcd3';
import type { EtcdRegistryConfig } from '../../config/etcd-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import type { Logger } from '../../telemetry/logger.ts';
import type { Metrics } from '../../telemetry/metrics.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import { BackendReachability } from '../backend-reachability.ts';
import { CatalogPublisher, configuredUpstreams } from '../kv/catalog-publisher.ts';
import { InstanceCatalog } from '../kv/instance-catalog.ts';
import { instanceSpec } from '../kv/instance-record.ts';
import { InstanceRegistration, probeSettings } from '../kv/instance-registration.ts';
import { RegistryMetrics } from '../kv/registry-metrics.ts';
import { appReadiness, type ReadinessCheck, type Registry } from '../registry.ts';
import { EtcdCatalogWatch } from './etcd-catalog-watch.ts';
import { connectEtcd, credentialsError } from './etcd-connection.ts';
import { EtcdRecordStore } from './etcd-record-store.ts';

/** Options of the etcd registry. */
export interface EtcdRegistryOptions {
  config: MeshletConfig;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** The bound port of the mTLS inbound listener, when it runs (registered instead of service.port). */
  inboundPort?: (() => number | undefined) | undefined;
}

/** `<prefix><service>/<id>` → service and id; other keys under the prefix are ignored. */
export function etcdKeyParser(prefix: string): (key: string) => { service: string; id: string } | undefined {
  return (key) => {
    if (!key.startsWith(prefix)) return undefined;
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) return undefined;
    return { service: rest.slice(0, slash), id: rest.slice(slash + 1) };
  };
}

/**
 * Endpoints from etcd (v3 API). The whole prefix is read once and watched from the next revision
 * (etcd-catalog-watch.ts); every put or delete reaches the upstream table within milliseconds.
 * When etcd is unreachable, upstreams keep their last endpoints and the watch is re-established
 * with a full read once etcd answers. With `service` set, this instance is registered under a lease
 * (etcd-record-store.ts) and its record follows meshlet's probe of the local app.
 */
export class EtcdRegistry implements Registry {
  readonly type = 'etcd';
  readonly #settings: EtcdRegistryConfig;
  readonly #config: MeshletConfig;
  readonly #table: UpstreamTable;
  readonly #logger: Logger;
  readonly #metrics: RegistryMetrics;
  readonly #reach: BackendReachability;
  readonly #catalog: InstanceCatalog;
  readonly #publisher: CatalogPublisher;
  readonly #inboundPort: (() => number | undefined) | undefined;
  #client: Etcd3 | null = null;
  #watch: EtcdCatalogWatch | null = null;
  #store: EtcdRecordStore | null = null;
  #registration: InstanceRegistration | null = null;
  #stopped = false;

  constructor(options: EtcdRegistryOptions) {
    const { config } = options;
    if (config.registry.type !== 'etcd') throw new Error('EtcdRegistry needs registry.type etcd');
    this.#config = config;
    this.#settings = config.registry;
    this.#table = options.table;
    this.#logger = options.logger;
    this.#inboundPort = options.inboundPort;
    const register = this.#settings.register ?? config.service !== undefined;
    this.#metrics = new RegistryMetrics(
      'etcd',
      options.metrics.registry,
      register && config.service !== undefined,
    );
    this.#reach = new BackendReachability('etcd', this.#metrics, this.#logger);
    this.#catalog = new InstanceCatalog(
      etcdKeyParser(this.#settings.etcd.prefix),
      this.#metrics,
      this.#logger,
    );
    this.#publisher = new CatalogPublisher(
      this.#table,
      this.#catalog,
      this.#metrics,
      configuredUpstreams(config),
    );
  }

  /** True once the prefix was read once. */
  get synced(): boolean {
    return this.#watch?.synced ?? false;
  }

  /**
   * Connects, reads the catalog and starts the watch. Credentials etcd refuses fail the start with
   * the key named; an unreachable etcd does not (routing starts once it answers).
   */
  async start(): Promise<void> {
    const etcd = this.#settings.etcd;
    const client = connectEtcd(etcd);
    this.#client = client;
    this.#watch = new EtcdCatalogWatch({
      client,
      prefix: etcd.prefix,
      catalog: this.#catalog,
      onChange: () => this.#onChange(),
      reach: this.#reach,
      metrics: this.#metrics,
      logger: this.#logger,
    });
    try {
      await this.#watch.start();
    } catch (err) {
      const refused = credentialsError(err);
      if (refused !== undefined) {
        this.#watch.stop();
        client.close();
        throw refused;
      }
    }
    this.#publisher.attach();
    const service = this.#config.service;
    if (service !== undefined && (this.#settings.register ?? true)) {
      const spec = instanceSpec(service, this.#settings, this.#inboundPort?.());
      this.#store = new EtcdRecordStore(`${etcd.prefix}${spec.service}/${spec.id}`, etcd.leaseTtl, {
        client,
        reach: this.#reach,
        metrics: this.#metrics,
        logger: this.#logger,
      });
      this.#registration = new InstanceRegistration(spec, probeSettings(service, this.#settings.check), {
        store: this.#store,
        metrics: this.#metrics,
        logger: this.#logger,
      });
      this.#registration.start();
    }
  }

  #onChange(): void {
    this.#publisher.publish();
    // Our own key deleted by hand while the lease lives: put it back.
    const store = this.#store;
    const reg = this.#registration;
    if (store !== null && reg?.registered === true && !this.#catalog.hasKey(store.key)) store.restore();
  }

  /** Applies a reloaded config's upstream names. Other `registry.etcd` settings need a restart. */
  reload(config: MeshletConfig): void {
    if (config.registry.type !== 'etcd') return;
    this.#publisher.setNames(configuredUpstreams(config));
  }

  /** `app`: the local app's check (when registering); `etcd`: whether etcd answers. */
  readinessChecks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [];
    if (this.#registration !== null) checks.push(appReadiness(this.#registration.check));
    checks.push(this.#reach.readiness());
    return checks;
  }

  /** Shutdown step 1: the record turns critical before the drain delay. */
  async beforeDrain(): Promise<void> {
    await this.#registration?.markDraining();
  }

  /** `POST|DELETE /drain`: the record says critical while drained. */
  async setDraining(draining: boolean): Promise<void> {
    await this.#registration?.setDraining(draining);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#publisher.detach();
    await this.#registration?.deregister();
    this.#watch?.stop();
    this.#client?.close();
  }

  status(): Record<string, unknown> {
    const reg = this.#registration;
    const etcd = this.#settings.etcd;
    return {
      type: 'etcd',
      hosts: etcd.hosts,
      prefix: etcd.prefix,
      auth: etcd.auth === undefined ? 'none' : `user ${etcd.auth.username}`,
      tls: etcd.tls !== undefined,
      synced: this.synced,
      reachable: this.#reach.reachable,
      since: new Date(this.#reach.since).toISOString(),
      lastError: this.#reach.lastError,
      revision: this.#watch?.revision ?? null,
      instances: this.#catalog.size,
      registration:
        reg === null
          ? null
          : {
              serviceId: reg.spec.id,
              service: reg.spec.service,
              key: this.#store?.key ?? null,
              address: reg.spec.address,
              port: reg.spec.port,
              leaseTtlSeconds: Math.ceil(etcd.leaseTtl / 1000),
              registered: reg.registered,
              status: reg.check.status ?? null,
              output: reg.check.output,
            },
    };
  }
}
