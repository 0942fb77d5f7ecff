// The etcd/redis catalog as meshlet holds it: key → parsed instance, grouped by service, published to the upstream table.
import type { Logger } from '../../telemetry/logger.ts';
import type { Endpoint } from '../../upstream/endpoint.ts';
import type { UpstreamTable } from '../../upstream/upstream-table.ts';
import { parseRecord } from './instance-record.ts';
import type { RegistryMetrics } from './registry-metrics.ts';

/** Splits a stored key into service and instance id; undefined for a key outside the layout. */
export type KeyParser = (key: string) => { service: string; id: string } | undefined;

interface Entry {
  service: string;
  /** The address and port the record names (critical instances too). */
  instance: { address: string; port: number };
  /** Undefined: a critical (or weight 0) instance, known but not routed to. */
  endpoint: Endpoint | undefined;
}

/** Most distinct malformed values remembered (so each is logged and counted once). */
const MAX_INVALID_REMEMBERED = 1000;

const byId = (a: Endpoint, b: Endpoint): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Every instance under the prefix. Changes mark their service dirty; `publish` hands the dirty
 * services' endpoint sets to the upstream table (only for upstreams it holds or config names, so an
 * unused service costs no upstream). A malformed value is skipped with a warning and
 * `_invalid_records_total`; the key's earlier instance is dropped, since it no longer says where to go.
 */
export class InstanceCatalog {
  readonly #parseKey: KeyParser;
  readonly #metrics: RegistryMetrics;
  readonly #logger: Logger;
  readonly #entries = new Map<string, Entry>();
  readonly #counts = new Map<string, number>();
  readonly #dirty = new Set<string>();
  /** key → the last bad value seen (logged and counted once). */
  readonly #invalid = new Map<string, string>();
  /** Keys a `replaceAll` kept by grace that no put confirmed since. */
  readonly #graced = new Set<string>();
  /** key → when a put last confirmed it (ms, injected clock). */
  readonly #seen = new Map<string, number>();
  readonly #now: () => number;

  /** @param now Clock for `replaceAll`'s grace, ms. Default `performance.now`. */
  constructor(parseKey: KeyParser, metrics: RegistryMetrics, logger: Logger, now = () => performance.now()) {
    this.#now = now;
    this.#parseKey = parseKey;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  /** Instances held (critical ones included). */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether `key` holds a valid record. */
  hasKey(key: string): boolean {
    return this.#entries.has(key);
  }

  /** The address and port the record at `key` names (critical ones too), or undefined when it holds none. */
  instanceAt(key: string): { address: string; port: number } | undefined {
    return this.#entries.get(key)?.instance;
  }

  /** Whether any key of `service` exists. */
  has(service: string): boolean {
    return (this.#counts.get(service) ?? 0) > 0;
  }

  /** A put seen by the watch (or a resync). */
  put(key: string, value: string): void {
    const where = this.#parseKey(key);
    if (where === undefined) return;
    const parsed = parseRecord(value);
    if ('invalid' in parsed) {
      this.refuse(key, value, parsed.invalid);
      return;
    }
    this.#invalid.delete(key);
    this.#graced.delete(key);
    this.#seen.set(key, this.#now());
    const before = this.#entries.get(key);
    if (before === undefined) this.#counts.set(where.service, (this.#counts.get(where.service) ?? 0) + 1);
    this.#entries.set(key, {
      service: where.service,
      instance: { address: parsed.address, port: parsed.port },
      endpoint: parsed.endpoint,
    });
    this.#dirty.add(where.service);
  }

  /**
   * A key that holds no usable record (a malformed value, or a Redis key of another type): the key's
   * earlier instance is dropped; logged and counted once per distinct `value` of the key.
   */
  refuse(key: string, value: string, reason: string): void {
    if (this.#parseKey(key) === undefined) return;
    const known = this.#invalid.get(key) === value;
    this.delete(key); // (forgets the key's bad value too)
    if (known) {
      this.#invalid.set(key, value);
      return;
    }
    if (this.#invalid.size >= MAX_INVALID_REMEMBERED) this.#invalid.clear();
    this.#invalid.set(key, value);
    this.#metrics.invalidRecords.inc();
    this.#logger.warn({
      msg: 'skipping a malformed registry record',
      registryKey: key.slice(0, 256),
      reason,
    });
  }

  /** A delete (or expiry) seen by the watch. */
  delete(key: string): void {
    this.#graced.delete(key);
    this.#invalid.delete(key);
    this.#seen.delete(key);
    const before = this.#entries.get(key);
    if (before === undefined) return;
    this.#entries.delete(key);
    const left = (this.#counts.get(before.service) ?? 1) - 1;
    if (left === 0) this.#counts.delete(before.service);
    else this.#counts.set(before.service, left);
    this.#dirty.add(before.service);
  }

  /**
   * A full re-read: replaces everything; services whose instances changed become dirty. With
   * `graceMs`, a key the read no longer holds but a put confirmed less than `graceMs` ago is kept
   * (a store restarted empty: live instances write their keys again within their TTL); with
   * `heldAreLive`, every key held before the read counts as confirmed now (a store whose keys are
   * only seen when they change, such as etcd's watch). Returns the number of keys kept that way;
   * those not put again meanwhile are removed by {@link dropGraced}.
   */
  replaceAll(entries: Iterable<[key: string, value: string]>, graceMs = 0, heldAreLive = false): number {
    const now = this.#now();
    if (heldAreLive) for (const key of this.#entries.keys()) this.#seen.set(key, now);
    const found = new Set<string>();
    for (const [key, value] of entries) {
      found.add(key);
      this.put(key, value);
    }
    let kept = 0;
    for (const key of [...this.#entries.keys()]) {
      if (found.has(key)) continue;
      if (now - (this.#seen.get(key) ?? -Infinity) < graceMs) {
        kept++;
        this.#graced.add(key);
      } else this.delete(key);
    }
    return kept;
  }

  /** Removes the keys a `replaceAll` kept by grace that no put confirmed since. Returns how many. */
  dropGraced(): number {
    const stale = [...this.#graced];
    for (const key of stale) this.delete(key);
    return stale.length;
  }

  /** The routable endpoints of `service`, sorted by id. */
  endpoints(service: string): Endpoint[] {
    const out = new Map<string, Endpoint>();
    for (const e of this.#entries.values()) {
      if (e.service === service && e.endpoint !== undefined && !out.has(e.endpoint.id)) {
        out.set(e.endpoint.id, e.endpoint);
      }
    }
    return [...out.values()].sort(byId);
  }

  /**
   * Publishes dirty services the table holds or `names` lists (and every name of `names` on
   * `all`). Returns the number of snapshots applied.
   */
  publish(table: UpstreamTable, names: ReadonlySet<string>, all = false): number {
    const services = all ? new Set([...this.#dirty, ...names]) : this.#dirty;
    let applied = 0;
    for (const service of services) {
      if (!table.has(service) && !names.has(service)) continue;
      table.setEndpoints(service, this.endpoints(service));
      applied++;
    }
    this.#dirty.clear();
    return applied;
  }
}
