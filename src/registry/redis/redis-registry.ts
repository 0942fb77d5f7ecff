// The redis registry: one TTL key per instance under a prefix, followed by notifications and periodic SCANs; this instance kept by heartbeat.
import type { Redis } from 'ioredis';
import type { RedisRegistryConfig } from '../../config/redis-schema.ts';
import type { MeshletConfig } from '../../config/schema.ts';
import { KvRegistryCore, type KvRegistryOptions } from '../kv/kv-registry-core.ts';
import type { ReadinessCheck, Registry } from '../registry.ts';
import { RedisCatalogSync } from './redis-catalog-sync.ts';
import { createRedisClient, credentialsError, type RedisClient, redisDb } from './redis-connection.ts';
import { RedisRecordStore } from './redis-record-store.ts';

/** Options of the redis registry. */
export type RedisRegistryOptions = KvRegistryOptions;

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
  readonly #core: KvRegistryCore;
  readonly #redis: RedisRegistryConfig['redis'];
  readonly #channel: string;
  #client: RedisClient | null = null;
  #subscriber: RedisClient | null = null;
  #sync: RedisCatalogSync | null = null;
  #keyspaceEvents: boolean | null = null;
  #stopped = false;

  constructor(options: RedisRegistryOptions) {
    if (options.config.registry.type !== 'redis') throw new Error('RedisRegistry needs registry.type redis');
    this.#redis = options.config.registry.redis;
    this.#channel = this.#redis.channel ?? `${this.#redis.prefix}events`;
    this.#core = new KvRegistryCore(options, redisKeyParser(this.#redis.prefix));
  }

  get synced(): boolean {
    return this.#sync?.synced ?? false;
  }

  /**
   * Connects, subscribes and reads the catalog. Credentials Redis refuses fail the start with the
   * key named; an unreachable Redis does not (routing starts once it answers).
   */
  async start(): Promise<void> {
    const redis = this.#redis;
    const core = this.#core;
    const client = createRedisClient(redis);
    const subscriber: RedisClient = (client as Redis).duplicate();
    this.#client = client;
    this.#subscriber = subscriber;
    for (const c of [client, subscriber]) {
      c.on('error', (err: Error) => {
        if (!this.#stopped) core.reach.failed('watch', err);
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
      catalog: core.catalog,
      onChange: () => core.publisher.publish(),
      reach: core.reach,
      metrics: core.metrics,
      logger: core.logger,
    });
    await this.#sync.start().catch(() => undefined);
    void this.#checkKeyspaceEvents();
    core.publisher.attach();
    core.register(
      redis.ttl,
      (spec, claim) =>
        new RedisRecordStore(
          (id) => `${redis.prefix}${spec.service}:${id}`,
          claim,
          spec,
          redis.ttl,
          this.#channel,
          { client, reach: core.reach, metrics: core.metrics, logger: core.logger },
        ),
    );
  }

  /** Warns once when the server's keyspace events are off (expiries then wait for the next resync). */
  async #checkKeyspaceEvents(): Promise<void> {
    const client = this.#client;
    if (client === null || this.#redis.cluster !== undefined) return;
    try {
      const answer = (await (client as Redis).call('CONFIG', 'GET', 'notify-keyspace-events')) as string[];
      this.#keyspaceEvents = keyspaceEventsOn(answer[1] ?? '');
    } catch {
      return; // CONFIG refused (managed Redis): unknown
    }
    if (this.#keyspaceEvents === false) {
      this.#core.logger.warn({
        msg: 'Redis keyspace events are off: changes arrive through the channel, expired instances at the next resync',
        hint: 'set notify-keyspace-events to K$gx (or KA) on the server',
        resyncIntervalMs: this.#redis.resyncInterval,
      });
    }
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
    await this.#core.stop();
    this.#stopped = true;
    this.#sync?.stop();
    this.#subscriber?.disconnect();
    this.#client?.disconnect();
  }

  status(): Record<string, unknown> {
    const redis = this.#redis;
    const url = new URL(redis.url);
    return {
      type: 'redis',
      server: redis.cluster !== undefined ? 'cluster' : redis.sentinel !== undefined ? 'sentinel' : 'single',
      address: `${url.protocol}//${url.host}`,
      prefix: redis.prefix,
      channel: this.#channel,
      keyspaceEvents: this.#keyspaceEvents,
      ...this.#core.status(this.synced),
      registration: this.#core.registrationStatus({ ttlMs: redis.ttl }),
    };
  }
}
