// The etcd registry: instances under a key prefix, followed with one watch; this instance registered under a lease.
import type { Etcd3 } from 'etcd3';
import type { EtcdRegistryConfig } from '../../config/etcd-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import { KvRegistryCore, type KvRegistryOptions } from '../kv/kv-registry-core.ts';
import type { ReadinessCheck, Registry } from '../registry.ts';
import { EtcdCatalogWatch } from './etcd-catalog-watch.ts';
import { connectEtcd, credentialsError } from './etcd-connection.ts';
import { EtcdRecordStore, leaseExpiryMs } from './etcd-record-store.ts';

/** Options of the etcd registry. */
export type EtcdRegistryOptions = KvRegistryOptions;

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
  readonly #core: KvRegistryCore;
  readonly #etcd: EtcdRegistryConfig['etcd'];
  #client: Etcd3 | null = null;
  #watch: EtcdCatalogWatch | null = null;
  #store: EtcdRecordStore | null = null;
  #stopped = false;

  constructor(options: EtcdRegistryOptions) {
    if (options.config.registry.type !== 'etcd') throw new Error('EtcdRegistry needs registry.type etcd');
    this.#etcd = options.config.registry.etcd;
    this.#core = new KvRegistryCore(options, etcdKeyParser(this.#etcd.prefix));
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
    const etcd = this.#etcd;
    const core = this.#core;
    const client = connectEtcd(etcd);
    this.#client = client;
    this.#watch = new EtcdCatalogWatch({
      client,
      prefix: etcd.prefix,
      catalog: core.catalog,
      onChange: () => this.#onChange(),
      reach: core.reach,
      metrics: core.metrics,
      logger: core.logger,
      graceMs: etcd.leaseTtl,
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
    core.publisher.attach();
    this.#store = core.register(
      leaseExpiryMs(etcd.leaseTtl),
      (spec, claim) =>
        new EtcdRecordStore((id) => `${etcd.prefix}${spec.service}/${id}`, claim, etcd.leaseTtl, {
          client,
          reach: core.reach,
          metrics: core.metrics,
          logger: core.logger,
        }),
      // A member that becomes leader (a restart) renews every lease: its TTL plus the election
      // timeout, which etcd keeps under the shortest lease TTL it grants (1.5 election timeouts).
      leaseExpiryMs(etcd.leaseTtl),
    );
  }

  #onChange(): void {
    const core = this.#core;
    core.publisher.publish();
    // Our own key deleted by hand while the lease lives, or another instance's record put over it:
    // put it back (a key another live instance holds is left to it; this one moves to a distinct ID).
    // A record naming this instance's address and port is its own (a second meshlet for the same
    // instance), left alone so that the two never take turns.
    const store = this.#store;
    const reg = core.registration;
    if (store === null || reg?.registered !== true) return;
    const at = core.catalog.instanceAt(store.key);
    if (at === undefined || at.address !== reg.spec.address || at.port !== reg.spec.port) store.restore();
  }

  reload(config: MeshletConfig): void {
    this.#core.reload(config);
  }

  readinessChecks(): ReadinessCheck[] {
    return this.#core.readinessChecks();
  }

  beforeDrain(): Promise<void> {
    return this.#core.beforeDrain();
  }

  setDraining(draining: boolean): Promise<void> {
    return this.#core.setDraining(draining);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#core.stop();
    this.#watch?.stop();
    this.#client?.close();
  }

  status(): Record<string, unknown> {
    const etcd = this.#etcd;
    return {
      type: 'etcd',
      hosts: etcd.hosts,
      prefix: etcd.prefix,
      auth: etcd.auth === undefined ? 'none' : `user ${etcd.auth.username}`,
      tls: etcd.tls !== undefined,
      revision: this.#watch?.revision ?? null,
      ...this.#core.status(this.synced),
      registration: this.#core.registrationStatus({ leaseTtlSeconds: Math.ceil(etcd.leaseTtl / 1000) }),
    };
  }
}
