// Which changed listener, identity and registry settings a reload cannot apply to the running daemon (they need a restart).

/** Listener settings a reload applies live; every other `listeners.…` change needs a restart. */
const LIVE = new Set([
  'listeners.admin.token',
  'listeners.outbound.bodyTimeout',
  'listeners.gateway.bodyTimeout',
  'listeners.outbound.maxConnections',
  'listeners.inbound.maxConnections',
  'listeners.gateway.maxConnections',
  'listeners.inbound.allow',
  'listeners.inbound.maxConcurrent',
  'listeners.inbound.rateLimit',
  'listeners.inbound.appTimeout',
]);

/**
 * Registry settings each registry type's `reload` applies live (the upstream names config mentions,
 * outside `registry`, are applied by every registry that watches names); every other changed
 * `registry.…` key needs a restart. static: `endpoints` (not the `file` watched); consul: the ACL
 * token (`token`, `tokenFile`) and `watch`; etcd, redis: `watch`; dns: nothing (it has no reload).
 */
const REGISTRY_LIVE: Readonly<Record<string, ReadonlySet<string>>> = {
  static: new Set(['registry.endpoints']),
  consul: new Set(['registry.consul.token', 'registry.consul.tokenFile', 'registry.watch']),
  etcd: new Set(['registry.watch']),
  redis: new Set(['registry.watch']),
  dns: new Set(),
};

/** `path → JSON of the value` for every leaf of a plain object (arrays are leaves). */
function leaves(value: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) leaves(v, `${path}.${k}`, out);
  } else if (value !== undefined) out.set(path, JSON.stringify(value));
  return out;
}

/** Whether `path` is, or lies under, one of the `live` settings. */
function isLive(path: string, live: ReadonlySet<string>): boolean {
  for (let p = path; p.includes('.'); p = p.slice(0, p.lastIndexOf('.'))) if (live.has(p)) return true;
  return false;
}

/** The leaf keys under `root` that differ between `running` and `next` (changed, added or gone) and are not `live`, sorted. */
function changedKeys(running: unknown, next: unknown, root: string, live: ReadonlySet<string>): string[] {
  const a = leaves(running, root, new Map());
  const b = leaves(next, root, new Map());
  const changed = new Set<string>();
  for (const [k, v] of a) if (b.get(k) !== v) changed.add(k);
  for (const k of b.keys()) if (!a.has(k)) changed.add(k);
  return [...changed].filter((k) => !isLive(k, live)).sort();
}

/** Nothing under it applies live. */
const NONE: ReadonlySet<string> = new Set();

/** What {@link restartKeys} compares: the config's parts read once, at start (a whole `MeshletConfig` fits). */
export interface RestartKeyInput {
  listeners: unknown;
  service?: unknown;
  tls?: unknown;
  metrics?: { consulUi?: unknown };
}

/**
 * The keys that differ between the running config and a reloaded one and need a restart, sorted:
 * `listeners.…` (addresses, ports, the inbound listener's timeouts and limits on the socket);
 * every `service.…` key (the inbound listener's app port and protocol, the registration in Consul,
 * etcd or Redis, the Connect leaf's service); every `tls.…` key (the identity's source and files,
 * whose contents are watched, not their paths; a `tls` block added or removed); and
 * `metrics.consulUi`. The admin token, the outbound and gateway body timeouts, the inbound
 * allow-list, concurrency limit, rate limit and app timeout, and each listener's `maxConnections`
 * are left out: the reload applies them. (`metrics.gcDurations` is the daemon's to name.)
 */
export function restartKeys(running: RestartKeyInput, next: RestartKeyInput): string[] {
  return [
    ...changedKeys(running.listeners, next.listeners, 'listeners', LIVE),
    ...changedKeys(running.service, next.service, 'service', NONE),
    ...changedKeys(running.tls, next.tls, 'tls', NONE),
    ...changedKeys(running.metrics?.consulUi, next.metrics?.consulUi, 'metrics.consulUi', NONE),
  ].sort();
}

/**
 * The `registry.…` keys that differ between the running config and a reloaded one of the same
 * registry type and that its reload does not apply (see {@link REGISTRY_LIVE}), sorted: e.g.
 * `registry.consul.address`, `registry.check.interval`, `registry.etcd.hosts`, `registry.dns.servers`.
 * Keys only: a key holding a secret (`registry.redis.password`, `registry.etcd.auth.password`) is
 * named, its value never returned. Empty when the type changed (a restart key of its own, `registry.type`).
 */
export function registryRestartKeys(
  running: { registry: { type: string; [key: string]: unknown } },
  next: { registry: { type: string; [key: string]: unknown } },
): string[] {
  const type = running.registry.type;
  if (next.registry.type !== type) return [];
  return changedKeys(running.registry, next.registry, 'registry', REGISTRY_LIVE[type] ?? new Set());
}
