// The redis registry: one TTL key per instance under a prefix, followed by notifications and periodic SCANs; this instance kept by heartbeat.
import type { Redis } from 'ioredis';
import type { RedisRegistryConfig } from '../../config/redis-schema.ts';
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
import { RedisCatalogSync } from './redis-catalog-sync.ts';
import { createRedisClient, credentialsError, type RedisClient, redisDb } from './redis-connection.ts';
import { RedisRecordStore } from './redis-record-store.ts';

/** Options of the redis registry. */
export interface RedisRegistryOptions {
  config: MeshletConfig;
  table: UpstreamTable;
  metrics: Metrics;
  logger: Logger;
  /** The bound port of the mTLS inbound listener, when it runs (registered instead of service.port). */
  inboundPort?: (() => number | undefined) | undefined;
}

/** `<prefix><service>:<id>` → service and id (the service is up to the first `:` after the prefix). */
export function redisKeyParser(prefix: string): (key: string) => { service: string; id: string } | undefined {
  return (key) => {
    if (!key.startsWith(prefix)) return undefined;
    const rest = key.slice(prefix.length);
    const colon = rest.indexOf(':');
    if (colon <= 0 || colon === rest.length - 1) return undefined;
    return { service: rest.slice(0, colon), id: rest.slice(colon + 1) };
  };
}

/** Whether `notify-keyspace-events` flags deliver set, del and expired events on keyspace channels. */
export function keyspaceEventsOn(flags: string): boolean {
  if (!flags.includes('K')) return false;
  return flags.includes('A') || (flags.includes('$') && flags.includes('g') && flags.includes('x'));
}

/**
 * Endpoints from Redis: every key under the prefix is one instance (a JSON record with a TTL).
 * Changes arrive by keyspace events and the change channel; a full SCAN every `resyncInterval` is
 * the safety net. When Redis is unreachable, upstreams keep their last endpoints. With `service`
 * set, this instance's key is written and kept alive by heartbeat, following the local app's probe.
 */
export class RedisRegistry implements Registry {
  readonly type = 'redis';
  readonly #settings: RedisRegistryConfig;
  readonly #config: MeshletConfig;
  readonly #table: UpstreamTable;
  readonly #logger: Logger;
  readonly #metrics: RegistryMetrics;
  readonly #reach: BackendReachability;
  readonly #catalog: InstanceCatalog;
  readonly #publisher: CatalogPublisher;
  readonly #inboundPort: (() => number | undefined) | undefined;
  readonly #channel: string;
  #client: RedisClient | null = null;
  #subscriber: RedisClient | null = null;
  #sync: RedisCatalogSync | null = null;
  #store: RedisRecordStore | null = null;
  #registration: InstanceRegistration | null = null;
  #keyspaceEvents: boolean | null = null;
  #stopped = false;

  constructor(options: RedisRegistryOptions) {
    const { config } = options;
    if (config.registry.type !== 'redis') throw new Error('RedisRegistry needs registry.type redis');
    this.#config = config;
    this.#settings = config.registry;
    this.#table = options.table;
    this.#logger = options.logger;
    this.#inboundPort = options.inboundPort;
    this.#channel = this.#settings.redis.channel ?? `${this.#settings.redis.prefix}events`;
    const register = this.#settings.register ?? config.service !== undefined;
    this.#metrics = new RegistryMetrics(
      'redis',
      options.metrics.registry,
      register && config.service !== undefined,
    );
    this.#reach = new BackendReachability('redis', this.#metrics, this.#logger);
    this.#catalog = new InstanceCatalog(
      redisKeyParser(this.#settings.redis.prefix),
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

  get synced(): boolean {
    return this.#sync?.synced ?? false;
  }

  /**
   * Connects, subscribes and reads the catalog. Credentials Redis refuses fail the start with the
   * key named; an unreachable Redis does not (routing starts once it answers).
   */
  async start(): Promise<void> {
    const redis = this.#settings.redis;
    const client = createRedisClient(redis);
    const subscriber: RedisClient = (client as Redis).duplicate();
    this.#client = client;
    this.#subscriber = subscriber;
    for (const c of [client, subscriber]) {
      c.on('error', (err: Error) => {
        if (!this.#stopped) this.#reach.failed('watch', err);
      });
    }
    // A refused AUTH arrives as an error event; connect() then only says the connection closed.
    let authError: unknown;
    const onError = (err: Error): void => {
      authError ??= credentialsError(err) === undefined ? undefined : err;
    };
    client.on('error', onError);
    try {
      await client.connect();
    } catch (err) {
      const refused = credentialsError(authError) ?? credentialsError(err);
      if (refused !== undefined) {
        client.disconnect();
        subscriber.disconnect();
        throw refused;
      }
    }
    client.off('error', onError);
    this.#sync = new RedisCatalogSync({
      client,
      subscriber,
      prefix: redis.prefix,
      channel: this.#channel,
      db: redisDb(redis),
      resyncIntervalMs: redis.resyncInterval,
      graceMs: redis.ttl,
      catalog: this.#catalog,
      onChange: () => this.#publisher.publish(),
      reach: this.#reach,
      metrics: this.#metrics,
      logger: this.#logger,
    });
    await this.#sync.start().catch(() => undefined);
    void this.#checkKeyspaceEvents();
    this.#publisher.attach();
    const service = this.#config.service;
    if (service !== undefined && (this.#settings.register ?? true)) {
      const spec = instanceSpec(service, this.#settings, this.#inboundPort?.());
      this.#store = new RedisRecordStore(
        `${redis.prefix}${spec.service}:${spec.id}`,
        redis.ttl,
        this.#channel,
        {
          client,
          reach: this.#reach,
          metrics: this.#metrics,
          logger: this.#logger,
        },
      );
      this.#registration = new InstanceRegistration(spec, probeSettings(service, this.#settings.check), {
        store: this.#store,
        metrics: this.#metrics,
        logger: this.#logger,
      });
      this.#registration.start();
    }
  }

  /** Warns once when the server's keyspace events are off (expiries then wait for the next resync). */
  async #checkKeyspaceEvents(): Promise<void> {
    const client = this.#client;
    if (client === null || this.#settings.redis.cluster !== undefined) return;
    try {
      const answer = (await (client as Redis).call('CONFIG', 'GET', 'notify-keyspace-events')) as string[];
      this.#keyspaceEvents = keyspaceEventsOn(answer[1] ?? '');
    } catch {
      return; // CONFIG refused (managed Redis): unknown
    }
    if (this.#keyspaceEvents === false) {
      this.#logger.warn({
        msg: 'Redis keyspace events are off: changes arrive through the channel, expired instances at the next resync',
        hint: 'set notify-keyspace-events to K$gx (or KA) on the server',
        resyncIntervalMs: this.#settings.redis.resyncInterval,
      });
    }
  }

  reload(config: MeshletConfig): void {
    if (config.registry.type !== 'redis') return;
    this.#publisher.setNames(configuredUpstreams(config));
  }

  readinessChecks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = [];
    if (this.#registration !== null) checks.push(appReadiness(this.#registration.check));
    checks.push(this.#reach.readiness());
    return checks;
  }

  async beforeDrain(): Promise<void> {
    await this.#registration?.markDraining();
  }

  async setDraining(draining: boolean): Promise<void> {
    await this.#registration?.setDraining(draining);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#publisher.detach();
    await this.#registration?.deregister();
    this.#stopped = true;
    this.#sync?.stop();
    this.#subscriber?.disconnect();
    this.#client?.disconnect();
  }

  status(): Record<string, unknown> {
    const reg = this.#registration;
    const redis = this.#settings.redis;
    const url = new URL(redis.url);
    return {
      type: 'redis',
      server: redis.cluster !== undefined ? 'cluster' : redis.sentinel !== undefined ? 'sentinel' : 'single',
      address: `${url.protocol}//${url.host}`,
      prefix: redis.prefix,
      channel: this.#channel,
      keyspaceEvents: this.#keyspaceEvents,
      synced: this.synced,
      reachable: this.#reach.reachable,
      since: new Date(this.#reach.since).toISOString(),
      lastError: this.#reach.lastError,
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
              ttlMs: redis.ttl,
              registered: reg.registered,
              status: reg.check.status ?? null,
              output: reg.check.output,
            },
    };
  }
}
