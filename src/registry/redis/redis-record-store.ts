// Keeps this instance's key in Redis: SET with a TTL, refreshed every ttl/3, set again when Redis lost it, announced on the channel.
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import type { InstanceRecord } from '../kv/instance-record.ts';
import type { RecordStore } from '../kv/instance-registration.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';
import type { RedisClient } from './redis-connection.ts';

/**
 * The key `<prefix><service>:<id>` holds the record (JSON) with a TTL of `ttlMs`. A heartbeat every
 * ttl/3 extends it with PEXPIRE; a PEXPIRE that finds no key (Redis restarted without persistence,
 * someone deleted it) writes the record again. A meshlet that dies stops the heartbeats and the key
 * expires. Every write and delete is announced with `PUBLISH <channel> <key>`.
 */
export class RedisRecordStore implements RecordStore {
  readonly key: string;
  readonly #client: RedisClient;
  readonly #ttlMs: number;
  readonly #channel: string;
  readonly #reach: BackendReachability;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  #record: InstanceRecord | null = null;
  #stored = false;
  #heartbeat: NodeJS.Timeout | null = null;
  #removed = false;

  constructor(
    key: string,
    ttlMs: number,
    channel: string,
    deps: { client: RedisClient; reach: BackendReachability; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.key = key;
    this.#ttlMs = ttlMs;
    this.#channel = channel;
    this.#client = deps.client;
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  async write(record: InstanceRecord): Promise<void> {
    this.#record = record;
    this.#removed = false;
    this.#startHeartbeat();
    await this.#set();
  }

  async #set(): Promise<void> {
    const record = this.#record;
    if (record === null || this.#removed) return;
    try {
      const created = (await this.#client.exists(this.key)) === 0;
      await this.#client.set(this.key, JSON.stringify(record), 'PX', this.#ttlMs);
      await this.#client.publish(this.#channel, this.key);
      this.#reach.ok();
      if (created || !this.#stored) this.#metrics.registrations.inc();
      this.#stored = true;
    } catch (err) {
      this.#stored = false;
      this.#reach.failed('register', err as Error);
      throw err;
    }
  }

  #startHeartbeat(): void {
    if (this.#heartbeat !== null) return;
    const every = Math.max(100, Math.floor(this.#ttlMs / 3));
    this.#heartbeat = setInterval(() => void this.#beat(), every);
  }

  async #beat(): Promise<void> {
    if (this.#removed || this.#record === null) return;
    try {
      const extended = this.#stored ? await this.#client.pexpire(this.key, this.#ttlMs) : 0;
      this.#reach.ok();
      if (extended === 1) return;
      if (this.#stored)
        this.#logger.warn({ msg: 'Redis lost this instance; registering again', registryKey: this.key });
      await this.#set();
    } catch (err) {
      this.#stored = false;
      this.#reach.failed('check_update', err as Error);
    }
  }

  /** Stops the heartbeat and deletes the key. */
  async remove(): Promise<void> {
    this.#removed = true;
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    if (!this.#stored) return;
    this.#stored = false;
    try {
      await this.#client.del(this.key);
      await this.#client.publish(this.#channel, this.key);
    } catch (err) {
      this.#reach.failed('deregister', err as Error);
    }
  }
}
