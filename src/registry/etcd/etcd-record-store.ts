// Keeps this instance's key in etcd: a lease with keep-alive, the record put under it, a new lease whenever the old one is lost.
import type { Etcd3, Lease } from 'etcd3';
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import type { InstanceRecord } from '../kv/instance-record.ts';
import type { RecordStore } from '../kv/instance-registration.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';

/**
 * The key `<prefix><service>/<id>` holds the record under a lease of `leaseTtlMs` (whole seconds,
 * rounded up) kept alive every TTL/3. A meshlet that dies stops the keep-alives and etcd deletes the
 * key when the lease expires. A lost lease (expired while etcd was unreachable, or unknown to a
 * restored cluster) is replaced by a new one and the record put again, retried with backoff until
 * etcd answers.
 */
export class EtcdRecordStore implements RecordStore {
  readonly key: string;
  readonly #client: Etcd3;
  readonly #ttlSeconds: number;
  readonly #reach: BackendReachability;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  #lease: Lease | null = null;
  #record: InstanceRecord | null = null;
  #retry: NodeJS.Timeout | null = null;
  #failures = 0;
  #removed = false;
  #writing: Promise<void> = Promise.resolve();

  constructor(
    key: string,
    leaseTtlMs: number,
    deps: { client: Etcd3; reach: BackendReachability; metrics: RegistryMetrics; logger: Logger },
  ) {
    this.key = key;
    this.#ttlSeconds = Math.ceil(leaseTtlMs / 1000);
    this.#client = deps.client;
    this.#reach = deps.reach;
    this.#metrics = deps.metrics;
    this.#logger = deps.logger;
  }

  /** The current lease id (decimal), or null. */
  async leaseId(): Promise<string | null> {
    return this.#lease === null ? null : this.#lease.grant();
  }

  write(record: InstanceRecord): Promise<void> {
    this.#record = record;
    this.#removed = false;
    // Writes go one at a time, so the last record asked for is the one stored.
    const next = this.#writing.then(() => this.#put());
    this.#writing = next.catch(() => undefined);
    return next;
  }

  async #put(): Promise<void> {
    const record = this.#record;
    if (record === null || this.#removed) return;
    try {
      let lease = this.#lease;
      const fresh = lease === null;
      if (lease === null) {
        lease = this.#client.lease(this.#ttlSeconds, { autoKeepAlive: true });
        lease.on('lost', (err) => this.#lost(lease!, err));
        lease.on('keepaliveSucceeded', () => this.#reach.ok());
        this.#lease = lease;
      }
      await lease.put(this.key).value(JSON.stringify(record)).exec();
      this.#reach.ok();
      this.#failures = 0;
      if (fresh) this.#metrics.registrations.inc();
    } catch (err) {
      this.#reach.failed('register', err as Error);
      this.#dropLease();
      this.#scheduleRetry();
      throw err;
    }
  }

  #lost(lease: Lease, err: Error): void {
    if (lease !== this.#lease || this.#removed) return;
    this.#logger.warn({
      msg: 'etcd lease lost; registering again with a new lease',
      registryKey: this.key,
      reason: err.message,
    });
    this.#dropLease();
    this.write(this.#record!).catch(() => undefined);
  }

  #dropLease(): void {
    const lease = this.#lease;
    this.#lease = null;
    if (lease === null) return;
    lease.removeAllListeners();
    lease.on('lost', () => undefined);
    // Stop keep-alives; an old lease still known to etcd expires on its own.
    lease.release();
  }

  #scheduleRetry(): void {
    if (this.#retry !== null || this.#removed) return;
    const delay = Math.min(2000, 100 * 2 ** Math.min(this.#failures++, 10));
    this.#retry = setTimeout(() => {
      this.#retry = null;
      if (this.#record !== null) this.write(this.#record).catch(() => undefined);
    }, delay);
  }

  /** The key is gone although the lease should hold it (deleted by hand): put it again. */
  restore(): void {
    if (this.#record !== null && !this.#removed) this.write(this.#record).catch(() => undefined);
  }

  /** Revokes the lease, which deletes the key. */
  async remove(): Promise<void> {
    this.#removed = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#retry = null;
    await this.#writing;
    const lease = this.#lease;
    this.#lease = null;
    if (lease === null) return;
    lease.removeAllListeners();
    lease.on('lost', () => undefined);
    try {
      await lease.revoke();
    } catch (err) {
      this.#reach.failed('deregister', err as Error);
      await this.#client
        .delete()
        .key(this.key)
        .exec()
        .catch(() => undefined);
    }
  }
}
