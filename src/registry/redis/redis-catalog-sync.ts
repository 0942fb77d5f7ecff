// Follows every instance under the Redis prefix: a full SCAN now and every resyncInterval, keyspace events and the channel in between.
import type { Logger } from '../../telemetry/logger.ts';
import type { BackendReachability } from '../backend-reachability.ts';
import type { InstanceCatalog } from '../kv/instance-catalog.ts';
import { MAX_RECORD_BYTES } from '../kv/instance-record.ts';
import type { RegistryMetrics } from '../kv/registry-metrics.ts';
import type { RedisClient } from './redis-connection.ts';

/** Options of the catalog sync. */
export interface RedisCatalogSyncOptions {
  /** Connection for commands. */
  client: RedisClient;
  /** Connection for subscriptions (a duplicate of `client`). */
  subscriber: RedisClient;
  prefix: string;
  /** The change channel (messages are keys). */
  channel: string;
  db: number;
  resyncIntervalMs: number;
  /**
   * Keys a SCAN misses are kept this long after they were last seen (the key TTL): Redis restarted
   * without persistence loses every key, and live instances write theirs again within one TTL.
   */
  graceMs: number;
  catalog: InstanceCatalog;
  onChange: () => void;
  reach: BackendReachability;
  metrics: RegistryMetrics;
  logger: Logger;
}

/** Escapes glob characters for SCAN MATCH and PSUBSCRIBE. */
export function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** A key under the prefix that is not a string (a hash, a list...): no record, refused like a malformed one. */
class WrongType {
  readonly reason = 'not a string key (WRONGTYPE)';
  /** What the catalog remembers as the key's bad value (logged once while it stays). */
  readonly marker = '\u0000WRONGTYPE';
}

/**
 * One key's value, read with `GETRANGE 0 MAX_RECORD_BYTES`: never more than one byte past the
 * record cap, so a huge value under the prefix costs 64 KiB, not its size (and is refused as too
 * large). Null when absent (or empty: no record is empty); a {@link WrongType} for a key of another
 * type (one foreign key under the prefix must not fail the whole read). Other errors reject.
 */
async function readValue(
  node: { getrange(key: string, start: number, end: number): Promise<string> },
  key: string,
): Promise<string | null | WrongType> {
  try {
    const value = await node.getrange(key, 0, MAX_RECORD_BYTES);
    return value === '' ? null : value;
  } catch (err) {
    if (/^WRONGTYPE\b/.test((err as Error).message)) return new WrongType();
    throw err;
  }
}

/** The second full read after the subscriber reconnected, ms after 'ready'. */
const RESYNC_AFTER_RECONNECT_MS = 1000;

/** Keyspace events that change what a key holds (others, such as `expire` from a heartbeat, are ignored). */
const CHANGING_EVENTS = new Set(['set', 'del', 'expired', 'evicted', 'rename_from', 'rename_to', 'unlink']);

/**
 * Notifications first, a full re-read as the safety net: meshlet subscribes to the keyspace events
 * of `<prefix>*` (`notify-keyspace-events` must include `K$gx`, or `KA`) and to the change channel,
 * and re-reads the key named by each. Every `resyncInterval`, and at once after the subscriber
 * connection comes back, it SCANs the whole prefix (every master, in a cluster) and replaces the
 * catalog, so a notification lost in an outage (or never sent) costs at most one interval. A key
 * the SCAN misses is dropped only once a TTL has passed since it was last seen (`graceMs`). A key a
 * notification re-read while the SCAN ran keeps what that read found: the SCAN may have read it
 * before the change (a deleted instance is not put back, a new record not replaced by the old).
 */
export class RedisCatalogSync {
  readonly #o: RedisCatalogSyncOptions;
  #timer: NodeJS.Timeout | null = null;
  #graceTimer: NodeJS.Timeout | null = null;
  #stopped = false;
  #synced = false;
  #resyncing: Promise<void> | null = null;
  #subscribedOnce = false;
  /**
   * While a full read runs: what each key's notification read found meanwhile. Applied again over
   * the full read, whose view of such a key may be older (read before the change).
   */
  #readDuringResync: Map<string, string | null | WrongType> | null = null;

  constructor(options: RedisCatalogSyncOptions) {
    this.#o = options;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Subscribes and reads the catalog; rejects with the first read's error (the interval retries). */
  async start(): Promise<void> {
    const { subscriber, prefix, channel, db } = this.#o;
    subscriber.on('pmessage', (_pattern: string, ch: string, event: string) => {
      if (CHANGING_EVENTS.has(event)) this.#refresh(ch.slice(ch.indexOf(':') + 1));
    });
    subscriber.on('message', (ch: string, key: string) => {
      if (ch === channel && key.startsWith(prefix)) this.#refresh(key);
    });
    subscriber.on('ready', () => {
      // Subscriptions are restored by ioredis on reconnect; what was missed meanwhile is read now,
      // and once more a moment later: a change made while the subscriptions were being restored
      // (after 'ready', before the server confirmed them) would otherwise wait a whole interval.
      if (!this.#subscribedOnce) return;
      this.resync('reconnected').catch(() => undefined);
      setTimeout(() => {
        if (!this.#stopped) this.resync('reconnected').catch(() => undefined);
      }, RESYNC_AFTER_RECONNECT_MS).unref();
    });
    this.#schedule();
    await this.#subscribe(`__keyspace@${db}__:${globEscape(prefix)}*`).catch(() => undefined);
    await this.resync('start');
  }

  async #subscribe(pattern: string): Promise<void> {
    const { subscriber, channel } = this.#o;
    if (subscriber.status === 'wait') await subscriber.connect();
    await subscriber.psubscribe(pattern);
    await subscriber.subscribe(channel);
    this.#subscribedOnce = true;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.resync('interval')
        .catch(() => undefined)
        .finally(() => this.#schedule());
    }, this.#o.resyncIntervalMs);
    this.#timer.unref();
  }

  /**
   * Re-reads one key the notifications named. A read sent while a full read runs is also noted for
   * it: the full read may have read the key before the change and must not put the old value back.
   */
  #refresh(key: string): void {
    const { client, reach } = this.#o;
    const during = this.#readDuringResync;
    readValue(client, key).then(
      (value) => {
        if (this.#stopped) return;
        reach.ok();
        during?.set(key, value);
        this.#apply(key, value);
        this.#o.onChange();
      },
      (err: Error) => {
        // No newer read of the key to trust: the full read's stands.
        during?.delete(key);
        reach.failed('watch', err);
      },
    );
  }

  /** Applies what one key holds now to the catalog. */
  #apply(key: string, value: string | null | WrongType): void {
    const { catalog } = this.#o;
    if (value === null) catalog.delete(key);
    else if (value instanceof WrongType) catalog.refuse(key, value.marker, value.reason);
    else catalog.put(key, value);
  }

  /** SCANs the whole prefix and replaces the catalog (one at a time). */
  resync(reason: 'start' | 'interval' | 'reconnected'): Promise<void> {
    this.#resyncing ??= this.#resync(reason).finally(() => {
      this.#resyncing = null;
    });
    return this.#resyncing;
  }

  async #resync(reason: string): Promise<void> {
    const { client, prefix, catalog, metrics, reach } = this.#o;
    const during = new Map<string, string | null | WrongType>();
    this.#readDuringResync = during;
    try {
      if (client.status === 'wait') await client.connect();
      const nodes =
        'nodes' in client && typeof client.nodes === 'function' ? client.nodes('master') : [client];
      const entries: [string, string][] = [];
      const wrongTypes: [string, WrongType][] = [];
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', `${globEscape(prefix)}*`, 'COUNT', 500);
          cursor = next;
          for (let i = 0; i < keys.length; i += 200) {
            const batch = keys.slice(i, i + 200);
            // One key per GET in a pipeline-free way that works in a cluster too (keys may span slots).
            const values = await Promise.all(batch.map((k) => readValue(node, k)));
            batch.forEach((k, j) => {
              const v = values[j];
              if (v instanceof WrongType) wrongTypes.push([k, v]);
              else if (v !== null && v !== undefined) entries.push([k, v]);
            });
          }
        } while (cursor !== '0');
      }
      if (this.#stopped) return;
      const kept = catalog.replaceAll(entries, this.#o.graceMs);
      for (const [k, w] of wrongTypes) catalog.refuse(k, w.marker, w.reason);
      // Keys that changed while the SCAN ran: their notification's read is at least as new.
      for (const [k, v] of during) this.#apply(k, v);
      metrics.resyncs.labels(reason).inc();
      if (kept > 0 && this.#graceTimer === null) {
        // Settle the kept keys once their grace ran out.
        this.#graceTimer = setTimeout(() => {
          this.#graceTimer = null;
          this.resync('interval').catch(() => undefined);
        }, this.#o.graceMs + 50);
        this.#graceTimer.unref();
      }
      reach.ok();
      this.#synced = true;
      this.#o.onChange();
    } catch (err) {
      reach.failed('resync', err as Error);
      throw err;
    } finally {
      if (this.#readDuringResync === during) this.#readDuringResync = null;
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
  }
}
