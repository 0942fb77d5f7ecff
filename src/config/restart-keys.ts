// Which changed listener settings a reload cannot apply to running listeners (they need a restart).

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

/** `path → JSON of the value` for every leaf of a plain object (arrays are leaves). */
function leaves(value: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) leaves(v, `${path}.${k}`, out);
  } else if (value !== undefined) out.set(path, JSON.stringify(value));
  return out;
}

/** Whether `path` is, or lies under, a setting that applies live. */
function isLive(path: string): boolean {
  for (let p = path; p.includes('.'); p = p.slice(0, p.lastIndexOf('.'))) if (LIVE.has(p)) return true;
  return false;
}

/**
 * The `listeners.…` keys that differ between the running config and a reloaded one and need a
 * restart (addresses, ports, the inbound listener's timeouts and limits on the socket), sorted.
 * The admin token, the outbound and gateway body timeouts, the inbound allow-list, concurrency limit, rate
 * limit and app timeout, and each listener's `maxConnections` are left out: the reload applies them.
 */
export function restartKeys(running: { listeners: unknown }, next: { listeners: unknown }): string[] {
  const a = leaves(running.listeners, 'listeners', new Map());
  const b = leaves(next.listeners, 'listeners', new Map());
  const changed = new Set<string>();
  for (const [k, v] of a) if (b.get(k) !== v) changed.add(k);
  for (const k of b.keys()) if (!a.has(k)) changed.add(k);
  return [...changed].filter((k) => !isLive(k)).sort();
}
