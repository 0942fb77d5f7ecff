// The double's state store: catalog, agent-local records and KV under one raft-like index, with watches.
import { createHash } from 'node:crypto';
import type { CheckRecord, KvRecord, NodeRecord, ServiceRecord } from './model.ts';

/** A change notice: which data a write touched (e.g. `svc:web`, `kv:a/b`, `services`, `nodes`, `checks`). */
export type Topic = string;

/** A watch: `matches` selects topics; `notify` runs after a write touching one, or on abandon. */
interface Watch {
  matches: (topic: Topic) => boolean;
  notify: (abandoned: boolean) => void;
}

/** Table names whose max index Consul reports for table-wide queries. */
type Table = 'nodes' | 'services' | 'checks' | 'kvs' | 'tombstones';

/** A deterministic UUID (node IDs, ACL accessor IDs) derived from `seed`. */
export function uuidFrom(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

const keyOf = (node: string, id: string): string => `${node}\u0000${id}`;

/**
 * Holds every record and the global index. Writes go through `write()`, which gives all changes in
 * one call a single new index (like one raft log entry) only when something actually changed, then
 * wakes the watches whose topics were touched.
 */
export class Store {
  /** The last raft index used; always ≥ 1 once the store is bootstrapped. */
  index = 0;
  readonly nodes = new Map<string, NodeRecord>();
  readonly services = new Map<string, ServiceRecord>();
  readonly checks = new Map<string, CheckRecord>();
  readonly kv = new Map<string, KvRecord>();
  /** Index at which each deleted KV key was removed (Consul's tombstones; never reaped here). */
  readonly tombstones = new Map<string, number>();
  /** Per service name: index of the last change to its instances or their checks (Consul's `service.<name>`). */
  readonly serviceIndex = new Map<string, number>();
  /** Index at which the last instance of any service went away (Consul's `service_last_extinction`). */
  lastExtinction = 0;
  readonly tables: Record<Table, number> = { nodes: 0, services: 0, checks: 0, kvs: 0, tombstones: 0 };
  #watches = new Set<Watch>();
  /** The agent's own observers (alias checks): woken like watches, not counted as blocked queries. */
  #observers = new Set<Watch>();
  #pending: { index: number; topics: Set<Topic> } | undefined;

  /** Runs `fn` as one write; `touch`/`bump` inside it share one index. Returns `fn`'s result. */
  write<T>(fn: () => T): T {
    if (this.#pending !== undefined) return fn();
    this.#pending = { index: 0, topics: new Set() };
    try {
      return fn();
    } finally {
      const done = this.#pending;
      this.#pending = undefined;
      if (done.topics.size > 0) this.#fire(done.topics);
    }
  }

  /** The index of the write under way, allocated on first use. */
  #writeIndex(): number {
    const p = this.#pending;
    if (p === undefined) throw new Error('store change outside write()');
    if (p.index === 0) p.index = ++this.index;
    return p.index;
  }

  /** Marks tables and topics as changed by the current write; returns the write's index. */
  bump(tables: readonly Table[], topics: readonly Topic[]): number {
    const idx = this.#writeIndex();
    for (const t of tables) this.tables[t] = idx;
    for (const t of topics) this.#pending!.topics.add(t);
    return idx;
  }

  /** Records a change to service `name` (its instances, checks or node): bumps its index. */
  touchService(name: string): number {
    const idx = this.bump([], [`svc:${name}`]);
    this.serviceIndex.set(name, idx);
    return idx;
  }

  // ---- catalog -------------------------------------------------------------------------------

  getService(node: string, id: string): ServiceRecord | undefined {
    return this.services.get(keyOf(node, id));
  }

  getCheck(node: string, id: string): CheckRecord | undefined {
    return this.checks.get(keyOf(node, id));
  }

  /** Inserts or replaces a node; no index change when nothing differs. */
  putNode(n: Omit<NodeRecord, 'createIndex' | 'modifyIndex'>): NodeRecord {
    const old = this.nodes.get(n.name);
    if (
      old !== undefined &&
      JSON.stringify({ ...old, createIndex: 0, modifyIndex: 0 }) ===
        JSON.stringify({ ...n, createIndex: 0, modifyIndex: 0 })
    ) {
      return old;
    }
    const idx = this.bump(['nodes'], ['nodes', `node:${n.name}`]);
    const rec: NodeRecord = { ...n, createIndex: old?.createIndex ?? idx, modifyIndex: idx };
    this.nodes.set(n.name, rec);
    for (const s of this.services.values()) if (s.node === n.name) this.touchService(s.name);
    return rec;
  }

  /** Inserts or replaces a service instance; no index change when nothing differs. */
  putService(s: Omit<ServiceRecord, 'createIndex' | 'modifyIndex'>): ServiceRecord {
    const k = keyOf(s.node, s.id);
    const old = this.services.get(k);
    if (old !== undefined && sameRecord(old, s)) return old;
    const idx = this.bump(['services'], ['services']);
    if (old !== undefined && old.name !== s.name) this.#dropServiceName(old.name, k);
    this.touchService(s.name);
    const rec: ServiceRecord = { ...s, createIndex: old?.createIndex ?? idx, modifyIndex: idx };
    this.services.set(k, rec);
    // Checks of this instance carry its name and tags.
    for (const c of this.checks.values()) {
      if (c.node === s.node && c.serviceId === s.id) {
        this.putCheck({ ...c, serviceName: s.name, serviceTags: [...s.tags] });
      }
    }
    return rec;
  }

  /** Removes a service instance and its checks. Returns false when it did not exist. */
  deleteService(node: string, id: string): boolean {
    const k = keyOf(node, id);
    const old = this.services.get(k);
    if (old === undefined) return false;
    for (const c of [...this.checks.values()]) {
      if (c.node === node && c.serviceId === id) this.deleteCheck(node, c.checkId);
    }
    this.bump(['services'], ['services']);
    this.services.delete(k);
    this.#dropServiceName(old.name, k);
    return true;
  }

  /** After instance `k` of `name` left: touch the name, or record its extinction. */
  #dropServiceName(name: string, k: string): void {
    const idx = this.touchService(name);
    const others = [...this.services.entries()].some(([key, s]) => key !== k && s.name === name);
    if (!others) {
      this.serviceIndex.delete(name);
      this.lastExtinction = idx;
    }
  }

  /** Inserts or replaces a check; no index change when nothing differs. */
  putCheck(c: Omit<CheckRecord, 'createIndex' | 'modifyIndex'>): CheckRecord {
    const k = keyOf(c.node, c.checkId);
    const old = this.checks.get(k);
    if (old !== undefined && sameRecord(old, c)) return old;
    const idx = this.bump(['checks'], ['checks']);
    this.#touchCheckOwners(c.node, c.serviceName);
    if (old !== undefined && old.serviceName !== c.serviceName)
      this.#touchCheckOwners(old.node, old.serviceName);
    const rec: CheckRecord = { ...c, createIndex: old?.createIndex ?? idx, modifyIndex: idx };
    this.checks.set(k, rec);
    return rec;
  }

  /** Removes a check. Returns false when it did not exist. */
  deleteCheck(node: string, checkId: string): boolean {
    const k = keyOf(node, checkId);
    const old = this.checks.get(k);
    if (old === undefined) return false;
    this.bump(['checks'], ['checks']);
    this.checks.delete(k);
    this.#touchCheckOwners(old.node, old.serviceName);
    return true;
  }

  /** A service check touches its service; a node check touches every service on the node. */
  #touchCheckOwners(node: string, serviceName: string): void {
    this.bump([], [`node:${node}`]);
    if (serviceName !== '') {
      this.touchService(serviceName);
      return;
    }
    const names = new Set<string>();
    for (const s of this.services.values()) if (s.node === node) names.add(s.name);
    for (const name of names) this.touchService(name);
  }

  /** Instances of service `name`, ordered by node then ID. */
  instancesOf(name: string): ServiceRecord[] {
    return [...this.services.values()]
      .filter((s) => s.name === name)
      .sort((a, b) => a.node.localeCompare(b.node) || a.id.localeCompare(b.id));
  }

  /** Checks that apply to an instance: its own and its node's. */
  checksFor(s: ServiceRecord): CheckRecord[] {
    return [...this.checks.values()]
      .filter((c) => c.node === s.node && (c.serviceId === '' || c.serviceId === s.id))
      .sort((a, b) => a.checkId.localeCompare(b.checkId));
  }

  /** The index Consul reports for queries on one service (`maxIndexForService`). */
  serviceQueryIndex(name: string, withChecks: boolean): number {
    const idx = this.serviceIndex.get(name);
    if (idx !== undefined) return idx;
    if (this.lastExtinction > 0) return this.lastExtinction;
    const t = this.tables;
    return Math.max(t.nodes, t.services, withChecks ? t.checks : 0);
  }

  // ---- KV --------------------------------------------------------------------------------------

  /** Writes a KV entry; `cas` (when given) must equal the current ModifyIndex, 0 meaning "absent". */
  kvPut(key: string, value: Buffer | null, flags: number, cas?: number): boolean {
    const old = this.kv.get(key);
    if (cas !== undefined && (old?.modifyIndex ?? 0) !== cas) return false;
    const idx = this.bump(['kvs'], [`kv:${key}`]);
    this.kv.set(key, {
      key,
      value,
      flags,
      lockIndex: old?.lockIndex ?? 0,
      createIndex: old?.createIndex ?? idx,
      modifyIndex: idx,
    });
    return true;
  }

  /** Deletes one key, or every key under `key` when `recurse`. `cas` applies to a single key. */
  kvDelete(key: string, recurse: boolean, cas?: number): boolean {
    if (!recurse) {
      const old = this.kv.get(key);
      if (cas !== undefined && (old?.modifyIndex ?? 0) !== cas) return false;
      if (old === undefined) return true;
      const idx = this.bump(['kvs', 'tombstones'], [`kv:${key}`]);
      this.kv.delete(key);
      this.tombstones.set(key, idx);
      return true;
    }
    for (const k of [...this.kv.keys()]) {
      if (!k.startsWith(key)) continue;
      const idx = this.bump(['kvs', 'tombstones'], [`kv:${k}`]);
      this.kv.delete(k);
      this.tombstones.set(k, idx);
    }
    return true;
  }

  /** The index Consul reports for a single-key read: the KV table's (kvs, tombstones) max index. */
  kvTableIndex(): number {
    return Math.max(this.tables.kvs, this.tables.tombstones);
  }

  /** The index Consul reports for a prefix read: max of entries and tombstones under it, else the table's. */
  kvPrefixIndex(prefix: string): number {
    let idx = 0;
    for (const e of this.kv.values())
      if (e.key.startsWith(prefix) && e.modifyIndex > idx) idx = e.modifyIndex;
    for (const [k, i] of this.tombstones) if (k.startsWith(prefix) && i > idx) idx = i;
    return idx > 0 ? idx : this.kvTableIndex();
  }

  // ---- watches and resets ----------------------------------------------------------------------

  /** Registers a watch; returns its cancel function. */
  watch(matches: (topic: Topic) => boolean, notify: (abandoned: boolean) => void): () => void {
    const w: Watch = { matches, notify };
    this.#watches.add(w);
    return () => this.#watches.delete(w);
  }

  /** Registers an observer of writes (not a blocking query); returns its cancel function. */
  observe(matches: (topic: Topic) => boolean, notify: () => void): () => void {
    const w: Watch = { matches, notify };
    this.#observers.add(w);
    return () => this.#observers.delete(w);
  }

  #fire(topics: Set<Topic>): void {
    for (const w of [...this.#observers, ...this.#watches]) {
      for (const t of topics) {
        if (w.matches(t)) {
          w.notify(false);
          break;
        }
      }
    }
  }

  /** How many watches are registered (blocked queries in flight, roughly). */
  get watchCount(): number {
    return this.#watches.size;
  }

  /** Wakes every watch as abandoned (state replaced, e.g. after a snapshot restore or restart). */
  abandon(): void {
    for (const w of [...this.#watches]) w.notify(true);
  }

  /**
   * Makes the index go backwards to `to` (≥ 1), as after a snapshot restore: every record's
   * Create/ModifyIndex and every table index is lowered to at most `to`. Watches are abandoned.
   */
  resetIndex(to: number): void {
    const clamp = (r: { createIndex: number; modifyIndex: number }): void => {
      r.createIndex = Math.min(r.createIndex, to);
      r.modifyIndex = Math.min(r.modifyIndex, to);
    };
    for (const m of [this.nodes, this.services, this.checks, this.kv]) for (const r of m.values()) clamp(r);
    for (const [k, i] of this.tombstones) this.tombstones.set(k, Math.min(i, to));
    for (const [k, i] of this.serviceIndex) this.serviceIndex.set(k, Math.min(i, to));
    for (const t of Object.keys(this.tables) as Table[]) this.tables[t] = Math.min(this.tables[t], to);
    this.lastExtinction = Math.min(this.lastExtinction, to);
    this.index = to;
    this.abandon();
  }

  /** Forgets everything (records, KV, indexes); watches are abandoned. */
  clear(): void {
    this.nodes.clear();
    this.services.clear();
    this.checks.clear();
    this.kv.clear();
    this.tombstones.clear();
    this.serviceIndex.clear();
    this.lastExtinction = 0;
    for (const t of Object.keys(this.tables) as Table[]) this.tables[t] = 0;
    this.index = 0;
    this.abandon();
  }
}

function sameRecord(a: object, b: object): boolean {
  const strip = (r: object): string => JSON.stringify({ ...r, createIndex: 0, modifyIndex: 0 });
  return strip(a) === strip(b);
}
