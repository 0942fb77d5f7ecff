// Follows every instance under the etcd prefix: one full read, then one watch from the next revision; any break → read again.
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import type { InstanceCatalog } from '../kv/instance-catalog.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';

/** Why the catalog is read whole: at start, after the watch broke, or after compaction. */
export type ResyncReason = 'start' | 'disconnected' | 'compacted' | 'watch_error';

/** Options of the catalog watch. */
export interface EtcdCatalogWatchOptions {
  client: Etcd3;
  /** Key prefix, e.g. `/meshlet/services/`. */
  prefix: string;
  catalog: InstanceCatalog;
  /** Called after the catalog changed (publish to the upstream table). */
  onChange: () => void;
  reach: BackendReachability;
  metrics: RegistryMetrics;
  logger: Logger;
  /**
   * After a read whose revision went backwards (a cluster restored or replaced: its leases are
   * gone), the instances held before it that it misses are kept this long, ms (the lease TTL: live
   * instances put their keys back within it). Default 0.
   */
  graceMs?: number;
  /** Retry delays after a failed read, ms: doubling from `minMs` to `maxMs`, with jitter. Defaults 100 and 2000. */
  backoff?: { minMs: number; maxMs: number };
}

/**
 * The revision rule: the catalog is read with one range request at revision R, and the watch starts
 * at R + 1, so no change between the two is missed and none is applied twice. When the watch
 * breaks (etcd down, stream ended, a member switched) or etcd cancels it because R + 1 was
 * compacted, meshlet reads the whole prefix again and watches from the new revision: an answer
 * missed during the outage is caught up by the read. A read whose revision is lower than one
 * already seen (a cluster restored from backup or replaced) is logged and taken as the new truth,
 * except that the instances it lost are kept `graceMs` (one lease TTL) while their meshlets put
 * them back. Meanwhile the last endpoints stay in use.
 */
export class EtcdCatalogWatch {
  readonly #o: EtcdCatalogWatchOptions;
  #watcher: Watcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #graceTimer: NodeJS.Timeout | null = null;
  #stopped = false;
  #synced = false;
  #revision = 0n;
  #failures = 0;
  #generation = 0;

  constructor(options: EtcdCatalogWatchOptions) {
    this.#o = options;
  }

  /** True once the first read succeeded. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The last revision applied (read or watched), as a decimal string. */
  get revision(): string {
    return this.#revision.toString();
  }

  /** Reads the catalog and starts watching; rejects with the first read's error (retries go on). */
  start(): Promise<void> {
    return this.#resync('start');
  }

  async #resync(reason: ResyncReason): Promise<void> {
    if (this.#stopped) return;
    const generation = ++this.#generation;
    const { client, prefix, catalog, metrics, reach, logger } = this.#o;
    try {
      const res = await client.getAll().prefix(prefix).exec();
      if (this.#stopped || generation !== this.#generation) return;
      const revision = BigInt(res.header.revision);
      if (revision < this.#revision) {
        logger.warn({
          msg: 'etcd revision went backwards (cluster restored or replaced); taking the new catalog',
          was: this.#revision.toString(),
          now: revision.toString(),
        });
      }
      const restored = revision < this.#revision;
      this.#revision = revision;
      const graceMs = restored ? (this.#o.graceMs ?? 0) : 0;
      const kept = catalog.replaceAll(
        res.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]),
        graceMs,
        restored,
      );
      if (kept > 0) this.#settleAfter(graceMs, kept);
      metrics.resyncs.labels(reason).inc();
      reach.ok();
      this.#failures = 0;
      this.#synced = true;
      this.#o.onChange();
      await this.#watchFrom(revision + 1n, generation);
    } catch (err) {
      if (this.#stopped || generation !== this.#generation) return;
      reach.failed(reason === 'start' ? 'resync' : 'watch', err as Error);
      this.#retry(reason);
      if (reason === 'start') throw err;
    }
  }

  /** Drops the instances kept by grace that were not put again within `graceMs`. */
  #settleAfter(graceMs: number, kept: number): void {
    this.#o.logger.warn({
      msg: 'etcd lost instances that were live; keeping them one lease TTL while they register again',
      kept,
      graceMs,
    });
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = null;
      if (this.#stopped) return;
      if (this.#o.catalog.dropGraced() > 0) this.#o.onChange();
    }, graceMs + 50);
    this.#graceTimer.unref();
  }

  async #watchFrom(revision: bigint, generation: number): Promise<void> {
    const { client, prefix, catalog, logger } = this.#o;
    const watcher = await client.watch().prefix(prefix).startRevision(revision.toString()).create();
    if (this.#stopped || generation !== this.#generation) {
      void watcher.cancel().catch(() => undefined);
      return;
    }
    this.#watcher = watcher;
    watcher.on('data', (res) => {
      if (generation !== this.#generation) return;
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        if (ev.type === 'Put') catalog.put(key, ev.kv.value.toString());
        else catalog.delete(key);
      }
      const rev = BigInt(res.header.revision);
      if (rev > this.#revision) this.#revision = rev;
      if (res.events.length > 0) this.#o.onChange();
    });
    watcher.on('disconnected', (err: Error) => this.#broken(generation, 'disconnected', err));
    watcher.on('error', (err: Error) =>
      this.#broken(generation, /compact/i.test(err.message) ? 'compacted' : 'watch_error', err),
    );
    logger.debug({ msg: 'etcd watch started', prefix, fromRevision: revision.toString() });
  }

  #broken(generation: number, reason: ResyncReason, err: Error): void {
    if (this.#stopped || generation !== this.#generation) return;
    this.#o.reach.failed('watch', err);
    this.#o.logger.warn({ msg: 'etcd watch broke; reading the catalog again', reason, detail: err.message });
    this.#dropWatcher();
    this.#generation++;
    this.#retry(reason, true);
  }

  #dropWatcher(): void {
    const w = this.#watcher;
    this.#watcher = null;
    if (w === null) return;
    w.removeAllListeners();
    w.on('error', () => undefined);
    void w.cancel().catch(() => undefined);
  }

  #retry(reason: ResyncReason, first = false): void {
    if (this.#stopped) return;
    const { minMs, maxMs } = this.#o.backoff ?? { minMs: 100, maxMs: 2000 };
    const delay = first ? minMs : Math.min(maxMs, minMs * 2 ** Math.min(this.#failures++, 10));
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#resync(reason === 'start' ? 'disconnected' : reason).catch(() => undefined);
      },
      delay * (0.5 + Math.random() / 2),
    );
  }

  /** Stops watching. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
    this.#dropWatcher();
  }
}
